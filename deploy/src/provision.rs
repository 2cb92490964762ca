//! Creating (idempotently) and removing everything the AWS backend needs:
//! the readings, results, receipts and keys tables, both queues with their
//! dead-letter queues, and the payload bucket. Used by `airq-deploy
//! provision` / `destroy` and by the tests, which provision their own
//! prefixed copies.

use airq_aws::schema::{
    lifecycle, ALERTS_DUE_ATTRIBUTE, ALERTS_NEXT_ATTRIBUTE, ALERTS_PK, ALERTS_SK, BY_CELL_INDEX,
    BY_COUNTRY_INDEX, BY_DUE_INDEX, BY_PENDING_CLIENT_INDEX, BY_PURGE_INDEX, CELL_KEY,
    COUNTRY_SORT_KEY, EXPIRES_AT_ATTRIBUTE, FENCE_KEY, FENCE_TTL, GC_ATTRIBUTE, KEY_HASH_ATTRIBUTE,
    MESSAGES_PREFIX, MESSAGES_RULE, PARTITION_KEY, PENDING_CLIENT_ATTRIBUTE, PURGE_AT_ATTRIBUTE,
    READINGS_TTL_ATTRIBUTE, RESULTS_PREFIX, RESULTS_RULE, RESULT_TTL_ATTRIBUTE, SORT_KEY,
};
use airq_aws::{error_code, remote, AwsClients, ResourceNames};
use airq_core::error::BackendError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType, Projection, ProjectionType,
    ProvisionedThroughput, ScalarAttributeType, TableDescription, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    CreateBucketConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;
use std::fmt;
use std::time::{Duration, Instant};

/// How long to wait for a new table (and its indexes) to become active.
const TABLE_READY_TIMEOUT: Duration = Duration::from_secs(600);
/// SQS's longest retention, for dead letters: someone should read them.
const DLQ_RETENTION_SECS: u32 = 14 * 24 * 3600;
/// Offloaded message bodies outlive any message.
const MESSAGE_OBJECT_DAYS: i32 = 15;
/// After how many days an unfinished multipart upload is dropped.
const INCOMPLETE_UPLOAD_DAYS: i32 = 1;

/// How the tables are billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billing {
    /// Pay per request (on-demand): no capacity planning.
    OnDemand,
    /// Provisioned capacity for each table and each of its indexes.
    Provisioned { read: i64, write: i64 },
}

/// What to provision.
#[derive(Debug, Clone)]
pub struct ProvisionSpec {
    pub names: ResourceNames,
    /// Receives after which a message moves to its dead-letter queue.
    pub max_receives: u32,
    pub billing: Billing,
    /// Days after which the bucket expires result objects (a backstop: a
    /// purge deletes them when their result expires). Must exceed the
    /// gateways' `--result-ttl`.
    pub result_object_days: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Found,
    Updated,
    Deleted,
    Absent,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Found => "found",
            Action::Updated => "updated",
            Action::Deleted => "deleted",
            Action::Absent => "absent",
        })
    }
}

/// One resource and what was done to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: &'static str,
    pub name: String,
    pub action: Action,
}

/// Everything a provision or destroy did, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub steps: Vec<Step>,
}

impl Report {
    pub(crate) fn add(&mut self, kind: &'static str, name: impl Into<String>, action: Action) {
        let step = Step {
            kind,
            name: name.into(),
            action,
        };
        tracing::debug!(kind = step.kind, name = %step.name, action = %step.action, "provisioning");
        self.steps.push(step);
    }

    /// Whether anything was created, changed or deleted.
    pub fn changed(&self) -> bool {
        self.steps
            .iter()
            .any(|s| !matches!(s.action, Action::Found | Action::Absent))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(f, "{:<8} {:<14} {}", s.action, s.kind, s.name)?;
        }
        Ok(())
    }
}

