//! CSV output: the one documented column order every result uses.
//!
//! | column        | meaning                                        |
//! |---------------|------------------------------------------------|
//! | `id`          | feed entry id (empty when the feed had none)   |
//! | `timestamp`   | UTC, `YYYY-MM-DD HH:MM:SS`                     |
//! | `sensor_id`   | Sensor.Community sensor id                     |
//! | `sensor_type` | e.g. `SDS011`                                  |
//! | `loc_id`      | location id                                    |
//! | `loc_country` | country code as sent (`UK`, not `GB`)          |
//! | `loc_lat`     | latitude as sent                               |
//! | `loc_long`    | longitude as sent                              |
//! | `loc_alt`     | altitude as sent (may be empty)                |
//! | `P1`          | PM10, µg/m³, as sent (empty if not measured)   |
//! | `P2`          | PM2.5, µg/m³, as sent (empty if not measured)  |
//! | `AQI`         | UK DAQI, 1–10                                  |
//! | `Range`       | `Low`, `Moderate`, `High` or `Very High`       |
//!
//! Rows come in the store's order: by timestamp, then sensor id.

use crate::error::BackendError;
use crate::reading::Reading;
use crate::store::ReadingStream;
use futures::StreamExt;
use std::io::Write;

pub const CSV_HEADER: [&str; 13] = [
    "id",
    "timestamp",
    "sensor_id",
    "sensor_type",
    "loc_id",
    "loc_country",
    "loc_lat",
    "loc_long",
    "loc_alt",
    "P1",
    "P2",
    "AQI",
    "Range",
];

/// Writes readings as CSV, header first.
pub struct CsvWriter<W: Write> {
    inner: csv::Writer<W>,
    rows: u64,
    /// Formatting space for a row's numeric fields, reused.
    scratch: String,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(out: W) -> csv::Result<Self> {
        let mut inner = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(out);
        inner.write_record(CSV_HEADER)?;
        Ok(CsvWriter {
            inner,
            rows: 0,
            scratch: String::with_capacity(64),
        })
    }

    pub fn write(&mut self, r: &Reading) -> csv::Result<()> {
        use std::fmt::Write as _;
        // The numbers and the timestamp are formatted into one reused
        // buffer and handed to the CSV writer as slices of it: no
        // allocation per field, which adds up over millions of rows.
        let s = &mut self.scratch;
        s.clear();
        let mut ends = [0usize; 5];
        if let Some(v) = r.id {
            let _ = write!(s, "{v}");
        }
        ends[0] = s.len();
        let _ = write!(s, "{}", r.timestamp);
        ends[1] = s.len();
        let _ = write!(s, "{}", r.sensor_id);
        ends[2] = s.len();
        if let Some(v) = r.loc_id {
            let _ = write!(s, "{v}");
        }
        ends[3] = s.len();
        let _ = write!(s, "{}", r.aqi);
        ends[4] = s.len();
        let field = |i: usize| &s[if i == 0 { 0 } else { ends[i - 1] }..ends[i]];
        let record: [&str; 13] = [
            field(0),
            field(1),
            field(2),
            &r.sensor_type,
            field(3),
            &r.loc_country,
            &r.loc_lat,
            &r.loc_long,
            &r.loc_alt,
            r.p1.as_deref().unwrap_or(""),
            r.p2.as_deref().unwrap_or(""),
            field(4),
            r.band().label(),
        ];
        self.rows += 1;
        self.inner.write_record(record)
    }

    /// Rows written so far (the header not counted).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The output, as far as it has been flushed (the writer buffers up to
    /// 8 KiB of its own).
    pub fn get_ref(&self) -> &W {
        self.inner.get_ref()
    }

    pub fn finish(self) -> csv::Result<W> {
        self.inner
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))
    }
}

/// The CSV of a list of readings, in memory.
pub fn to_csv<'a>(readings: impl IntoIterator<Item = &'a Reading>) -> csv::Result<Vec<u8>> {
    let mut w = CsvWriter::new(Vec::new())?;
    for r in readings {
        w.write(r)?;
    }
    w.finish()
}

