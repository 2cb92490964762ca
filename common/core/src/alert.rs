//! Alerts: a keyed client's condition on the air of a place, and the signed
//! webhooks that tell it when the condition starts and stops holding.
//!
//! **The condition.** A place's value is the median (the lower middle of an
//! even count, a value the index has) of its sensors' current hourly index
//! ([`crate::hourly`]: the NowCast for US EPA, 24-hour running means for
//! the others), over the sensors whose latest reading is a 5-minute one at
//! most [`FRESH_SECS`] old with that index defined; a place without one has
//! no value and is not evaluated. The median, not the worst sensor, so
//! that one faulty sensor does not page anyone. The condition holds while
//! the value is at or above the threshold: a value of the index, or the
//! lower bound of a band (`Unhealthy` or worse).
//!
//! **Events** ([`step`]): `alert.entered` when the condition starts to
//! hold, unless one was sent less than the alert's cooldown ago: then the
//! entry is counted as suppressed, and `alert.entered` is sent at the first
//! evaluation after the cooldown at which the condition still holds;
//! `alert.left` when it stops holding after an `alert.entered` was sent.
//! So a receiver always sees entered and left in turn.

use crate::aqi::Index;
use crate::error::BackendError;
use crate::query::{FieldError, LatestQuery, QueryError};
use crate::reading::Timestamp;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::time::Duration;
use uuid::Uuid;

/// How old a sensor's latest 5-minute reading may be and still count.
pub const FRESH_SECS: i64 = 2 * 3600;
/// The longest cooldown an alert may ask for.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(7 * 86_400);
/// The cooldown of an alert that names none.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(3600);
/// The longest webhook URL.
pub const MAX_URL_BYTES: usize = 2048;
/// The fields of `POST /api/alerts`.
pub const ALERT_FIELDS: [&str; 5] = ["place", "index", "threshold", "webhookUrl", "cooldown"];
/// The fields of an alert's `place`.
pub const PLACE_FIELDS: [&str; 4] = ["country", "bbox", "near", "sensorType"];

/// Where the condition starts to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// A band of the index, by its position in [`Index::bands`]: the
    /// condition holds from its lower bound up.
    Band(usize),
    /// A value of the index.
    Value(u16),
}

impl Threshold {
    /// The lowest value at which the condition holds.
    pub fn lower(self, index: Index) -> u16 {
        match self {
            Threshold::Band(b) => index.bands().get(b).map_or(u16::MAX, |band| band.lo),
            Threshold::Value(v) => v,
        }
    }

    /// As the API writes it: `{"band": name}` or `{"value": n}`.
    pub fn to_json(self, index: Index) -> Value {
        match self {
            Threshold::Band(b) => {
                serde_json::json!({"band": index.bands().get(b).map_or("", |band| band.label)})
            }
            Threshold::Value(v) => serde_json::json!({ "value": v }),
        }
    }
}

/// What a client asks to be told about.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSpec {
    /// The place (country, bbox or near, sensor types) and the index.
    pub place: LatestQuery,
    pub threshold: Threshold,
    pub webhook_url: String,
    pub cooldown: Duration,
}

fn field_error(field: &str, message: String) -> FieldError {
    FieldError {
        field: field.into(),
        message,
    }
}

