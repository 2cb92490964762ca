//! The AWS backend: every port on Amazon DynamoDB (readings, results,
//! receipt fences, API keys, alerts), Amazon SQS (the queues and their dead-letter
//! queues) and Amazon S3 (payloads too large for a message or an item).
//!
//! Credentials, region and profiles come from the standard AWS configuration
//! chain (`aws-config`); nothing here ever sees or logs a secret. An endpoint
//! URL (`--endpoint-url`, or the chain's own `AWS_ENDPOINT_URL`) points every
//! client at an emulator such as moto.
//!
//! See ARCHITECTURE.md ("The AWS backend") for the table designs and their
//! read costs.

mod alerts;
mod blobs;
mod config;
mod fence;
mod keys;
mod migrate;
pub mod permissions;
mod queue;
mod readings;
mod results;
mod retry;
pub mod schema;
mod transact;

pub use alerts::DynamoAlertStore;
pub use blobs::{BlobStore, Fetched};
pub use config::{AwsArgs, AwsClients, ResourceNames};
pub use fence::ReceiptFence;
pub use keys::DynamoKeyStore;
pub use migrate::{MigrateOptions, MigrateProgress};
pub use queue::{SqsQueue, SQS_MAX_BODY};
pub use readings::{
    day_of, hour_partition_of, latest_partition_of, DynamoReadingStore, LatestWrites,
    BATCH_WRITE_MAX, LATEST_SHARDS,
};
pub use results::{DynamoResultStore, INLINE_ANSWER_MAX};
pub use retry::RetryPolicy;

use airq_core::BackendError;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use std::fmt::Debug;

/// A failed SDK call as a [`BackendError::Remote`], with the whole error
/// chain (service code and message, or the transport failure).
pub fn remote<E, R>(context: impl Into<String>, err: SdkError<E, R>) -> BackendError
where
    E: std::error::Error + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    BackendError::Remote {
        context: context.into(),
        message: DisplayErrorContext(&err).to_string(),
    }
}

/// The service's error code, if the service answered with one.
pub fn error_code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// Whether a conditional write failed its condition. `typed` is the
/// operation's own check (`is_conditional_check_failed_exception`): an
/// error the SDK built from a typed variant (as tests' mocks do) may carry
/// no code, and a service's code alone is what other clients' errors give.
pub(crate) fn condition_failed<E, R>(err: &SdkError<E, R>, typed: impl Fn(&E) -> bool) -> bool
where
    E: ProvideErrorMetadata,
{
    error_code(err) == Some("ConditionalCheckFailedException")
        || matches!(err, SdkError::ServiceError(e) if typed(e.err()))
}

/// Error codes that mean "slow down or try again": throttling and the
/// service's own transient failures. Retried with backoff, on top of the
/// SDK's own few attempts.
pub(crate) fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "Throttling"
                | "RequestLimitExceeded"
                | "TooManyRequestsException"
                | "InternalServerError"
                | "ServiceUnavailable"
                | "SlowDown"
        )
    )
}
