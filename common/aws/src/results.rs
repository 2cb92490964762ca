//! The result store on DynamoDB, with large CSVs in S3.
//!
//! One item per result id. A CSV up to [`INLINE_ANSWER_MAX`] bytes is kept in
//! the item; a larger one is put in S3 under a key unique to the attempt
//! (so a losing duplicate never overwrites the winner's object) and the item
//! holds the key. Callers of [`ResultStore::get`] get the CSV either way.
//!
//! Expiry: `expires_at` is in the item, so an expired result answers
//! "expired" at once. Purging goes through the sparse index `by_purge`
//! (partition `gc`, sort `purge_at`), so it reads only what is due, never
//! the table. DynamoDB's TTL (`delete_after`, a week after expiry) and the
//! bucket's expiry rule collect whatever no gateway purged.
//!
//! Each client's pending results are counted through the sparse index
//! `by_pending_client` (partition `pending_client`, sort `expires_at`): a
//! result carries `pending_client` from its creation until it is finished
//! (or purged), so the index holds only queued and running results, and a
//! count reads only that client's live ones.

use crate::blobs::{BlobStore, Upload};
use crate::schema::{
    BY_PENDING_CLIENT_INDEX, BY_PURGE_INDEX, EXPIRES_AT_ATTRIBUTE, GC_ATTRIBUTE, GC_PARTITION,
    PENDING_CLIENT_ATTRIBUTE, PURGE_AT_ATTRIBUTE, RESULTS_PREFIX,
};
use crate::{error_code, remote};
use airq_core::client::ClientId;
use airq_core::error::BackendError;
use airq_core::query::Query;
use airq_core::reading::Timestamp;
use airq_core::results::{
    AnswerSink, ByteStream, Outcome, ResultRecord, ResultState, ResultStore, StoredAnswer,
    Submission,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;
use uuid::Uuid;

/// Largest CSV kept inside the item (DynamoDB items hold 400 KB at most,
/// and a smaller item is cheaper to read on every poll).
pub const INLINE_ANSWER_MAX: usize = 100 * 1024;
/// How long after expiry DynamoDB's TTL deletes a record no purge forgot.
const TOMBSTONE_LIFETIME: i64 = 7 * 24 * 3600;
/// Records purged at once.
const PURGES_IN_FLIGHT: usize = 8;

#[derive(Debug, Serialize, Deserialize)]
struct ResultItem {
    id: String,
    state: String,
    query: String,
    created_at: i64,
    updated_at: i64,
    expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    csv: Option<String>,
    /// The S3 key of a CSV too large for the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    csv_key: Option<String>,
    /// That object's size (absent on records made before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    csv_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Who submitted it (absent on records made before clients were
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    /// The request id of its submit ([`crate::schema::REQUEST_ID_ATTRIBUTE`]; absent on
    /// records made before it was kept, and when the submit had none).
    /// Kept for the record's whole life: neither finishing nor purging
    /// removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    /// The client again while the result is queued or running: the
    /// partition key of the sparse index `by_pending_client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_client: Option<String>,
    gc: String,
    /// When the next purge should look at this record.
    purge_at: i64,
    /// Expired and purged: its data is gone; it only answers "expired".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    tombstone: bool,
    delete_after: i64,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn num(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

/// Results on DynamoDB and S3. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DynamoResultStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    blobs: BlobStore,
}

impl DynamoResultStore {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        blobs: BlobStore,
    ) -> Self {
        DynamoResultStore {
            client,
            table: table.into(),
            blobs,
        }
    }

    /// The record of `id` (only the attributes of `projection`, if given),
    /// read consistently.
    async fn read_item(
        &self,
        id: Uuid,
        projection: Option<&str>,
    ) -> Result<Option<HashMap<String, AttributeValue>>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id.to_string()))
            .consistent_read(true)
            .set_projection_expression(projection.map(str::to_owned))
            .send()
            .await
            .map_err(|e| remote(self.ctx("GetItem"), e))?;
        Ok(out.item)
    }

    /// The S3 key the stored record of `id` points at.
    async fn stored_csv_key(&self, id: Uuid) -> Result<Option<String>, BackendError> {
        Ok(self
            .read_item(id, Some("csv_key"))
            .await?
            .and_then(|item| item.get("csv_key").and_then(|v| v.as_s().ok()).cloned()))
    }

    fn ctx(&self, op: &str) -> String {
        format!("DynamoDB {op} on {}", self.table)
    }

    /// Purges one due record; returns whether it dropped or forgot it.
    async fn purge_one(
        &self,
        item: HashMap<String, AttributeValue>,
        now: Timestamp,
        forget_after: i64,
    ) -> Result<bool, BackendError> {
        let Some(id) = item.get("id").and_then(|v| v.as_s().ok()).cloned() else {
            return Ok(false);
        };
        let expires_at = num(&item, "expires_at").unwrap_or(i64::MIN);
        let tombstone = matches!(item.get("tombstone"), Some(AttributeValue::Bool(true)));
        let csv_key = item.get("csv_key").and_then(|v| v.as_s().ok()).cloned();
        if expires_at <= now.0.saturating_sub(forget_after) {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("id", s(&id))
                .send()
                .await
                .map_err(|e| remote(self.ctx("DeleteItem"), e))?;
        } else if !tombstone {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("id", s(&id))
                .update_expression("REMOVE #csv, #key, #pending SET #tomb = :t, #pa = :p")
                .condition_expression("attribute_exists(#id)")
                .expression_attribute_names("#csv", "csv")
                .expression_attribute_names("#key", "csv_key")
                .expression_attribute_names("#pending", PENDING_CLIENT_ATTRIBUTE)
                .expression_attribute_names("#tomb", "tombstone")
                .expression_attribute_names("#pa", PURGE_AT_ATTRIBUTE)
                .expression_attribute_names("#id", "id")
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .expression_attribute_values(":p", n(expires_at.saturating_add(forget_after)))
                .send()
                .await
                .map_err(|e| remote(self.ctx("UpdateItem"), e))?;
        } else {
            // Already a tombstone, but this purge forgets later than the
            // one that made it: look again then.
            self.client
                .update_item()
                .table_name(&self.table)
                .key("id", s(&id))
                .update_expression("SET #pa = :p")
                .condition_expression("attribute_exists(#id)")
                .expression_attribute_names("#pa", PURGE_AT_ATTRIBUTE)
                .expression_attribute_names("#id", "id")
                .expression_attribute_values(":p", n(expires_at.saturating_add(forget_after)))
                .send()
                .await
                .map_err(|e| remote(self.ctx("UpdateItem"), e))?;
            return Ok(false);
        }
        if let Some(key) = csv_key {
            self.blobs.delete_quietly(&key).await;
        }
        Ok(true)
    }
}

