//! The data version's contract ([`ReadingStore::latest_changes`]): which
//! writes move it, and which latest readings a reader asking from a
//! version gets. Expected values are worked out by hand in each step.

use airq_core::reading::{Reading, Timestamp};
use airq_core::store::ReadingStore;
use airq_core::{Indices, Resolution};

fn reading(sensor: u64, time: &str, p2: &str) -> Reading {
    Reading {
        id: None,
        timestamp: Timestamp::parse_feed(time).expect("a time"),
        sensor_id: sensor,
        sensor_type: "SDS011".into(),
        loc_id: Some(sensor + 100),
        loc_country: "DE".into(),
        loc_lat: "52.520".into(),
        loc_long: "13.405".into(),
        loc_alt: "34".into(),
        p1: Some("20.00".into()),
        p2: Some(p2.into()),
        indices: Indices::lowest(),
        samples: None,
        basis: None,
        flags: Default::default(),
        air: Default::default(),
    }
}

/// (version, sensor, timestamp, P2) of each change, in sensor order.
async fn changes(
    store: &dyn ReadingStore,
    since: Option<u64>,
) -> (u64, Vec<(u64, u64, String, String)>) {
    let c = store.latest_changes(since).await.expect("latest_changes");
    let rows = c
        .readings
        .iter()
        .map(|(v, r)| {
            (
                *v,
                r.sensor_id,
                r.timestamp.to_string(),
                r.p2.clone().unwrap_or_default(),
            )
        })
        .collect();
    (c.version, rows)
}

fn row(v: u64, sensor: u64, time: &str, p2: &str) -> (u64, u64, String, String) {
    (v, sensor, time.to_owned(), p2.to_owned())
}

/// Every check, on an empty store that keeps the live tier.
pub async fn run_all(store: &dyn ReadingStore) {
    const T1: &str = "2026-12-01 00:00:00";
    const T2: &str = "2026-12-02 00:00:00";
    const T3: &str = "2026-12-02 10:05:00";
    assert_eq!(changes(store, None).await, (0, vec![]), "an empty store");

    // A daily batch of two sensors: one write, version 1.
    let batch = vec![reading(1, T1, "5.00"), reading(2, T1, "6.00")];
    store.put_batch(batch.clone()).await.expect("put_batch");
    let both = vec![row(1, 1, T1, "5.00"), row(1, 2, T1, "6.00")];
    assert_eq!(changes(store, Some(0)).await, (1, both.clone()));
    assert_eq!(changes(store, None).await, (1, both.clone()));

    // The same batch again changes nothing: the version stays.
    store.put_batch(batch).await.expect("put_batch again");
    assert_eq!(
        changes(store, Some(1)).await,
        (1, vec![]),
        "a repeated batch"
    );

    // A newer day of sensor 1 and an older one of sensor 2 (not its
    // latest): version 2 holds sensor 1 only.
    store
        .put_batch(vec![
            reading(1, T2, "7.00"),
            reading(2, "2026-11-30 00:00:00", "1.00"),
        ])
        .await
        .expect("put_batch newer");
    assert_eq!(
        changes(store, Some(1)).await,
        (2, vec![row(2, 1, T2, "7.00")]),
        "only the sensor whose latest reading changed"
    );

    // An older reading alone changes no latest reading: no new version.
    store
        .put_batch(vec![reading(2, "2026-11-29 00:00:00", "1.00")])
        .await
        .expect("put_batch older");
    assert_eq!(
        changes(store, Some(2)).await,
        (2, vec![]),
        "an older reading"
    );

    // A 5-minute reading of sensor 2: its latest now, version 3 (on a
    // store without the live tier, the same reading in the daily series).
    let live = vec![reading(2, T3, "8.00")];
    if store.series().contains(&Resolution::FiveMin) {
        store.put_recent(live).await.expect("put_recent");
    } else {
        store.put_batch(live).await.expect("put_batch of T3");
    }
    assert_eq!(
        changes(store, Some(2)).await,
        (3, vec![row(3, 2, T3, "8.00")]),
        "a live reading"
    );

    // A corrected value of sensor 1's latest reading is a change: version 4.
    store
        .put_batch(vec![reading(1, T2, "7.50")])
        .await
        .expect("put_batch corrected");
    assert_eq!(
        changes(store, Some(3)).await,
        (4, vec![row(4, 1, T2, "7.50")])
    );

    // From version 1, each changed sensor once, as it is now.
    assert_eq!(
        changes(store, Some(1)).await,
        (4, vec![row(4, 1, T2, "7.50"), row(3, 2, T3, "8.00")])
    );
    // A version from the future (another store's) names nothing here.
    assert_eq!(changes(store, Some(99)).await, (4, vec![]));
}
