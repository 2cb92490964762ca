//! Payloads too large for an SQS message or a DynamoDB item, in S3.

use crate::{error_code, remote};
use airq_core::error::BackendError;
use aws_sdk_s3::primitives::ByteStream;

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
        let out = match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if error_code(&e) == Some("NoSuchKey") => return Ok(None),
            Err(e) => {
                return Err(remote(
                    format!("S3 GetObject s3://{}/{key}", self.bucket),
                    e,
                ))
            }
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| BackendError::Remote {
                context: format!("reading s3://{}/{key}", self.bucket),
                message: e.to_string(),
            })?
            .into_bytes();
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| BackendError::Corrupt(format!("s3://{}/{key} is not UTF-8", self.bucket)))
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
