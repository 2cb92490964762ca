//! `airq-master ingest` of a feed with hostile or broken text (the test
//! fixture `common/core/tests/fixtures/hostile_text.json`, described beside
//! it): every bad entry is rejected and counted under its reason in the
//! summary and the log line, the good ones are stored, and the store's time
//! span stays that of the good ones.

mod support;

use std::path::{Path, PathBuf};
use support::*;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../common/core/tests/fixtures/hostile_text.json")
}

/// The summary's label for each reason, and the fixture's count.
const REJECTED: [(&str, u64); 13] = [
    ("malformed entry:", 0),
    ("bad timestamp:", 0),
    ("no P1/P2 value:", 0),
    ("non-numeric value:", 0),
    ("negative value:", 0),
    ("non-finite value:", 0),
    ("sensor saturated:", 0),
    ("timestamp out of range:", 4),
    ("bad country code:", 6),
    ("bad latitude:", 6),
    ("bad longitude:", 3),
    ("bad altitude:", 3),
    ("bad sensor type:", 6),
];

#[test]
fn hostile_text_is_rejected_by_reason_and_only_good_rows_are_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let source = fixture();
    let out = ingest(&source, &db);
    out.assert_success();

    assert_eq!(
        out.summary_value("entries read:"),
        Some(35),
        "{}",
        out.stdout
    );
    assert_eq!(out.summary_value("stored:"), Some(7), "{}", out.stdout);
    assert_eq!(out.summary_value("rejected:"), Some(28), "{}", out.stdout);
    for (label, n) in REJECTED {
        assert_eq!(out.summary_value(label), Some(n), "{label}\n{}", out.stdout);
    }
    // The log line counts them the same way.
    for (label, n) in REJECTED {
        let compact = format!("{}={n}", label.trim_end_matches(':'));
        assert!(out.stderr.contains(&compact), "{compact}\n{}", out.stderr);
    }

    // The store holds the good rows only, with their text as sent.
    assert_eq!(count_readings(&db), Some(7));
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the store");
    let (first, last): (i64, i64) = conn
        .query_row("SELECT MIN(ts), MAX(ts) FROM readings", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("span");
    let day = |t: i64| {
        airq_core::Timestamp(t)
            .to_string()
            .chars()
            .take(10)
            .collect::<String>()
    };
    assert_eq!(
        (day(first), day(last)),
        ("2015-01-01".to_owned(), "2024-03-01".to_owned()),
        "no year 0000 or 9999"
    );
    let mut stmt = conn
        .prepare(
            "SELECT id, sensor_type, loc_country, loc_lat, loc_long, loc_alt FROM readings
             ORDER BY id",
        )
        .expect("prepare");
    let rows: Vec<(i64, String, String, String, String, String)> = stmt
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
        .collect::<Result<_, _>>()
        .expect("rows");
    let text = |a: &str, b: &str, c: &str, d: &str, e: &str| {
        (
            a.to_owned(),
            b.to_owned(),
            c.to_owned(),
            d.to_owned(),
            e.to_owned(),
        )
    };
    let want = [
        (1001, text("SDS011", "DE", "52.5200", "13.4050", "34.0")),
        (1002, text("SPS30", "UK", "51.5074", "-0.1278", "")),
        (1003, text("PMS7003", "XK", "42.6629", "21.1655", "652")),
        (1004, text("NextPM", "BIH", "90.0000", "180", "-12.5")),
        (1005, text("SDS021", "AU", "-33.8688", "151.2093", "")),
        (1006, text("PPD42NS", "NL", "-90", "-180", "")),
        (1007, text("IPS-7100", "SE", "59.3293", "18.0686", "28")),
    ];
    let got: Vec<_> = rows
        .into_iter()
        .map(|(id, a, b, c, d, e)| (id, (a, b, c, d, e)))
        .collect();
    assert_eq!(got, want);
}