const CSV_CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// A new S3 key for a large CSV of result `id` (one per attempt, so a
/// second delivery never overwrites what a user may be downloading).
fn csv_key(id: Uuid) -> String {
    format!("{RESULTS_PREFIX}{id}/{}.csv", Uuid::new_v4())
}

/// Whether `key` is one [`csv_key`] made for `id`: a message naming any
/// other object is refused.
fn is_key_of(id: Uuid, key: &str) -> bool {
    key.strip_prefix(&format!("{RESULTS_PREFIX}{id}/"))
        .and_then(|rest| rest.strip_suffix(".csv"))
        .is_some_and(|attempt| Uuid::parse_str(attempt).is_ok())
}

/// A large CSV being written by a worker, as a multipart upload.
struct UploadSink(Upload);

#[async_trait]
impl AnswerSink for UploadSink {
    async fn write(&mut self, chunk: Bytes) -> Result<(), BackendError> {
        self.0.write(&chunk).await
    }

    async fn finish(self: Box<Self>) -> Result<StoredAnswer, BackendError> {
        let key = self.0.key().to_owned();
        let bytes = self.0.finish().await?;
        Ok(StoredAnswer { key, bytes })
    }

    async fn abort(self: Box<Self>) {
        self.0.abort().await
    }
}

#[async_trait]
impl ResultStore for DynamoResultStore {
    /// Large CSVs live in S3 under `results/`, where the bucket's expiry
    /// rule (`airq-deploy provision --result-object-days`) deletes them: a
    /// rule shorter than the results' time to live would lose CSVs of
    /// results that still answer `done`.
    async fn check_retention(&self, ttl: Duration) -> Result<(), BackendError> {
        let bucket = self.blobs.bucket();
        let Some(days) = crate::schema::result_object_days(self.blobs.client(), bucket).await?
        else {
            return Ok(());
        };
        let kept = Duration::from_secs(u64::try_from(days).unwrap_or(0) * 86_400);
        if kept < ttl {
            return Err(BackendError::Schema(format!(
                "the bucket {bucket} deletes large results after {days} days, sooner than \
                 their time to live ({}), so some would be lost: run `airq-deploy provision \
                 --result-object-days {}` or lower --result-ttl",
                humantime::format_duration(Duration::from_secs(ttl.as_secs())),
                ttl.as_secs().div_ceil(86_400),
            )));
        }
        Ok(())
    }

