//! Per-client rate limits: one GCRA limiter (governor's) per client and
//! budget, and the IETF `RateLimit-Policy` / `RateLimit` headers that tell
//! a client where it stands.
//!
//! A budget of `count/period` lets `count` requests through at once, then
//! one more every `period / count`. The headers follow
//! draft-ietf-httpapi-ratelimit-headers-10:
//!
//! ```text
//! RateLimit-Policy: "submits";q=30;w=60     30 requests per 60 s window
//! RateLimit: "submits";r=29;t=2             29 left; full again in 2 s
//! ```
//!
//! `r` is how many more requests would pass now, `t` the seconds until
//! the whole quota is back; a `429` adds `Retry-After`, the seconds until
//! the next request passes. Policies are named `submits` and `polls`.
//!
//! Memory is bounded: the limiters live in a cache of at most
//! `--max-tracked-clients` entries, least recently used evicted first, and
//! an entry left alone for its budget's period is dropped (its limiter
//! would be full again anyway, so nothing is forgotten that matters).
//! Limiters are per gateway process (see the README's "Fairness").

use airq_core::keys::Budget;
use airq_core::ClientId;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use moka::Expiry;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

pub const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const STATE: HeaderName = HeaderName::from_static("ratelimit");

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `POST /api/query` and `GET /api/latest`.
    Submits,
    /// `GET /api/results/{id}` and `GET /api/meta`.
    Polls,
    /// Store lookups of keys a gateway has not seen lately, per address
    /// (see `admission`).
    KeyLookups,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Submits => "submits",
            Kind::Polls => "polls",
            Kind::KeyLookups => "key-lookups",
        }
    }
}

/// A limiter's cache key: the budget is part of it, so a key whose limits
/// change gets a fresh limiter with the new ones.
type Slot = (ClientId, Kind, Budget);

/// Where a request stands against its budget.
#[derive(Debug, Clone)]
pub struct Standing {
    pub kind: Kind,
    pub budget: Budget,
    /// `Some(wait)` when over budget: the time until the next request passes.
    pub denied: Option<Duration>,
    /// Requests that would pass now.
    pub remaining: u32,
    /// Seconds until the whole quota is back.
    pub reset_secs: u64,
}

impl Standing {
    /// The `RateLimit-Policy` and `RateLimit` headers (nothing for an
    /// unlimited budget).
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Budget::Rate { count, period } = self.budget {
            let name = self.kind.name();
            let window = whole_seconds(period);
            let policy = format!("\"{name}\";q={count};w={window}");
            let state = format!("\"{name}\";r={};t={}", self.remaining, self.reset_secs);
            if let (Ok(p), Ok(s)) = (
                HeaderValue::from_str(&policy),
                HeaderValue::from_str(&state),
            ) {
                h.insert(POLICY, p);
                h.insert(STATE, s);
            }
        }
        h
    }

    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.denied.map(|wait| whole_seconds(wait).max(1))
    }
}

/// Seconds, rounded up.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Drops a limiter once it has been left alone for its budget's period.
struct IdleForPeriod;

impl Expiry<Slot, Arc<Limiter>> for IdleForPeriod {
    fn expire_after_create(&self, key: &Slot, _: &Arc<Limiter>, _: Instant) -> Option<Duration> {
        period(&key.2)
    }

    fn expire_after_read(
        &self,
        key: &Slot,
        _: &Arc<Limiter>,
        _: Instant,
        _: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        period(&key.2)
    }
}

fn period(budget: &Budget) -> Option<Duration> {
    match budget {
        Budget::Off => Some(Duration::ZERO),
        Budget::Rate { period, .. } => Some(*period),
    }
}

pub struct RateLimits {
    limiters: moka::future::Cache<Slot, Arc<Limiter>>,
}

impl RateLimits {
    /// Limits for at most `max_tracked` (client, budget) pairs at once.
    pub fn new(max_tracked: u64) -> RateLimits {
        RateLimits {
            limiters: moka::future::Cache::builder()
                .max_capacity(max_tracked)
                // A flood of new clients must not keep an active one from
                // being tracked: the least recently used goes first.
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(IdleForPeriod)
                .build(),
        }
    }

    /// Spends one request of `client`'s `budget` of `kind`; `None` when
    /// the budget is unlimited.
    pub async fn spend(&self, client: ClientId, kind: Kind, budget: Budget) -> Option<Standing> {
        let Budget::Rate { count, period } = budget else {
            return None;
        };
        // One more every period / count (at least a nanosecond), all
        // `count` at once.
        let interval = (period / count.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(interval)?.allow_burst(count);
        let limiter = self
            .limiters
            .get_with((client, kind, budget), async move {
                Arc::new(RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>())
            })
            .await;
        let standing = match limiter.check() {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let used = count.get().saturating_sub(remaining);
                Standing {
                    kind,
                    budget,
                    denied: None,
                    remaining,
                    reset_secs: whole_seconds(interval.saturating_mul(used)),
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                let rest = interval.saturating_mul(count.get().saturating_sub(1));
                Standing {
                    kind,
                    budget,
                    denied: Some(wait),
                    remaining: 0,
                    reset_secs: whole_seconds(wait.saturating_add(rest)),
                }
            }
        };
        Some(standing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(a: &str) -> ClientId {
        ClientId::address(a.parse().unwrap())
    }

    #[tokio::test]
    async fn a_client_over_its_budget_is_told_when_to_come_back() {
        let limits = RateLimits::new(100);
        let budget: Budget = "3/min".parse().unwrap();
        let greedy = addr("192.0.2.1");
        for left in [2, 1, 0] {
            let s = limits.spend(greedy, Kind::Submits, budget).await.unwrap();
            assert_eq!((s.denied, s.remaining), (None, left));
        }
        let s = limits.spend(greedy, Kind::Submits, budget).await.unwrap();
        let wait = s
            .denied
            .expect("the fourth request in a minute is over budget");
        assert!(wait <= Duration::from_secs(20), "{wait:?}");
        assert!((1..=20).contains(&s.retry_after_secs().unwrap()));
        let h = s.headers();
        assert_eq!(h[&POLICY], "\"submits\";q=3;w=60");
        let state = h[&STATE].to_str().unwrap();
        assert!(state.starts_with("\"submits\";r=0;t="), "{state}");

        // Another client, and the same client's other budget, are untouched.
        let polite = limits.spend(addr("192.0.2.2"), Kind::Submits, budget).await;
        assert_eq!(polite.unwrap().denied, None);
        let polls = limits.spend(greedy, Kind::Polls, budget).await;
        assert_eq!(polls.unwrap().denied, None);
    }

    #[tokio::test]
    async fn the_budget_comes_back_and_off_is_unlimited() {
        let limits = RateLimits::new(100);
        let budget: Budget = "2/100ms".parse().unwrap();
        let c = addr("198.51.100.1");
        for _ in 0..2 {
            assert!(limits
                .spend(c, Kind::Polls, budget)
                .await
                .unwrap()
                .denied
                .is_none());
        }
        assert!(limits
            .spend(c, Kind::Polls, budget)
            .await
            .unwrap()
            .denied
            .is_some());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(limits
            .spend(c, Kind::Polls, budget)
            .await
            .unwrap()
            .denied
            .is_none());
        for _ in 0..1000 {
            assert!(limits.spend(c, Kind::Polls, Budget::Off).await.is_none());
        }
    }
}
