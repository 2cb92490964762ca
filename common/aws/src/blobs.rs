//! Payloads too large for an SQS message or a DynamoDB item, in S3.

use crate::{error_code, remote};
use airq_core::error::BackendError;
use airq_core::results::ByteStream as Bytes;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::StreamExt;
use std::ops::Range;

/// The size of each part of a multipart upload but the last. S3 wants at
/// least 5 MiB; a writer holds one part in memory.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// What [`BlobStore::get_bytes_unlisted`] found.
#[derive(Debug)]
pub enum Fetched {
    Bytes(bytes::Bytes),
    Missing,
    /// Larger than asked for: this many bytes.
    TooLarge(u64),
}

/// One bucket of large payloads. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BlobStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl BlobStore {
    pub fn new(s3: aws_sdk_s3::Client, bucket: impl Into<String>) -> BlobStore {
        BlobStore {
            s3,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }

    pub async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), BackendError> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| remote(format!("S3 PutObject s3://{}/{key}", self.bucket), e))?;
        Ok(())
    }

    /// The object as text; `None` if it does not exist (any more).
    pub async fn get(&self, key: &str) -> Result<Option<String>, BackendError> {
        let Some(bytes) = self.get_bytes(key).await? else {
            return Ok(None);
        };
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| BackendError::Corrupt(format!("s3://{}/{key} is not UTF-8", self.bucket)))
    }

    /// The object's bytes; `None` if it does not exist (any more).
    pub async fn get_bytes(&self, key: &str) -> Result<Option<bytes::Bytes>, BackendError> {
        Ok(
            match self.get_bytes_where(key, &["NoSuchKey"], u64::MAX).await? {
                Fetched::Bytes(b) => Some(b),
                Fetched::Missing | Fetched::TooLarge(_) => None,
            },
        )
    }

    /// The object's bytes unless it is larger than `max` (its body is then
    /// not read), taking `AccessDenied` for "does not exist" as well: S3
    /// says so of a missing key to a reader without `s3:ListBucket`, which
    /// no airq role has (it would let a reader list the result objects'
    /// keys). For objects a reader may find gone and can do without
    /// (answer segments: their day is read from its items).
    pub async fn get_bytes_unlisted(&self, key: &str, max: u64) -> Result<Fetched, BackendError> {
        self.get_bytes_where(key, &["NoSuchKey", "AccessDenied"], max)
            .await
    }

    async fn get_bytes_where(
        &self,
        key: &str,
        missing: &[&str],
        max: u64,
    ) -> Result<Fetched, BackendError> {
        let out = match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if error_code(&e).is_some_and(|c| missing.contains(&c)) => {
                return Ok(Fetched::Missing)
            }
            Err(e) => {
                return Err(remote(
                    format!("S3 GetObject s3://{}/{key}", self.bucket),
                    e,
                ))
            }
        };
        let length = out
            .content_length
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        if length > max {
            return Ok(Fetched::TooLarge(length));
        }
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| BackendError::Remote {
                context: format!("reading s3://{}/{key}", self.bucket),
                message: e.to_string(),
            })?
            .into_bytes();
        if bytes.len() as u64 > max {
            return Ok(Fetched::TooLarge(bytes.len() as u64));
        }
        Ok(Fetched::Bytes(bytes))
    }

    /// The object's size; `None` if it does not exist (any more).
    pub async fn size(&self, key: &str) -> Result<Option<u64>, BackendError> {
        match self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.content_length
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(e)
                if matches!(error_code(&e), Some("NotFound" | "NoSuchKey"))
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(None)
            }
            Err(e) => Err(remote(
                format!("S3 HeadObject s3://{}/{key}", self.bucket),
                e,
            )),
        }
    }

    /// The object's bytes (or the byte `range` of it), as they arrive.
    pub async fn stream(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, BackendError> {
        let mut req = self.s3.get_object().bucket(&self.bucket).key(key);
        if let Some(r) = range.filter(|r| r.end > r.start) {
            req = req.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) if error_code(&e) == Some("NoSuchKey") => {
                return Err(BackendError::Corrupt(format!(
                    "s3://{}/{key} is missing from the bucket",
                    self.bucket
                )))
            }
            Err(e) => {
                return Err(remote(
                    format!("S3 GetObject s3://{}/{key}", self.bucket),
                    e,
                ))
            }
        };
        let context = format!("reading s3://{}/{key}", self.bucket);
        let body = out.body.into_async_read();
        Ok(tokio_util::io::ReaderStream::with_capacity(body, 64 * 1024)
            .map(move |chunk| {
                chunk.map_err(|e| BackendError::Remote {
                    context: context.clone(),
                    message: e.to_string(),
                })
            })
            .boxed())
    }

    /// Starts a multipart upload of `key` (see [`Upload`]).
    pub fn upload(&self, key: impl Into<String>, content_type: &'static str) -> Upload {
        Upload {
            blobs: self.clone(),
            key: key.into(),
            content_type,
            upload_id: None,
            buffer: Vec::new(),
            parts: Vec::new(),
            bytes: 0,
        }
    }

    /// Deletes the object; deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| remote(format!("S3 DeleteObject s3://{}/{key}", self.bucket), e))?;
        Ok(())
    }

    /// Deletes the object, logging rather than failing: used where the
    /// bucket's expiry rule collects whatever is left behind.
    pub async fn delete_quietly(&self, key: &str) {
        if let Err(e) = self.delete(key).await {
            tracing::warn!(bucket = %self.bucket, key, error = %e,
                "could not delete an S3 object; the bucket's expiry rule will");
        }
    }
}