/// Creates whatever of `spec` is missing and reports what it found.
pub async fn provision(aws: &AwsClients, spec: &ProvisionSpec) -> Result<Report, BackendError> {
    let mut report = Report::default();
    let n = &spec.names;
    ensure_readings_table(aws, &n.readings_table, spec.billing, &mut report).await?;
    ensure_results_table(aws, &n.results_table, spec.billing, &mut report).await?;
    ensure_receipts_table(aws, &n.receipts_table, spec.billing, &mut report).await?;
    ensure_keys_table(aws, &n.keys_table, spec.billing, &mut report).await?;
    ensure_alerts_table(aws, &n.alerts_table, spec.billing, &mut report).await?;
    for (queue, dlq) in n.queues() {
        ensure_queue_pair(aws, &queue, &dlq, spec.max_receives, &mut report).await?;
    }
    ensure_bucket(aws, &n.bucket, spec.result_object_days, &mut report).await?;
    Ok(report)
}

fn attr(name: &str, t: ScalarAttributeType) -> Result<AttributeDefinition, BackendError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(t)
        .build()
        .map_err(build_error)
}

fn key(name: &str, t: KeyType) -> Result<KeySchemaElement, BackendError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(t)
        .build()
        .map_err(build_error)
}

fn throughput(billing: Billing) -> Result<Option<ProvisionedThroughput>, BackendError> {
    match billing {
        Billing::OnDemand => Ok(None),
        Billing::Provisioned { read, write } => ProvisionedThroughput::builder()
            .read_capacity_units(read)
            .write_capacity_units(write)
            .build()
            .map(Some)
            .map_err(build_error),
    }
}

fn build_error(e: impl fmt::Display) -> BackendError {
    BackendError::Corrupt(format!("building an AWS request: {e}"))
}

fn index(
    name: &str,
    hash: &str,
    range: &str,
    projection: Projection,
    billing: Billing,
) -> Result<GlobalSecondaryIndex, BackendError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key(range, KeyType::Range)?)
        .projection(projection)
        .set_provisioned_throughput(throughput(billing)?)
        .build()
        .map_err(build_error)
}

/// The table `name`, if it exists.
pub async fn describe(
    aws: &AwsClients,
    name: &str,
) -> Result<Option<TableDescription>, BackendError> {
    match aws.dynamodb.describe_table().table_name(name).send().await {
        Ok(out) => Ok(Some(
            out.table
                .unwrap_or_else(|| TableDescription::builder().build()),
        )),
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(remote(format!("DynamoDB DescribeTable {name}"), e)),
    }
}

/// Creates a table unless it exists; waits until it (and its indexes) are
/// active either way. An existing table must have `keys` and `indexes`,
/// except the indexes named in `addable` (added after the table first
/// shipped), which are added to it when missing.
#[allow(clippy::too_many_arguments)]
async fn ensure_table(
    aws: &AwsClients,
    name: &str,
    attrs: Vec<AttributeDefinition>,
    keys: Vec<KeySchemaElement>,
    indexes: Vec<GlobalSecondaryIndex>,
    addable: &[&str],
    billing: Billing,
    report: &mut Report,
) -> Result<(), BackendError> {
    if let Some(table) = describe(aws, name).await? {
        let missing = check_schema(name, &table, &keys, &indexes, addable)?;
        report.add("table", name, Action::Found);
        if !missing.is_empty() {
            wait_active(aws, name).await?;
            for index in missing {
                add_index(aws, name, &table, &attrs, index, billing, report).await?;
            }
            // Whatever happened (another provision may have added one at
            // the same time), the table must now have every index.
            let table = describe(aws, name)
                .await?
                .unwrap_or_else(|| TableDescription::builder().build());
            check_schema(name, &table, &keys, &indexes, &[])?;
        }
    } else {
        let req = aws
            .dynamodb
            .create_table()
            .table_name(name)
            .set_attribute_definitions(Some(attrs))
            .set_key_schema(Some(keys))
            .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
            .billing_mode(match billing {
                Billing::OnDemand => BillingMode::PayPerRequest,
                Billing::Provisioned { .. } => BillingMode::Provisioned,
            })
            .set_provisioned_throughput(throughput(billing)?);
        match req.send().await {
            Ok(_) => report.add("table", name, Action::Created),
            // Someone else is creating it right now.
            Err(e) if error_code(&e) == Some("ResourceInUseException") => {
                report.add("table", name, Action::Found)
            }
            Err(e) => return Err(remote(format!("DynamoDB CreateTable {name}"), e)),
        }
    }
    wait_active(aws, name).await
}

