//! Short-lived caches of values that are cheap to reuse and costly to fetch
//! under load (the request queue's depth, the store summary).

use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A value fetched at most once per `ttl`. Concurrent callers that find it
/// stale wait for one fetch instead of each starting their own; a failed
/// fetch is not cached.
pub struct Cached<T> {
    ttl: Duration,
    slot: Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> Cached<T> {
    pub fn new(ttl: Duration) -> Self {
        Cached {
            ttl,
            slot: Mutex::new(None),
        }
    }

    /// The cached value if fresh, else the result of `fetch` (cached on
    /// success).
    pub async fn get<E, Fut>(&self, fetch: impl FnOnce() -> Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = slot.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(value.clone());
            }
        }
        let value = fetch().await?;
        *slot = Some((Instant::now(), value.clone()));
        Ok(value)
    }

    /// Adjusts the cached value, if any, for a change this process made
    /// itself (so it is seen before the next fetch).
    pub async fn update(&self, f: impl FnOnce(&mut T)) {
        if let Some((_, value)) = self.slot.lock().await.as_mut() {
            f(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn fetches_once_per_ttl_and_not_on_error() {
        let cache = Cached::new(Duration::from_secs(60));
        let calls = AtomicU32::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(7u64)
        };
        assert_eq!(cache.get(fetch).await, Ok(7));
        assert_eq!(cache.get(fetch).await, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache.update(|v| *v += 1).await;
        assert_eq!(cache.get(fetch).await, Ok(8));

        let failing: Cached<u64> = Cached::new(Duration::from_secs(60));
        assert_eq!(failing.get(|| async { Err("down") }).await, Err("down"));
        assert_eq!(failing.get(|| async { Ok::<_, &str>(1) }).await, Ok(1));
    }

    #[tokio::test]
    async fn refetches_when_stale() {
        let cache = Cached::new(Duration::ZERO);
        assert_eq!(cache.get(|| async { Ok::<_, ()>(1) }).await, Ok(1));
        assert_eq!(cache.get(|| async { Ok::<_, ()>(2) }).await, Ok(2));
    }
}
