//! Alerts: evaluated after each change the live feed reads, delivered as
//! signed webhooks by a bounded pool. What an alert's condition and events
//! are is in [`airq_core::alert`]; where a webhook may go, in [`target`].
//!
//! **Evaluation** ([`Alerts::evaluator`]), after each batch of changes the
//! live feed hands on (the newest replaces one waiting, so the feed never
//! waits): each distinct place's value once, off the async threads, from
//! the feed's copy of the latest readings, then
//! [`airq_core::alert::step`] for each alert; a state change is
//! written as a compare-and-set on the alert's state with its delivery in
//! the same transaction, so several gateways evaluating the same change
//! send one event.
//!
//! **Delivery** ([`Alerts::deliver`]): every [`TICK`] (and at once after an
//! evaluation made one) the gateway claims due deliveries, as many as its
//! pool (`--webhook-concurrency`) has room for, each leased so that no
//! other gateway takes it meanwhile. An attempt is a POST of the JSON body
//! with the Standard Webhooks headers (`webhook-id`, the delivery's id on
//! every attempt; `webhook-timestamp`; `webhook-signature`, `v1,` and the
//! base64 HMAC-SHA256 of `id.timestamp.body` under the alert's secret), to
//! the checked address, within `--webhook-timeout`, following at most
//! [`MAX_REDIRECTS`] redirects, each checked again. A 2xx delivers it;
//! anything else is tried again after `--webhook-retry-first`, doubling
//! each time, until `--webhook-give-up-after` from its creation (24 h by
//! default): then it is dead-lettered, and its owner sees it. A slow or
//! dead receiver holds one place of the pool for one timeout at a time,
//! never the others.

pub mod target;

use crate::live_feed::{Entries, Matcher, Shared};
use airq_core::alert::{
    self, Alert, AlertEvent, AlertState, AlertStore, Delivery, DeliveryState, DueDelivery,
};
use airq_core::{BackendError, LatestQuery, Timestamp};
use base64::Engine;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often due deliveries are looked for.
pub const TICK: Duration = Duration::from_millis(250);
/// Redirects an attempt follows, each target checked again.
pub const MAX_REDIRECTS: usize = 3;
/// Deliveries `GET /api/alerts/{id}` shows.
pub const SHOWN_DELIVERIES: usize = 20;

/// How deliveries are made.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryConfig {
    pub policy: target::Policy,
    pub concurrency: usize,
    pub timeout: Duration,
    pub retry_first: Duration,
    pub give_up_after: Duration,
}

pub struct Alerts {
    pub store: Arc<dyn AlertStore>,
    pub max_per_key: u32,
    pub max_total: u32,
    pub config: DeliveryConfig,
    pool: Arc<Semaphore>,
    wake: Notify,
    /// The newest change the live feed handed on, for the evaluator: a
    /// change that comes while one is evaluated replaces any waiting one.
    changes: watch::Sender<Option<(u64, Entries)>>,
}

/// A new alert's secret: `whsec_` and 32 random bytes in base64, as the
/// Standard Webhooks libraries take it.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A place's value now: the median of its fresh live sensors' index
/// values (see [`airq_core::alert`]), and how many sensors it is of.
pub fn value_of(place: &LatestQuery, entries: &Shared, now: Timestamp) -> (Option<u16>, usize) {
    let matcher = Matcher::new(place);
    let values: Vec<u16> = entries
        .entries
        .iter()
        .filter(|e| {
            e.reading.basis.is_some()
                && now.0.saturating_sub(e.reading.timestamp.0) <= alert::FRESH_SECS
                && matcher.matches(e)
        })
        .filter_map(|e| e.reading.indices.defined(place.index))
        .collect();
    let n = values.len();
    (alert::median(values), n)
}

/// The value of each place, computed once per distinct place (and index)
/// however many alerts watch it, off the async threads.
async fn values_of(
    places: Vec<LatestQuery>,
    entries: Entries,
    now: Timestamp,
) -> Result<Vec<(Option<u16>, usize)>, BackendError> {
    tokio::task::spawn_blocking(move || {
        let mut memo: HashMap<LatestQuery, (Option<u16>, usize)> = HashMap::new();
        places
            .into_iter()
            .map(|p| {
                *memo
                    .entry(p)
                    .or_insert_with_key(|p| value_of(p, &entries, now))
            })
            .collect()
    })
    .await
    .map_err(|e| BackendError::Local {
        what: "evaluating alerts",
        source: Box::new(e),
    })
}

/// The webhook's body (Standard Webhooks' `type`, `timestamp`, `data`).
fn body_of(alert: &Alert, event: AlertEvent, value: u16, sensors: usize, version: u64) -> String {
    let index = alert.spec.place.index;
    let spec = alert.spec.to_json();
    serde_json::json!({
        "type": event.name(),
        "timestamp": Timestamp::now().to_string(),
        "data": {
            "alertId": alert.id,
            "place": spec["place"],
            "index": index.name(),
            "threshold": spec["threshold"],
            "value": value,
            "band": index.label(value),
            "sensors": sensors,
            "dataVersion": version,
        }
    })
    .to_string()
}

