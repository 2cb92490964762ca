//! `airq-deploy migrate`: brings a readings table made before the US EPA
//! AQI, the EAQI, place queries and latest readings up to date, on a live
//! deployment.
//!
//! 1. The `by_cell` index: on a plain deployment it is added here when
//!    missing (one `UpdateTable`, then a wait until DynamoDB has built it),
//!    as `provision` would; on a CloudFormation stack the template owns the
//!    table's indexes (an index added behind its back would make the next
//!    stack update fail), so there the stack update adds it and this step
//!    only checks that it is there and waits until it is active.
//! 2. The items (`DynamoReadingStore::migrate`): every reading lacking the
//!    new attributes gets them, the latest shards are built, and per-sensor
//!    latest items of an older airq are deleted.
//!
//! Idempotent: running it again only re-reads. The binaries of this
//! version refuse items of the old shape with an error naming this
//! command, so the order on a live stack is: update the stack (the index),
//! run `migrate`, roll out the new binaries, and run `migrate` once more
//! for whatever the old master wrote in between.

use crate::provision::{describe, ensure_readings_table, wait_active, Action, Billing, Report};
use airq_aws::schema::BY_CELL_INDEX;
use airq_aws::{remote, AwsClients, DynamoReadingStore, MigrateOptions, MigrateProgress};
use airq_core::error::BackendError;
use aws_sdk_dynamodb::types::TableDescription;

/// The tag CloudFormation puts on what a stack made.
const STACK_TAG: &str = "aws:cloudformation:stack-name";

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// The index step (`found` or `created`).
    pub index: Report,
    pub items: MigrateProgress,
}

/// Migrates the readings table `table`. With `stack`, the table belongs to
/// that CloudFormation stack, whose template must already have added the
/// index. `progress` is called as the scan goes (see
/// `DynamoReadingStore::migrate`).
pub async fn migrate(
    aws: &AwsClients,
    table: &str,
    stack: Option<&str>,
    options: &MigrateOptions,
    progress: &(dyn Fn(&MigrateProgress) + Send + Sync),
) -> Result<MigrateReport, BackendError> {
    let Some(found) = describe(aws, table).await? else {
        return Err(BackendError::Schema(format!(
            "DynamoDB table {table} does not exist: nothing to migrate (check --aws-prefix \
             and --readings-table; `airq-deploy provision` makes a new deployment)"
        )));
    };
    let mut index = Report::default();
    let what = format!("{table} {BY_CELL_INDEX}");
    let has_index = found
        .global_secondary_indexes()
        .iter()
        .any(|i| i.index_name() == Some(BY_CELL_INDEX));
    if has_index {
        index.add("index", what, Action::Found);
        wait_active(aws, table).await?;
    } else {
        if let Some(stack) = stack {
            return Err(stack_first(table, stack));
        }
        if let Some(owner) = stack_of(aws, &found).await? {
            return Err(stack_first(table, &owner));
        }
        ensure_readings_table(aws, table, Billing::OnDemand, &mut index).await?;
    }
    let store = DynamoReadingStore::new(aws.dynamodb.clone(), table);
    let items = store.migrate(options, progress).await?;
    Ok(MigrateReport { index, items })
}

fn stack_first(table: &str, stack: &str) -> BackendError {
    BackendError::Schema(format!(
        "DynamoDB table {table} belongs to the CloudFormation stack {stack} and has no \
         {BY_CELL_INDEX} index yet: update the stack first (`airq-deploy provision --stack \
         {stack}`: its template adds the index), then run migrate again"
    ))
}

/// The CloudFormation stack that made the table, from the tag
/// CloudFormation puts on it. A table whose tags cannot be read is not
/// assumed to be free: adding an index to a stack's table would break the
/// stack's next update.
async fn stack_of(
    aws: &AwsClients,
    table: &TableDescription,
) -> Result<Option<String>, BackendError> {
    let name = table.table_name().unwrap_or("?");
    let Some(arn) = table.table_arn() else {
        return Err(BackendError::Remote {
            context: format!("DynamoDB DescribeTable {name}"),
            message: "no table ARN in the answer".into(),
        });
    };
    let mut token = None;
    loop {
        let out = aws
            .dynamodb
            .list_tags_of_resource()
            .resource_arn(arn)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| {
                remote(
                    format!(
                        "DynamoDB ListTagsOfResource {name} (to check that no CloudFormation \
                         stack owns the table before adding an index; with a stack, pass --stack)"
                    ),
                    e,
                )
            })?;
        if let Some(tag) = out.tags().iter().find(|t| t.key() == STACK_TAG) {
            return Ok(Some(tag.value().to_owned()));
        }
        match out.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(None),
        }
    }
}