impl AlertSpec {
    /// Validates `POST /api/alerts`'s body, naming every bad field at once.
    pub fn from_json(body: &[u8]) -> Result<AlertSpec, QueryError> {
        let bad = |errors: Vec<FieldError>| QueryError { errors };
        let map: Map<String, Value> = match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(bad(vec![field_error(
                    "body",
                    "must be a JSON object".into(),
                )]))
            }
            Err(e) => {
                return Err(bad(vec![field_error(
                    "body",
                    format!("is not valid JSON: {e}"),
                )]))
            }
        };
        AlertSpec::from_map(&map)
    }

    /// [`AlertSpec::from_json`] of a parsed body (also how a stored alert
    /// is read back).
    pub fn from_map(map: &Map<String, Value>) -> Result<AlertSpec, QueryError> {
        let mut errors = Vec::new();
        for key in map.keys() {
            if !ALERT_FIELDS.contains(&key.as_str()) {
                errors.push(field_error(
                    key,
                    format!(
                        "is not a field of an alert; expected {}",
                        ALERT_FIELDS.join(", ")
                    ),
                ));
            }
        }
        // The place, as `GET /api/latest` takes it, with the index.
        let mut latest = Map::new();
        match map.get("place") {
            Some(Value::Object(place)) => {
                for (k, v) in place {
                    if PLACE_FIELDS.contains(&k.as_str()) {
                        latest.insert(k.clone(), v.clone());
                    } else {
                        errors.push(field_error(
                            &format!("place.{k}"),
                            format!(
                                "is not a field of a place; expected {}",
                                PLACE_FIELDS.join(", ")
                            ),
                        ));
                    }
                }
                if !["country", "bbox", "near"]
                    .iter()
                    .any(|k| place.contains_key(*k))
                {
                    errors.push(field_error(
                        "place",
                        "needs country, bbox or near: an alert watches a place, not the world"
                            .into(),
                    ));
                }
            }
            Some(_) => errors.push(field_error(
                "place",
                r#"must be an object such as {"near":{"lat":52.52,"lon":13.40,"radiusKm":10}}"#
                    .into(),
            )),
            None => errors.push(field_error("place", "is required".into())),
        }
        if let Some(index) = map.get("index") {
            latest.insert("index".into(), index.clone());
        }
        let place = match LatestQuery::from_map(&latest) {
            Ok(mut place) => {
                place.at = None;
                Some(place)
            }
            Err(e) => {
                for mut f in e.errors {
                    if f.field != "index" {
                        f.field = format!("place.{}", f.field);
                    }
                    errors.push(f);
                }
                None
            }
        };
        let index = place.as_ref().map_or(Index::default(), |p| p.index);
        let threshold = match map.get("threshold") {
            Some(Value::Object(t)) => match (t.get("band"), t.get("value")) {
                (Some(Value::String(name)), None) => match index.parse_band(name) {
                    Some(b) => Some(Threshold::Band(b)),
                    None => {
                        errors.push(field_error(
                            "threshold.band",
                            format!(
                                "unknown band {name:?} of {}; expected one of {}",
                                index.name(),
                                index.band_list()
                            ),
                        ));
                        None
                    }
                },
                (None, Some(v)) => match v.as_u64().and_then(|v| u16::try_from(v).ok()) {
                    Some(v) if (index.min()..=index.max()).contains(&v) => {
                        Some(Threshold::Value(v))
                    }
                    _ => {
                        errors.push(field_error(
                            "threshold.value",
                            format!(
                                "must be a whole number from {} to {} ({}), got {v}",
                                index.min(),
                                index.max(),
                                index.name()
                            ),
                        ));
                        None
                    }
                },
                _ => {
                    errors.push(field_error(
                        "threshold",
                        r#"must be {"band": name} or {"value": number}, one of them"#.into(),
                    ));
                    None
                }
            },
            Some(_) => {
                errors.push(field_error(
                    "threshold",
                    r#"must be {"band": name} or {"value": number}"#.into(),
                ));
                None
            }
            None => {
                errors.push(field_error("threshold", "is required".into()));
                None
            }
        };
        let webhook_url = match map.get("webhookUrl") {
            Some(Value::String(url)) if url.len() <= MAX_URL_BYTES && !url.is_empty() => {
                Some(url.clone())
            }
            Some(Value::String(_)) => {
                errors.push(field_error(
                    "webhookUrl",
                    format!("must be 1 to {MAX_URL_BYTES} bytes"),
                ));
                None
            }
            Some(_) => {
                errors.push(field_error(
                    "webhookUrl",
                    "must be a string (an https URL)".into(),
                ));
                None
            }
            None => {
                errors.push(field_error("webhookUrl", "is required".into()));
                None
            }
        };
        let cooldown = match map.get("cooldown") {
            None => Some(DEFAULT_COOLDOWN),
            Some(Value::String(text)) => match crate::duration::parse(text) {
                Ok(d) if d <= MAX_COOLDOWN => Some(d),
                Ok(_) => {
                    errors.push(field_error(
                        "cooldown",
                        format!("must be at most 7 days, got {text:?}"),
                    ));
                    None
                }
                Err(e) => {
                    errors.push(field_error(
                        "cooldown",
                        format!("must be a duration such as 1h: {e}"),
                    ));
                    None
                }
            },
            Some(Value::Number(n)) => match n.as_u64() {
                Some(secs) if Duration::from_secs(secs) <= MAX_COOLDOWN => {
                    Some(Duration::from_secs(secs))
                }
                _ => {
                    errors.push(field_error(
                        "cooldown",
                        "must be 0 to 604800 seconds, or a duration such as 1h".into(),
                    ));
                    None
                }
            },
            Some(_) => {
                errors.push(field_error(
                    "cooldown",
                    "must be a duration such as 1h".into(),
                ));
                None
            }
        };
        match (place, threshold, webhook_url, cooldown) {
            (Some(place), Some(threshold), Some(webhook_url), Some(cooldown))
                if errors.is_empty() =>
            {
                Ok(AlertSpec {
                    place,
                    threshold,
                    webhook_url,
                    cooldown,
                })
            }
            _ => Err(QueryError { errors }),
        }
    }

    /// A spec as a store keeps it ([`AlertSpec::to_json`]'s text) read
    /// back; the error says what does not read (field by field).
    pub fn from_stored(text: &str) -> Result<AlertSpec, String> {
        let map: Map<String, Value> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        AlertSpec::from_map(&map).map_err(|e| {
            e.errors
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// The canonical JSON of the spec: what is stored, and what `GET
    /// /api/alerts/{id}` shows.
    pub fn to_json(&self) -> Value {
        let mut place: Map<String, Value> =
            serde_json::from_str(&self.place.to_json()).unwrap_or_default();
        let index = place.remove("index").unwrap_or(Value::Null);
        place.remove("format");
        serde_json::json!({
            "place": place,
            "index": index,
            "threshold": self.threshold.to_json(self.place.index),
            "webhookUrl": self.webhook_url,
            "cooldown": format!("{}s", self.cooldown.as_secs()),
        })
    }
}

/// An alert as stored: who owns it (an API key's id), what it asks, and
/// the secret its deliveries are signed with (`whsec_` and base64 of 32
/// random bytes; returned to the owner once, at creation).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: Uuid,
    pub owner: Uuid,
    pub spec: AlertSpec,
    pub secret: String,
    pub created_at: Timestamp,
}

/// Where an alert's evaluation stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertState {
    /// Whether the receiver was last told `alert.entered` (and not yet
    /// `alert.left`).
    pub inside: bool,
    /// When `alert.entered` was last sent.
    pub entered_at: Option<Timestamp>,
    /// The data version last evaluated: an evaluation applies only on top
    /// of the state it read, so two gateways never both send one event.
    pub version: u64,
    /// The place's value at the last evaluation.
    pub value: Option<u16>,
    /// Entries not sent because of the cooldown.
    pub suppressed: u64,
}

