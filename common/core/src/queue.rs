//! The message queue port, with the semantics of Amazon SQS standard queues
//! so that every backend behaves the same:
//!
//! - a received message is invisible for its visibility timeout, then comes
//!   back unless deleted;
//! - each receive hands out a new receipt, and only the latest one deletes
//!   the message or changes its visibility;
//! - each message counts its receives, and a message received more than the
//!   queue's maximum is moved to its dead-letter queue instead of delivered;
//! - delivery is at least once: consumers must be idempotent.

use crate::error::BackendError;
use async_trait::async_trait;
use std::time::Duration;

/// Proof of one particular receive of a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub body: String,
    pub receipt: Receipt,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
}

/// Messages in a queue, as far as the backend knows (SQS approximates).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    /// Waiting to be received.
    pub visible: u64,
    /// Received and not yet deleted or returned.
    pub in_flight: u64,
}

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// The queue's name, for logs.
    fn name(&self) -> &str;

    /// Enqueues a message; returns its id.
    async fn send(&self, body: &str) -> Result<String, BackendError>;

    /// Receives up to `max` messages, making them invisible for `visibility`.
    /// Waits up to `wait` for the first message to arrive (long polling) and
    /// returns an empty list if none did.
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Message>, BackendError>;

    /// Deletes a message by the receipt of its latest receive.
    async fn delete(&self, receipt: &Receipt) -> Result<(), BackendError>;

    /// Sets a received message's remaining invisibility, counted from now;
    /// zero makes it visible again at once.
    async fn change_visibility(
        &self,
        receipt: &Receipt,
        visibility: Duration,
    ) -> Result<(), BackendError>;

    async fn depth(&self) -> Result<QueueDepth, BackendError>;
}