/// An object written piece by piece: the pieces are gathered into parts of
/// [`PART_SIZE`] and sent as a multipart upload, so the writer holds one
/// part at most; an object smaller than one part is one `PutObject`.
/// [`Upload::abort`] (or a failed part) abandons it; a multipart upload
/// nobody completed or aborted is reclaimed by the bucket's
/// abort-incomplete-uploads rule.
pub struct Upload {
    blobs: BlobStore,
    key: String,
    content_type: &'static str,
    upload_id: Option<String>,
    buffer: Vec<u8>,
    parts: Vec<CompletedPart>,
    bytes: u64,
}

impl Upload {
    pub fn key(&self) -> &str {
        &self.key
    }

    fn ctx(&self, op: &str) -> String {
        format!("S3 {op} s3://{}/{}", self.blobs.bucket, self.key)
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), BackendError> {
        self.buffer.extend_from_slice(data);
        self.bytes += data.len() as u64;
        while self.buffer.len() >= PART_SIZE {
            let rest = self.buffer.split_off(PART_SIZE);
            let part = std::mem::replace(&mut self.buffer, rest);
            self.send_part(part).await?;
        }
        Ok(())
    }

    async fn send_part(&mut self, part: Vec<u8>) -> Result<(), BackendError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let out = self
                    .blobs
                    .s3
                    .create_multipart_upload()
                    .bucket(&self.blobs.bucket)
                    .key(&self.key)
                    .content_type(self.content_type)
                    .send()
                    .await
                    .map_err(|e| remote(self.ctx("CreateMultipartUpload"), e))?;
                let id = out.upload_id.ok_or_else(|| {
                    BackendError::Corrupt(format!(
                        "{} returned no upload id",
                        self.ctx("CreateMultipartUpload")
                    ))
                })?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = i32::try_from(self.parts.len() + 1).map_err(|_| {
            BackendError::Corrupt(format!("{}: too many parts", self.ctx("UploadPart")))
        })?;
        let out = self
            .blobs
            .s3
            .upload_part()
            .bucket(&self.blobs.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(|e| remote(self.ctx("UploadPart"), e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .build(),
        );
        Ok(())
    }

    /// Makes the object whole; returns its size.
    pub async fn finish(mut self) -> Result<u64, BackendError> {
        let Some(upload_id) = self.upload_id.clone() else {
            let body = std::mem::take(&mut self.buffer);
            self.blobs.put(&self.key, body, self.content_type).await?;
            return Ok(self.bytes);
        };
        if !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer);
            self.send_part(last).await?;
        }
        self.blobs
            .s3
            .complete_multipart_upload()
            .bucket(&self.blobs.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| remote(self.ctx("CompleteMultipartUpload"), e))?;
        Ok(self.bytes)
    }

    /// Abandons the upload (logging, not failing, if S3 says no).
    pub async fn abort(self) {
        let Some(upload_id) = &self.upload_id else {
            return;
        };
        if let Err(e) = self
            .blobs
            .s3
            .abort_multipart_upload()
            .bucket(&self.blobs.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .send()
            .await
        {
            tracing::warn!(key = %self.key, error = %remote(self.ctx("AbortMultipartUpload"), e),
                "could not abort a multipart upload; the bucket's rule will");
        }
    }
}
