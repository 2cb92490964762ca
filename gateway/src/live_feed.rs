//! The live feed behind `GET /api/stream/latest`: each sensor's latest
//! reading as this gateway last read it, and each change, handed to every
//! open stream.
//!
//! **How a gateway learns of new data.** The master never talks to a
//! gateway. The store keeps a data version that grows with each write
//! that changes a latest reading, and the version each latest reading
//! changed at ([`ReadingStore::latest_changes`]); the feed reads the
//! changes after the version it has every [`POLL`] (on the embedded store
//! an index seek that finds nothing between ingestions), so any number of
//! gateways, on any hosts, follow one store by themselves.
//!
//! **One copy, shared.** The feed holds the latest reading of every sensor
//! once ([`Entry`], with its event already framed for each index), loaded
//! on the first stream's request and kept up to date from then on; a
//! stream's first answer is the entries of its place taken from it (no
//! store read per stream), and each change goes to every stream as one
//! shared [`Batch`] that each stream filters as it writes. Memory is the
//! sensors' entries (about 1.5 KB each: 22 MB for 15,000 sensors) plus the
//! last [`BUFFERED_BATCHES`] batches, whatever the number of streams.
//!
//! **Bounds.** `--max-streams` on the gateway (503 past it),
//! `--max-streams-per-client` (429), `--max-stream-sensors` readings in a
//! stream's first answer (else 400: narrow the place). A stream that falls
//! more than [`BUFFERED_BATCHES`] batches behind is ended with a `dropped`
//! event (it reconnects with `Last-Event-ID` and loses nothing); every
//! stream ends after [`STREAM_LIFETIME`] and sends a comment every
//! [`crate::follow::HEARTBEAT`] while idle.

use crate::alerts::Alerts;
use crate::slots::Slots;
use airq_core::place::Bbox;
use airq_core::store::{LatestChanges, ReadingStore};
use airq_core::{BackendError, Format, Index, LatestQuery, Reading};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How often the feed asks the store for changes.
pub const POLL: Duration = Duration::from_millis(250);
/// Batches a stream may have yet to send before it is dropped: with one
/// batch per ingestion, minutes of a client that reads nothing.
pub const BUFFERED_BATCHES: usize = 16;
/// How long one stream lasts before the gateway ends it (the client
/// reconnects with `Last-Event-ID`).
pub const STREAM_LIFETIME: Duration = Duration::from_secs(3600);

/// A sensor's latest reading as streams send it.
pub struct Entry {
    /// The data version the reading became its sensor's latest at.
    pub version: u64,
    pub reading: Reading,
    /// Its coordinates, parsed once (`None` for text that is not a number,
    /// which no place contains).
    position: Option<(f64, f64)>,
    /// The `reading` event, framed (`event: reading`, `data: …`, the blank
    /// line), for each index in [`Index::ALL`] order.
    frames: Vec<Bytes>,
}

impl Entry {
    fn new(version: u64, reading: Reading) -> Entry {
        let frames = Index::ALL
            .iter()
            .map(|&index| {
                let mut frame = Vec::with_capacity(512);
                frame.extend_from_slice(b"event: reading\ndata: ");
                airq_core::export::ndjson_line(&mut frame, &reading, index);
                frame.extend_from_slice(b"\n\n");
                Bytes::from(frame)
            })
            .collect();
        Entry {
            version,
            position: airq_core::place::position(&reading.loc_lat, &reading.loc_long),
            reading,
            frames,
        }
    }

    /// The event of this reading with `index`'s `AQI` and `Range`.
    pub fn frame(&self, index: Index) -> &Bytes {
        &self.frames[index.position()]
    }
}

/// Bytes all [`Shared`] renderings may hold at once, on this gateway.
pub const RENDERED_BYTES: usize = 64 << 20;