    async fn create(
        &self,
        id: Uuid,
        query: &Query,
        ttl: Duration,
        submission: &Submission,
    ) -> Result<(), BackendError> {
        let client = &submission.client;
        let now = Timestamp::now().0;
        let expires_at = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2));
        let item = ResultItem {
            id: id.to_string(),
            state: ResultState::Queued.as_str().to_owned(),
            query: query.to_json(),
            created_at: now,
            updated_at: now,
            expires_at,
            rows: None,
            csv: None,
            csv_key: None,
            csv_bytes: None,
            error: None,
            client: Some(client.to_string()),
            request_id: submission.request_id.clone(),
            pending_client: Some(client.to_string()),
            gc: GC_PARTITION.to_owned(),
            purge_at: expires_at,
            tombstone: false,
            delete_after: expires_at.saturating_add(TOMBSTONE_LIFETIME),
        };
        let item = serde_dynamo::to_item(item)
            .map_err(|e| BackendError::Corrupt(format!("encoding a result: {e}")))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", "id")
            .send()
            .await
            .map_err(|e| remote(self.ctx("PutItem"), e))?;
        Ok(())
    }

    /// One Query of the sparse index (eventually consistent, as index
    /// reads are: a result finished a moment ago may still count), counted
    /// by DynamoDB, page after page.
    async fn pending(&self, client: &ClientId, now: Timestamp) -> Result<u64, BackendError> {
        let mut count = 0u64;
        let mut start_key = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(BY_PENDING_CLIENT_INDEX)
                .key_condition_expression("#pc = :client AND #exp > :now")
                .expression_attribute_names("#pc", PENDING_CLIENT_ATTRIBUTE)
                .expression_attribute_names("#exp", EXPIRES_AT_ATTRIBUTE)
                .expression_attribute_values(":client", s(client.to_string()))
                .expression_attribute_values(":now", n(now.0))
                .select(Select::Count)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| remote(self.ctx("Query (pending)"), e))?;
            count += u64::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start_key = Some(k),
                None => return Ok(count),
            }
        }
    }

    async fn get(&self, id: Uuid) -> Result<Option<ResultRecord>, BackendError> {
        let Some(item) = self.read_item(id, None).await? else {
            return Ok(None);
        };
        let item: ResultItem = serde_dynamo::from_item(item)
            .map_err(|e| BackendError::Corrupt(format!("result {id}: {e}")))?;
        let state = ResultState::parse(&item.state).ok_or_else(|| {
            BackendError::Corrupt(format!("result {id} has unknown state {:?}", item.state))
        })?;
        let client = item
            .client
            .map(|c| {
                c.parse::<ClientId>().map_err(|e| {
                    BackendError::Corrupt(format!("result {id} has a bad client: {e}"))
                })
            })
            .transpose()?;
        let expired = Timestamp::now().0 >= item.expires_at;
        let (csv, stored) = match (item.tombstone, item.csv, item.csv_key) {
            (true, _, _) => (None, None),
            (false, Some(csv), _) => (Some(csv), None),
            // Not looked at once expired: nobody is served it, and the
            // bucket's expiry rule may have removed it.
            // A live record whose object is gone is a fault (a bucket rule
            // shorter than the results' lifetime, a manual delete): an
            // error, not an "expired" answer the user would take as final.
            // The object is streamed by open_answer, not read here; one HEAD
            // checks it is there (and sizes records made before csv_bytes).
            (false, None, Some(key)) if !expired => {
                let bytes = self.blobs.size(&key).await?.ok_or_else(|| {
                    BackendError::Corrupt(format!(
                        "result {id}: its CSV object {key} is missing from the bucket"
                    ))
                })?;
                (None, Some(StoredAnswer { key, bytes }))
            }
            _ => (None, None),
        };
        Ok(Some(ResultRecord {
            id,
            state,
            query: item.query,
            created_at: Timestamp(item.created_at),
            updated_at: Timestamp(item.updated_at),
            expires_at: Timestamp(item.expires_at),
            rows: item.rows,
            answer: csv,
            stored,
            error: item.error,
            client,
            request_id: item.request_id,
        }))
    }

    async fn mark_running(&self, id: Uuid) -> Result<(), BackendError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id.to_string()))
            .update_expression("SET #state = :running, #updated = :now")
            .expression_attribute_names("#updated", "updated_at")
            .condition_expression("#state = :queued")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":running", s(ResultState::Running.as_str()))
            .expression_attribute_values(":queued", s(ResultState::Queued.as_str()))
            .expression_attribute_values(":now", n(Timestamp::now().0))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(remote(self.ctx("UpdateItem"), e)),
        }
    }

    async fn finish(&self, id: Uuid, outcome: &Outcome) -> Result<bool, BackendError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id.to_string()))
            // First wins: only a queued or running result takes an outcome
            // (and a missing one fails the condition, so none is created).
            .condition_expression("#state IN (:queued, :running)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#updated", "updated_at")
            // Finished: out of the pending index.
            .expression_attribute_names("#pending", PENDING_CLIENT_ATTRIBUTE)
            .expression_attribute_values(":queued", s(ResultState::Queued.as_str()))
            .expression_attribute_values(":running", s(ResultState::Running.as_str()))
            .expression_attribute_values(":now", n(Timestamp::now().0));
        let mut uploaded = None;
        let stored = |req: UpdateItemFluentBuilder, key: &str, bytes: u64, rows: u64| {
            req.update_expression(
                "SET #state = :state, #rows = :rows, #key = :key, #bytes = :bytes, #updated = :now \
                 REMOVE #pending",
            )
            .expression_attribute_names("#rows", "rows")
            .expression_attribute_names("#key", "csv_key")
            .expression_attribute_names("#bytes", "csv_bytes")
            .expression_attribute_values(":state", s(ResultState::Done.as_str()))
            .expression_attribute_values(":rows", n(rows))
            .expression_attribute_values(":key", s(key))
            .expression_attribute_values(":bytes", n(bytes))
        };
        req = match outcome {
            // Sent inline by a worker of an earlier version.
            // The attribute `csv` holds an answer of any format (its stored
            // name, from when every answer was CSV).
            Outcome::Done { answer: csv, rows } if csv.len() > INLINE_ANSWER_MAX => {
                let key = csv_key(id);
                self.blobs
                    .put(&key, csv.as_bytes().to_vec(), CSV_CONTENT_TYPE)
                    .await?;
                uploaded = Some(key.clone());
                stored(req, &key, csv.len() as u64, *rows)
            }
            Outcome::Stored { answer: csv, rows } => {
                if !is_key_of(id, &csv.key) {
                    return Err(BackendError::Corrupt(format!(
                        "result {id}: {:?} is not an object this backend made for it",
                        csv.key
                    )));
                }
                uploaded = Some(csv.key.clone());
                stored(req, &csv.key, csv.bytes, *rows)
            }
            Outcome::Done { answer: csv, rows } => req
                .update_expression(
                    "SET #state = :state, #rows = :rows, #csv = :csv, #updated = :now \
                     REMOVE #pending",
                )
                .expression_attribute_names("#rows", "rows")
                .expression_attribute_names("#csv", "csv")
                .expression_attribute_values(":state", s(ResultState::Done.as_str()))
                .expression_attribute_values(":rows", n(rows))
                .expression_attribute_values(":csv", s(csv.as_str())),
            Outcome::Failed { error } => req
                .update_expression(
                    "SET #state = :state, #error = :error, #updated = :now REMOVE #pending",
                )
                .expression_attribute_names("#error", "error")
                .expression_attribute_values(":state", s(ResultState::Failed.as_str()))
                .expression_attribute_values(":error", s(error.as_str())),
        };
        match req.send().await {
            Ok(_) => return Ok(true),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => {}
            // The write may still have landed (a lost response): the object
            // is kept, since the record may point at it; if not, the bucket's
            // expiry rule reclaims it.
            Err(e) => return Err(remote(self.ctx("UpdateItem"), e)),
        }
        let Some(key) = uploaded else {
            return Ok(false);
        };
        // The condition failed, but a retry of this very request (after a
        // lost response) fails it too: the record is then ours, pointing at
        // our object. Only an object nobody's record points at is deleted.
        let ours = self.stored_csv_key(id).await?.as_deref() == Some(key.as_str());
        if !ours {
            self.blobs.delete_quietly(&key).await;
        }
        Ok(ours)
    }

    fn inline_max(&self) -> usize {
        INLINE_ANSWER_MAX
    }

    async fn create_answer(&self, id: Uuid) -> Result<Box<dyn AnswerSink>, BackendError> {
        Ok(Box::new(UploadSink(
            self.blobs.upload(csv_key(id), CSV_CONTENT_TYPE),
        )))
    }

    async fn open_answer(
        &self,
        csv: &StoredAnswer,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, BackendError> {
        if !csv.key.starts_with(RESULTS_PREFIX) {
            return Err(BackendError::Corrupt(format!(
                "{:?} is not a result object",
                csv.key
            )));
        }
        self.blobs.stream(&csv.key, range).await
    }

    async fn purge_expired(
        &self,
        now: Timestamp,
        forget_after: Duration,
    ) -> Result<u64, BackendError> {
        let forget_after = i64::try_from(forget_after.as_secs()).unwrap_or(i64::MAX / 2);
        let mut touched = 0;
        let mut start_key = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(BY_PURGE_INDEX)
                .key_condition_expression("#gc = :gc AND #pa <= :now")
                .expression_attribute_names("#gc", GC_ATTRIBUTE)
                .expression_attribute_names("#pa", PURGE_AT_ATTRIBUTE)
                .expression_attribute_values(":gc", s(GC_PARTITION))
                .expression_attribute_values(":now", n(now.0))
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| remote(self.ctx("Query (purge)"), e))?;
            let items = out.items.unwrap_or_default();
            let done: Vec<bool> = futures::stream::iter(items)
                .map(|item| self.purge_one(item, now, forget_after))
                .buffer_unordered(PURGES_IN_FLIGHT)
                .try_collect()
                .await?;
            touched += done.into_iter().filter(|&d| d).count() as u64;
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start_key = Some(k),
                None => return Ok(touched),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{CLIENT_ATTRIBUTE, REQUEST_ID_ATTRIBUTE};

    #[test]
    fn items_use_the_schemas_attribute_names() {
        let item = ResultItem {
            id: Uuid::new_v4().to_string(),
            state: "queued".into(),
            query: "{}".into(),
            created_at: 1,
            updated_at: 1,
            expires_at: 2,
            rows: None,
            csv: None,
            csv_key: None,
            csv_bytes: None,
            error: None,
            client: Some("addr:192.0.2.1".into()),
            request_id: Some("req-1".into()),
            pending_client: Some("addr:192.0.2.1".into()),
            gc: GC_PARTITION.into(),
            purge_at: 2,
            tombstone: false,
            delete_after: 3,
        };
        let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(item).unwrap();
        for name in [
            CLIENT_ATTRIBUTE,
            REQUEST_ID_ATTRIBUTE,
            PENDING_CLIENT_ATTRIBUTE,
            EXPIRES_AT_ATTRIBUTE,
            GC_ATTRIBUTE,
            PURGE_AT_ATTRIBUTE,
        ] {
            assert!(item.contains_key(name), "{name}: {item:?}");
        }
    }

    #[test]
    fn records_made_before_request_ids_have_none() {
        let old: HashMap<String, AttributeValue> = [
            ("id", s(Uuid::new_v4().to_string())),
            ("state", s("queued")),
            ("query", s("{}")),
            ("created_at", n(1)),
            ("updated_at", n(1)),
            ("expires_at", n(2)),
            ("gc", s(GC_PARTITION)),
            ("purge_at", n(2)),
            ("delete_after", n(3)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let item: ResultItem = serde_dynamo::from_item(old).unwrap();
        assert_eq!(item.request_id, None);
        let encoded: HashMap<String, AttributeValue> = serde_dynamo::to_item(item).unwrap();
        assert!(
            !encoded.contains_key(REQUEST_ID_ATTRIBUTE),
            "no attribute is written for none: {encoded:?}"
        );
    }
}
