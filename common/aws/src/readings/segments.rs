//! Answer segments on S3 (the format: `airq_core::segment`): each day of
//! the daily series with its rows already rendered, one object per day
//! (every country) and one per day and country, so that a month of a
//! country (or of all) is a month of `GetObject`s instead of every one of
//! its reading items read and decoded (issue 27; ARCHITECTURE.md has the
//! cost per query).
//!
//! **Fresh or not.** A day's version item (partition `#segments`, sort key
//! `day#YYYY-MM-DD`) holds `version`, a random number that every
//! `put_batch` which adds or changes a reading of the day sets anew twice
//! ([`DynamoReadingStore::bump_days`]): before writing the readings, when
//! it also adds its token to the item's `writing` set (the token says
//! until when its writer may be writing: [`WRITER_LEASE`]), and after,
//! when it takes its token out. `refresh` builds a stale day (`built` ≠
//! `version`, or another layout) only when no writer is in it (expired
//! tokens, of writers that died, it takes out first), reads its rows with
//! strongly consistent reads, puts the objects under
//! `segments/<table>/day/<YYYY-MM-DD>/<version>-<build>/`, `all.seg` and
//! `<n>.seg` (`n`: the country's place in the item's `countries`; `build`
//! random, so that no two builds share an object), then records `built`
//! and `build` on condition that `version` has not moved and `writing` is
//! empty. So a build is recorded only if no write began after it read the
//! version and none was under way when it recorded: its rows are the
//! day's. A query reads the version items of its days (one strongly
//! consistent `Query`) and reads a fresh day's objects of that build; a
//! day that is not fresh, or whose object a rebuild deleted meanwhile (or
//! too large to hold, [`MAX_OBJECT_BYTES`]), is read from its reading
//! items, the same bytes. Days written before segments came get their
//! version item once, at the first refresh after the upgrade
//! ([`DynamoReadingStore::version_older_days`]). A refresh builds at most
//! [`BUILDS_PER_REFRESH`] days, newest first, so that the first one after
//! an upgrade does not hold the master's schedule for the whole history.
//!
//! The hourly and 5-minute series have no segments here: their items
//! expire by TTL, which no write sees, so no version could follow them.
//!
//! **Bounds.** A query holds at most [`DAYS_AHEAD`] + 1 objects (a day of
//! its country, or every country's), each at most [`MAX_OBJECT_BYTES`] (a
//! day of the daily series for 15,000 sensors is about 7 MB in all), and
//! renders on a blocking thread into the answer's channel, a chunk at a
//! time. A query shorter than a day reads the items (a whole day's object
//! would be more than it needs). Names are built from dates, numbers and
//! the table's name only.

use super::route::Route;
use super::*;
use crate::blobs::BlobStore;
use crate::blobs::Fetched;
use crate::schema::SEGMENTS_PREFIX;
use airq_core::aggregate::{AggregateChunker, GroupBy};
use airq_core::export::{AnswerChunk, AnswerStream, Chunker, RowRef};
use airq_core::segment::{self, Builder, IdOrder, Loaded, Need, Record, Segment, LAYOUT};
use aws_sdk_dynamodb::types::ReturnValue;

/// The partition of the version items.
pub(crate) const SEGMENT_PARTITION: &str = "#segments";
/// The summary item's count of the version items (no readings either).
pub(crate) const SEGMENT_DAYS: &str = "segment_days";
/// The summary item's mark that every day stored before this store kept
/// versions has one ([`DynamoReadingStore::version_older_days`]).
const OLDER_DAYS_VERSIONED: &str = "segments_older_days_versioned";
/// Days whose objects a query fetches ahead of the one it renders.
pub(crate) const DAYS_AHEAD: usize = 1;
/// The largest object a query holds; a day whose object is larger is read
/// from its items.
pub(crate) const MAX_OBJECT_BYTES: u64 = 16 * 1024 * 1024;
/// How long a writer may be writing a day, from its first bump: longer
/// than any `put_batch` (a token older than this is a dead writer's).
pub(crate) const WRITER_LEASE: std::time::Duration = std::time::Duration::from_secs(3600);
/// Days a refresh builds at most (newest first); the others wait for the
/// next refresh (`airq-master segments` refreshes until none is left).
pub(crate) const BUILDS_PER_REFRESH: usize = 16;
/// Objects put at once by a build.
const PUTS_IN_FLIGHT: usize = 8;
const CONTENT_TYPE: &str = "application/octet-stream";

