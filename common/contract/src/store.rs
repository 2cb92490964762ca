//! The reading store contract: what a store returns equals the reference
//! evaluation ([`Query::matches`]) over what was written, in store order.

use airq_core::query::Query;
use airq_core::reading::Reading;
use airq_core::store::ReadingStore;
use futures::TryStreamExt;

/// The reference answer: matching readings by (timestamp, sensor id), one
/// per identity (the last written wins).
pub fn reference(readings: &[Reading], query: &Query) -> Vec<Reading> {
    let mut by_key = std::collections::BTreeMap::new();
    for r in readings {
        by_key.insert((r.timestamp, r.sensor_id), r.clone());
    }
    by_key.into_values().filter(|r| query.matches(r)).collect()
}

pub async fn collect(store: &dyn ReadingStore, query: &Query) -> Vec<Reading> {
    store
        .query(query)
        .try_collect()
        .await
        .expect("query stream")
}

/// The store answers `query` exactly as the reference does.
pub async fn matches_reference(store: &dyn ReadingStore, written: &[Reading], query: &Query) {
    let got = collect(store, query).await;
    let want = reference(written, query);
    assert_eq!(
        got.len(),
        want.len(),
        "row count differs from the reference for {}",
        query.to_json()
    );
    assert!(
        got == want,
        "rows differ from the reference for {}",
        query.to_json()
    );
    // The CSV answer, on whichever path the store renders it, is the
    // reference rows' CSV byte for byte.
    let (csv, rows) = airq_core::export::render(store.query_answer(query), usize::MAX)
        .await
        .expect("CSV answer");
    let want_csv = airq_core::export::to_csv(&want).expect("reference CSV");
    assert_eq!(
        rows,
        want.len() as u64,
        "CSV row count for {}",
        query.to_json()
    );
    assert!(
        csv == want_csv,
        "CSV differs from the reference for {}",
        query.to_json()
    );
}

/// Writes `readings` twice and checks idempotency, exact values and order.
pub async fn write_is_idempotent_and_exact(store: &dyn ReadingStore, readings: &[Reading]) {
    for chunk in readings.chunks(1000) {
        store.put_batch(chunk.to_vec()).await.expect("put_batch");
    }
    for chunk in readings.chunks(700) {
        store
            .put_batch(chunk.to_vec())
            .await
            .expect("put_batch again");
    }
    let (first, last) = readings.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| {
        (lo.min(r.timestamp.0), hi.max(r.timestamp.0))
    });
    let all = Query::between(airq_core::Timestamp(first), airq_core::Timestamp(last));
    let got = collect(store, &all).await;
    assert_eq!(
        got,
        reference(readings, &all),
        "every reading once, exactly as written, in (time, sensor) order"
    );
    let summary = store.summary().await.expect("summary");
    assert_eq!(summary.first.map(|t| t.0), Some(first));
    assert_eq!(summary.last.map(|t| t.0), Some(last));
    let mut countries: Vec<_> = readings.iter().map(|r| r.loc_country.clone()).collect();
    countries.sort();
    countries.dedup();
    assert_eq!(summary.countries, countries);
}