/// Why [`render`] produced no CSV.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The store failed mid-stream (possibly transient).
    #[error(transparent)]
    Store(#[from] BackendError),
    #[error("could not render the CSV: {0}")]
    Csv(#[from] csv::Error),
    /// The CSV passed the size limit; the stream was dropped there, which
    /// stops the scan.
    #[error("the CSV is larger than {0} bytes")]
    TooLarge(usize),
}

/// Renders every reading of `rows` into one CSV in memory, with its row
/// count, giving up once it is larger than `max` bytes (give `usize::MAX`
/// for no limit).
pub async fn render(mut rows: ReadingStream, max: usize) -> Result<(Vec<u8>, u64), RenderError> {
    let mut writer = CsvWriter::new(Vec::with_capacity(16 * 1024))?;
    while let Some(row) = rows.next().await {
        writer.write(&row?)?;
        if writer.get_ref().len() > max {
            return Err(RenderError::TooLarge(max));
        }
    }
    let count = writer.rows();
    let csv = writer.finish()?;
    if csv.len() > max {
        return Err(RenderError::TooLarge(max));
    }
    Ok((csv, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Timestamp;

    #[test]
    fn header_and_values_as_sent() {
        let r = Reading {
            id: Some(7),
            timestamp: Timestamp::parse_feed("2018-06-03 20:47:58").unwrap(),
            sensor_id: 92,
            sensor_type: "SDS011".into(),
            loc_id: None,
            loc_country: "DE".into(),
            loc_lat: "48.8000".into(),
            loc_long: "9.0020".into(),
            loc_alt: "".into(),
            p1: Some("8.13".into()),
            p2: None,
            aqi: 1,
        };
        let csv = String::from_utf8(to_csv([&r]).unwrap()).unwrap();
        assert_eq!(
            csv,
            "id,timestamp,sensor_id,sensor_type,loc_id,loc_country,loc_lat,loc_long,loc_alt,P1,P2,AQI,Range\n\
             7,2018-06-03 20:47:58,92,SDS011,,DE,48.8000,9.0020,,8.13,,1,Low\n"
        );
        let empty = String::from_utf8(to_csv([]).unwrap()).unwrap();
        assert_eq!(
            empty.lines().count(),
            1,
            "an empty result is the header alone"
        );
    }

    #[test]
    fn text_with_commas_is_quoted() {
        let mut r = Reading {
            id: None,
            timestamp: Timestamp(0),
            sensor_id: 1,
            sensor_type: "Very, odd \"sensor\"".into(),
            loc_id: Some(1),
            loc_country: "DE".into(),
            loc_lat: "1".into(),
            loc_long: "2".into(),
            loc_alt: "3".into(),
            p1: None,
            p2: Some("12".into()),
            aqi: 2,
        };
        r.aqi = 10;
        let csv = String::from_utf8(to_csv([&r]).unwrap()).unwrap();
        assert!(csv.contains("\"Very, odd \"\"sensor\"\"\""));
        assert!(csv.ends_with(",12,10,Very High\n"));
        // No id, then the epoch, the sensor, the quoted type and the loc id.
        assert!(csv
            .lines()
            .nth(1)
            .unwrap()
            .starts_with(",1970-01-01 00:00:00,1,\"Very, odd \"\"sensor\"\"\",1,DE,"));
    }

    #[test]
    fn render_matches_to_csv_and_stops_at_its_limit() {
        let mut rows = Vec::new();
        for i in 0..100u64 {
            rows.push(Reading {
                id: Some(i),
                timestamp: Timestamp(1_528_058_400 + i as i64),
                sensor_id: i,
                sensor_type: "SDS011".into(),
                loc_id: Some(i),
                loc_country: "DE".into(),
                loc_lat: "48.8000".into(),
                loc_long: "9.0020".into(),
                loc_alt: "".into(),
                p1: Some("8.13".into()),
                p2: Some("4.2".into()),
                aqi: 1,
            });
        }
        let stream = |items: Vec<Result<Reading, BackendError>>| -> ReadingStream {
            futures::stream::iter(items).boxed()
        };
        let want = to_csv(&rows).unwrap();
        let ok = || rows.iter().cloned().map(Ok).collect::<Vec<_>>();
        let (csv, count) = futures::executor::block_on(render(stream(ok()), usize::MAX)).unwrap();
        assert_eq!((csv, count), (want.clone(), 100));

        let small = futures::executor::block_on(render(stream(ok()), want.len() - 1));
        assert!(matches!(small, Err(RenderError::TooLarge(n)) if n == want.len() - 1));

        let mut failing: Vec<_> = rows.iter().take(3).cloned().map(Ok).collect();
        failing.push(Err(BackendError::Corrupt("bad row".into())));
        let failed = futures::executor::block_on(render(stream(failing), usize::MAX));
        assert!(matches!(failed, Err(RenderError::Store(_))));
    }
}
