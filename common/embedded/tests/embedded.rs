//! The contract suites and property tests on the embedded (SQLite) backend.

use airq_contract::sample::{arb_query, sample};
use airq_core::queue::Queue;
use airq_core::results::Submission;
use airq_core::ClientId;
use airq_core::{Index, Query, QueryLimits, Reading};
use airq_embedded::{
    Db, Redrive, SqliteKeyStore, SqliteQueue, SqliteReadingStore, SqliteResultStore,
};
use async_trait::async_trait;
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};

struct Harness {
    dir: tempfile::TempDir,
}

#[async_trait]
impl airq_contract::queue::QueueHarness for Harness {
    async fn fresh(&self, max_receives: u32) -> (Arc<dyn Queue>, Arc<dyn Queue>) {
        let db = Db::open(self.dir.path().join("q.db")).expect("db");
        let name = format!("q-{}", uuid::Uuid::new_v4());
        let dlq_name = format!("{name}-dlq");
        let q = SqliteQueue::new(
            db.clone(),
            &name,
            Some(Redrive {
                dead_letter: dlq_name.clone(),
                max_receives,
            }),
        );
        (Arc::new(q), Arc::new(SqliteQueue::new(db, &dlq_name, None)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_contract() {
    let h = Harness {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    airq_contract::queue::run_all(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_shared_across_handles() {
    // Two handles on one file stand in for two processes: no in-process
    // wake-up between them, only the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let a = SqliteQueue::new(
        Db::open(dir.path().join("q.db")).expect("db"),
        "shared",
        None,
    );
    let b = SqliteQueue::new(
        Db::open(dir.path().join("q.db")).expect("db"),
        "shared",
        None,
    );
    let other = SqliteQueue::new(
        Db::open(dir.path().join("q.db")).expect("db"),
        "other",
        None,
    );
    a.send("x").await.expect("send");
    let got = b
        .receive(
            1,
            std::time::Duration::from_secs(30),
            std::time::Duration::from_secs(5),
        )
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "x");
    assert!(
        other.depth().await.expect("depth").visible == 0,
        "queues are separate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_moved_to_the_dead_letter_queue_hide_no_good_one() {
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path().join("q.db")).expect("db");
    let redrive = Redrive {
        dead_letter: "work-dlq".into(),
        max_receives: 1,
    };
    let q = SqliteQueue::new(db.clone(), "work", Some(redrive));
    let dlq = SqliteQueue::new(db, "work-dlq", None);
    q.send("bad 1").await.expect("send");
    q.send("bad 2").await.expect("send");
    // Received once each, visible again at once: the next receive moves them.
    let first = q
        .receive(10, Duration::ZERO, Duration::ZERO)
        .await
        .expect("receive");
    assert_eq!(first.len(), 2);
    q.send("good").await.expect("send");
    // One message wanted, two candidates looked at (both to be moved): the
    // receive looks again rather than answering nothing, without waiting.
    let got = q
        .receive(1, Duration::from_secs(30), Duration::ZERO)
        .await
        .expect("receive");
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["good"]
    );
    assert_eq!(dlq.depth().await.expect("depth").visible, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_store_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteResultStore::new(Db::open(dir.path().join("r.db")).expect("db"));
    airq_contract::results::run_all(&store).await;
}

struct Keys {
    dir: tempfile::TempDir,
    store: SqliteKeyStore,
}

#[async_trait]
impl airq_contract::keys::KeyHarness for Keys {
    fn store(&self) -> &dyn airq_core::keys::KeyStore {
        &self.store
    }

    async fn raw(&self) -> Vec<u8> {
        // The file and its write-ahead log (where recent rows are until a
        // checkpoint), and any payload file.
        let mut all = Vec::new();
        for entry in walkdir(self.dir.path()) {
            all.extend(std::fs::read(entry).expect("read a database file"));
        }
        all
    }
}

/// Every file under `dir`.
fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walkdir(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_store_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteKeyStore::new(Db::open(dir.path().join("k.db")).expect("db"));
    airq_contract::keys::run_all(&Keys { dir, store }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_is_counted_from_the_partial_index_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.db");
    drop(Db::open(&path).expect("db"));
    let conn = rusqlite::Connection::open(&path).expect("open");
    // The statement SqliteResultStore::pending runs.
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM results
             WHERE client = ?1 AND expires_at > ?2 AND state IN ('queued', 'running')",
        )
        .expect("prepare")
        .query_map(["key:x", "0"], |r| r.get::<_, String>(3))
        .expect("plan")
        .collect::<Result<_, _>>()
        .expect("plan rows");
    assert_eq!(
        plan,
        ["SEARCH results USING COVERING INDEX results_pending_by_client (client=? AND expires_at>?)"],
        "one range of the partial index, no table rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_identities_count_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("s.db")).expect("db"));
    airq_contract::store::repeated_identities_count_once(&store, &sample()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_store_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("s.db")).expect("db"));
    let readings = sample();
    airq_contract::store::write_is_idempotent_and_exact(&store, &readings).await;
    // The first client's query shape on the sample's hour.
    let q = Query::from_json(
        br#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE","minAqi":0,"maxAqi":10,"range":"Low"}"#,
        &QueryLimits::default(),
    )
    .expect("query");
    let got = airq_contract::store::collect(&store, &q).await;
    assert_eq!(
        got.len(),
        3315,
        "DE readings in the Low band (independently counted)"
    );
    airq_contract::store::matches_reference(&store, &readings, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_filters_match_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("g.db")).expect("db"));
    // The sample beside the generated readings: the suite's window is
    // elsewhere in time, so it must not see them.
    store.put_batch_blocking(&sample()).expect("sample");
    airq_contract::store::filters_match_reference(&store, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_filters_match_reference_from_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("g.db")).expect("db"));
    store.put_batch_blocking(&sample()).expect("sample");
    airq_contract::store::filters_match_reference_from_segments(&store, 300).await;
    let built = std::fs::read_dir(airq_embedded::segments::folder(&dir.path().join("g.db")))
        .expect("the segments' folder")
        .count();
    assert!(
        built >= 3,
        "the sample's day and the generated two have segments: {built}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_follow_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("s.db")).expect("db"));
    airq_contract::store::segments_follow_changes(&store).await;
    let files = std::fs::read_dir(airq_embedded::segments::folder(&dir.path().join("s.db")))
        .expect("the segments' folder")
        .count();
    assert_eq!(files, 3, "one file a day: the stale ones were replaced");
}

/// The names in the segments' folder of the database at `db`.
fn segment_files(db: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(airq_embedded::segments::folder(db))
        .expect("the segments' folder")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Gzip pieces on the embedded store: named for whole days, kept in a
/// folder beside their segment's file, gone with it when the day is
/// rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_pieces_follow_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("s.db")).expect("db"));
    let named = airq_contract::store::gzip_pieces_follow_segments(&store).await;
    // Every format's answer of the uncut window and of the cut one (its
    // middle day); none with a sensor type.
    assert_eq!(named, 6, "answers that named pieces");
    let names = segment_files(&dir.path().join("s.db"));
    assert_eq!(
        names.len(),
        3,
        "three segments, no pieces' folder left: {names:?}"
    );
    assert!(names.iter().all(|n| n.ends_with(".seg")), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_hints_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("h.db")).expect("db"));
    airq_contract::store::latest_hints_are_kept(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_follows_ingestion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("l.db")).expect("db"));
    airq_contract::store::latest_follows_ingestion(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_query_reads_few_rows() {
    use airq_core::place::{Near, Place};
    use airq_core::Timestamp;
    use rand::{Rng, SeedableRng};
    // A dense region: 2,000 sensors in 1.5° × 1.5° around Stuttgart (36
    // cells), one reading an hour for a day.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("n.db")).expect("db"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let day = 1_700_006_400i64;
    let sensors: Vec<(String, String)> = (0..2_000)
        .map(|_| {
            let lat = 48.0 + rng.random_range(0.0..1.5);
            let lon = 8.5 + rng.random_range(0.0..1.5);
            (format!("{lat:.4}"), format!("{lon:.4}"))
        })
        .collect();
    let mut readings = Vec::new();
    for hour in 0..24 {
        for (i, (lat, lon)) in sensors.iter().enumerate() {
            readings.push(airq_contract::generate::reading(
                i as u64,
                day + hour * 3600 + i as i64 % 600,
                "SDS011",
                "DE",
                lat.clone(),
                lon.clone(),
                Some("20".into()),
                Some("10".into()),
            ));
        }
    }
    for chunk in readings.chunks(5_000) {
        store.put_batch_blocking(chunk).expect("put");
    }
    let mut q = Query::between(Timestamp(day), Timestamp(day + 86_399));
    q.place = Some(Place::Near(Near {
        lat: 48.78,
        lon: 9.18,
        radius_km: 10.0,
    }));
    let (read, returned) = store.rows_read(&q).expect("rows read");
    let want = airq_contract::store::reference(&readings, &q).len() as u64;
    println!(
        "near 10 km over one day of {} readings: {read} rows read, {returned} returned",
        readings.len()
    );
    assert_eq!(returned, want, "the rows returned are the reference's");
    assert!(returned > 0 && read >= returned);
    assert!(
        read * 5 < readings.len() as u64,
        "the cells narrow the read: {read} of {}",
        readings.len()
    );
    airq_contract::store::matches_reference(&store, &readings, &q).await;
}

/// The schema at user_version 3, as that release made it.
const SCHEMA_V3: &str = "
CREATE TABLE readings (
    ts INTEGER NOT NULL, sensor_id INTEGER NOT NULL, id INTEGER, sensor_type TEXT NOT NULL,
    loc_id INTEGER, loc_country TEXT NOT NULL, loc_lat TEXT NOT NULL, loc_long TEXT NOT NULL,
    loc_alt TEXT NOT NULL, p1 TEXT, p2 TEXT, aqi INTEGER NOT NULL,
    PRIMARY KEY (ts, sensor_id)) WITHOUT ROWID;
CREATE INDEX readings_by_country ON readings (loc_country, ts, sensor_id);
CREATE TABLE queue_messages (
    seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
    sent_at INTEGER NOT NULL, visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT UNIQUE,
    body_file INTEGER NOT NULL DEFAULT 0);
CREATE INDEX queue_messages_ready ON queue_messages (queue, visible_at, seq);
CREATE TABLE results (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, query TEXT NOT NULL, created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, rows INTEGER, csv TEXT,
    error TEXT, csv_file TEXT, client TEXT, request_id TEXT);
CREATE INDEX results_by_expiry ON results (expires_at);
CREATE TABLE api_keys (
    hash TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, tier TEXT NOT NULL,
    limits TEXT, created_at INTEGER NOT NULL, revoked_at INTEGER) WITHOUT ROWID;
CREATE INDEX results_pending_by_client ON results (client, expires_at, state)
    WHERE state IN ('queued', 'running');
PRAGMA user_version = 3;
";

/// Every table's columns and every index's columns, by name: what two
/// files' schemas are made of, whatever the text that made them.
fn schema_of(conn: &rusqlite::Connection) -> Vec<String> {
    let mut out = Vec::new();
    let objects: Vec<(String, String, String)> = conn
        .prepare(
            "SELECT type, name, tbl_name FROM sqlite_master
             WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
        )
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("objects")
        .collect::<Result<_, _>>()
        .expect("object rows");
    for (kind, name, table) in objects {
        let columns: Vec<String> = if kind == "table" {
            conn.prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")
                .expect("prepare")
                .query_map([&name], |r| {
                    Ok(format!(
                        "{} {} notnull={} pk={}",
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?
                    ))
                })
                .expect("columns")
                .collect::<Result<_, _>>()
                .expect("column rows")
        } else {
            conn.prepare("SELECT name FROM pragma_index_info(?1)")
                .expect("prepare")
                .query_map([&name], |r| r.get::<_, Option<String>>(0))
                .expect("columns")
                .map(|c| c.expect("column").unwrap_or_default())
                .collect()
        };
        out.push(format!("{kind} {name} on {table}: {}", columns.join(", ")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_made_before_the_indices_and_latest_is_migrated() {
    use airq_core::place::{cell_of_text, Near, Place};
    use airq_core::{Indices, LatestQuery};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v3.db");
    // The sample (more readings than one migration batch), a second reading
    // of some sensors an hour later, and readings with one value only.
    let mut readings = sample();
    let later: Vec<Reading> = readings
        .iter()
        .step_by(7)
        .map(|r| {
            let mut r = r.clone();
            r.timestamp.0 += 3600;
            r.p1 = Some("604.9".into());
            r.p2 = if r.sensor_id % 2 == 0 {
                None
            } else {
                Some("5.01".into())
            };
            r
        })
        .collect();
    readings.extend(later);
    for r in readings.iter_mut() {
        r.indices = Indices::of_text(r.p1.as_deref(), r.p2.as_deref()).expect("indices");
        // A file of then keeps no flags or air.
        *r = r.clone().without_quality();
    }
    {
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(SCHEMA_V3).expect("the version 3 schema");
        let tx = conn.transaction().expect("tx");
        {
            let mut insert = tx
                .prepare(
                    "INSERT OR REPLACE INTO readings (id, ts, sensor_id, sensor_type, loc_id,
                     loc_country, loc_lat, loc_long, loc_alt, p1, p2, aqi)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .expect("prepare");
            for r in &readings {
                insert
                    .execute(rusqlite::params![
                        r.id.map(|v| v as i64),
                        r.timestamp.0,
                        r.sensor_id as i64,
                        r.sensor_type,
                        r.loc_id.map(|v| v as i64),
                        r.loc_country,
                        r.loc_lat,
                        r.loc_long,
                        r.loc_alt,
                        r.p1,
                        r.p2,
                        r.index(Index::Daqi),
                    ])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    assert!(
        readings.len() > 4096,
        "more than one batch of the migration"
    );

    let db = Db::open(&path).expect("migrating open");
    let _again = Db::open(&path).expect("second open");
    let conn = rusqlite::Connection::open(&path).expect("open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(
        version, 12,
        "the indices (4), samples (5), the live tier (6), the data version (7), alerts (8), 9, \
         the days' versions (10), the quality columns (11), the hours' quality sums (12)"
    );
    let (days, versioned): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(DISTINCT ts / 86400) FROM readings),
                    (SELECT COUNT(*) FROM day_versions WHERE version = 1)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("days");
    assert!(
        days > 0 && days == versioned,
        "every stored day has a version: {days}, {versioned}"
    );

    // Every row's new columns are what the domain computes.
    let mut stmt = conn
        .prepare("SELECT p1, p2, loc_lat, loc_long, aqi, aqi_us_epa, aqi_eaqi, cell FROM readings")
        .expect("prepare");
    let mut rows = stmt.query([]).expect("rows");
    let mut checked = 0;
    while let Some(row) = rows.next().expect("row") {
        let p1: Option<String> = row.get(0).expect("p1");
        let p2: Option<String> = row.get(1).expect("p2");
        let (lat, lon): (String, String) = (row.get(2).expect("lat"), row.get(3).expect("lon"));
        let want = Indices::of_text(p1.as_deref(), p2.as_deref()).expect("indices");
        let got = Indices::from([
            row.get(4).expect("aqi"),
            row.get(5).expect("us epa"),
            row.get(6).expect("eaqi"),
        ]);
        assert_eq!(got, want, "indices of P1 {p1:?}, P2 {p2:?}");
        assert_eq!(
            row.get::<_, u32>(7).expect("cell"),
            cell_of_text(&lat, &lon)
        );
        checked += 1;
    }
    assert_eq!(checked, readings.len());

    // The same schema as a new file's.
    let fresh = dir.path().join("fresh.db");
    drop(Db::open(&fresh).expect("fresh"));
    assert_eq!(
        schema_of(&conn),
        schema_of(&rusqlite::Connection::open(&fresh).expect("open fresh")),
        "a migrated file ends in a new file's schema"
    );

    // The latest table holds each sensor's newest reading, and the store
    // answers from the migrated file as from a new one.
    let store = SqliteReadingStore::new(db);
    for latest in [
        LatestQuery::default(),
        LatestQuery {
            country: Some("BG".into()),
            ..LatestQuery::default()
        },
    ] {
        let got: Vec<Reading> = futures::TryStreamExt::try_collect(
            airq_core::store::ReadingStore::latest(&store, &latest),
        )
        .await
        .expect("latest");
        let want = airq_contract::store::latest_reference(&readings, &latest);
        assert!(!want.is_empty());
        assert!(
            got == want,
            "latest after the migration, {}",
            latest.to_json()
        );
    }
    let mut q = Query::from_json(
        br#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 22:00:00","index":"eaqi","format":"ndjson"}"#,
        &QueryLimits::default(),
    )
    .expect("query");
    q.place = Some(Place::Near(Near {
        lat: 48.78,
        lon: 9.18,
        radius_km: 25.0,
    }));
    assert!(!airq_contract::store::reference(&readings, &q).is_empty());
    airq_contract::store::matches_reference(&store, &readings, &q).await;
}

/// One store with the sample loaded, shared by every property case.
fn loaded() -> &'static (
    tokio::runtime::Runtime,
    SqliteReadingStore,
    Vec<Reading>,
    tempfile::TempDir,
) {
    static LOADED: OnceLock<(
        tokio::runtime::Runtime,
        SqliteReadingStore,
        Vec<Reading>,
        tempfile::TempDir,
    )> = OnceLock::new();
    LOADED.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteReadingStore::new(Db::open(dir.path().join("p.db")).expect("db"));
        let readings = sample();
        store.put_batch_blocking(&readings).expect("load");
        // Answers come from the answer segments (each query's own time
        // window of them); the generated-filter suites test the row path.
        rt.block_on(airq_core::store::ReadingStore::refresh_segments(&store))
            .expect("segments");
        (rt, store, readings, dir)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn store_filter_equals_in_memory_filter(json in arb_query()) {
        let (rt, store, readings, _) = loaded();
        match Query::from_json(json.to_string().as_bytes(), &QueryLimits::default()) {
            Ok(q) => rt.block_on(airq_contract::store::matches_reference(store, readings, &q)),
            // Only min > max is invalid among generated queries.
            Err(e) => {
                let lo = json.get("minAqi").and_then(|v| v.as_u64());
                let hi = json.get("maxAqi").and_then(|v| v.as_u64());
                prop_assert!(matches!((lo, hi), (Some(a), Some(b)) if a > b), "{e}");
            }
        }
    }
}

/// A queued result finished with a CSV large enough for a file; returns
/// its id and CSV.
async fn large_result(db: &Db, ttl: std::time::Duration) -> (uuid::Uuid, String) {
    use airq_core::results::{Outcome, ResultStore};
    use airq_core::Timestamp;
    let results = SqliteResultStore::new(db.clone());
    let id = uuid::Uuid::new_v4();
    let query = Query::between(Timestamp(0), Timestamp(3600));
    let submission = Submission {
        client: ClientId::address("127.0.0.1".parse().expect("address")),
        request_id: None,
    };
    results
        .create(id, &query, ttl, &submission)
        .await
        .expect("create");
    let csv = "a,b\n".repeat(10_000);
    let done = Outcome::Done {
        answer: csv.clone(),
        rows: 9_999,
    };
    assert!(results.finish(id, &done).await.expect("finish"));
    assert!(
        !results.finish(id, &done).await.expect("duplicate"),
        "a duplicate is refused"
    );
    (id, csv)
}

/// Payload files in one folder of `<db>-bodies/`.
fn files_in(db: &Db, folder: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(db.bodies().root().join(folder))
        .expect("bodies folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payloads_live_in_files_that_go_with_their_rows() {
    use airq_core::results::ResultStore;
    use airq_core::Timestamp;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path().join("b.db")).expect("db");
    let q = SqliteQueue::new(db.clone(), "big", None);
    let body = airq_contract::queue::large_body();
    let id = q.send(&body).await.expect("send");
    q.send("small").await.expect("send");
    assert_eq!(
        files_in(&db, "messages"),
        vec![id.clone()],
        "only the large body is a file"
    );
    let got = q
        .receive(10, Duration::from_secs(30), Duration::ZERO)
        .await
        .expect("receive");
    assert_eq!(got.len(), 2);
    for m in &got {
        q.delete(&m.receipt).await.expect("delete");
    }
    assert!(got.iter().any(|m| m.body == body));
    assert!(
        files_in(&db, "messages").is_empty(),
        "deleting the message deletes its file"
    );

    let results = SqliteResultStore::new(db.clone());
    let (rid, _) = large_result(&db, Duration::ZERO).await;
    let files = files_in(&db, "results");
    assert_eq!(
        files.len(),
        1,
        "one file, the duplicate's removed: {files:?}"
    );
    assert!(files[0].starts_with(&rid.to_string()));
    results
        .purge_expired(Timestamp::now(), Duration::from_secs(3600))
        .await
        .expect("purge");
    let left = files_in(&db, "results");
    assert!(left.is_empty(), "expiry deletes the file: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_sweeps_old_files_no_row_refers_to() {
    use airq_core::results::ResultStore;
    use airq_core::Timestamp;
    use airq_embedded::bodies::{result_file, RESULT_ORPHAN_AGE};
    use std::time::{Duration, SystemTime};

    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path().join("o.db")).expect("db");
    let root = db.bodies().root().to_path_buf();
    let age = |path: &std::path::Path| {
        let f = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open");
        // Older than either kind's orphan age.
        f.set_modified(SystemTime::now() - RESULT_ORPHAN_AGE - Duration::from_secs(60))
            .expect("set mtime");
    };
    // A live large message and a live large result, both made to look old.
    let q = SqliteQueue::new(db.clone(), "live", None);
    let live_message = q
        .send(&airq_contract::queue::large_body())
        .await
        .expect("send");
    age(&root.join("messages").join(&live_message));
    let results = SqliteResultStore::new(db.clone());
    let (rid, csv) = large_result(&db, Duration::from_secs(3600)).await;
    let live_result = files_in(&db, "results").remove(0);
    age(&root.join("results").join(&live_result));
    // Orphans: old ones go, a young one stays (its row may be on its way).
    let old_message = uuid::Uuid::new_v4().to_string();
    let old_result = result_file(uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let young_result = result_file(uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let old_tmp = ".dead-writer.tmp".to_string();
    for (folder, name) in [
        ("messages", &old_message),
        ("results", &old_result),
        ("results", &young_result),
        ("results", &old_tmp),
    ] {
        std::fs::write(root.join(folder).join(name), "x").expect("write");
    }
    age(&root.join("messages").join(&old_message));
    age(&root.join("results").join(&old_result));
    age(&root.join("results").join(&old_tmp));

    results
        .purge_expired(Timestamp::now(), Duration::from_secs(3600))
        .await
        .expect("purge");
    assert_eq!(files_in(&db, "messages"), vec![live_message]);
    let mut want = vec![live_result, young_result];
    want.sort();
    assert_eq!(files_in(&db, "results"), want);
    let r = results.get(rid).await.expect("get").expect("record");
    let got = airq_core::results::read_answer(&results, &r)
        .await
        .expect("read");
    assert!(
        got.as_deref() == Some(csv.as_str()),
        "a live result keeps its file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_made_before_payload_files_is_migrated() {
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    {
        // The two tables as the first release made them, with a message.
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE queue_messages (
                seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, id TEXT NOT NULL UNIQUE,
                body TEXT NOT NULL, sent_at INTEGER NOT NULL, visible_at INTEGER NOT NULL,
                receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT UNIQUE);
             CREATE TABLE results (
                id TEXT PRIMARY KEY, state TEXT NOT NULL, query TEXT NOT NULL,
                created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL, rows INTEGER, csv TEXT, error TEXT);
             INSERT INTO queue_messages (queue, id, body, sent_at, visible_at)
                VALUES ('old', 'm1', 'kept', 0, 0);",
        )
        .expect("old schema");
    }
    // Two opens: the second finds the file migrated already.
    let db = Db::open(&path).expect("migrating open");
    let _again = Db::open(&path).expect("second open");
    let q = SqliteQueue::new(db, "old", None);
    let got = q
        .receive(10, Duration::from_secs(30), Duration::ZERO)
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].body, "kept",
        "an old inline message is still delivered"
    );
    let big = airq_contract::queue::large_body();
    q.send(&big).await.expect("a large body after migration");
    let got = q
        .receive(10, Duration::from_secs(30), Duration::ZERO)
        .await
        .expect("receive");
    assert!(got.len() == 1 && got[0].body == big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_made_before_keys_is_migrated() {
    use airq_core::keys::KeyStore;
    use airq_core::results::ResultStore;
    use airq_core::Timestamp;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v1.db");
    let id = uuid::Uuid::new_v4();
    {
        // The schema at user_version 1 (payload files, no keys or
        // clients), with a queued result.
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE results (
                id TEXT PRIMARY KEY, state TEXT NOT NULL, query TEXT NOT NULL,
                created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL, rows INTEGER, csv TEXT, error TEXT,
                csv_file TEXT);
             CREATE TABLE queue_messages (
                seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, id TEXT NOT NULL UNIQUE,
                body TEXT NOT NULL, sent_at INTEGER NOT NULL, visible_at INTEGER NOT NULL,
                receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT UNIQUE,
                body_file INTEGER NOT NULL DEFAULT 0);
             PRAGMA user_version = 1;",
        )
        .expect("old schema");
        conn.execute(
            "INSERT INTO results (id, state, query, created_at, updated_at, expires_at)
             VALUES (?1, 'queued', '{}', 0, 0, 4000000000)",
            [id.to_string()],
        )
        .expect("old result");
    }
    let db = Db::open(&path).expect("migrating open");
    let _again = Db::open(&path).expect("second open");
    let results = SqliteResultStore::new(db.clone());
    let old = results.get(id).await.expect("get").expect("the old result");
    assert_eq!(old.client, None, "an old result has no client");
    assert_eq!(old.request_id, None, "nor a request id");
    let anyone = ClientId::address("127.0.0.1".parse().expect("address"));
    assert_eq!(
        results
            .pending(&anyone, Timestamp::now())
            .await
            .expect("pending"),
        0,
        "and is nobody's"
    );
    let keys = SqliteKeyStore::new(db);
    let new = airq_core::keys::generate("k", "standard", Default::default()).expect("key");
    keys.insert(&new.record).await.expect("insert a key");
    assert_eq!(keys.list().await.expect("list"), vec![new.record]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_made_before_request_ids_is_migrated() {
    use airq_core::results::{Outcome, ResultState, ResultStore};
    use airq_core::Timestamp;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v2.db");
    let old_id = uuid::Uuid::new_v4();
    let owner = ClientId::Key(uuid::Uuid::new_v4());
    {
        // The results table at user_version 2 (payload files and clients,
        // no request ids), with a queued result of a key.
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE results (
                id TEXT PRIMARY KEY, state TEXT NOT NULL, query TEXT NOT NULL,
                created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL, rows INTEGER, csv TEXT, error TEXT,
                csv_file TEXT, client TEXT);
             CREATE TABLE queue_messages (
                seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, id TEXT NOT NULL UNIQUE,
                body TEXT NOT NULL, sent_at INTEGER NOT NULL, visible_at INTEGER NOT NULL,
                receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT UNIQUE,
                body_file INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE api_keys (
                hash TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
                tier TEXT NOT NULL, limits TEXT, created_at INTEGER NOT NULL,
                revoked_at INTEGER) WITHOUT ROWID;
             CREATE INDEX results_pending_by_client ON results (client, expires_at, state)
                WHERE state IN ('queued', 'running');
             PRAGMA user_version = 2;",
        )
        .expect("old schema");
        conn.execute(
            "INSERT INTO results (id, state, query, created_at, updated_at, expires_at, client)
             VALUES (?1, 'queued', '{}', 0, 0, 4000000000, ?2)",
            [old_id.to_string(), owner.to_string()],
        )
        .expect("old result");
    }
    let db = Db::open(&path).expect("migrating open");
    let _again = Db::open(&path).expect("second open");
    let version: i64 = rusqlite::Connection::open(&path)
        .expect("open")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 12, "and every later migration");
    let results = SqliteResultStore::new(db);
    let old = results
        .get(old_id)
        .await
        .expect("get")
        .expect("the old result");
    assert_eq!(old.request_id, None, "an old result has no request id");
    assert_eq!(old.client, Some(owner), "and keeps its client");
    assert_eq!(
        results
            .pending(&owner, Timestamp::now())
            .await
            .expect("pending"),
        1
    );
    let done = Outcome::Done {
        answer: "a\n".into(),
        rows: 0,
    };
    assert!(results.finish(old_id, &done).await.expect("finish"));
    let old = results.get(old_id).await.expect("get").expect("record");
    assert_eq!((old.state, old.request_id), (ResultState::Done, None));

    let id = uuid::Uuid::new_v4();
    let q = Query::between(Timestamp(0), Timestamp(3600));
    let submission = Submission {
        client: owner,
        request_id: Some("after-the-migration".into()),
    };
    results
        .create(id, &q, std::time::Duration::from_secs(3600), &submission)
        .await
        .expect("create after migration");
    let new = results.get(id).await.expect("get").expect("record");
    assert_eq!(new.request_id.as_deref(), Some("after-the-migration"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_stored_client_is_corrupt() {
    use airq_core::results::ResultStore;
    use airq_core::BackendError;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.db");
    let results = SqliteResultStore::new(Db::open(&path).expect("db"));
    let id = uuid::Uuid::new_v4();
    let q = Query::between(airq_core::Timestamp(0), airq_core::Timestamp(3600));
    let submission = Submission {
        client: ClientId::Key(uuid::Uuid::new_v4()),
        request_id: None,
    };
    results
        .create(id, &q, std::time::Duration::from_secs(3600), &submission)
        .await
        .expect("create");
    rusqlite::Connection::open(&path)
        .expect("open")
        .execute(
            "UPDATE results SET client = 'somebody' WHERE id = ?1",
            [id.to_string()],
        )
        .expect("spoil the client");
    let err = results.get(id).await.expect_err("a bad client");
    assert!(matches!(err, BackendError::Corrupt(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_files_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gone.db");
    {
        let db = Db::open(&path).expect("db");
        let q = SqliteQueue::new(db, "q", None);
        q.send(&airq_contract::queue::large_body())
            .await
            .expect("send");
    }
    assert!(std::fs::read_dir(dir.path()).expect("dir").count() >= 2);
    Db::remove_files(&path).expect("remove");
    Db::remove_files(&path).expect("removing again is not an error");
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tier_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("live.db")).expect("db"));
    airq_contract::live::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_version_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("changes.db")).expect("db"));
    airq_contract::changes::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("aggregate.db")).expect("db"));
    airq_contract::aggregate::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_answer_as_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path().join("s.db")).expect("db");
    let store = SqliteReadingStore::new(db.clone());
    let rows = SqliteReadingStore::new(db).with_segments(false);
    airq_contract::live::segments_answer_as_rows(&store, &rows).await;
    let names = segment_files(&dir.path().join("s.db"));
    assert_eq!(
        names.iter().filter(|n| n.starts_with("hour.")).count(),
        1,
        "of the hourly series' two days, the pruned first has no segment left: {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_contract_from_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("aggregate.db")).expect("db"));
    airq_contract::aggregate::run_all_from_segments(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_store_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        airq_embedded::SqliteAlertStore::new(Db::open(dir.path().join("alerts.db")).expect("db"));
    airq_contract::alerts::run_all(&store).await;
}

#[test]
fn a_file_from_a_newer_airq_is_refused_not_half_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("newer.db");
    drop(Db::open(&path).expect("a current file"));
    rusqlite::Connection::open(&path)
        .expect("open")
        .pragma_update(None, "user_version", 99)
        .expect("a later schema");
    let err = Db::open(&path).err().expect("refused").to_string();
    assert!(err.contains("schema 99") && err.contains("newer"), "{err}");
}

/// Migration 12 fills each hour's quality sums from the 5-minute readings
/// kept: a store made before it, once opened, holds the hours a store that
/// always had it holds, and a reading replaced after the upgrade is taken
/// back from sums that counted it (both stores then answer alike again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hours_are_assessed_when_a_store_of_before_is_migrated() {
    use airq_contract::generate::reading;
    use airq_core::store::ReadingStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let (old_path, new_path) = (dir.path().join("old.db"), dir.path().join("new.db"));
    // 40 sensors, 3 hours of 5-minute readings, flags and air from the
    // generator (every set of flags, humidities, temperatures).
    // 2025-11-24 16:00:00 UTC, the start of an hour.
    let start: i64 = 1_764_000_000;
    let readings: Vec<Reading> = (0..40u64)
        .flat_map(|s| {
            (0..36i64).map(move |k| {
                reading(
                    s,
                    start + 300 * k,
                    "SDS011",
                    "DE",
                    "52.520".into(),
                    "13.405".into(),
                    Some(format!("{}.{:02}", 10 + s, k)),
                    Some(format!("{}.{:02}", 5 + k % 7, s)),
                )
            })
        })
        .collect();
    // An hour's time, sensor, flags, humidity, temperature and sums.
    type Hour = (
        i64,
        i64,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let hours = |path: &std::path::Path| -> Vec<Hour> {
        let conn = rusqlite::Connection::open(path).expect("open");
        let mut stmt = conn
            .prepare(
                "SELECT ts, sensor_id, flags, humidity, temperature, quality_sums FROM hourly
                 ORDER BY ts, sensor_id",
            )
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows");
        rows
    };
    for path in [&old_path, &new_path] {
        let store = SqliteReadingStore::new(Db::open(path).expect("db"));
        store
            .put_recent(readings.clone())
            .await
            .expect("put_recent");
    }
    let want = hours(&new_path);
    assert_eq!(want.len(), 120, "40 sensors × 3 hours");
    assert!(
        want.iter().filter(|h| h.2 != 0).count() > 60,
        "most hours flagged: {want:?}"
    );
    // The old store as the release before left it: no sums, no hour flags.
    {
        let conn = rusqlite::Connection::open(&old_path).expect("open");
        conn.execute_batch(
            "UPDATE hourly SET flags = 0, humidity = NULL, temperature = NULL;
             ALTER TABLE hourly DROP COLUMN quality_sums;
             PRAGMA user_version = 11;",
        )
        .expect("back to version 11");
    }
    let old = SqliteReadingStore::new(Db::open(&old_path).expect("migrating open"));
    assert_eq!(hours(&old_path), want, "the migrated hours");
    // A third of sensor 7's readings sent again without flags or air: each
    // of its hours takes back readings that the migrated sums counted.
    let again: Vec<Reading> = readings
        .iter()
        .filter(|r| r.sensor_id == 7 && (r.timestamp.0 - start) / 300 % 3 == 0)
        .map(|r| r.clone().without_quality())
        .collect();
    assert_eq!(again.len(), 12);
    let new = SqliteReadingStore::new(Db::open(&new_path).expect("db"));
    for store in [&old, &new] {
        let written = store.put_recent(again.clone()).await.expect("put_recent");
        assert!(written.replaced > 0, "{written:?}");
    }
    let after = hours(&new_path);
    assert_eq!(hours(&old_path), after);
    let of_seven =
        |hours: &[Hour]| -> Vec<Hour> { hours.iter().filter(|h| h.1 == 7).cloned().collect() };
    assert_ne!(
        of_seven(&after),
        of_seven(&want),
        "sensor 7's hours changed"
    );
}
