//! What each binary may do on AWS: the IAM actions its adapters call, and
//! on which resources. The roles of the CloudFormation template
//! (`deploy/cloudformation/airq.yaml`) are checked against these lists by
//! `deploy/tests/template.rs`, both ways: every action here is granted on
//! its resource, and nothing else is. An SDK call added to an adapter
//! without its entry here (and its grant there) would be denied on AWS, so
//! keep them in step: every call of this crate is listed, per binary that
//! reaches it.
//!
//! How each binary reaches the adapters:
//! - `airq-master` opens only the reading store (`BackendArgs::reading_store`:
//!   a `ping`), writes batches (`put_batch`, `put_recent`, `prune`), reads
//!   the days before a feed (`history`) and builds the answer segments
//!   (`refresh_segments`).
//! - `airq-worker` and `airq-gateway` connect every port (`connect_aws`),
//!   which opens all four queues by name (`GetQueueUrl`), whether or not
//!   the binary then uses them.
//!
//! S3 authorises some calls under another action's name: `HeadObject` as
//! `s3:GetObject`; `CreateMultipartUpload`, `UploadPart` and
//! `CompleteMultipartUpload` as `s3:PutObject`;
//! `GetBucketLifecycleConfiguration` as `s3:GetLifecycleConfiguration`.
//!
//! `airq-deploy migrate` (the readings' item migration) has a role of its
//! own in the stack, `MigrateRole`, which an operator assumes to run it: its
//! list is [`MIGRATE`]. On a stack the template adds the `by_cell` index,
//! so that role has no `UpdateTable`; plain (template-less) deployments add
//! it with the operator's credentials, as `provision` does.
//!
//! Not here, because no role makes them: what `airq-deploy` does with the
//! operator's credentials (`provision`, `destroy`, `keys`: `KeyStore`
//! insert, list and revoke; `migrate`'s `UpdateTable` and
//! `ListTagsOfResource` without a stack), `DynamoReadingStore::put_one` (`PutItem`, a
//! benchmark's comparison, see BENCHMARKS.md), and STS
//! `GetCallerIdentity` (only without `AIRQ_BUCKET`, which every instance
//! has; it needs no permission anyway).

use crate::schema::{
    BY_CELL_INDEX, BY_COUNTRY_INDEX, BY_DUE_INDEX, BY_PENDING_CLIENT_INDEX, BY_PURGE_INDEX,
};
use airq_core::job::{REQUEST_RECEIVE, REQUEST_SEND};

/// `RequestSend`'s dead-letter queue (`dead_letter_name(REQUEST_SEND)`).
pub const REQUEST_SEND_DLQ: &str = "RequestSend-dlq";
/// `RequestReceive`'s dead-letter queue.
pub const REQUEST_RECEIVE_DLQ: &str = "RequestReceive-dlq";

/// A binary that runs with a role of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Binary {
    Master,
    Worker,
    Gateway,
}

impl Binary {
    pub const ALL: [Binary; 3] = [Binary::Master, Binary::Worker, Binary::Gateway];

    /// The executable's name, as in the release folder.
    pub fn executable(self) -> &'static str {
        match self {
            Binary::Master => "airq-master",
            Binary::Worker => "airq-worker",
            Binary::Gateway => "airq-gateway",
        }
    }

    /// What the binary needs.
    pub fn permissions(self) -> &'static [Permission] {
        match self {
            Binary::Master => MASTER,
            Binary::Worker => WORKER,
            Binary::Gateway => GATEWAY,
        }
    }
}

