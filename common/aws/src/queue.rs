//! SQS standard queues behind the [`Queue`] port.
//!
//! - Long polling: a receive waits in SQS (up to 20 s per call, repeated
//!   while the caller's `wait` lasts) and takes up to 10 messages.
//! - Retry is the message coming back after its visibility timeout, never a
//!   re-sent copy, so SQS counts receives and its redrive policy moves a
//!   message that keeps failing to the dead-letter queue.
//! - Bodies over [`SQS_MAX_BODY`] go to S3 and the message carries a
//!   pointer, in the format of Amazon's "extended client" libraries; the
//!   receiver gets the original body back and deleting the message deletes
//!   the object.
//! - Receipts are fenced (see [`super::fence`]) so a stale receipt fails
//!   with [`BackendError::StaleReceipt`] as the port requires.
//!
//! Our receipt is `COUNT:MESSAGE_ID:S3_KEY:HANDLE` (the S3 key empty for
//! inline bodies). Message ids (UUIDs) and our S3 keys contain no `:`, and
//! the SQS receipt handle comes last, so it is taken whole.

use crate::blobs::BlobStore;
use crate::fence::ReceiptFence;
use crate::schema::MESSAGES_PREFIX;
use crate::{error_code, remote};
use airq_core::error::BackendError;
use airq_core::queue::{Message, Queue, QueueDepth, Receipt};
use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Largest body sent inline: SQS's classic message size limit (256 KiB).
pub const SQS_MAX_BODY: usize = 256 * 1024;
/// SQS's longest long poll.
const MAX_WAIT_SECS: u64 = 20;
/// The message attribute marking an S3-backed body (as the extended
/// client libraries name it), holding the original size in bytes.
const PAYLOAD_SIZE_ATTRIBUTE: &str = "ExtendedPayloadSize";
/// The pointer's class name in the extended-client body format.
const POINTER_CLASS: &str = "software.amazon.payloadoffloading.PayloadS3Pointer";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Pointer {
    s3_bucket_name: String,
    s3_key: String,
}

/// Whole seconds, rounded up, as SQS takes them.
fn secs_ceil(d: Duration) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(s).unwrap_or(i32::MAX)
}

struct ParsedReceipt<'a> {
    count: u32,
    message_id: &'a str,
    s3_key: Option<&'a str>,
    handle: &'a str,
}

fn parse_receipt(r: &Receipt) -> Result<ParsedReceipt<'_>, BackendError> {
    let mut parts = r.0.splitn(4, ':');
    let (Some(count), Some(message_id), Some(s3_key), Some(handle)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BackendError::StaleReceipt);
    };
    Ok(ParsedReceipt {
        count: count.parse().map_err(|_| BackendError::StaleReceipt)?,
        message_id,
        s3_key: Some(s3_key).filter(|k| !k.is_empty()),
        handle,
    })
}

/// Error codes meaning "this receipt no longer designates an in-flight
/// message".
fn is_stale(code: Option<&str>) -> bool {
    code.is_some_and(|c| {
        c == "ReceiptHandleIsInvalid"
            || c.ends_with("ReceiptHandleIsInvalid")
            || c.ends_with("MessageNotInflight")
    })
}

/// One SQS queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    sqs: aws_sdk_sqs::Client,
    name: String,
    url: String,
    fence: ReceiptFence,
    blobs: BlobStore,
}