/// Entries in sensor id order, shared by every stream that sends them,
/// with their events rendered once per place and index asked
/// ([`Shared::rendered`]).
pub struct Shared {
    pub entries: Vec<Arc<Entry>>,
    rendered: Mutex<HashMap<LatestQuery, Rendered>>,
    /// The gateway's budget of rendered bytes, and what this holds of it.
    budget: Arc<AtomicUsize>,
    held: AtomicUsize,
}

pub type Entries = Arc<Shared>;

impl Shared {
    fn new(entries: Vec<Arc<Entry>>, budget: Arc<AtomicUsize>) -> Entries {
        Arc::new(Shared {
            entries,
            rendered: Mutex::default(),
            budget,
            held: AtomicUsize::new(0),
        })
    }

    /// The events of the entries `query` matches, one after the other, and
    /// how many: made by the first stream that asks and shared by every
    /// other stream of the same place and index (a place's test, a great
    /// circle or a box on parsed coordinates, was two thirds of the CPU of
    /// 10,000 streams each testing every entry). A place of more than
    /// `max` entries is not rendered: `Err` with its count (remembered
    /// too, so that refusing it again costs nothing). Kept while the
    /// gateway's [`RENDERED_BYTES`] allow, a quarter of them at most each.
    pub fn rendered(&self, query: &LatestQuery, max: u64) -> Result<(Bytes, u64), u64> {
        let key = LatestQuery {
            at: None,
            format: Format::Ndjson,
            ..query.clone()
        };
        let cache = || self.rendered.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hit) = cache().get(&key) {
            return match hit {
                Rendered::Events(bytes, count) if *count <= max => Ok((bytes.clone(), *count)),
                Rendered::Events(_, count) | Rendered::TooMany(count) => Err(*count),
            };
        }
        let mut out = BytesMut::new();
        let mut count = 0;
        let matcher = Matcher::new(query);
        for e in &self.entries {
            if matcher.matches(e) {
                count += 1;
                if count <= max {
                    out.extend_from_slice(e.frame(query.index));
                }
            }
        }
        if count > max {
            cache().insert(key, Rendered::TooMany(count));
            return Err(count);
        }
        let bytes = out.freeze();
        let size = bytes.len();
        let fits = size <= RENDERED_BYTES / 4
            && self
                .budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(size)
                })
                .is_ok();
        if fits {
            self.held.fetch_add(size, Ordering::Relaxed);
            cache().insert(key, Rendered::Events(bytes.clone(), count));
        }
        Ok((bytes, count))
    }
}

/// A place's rendering, or that it holds too many entries to render.
#[derive(Clone)]
enum Rendered {
    Events(Bytes, u64),
    TooMany(u64),
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.budget
            .fetch_add(*self.held.get_mut(), Ordering::Relaxed);
    }
}

/// [`LatestQuery::matches`] for entries, prepared once per query: the same
/// answers, on coordinates parsed once per entry, with the box around the
/// place tested before the great circle. Testing every entry against every
/// alert's place this way took an eighth of the time the text-parsing,
/// circle-first test took (BENCHMARKS.md).
pub struct Matcher<'q> {
    query: &'q LatestQuery,
    /// A box holding the place, when it is one the test may use: not for
    /// places the box cannot hold across the antimeridian.
    bounds: Option<Bbox>,
}