/// `day (HASH), at_sensor (RANGE)`.
fn keys_text(keys: &[KeySchemaElement]) -> String {
    let parts: Vec<String> = keys
        .iter()
        .map(|k| format!("{} ({})", k.attribute_name(), k.key_type().as_str()))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

fn same_keys(a: &[KeySchemaElement], b: &[KeySchemaElement]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.attribute_name() == y.attribute_name() && x.key_type() == y.key_type())
}

/// Adds `index` to the existing table `name` (one UpdateTable: DynamoDB
/// builds one new index at a time) and waits until it is built. The index
/// is billed as the table is.
async fn add_index(
    aws: &AwsClients,
    name: &str,
    table: &TableDescription,
    attrs: &[AttributeDefinition],
    index: &GlobalSecondaryIndex,
    billing: Billing,
    report: &mut Report,
) -> Result<(), BackendError> {
    let index_name = index.index_name();
    let on_demand = table.billing_mode_summary().and_then(|b| b.billing_mode())
        == Some(&BillingMode::PayPerRequest);
    let billing = match billing {
        _ if on_demand => Billing::OnDemand,
        Billing::Provisioned { .. } => billing,
        // A provisioned table asked for on demand: as much as the table.
        Billing::OnDemand => {
            let t = table.provisioned_throughput();
            Billing::Provisioned {
                read: t.and_then(|t| t.read_capacity_units()).unwrap_or(1).max(1),
                write: t.and_then(|t| t.write_capacity_units()).unwrap_or(1).max(1),
            }
        }
    };
    let used: Vec<AttributeDefinition> = attrs
        .iter()
        .filter(|a| {
            index
                .key_schema()
                .iter()
                .any(|k| k.attribute_name() == a.attribute_name())
        })
        .cloned()
        .collect();
    let create = CreateGlobalSecondaryIndexAction::builder()
        .index_name(index_name)
        .set_key_schema(Some(index.key_schema().to_vec()))
        .set_projection(index.projection().cloned())
        .set_provisioned_throughput(throughput(billing)?)
        .build()
        .map_err(build_error)?;
    let what = format!("{name} {index_name}");
    match aws
        .dynamodb
        .update_table()
        .table_name(name)
        .set_attribute_definitions(Some(used))
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder().create(create).build(),
        )
        .send()
        .await
    {
        Ok(_) => report.add("index", what, Action::Created),
        // Someone else is changing the table (adding it too, perhaps):
        // the check after the wait says whether it is there.
        Err(e) if error_code(&e) == Some("ResourceInUseException") => {}
        Err(e) => {
            return Err(remote(
                format!("DynamoDB UpdateTable {name} (adding {index_name})"),
                e,
            ))
        }
    }
    wait_active(aws, name).await
}

/// Refuses a table that exists under our name but with other keys or
/// without our indexes: finding it is not enough. The first version of this
/// system kept readings in a table of the same default name keyed by `id`
/// alone; using it would fail at the first query, far from the cause.
/// Returns the indexes named in `addable` that it lacks (to be added).
fn check_schema<'a>(
    name: &str,
    table: &TableDescription,
    keys: &[KeySchemaElement],
    indexes: &'a [GlobalSecondaryIndex],
    addable: &[&str],
) -> Result<Vec<&'a GlobalSecondaryIndex>, BackendError> {
    let mut missing = Vec::new();
    let advice = "it was made by something else (the first version of this system \
        used QualityAirTable keyed by id alone): choose other names with \
        --aws-prefix or the table flags, or delete that table";
    if !same_keys(table.key_schema(), keys) {
        return Err(BackendError::Schema(format!(
            "DynamoDB table {name} exists with the key {}, not the key {} airq needs; {advice}",
            keys_text(table.key_schema()),
            keys_text(keys),
        )));
    }
    for want in indexes {
        let want_name = want.index_name();
        let found = table
            .global_secondary_indexes()
            .iter()
            .find(|i| i.index_name() == Some(want_name));
        match found {
            Some(i) if same_keys(i.key_schema(), want.key_schema()) => {}
            Some(i) => {
                return Err(BackendError::Schema(format!(
                    "DynamoDB table {name} has an index {want_name} keyed {}, not {} as airq needs; {advice}",
                    keys_text(i.key_schema()),
                    keys_text(want.key_schema()),
                )))
            }
            None if addable.contains(&want_name) => missing.push(want),
            None => {
                return Err(BackendError::Schema(format!(
                    "DynamoDB table {name} exists without the index {want_name} airq needs; {advice}"
                )))
            }
        }
    }
    Ok(missing)
}