impl SqsQueue {
    /// Looks the queue's URL up by name; fails if it does not exist.
    pub async fn open(
        sqs: aws_sdk_sqs::Client,
        name: &str,
        fence: ReceiptFence,
        blobs: BlobStore,
    ) -> Result<SqsQueue, BackendError> {
        let url = sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| {
                remote(
                    format!("SQS GetQueueUrl {name} (was `airq-deploy provision` run?)"),
                    e,
                )
            })?
            .queue_url
            .ok_or_else(|| BackendError::Corrupt(format!("SQS returned no URL for {name}")))?;
        Ok(SqsQueue {
            sqs,
            name: name.to_owned(),
            url,
            fence,
            blobs,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One `ReceiveMessage` call, waiting up to `wait_secs` in SQS.
    async fn receive_once(
        &self,
        max: i32,
        visibility: Duration,
        wait_secs: i32,
    ) -> Result<Vec<Message>, BackendError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .visibility_timeout(secs_ceil(visibility))
            .wait_time_seconds(wait_secs)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names(PAYLOAD_SIZE_ATTRIBUTE)
            .send()
            .await
            .map_err(|e| remote(format!("SQS ReceiveMessage {}", self.name), e))?;
        let accepted = futures::future::join_all(
            out.messages
                .unwrap_or_default()
                .into_iter()
                .map(|m| self.accept(m)),
        )
        .await;
        // One message whose body or fence entry cannot be had is skipped (it
        // comes back after its visibility timeout); the others are
        // delivered. Only when every one failed is the receive an error.
        let mut messages = Vec::with_capacity(accepted.len());
        let mut first_error = None;
        for a in accepted {
            match a {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(queue = %self.name, error = %e,
                        "could not take a received message; it will come back");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if messages.is_empty() => Err(e),
            _ => Ok(messages),
        }
    }

    /// Turns a received SQS message into ours: fetches an S3-backed body
    /// and records the receive in the fence.
    async fn accept(
        &self,
        m: aws_sdk_sqs::types::Message,
    ) -> Result<Option<Message>, BackendError> {
        let (Some(id), Some(handle)) = (m.message_id.clone(), m.receipt_handle.clone()) else {
            tracing::warn!(queue = %self.name, "SQS returned a message without id or receipt");
            return Ok(None);
        };
        let count: u32 = m
            .attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let mut body = m.body.clone().unwrap_or_default();
        let mut s3_key = String::new();
        let offloaded = m
            .message_attributes
            .as_ref()
            .is_some_and(|a| a.contains_key(PAYLOAD_SIZE_ATTRIBUTE));
        if offloaded {
            // Only a pointer into our own bucket's message area is followed:
            // a body naming another bucket, or a key our receipts cannot
            // carry, is not ours to read or delete. Such a message, or one
            // whose body is gone, is not delivered: it returns after its
            // visibility timeout and, after the maximum receives, waits in
            // the dead-letter queue for an operator (never silently lost).
            let pointer = serde_json::from_str::<(String, S3Pointer)>(&body)
                .ok()
                .map(|(_, p)| p)
                .filter(|p| {
                    p.s3_bucket_name == self.blobs.bucket()
                        && p.s3_key.starts_with(MESSAGES_PREFIX)
                        && !p.s3_key.contains(':')
                });
            let Some(p) = pointer else {
                tracing::error!(queue = %self.name, message = %id, body = %body,
                    "an offloaded message has a pointer that is not ours; not delivering it");
                return Ok(None);
            };
            match self.blobs.get(&p.s3_key).await? {
                Some(full) => {
                    body = full;
                    s3_key = p.s3_key;
                }
                None => {
                    tracing::error!(queue = %self.name, message = %id, key = %p.s3_key,
                        "the body of an offloaded message is gone from S3; not delivering it");
                    return Ok(None);
                }
            }
        }
        self.fence.record(&self.name, &id, count).await?;
        Ok(Some(Message {
            receipt: Receipt(format!("{count}:{id}:{s3_key}:{handle}")),
            id,
            body,
            receive_count: count,
        }))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, body: &str) -> Result<String, BackendError> {
        let mut req = self.sqs.send_message().queue_url(&self.url);
        let mut offloaded = None;
        if body.len() > SQS_MAX_BODY {
            let key = format!("{MESSAGES_PREFIX}{}/{}", self.name, Uuid::new_v4());
            offloaded = Some(key.clone());
            self.blobs
                .put(&key, body.as_bytes().to_vec(), "application/json")
                .await?;
            let pointer = serde_json::to_string(&(
                POINTER_CLASS,
                S3Pointer {
                    s3_bucket_name: self.blobs.bucket().to_owned(),
                    s3_key: key,
                },
            ))
            .map_err(|e| BackendError::Corrupt(format!("encoding an S3 pointer: {e}")))?;
            let size = MessageAttributeValue::builder()
                .data_type("Number")
                .string_value(body.len().to_string())
                .build()
                .map_err(|e| BackendError::Corrupt(format!("building a message attribute: {e}")))?;
            req = req
                .message_body(pointer)
                .message_attributes(PAYLOAD_SIZE_ATTRIBUTE, size);
        } else {
            req = req.message_body(body);
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) => {
                // The body uploaded for this message has no message now.
                if let Some(key) = offloaded {
                    self.blobs.delete_quietly(&key).await;
                }
                return Err(remote(format!("SQS SendMessage {}", self.name), e));
            }
        };
        out.message_id.ok_or_else(|| {
            BackendError::Corrupt(format!("SQS returned no message id ({})", self.name))
        })
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Message>, BackendError> {
        let max = i32::try_from(max.clamp(1, 10)).unwrap_or(10);
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait_secs = secs_ceil(left).min(MAX_WAIT_SECS as i32);
            let got = self.receive_once(max, visibility, wait_secs).await?;
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
        }
    }

    async fn delete(&self, receipt: &Receipt) -> Result<(), BackendError> {
        let r = parse_receipt(receipt)?;
        self.fence.check(&self.name, r.message_id, r.count).await?;
        match self
            .sqs
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(r.handle)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_stale(error_code(&e)) => return Err(BackendError::StaleReceipt),
            Err(e) => return Err(remote(format!("SQS DeleteMessage {}", self.name), e)),
        }
        self.fence.forget(&self.name, r.message_id, r.count).await;
        if let Some(key) = r.s3_key {
            self.blobs.delete_quietly(key).await;
        }
        Ok(())
    }

