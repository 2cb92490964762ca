//! Exponential backoff with full jitter, for the retries the adapters do
//! on top of the SDK's own (unprocessed batch items, sustained throttling).

use crate::{error_code, is_throttling};
use airq_core::BackendError;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use rand::Rng;
use std::future::Future;
use std::time::Duration;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry waits up to this long.
    pub base: Duration,
    /// No wait is longer than this.
    pub cap: Duration,
    /// Attempts in all, the first included; then the call fails.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// About a minute of patience in all before a clear failure.
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(5),
            max_attempts: 20,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry): a
    /// uniformly random time up to `min(cap, base * 2^(retry-1))` ("full
    /// jitter"), so that many writers that were throttled together do not
    /// come back together.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

/// Runs `call` until it succeeds, fails for a reason other than
/// throttling, or `policy`'s attempts run out (the last error is returned),
/// waiting [`RetryPolicy::delay`] between attempts.
pub(crate) async fn with_backoff<T, E, R, Fut>(
    policy: &RetryPolicy,
    mut call: impl FnMut() -> Fut,
) -> Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(e) if is_throttling(error_code(&e)) && attempt < policy.max_attempts => {
                tracing::debug!(attempt, code = ?error_code(&e), "throttled; retrying");
                tokio::time::sleep(policy.delay(attempt)).await;
            }
            other => return other,
        }
    }
}

/// What one call of a batch operation did: what it returned, and what it
/// left to do.
pub(crate) enum Step<T, R> {
    /// Answered: its results, and the requests it left unprocessed (none:
    /// done).
    Answered(Vec<R>, Vec<T>),
    /// Refused for now (throttled, or a transient fault), for this reason:
    /// the same requests are tried again.
    Again(String),
}

/// Sends `pending` with `call`, then what each call leaves unprocessed,
/// until nothing is left, waiting [`RetryPolicy::delay`] between calls;
/// gives up after the policy's attempts with an error naming `context()`
/// and the last reason. Returns every call's results. The one loop of the
/// batch reads and writes (`BatchGetItem`, `BatchWriteItem`).
pub(crate) async fn until_processed<T, R, F, Fut>(
    policy: &RetryPolicy,
    context: impl Fn() -> String,
    mut pending: Vec<T>,
    mut call: F,
) -> Result<Vec<R>, BackendError>
where
    T: Clone,
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Result<Step<T, R>, BackendError>>,
{
    let mut results = Vec::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let why = match call(pending.clone()).await? {
            Step::Answered(got, left) => {
                results.extend(got);
                if left.is_empty() {
                    return Ok(results);
                }
                let why = format!("{} requests unprocessed", left.len());
                pending = left;
                why
            }
            Step::Again(why) => why,
        };
        if attempt >= policy.max_attempts {
            return Err(BackendError::Remote {
                context: context(),
                message: format!("gave up after {attempt} attempts: {why}"),
            });
        }
        let wait = policy.delay(attempt);
        tracing::debug!(context = %context(), attempt, ?wait, %why, "retrying a batch call");
        tokio::time::sleep(wait).await;
    }
}

/// Writes one `BatchWriteItem` of at most 25 requests to `table`, as
/// [`until_processed`] says: what DynamoDB leaves unprocessed, and calls
/// refused for want of capacity (or a transient service fault), are sent
/// again.
pub(crate) async fn batch_write(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    policy: &RetryPolicy,
    requests: Vec<aws_sdk_dynamodb::types::WriteRequest>,
) -> Result<(), BackendError> {
    let context = || format!("DynamoDB BatchWriteItem on {table}");
    until_processed(policy, context, requests, |pending| async move {
        match client
            .batch_write_item()
            .request_items(table, pending)
            .send()
            .await
        {
            Ok(out) => Ok(Step::<_, ()>::Answered(
                Vec::new(),
                out.unprocessed_items
                    .and_then(|mut m| m.remove(table))
                    .unwrap_or_default(),
            )),
            Err(e)
                if e.as_service_error().is_some_and(|se| {
                    se.is_provisioned_throughput_exceeded_exception()
                        || se.is_request_limit_exceeded()
                        || se.is_throttling_exception()
                        || se.is_internal_server_error()
                }) || is_throttling(error_code(&e)) =>
            {
                Ok(Step::Again(format!(
                    "throttled ({})",
                    error_code(&e).unwrap_or("?")
                )))
            }
            Err(e) => Err(crate::remote(context(), e)),
        }
    })
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(100),
            max_attempts: 5,
        };
        for _ in 0..100 {
            assert!(p.delay(1) <= Duration::from_millis(10));
            assert!(p.delay(3) <= Duration::from_millis(40));
            assert!(p.delay(30) <= Duration::from_millis(100));
        }
    }
}