/// Waits (up to 10 minutes) until the table `name` and every index it has
/// are active: a new index is usable only once DynamoDB has built it.
pub async fn wait_active(aws: &AwsClients, name: &str) -> Result<(), BackendError> {
    let start = Instant::now();
    loop {
        let t = aws
            .dynamodb
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| remote(format!("DynamoDB DescribeTable {name}"), e))?
            .table;
        let ready = t.as_ref().is_some_and(|t| {
            t.table_status == Some(TableStatus::Active)
                && t.global_secondary_indexes()
                    .iter()
                    .all(|i| i.index_status == Some(aws_sdk_dynamodb::types::IndexStatus::Active))
        });
        if ready {
            return Ok(());
        }
        if start.elapsed() > TABLE_READY_TIMEOUT {
            return Err(BackendError::Remote {
                context: format!("DynamoDB table {name}"),
                message: format!("not active after {TABLE_READY_TIMEOUT:?}"),
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn ensure_ttl(
    aws: &AwsClients,
    table: &str,
    attribute: &str,
    report: &mut Report,
) -> Result<(), BackendError> {
    let current = aws
        .dynamodb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| remote(format!("DynamoDB DescribeTimeToLive {table}"), e))?
        .time_to_live_description;
    let on = current.as_ref().is_some_and(|d| {
        matches!(
            d.time_to_live_status,
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) && d.attribute_name.as_deref() == Some(attribute)
    });
    let what = format!("{table}.{attribute}");
    if on {
        report.add("time to live", what, Action::Found);
        return Ok(());
    }
    aws.dynamodb
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(attribute)
                .build()
                .map_err(build_error)?,
        )
        .send()
        .await
        .map_err(|e| remote(format!("DynamoDB UpdateTimeToLive {table}"), e))?;
    report.add("time to live", what, Action::Created);
    Ok(())
}

pub async fn ensure_readings_table(
    aws: &AwsClients,
    name: &str,
    billing: Billing,
    report: &mut Report,
) -> Result<(), BackendError> {
    let all = Projection::builder()
        .projection_type(ProjectionType::All)
        .build();
    ensure_table(
        aws,
        name,
        vec![
            attr(PARTITION_KEY, ScalarAttributeType::S)?,
            attr(SORT_KEY, ScalarAttributeType::S)?,
            attr(COUNTRY_SORT_KEY, ScalarAttributeType::S)?,
            attr(CELL_KEY, ScalarAttributeType::S)?,
        ],
        vec![
            key(PARTITION_KEY, KeyType::Hash)?,
            key(SORT_KEY, KeyType::Range)?,
        ],
        vec![
            index(
                BY_COUNTRY_INDEX,
                PARTITION_KEY,
                COUNTRY_SORT_KEY,
                all.clone(),
                billing,
            )?,
            index(BY_CELL_INDEX, CELL_KEY, SORT_KEY, all, billing)?,
        ],
        // Tables provisioned before place queries lack it; its items come
        // from `airq-deploy migrate`, which adds it too.
        &[BY_CELL_INDEX],
        billing,
        report,
    )
    .await?;
    // The live tier's hour items expire after the hourly retention.
    ensure_ttl(aws, name, READINGS_TTL_ATTRIBUTE, report).await
}

pub async fn ensure_results_table(
    aws: &AwsClients,
    name: &str,
    billing: Billing,
    report: &mut Report,
) -> Result<(), BackendError> {
    // The purge index carries only what a purge needs to decide.
    let purge = Projection::builder()
        .projection_type(ProjectionType::Include)
        .non_key_attributes("expires_at")
        .non_key_attributes("tombstone")
        .non_key_attributes("csv_key")
        .build();
    // The pending index only counts.
    let keys_only = Projection::builder()
        .projection_type(ProjectionType::KeysOnly)
        .build();
    ensure_table(
        aws,
        name,
        vec![
            attr("id", ScalarAttributeType::S)?,
            attr(GC_ATTRIBUTE, ScalarAttributeType::S)?,
            attr(PURGE_AT_ATTRIBUTE, ScalarAttributeType::N)?,
            attr(PENDING_CLIENT_ATTRIBUTE, ScalarAttributeType::S)?,
            attr(EXPIRES_AT_ATTRIBUTE, ScalarAttributeType::N)?,
        ],
        vec![key("id", KeyType::Hash)?],
        vec![
            index(
                BY_PURGE_INDEX,
                GC_ATTRIBUTE,
                PURGE_AT_ATTRIBUTE,
                purge,
                billing,
            )?,
            index(
                BY_PENDING_CLIENT_INDEX,
                PENDING_CLIENT_ATTRIBUTE,
                EXPIRES_AT_ATTRIBUTE,
                keys_only,
                billing,
            )?,
        ],
        // Tables provisioned before clients were recorded lack it.
        &[BY_PENDING_CLIENT_INDEX],
        billing,
        report,
    )
    .await?;
    ensure_ttl(aws, name, RESULT_TTL_ATTRIBUTE, report).await
}

pub async fn ensure_receipts_table(
    aws: &AwsClients,
    name: &str,
    billing: Billing,
    report: &mut Report,
) -> Result<(), BackendError> {
    ensure_table(
        aws,
        name,
        vec![attr(FENCE_KEY, ScalarAttributeType::S)?],
        vec![key(FENCE_KEY, KeyType::Hash)?],
        Vec::new(),
        &[],
        billing,
        report,
    )
    .await?;
    ensure_ttl(aws, name, FENCE_TTL, report).await
}

/// The API keys, by hash (no index: listing and revoking scan it).
pub async fn ensure_keys_table(
    aws: &AwsClients,
    name: &str,
    billing: Billing,
    report: &mut Report,
) -> Result<(), BackendError> {
    ensure_table(
        aws,
        name,
        vec![attr(KEY_HASH_ATTRIBUTE, ScalarAttributeType::S)?],
        vec![key(KEY_HASH_ATTRIBUTE, KeyType::Hash)?],
        Vec::new(),
        &[],
        billing,
        report,
    )
    .await
}

/// Alerts, their counts and deliveries (`airq_aws::DynamoAlertStore`),
/// with the sparse index of pending deliveries by when they are due.
pub async fn ensure_alerts_table(
    aws: &AwsClients,
    name: &str,
    billing: Billing,
    report: &mut Report,
) -> Result<(), BackendError> {
    let all = Projection::builder()
        .projection_type(ProjectionType::All)
        .build();
    ensure_table(
        aws,
        name,
        vec![
            attr(ALERTS_PK, ScalarAttributeType::S)?,
            attr(ALERTS_SK, ScalarAttributeType::S)?,
            attr(ALERTS_DUE_ATTRIBUTE, ScalarAttributeType::S)?,
            attr(ALERTS_NEXT_ATTRIBUTE, ScalarAttributeType::N)?,
        ],
        vec![
            key(ALERTS_PK, KeyType::Hash)?,
            key(ALERTS_SK, KeyType::Range)?,
        ],
        vec![index(
            BY_DUE_INDEX,
            ALERTS_DUE_ATTRIBUTE,
            ALERTS_NEXT_ATTRIBUTE,
            all,
            billing,
        )?],
        &[],
        billing,
        report,
    )
    .await
}

/// The URL of a queue, if it exists.
async fn queue_url(aws: &AwsClients, name: &str) -> Result<Option<String>, BackendError> {
    match aws.sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => Ok(out.queue_url),
        Err(e) if error_code(&e).is_some_and(|c| c.contains("NonExistentQueue")) => Ok(None),
        Err(e) => Err(remote(format!("SQS GetQueueUrl {name}"), e)),
    }
}

/// The queue's redrive policy, as SQS stores it.
fn redrive_policy(dlq_arn: &str, max_receives: u32) -> String {
    serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receives,
    })
    .to_string()
}