/// What an evaluation tells the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertEvent {
    Entered,
    Left,
}

impl AlertEvent {
    /// The webhook's `type`.
    pub fn name(self) -> &'static str {
        match self {
            AlertEvent::Entered => "alert.entered",
            AlertEvent::Left => "alert.left",
        }
    }
}

/// The state after the place's value is `value` at `now`, and the event to
/// send (see the module's documentation).
pub fn step(
    state: AlertState,
    spec: &AlertSpec,
    value: u16,
    version: u64,
    now: Timestamp,
) -> (AlertState, Option<AlertEvent>) {
    let holds = value >= spec.threshold.lower(spec.place.index);
    let mut next = AlertState {
        version,
        value: Some(value),
        ..state
    };
    let event = match (holds, state.inside) {
        (true, false) => {
            let cooled = state.entered_at.is_none_or(|at| {
                now.0.saturating_sub(at.0)
                    >= i64::try_from(spec.cooldown.as_secs()).unwrap_or(i64::MAX)
            });
            if cooled {
                next.inside = true;
                next.entered_at = Some(now);
                Some(AlertEvent::Entered)
            } else if state
                .value
                .is_none_or(|v| v < spec.threshold.lower(spec.place.index))
            {
                // Counted once per entry, not per evaluation inside.
                next.suppressed += 1;
                None
            } else {
                None
            }
        }
        (false, true) => {
            next.inside = false;
            Some(AlertEvent::Left)
        }
        _ => None,
    };
    (next, event)
}