/// Where an action applies, by airq's names before the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// The readings table (`QualityAirTable`).
    ReadingsTable,
    /// An index of the readings table.
    ReadingsIndex(&'static str),
    /// The results table (`AirqResults`).
    ResultsTable,
    /// An index of the results table.
    ResultsIndex(&'static str),
    /// The receipt fences (`AirqReceipts`).
    ReceiptsTable,
    /// The API keys (`AirqKeys`).
    KeysTable,
    /// Alerts, their counts and deliveries (`AirqAlerts`).
    AlertsTable,
    /// An index of the alerts table.
    AlertsIndex(&'static str),
    /// A queue, by its name before the prefix (`RequestSend`,
    /// `RequestSend-dlq`, ...).
    Queue(&'static str),
    /// The bucket itself (bucket-level actions).
    Bucket,
    /// Large result CSVs: `results/*`.
    ResultObjects,
    /// Bodies offloaded from a queue: `messages/<prefix><queue>/*`.
    MessageObjects(&'static str),
    /// The readings' answer segments: `segments/*` (the deployment's own
    /// bucket: every key under it is its readings table's).
    SegmentObjects,
    /// The binary's own release: `releases/<release>/<arch>/<executable>`.
    Release,
}

/// One action on one resource, and who calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// The IAM action, e.g. `dynamodb:Query`.
    pub action: &'static str,
    pub resource: Resource,
    /// The adapter methods (or boot step) that need it.
    pub used_by: &'static str,
}

const fn p(action: &'static str, resource: Resource, used_by: &'static str) -> Permission {
    Permission {
        action,
        resource,
        used_by,
    }
}

use Resource::*;

/// `airq-master`: writes readings, and nothing else.
pub const MASTER: &[Permission] = &[
    p(
        "dynamodb:DescribeTable",
        ReadingsTable,
        "DynamoReadingStore::ping (BackendArgs::reading_store checks the table at start-up)",
    ),
    p(
        "dynamodb:BatchGetItem",
        ReadingsTable,
        "DynamoReadingStore::put_batch (stored_of: what is stored under the batch's keys, so that unchanged readings are not written again; put_latest: the latest shards it merges into), put_recent and prune (the live tier's hour and means items)",
    ),
    p(
        "dynamodb:BatchWriteItem",
        ReadingsTable,
        "DynamoReadingStore::put_batch (write_chunk), put_recent (means items) and prune (deleting hour items)",
    ),
    p(
        "dynamodb:UpdateItem",
        ReadingsTable,
        "DynamoReadingStore::put_batch (update_summary: the summary item's countries and bounds; writes_packed: the summary's packed-items mark on a table no airq has written; put_latest: its count of latest shard items, and reserve_version and release_version on the version item; bump_days: the days' segment version items and their count), put_recent (writes_packed, as put_batch) and prune (the live tier's markers and item count), refresh_segments (build_day: a segment's record, conditioned on its day's version; version_older_days: a version item for each day stored before versions, then the summary's count of them and its mark)",
    ),
    p(
        "dynamodb:GetItem",
        ReadingsTable,
        "DynamoReadingStore::put_batch (writes_packed: the summary item's packed-items mark, until set; put_latest: reserve_version reads the version item), put_recent (writes_packed, as put_batch) and prune (the live tier's markers on the summary item), refresh_segments (stored_days: the summary item's bounds and mark)",
    ),
    p(
        "dynamodb:PutItem",
        ReadingsTable,
        "DynamoReadingStore::put_batch (put_latest: each latest shard touched, a write conditioned on its version), put_recent and prune (each hour item, conditioned on its version)",
    ),
    p(
        "dynamodb:Query",
        ReadingsTable,
        "DynamoReadingStore::history (query_page: the days before a feed, for its quality survey) and refresh_segments (day_versions: the segment version items; build_day: each stale day's readings; day_has_readings: one key of a day without a version item)",
    ),
    p(
        "s3:PutObject",
        SegmentObjects,
        "DynamoReadingStore::refresh_segments (build_day: BlobStore::put of each object of a day's segment)",
    ),
    p(
        "s3:DeleteObject",
        SegmentObjects,
        "DynamoReadingStore::refresh_segments (build_day: BlobStore::delete of the objects of the build a build replaced, or of a build whose record was refused)",
    ),
    p(
        "s3:GetObject",
        Release,
        "the instance's user data: `aws s3 cp` of airq-master at boot",
    ),
];

/// `airq-worker`: takes requests, queries readings, stores results.
pub const WORKER: &[Permission] = &[
    // Readings.
    p(
        "dynamodb:Query",
        ReadingsTable,
        "DynamoReadingStore::query (query_page, without a country) and query_answer (day_versions: the segment version items of its days)",
    ),
    p(
        "s3:GetObject",
        SegmentObjects,
        "DynamoReadingStore::query_answer (fetch_day: BlobStore::get_bytes_unlisted of a fresh day's segment)",
    ),
    p(
        "dynamodb:Query",
        ReadingsIndex(BY_COUNTRY_INDEX),
        "DynamoReadingStore::query (query_page, with a country)",
    ),
    p(
        "dynamodb:Query",
        ReadingsIndex(BY_CELL_INDEX),
        "DynamoReadingStore::query (query_page, with a small place: its cells)",
    ),
    p(
        "dynamodb:BatchGetItem",
        ReadingsTable,
        "DynamoReadingStore::latest (run_latest: every latest shard) and query (hour and 5min: each hour's hour items)",
    ),
    // Results.
    p(
        "dynamodb:GetItem",
        ResultsTable,
        "DynamoResultStore::get (read_item: is the job already finished?)",
    ),
    p(
        "dynamodb:UpdateItem",
        ResultsTable,
        "DynamoResultStore::mark_running",
    ),
    p(
        "s3:GetObject",
        ResultObjects,
        "DynamoResultStore::get (BlobStore::size: HeadObject of a stored CSV)",
    ),
    p(
        "s3:PutObject",
        ResultObjects,
        "DynamoResultStore::create_answer (Upload: PutObject, or CreateMultipartUpload, UploadPart, CompleteMultipartUpload)",
    ),
    p(
        "s3:AbortMultipartUpload",
        ResultObjects,
        "DynamoResultStore::create_answer (Upload::abort of a failed or oversized answer)",
    ),
    // Queues.
    p(
        "sqs:GetQueueUrl",
        Queue(REQUEST_SEND),
        "SqsQueue::open (connect_aws opens every queue)",
    ),
    p(
        "sqs:GetQueueUrl",
        Queue(REQUEST_SEND_DLQ),
        "SqsQueue::open (connect_aws opens every queue)",
    ),
    p(
        "sqs:GetQueueUrl",
        Queue(REQUEST_RECEIVE),
        "SqsQueue::open (connect_aws opens every queue)",
    ),
    p(
        "sqs:GetQueueUrl",
        Queue(REQUEST_RECEIVE_DLQ),
        "SqsQueue::open (connect_aws opens every queue)",
    ),
    p(
        "sqs:ReceiveMessage",
        Queue(REQUEST_SEND),
        "SqsQueue::receive (receive_once) of jobs",
    ),
    p(
        "sqs:DeleteMessage",
        Queue(REQUEST_SEND),
        "SqsQueue::delete of a job done",
    ),
    p(
        "sqs:ChangeMessageVisibility",
        Queue(REQUEST_SEND),
        "SqsQueue::change_visibility (heartbeat, and handing a job back)",
    ),
    p(
        "sqs:SendMessage",
        Queue(REQUEST_RECEIVE),
        "SqsQueue::send of a job's result",
    ),
    p(
        "s3:GetObject",
        MessageObjects(REQUEST_SEND),
        "SqsQueue::receive (accept: BlobStore::get of an offloaded job body)",
    ),
    p(
        "s3:DeleteObject",
        MessageObjects(REQUEST_SEND),
        "SqsQueue::delete (BlobStore::delete_quietly of the job's offloaded body)",
    ),
    p(
        "s3:PutObject",
        MessageObjects(REQUEST_RECEIVE),
        "SqsQueue::send (BlobStore::put of a result body over 256 KiB)",
    ),
    p(
        "s3:DeleteObject",
        MessageObjects(REQUEST_RECEIVE),
        "SqsQueue::send (delete_quietly of the body when SendMessage fails)",
    ),
    // Receipt fences.
    p(
        "dynamodb:UpdateItem",
        ReceiptsTable,
        "ReceiptFence::record (every receive)",
    ),
    p(
        "dynamodb:GetItem",
        ReceiptsTable,
        "ReceiptFence::check (delete, change_visibility)",
    ),
    p(
        "dynamodb:DeleteItem",
        ReceiptsTable,
        "ReceiptFence::forget (delete)",
    ),
    p(
        "s3:GetObject",
        Release,
        "the instance's user data: `aws s3 cp` of airq-worker at boot",
    ),
];

/// `airq-gateway`: the API, result collection, dead letters, purging.
pub const GATEWAY: &[Permission] = &[
    // Readings: direct queries and /api/meta, never a write.
    p(
        "dynamodb:Query",
        ReadingsTable,
        "DynamoReadingStore::query (direct queries, without a country), query_answer and cheap_at_any_span (day_versions: the segment version items of its days)",
    ),
    p(
        "s3:GetObject",
        SegmentObjects,
        "DynamoReadingStore::query_answer (direct queries; fetch_day: BlobStore::get_bytes_unlisted of a fresh day's segment)",
    ),
    p(
        "dynamodb:Query",
        ReadingsIndex(BY_COUNTRY_INDEX),
        "DynamoReadingStore::query (direct queries, with a country)",
    ),
    p(
        "dynamodb:Query",
        ReadingsIndex(BY_CELL_INDEX),
        "DynamoReadingStore::query (direct queries, a small place)",
    ),
    p(
        "dynamodb:BatchGetItem",
        ReadingsTable,
        "DynamoReadingStore::latest (run_latest: every latest shard) and latest_changes (the live feed: every latest shard when the version moved), and query (hour and 5min, direct: each hour's hour items)",
    ),
    p(
        "dynamodb:DescribeTable",
        ReadingsTable,
        "DynamoReadingStore::summary (ItemCount) and ping (/readyz)",
    ),
    p(
        "dynamodb:GetItem",
        ReadingsTable,
        "DynamoReadingStore::summary and cheap_at_any_span (stored_days: the summary item) and latest_changes (the version item)",
    ),
    // API keys: looked up, never written (airq-deploy keys does that).
    p(
        "dynamodb:GetItem",
        KeysTable,
        "DynamoKeyStore::find (admission's key cache)",
    ),
    // Alerts. A TransactWriteItems call is authorised as the PutItem,
    // UpdateItem and DeleteItem it holds.
    p(
        "dynamodb:PutItem",
        AlertsTable,
        "DynamoAlertStore::create (the alert, in a transaction) and transition (a delivery)",
    ),
    p(
        "dynamodb:UpdateItem",
        AlertsTable,
        "DynamoAlertStore::create and delete (the counts), transition (the state), claim (a lease) and record (an attempt)",
    ),
    p(
        "dynamodb:DeleteItem",
        AlertsTable,
        "DynamoAlertStore::delete (the alert, in a transaction)",
    ),
    p(
        "dynamodb:GetItem",
        AlertsTable,
        "DynamoAlertStore::get (an alert) and claim (a delivery's target)",
    ),
    p(
        "dynamodb:Query",
        AlertsTable,
        "DynamoAlertStore::all, deliveries, delete and transition (an alert's deliveries, to trim)",
    ),
    p(
        "dynamodb:BatchWriteItem",
        AlertsTable,
        "DynamoAlertStore::delete and transition (deleting old deliveries)",
    ),
    p(
        "dynamodb:Query",
        AlertsIndex(BY_DUE_INDEX),
        "DynamoAlertStore::claim (the deliveries due)",
    ),
    // Results.
    p(
        "dynamodb:PutItem",
        ResultsTable,
        "DynamoResultStore::create (a queued query)",
    ),
    p(
        "dynamodb:GetItem",
        ResultsTable,
        "DynamoResultStore::get (polls, downloads) and finish (stored_csv_key)",
    ),
    p(
        "dynamodb:UpdateItem",
        ResultsTable,
        "DynamoResultStore::finish (collector, dead-letter watcher, enqueue failure) and purge_one",
    ),
    p(
        "dynamodb:DeleteItem",
        ResultsTable,
        "DynamoResultStore::purge_expired (purge_one forgets a tombstone)",
    ),
    p(
        "dynamodb:Query",
        ResultsIndex(BY_PURGE_INDEX),
        "DynamoResultStore::purge_expired",
    ),
    p(
        "dynamodb:Query",
        ResultsIndex(BY_PENDING_CLIENT_INDEX),
        "DynamoResultStore::pending (the per-client queued cap)",
    ),
    p(
        "s3:GetObject",
        ResultObjects,
        "DynamoResultStore::get (HeadObject) and open_answer (GetObject, ranges)",
    ),
    p(
        "s3:PutObject",
        ResultObjects,
        "DynamoResultStore::finish (a large CSV sent inline by an earlier worker)",
    ),
    p(
        "s3:DeleteObject",
        ResultObjects,
        "DynamoResultStore::finish (a losing duplicate's object) and purge_one",
    ),
    p(
        "s3:GetLifecycleConfiguration",
        Bucket,
        "DynamoResultStore::check_retention (schema::result_object_days) at start-up",
    ),
    // Queues.
    p(
        "sqs:GetQueueUrl",
        Queue(REQUEST_SEND),
        "SqsQueue::open (connect_aws opens every queue)",
    ),
    p(
        "sqs:GetQueueUrl",
        Queue(REQUEST_SEND_DLQ),
        "SqsQueue::open (connect_aws opens every queue)",
    ),
    p(
        "sqs:GetQueueUrl",
        Queue(REQUEST_RECEIVE),
        "SqsQueue::open (connect_aws opens every queue)",
    ),
    p(
        "sqs:GetQueueUrl",
        Queue(REQUEST_RECEIVE_DLQ),
        "SqsQueue::open (connect_aws opens every queue)",
    ),
    p(
        "sqs:SendMessage",
        Queue(REQUEST_SEND),
        "SqsQueue::send (enqueue)",
    ),
    p(
        "sqs:GetQueueAttributes",
        Queue(REQUEST_SEND),
        "SqsQueue::depth (the backlog cap, /readyz, metrics)",
    ),
    p(
        "sqs:GetQueueAttributes",
        Queue(REQUEST_SEND_DLQ),
        "SqsQueue::depth (metrics)",
    ),
    p(
        "sqs:ReceiveMessage",
        Queue(REQUEST_RECEIVE),
        "SqsQueue::receive (the result collector)",
    ),
    p(
        "sqs:DeleteMessage",
        Queue(REQUEST_RECEIVE),
        "SqsQueue::delete (the result collector)",
    ),
    p(
        "sqs:ReceiveMessage",
        Queue(REQUEST_SEND_DLQ),
        "SqsQueue::receive (the dead-letter watcher)",
    ),
    p(
        "sqs:DeleteMessage",
        Queue(REQUEST_SEND_DLQ),
        "SqsQueue::delete (the dead-letter watcher)",
    ),
    p(
        "s3:PutObject",
        MessageObjects(REQUEST_SEND),
        "SqsQueue::send (BlobStore::put of a job body over 256 KiB)",
    ),
    p(
        "s3:GetObject",
        MessageObjects(REQUEST_SEND),
        "SqsQueue::receive of a dead letter (it keeps its pointer into RequestSend's bodies)",
    ),
    p(
        "s3:DeleteObject",
        MessageObjects(REQUEST_SEND),
        "SqsQueue::send (a failed send's body) and delete of a dead letter",
    ),
    p(
        "s3:GetObject",
        MessageObjects(REQUEST_RECEIVE),
        "SqsQueue::receive (accept: a result body over 256 KiB)",
    ),
    p(
        "s3:DeleteObject",
        MessageObjects(REQUEST_RECEIVE),
        "SqsQueue::delete (the collected result's body)",
    ),
    // Receipt fences.
    p(
        "dynamodb:UpdateItem",
        ReceiptsTable,
        "ReceiptFence::record (every receive)",
    ),
    p(
        "dynamodb:GetItem",
        ReceiptsTable,
        "ReceiptFence::check (delete)",
    ),
    p(
        "dynamodb:DeleteItem",
        ReceiptsTable,
        "ReceiptFence::forget (delete)",
    ),
    p(
        "s3:GetObject",
        Release,
        "the instance's user data: `aws s3 cp` of airq-gateway at boot",
    ),
];

/// `airq-deploy migrate` with the stack's `MigrateRole`: fills in the
/// attributes of readings written before the US EPA AQI, the EAQI and the
/// place index, and builds the latest shards.
pub const MIGRATE: &[Permission] = &[
    p(
        "dynamodb:DescribeTable",
        ReadingsTable,
        "airq-deploy migrate (the table and its by_cell index are there and active)",
    ),
    p(
        "dynamodb:Scan",
        ReadingsTable,
        "DynamoReadingStore::migrate (scan_segment: every item, once)",
    ),
    p(
        "dynamodb:UpdateItem",
        ReadingsTable,
        "DynamoReadingStore::migrate (upgrade: an old item's missing attributes; put_latest and delete_old_latest: the count of latest items; put_latest: reserve_version and release_version; mark_items_packed: the summary's packed-items mark, with --pack-readings)",
    ),
    p(
        "dynamodb:GetItem",
        ReadingsTable,
        "DynamoReadingStore::migrate (put_latest: reserve_version reads the version item)",
    ),
    p(
        "dynamodb:BatchGetItem",
        ReadingsTable,
        "DynamoReadingStore::migrate (put_latest: the latest shards it merges into)",
    ),
    p(
        "dynamodb:PutItem",
        ReadingsTable,
        "DynamoReadingStore::migrate (put_latest: each latest shard touched, a write conditioned on its version)",
    ),
    p(
        "dynamodb:BatchWriteItem",
        ReadingsTable,
        "DynamoReadingStore::migrate (delete_old_latest: the per-sensor latest items of the shape before the shards)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use airq_core::job::dead_letter_name;
    use std::collections::HashSet;

    #[test]
    fn dead_letter_queue_names_are_the_cores() {
        assert_eq!(REQUEST_SEND_DLQ, dead_letter_name(REQUEST_SEND));
        assert_eq!(REQUEST_RECEIVE_DLQ, dead_letter_name(REQUEST_RECEIVE));
    }

    #[test]
    fn lists_are_precise() {
        let lists = Binary::ALL
            .iter()
            .map(|b| (format!("{b:?}"), b.permissions()))
            .chain([("migrate".to_owned(), MIGRATE)]);
        for (b, list) in lists {
            let mut seen = HashSet::new();
            for perm in list {
                assert!(
                    seen.insert((perm.action, perm.resource)),
                    "{b} lists {} on {:?} twice",
                    perm.action,
                    perm.resource
                );
                let (service, name) = perm.action.split_once(':').expect("service:Action");
                assert!(
                    matches!(service, "dynamodb" | "sqs" | "s3")
                        && !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphabetic()),
                    "{b}: {} is one named action, no wildcard",
                    perm.action
                );
                assert!(!perm.used_by.is_empty());
            }
        }
    }

    /// The two refusals the issue names: the master writes no result, the
    /// gateway writes no reading (nor answer segment: readers only read
    /// them).
    #[test]
    fn master_writes_only_readings_and_gateway_never_writes_them() {
        assert!(MASTER
            .iter()
            .all(|p| matches!(p.resource, ReadingsTable | SegmentObjects | Release)));
        for list in [GATEWAY, WORKER] {
            assert!(list
                .iter()
                .filter(|p| p.resource == SegmentObjects)
                .all(|p| p.action == "s3:GetObject"));
        }
        // The migration touches only the readings table, and never its
        // shape.
        assert!(MIGRATE
            .iter()
            .all(|p| p.resource == ReadingsTable && p.action != "dynamodb:UpdateTable"));
        let writes = [
            "dynamodb:PutItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
        ];
        assert!(!GATEWAY
            .iter()
            .any(|p| p.resource == ReadingsTable && writes.contains(&p.action)));
        assert!(!WORKER
            .iter()
            .any(|p| p.resource == ReadingsTable && writes.contains(&p.action)));
    }
}