impl Alerts {
    pub fn new(
        store: Arc<dyn AlertStore>,
        max_per_key: u32,
        max_total: u32,
        config: DeliveryConfig,
    ) -> Arc<Alerts> {
        for outcome in ["delivered", "retry", "dead"] {
            metrics::counter!("airq_webhook_attempts_total", "outcome" => outcome).absolute(0);
        }
        metrics::counter!("airq_alert_events_total").absolute(0);
        Arc::new(Alerts {
            store,
            max_per_key,
            max_total,
            pool: Arc::new(Semaphore::new(config.concurrency)),
            config,
            wake: Notify::new(),
            changes: watch::Sender::new(None),
        })
    }

    /// Hands the evaluator a change (never waits: the live feed goes on).
    pub fn changed(&self, version: u64, entries: Entries) {
        self.changes.send_replace(Some((version, entries)));
    }

    /// Evaluates the changes handed on, one at a time, the newest first
    /// when several came meanwhile, until the gateway stops.
    pub async fn evaluator(self: Arc<Self>, cancel: CancellationToken) {
        let mut changes = self.changes.subscribe();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            let Some((version, entries)) = changes.borrow_and_update().clone() else {
                continue;
            };
            if let Err(e) = self.evaluate(version, entries).await {
                tracing::warn!(error = %e, version, "alerts: could not evaluate a change; the next one will");
            }
        }
    }

    /// Evaluates every alert against the latest readings at `version`.
    async fn evaluate(&self, version: u64, entries: Entries) -> Result<(), BackendError> {
        let now = Timestamp::now();
        let started = std::time::Instant::now();
        let mut made = false;
        let alerts = self.store.all().await?;
        let count = alerts.len();
        let places = alerts.iter().map(|(a, _)| a.spec.place.clone()).collect();
        let values = values_of(places, entries, now).await?;
        let valued = started.elapsed();
        for ((alert, state), (value, sensors)) in alerts.into_iter().zip(values) {
            if state.version >= version {
                continue;
            }
            let Some(value) = value else {
                continue;
            };
            let (next, event) = alert::step(state, &alert.spec, value, version, now);
            // Written when something a later step reads changed: the
            // state, or the side of the threshold the value is on (which
            // tells a new entry from a stay inside).
            let lower = alert.spec.threshold.lower(alert.spec.place.index);
            let side = |v: Option<u16>| v.map(|v| v >= lower);
            let changed = event.is_some()
                || next.inside != state.inside
                || next.suppressed != state.suppressed
                || side(next.value) != side(state.value);
            if !changed {
                continue;
            }
            let delivery = event.map(|event| {
                let created_ms = now_ms();
                Delivery {
                    id: Uuid::new_v4(),
                    alert: alert.id,
                    event: event.name().to_owned(),
                    body: body_of(&alert, event, value, sensors, version),
                    created_ms,
                    attempts: 0,
                    next_ms: created_ms,
                    state: DeliveryState::Pending,
                    last_status: None,
                    last_error: None,
                    finished_ms: None,
                }
            });
            if self
                .store
                .transition(alert.id, state.version, &next, delivery.as_ref())
                .await?
                && delivery.is_some()
            {
                made = true;
                metrics::counter!("airq_alert_events_total").increment(1);
                tracing::info!(alert = %alert.id, event = ?event, value, "alert event");
            }
        }
        if made {
            self.wake.notify_one();
        }
        tracing::debug!(version, alerts = count, values_in = ?valued, took = ?started.elapsed(),
            "alerts evaluated");
        Ok(())
    }

    /// Claims and makes due deliveries until the gateway stops.
    pub async fn deliver(self: Arc<Self>, cancel: CancellationToken) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(TICK) => {}
                () = self.wake.notified() => {}
            }
            let room = self.pool.available_permits();
            if room == 0 {
                continue;
            }
            // Longer than an attempt may take (it is cut at
            // `attempt_limit`), so no other claim takes it meanwhile.
            let lease = self.attempt_limit().saturating_add(Duration::from_secs(30));
            let now = now_ms();
            let due = match self
                .store
                .claim(
                    now,
                    now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
                    room,
                )
                .await
            {
                Ok(due) => {
                    failing = false;
                    due
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "webhooks: could not claim due deliveries; trying again");
                    }
                    failing = true;
                    continue;
                }
            };
            for due in due {
                let Ok(permit) = self.pool.clone().try_acquire_owned() else {
                    break;
                };
                let this = self.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    this.attempt(due).await;
                });
            }
        }
    }

    /// The longest one attempt may take: a timeout for each request of it
    /// (the first and each redirect), name lookups included.
    fn attempt_limit(&self) -> Duration {
        self.config.timeout.saturating_mul(MAX_REDIRECTS as u32 + 1)
    }

    /// One attempt of a delivery, and its outcome recorded.
    async fn attempt(&self, due: DueDelivery) {
        let mut d = due.delivery;
        d.attempts += 1;
        let limit = self.attempt_limit();
        let result = tokio::time::timeout(limit, send(&due.url, &due.secret, &d, self.config))
            .await
            .unwrap_or_else(|_| Err((None, format!("the attempt took more than {limit:?}"))));
        let now = now_ms();
        match result {
            Ok(status) => {
                d.state = DeliveryState::Delivered;
                d.last_status = Some(status);
                d.last_error = None;
                d.finished_ms = Some(now);
                metrics::counter!("airq_webhook_attempts_total", "outcome" => "delivered")
                    .increment(1);
            }
            Err((status, error)) => {
                d.last_status = status;
                d.last_error = Some(error);
                let backoff = self
                    .config
                    .retry_first
                    .saturating_mul(1 << (d.attempts - 1).min(20));
                let next =
                    now.saturating_add(i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX));
                let give_up = d.created_ms.saturating_add(
                    i64::try_from(self.config.give_up_after.as_millis()).unwrap_or(i64::MAX),
                );
                if next > give_up {
                    d.state = DeliveryState::Dead;
                    d.finished_ms = Some(now);
                    metrics::counter!("airq_webhook_attempts_total", "outcome" => "dead")
                        .increment(1);
                    tracing::warn!(delivery = %d.id, alert = %d.alert, attempts = d.attempts,
                        "webhook dead-lettered: retries ran out");
                } else {
                    d.next_ms = next;
                    metrics::counter!("airq_webhook_attempts_total", "outcome" => "retry")
                        .increment(1);
                }
            }
        }
        match self.store.record(&d, due.lease_ms).await {
            Ok(true) => {}
            // Cannot happen while attempts end within their lease; should
            // it, the other claim's outcome stands.
            Ok(false) => tracing::warn!(delivery = %d.id,
                "webhooks: an attempt outlived its lease; its outcome is not recorded"),
            // The lease runs out and the delivery is tried again: at least once.
            Err(e) => {
                tracing::warn!(delivery = %d.id, error = %e, "webhooks: could not record an attempt")
            }
        }
    }
}

