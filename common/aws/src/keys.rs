//! The key store on DynamoDB: one item per key, keyed by the key's hash
//! (the key itself is never stored, see `airq_core::keys`).
//!
//! Finding a key, what every keyed request does, is one GetItem. Listing
//! and revoking (by id) scan the table: they are operator commands, and a
//! deployment has a handful of keys, not millions, so a second index by id
//! would cost every write for nothing.

use crate::schema::{KEY_HASH_ATTRIBUTE, KEY_ID_ATTRIBUTE, KEY_REVOKED_AT_ATTRIBUTE};
use crate::{error_code, remote};
use airq_core::error::BackendError;
use airq_core::keys::{KeyHash, KeyLimits, KeyRecord, KeyStore};
use airq_core::reading::Timestamp;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// A key as an item. The field names are the attributes (see `schema`).
#[derive(Debug, Serialize, Deserialize)]
struct KeyItem {
    hash: String,
    id: String,
    name: String,
    tier: String,
    /// The key's own limits, as a map (absent when it has none).
    #[serde(default, skip_serializing_if = "KeyLimits::is_empty")]
    limits: KeyLimits,
    created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at: Option<i64>,
}

impl KeyItem {
    fn of(r: &KeyRecord) -> KeyItem {
        KeyItem {
            hash: r.hash.as_str().to_owned(),
            id: r.id.to_string(),
            name: r.name.clone(),
            tier: r.tier.clone(),
            limits: r.limits.clone(),
            created_at: r.created_at.0,
            revoked_at: r.revoked_at.map(|t| t.0),
        }
    }

    /// The record an item holds; one that does not decode is
    /// [`BackendError::Corrupt`].
    fn decode(item: HashMap<String, AttributeValue>) -> Result<KeyRecord, BackendError> {
        let item: KeyItem = serde_dynamo::from_item(item)
            .map_err(|e| BackendError::Corrupt(format!("a stored key: {e}")))?;
        let id = Uuid::parse_str(&item.id).map_err(|_| {
            BackendError::Corrupt(format!("a stored key id is not a UUID: {:?}", item.id))
        })?;
        Ok(KeyRecord {
            id,
            hash: KeyHash::from_stored(item.hash)?,
            name: item.name,
            tier: item.tier,
            limits: item.limits,
            created_at: Timestamp(item.created_at),
            revoked_at: item.revoked_at.map(Timestamp),
        })
    }
}

/// Keys in a DynamoDB table. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DynamoKeyStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoKeyStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoKeyStore {
            client,
            table: table.into(),
        }
    }

    fn ctx(&self, op: &str) -> String {
        format!("DynamoDB {op} on {}", self.table)
    }

    /// Every item, page after page (only those whose attribute equals the
    /// value of `filter`, if given).
    async fn scan(
        &self,
        filter: Option<(&str, AttributeValue)>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, BackendError> {
        let mut all = Vec::new();
        let mut start_key = None;
        loop {
            let mut req = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start_key.take());
            if let Some((attribute, value)) = &filter {
                req = req
                    .filter_expression("#f = :f")
                    .expression_attribute_names("#f", *attribute)
                    .expression_attribute_values(":f", value.clone());
            }
            let out = req.send().await.map_err(|e| remote(self.ctx("Scan"), e))?;
            all.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start_key = Some(k),
                None => return Ok(all),
            }
        }
    }
}

#[async_trait]
impl KeyStore for DynamoKeyStore {
    async fn insert(&self, key: &KeyRecord) -> Result<(), BackendError> {
        let item = serde_dynamo::to_item(KeyItem::of(key))
            .map_err(|e| BackendError::Corrupt(format!("encoding key {}: {e}", key.id)))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // Never replaces a key (two keys with one hash would be a
            // SHA-256 collision; this keeps a bug from overwriting one).
            .condition_expression("attribute_not_exists(#h)")
            .expression_attribute_names("#h", KEY_HASH_ATTRIBUTE)
            .send()
            .await
            .map_err(|e| remote(self.ctx("PutItem"), e))?;
        Ok(())
    }

    async fn find(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                KEY_HASH_ATTRIBUTE,
                AttributeValue::S(hash.as_str().to_owned()),
            )
            // A revocation counts from the moment it is made.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| remote(self.ctx("GetItem"), e))?;
        out.item.map(KeyItem::decode).transpose()
    }

    async fn list(&self) -> Result<Vec<KeyRecord>, BackendError> {
        let mut keys = self
            .scan(None)
            .await?
            .into_iter()
            .map(KeyItem::decode)
            .collect::<Result<Vec<_>, _>>()?;
        keys.sort_by_key(|k| (k.created_at, k.id));
        Ok(keys)
    }

    async fn revoke(&self, id: Uuid, at: Timestamp) -> Result<Option<KeyRecord>, BackendError> {
        // The table is keyed by hash: find the id's item by a filtered
        // scan (the table is small, see the module's comment).
        let found = self
            .scan(Some((KEY_ID_ATTRIBUTE, AttributeValue::S(id.to_string()))))
            .await?;
        let Some(hash) = found
            .into_iter()
            .find_map(|item| item.get(KEY_HASH_ATTRIBUTE).cloned())
        else {
            return Ok(None);
        };
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_HASH_ATTRIBUTE, hash)
            .update_expression("SET #r = if_not_exists(#r, :at)")
            // Deleted since the scan: not recreated as a bare item.
            .condition_expression("attribute_exists(#h)")
            .expression_attribute_names("#r", KEY_REVOKED_AT_ATTRIBUTE)
            .expression_attribute_names("#h", KEY_HASH_ATTRIBUTE)
            .expression_attribute_values(":at", AttributeValue::N(at.0.to_string()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match updated {
            Ok(out) => match out.attributes {
                Some(item) => KeyItem::decode(item).map(Some),
                None => Err(BackendError::Corrupt(format!(
                    "revoking key {id} returned no attributes"
                ))),
            },
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(None),
            Err(e) => Err(remote(self.ctx("UpdateItem"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::KEY_CREATED_AT_ATTRIBUTE;

    #[test]
    fn items_use_the_schemas_attribute_names() {
        let mut new = airq_core::keys::generate(
            "k",
            "standard",
            KeyLimits {
                max_queued: Some(2),
                ..KeyLimits::default()
            },
        )
        .unwrap();
        new.record.revoked_at = Some(Timestamp(5));
        let item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(KeyItem::of(&new.record)).unwrap();
        for name in [
            KEY_HASH_ATTRIBUTE,
            KEY_ID_ATTRIBUTE,
            KEY_CREATED_AT_ATTRIBUTE,
            KEY_REVOKED_AT_ATTRIBUTE,
        ] {
            assert!(item.contains_key(name), "{name}: {item:?}");
        }
        assert_eq!(KeyItem::decode(item).unwrap(), new.record);
    }

    #[test]
    fn a_bad_stored_hash_is_corrupt() {
        let new = airq_core::keys::generate("k", "standard", KeyLimits::default()).unwrap();
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(KeyItem::of(&new.record)).unwrap();
        item.insert(KEY_HASH_ATTRIBUTE.into(), AttributeValue::S("nope".into()));
        assert!(matches!(
            KeyItem::decode(item),
            Err(BackendError::Corrupt(_))
        ));
    }
}