/// The value of a place: the median (lower middle) of `values`.
pub fn median(mut values: Vec<u16>) -> Option<u16> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    values.get((values.len() - 1) / 2).copied()
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not delivered yet; tried again at `next_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Retries ran out: dead-lettered, kept for the owner to see.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Dead,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// One webhook message and its attempts. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The `webhook-id`: the same on every attempt, so a receiver can drop
    /// repeats.
    pub id: Uuid,
    pub alert: Uuid,
    pub event: String,
    /// The JSON body, signed as it is sent.
    pub body: String,
    pub created_ms: i64,
    pub attempts: u32,
    /// When it is tried next (pending only).
    pub next_ms: i64,
    pub state: DeliveryState,
    /// The last attempt's HTTP status, if it got one, and why it failed.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub finished_ms: Option<i64>,
}

/// A delivery due now, with where it goes and how it is signed.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery: Delivery,
    pub url: String,
    pub secret: String,
    /// The lease this claim holds: recording the attempt needs it.
    pub lease_ms: i64,
}

/// Why a new alert was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The owner has `max` alerts already.
    OwnerFull { max: u32 },
    /// The store holds `max` alerts already.
    StoreFull { max: u32 },
}

/// Where alerts, their state and their deliveries live: shared by every
/// gateway, which evaluates and delivers them.
#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    /// Stores a new alert unless its owner has `per_owner` or the store
    /// `total` already (counted and stored in one step).
    async fn create(
        &self,
        alert: &Alert,
        per_owner: u32,
        total: u32,
    ) -> Result<Result<(), Refused>, BackendError>;

    async fn get(&self, id: Uuid) -> Result<Option<(Alert, AlertState)>, BackendError>;

    /// Deletes an alert of `owner` and its deliveries; false when there is
    /// none.
    async fn delete(&self, id: Uuid, owner: Uuid) -> Result<bool, BackendError>;

    /// Every alert with its state, for an evaluation.
    async fn all(&self) -> Result<Vec<(Alert, AlertState)>, BackendError>;

    /// Moves an alert from the state of version `from` to `to`, with the
    /// delivery it makes, in one step; false (and nothing written) when
    /// another evaluation moved it first.
    async fn transition(
        &self,
        id: Uuid,
        from: u64,
        to: &AlertState,
        delivery: Option<&Delivery>,
    ) -> Result<bool, BackendError>;

    /// Up to `max` pending deliveries due at `now_ms`, leased until
    /// `lease_ms` (another gateway does not take them meanwhile).
    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        max: usize,
    ) -> Result<Vec<DueDelivery>, BackendError>;

    /// Records an attempt's outcome (the delivery as it now is), if the
    /// claim of lease `lease_ms` still holds it; false (and nothing
    /// written) when the lease ran out and another claim took it.
    async fn record(&self, delivery: &Delivery, lease_ms: i64) -> Result<bool, BackendError>;

    /// An alert's `last` most recent deliveries, newest first.
    async fn deliveries(&self, alert: Uuid, last: usize) -> Result<Vec<Delivery>, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> AlertSpec {
        AlertSpec::from_json(json.as_bytes()).expect("a valid alert")
    }

    const BERLIN: &str = r#""place":{"near":{"lat":52.52,"lon":13.40,"radiusKm":10}}"#;

    #[test]
    fn a_spec_is_validated_field_by_field() {
        let s = spec(&format!(
            r#"{{{BERLIN},"index":"us-epa","threshold":{{"band":"Unhealthy"}},"webhookUrl":"https://example.org/hook","cooldown":"30m"}}"#
        ));
        // US EPA's "Unhealthy" band starts at 151 (40 CFR Part 58, App. G).
        assert_eq!(s.threshold.lower(Index::UsEpa), 151);
        assert_eq!(s.cooldown, Duration::from_secs(1800));
        let again = AlertSpec::from_map(s.to_json().as_object().expect("an object"))
            .expect("the canonical form reads back");
        assert_eq!(again, s);
        let e = AlertSpec::from_json(
            br#"{"place":{"bbox":[1,2,3]},"index":"aqi","threshold":{"value":"x"},"cooldown":"8d","extra":1}"#,
        )
        .expect_err("invalid");
        let fields: Vec<&str> = e.errors.iter().map(|f| f.field.as_str()).collect();
        for f in [
            "extra",
            "place.bbox",
            "index",
            "threshold.value",
            "webhookUrl",
            "cooldown",
        ] {
            assert!(fields.contains(&f), "{f} named: {fields:?}");
        }
        let world = AlertSpec::from_json(
            br#"{"place":{"sensorType":"SDS011"},"threshold":{"value":5},"webhookUrl":"https://x.org"}"#,
        )
        .expect_err("no place");
        assert_eq!(world.errors[0].field, "place");
    }

    #[test]
    fn events_come_in_turn_and_entries_wait_for_the_cooldown() {
        // DAQI, threshold value 7 ("High" starts at 7), cooldown 1 h.
        let s = spec(&format!(
            r#"{{{BERLIN},"threshold":{{"value":7}},"webhookUrl":"https://x.org","cooldown":"1h"}}"#
        ));
        let t = |secs: i64| Timestamp(1_000_000 + secs);
        let st = AlertState::default();
        let (st, e) = step(st, &s, 6, 1, t(0));
        assert_eq!(e, None, "below");
        let (st, e) = step(st, &s, 7, 2, t(60));
        assert_eq!(e, Some(AlertEvent::Entered), "at the threshold");
        let (st, e) = step(st, &s, 9, 3, t(120));
        assert_eq!(e, None, "still inside: once");
        let (st, e) = step(st, &s, 3, 4, t(180));
        assert_eq!(e, Some(AlertEvent::Left));
        // Back inside 10 minutes after the entry: within the cooldown.
        let (st, e) = step(st, &s, 8, 5, t(660));
        assert_eq!(e, None);
        assert_eq!(st.suppressed, 1);
        let (st, e) = step(st, &s, 8, 6, t(900));
        assert_eq!((e, st.suppressed), (None, 1), "counted once per entry");
        // An hour after the entry, still inside: entered now.
        let (st, e) = step(st, &s, 8, 7, t(3660));
        assert_eq!(e, Some(AlertEvent::Entered));
        assert_eq!((st.inside, st.version, st.value), (true, 7, Some(8)));
    }

    #[test]
    fn the_median_is_the_lower_middle() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![5]), Some(5));
        assert_eq!(median(vec![9, 1, 4, 7]), Some(4));
        assert_eq!(median(vec![3, 1, 2]), Some(2));
    }
}
