//! The shape of airq's AWS resources: table keys and indexes, TTL
//! attributes, bucket prefixes and expiry rules. The adapters read and write
//! by these names and `airq-deploy provision` creates resources with them,
//! so both take them from here and cannot drift apart.

use crate::{error_code, remote};
use airq_core::BackendError;
use aws_sdk_s3::types::{ExpirationStatus, LifecycleRule};

// Readings table.
/// Partition key: the reading's UTC day.
pub const PARTITION_KEY: &str = "day";
/// Sort key: timestamp then sensor, so a day reads in store order.
pub const SORT_KEY: &str = "at_sensor";
/// The index serving queries with a country.
pub const BY_COUNTRY_INDEX: &str = "by_country";
/// That index's sort key: country, timestamp, sensor.
pub const COUNTRY_SORT_KEY: &str = "country_at";
/// The index serving place queries (`bbox`, `near`): partition key
/// [`CELL_KEY`], sort key [`SORT_KEY`], all attributes projected, so that a
/// place reads only the rows of the grid cells it covers.
pub const BY_CELL_INDEX: &str = "by_cell";
/// That index's partition key: `YYYY-MM-DD#CELL` on a reading (its day and
/// its 0.25° grid cell, `airq_core::place::cell`), `#latest#CELL` on a
/// sensor's latest item.
pub const CELL_KEY: &str = "cell_key";
/// The partition (`day`) holding each sensor's most recent reading, keyed
/// by sensor id: no date, so no date query reads it.
pub const LATEST_PARTITION: &str = "#latest";
/// The TTL attribute of the live tier's items (Unix seconds: the end of
/// their hour plus the hourly retention).
pub const READINGS_TTL_ATTRIBUTE: &str = "delete_after";

// Results table.
/// The purge index, over every record's expiry.
pub const BY_PURGE_INDEX: &str = "by_purge";
/// The purge index's partition key, and its one value.
pub const GC_ATTRIBUTE: &str = "gc";
pub const GC_PARTITION: &str = "result";
/// The purge index's sort key: when a record's data may be dropped.
pub const PURGE_AT_ATTRIBUTE: &str = "purge_at";
/// The TTL attribute of result records.
pub const RESULT_TTL_ATTRIBUTE: &str = "delete_after";
/// The client that submitted a result (its text form, `key:<uuid>` or
/// `addr:<address>`).
pub const CLIENT_ATTRIBUTE: &str = "client";
/// The request id (`X-Request-Id`) of a result's submit, so that one id
/// follows a query from submit to download (absent on records made before
/// it was kept, and when the submit had none).
pub const REQUEST_ID_ATTRIBUTE: &str = "request_id";
/// The index counting each client's pending results. It is sparse: only
/// a queued or running result carries its partition key, so it holds
/// nothing else.
pub const BY_PENDING_CLIENT_INDEX: &str = "by_pending_client";
/// That index's partition key: the client again, set when a result is
/// created and removed when it is finished or purged.
pub const PENDING_CLIENT_ATTRIBUTE: &str = "pending_client";
/// That index's sort key: when the result expires, so a count reads only
/// live results.
pub const EXPIRES_AT_ATTRIBUTE: &str = "expires_at";

// Keys table (API keys, by their SHA-256; never the key itself).
/// Partition key: the key's hash, in lowercase hex (`HASH` is a reserved
/// word: name it through an expression attribute name).
pub const KEY_HASH_ATTRIBUTE: &str = "hash";
/// The key's public id (a UUID).
pub const KEY_ID_ATTRIBUTE: &str = "id";
/// When the key was made (Unix seconds).
pub const KEY_CREATED_AT_ATTRIBUTE: &str = "created_at";
/// When it was revoked (Unix seconds), if it was.
pub const KEY_REVOKED_AT_ATTRIBUTE: &str = "revoked_at";

// Receipt fences table.
/// The fence table's key attribute: `<queue name>#<message id>`.
pub const FENCE_KEY: &str = "message";
/// The fence table's TTL attribute.
pub const FENCE_TTL: &str = "delete_after";

// Alerts table (`alerts.rs`).
/// Partition key: `alerts` (every alert), `counts`, or
/// `deliveries#<alert id>`.
pub const ALERTS_PK: &str = "pk";
/// Sort key: the alert id, `owner#<id>` / `total`, or
/// `<created ms>#<delivery id>`.
pub const ALERTS_SK: &str = "sk";
/// The sparse index of pending deliveries by when they are due.
pub const BY_DUE_INDEX: &str = "by_due";
/// That index's partition key: `pending` on a pending delivery only.
pub const ALERTS_DUE_ATTRIBUTE: &str = "due";
/// That index's sort key: when the delivery is tried next (Unix ms).
pub const ALERTS_NEXT_ATTRIBUTE: &str = "next_ms";

// Bucket.
/// Where large result CSVs live.
pub const RESULTS_PREFIX: &str = "results/";
/// Where message bodies too large for SQS live.
pub const MESSAGES_PREFIX: &str = "messages/";
/// The readings' answer segments (`readings/segments.rs`), under the
/// readings table's name: `segments/<table>/day/...`. No expiry rule: a
/// segment lives as long as its day's version.
pub const SEGMENTS_PREFIX: &str = "segments/";
/// The expiry rule of [`RESULTS_PREFIX`].
pub const RESULTS_RULE: &str = "airq-results-expiry";
/// The expiry rule of [`MESSAGES_PREFIX`].
pub const MESSAGES_RULE: &str = "airq-messages-expiry";

/// The bucket's lifecycle rules (none when it has no configuration).
pub async fn lifecycle(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<Vec<LifecycleRule>, BackendError> {
    match s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(out) => Ok(out.rules.unwrap_or_default()),
        Err(e) if error_code(&e) == Some("NoSuchLifecycleConfiguration") => Ok(Vec::new()),
        Err(e) => Err(remote(
            format!("S3 GetBucketLifecycleConfiguration {bucket}"),
            e,
        )),
    }
}

/// After how many days the bucket's own rule ([`RESULTS_RULE`], made by
/// `airq-deploy provision`) deletes large result objects; `None` if it has
/// no such rule enabled.
pub async fn result_object_days(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<Option<i32>, BackendError> {
    Ok(lifecycle(s3, bucket)
        .await?
        .iter()
        .filter(|r| r.id.as_deref() == Some(RESULTS_RULE) && r.status == ExpirationStatus::Enabled)
        .filter_map(|r| r.expiration.as_ref().and_then(|e| e.days))
        .min())
}