fn sort_key(day: i64) -> Result<String, BackendError> {
    Ok(format!("day#{}", day_name(day)?))
}

/// The key of `day`'s version item.
fn version_key(day: i64) -> Result<HashMap<String, AttributeValue>, BackendError> {
    Ok(HashMap::from([
        (PARTITION_KEY.to_owned(), s(SEGMENT_PARTITION)),
        (SORT_KEY.to_owned(), s(sort_key(day)?)),
    ]))
}

/// The day number of a version item's sort key.
fn day_of_key(key: &str) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(key.strip_prefix("day#")?, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    Some((date - epoch).num_days())
}

/// A day's version item, decoded.
#[derive(Debug, Clone)]
struct DayVersion {
    day: i64,
    version: i64,
    /// The version, layout and build of the segment last recorded.
    built: Option<(i64, i64, i64)>,
    countries: Vec<String>,
    /// The tokens of the writers in the day ([`Token`]).
    writing: Vec<String>,
}

impl DayVersion {
    fn decode(item: &HashMap<String, AttributeValue>) -> Option<DayVersion> {
        let number = |name: &str| match item.get(name) {
            Some(AttributeValue::N(v)) => v.parse::<i64>().ok(),
            _ => None,
        };
        let day = match item.get(SORT_KEY) {
            Some(AttributeValue::S(k)) => day_of_key(k)?,
            _ => return None,
        };
        let countries = match item.get("countries") {
            Some(AttributeValue::L(list)) => list
                .iter()
                .map(|c| match c {
                    AttributeValue::S(c) => Some(c.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?,
            _ => Vec::new(),
        };
        let writing = match item.get("writing") {
            Some(AttributeValue::Ss(set)) => set.clone(),
            _ => Vec::new(),
        };
        let built = match (number("built"), number("layout"), number("build")) {
            (Some(v), Some(l), Some(b)) => Some((v, l, b)),
            _ => None,
        };
        Some(DayVersion {
            day,
            version: number("version")?,
            built,
            countries,
            writing,
        })
    }

    fn fresh(&self) -> bool {
        self.built
            .is_some_and(|(v, l, _)| (v, l) == (self.version, i64::from(LAYOUT)))
    }
}

/// A writer's token in a day's `writing` set: until when (Unix seconds) it
/// may be writing, and who it is.
pub(crate) struct Token;

impl Token {
    /// A new writer's token for [`Bump`].
    pub(crate) fn issue() -> String {
        let until = now_secs().saturating_add(WRITER_LEASE.as_secs() as i64);
        format!("{until}:{}", uuid::Uuid::new_v4().simple())
    }

    /// Whether `token`'s writer is past its lease (an unreadable token
    /// counts as expired: airq wrote none).
    fn expired(token: &str, now: i64) -> bool {
        token
            .split_once(':')
            .and_then(|(until, _)| until.parse::<i64>().ok())
            .is_none_or(|until| until < now)
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Which of a writer's two bumps ([`DynamoReadingStore::bump_days`]), with
/// its token.
pub(crate) enum Bump<'a> {
    Start(&'a str),
    End(&'a str),
}

/// A new version: random, so that no two writers (or a day forgotten and
/// written again) take the same one.
fn new_version() -> i64 {
    (uuid::Uuid::new_v4().as_u128() as i64) & i64::MAX
}

impl DynamoReadingStore {
    /// Builds and reads answer segments in `blobs` (see the module's
    /// documentation); without, every answer is read from the items (the
    /// versions are kept all the same, so that a store with segments
    /// never takes a day a writer without them changed for fresh).
    pub fn with_segments(mut self, blobs: BlobStore) -> Self {
        self.segments = Some(blobs);
        self
    }

    /// The object of `day`'s segment of `version` made by `build` holding
    /// the country at `country` in its version item's list, or every
    /// country's (`None`).
    fn object_key(
        &self,
        day: i64,
        (version, build): (i64, i64),
        country: Option<usize>,
    ) -> Result<String, BackendError> {
        let name = match country {
            Some(k) => k.to_string(),
            None => "all".to_owned(),
        };
        Ok(format!(
            "{SEGMENTS_PREFIX}{}/day/{}/{version}-{build}/{name}.seg",
            self.table,
            day_name(day)?
        ))
    }

    /// Gives each of `days` a new version: their segments are stale from
    /// now on. `token` is the writer's ([`Token`]): added to the days'
    /// `writing` set on the bump before its writes (`Bump::Start`), taken
    /// out on the one after (`Bump::End`); both are idempotent, so an SDK
    /// retry changes nothing. Counts the version items it creates on the
    /// summary item, in a call of its own: not in one transaction with the
    /// item, as every writer's plain update of the summary item would then
    /// fail (`TransactionConflictException`) while one is under way, so
    /// the count can miss one if that call fails (docs/internals.md).
    pub(crate) async fn bump_days(
        &self,
        days: &BTreeSet<i64>,
        bump: Bump<'_>,
    ) -> Result<(), BackendError> {
        let (expression, token) = match bump {
            Bump::Start(token) => ("SET #v = :v ADD #w :t", token),
            Bump::End(token) => ("SET #v = :v DELETE #w :t", token),
        };
        let bumps = days.iter().copied().map(|day| async move {
            let out = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(version_key(day)?))
                .update_expression(expression)
                .expression_attribute_names("#v", "version")
                .expression_attribute_names("#w", "writing")
                .expression_attribute_values(":v", n(new_version()))
                .expression_attribute_values(":t", AttributeValue::Ss(vec![token.to_owned()]))
                .return_values(ReturnValue::UpdatedOld)
                .send()
                .await
                .map_err(|e| {
                    remote(
                        format!("DynamoDB UpdateItem (segment version) on {}", self.table),
                        e,
                    )
                })?;
            let created = out.attributes.is_none_or(|a| !a.contains_key("version"));
            if created {
                self.add_to_summary(SEGMENT_DAYS, 1).await?;
            }
            Ok::<(), BackendError>(())
        });
        futures::stream::iter(bumps)
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    /// Makes `day`'s version item unless it exists (false then: a writer
    /// made it), then adds one to the summary's count of them, in a call
    /// of its own as [`Self::bump_days`] does, and for the same reason: a
    /// transaction holding the summary item would fail every writer's
    /// plain update of it while it ran (`TransactionConflictException`).
    async fn create_version(&self, day: i64) -> Result<bool, BackendError> {
        let created = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(version_key(day)?))
            .update_expression("SET #v = :v")
            .condition_expression("attribute_not_exists(#v)")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", n(new_version()))
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if crate::condition_failed(&e, |se| se.is_conditional_check_failed_exception()) =>
            {
                return Ok(false)
            }
            Err(e) => {
                return Err(remote(
                    format!("DynamoDB UpdateItem (segment version) on {}", self.table),
                    e,
                ))
            }
        }
        self.add_to_summary(SEGMENT_DAYS, 1).await?;
        Ok(true)
    }

    /// The version items of the days from `first` to `last` (every day's
    /// for `None`), strongly consistent, in day order.
    async fn day_versions(
        &self,
        range: Option<(i64, i64)>,
    ) -> Result<Vec<DayVersion>, BackendError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_names("#p", PARTITION_KEY)
                .expression_attribute_values(":p", s(SEGMENT_PARTITION))
                .set_exclusive_start_key(start.take());
            req = match range {
                Some((first, last)) => req
                    .key_condition_expression("#p = :p AND #s BETWEEN :a AND :b")
                    .expression_attribute_names("#s", SORT_KEY)
                    .expression_attribute_values(":a", s(sort_key(first)?))
                    .expression_attribute_values(":b", s(sort_key(last)?)),
                None => req.key_condition_expression("#p = :p"),
            };
            let page = req.send().await.map_err(|e| {
                remote(
                    format!("DynamoDB Query (segment versions) on {}", self.table),
                    e,
                )
            })?;
            for item in page.items() {
                out.push(DayVersion::decode(item).ok_or_else(|| {
                    BackendError::Corrupt(format!(
                        "a segment version item of {} cannot be read: {item:?}",
                        self.table
                    ))
                })?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(out),
            }
        }
    }

    /// Builds every stale day's segment; returns how many it recorded.
    pub(crate) async fn refresh_s3_segments(&self) -> Result<u64, BackendError> {
        let Some(blobs) = self.segments.clone() else {
            return Ok(0);
        };
        let mut built = 0;
        let mut failed = None;
        if let Err(e) = self.version_older_days().await {
            tracing::warn!(table = %self.table, error = %e,
                "could not look for days stored before segment versions were kept; \
                 the next refresh tries again (their answers read the items meanwhile)");
            failed = Some(e);
        }
        let stale: Vec<DayVersion> = self
            .day_versions(None)
            .await?
            .into_iter()
            .filter(|d| !d.fresh())
            .collect();
        let left = stale.len().saturating_sub(BUILDS_PER_REFRESH);
        if left > 0 {
            tracing::info!(table = %self.table, stale = stale.len(), left,
                "more days' answer segments to build than one refresh builds; the next goes on");
        }
        for day in stale.into_iter().rev().take(BUILDS_PER_REFRESH) {
            // One day that cannot be built does not keep the others stale.
            match self.build_day(&blobs, &day).await {
                Ok(true) => built += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(table = %self.table, day = day.day, error = %e,
                        "could not build a day's answer segment; its answers read the items");
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => {
                tracing::warn!(table = %self.table, built,
                    "answer segments built, but some days could not be (see above)");
                Err(e)
            }
            None => Ok(built),
        }
    }

    /// Builds `day`'s segment from its rows and records it, unless a
    /// writer is in the day or the day moved on meanwhile; returns whether
    /// it recorded it.
    async fn build_day(&self, blobs: &BlobStore, day: &DayVersion) -> Result<bool, BackendError> {
        let (version, d) = (day.version, day.day);
        if !day.writing.is_empty() {
            let now = now_secs();
            if !day.writing.iter().all(|t| Token::expired(t, now)) {
                // A write is under way: the next refresh builds the day.
                return Ok(false);
            }
            // Dead writers': every row they wrote is in the table now.
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(version_key(d)?))
                .update_expression("DELETE #w :t")
                .expression_attribute_names("#w", "writing")
                .expression_attribute_values(":t", AttributeValue::Ss(day.writing.clone()))
                .send()
                .await
                .map_err(|e| {
                    remote(
                        format!("DynamoDB UpdateItem (segment writers) on {}", self.table),
                        e,
                    )
                })?;
        }
        let build = new_version();
        let mut builder = Builder::new(Resolution::Day, d, version);
        // Strongly consistent: every row a finished write put is read.
        let consistent = DynamoReadingStore {
            consistent_reads: true,
            ..self.clone()
        };
        let mut rows = consistent.query(&Query::between(
            Timestamp(d * DAY),
            Timestamp(d * DAY + DAY - 1),
        ));
        while let Some(r) = rows.next().await {
            builder.push(&RowRef::from(&r?))?;
        }
        let files = builder.into_files()?;
        let countries: Vec<String> = files.countries.iter().map(|(c, _)| c.clone()).collect();
        let mut keys = vec![self.object_key(d, (version, build), None)?];
        let mut bodies = vec![files.all];
        for (k, (_, bytes)) in files.countries.into_iter().enumerate() {
            keys.push(self.object_key(d, (version, build), Some(k))?);
            bodies.push(bytes);
        }
        let put = futures::stream::iter(keys.clone().into_iter().zip(bodies))
            .map(|(key, bytes)| async move { blobs.put(&key, bytes, CONTENT_TYPE).await })
            .buffer_unordered(PUTS_IN_FLIGHT)
            .try_collect::<()>()
            .await;
        // This build's objects are its own (`build` is in their keys):
        // deleting them never touches what another build recorded.
        let forget = |keys: Vec<String>| async move {
            for key in keys {
                if let Err(e) = blobs.delete(&key).await {
                    // No expiry rule collects it: an orphan, harmless
                    // (no version item names it) but billed.
                    tracing::warn!(bucket = blobs.bucket(), key, error = %e,
                        "could not delete an answer segment's object; it is left behind");
                }
            }
        };
        if let Err(e) = put {
            forget(keys).await;
            return Err(e);
        }
        let record = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(version_key(d)?))
            .update_expression("SET #b = :v, #l = :l, #c = :c, #n = :n")
            // Another build of this version and layout recorded first: its
            // objects serve, this one's go.
            .condition_expression(
                "#v = :v AND attribute_not_exists(#w) \
                 AND (attribute_not_exists(#b) OR #b <> :v OR #l <> :l)",
            )
            .return_values(ReturnValue::AllOld)
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#b", "built")
            .expression_attribute_names("#l", "layout")
            .expression_attribute_names("#c", "countries")
            .expression_attribute_names("#n", "build")
            .expression_attribute_names("#w", "writing")
            .expression_attribute_values(":v", n(version))
            .expression_attribute_values(":l", n(LAYOUT))
            .expression_attribute_values(":n", n(build))
            .expression_attribute_values(
                ":c",
                AttributeValue::L(countries.into_iter().map(AttributeValue::S).collect()),
            )
            .send()
            .await;
        let replaced = match record {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => {
                // A write began since the version was read, or is under
                // way, or another build of this version recorded first.
                forget(keys).await;
                return Ok(false);
            }
            // Recorded or not (the answer may be lost): the objects stay;
            // unrecorded, they are orphans (see docs/internals.md).
            Err(e) => {
                return Err(remote(
                    format!("DynamoDB UpdateItem (segment built) on {}", self.table),
                    e,
                ));
            }
        };
        // The objects of the build this one replaced (as the record found
        // it); a query reading them meanwhile reads the day's items.
        if let Some(old) = DayVersion::decode(&replaced) {
            if let Some((old_version, _, old_build)) = old.built {
                let old = std::iter::once(None)
                    .chain((0..old.countries.len()).map(Some))
                    .map(|k| self.object_key(d, (old_version, old_build), k))
                    .collect::<Result<Vec<_>, _>>()?;
                forget(old).await;
            }
        }
        Ok(true)
    }

    /// Whether `query` is answered from segments: a store with them, the
    /// daily series, what segments hold, a day or more (a shorter query
    /// reads fewer items than a day's object holds), and no small place
    /// (its cells' items are fewer than its country's rows).
    pub(crate) fn segmented(&self, query: &Query) -> bool {
        self.segments.is_some()
            && query.resolution == Resolution::Day
            && segment::holds(query)
            && query.end.0.saturating_sub(query.start.0) >= DAY - 1
            && !matches!(
                Route::of(query.place.as_ref(), query.country.as_deref()),
                Route::Cells(_)
            )
    }

    /// Whether every day of `query` that has readings has a fresh segment
    /// (see [`Self::segmented`]), so that its answer is one `Query` and a
    /// `GetObject` a day at any span. A day without a version item has no
    /// readings once the older days have theirs
    /// ([`Self::version_older_days`]); until then, only outside the
    /// summary's first and last reading.
    pub(crate) async fn all_days_fresh(&self, query: &Query) -> Result<bool, BackendError> {
        if !self.segmented(query) {
            return Ok(false);
        }
        let (first, last) = (query.start.0.div_euclid(DAY), query.end.0.div_euclid(DAY));
        let (versions, bounds) =
            tokio::join!(self.day_versions(Some((first, last))), self.stored_days());
        let (Some((lo, hi)), older_versioned) = bounds? else {
            // No readings at all: nothing to read.
            return Ok(true);
        };
        let versions = versions?;
        if older_versioned {
            // Every day with readings has a version item.
            return Ok(versions.iter().all(DayVersion::fresh));
        }
        let (from, to) = (first.max(lo), last.min(hi));
        if from > to {
            return Ok(true);
        }
        let fresh = versions
            .iter()
            .filter(|v| v.fresh() && (from..=to).contains(&v.day))
            .count();
        Ok(i64::try_from(fresh).is_ok_and(|n| n == to - from + 1))
    }

    /// The days of the summary's first and last reading (`None` before
    /// the first write), and whether the days before versions were kept
    /// have theirs; strongly consistent.
    async fn stored_days(&self) -> Result<(Option<(i64, i64)>, bool), BackendError> {
        let item = self.summary_item().await?;
        let number = |name: &str| match item.get(name) {
            Some(AttributeValue::N(v)) => v.parse::<i64>().ok(),
            _ => None,
        };
        let days = number("first_ts")
            .zip(number("last_ts"))
            .map(|(a, b)| (a.div_euclid(DAY), b.div_euclid(DAY)));
        Ok((days, number(OLDER_DAYS_VERSIONED).is_some()))
    }

    /// Gives a version item to each day with readings that has none: days
    /// stored before this store kept versions (every write since bumps
    /// its days). Once: a mark on the summary item says it is done. Each
    /// day of the stored range without a version item costs one `Query`
    /// of a single key (a day without readings has no version item
    /// either); a day found is created unbuilt, so the refresh that
    /// follows builds it, unless a writer created its item first.
    async fn version_older_days(&self) -> Result<(), BackendError> {
        let (Some((lo, hi)), false) = self.stored_days().await? else {
            return Ok(());
        };
        let versioned: std::collections::HashSet<i64> = self
            .day_versions(Some((lo, hi)))
            .await?
            .iter()
            .map(|v| v.day)
            .collect();
        let older = (lo..=hi)
            .filter(|d| !versioned.contains(d))
            .map(|day| async move {
                if !self.day_has_readings(day).await? {
                    return Ok(0u64);
                }
                // A writer's bump may have made it meanwhile (and
                // counted it).
                Ok(u64::from(self.create_version(day).await?))
            });
        let found: u64 = futures::stream::iter(older)
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_fold(0, |sum, n| async move { Ok(sum + n) })
            .await?;
        if found > 0 {
            tracing::info!(table = %self.table, days = found,
                "days stored before segment versions were kept now have one; their segments follow");
        }
        // Its presence is the mark (the number is not read).
        self.add_to_summary(OLDER_DAYS_VERSIONED, 1).await
    }

    /// Whether `day`'s partition holds a reading (one key read).
    async fn day_has_readings(&self, day: i64) -> Result<bool, BackendError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#p = :d")
            .expression_attribute_names("#p", PARTITION_KEY)
            .expression_attribute_values(":d", s(day_name(day)?))
            .projection_expression("#p")
            .consistent_read(true)
            .limit(1)
            .send()
            .await
            .map_err(|e| {
                remote(
                    format!("DynamoDB Query (a day's readings) on {}", self.table),
                    e,
                )
            })?;
        Ok(!page.items().is_empty())
    }

    /// The answer to `query` (see [`Self::segmented`]): each fresh day from
    /// its objects, each run of other days from its items.
    pub(crate) fn segmented_answer(&self, query: &Query) -> AnswerStream {
        let this = self.clone();
        let query = query.clone();
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            let out = match query.aggregator() {
                Some(aggregator) => {
                    let need = Need::Values {
                        sites: aggregator.reads() == GroupBy::Sensor,
                        ordered: aggregator.orders_within_a_day(),
                    };
                    Ok(Out::Aggregate(
                        AggregateChunker::new(aggregator, query.format),
                        need,
                    ))
                }
                None => Chunker::new(query.rendering())
                    .map(|c| Out::Render(c, Need::Rendered(query.format))),
            };
            let last = match out {
                Ok(out) => match this.run_segmented(&query, out, &tx).await {
                    Ok(Some(out)) => out.finish(),
                    Ok(None) => return,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            let _ = tx.send(last).await;
        });
        ReceiverStream::new(rx).boxed()
    }

    /// Hands `query`'s rows to `out` and its chunks to `tx`; gives `out`
    /// back, `None` when the reader left.
    async fn run_segmented(
        &self,
        query: &Query,
        mut out: Out,
        tx: &mpsc::Sender<Result<AnswerChunk, BackendError>>,
    ) -> Result<Option<Out>, BackendError> {
        let Some(blobs) = self.segments.clone() else {
            return Ok(Some(out));
        };
        let (first, last) = (query.start.0.div_euclid(DAY), query.end.0.div_euclid(DAY));
        let fresh: BTreeMap<i64, DayVersion> = self
            .day_versions(Some((first, last)))
            .await?
            .into_iter()
            .filter(DayVersion::fresh)
            .map(|v| (v.day, v))
            .collect();
        // The days in order: a fresh one alone, the others in runs.
        let mut parts = Vec::new();
        let mut day = first;
        while day <= last {
            if let Some(v) = fresh.get(&day) {
                parts.push(Part::Day(v.clone()));
                day += 1;
                continue;
            }
            let mut to = day;
            while to < last && !fresh.contains_key(&(to + 1)) {
                to += 1;
            }
            parts.push(Part::Rows(day, to));
            day = to + 1;
        }
        let need = out.need();
        // Each fetch a task of its own, so that the next day downloads
        // while this one renders.
        let fetched = futures::stream::iter(parts)
            .map(|part| {
                let (this, blobs, query) = (self.clone(), blobs.clone(), query.clone());
                tokio::spawn(async move {
                    let sections = match &part {
                        Part::Day(v) => this.fetch_day(&blobs, v, &query, need).await?,
                        Part::Rows(..) => None,
                    };
                    Ok::<_, BackendError>((part, sections))
                })
            })
            .buffered(DAYS_AHEAD + 1);
        futures::pin_mut!(fetched);
        while let Some(next) = fetched.next().await {
            let (part, sections) =
                next.map_err(|e| BackendError::Corrupt(format!("fetching a day's segment: {e}")))??;
            if let Some(sections) = sections {
                // Rendering is CPU work: on a blocking thread, each chunk
                // into the answer's channel as it fills.
                let (q, tx) = (query.clone(), tx.clone());
                let (back, open) = tokio::task::spawn_blocking(move || {
                    let open = render_day(&q, &sections, &mut out, &tx);
                    (out, open)
                })
                .await
                .map_err(|e| BackendError::Corrupt(format!("rendering a day's segment: {e}")))?;
                out = back;
                if !open? {
                    return Ok(None);
                }
                continue;
            }
            // A run of days without a fresh segment (or one whose object
            // is gone or too large): their items.
            let (from, to) = match part {
                Part::Rows(from, to) => (from, to),
                Part::Day(v) => (v.day, v.day),
            };
            let mut q = query.clone();
            q.start = Timestamp(query.start.0.max(from * DAY));
            q.end = Timestamp(query.end.0.min(to * DAY + DAY - 1));
            let mut rows = self.query(&q);
            while let Some(r) = rows.next().await {
                if let Some(chunk) = out.row(&RowRef::from(&r?))? {
                    if tx.send(Ok(chunk)).await.is_err() {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(Some(out))
    }

    /// The sections of a fresh day that `query` reads, loaded; `None` when
    /// its object is gone (replaced by a rebuild), larger than
    /// [`MAX_OBJECT_BYTES`] or cannot serve the query (then the day is
    /// read from its items).
    async fn fetch_day(
        &self,
        blobs: &BlobStore,
        day: &DayVersion,
        query: &Query,
        need: Need,
    ) -> Result<Option<Vec<Loaded>>, BackendError> {
        let Some((version, _, build)) = day.built else {
            return Ok(None);
        };
        let object = match &query.country {
            Some(c) => match day.countries.iter().position(|x| x == c) {
                Some(k) => Some(k),
                // The country has no rows that day.
                None => return Ok(Some(Vec::new())),
            },
            None => None,
        };
        let key = self.object_key(day.day, (version, build), object)?;
        let object = match blobs.get_bytes_unlisted(&key, MAX_OBJECT_BYTES).await? {
            Fetched::Bytes(object) => object,
            Fetched::Missing => {
                // Replaced by a rebuild since the versions were read (or
                // not readable at all: then every answer is read from the
                // items, slower, and this says why).
                tracing::warn!(
                    bucket = blobs.bucket(),
                    key,
                    "an answer segment is gone or not readable; its day is read from the items"
                );
                return Ok(None);
            }
            Fetched::TooLarge(bytes) => {
                tracing::debug!(bucket = blobs.bucket(), key, bytes,
                    "an answer segment is larger than a query holds; its day is read from the items");
                return Ok(None);
            }
        };
        let segment = Segment::parse(object, key, Resolution::Day, day.day, version)?;
        segment.load(
            query.country.as_deref(),
            need,
            query.place.is_some(),
            (query.start.0, query.end.0),
        )
    }
}

/// Renders the rows of one day's `sections` that `query` keeps into `out`,
/// sending each chunk into `tx` (on a blocking thread); false when the
/// reader left.
fn render_day(
    query: &Query,
    sections: &[Loaded],
    out: &mut Out,
    tx: &mpsc::Sender<Result<AnswerChunk, BackendError>>,
) -> Result<bool, BackendError> {
    let ordered = match out.need() {
        Need::Values { ordered, .. } => ordered,
        Need::Rendered(_) => true,
    };
    // DynamoDB's sort keys hold sensor ids as 20-digit numbers.
    segment::each_kept::<BackendError>(query, sections, ordered, IdOrder::Unsigned, |s, i, r| {
        match out.segment_row(s, i, r)? {
            Some(chunk) => Ok(tx.blocking_send(Ok(chunk)).is_ok()),
            None => Ok(true),
        }
    })
}

/// A day read from its objects, or a run of days read from their items.
enum Part {
    Day(DayVersion),
    Rows(i64, i64),
}

/// What an answer's rows go into: rendered, or aggregated.
enum Out {
    Render(Chunker, Need),
    Aggregate(AggregateChunker, Need),
}

impl Out {
    fn need(&self) -> Need {
        match self {
            Out::Render(_, need) | Out::Aggregate(_, need) => *need,
        }
    }

    fn row(&mut self, row: &RowRef<'_>) -> Result<Option<AnswerChunk>, BackendError> {
        match self {
            Out::Render(c, _) => c.push(row),
            Out::Aggregate(c, _) => Ok(c.push(row)),
        }
    }

    fn segment_row(
        &mut self,
        section: &Loaded,
        i: usize,
        record: &Record,
    ) -> Result<Option<AnswerChunk>, BackendError> {
        match self {
            Out::Render(c, _) => c.push_pieces(&section.pieces(i, record)?),
            Out::Aggregate(c, _) => Ok(c.push_parsed(&section.parsed(i, record)?)),
        }
    }

    fn finish(self) -> Result<AnswerChunk, BackendError> {
        match self {
            Out::Render(c, _) => c.finish(),
            Out::Aggregate(c, _) => Ok(c.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{day_of_key, sort_key, Token, WRITER_LEASE};

    #[test]
    fn version_item_keys_name_their_day() {
        // 2026-01-01 is 56 × 365 + 14 (the leap years 1972 to 2024) =
        // 20,454 days after 1970-01-01; 2026-12-07 is 334 + 6 = 340 days
        // after that: day 20,794.
        assert_eq!(sort_key(20_794).as_deref().ok(), Some("day#2026-12-07"));
        assert_eq!(day_of_key("day#2026-12-07"), Some(20_794));
        assert_eq!(day_of_key("day#1970-01-01"), Some(0));
        assert_eq!(day_of_key("day#not-a-day"), None);
        assert_eq!(day_of_key("2026-12-07"), None);
    }

    #[test]
    fn a_writers_token_holds_for_its_lease_only() {
        let token = Token::issue();
        let (until, who) = token.split_once(':').expect("until:who");
        let until: i64 = until.parse().expect("seconds");
        assert_eq!(who.len(), 32, "a UUID's 32 hex digits");
        // Made now: expires one lease from now (give or take the second
        // the test runs in).
        let now = until - WRITER_LEASE.as_secs() as i64;
        assert!(!Token::expired(&token, now));
        assert!(!Token::expired(&token, until));
        assert!(Token::expired(&token, until + 1));
        // Not airq's: counts as expired, so it never blocks a build.
        assert!(Token::expired("garbage", now));
        assert!(Token::expired("soon:abc", now));
    }
}
