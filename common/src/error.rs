//! The error type of every port (store, queue, result store), whatever the
//! backend behind it.

/// A backend could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("SQLite connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// A queue receipt that is not the one of the message's latest receive
    /// (or the message is gone).
    #[error("receipt is stale or unknown (the message was received again, or deleted)")]
    StaleReceipt,
    /// A remote service (DynamoDB, SQS, S3) refused or failed a call.
    #[error("{context}: {message}")]
    Remote { context: String, message: String },
    /// A store resource (a table, say) exists but is not shaped as this
    /// backend needs.
    #[error("{0}")]
    Schema(String),
    /// Stored data that cannot be decoded.
    #[error("corrupt data in the store: {0}")]
    Corrupt(String),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