/// POSTs a delivery, signed, following checked redirects: the 2xx status,
/// or the status (if any) and why it failed.
async fn send(
    url: &str,
    secret: &str,
    d: &Delivery,
    config: DeliveryConfig,
) -> Result<u16, (Option<u16>, String)> {
    let signer = standardwebhooks::Webhook::new(secret)
        .map_err(|e| (None, format!("the alert's secret does not decode: {e}")))?;
    let timestamp = Timestamp::now().0;
    let msg_id = d.id.to_string();
    let signature = signer
        .sign(&msg_id, timestamp, d.body.as_bytes())
        .map_err(|e| (None, format!("could not sign: {e}")))?;
    let mut next = url.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        let target = tokio::time::timeout(config.timeout, target::check(&next, config.policy))
            .await
            .map_err(|_| {
                (
                    None,
                    format!(
                        "{next}: its name did not resolve within {:?}",
                        config.timeout
                    ),
                )
            })?
            .map_err(|e| (None, format!("refused {next}: it {e}")))?;
        // No proxy: one would resolve the name itself, past the check.
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .resolve(&target.host, target.addr)
            .user_agent(concat!("airq-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| (None, format!("could not make an HTTP client: {e}")))?;
        let response = client
            .post(target.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", &signature)
            .body(d.body.clone())
            .send()
            .await
            .map_err(|e| {
                let why = if e.is_timeout() {
                    format!("no answer within {:?}", config.timeout)
                } else {
                    format!("could not reach the receiver: {e}")
                };
                (None, why)
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or((
                    Some(status.as_u16()),
                    format!("HTTP {status} without a Location"),
                ))?;
            next = target
                .url
                .join(location)
                .map_err(|e| {
                    (
                        Some(status.as_u16()),
                        format!("HTTP {status} to a bad Location: {e}"),
                    )
                })?
                .to_string();
            continue;
        }
        return Err((Some(status.as_u16()), format!("HTTP {status}")));
    }
    Err((None, format!("more than {MAX_REDIRECTS} redirects")))
}

/// A delivery as its owner sees it.
pub fn delivery_json(d: &Delivery) -> serde_json::Value {
    let at = |ms: i64| Timestamp(ms.div_euclid(1000)).to_string();
    serde_json::json!({
        "id": d.id,
        "event": d.event,
        "createdAt": at(d.created_ms),
        "state": d.state.as_str(),
        "attempts": d.attempts,
        "nextAttemptAt": (d.state == DeliveryState::Pending).then(|| at(d.next_ms)),
        "lastStatus": d.last_status,
        "lastError": d.last_error,
        "finishedAt": d.finished_ms.map(at),
    })
}

/// An alert as its owner sees it (never its secret, but at creation).
pub fn alert_json(alert: &Alert, state: &AlertState) -> serde_json::Value {
    let mut v = alert.spec.to_json();
    v["id"] = serde_json::json!(alert.id);
    v["createdAt"] = alert.created_at.to_string().into();
    v["state"] = serde_json::json!({
        "inside": state.inside,
        "enteredAt": state.entered_at.map(|t| t.to_string()),
        "valueAtLastChange": state.value,
        "suppressedEntries": state.suppressed,
    });
    v
}