impl<'q> Matcher<'q> {
    pub fn new(query: &'q LatestQuery) -> Matcher<'q> {
        let bounds = query
            .place
            .map(|p| p.bounds())
            .filter(|b| b.min_lon > -180.0 && b.max_lon < 180.0);
        Matcher { query, bounds }
    }

    pub fn matches(&self, e: &Entry) -> bool {
        let q = self.query;
        if q.country
            .as_deref()
            .is_some_and(|c| e.reading.loc_country != c)
            || !q.wants_type(&e.reading.sensor_type)
        {
            return false;
        }
        let Some(place) = q.place else {
            return true;
        };
        let Some((lat, lon)) = e.position else {
            return false;
        };
        if let Some(b) = &self.bounds {
            if !(b.min_lat..=b.max_lat).contains(&lat) || !(b.min_lon..=b.max_lon).contains(&lon) {
                return false;
            }
        }
        place.contains(lat, lon)
    }
}

/// The changes one read of the store found: the entries whose version is
/// after the previous batch's, up to `version`.
pub struct Batch {
    pub version: u64,
    pub entries: Entries,
    /// The store's version went back (another store behind the same
    /// address): streams end, and start again from what is there now.
    pub reset: bool,
}

/// What a new stream starts from: every sensor's entry at `version` (of
/// which it sends those of its place changed after its `Last-Event-ID`),
/// and the changes after `version` as they come.
pub struct Start {
    pub version: u64,
    pub entries: Entries,
    pub changes: broadcast::Receiver<Arc<Batch>>,
}

/// Every sensor's latest reading at a version, in sensor id order:
/// replaced (not changed) by each batch, so that a stream sends from the
/// one it started with, however long it takes.
struct Mirror {
    version: u64,
    all: Entries,
}

/// `old` with `new`'s entries in place of those of the same sensors, both
/// in sensor id order.
fn merged(old: &[Arc<Entry>], new: &[Arc<Entry>]) -> Vec<Arc<Entry>> {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let take_new = match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) => {
                if o.reading.sensor_id == n.reading.sensor_id {
                    i += 1;
                }
                n.reading.sensor_id <= o.reading.sensor_id
            }
            (None, Some(_)) => true,
            _ => false,
        };
        if take_new {
            out.push(new[j].clone());
            j += 1;
        } else {
            out.push(old[i].clone());
            i += 1;
        }
    }
    out
}

pub struct LiveFeed {
    store: Arc<dyn ReadingStore>,
    /// `None` until the first stream asks.
    mirror: Mutex<Option<Mirror>>,
    /// Held while the mirror is first loaded, so that it is loaded once.
    loading: tokio::sync::Mutex<()>,
    changes: broadcast::Sender<Arc<Batch>>,
    /// Open streams, bounded per client and in all.
    pub slots: Arc<Slots>,
    /// The most readings a stream's first answer may hold.
    pub max_sensors: usize,
    cancel: CancellationToken,
    /// What is left of [`RENDERED_BYTES`].
    budget: Arc<AtomicUsize>,
    /// Evaluated after each batch, when the backend keeps alerts.
    alerts: Option<Arc<Alerts>>,
}

/// Renders entries off the async threads: 15,000 readings in three indices
/// take tens of milliseconds.
async fn entries_of(readings: Vec<(u64, Reading)>) -> Result<Vec<Arc<Entry>>, BackendError> {
    tokio::task::spawn_blocking(move || {
        readings
            .into_iter()
            .map(|(version, r)| Arc::new(Entry::new(version, r)))
            .collect()
    })
    .await
    .map_err(|e| BackendError::Local {
        what: "rendering the latest readings",
        source: Box::new(e),
    })
}

impl LiveFeed {
    pub fn new(
        store: Arc<dyn ReadingStore>,
        slots: Arc<Slots>,
        max_sensors: usize,
        cancel: CancellationToken,
        alerts: Option<Arc<Alerts>>,
    ) -> Arc<LiveFeed> {
        // Present from the start, so that a rate over it reads 0, not nothing.
        metrics::counter!("airq_live_feed_errors_total").absolute(0);
        Arc::new(LiveFeed {
            store,
            mirror: Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
            changes: broadcast::channel(BUFFERED_BATCHES).0,
            slots,
            max_sensors,
            cancel,
            budget: Arc::new(AtomicUsize::new(RENDERED_BYTES)),
            alerts,
        })
    }