/// Whether two redrive policies say the same (SQS may return the count as
/// a string or a number).
fn same_redrive(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Option<(String, String)> {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        let arn = v.get("deadLetterTargetArn")?.as_str()?.to_owned();
        let count = match v.get("maxReceiveCount")? {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Some((arn, count))
    };
    parse(a).is_some_and(|pa| parse(b) == Some(pa))
}

/// Creates a queue and its dead-letter queue unless they exist, and makes
/// sure the queue redrives to it after `max_receives` receives.
pub async fn ensure_queue_pair(
    aws: &AwsClients,
    queue: &str,
    dlq: &str,
    max_receives: u32,
    report: &mut Report,
) -> Result<(), BackendError> {
    let dlq_url = match queue_url(aws, dlq).await? {
        Some(url) => {
            report.add("queue", dlq, Action::Found);
            url
        }
        None => {
            let url = aws
                .sqs
                .create_queue()
                .queue_name(dlq)
                .attributes(
                    QueueAttributeName::MessageRetentionPeriod,
                    DLQ_RETENTION_SECS.to_string(),
                )
                .send()
                .await
                .map_err(|e| remote(format!("SQS CreateQueue {dlq}"), e))?
                .queue_url
                .ok_or_else(|| BackendError::Corrupt(format!("SQS returned no URL for {dlq}")))?;
            report.add("queue", dlq, Action::Created);
            url
        }
    };
    let dlq_arn = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| remote(format!("SQS GetQueueAttributes {dlq}"), e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| BackendError::Corrupt(format!("SQS returned no ARN for {dlq}")))?;
    let policy = redrive_policy(&dlq_arn, max_receives);
    match queue_url(aws, queue).await? {
        None => {
            aws.sqs
                .create_queue()
                .queue_name(queue)
                .attributes(QueueAttributeName::RedrivePolicy, &policy)
                .send()
                .await
                .map_err(|e| remote(format!("SQS CreateQueue {queue}"), e))?;
            report.add("queue", queue, Action::Created);
        }
        Some(url) => {
            let current = aws
                .sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::RedrivePolicy)
                .send()
                .await
                .map_err(|e| remote(format!("SQS GetQueueAttributes {queue}"), e))?
                .attributes
                .and_then(|mut a| a.remove(&QueueAttributeName::RedrivePolicy));
            if current.as_deref().is_some_and(|c| same_redrive(c, &policy)) {
                report.add("queue", queue, Action::Found);
            } else {
                aws.sqs
                    .set_queue_attributes()
                    .queue_url(&url)
                    .attributes(QueueAttributeName::RedrivePolicy, &policy)
                    .send()
                    .await
                    .map_err(|e| remote(format!("SQS SetQueueAttributes {queue}"), e))?;
                report.add("queue", queue, Action::Updated);
            }
        }
    }
    Ok(())
}