    async fn change_visibility(
        &self,
        receipt: &Receipt,
        visibility: Duration,
    ) -> Result<(), BackendError> {
        let r = parse_receipt(receipt)?;
        self.fence.check(&self.name, r.message_id, r.count).await?;
        match self
            .sqs
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(r.handle)
            .visibility_timeout(secs_ceil(visibility))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_stale(error_code(&e)) => Err(BackendError::StaleReceipt),
            Err(e) => Err(remote(
                format!("SQS ChangeMessageVisibility {}", self.name),
                e,
            )),
        }
    }

    async fn depth(&self) -> Result<QueueDepth, BackendError> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| remote(format!("SQS GetQueueAttributes {}", self.name), e))?;
        let attrs = out.attributes.unwrap_or_default();
        let get = |a: QueueAttributeName| -> u64 {
            attrs.get(&a).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_round_trip() {
        let r = Receipt("3:abc-def::AQEB+/x:y==".into());
        let p = parse_receipt(&r).unwrap();
        assert_eq!(
            (p.count, p.message_id, p.s3_key, p.handle),
            (3, "abc-def", None, "AQEB+/x:y==")
        );
        let r = Receipt("1:id:messages/q/k:h".into());
        assert_eq!(parse_receipt(&r).unwrap().s3_key, Some("messages/q/k"));
        assert!(matches!(
            parse_receipt(&Receipt("garbage".into())),
            Err(BackendError::StaleReceipt)
        ));
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(secs_ceil(Duration::ZERO), 0);
        assert_eq!(secs_ceil(Duration::from_millis(300)), 1);
        assert_eq!(secs_ceil(Duration::from_secs(2)), 2);
        assert_eq!(secs_ceil(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn pointer_format_is_the_extended_clients() {
        let json = serde_json::to_string(&(
            POINTER_CLASS,
            S3Pointer {
                s3_bucket_name: "b".into(),
                s3_key: "k".into(),
            },
        ))
        .unwrap();
        assert_eq!(
            json,
            r#"["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"b","s3Key":"k"}]"#
        );
    }
}