    fn mirror(&self) -> std::sync::MutexGuard<'_, Option<Mirror>> {
        self.mirror.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads every sensor's latest reading, once, and starts following the
    /// store's changes.
    async fn ensure_loaded(self: &Arc<Self>) -> Result<(), BackendError> {
        if self.mirror().is_some() {
            return Ok(());
        }
        let _loading = self.loading.lock().await;
        if self.mirror().is_some() {
            return Ok(());
        }
        let LatestChanges { version, readings } = self.store.latest_changes(None).await?;
        let entries = entries_of(readings).await?;
        *self.mirror() = Some(Mirror {
            version,
            all: Shared::new(entries, self.budget.clone()),
        });
        metrics::gauge!("airq_live_feed_version").set(version as f64);
        tracing::info!(version, "live feed loaded; following the store's changes");
        tokio::spawn(self.clone().follow());
        Ok(())
    }

    /// A new stream's start, and the changes from then on.
    pub async fn start(self: &Arc<Self>) -> Result<Start, BackendError> {
        self.ensure_loaded().await?;
        let guard = self.mirror();
        let Some(mirror) = guard.as_ref() else {
            return Err(BackendError::Unsupported(
                "the live feed is not loaded".into(),
            ));
        };
        // Subscribed under the lock the follower applies batches under: the
        // first batch this stream gets is the one after `version`.
        Ok(Start {
            version: mirror.version,
            entries: mirror.all.clone(),
            changes: self.changes.subscribe(),
        })
    }

    /// Every sensor's latest reading as this gateway has it, once loaded.
    pub fn current(&self) -> Option<Entries> {
        self.mirror().as_ref().map(|m| m.all.clone())
    }

    /// Loads the feed now rather than on the first stream's request, as
    /// alerts need it from the start; tries again every few seconds while
    /// the store does not answer, and gives up on a store without a data
    /// version.
    pub fn load_in_background(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut warned = false;
            loop {
                match this.ensure_loaded().await {
                    Ok(()) => return,
                    Err(BackendError::Unsupported(why)) => {
                        tracing::info!(%why, "no live feed on this backend: no live streams or alerts");
                        return;
                    }
                    Err(e) => {
                        if !warned {
                            tracing::warn!(error = %e, "live feed: could not load the latest readings; trying again");
                            warned = true;
                        }
                    }
                }
                tokio::select! {
                    () = this.cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        });
    }

    /// Ends when the gateway stops.
    pub async fn stopped(&self) {
        self.cancel.cancelled().await;
    }