fn lifecycle_rules(result_days: i32) -> Result<Vec<LifecycleRule>, BackendError> {
    let rule = |id: &str, prefix: &str, days: i32| {
        LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
            .expiration(LifecycleExpiration::builder().days(days).build())
            // A worker that died mid-upload leaves parts S3 would keep
            // (and bill) forever; a day is longer than any upload.
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(INCOMPLETE_UPLOAD_DAYS)
                    .build(),
            )
            .build()
            .map_err(build_error)
    };
    Ok(vec![
        rule(RESULTS_RULE, RESULTS_PREFIX, result_days)?,
        rule(MESSAGES_RULE, MESSAGES_PREFIX, MESSAGE_OBJECT_DAYS)?,
    ])
}

/// Creates the bucket unless it exists, with its expiry rules.
pub async fn ensure_bucket(
    aws: &AwsClients,
    bucket: &str,
    result_days: i32,
    report: &mut Report,
) -> Result<(), BackendError> {
    match aws.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => report.add("bucket", bucket, Action::Found),
        Err(e) if is_not_found(&e) => {
            let mut req = aws.s3.create_bucket().bucket(bucket);
            // us-east-1 is the one region that takes no location constraint.
            if let Some(region) = aws.region().filter(|r| *r != "us-east-1") {
                req = req.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(region))
                        .build(),
                );
            }
            match req.send().await {
                Ok(_) => report.add("bucket", bucket, Action::Created),
                Err(e) if error_code(&e) == Some("BucketAlreadyOwnedByYou") => {
                    report.add("bucket", bucket, Action::Found)
                }
                Err(e) => return Err(remote(format!("S3 CreateBucket {bucket}"), e)),
            }
        }
        Err(e) => return Err(remote(format!("S3 HeadBucket {bucket}"), e)),
    }

    let want = lifecycle_rules(result_days)?;
    let have = lifecycle(&aws.s3, bucket).await?;
    type Summary = (Option<String>, Option<i32>, Option<i32>);
    let summary = |rules: &[LifecycleRule]| -> Vec<Summary> {
        let mut v: Vec<_> = rules
            .iter()
            .filter(|r| matches!(r.id.as_deref(), Some(RESULTS_RULE | MESSAGES_RULE)))
            .map(|r| {
                (
                    r.id.clone(),
                    r.expiration.as_ref().and_then(|e| e.days),
                    r.abort_incomplete_multipart_upload
                        .as_ref()
                        .and_then(|a| a.days_after_initiation),
                )
            })
            .collect();
        v.sort();
        v
    };
    let what = format!("{bucket} (expiry after {result_days} days)");
    if summary(&have) == summary(&want) {
        report.add("bucket rules", what, Action::Found);
        return Ok(());
    }
    // Keep any rules of others, replace ours.
    let mut rules: Vec<LifecycleRule> = have
        .iter()
        .filter(|r| !matches!(r.id.as_deref(), Some(RESULTS_RULE | MESSAGES_RULE)))
        .cloned()
        .collect();
    let had_ours = rules.len() != have.len();
    rules.extend(want);
    aws.s3
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
                .map_err(build_error)?,
        )
        .send()
        .await
        .map_err(|e| remote(format!("S3 PutBucketLifecycleConfiguration {bucket}"), e))?;
    report.add(
        "bucket rules",
        what,
        if had_ours {
            Action::Updated
        } else {
            Action::Created
        },
    );
    Ok(())
}

