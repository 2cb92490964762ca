//! Receipt fencing: makes "only the latest receipt deletes or extends a
//! message" hold on SQS.
//!
//! SQS itself does not promise it: a delete with the receipt handle of an
//! earlier receive "succeeds, but the message might not be deleted" (and in
//! practice often is, as in moto). A worker whose visibility lapsed could
//! then delete a message another worker is running. So each receive records
//! the message's receive count in a small DynamoDB table, and a delete or
//! visibility change first checks that its receipt is the latest one.
//!
//! Cost: one small write per message received, one small strongly
//! consistent read per delete or heartbeat, and a small delete; negligible
//! next to a query. Items expire (TTL) after SQS's longest retention.

use crate::schema::{FENCE_KEY, FENCE_TTL};
use crate::{error_code, remote};
use airq_core::error::BackendError;
use aws_sdk_dynamodb::types::AttributeValue;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A fence outlives any message (SQS keeps messages 14 days at most).
const FENCE_LIFETIME: Duration = Duration::from_secs(15 * 24 * 3600);

/// The receipt table. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ReceiptFence {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn key(queue: &str, message_id: &str) -> AttributeValue {
    AttributeValue::S(format!("{queue}#{message_id}"))
}

impl ReceiptFence {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        ReceiptFence {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Records receive number `count` of a message as its latest. A later
    /// receive already recorded wins (receives can be recorded out of order).
    pub async fn record(
        &self,
        queue: &str,
        message_id: &str,
        count: u32,
    ) -> Result<(), BackendError> {
        let expires = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(FENCE_LIFETIME)
            .as_secs();
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key(FENCE_KEY, key(queue, message_id))
            .update_expression("SET #n = :n, #ttl = :ttl")
            .condition_expression("attribute_not_exists(#n) OR #n < :n")
            .expression_attribute_names("#n", "receive_count")
            .expression_attribute_names("#ttl", FENCE_TTL)
            .expression_attribute_values(":n", AttributeValue::N(count.to_string()))
            .expression_attribute_values(":ttl", AttributeValue::N(expires.to_string()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(remote(
                format!("DynamoDB UpdateItem on {} (receipt)", self.table),
                e,
            )),
        }
    }

    /// Fails with [`BackendError::StaleReceipt`] unless receive `count` is
    /// the latest recorded receive of the message.
    pub async fn check(
        &self,
        queue: &str,
        message_id: &str,
        count: u32,
    ) -> Result<(), BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(FENCE_KEY, key(queue, message_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| remote(format!("DynamoDB GetItem on {} (receipt)", self.table), e))?;
        let latest = out
            .item
            .as_ref()
            .and_then(|i| match i.get("receive_count") {
                Some(AttributeValue::N(v)) => v.parse::<u32>().ok(),
                _ => None,
            });
        if latest == Some(count) {
            Ok(())
        } else {
            Err(BackendError::StaleReceipt)
        }
    }

    /// Forgets a deleted message (only if `count` is still its latest
    /// receive). Best effort: the TTL collects what this misses.
    pub async fn forget(&self, queue: &str, message_id: &str, count: u32) {
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(FENCE_KEY, key(queue, message_id))
            .condition_expression("#n = :n")
            .expression_attribute_names("#n", "receive_count")
            .expression_attribute_values(":n", AttributeValue::N(count.to_string()))
            .send()
            .await;
        if let Err(e) = r {
            if error_code(&e) != Some("ConditionalCheckFailedException") {
                tracing::debug!(table = %self.table, error = %super::remote("", e),
                    "could not forget a receipt; its TTL will");
            }
        }
    }
}