    /// Reads the store's changes every [`POLL`] and hands them on, until
    /// the gateway stops.
    async fn follow(self: Arc<Self>) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let since = self.mirror().as_ref().map_or(0, |m| m.version);
            match self.poll_once(since).await {
                Ok(changed) => {
                    if failing {
                        failing = false;
                        tracing::info!("live feed: the store answers again");
                    }
                    if let (Some(alerts), Some((version, all))) = (&self.alerts, changed) {
                        alerts.changed(version, all);
                    }
                }
                Err(e) => {
                    metrics::counter!("airq_live_feed_errors_total").increment(1);
                    if !failing {
                        failing = true;
                        tracing::warn!(error = %e, "live feed: could not read the store's changes; trying again");
                    }
                }
            }
        }
    }

    /// One read of the changes after `since`, applied and handed on: the
    /// new version and every entry at it, when there were changes.
    async fn poll_once(&self, since: u64) -> Result<Option<(u64, Entries)>, BackendError> {
        let changes = self.store.latest_changes(Some(since)).await?;
        if changes.version == since {
            return Ok(None);
        }
        let reset = changes.version < since;
        let changes = if reset {
            tracing::warn!(
                was = since,
                now = changes.version,
                "live feed: the store's data version went back; reloading"
            );
            self.store.latest_changes(None).await?
        } else {
            changes
        };
        let entries = entries_of(changes.readings).await?;
        let started = std::time::Instant::now();
        let mut guard = self.mirror();
        let Some(mirror) = guard.as_mut() else {
            return Ok(None);
        };
        let entries = Shared::new(entries, self.budget.clone());
        mirror.all = if reset {
            Shared::new(entries.entries.clone(), self.budget.clone())
        } else {
            Shared::new(
                merged(&mirror.all.entries, &entries.entries),
                self.budget.clone(),
            )
        };
        mirror.version = changes.version;
        let all = mirror.all.clone();
        // No receiver is not an error: nobody streams now.
        let _ = self.changes.send(Arc::new(Batch {
            version: changes.version,
            entries,
            reset,
        }));
        drop(guard);
        metrics::gauge!("airq_live_feed_version").set(changes.version as f64);
        tracing::debug!(version = changes.version, applied_in = ?started.elapsed(), "live feed: changes handed on");
        Ok(Some((changes.version, all)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_frames_one_event_per_index() {
        let r = Reading {
            id: Some(7),
            timestamp: airq_core::Timestamp::parse_feed("2026-12-05 10:05:00").expect("time"),
            sensor_id: 42,
            sensor_type: "SDS011".into(),
            loc_id: Some(9),
            loc_country: "DE".into(),
            loc_lat: "52.5".into(),
            loc_long: "13.4".into(),
            loc_alt: "30".into(),
            p1: Some("20.00".into()),
            p2: Some("10.00".into()),
            indices: airq_core::Indices::lowest(),
            samples: None,
            basis: None,
            flags: Default::default(),
            air: Default::default(),
        };
        let e = Entry::new(3, r);
        let daqi = std::str::from_utf8(e.frame(Index::Daqi)).expect("UTF-8");
        // The NDJSON line of a query, on one `data:` line, then a blank line.
        assert_eq!(
            daqi,
            "event: reading\ndata: {\"id\":7,\"timestamp\":\"2026-12-05 10:05:00\",\"sensor_id\":42,\
             \"sensor_type\":\"SDS011\",\"loc_id\":9,\"loc_country\":\"DE\",\"loc_lat\":52.5,\
             \"loc_long\":13.4,\"loc_alt\":30,\"P1\":20.00,\"P2\":10.00,\"AQI\":1,\"Range\":\"Low\"}\n\n"
        );
        assert_eq!(e.frames.len(), Index::ALL.len());
    }

    fn entry(sensor: u64, version: u64) -> Arc<Entry> {
        let mut r = Reading {
            id: None,
            timestamp: airq_core::Timestamp(0),
            sensor_id: sensor,
            sensor_type: "SDS011".into(),
            loc_id: None,
            loc_country: "DE".into(),
            loc_lat: "52.5".into(),
            loc_long: "13.4".into(),
            loc_alt: "30".into(),
            p1: None,
            p2: None,
            indices: airq_core::Indices::lowest(),
            samples: None,
            basis: None,
            flags: Default::default(),
            air: Default::default(),
        };
        r.timestamp = airq_core::Timestamp(version as i64);
        Arc::new(Entry::new(version, r))
    }

    #[test]
    fn a_places_rendering_is_made_once_and_its_bytes_given_back() {
        let budget = Arc::new(AtomicUsize::new(RENDERED_BYTES));
        let shared = Shared::new(vec![entry(1, 1), entry(2, 1)], budget.clone());
        let pairs = |at: &str| {
            LatestQuery::from_pairs([("country", "DE"), ("index", "eaqi"), ("bbox", at)])
                .expect("a query")
        };
        let (a, n) = shared
            .rendered(&pairs("13,52,14,53"), 10)
            .expect("rendered");
        assert_eq!(n, 2);
        assert!(a.starts_with(b"event: reading\ndata: {") && a.ends_with(b"}\n\n"));
        // The same place asked at another second: the same bytes, not a copy.
        let mut later = pairs("13,52,14,53");
        later.at = Some(airq_core::Timestamp(1));
        let (b, _) = shared.rendered(&later, 10).expect("rendered");
        assert_eq!(a.as_ptr(), b.as_ptr(), "shared");
        // Another place: its own events.
        let (none, zero) = shared.rendered(&pairs("0,0,1,1"), 10).expect("rendered");
        assert!(none.is_empty() && zero == 0);
        // Over the bound: refused with its count, nothing rendered.
        assert_eq!(shared.rendered(&pairs("13,52,14,53"), 1).err(), Some(2));
        let wide = pairs("-180,-90,180,90");
        assert_eq!(shared.rendered(&wide, 1).err(), Some(2));
        assert_eq!(shared.rendered(&wide, 1).err(), Some(2), "remembered");
        assert_eq!(budget.load(Ordering::Relaxed), RENDERED_BYTES - a.len());
        drop(shared);
        assert_eq!(budget.load(Ordering::Relaxed), RENDERED_BYTES, "given back");
    }

    #[test]
    fn the_prepared_matcher_answers_as_the_query_does() {
        // Points every 0.7° of latitude and 1.3° of longitude, plus some
        // beside the antimeridian and the poles, in two countries and two
        // sensor types.
        let mut points = Vec::new();
        let mut lat = -89.9;
        while lat <= 89.9 {
            let mut lon = -179.95;
            while lon <= 179.95 {
                points.push((lat, lon));
                lon += 1.3;
            }
            lat += 0.7;
        }
        points.extend([
            (-16.5, 179.99),
            (-16.5, -179.99),
            (89.99, 10.0),
            (52.52, 13.4),
            (52.6, 13.5),
        ]);
        let entries: Vec<Entry> = points
            .iter()
            .enumerate()
            .map(|(k, (lat, lon))| {
                let mut r = entry(k as u64, 1).reading.clone();
                r.loc_lat = format!("{lat:.4}");
                r.loc_long = format!("{lon:.4}");
                r.loc_country = if k % 3 == 0 { "DE".into() } else { "FJ".into() };
                r.sensor_type = if k % 2 == 0 {
                    "SDS011".into()
                } else {
                    "SPS30".into()
                };
                Entry::new(1, r)
            })
            .collect();
        for pairs in [
            vec![("near", "52.52,13.40,30")],
            vec![("near", "-16.5,179.95,50")],
            vec![("near", "89.5,0,100")],
            vec![("near", "-16.5,-179.99,20"), ("sensorType", "SDS011")],
            vec![("bbox", "170,-20,180,-10")],
            vec![("bbox", "-10,40,30,60"), ("country", "DE")],
            vec![("country", "FJ"), ("sensorType", "sps30")],
            vec![],
        ] {
            let q = LatestQuery::from_pairs(pairs.iter().copied()).expect("a query");
            let m = Matcher::new(&q);
            let (mut same, mut hits) = (0, 0);
            for e in &entries {
                assert_eq!(
                    m.matches(e),
                    q.matches(&e.reading),
                    "{pairs:?} at {}, {}",
                    e.reading.loc_lat,
                    e.reading.loc_long
                );
                same += 1;
                hits += usize::from(m.matches(e));
            }
            assert_eq!(same, entries.len());
            assert!(hits > 0 || pairs.is_empty(), "{pairs:?} selects something");
        }
    }

    #[test]
    fn a_batch_replaces_its_sensors_entries_and_keeps_the_order() {
        let old = vec![entry(1, 1), entry(3, 1), entry(5, 1)];
        let new = vec![entry(0, 2), entry(3, 2), entry(6, 2)];
        let m = merged(&old, &new);
        let got: Vec<(u64, u64)> = m.iter().map(|e| (e.reading.sensor_id, e.version)).collect();
        assert_eq!(got, vec![(0, 2), (1, 1), (3, 2), (5, 1), (6, 2)]);
        assert!(merged(&[], &[]).is_empty());
        assert_eq!(merged(&old, &[]).len(), 3);
    }
}