fn is_not_found<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    use aws_sdk_s3::error::SdkError;
    match e {
        // HeadBucket answers with a bare 404, so there may be no code.
        SdkError::ServiceError(se) => {
            matches!(se.err().code(), Some("NotFound" | "NoSuchBucket"))
                || se.raw().status().as_u16() == 404
        }
        _ => false,
    }
}

/// Removes everything `names` designates (the bucket with its contents).
/// Missing resources are reported absent, not errors.
/// The template's logical ids of the tables a stack keeps when it is
/// deleted or replaces them (`DeletionPolicy: Retain`, deletion protection
/// and point-in-time recovery in `deploy/cloudformation/airq.yaml`; a test
/// holds the two to each other): what cannot be rebuilt.
pub const RETAINED_TABLES: [&str; 2] = ["ReadingsTable", "KeysTable"];

/// Deletes `table`; `false` if it does not exist. A table with deletion
/// protection on (the readings and keys tables a stack kept) is deleted
/// only if `delete_protected`, protection turned off first; otherwise the
/// error says how.
pub async fn delete_table(
    aws: &AwsClients,
    table: &str,
    delete_protected: bool,
) -> Result<bool, BackendError> {
    let protected = match aws.dynamodb.describe_table().table_name(table).send().await {
        Ok(out) => out
            .table
            .and_then(|t| t.deletion_protection_enabled)
            .unwrap_or(false),
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(false),
        Err(e) => return Err(remote(format!("DynamoDB DescribeTable {table}"), e)),
    };
    if protected {
        if !delete_protected {
            return Err(BackendError::Refused {
                what: format!("deleting table {table}"),
                reason: "it has deletion protection on (readings and API keys cannot be \
                         rebuilt); add --delete-data to turn it off and delete the table"
                    .to_owned(),
            });
        }
        aws.dynamodb
            .update_table()
            .table_name(table)
            .deletion_protection_enabled(false)
            .send()
            .await
            .map_err(|e| {
                remote(
                    format!("DynamoDB UpdateTable {table} (deletion protection off)"),
                    e,
                )
            })?;
    }
    match aws.dynamodb.delete_table().table_name(table).send().await {
        Ok(_) => Ok(true),
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(false),
        Err(e) => Err(remote(format!("DynamoDB DeleteTable {table}"), e)),
    }
}

