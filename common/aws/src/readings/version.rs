//! The data version on DynamoDB ([`ReadingStore::latest_changes`]): a
//! number that grows with each write that changes a sensor's latest
//! reading, and the version each latest reading changed at.
//!
//! One item (partition `#version`) holds `next`, the last version handed
//! to a writer, and `pending`, a string set of the versions still being
//! written (`<version>:<reserved at, Unix ms>`). A write that changes
//! latest readings reserves a version (a compare-and-set on `next`, which
//! adds it to `pending`), stamps each shard entry it changes with it, and
//! once every shard is written deletes it from `pending`. A reader sees
//! the versions below the oldest pending one (all of `next` when none is):
//! every entry stamped at or below that is written, so a reader asking
//! again from the version it got misses nothing, even when two writers
//! (the live and the nightly ingestion) finish out of order.
//!
//! A writer that dies leaves its version pending. A reservation older than
//! [`RESERVATION_LEASE_MS`] is ignored by readers and deleted by the next
//! reservation. A writer that is merely slow could then be passed by a
//! reader, so a writer holds its reservation for half the lease only, by
//! its own clock (clocks apart by less than that agree): one that took
//! longer stamps its entries again under a new version.
//!
//! The cost (docs/internals.md): a write that changes anything adds one
//! strongly consistent read and two updates of this item; a reader's poll
//! is one strongly consistent read of it (under 1 KB: one read unit), and
//! only when the version moved, the 64 shards.

use super::*;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const VERSION_DAY: &str = "#version";
const VERSION_SORT: &str = "version";
const NEXT: &str = "next";
const PENDING: &str = "pending";
/// How long a reservation holds against readers.
pub(crate) const RESERVATION_LEASE_MS: i64 = 5 * 60 * 1000;
/// Reservations that lose the race on `next` are retried this many times.
const MAX_RACES: u32 = 50;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The version item as read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct VersionState {
    /// Whether the item exists.
    exists: bool,
    next: u64,
    /// (version, reserved at ms), as stored.
    pending: Vec<(u64, i64)>,
}

impl VersionState {
    fn decode(
        table: &str,
        item: Option<&HashMap<String, AttributeValue>>,
    ) -> Result<Self, BackendError> {
        let Some(item) = item else {
            return Ok(VersionState::default());
        };
        let corrupt = |why: String| {
            BackendError::Corrupt(format!("DynamoDB table {table}, the version item: {why}"))
        };
        let next = match item.get(NEXT) {
            Some(AttributeValue::N(v)) => v
                .parse()
                .map_err(|_| corrupt(format!("next {v:?} is no number")))?,
            _ => return Err(corrupt("no next".into())),
        };
        let pending = match item.get(PENDING) {
            None => Vec::new(),
            Some(AttributeValue::Ss(set)) => set
                .iter()
                .map(|m| parse_member(m).ok_or_else(|| corrupt(format!("pending member {m:?}"))))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(corrupt("pending is no string set".into())),
        };
        Ok(VersionState {
            exists: true,
            next,
            pending,
        })
    }

    /// The newest version every entry at or below which is written, as
    /// seen at `now_ms`: below the oldest live reservation.
    pub(crate) fn visible(&self, now_ms: i64) -> u64 {
        self.pending
            .iter()
            .filter(|(_, at)| now_ms.saturating_sub(*at) <= RESERVATION_LEASE_MS)
            .map(|(v, _)| v.saturating_sub(1))
            .min()
            .unwrap_or(self.next)
            .min(self.next)
    }
}

fn member(version: u64, at_ms: i64) -> String {
    format!("{version}:{at_ms}")
}

fn parse_member(m: &str) -> Option<(u64, i64)> {
    let (v, at) = m.split_once(':')?;
    Some((v.parse().ok()?, at.parse().ok()?))
}

/// A version reserved by one writer.
#[derive(Debug)]
pub(crate) struct Reservation {
    pub(crate) version: u64,
    member: String,
    taken: Instant,
}

impl Reservation {
    /// Whether readers still wait for it (by this process's clock, at half
    /// the lease).
    pub(crate) fn holds(&self) -> bool {
        self.taken.elapsed().as_millis() < (RESERVATION_LEASE_MS / 2) as u128
    }
}

impl DynamoReadingStore {
    fn version_key() -> HashMap<String, AttributeValue> {
        HashMap::from([
            (PARTITION_KEY.to_owned(), s(VERSION_DAY)),
            (SORT_KEY.to_owned(), s(VERSION_SORT)),
        ])
    }

