//! The error type of every port (store, queue, result store), whatever the
//! backend behind it.

/// A backend could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A store on this machine (the embedded backend's database file, its
    /// connection pool, or the blocking task that ran a call) failed.
    /// `what` names the part that failed, for the message.
    #[error("{what}: {source}")]
    Local {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A queue receipt that is not the one of the message's latest receive
    /// (or the message is gone).
    #[error("receipt is stale or unknown (the message was received again, or deleted)")]
    StaleReceipt,
    /// The store refused a write for a reason a retry will not fix soon:
    /// no space left, no permission, a read-only file system.
    #[error("{what}: {reason}")]
    Refused { what: String, reason: String },
    /// A remote service (DynamoDB, SQS, S3) refused or failed a call.
    #[error("{context}: {message}")]
    Remote { context: String, message: String },
    /// A store resource (a table, say) exists but is not shaped as this
    /// backend needs.
    #[error("{0}")]
    Schema(String),
    /// This build or backend cannot do what was asked (a binary built
    /// without the AWS backend asked for it, say).
    #[error("{0}")]
    Unsupported(String),
    /// Stored data that cannot be decoded.
    #[error("corrupt data in the store: {0}")]
    Corrupt(String),
}