pub async fn destroy(
    aws: &AwsClients,
    names: &ResourceNames,
    delete_protected: bool,
) -> Result<Report, BackendError> {
    let mut report = Report::default();
    for table in names.tables() {
        if delete_table(aws, table, delete_protected).await? {
            report.add("table", table, Action::Deleted);
        } else {
            report.add("table", table, Action::Absent);
        }
    }
    for (queue, dlq) in names.queues() {
        for name in [queue, dlq] {
            match queue_url(aws, &name).await? {
                Some(url) => {
                    aws.sqs
                        .delete_queue()
                        .queue_url(url)
                        .send()
                        .await
                        .map_err(|e| remote(format!("SQS DeleteQueue {name}"), e))?;
                    report.add("queue", name, Action::Deleted);
                }
                None => report.add("queue", name, Action::Absent),
            }
        }
    }
    let bucket = &names.bucket;
    match aws.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => {
            empty_bucket(aws, bucket).await?;
            aws.s3
                .delete_bucket()
                .bucket(bucket)
                .send()
                .await
                .map_err(|e| remote(format!("S3 DeleteBucket {bucket}"), e))?;
            report.add("bucket", bucket, Action::Deleted);
        }
        Err(e) if is_not_found(&e) => report.add("bucket", bucket, Action::Absent),
        Err(e) => return Err(remote(format!("S3 HeadBucket {bucket}"), e)),
    }
    Ok(report)
}

async fn empty_bucket(aws: &AwsClients, bucket: &str) -> Result<(), BackendError> {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    let mut token = None;
    loop {
        let page = aws
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| remote(format!("S3 ListObjectsV2 {bucket}"), e))?;
        let ids = page
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .map(|k| {
                ObjectIdentifier::builder()
                    .key(k)
                    .build()
                    .map_err(build_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !ids.is_empty() {
            aws.s3
                .delete_objects()
                .bucket(bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(ids))
                        .quiet(true)
                        .build()
                        .map_err(build_error)?,
                )
                .send()
                .await
                .map_err(|e| remote(format!("S3 DeleteObjects {bucket}"), e))?;
        }
        match page.next_continuation_token {
            Some(t) if page.is_truncated == Some(true) => token = Some(t),
            _ => return Ok(()),
        }
    }
}

/// A CloudFormation client with `aws`'s HTTP client, region and endpoint
/// (an emulator's, when set).
pub async fn cloudformation_client(aws: &AwsClients) -> aws_sdk_cloudformation::Client {
    let base = aws.sts.config();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(http) = base.http_client() {
        loader = loader.http_client(http);
    }
    if let Some(region) = base.region() {
        loader = loader.region(region.clone());
    }
    if let Some(url) = aws.endpoint() {
        loader = loader.endpoint_url(url);
    }
    aws_sdk_cloudformation::Client::new(&loader.load().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policies_compare_by_meaning() {
        let ours = redrive_policy("arn:aws:sqs:us-east-1:1:q-dlq", 3);
        assert!(same_redrive(
            &ours,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:q-dlq","maxReceiveCount":"3"}"#
        ));
        assert!(!same_redrive(
            &ours,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:q-dlq","maxReceiveCount":4}"#
        ));
        assert!(!same_redrive(&ours, "not json"));
    }
}