    /// The version item, strongly consistent.
    pub(crate) async fn version_state(&self) -> Result<VersionState, BackendError> {
        let out = with_backoff(&self.retry, || {
            self.client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(Self::version_key()))
                .consistent_read(true)
                .send()
        })
        .await
        .map_err(|e| remote(format!("DynamoDB GetItem (version) on {}", self.table), e))?;
        VersionState::decode(&self.table, out.item.as_ref())
    }

    /// Reserves the next version (see the module documentation), and
    /// deletes the reservations whose lease ran out.
    pub(crate) async fn reserve_version(&self) -> Result<Reservation, BackendError> {
        let context = || format!("DynamoDB UpdateItem (version) on {}", self.table);
        for _ in 0..MAX_RACES {
            let state = self.version_state().await?;
            let now = now_ms();
            let expired: Vec<String> = state
                .pending
                .iter()
                .filter(|(_, at)| now.saturating_sub(*at) > RESERVATION_LEASE_MS)
                .map(|&(v, at)| member(v, at))
                .collect();
            if !expired.is_empty() {
                self.drop_reservations(expired).await?;
            }
            let version = state.next + 1;
            let mine = member(version, now);
            let update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::version_key()))
                .update_expression("SET #n = :n ADD #p :mine")
                .expression_attribute_names("#n", NEXT)
                .expression_attribute_names("#p", PENDING)
                .expression_attribute_values(":n", n(version))
                .expression_attribute_values(":mine", AttributeValue::Ss(vec![mine.clone()]));
            let update = if state.exists {
                update
                    .condition_expression("#n = :old")
                    .expression_attribute_values(":old", n(state.next))
            } else {
                update.condition_expression("attribute_not_exists(#n)")
            };
            match with_backoff(&self.retry, || update.clone().send()).await {
                Ok(_) => {
                    if !state.exists {
                        // One more item that is no reading (the summary's
                        // count leaves it out of the readings count).
                        self.count_latest_items(1).await?;
                    }
                    return Ok(Reservation {
                        version,
                        member: mine,
                        taken: Instant::now(),
                    });
                }
                Err(e)
                    if crate::condition_failed(&e, |se| {
                        se.is_conditional_check_failed_exception()
                    }) =>
                {
                    // Another writer reserved first: read and try again.
                    continue;
                }
                Err(e) => return Err(remote(context(), e)),
            }
        }
        Err(BackendError::Remote {
            context: context(),
            message: format!("gave up reserving a data version after {MAX_RACES} races"),
        })
    }

    /// Ends a reservation: its entries are all written, and readers may
    /// pass it.
    pub(crate) async fn release_version(&self, r: Reservation) -> Result<(), BackendError> {
        self.drop_reservations(vec![r.member]).await
    }

    async fn drop_reservations(&self, members: Vec<String>) -> Result<(), BackendError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::version_key()))
            .update_expression("DELETE #p :gone")
            .expression_attribute_names("#p", PENDING)
            .expression_attribute_values(":gone", AttributeValue::Ss(members));
        with_backoff(&self.retry, || update.clone().send())
            .await
            .map_err(|e| {
                remote(
                    format!("DynamoDB UpdateItem (version) on {}", self.table),
                    e,
                )
            })?;
        Ok(())
    }

    /// [`ReadingStore::latest_changes`]: the version item, then (when a
    /// reader is behind) every shard, strongly consistent, keeping the
    /// entries stamped after `since` and at or below the visible version.
    pub(crate) async fn run_latest_changes(
        &self,
        since: Option<u64>,
    ) -> Result<LatestChanges, BackendError> {
        let version = self.version_state().await?.visible(now_ms());
        if since.is_some_and(|s| s >= version) {
            return Ok(LatestChanges {
                version,
                readings: Vec::new(),
            });
        }
        let after = since.unwrap_or(0);
        let everything = since.is_none();
        let shards = self.shards(0..LATEST_SHARDS, true).await?;
        let mut readings: Vec<(u64, Reading)> = shards
            .into_values()
            .flat_map(|shard| {
                let Shard {
                    readings, versions, ..
                } = shard;
                readings.into_iter().filter_map(move |(sensor, r)| {
                    let v = versions.get(&sensor).copied().unwrap_or(0);
                    (v <= version && (everything || v > after)).then_some((v, r))
                })
            })
            .collect();
        readings.sort_unstable_by_key(|(_, r)| r.sensor_id);
        Ok(LatestChanges { version, readings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_stop_below_the_oldest_live_reservation() {
        let now = 10_000_000;
        let state = |next, pending: Vec<(u64, i64)>| VersionState {
            exists: true,
            next,
            pending,
        };
        assert_eq!(VersionState::default().visible(now), 0);
        assert_eq!(state(4, vec![]).visible(now), 4);
        // 5 and 6 reserved, 6 written first: readers wait for 5.
        assert_eq!(state(6, vec![(5, now - 10), (6, now - 5)]).visible(now), 4);
        // 5's writer died 6 minutes ago: readers go on to 6's.
        let dead = now - 6 * 60 * 1000;
        assert_eq!(state(6, vec![(5, dead), (6, now - 5)]).visible(now), 5);
        assert_eq!(state(6, vec![(5, dead)]).visible(now), 6);
        assert_eq!(parse_member(&member(12, 345)), Some((12, 345)));
        assert_eq!(parse_member("12"), None);
    }
}
