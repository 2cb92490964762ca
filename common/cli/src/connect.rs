//! `--backend` and its settings, and the connected ports they produce.
//!
//! The AWS backend is compiled in with the `aws` feature (on by default in
//! every binary). Without it, `--backend aws` is refused with a message
//! saying how to build it in, and the AWS flags do not exist.

use crate::defaults;
#[cfg(feature = "aws")]
use airq_aws::{
    AwsArgs, BlobStore, DynamoAlertStore, DynamoKeyStore, DynamoReadingStore, DynamoResultStore,
    ReceiptFence, SqsQueue,
};
use airq_core::job::{dead_letter_name, REQUEST_RECEIVE, REQUEST_SEND};
use airq_core::queue::Queue;
use airq_core::store::ReadingStore;
use airq_core::{Backend, BackendError};
use airq_embedded::{
    Db, Redrive, SqliteAlertStore, SqliteKeyStore, SqliteQueue, SqliteReadingStore,
    SqliteResultStore,
};
use std::path::PathBuf;
use std::sync::Arc;

/// What `--backend aws` answers in a binary built without the AWS backend.
pub const NO_AWS: &str = "this binary was built without the AWS backend; \
rebuild it with the `aws` feature (on by default: `cargo build --release`, \
not `--no-default-features`)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// One SQLite file on this machine (no server needed).
    Embedded,
    /// DynamoDB, SQS and S3 (provisioned by `airq-deploy provision`).
    Aws,
}

/// Backend flags, shared by every binary (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Where readings, queues and results live.
    #[arg(
        long,
        env = "AIRQ_BACKEND",
        value_enum,
        default_value = "embedded",
        global = true
    )]
    pub backend: BackendKind,

    /// The SQLite file of the embedded backend (created if missing).
    #[arg(long, env = "AIRQ_DB", default_value = defaults::DB, global = true)]
    pub db: PathBuf,

    /// Receives after which a request that keeps failing is moved to the
    /// dead-letter queue (and reported to its user as failed). On AWS the
    /// queues' redrive policy, set by `airq-deploy provision`, decides.
    #[arg(long, env = "AIRQ_MAX_RECEIVES", default_value_t = defaults::MAX_RECEIVES, global = true)]
    pub max_receives: u32,

    /// Answer segments: each day's rows stored already rendered, beside
    /// the SQLite file (`<db>-segments/`) on the embedded backend, in the
    /// bucket (`segments/`, the daily series) on AWS; built by the master
    /// after each ingestion and read by large answers (docs/internals.md).
    /// `false`: neither built nor read; answers are the same bytes either
    /// way.
    #[arg(
        long,
        env = "AIRQ_ANSWER_SEGMENTS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub answer_segments: bool,

    #[cfg(feature = "aws")]
    #[command(flatten)]
    pub aws: AwsArgs,
}

impl BackendArgs {
    /// Only the reading store (for the master, which needs no queue).
    pub async fn reading_store(&self) -> Result<Arc<dyn ReadingStore>, BackendError> {
        self.reading_store_keeping(None).await
    }

    /// [`Self::reading_store`], telling it how long the hourly series is
    /// kept (the master's `--hourly-retention`): on AWS the live tier's
    /// items expire after it (DynamoDB's TTL); the embedded store is
    /// pruned by the schedule alone.
    pub async fn reading_store_keeping(
        &self,
        hourly_retention: Option<std::time::Duration>,
    ) -> Result<Arc<dyn ReadingStore>, BackendError> {
        let _ = hourly_retention;
        match self.backend {
            BackendKind::Embedded => {
                let db = Db::open(&self.db)?;
                Ok(Arc::new(
                    SqliteReadingStore::new(db).with_segments(self.answer_segments),
                ))
            }
            #[cfg(not(feature = "aws"))]
            BackendKind::Aws => Err(BackendError::Unsupported(NO_AWS.into())),
            #[cfg(feature = "aws")]
            BackendKind::Aws => {
                let clients = self.aws.clients().await?;
                let mut store = DynamoReadingStore::new(
                    clients.dynamodb.clone(),
                    self.aws.readings_table_name(),
                );
                if let Some(keep) = hourly_retention {
                    store = store.with_live_retention(keep);
                }
                if self.answer_segments {
                    let names = self.aws.names(&clients).await?;
                    store = store.with_segments(BlobStore::new(clients.s3.clone(), names.bucket));
                }
                // Fail now, clearly, rather than at the first write.
                store.ping().await.map_err(|e| BackendError::Remote {
                    context: format!("{} (was `airq-deploy provision` run?)", clients.location()),
                    message: e.to_string(),
                })?;
                Ok(Arc::new(store))
            }
        }
    }

    pub async fn connect(&self) -> Result<Backend, BackendError> {
        match self.backend {
            #[cfg(not(feature = "aws"))]
            BackendKind::Aws => Err(BackendError::Unsupported(NO_AWS.into())),
            #[cfg(feature = "aws")]
            BackendKind::Aws => connect_aws(&self.aws, self.answer_segments).await,
            BackendKind::Embedded => {
                let db = Db::open(&self.db)?;
                let queue = |name: &str| -> Arc<dyn Queue> {
                    Arc::new(SqliteQueue::new(
                        db.clone(),
                        name,
                        Some(Redrive {
                            dead_letter: dead_letter_name(name),
                            max_receives: self.max_receives,
                        }),
                    ))
                };
                let dlq = |name: &str| -> Arc<dyn Queue> {
                    Arc::new(SqliteQueue::new(db.clone(), &dead_letter_name(name), None))
                };
                Ok(Backend {
                    readings: Arc::new(
                        SqliteReadingStore::new(db.clone()).with_segments(self.answer_segments),
                    ),
                    results: Arc::new(SqliteResultStore::new(db.clone())),
                    request_send: queue(REQUEST_SEND),
                    request_send_dlq: dlq(REQUEST_SEND),
                    request_receive: queue(REQUEST_RECEIVE),
                    request_receive_dlq: dlq(REQUEST_RECEIVE),
                    keys: Arc::new(SqliteKeyStore::new(db.clone())),
                    alerts: Some(Arc::new(SqliteAlertStore::new(db.clone()))),
                    location: self.db.display().to_string(),
                })
            }
        }
    }
}

/// Every port on AWS. Fails if the queues do not exist (not provisioned).
#[cfg(feature = "aws")]
async fn connect_aws(args: &AwsArgs, answer_segments: bool) -> Result<Backend, BackendError> {
    let clients = args.clients().await?;
    let names = args.names(&clients).await?;
    let blobs = BlobStore::new(clients.s3.clone(), names.bucket.clone());
    let fence = ReceiptFence::new(clients.dynamodb.clone(), names.receipts_table.clone());
    let queue = |name: String| {
        let (sqs, fence, blobs) = (clients.sqs.clone(), fence.clone(), blobs.clone());
        async move {
            SqsQueue::open(sqs, &name, fence, blobs)
                .await
                .map(|q| Arc::new(q) as Arc<dyn Queue>)
        }
    };
    let [(send, send_dlq), (receive, receive_dlq)] = names.queues();
    let (request_send, request_send_dlq, request_receive, request_receive_dlq) = tokio::try_join!(
        queue(send),
        queue(send_dlq),
        queue(receive),
        queue(receive_dlq)
    )?;
    Ok(Backend {
        readings: Arc::new({
            let store =
                DynamoReadingStore::new(clients.dynamodb.clone(), names.readings_table.clone());
            match answer_segments {
                true => store.with_segments(blobs.clone()),
                false => store,
            }
        }),
        results: Arc::new(DynamoResultStore::new(
            clients.dynamodb.clone(),
            names.results_table.clone(),
            blobs,
        )),
        request_send,
        request_send_dlq,
        request_receive,
        request_receive_dlq,
        keys: Arc::new(DynamoKeyStore::new(
            clients.dynamodb.clone(),
            names.keys_table.clone(),
        )),
        // Only the gateway uses it (the worker's role has no grant on it).
        alerts: Some(Arc::new(DynamoAlertStore::new(
            clients.dynamodb.clone(),
            names.alerts_table.clone(),
        ))),
        location: clients.location(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        backend: BackendArgs,
    }

    #[test]
    fn defaults_are_the_shared_constants() {
        let cli = Cli::try_parse_from(["bin"]).unwrap();
        assert_eq!(cli.backend.backend, BackendKind::Embedded);
        assert_eq!(cli.backend.db, PathBuf::from(defaults::DB));
        assert_eq!(cli.backend.max_receives, defaults::MAX_RECEIVES);
    }

    /// Run by scripts/test.sh with `--no-default-features --features connect`.
    #[cfg(not(feature = "aws"))]
    #[tokio::test]
    async fn without_the_aws_feature_aws_is_refused_saying_how_to_build_it() {
        let cli = Cli::try_parse_from(["bin", "--backend", "aws"]).unwrap();
        let err = match cli.backend.connect().await {
            Ok(_) => panic!("connected to AWS in a build without it"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("built without the AWS backend"), "{err}");
        assert!(err.contains("`aws` feature"), "{err}");
        let err = match cli.backend.reading_store().await {
            Ok(_) => panic!("opened an AWS store in a build without it"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("built without the AWS backend"), "{err}");
    }
}
