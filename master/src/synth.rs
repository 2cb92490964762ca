//! A deterministic generator of synthetic feeds, for benchmarks and demos.
//!
//! Everything is derived from a real snapshot (the template): the sites
//! (location, country, sensor type) and the joint P1/P2 distribution, which
//! is resampled with multiplicative jitter. Readings are spread over `days`
//! days from `start`, `per_day` per sensor and day, each at a random time in
//! its own slot of the day, so `(sensor, timestamp)` never repeats and every
//! reading is stored. Sensors beyond the template's are clones of template
//! sites with a small coordinate jitter and fresh sensor and location ids.
//!
//! The output is a function of the template, the shape and the seed only:
//! integer and correctly-rounded float arithmetic, no clock, no hashing
//! order. Values are written as strings with two decimals, like the feed.
//!
//! The template is read, and entries are written, with the feed parser's own
//! wire types (`airq_core::feed::RawEntry`), so that what synth writes is
//! what the parser reads.

use crate::cli::SynthShape;
use airq_core::aqi;
use airq_core::feed::{self, PM10_RAIL, PM25_RAIL};
use airq_core::{Reading, Timestamp};
use anyhow::{bail, Context as _};
use chrono::Datelike as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use serde_json::value::{to_raw_value, RawValue};
use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Largest coordinate jitter of a cloned site, in 1e-4 degrees (±0.02°,
/// about 2 km).
const CLONE_JITTER_E4: i16 = 200;

/// Multiplicative jitter of a resampled value.
const VALUE_JITTER: std::ops::Range<f64> = 0.8..1.25;

/// Highest values written, in hundredths: just under the saturation rails,
/// so that no synthetic reading is rejected.
const P1_MAX_CENTS: u64 = (PM10_RAIL * 100.0) as u64 - 10;
const P2_MAX_CENTS: u64 = (PM25_RAIL * 100.0) as u64 - 10;

// ---- the template ----

/// A field the feed parser skips, which the wire shape otherwise holds as
/// raw JSON, decoded as the type the generator needs; `Err` when it holds
/// something else.
fn decode<T: DeserializeOwned>(raw: Option<&RawValue>) -> serde_json::Result<Option<T>> {
    raw.map(|r| serde_json::from_str(r.get())).transpose()
}

/// A scalar of the feed (string or number) as text.
fn scalar_text(raw: Option<&RawValue>) -> Option<String> {
    raw.and_then(feed::scalar_text).map(Cow::into_owned)
}

/// A decimal in units of 10^-`scale`, if the text is a finite number.
fn fixed_point(text: &str, scale: i32) -> Option<i64> {
    let v: f64 = text.trim().parse().ok()?;
    let scaled = (v * 10f64.powi(scale)).round();
    (scaled.is_finite() && scaled.abs() < 1e15).then_some(scaled as i64)
}

/// A coordinate: the template's text, and its value in 1e-4 degrees when it
/// is a number (clones need one to jitter).
struct Coord {
    text: String,
    e4: Option<i64>,
}

impl Coord {
    fn new(text: String) -> Coord {
        let e4 = fixed_point(&text, 4);
        Coord { text, e4 }
    }

    /// The text of this coordinate moved by `delta` (1e-4 degrees) and
    /// clamped to `±limit` degrees.
    fn shifted(&self, delta: i16, limit: i64) -> String {
        match self.e4 {
            Some(v) => {
                let v = (v + i64::from(delta)).clamp(-limit * 10_000, limit * 10_000);
                let sign = if v < 0 { "-" } else { "" };
                format!("{sign}{}.{:04}", v.abs() / 10_000, v.abs() % 10_000)
            }
            None => self.text.clone(),
        }
    }
}

/// One site of the template: where, and which kind of sensor.
struct TemplateSite {
    sensor_id: u64,
    loc_id: Option<u64>,
    lat: Coord,
    lon: Coord,
    alt: String,
    country: String,
    type_name: String,
    /// The parts the wire shape keeps as raw JSON, rendered once.
    json_alt: Box<RawValue>,
    json_type_id: Option<Box<RawValue>>,
    json_manufacturer: Option<Box<RawValue>>,
}

pub struct Template {
    path: PathBuf,
    sites: Vec<TemplateSite>,
    /// Valid (P1, P2) pairs, in hundredths of µg/m³.
    values: Vec<(u64, u64)>,
    max_sensor_id: u64,
    max_loc_id: u64,
    max_entry_id: u64,
    max_value_id: u64,
}

impl Template {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads a template, looking for the default one in the workspace when
    /// the current directory is elsewhere.
    pub fn load(path: &Path) -> anyhow::Result<Template> {
        let path = resolve_template(path);
        let doc = std::fs::read(&path)
            .with_context(|| format!("cannot read the template {}", path.display()))?;
        Template::from_json(&doc, path.clone())
            .with_context(|| format!("unusable template {}", path.display()))
    }

    fn from_json(doc: &[u8], path: PathBuf) -> anyhow::Result<Template> {
        let entries: Vec<&RawValue> =
            serde_json::from_slice(doc).context("not a JSON array of feed entries")?;
        let mut t = Template {
            path,
            sites: Vec::new(),
            values: Vec::new(),
            max_sensor_id: 0,
            max_loc_id: 0,
            max_entry_id: 0,
            max_value_id: 0,
        };
        let mut seen = HashSet::new();
        for raw in entries {
            // An entry the parser would call malformed is no feed entry:
            // nothing is taken from it.
            let Ok(e) = serde_json::from_str::<feed::RawEntry<'_>>(raw.get()) else {
                continue;
            };
            // Copied into every entry of the site, or counted past for fresh
            // ids, so they must hold what the feed puts there.
            let st = e.sensor.sensor_type;
            let (Ok(type_id), Ok(manufacturer)) =
                (decode::<u64>(st.id), decode::<String>(st.manufacturer))
            else {
                continue;
            };
            let Ok(value_ids) = e
                .sensordatavalues
                .iter()
                .map(|v| decode::<u64>(v.id))
                .collect::<serde_json::Result<Vec<_>>>()
            else {
                continue;
            };
            t.max_entry_id = t.max_entry_id.max(e.id.unwrap_or(0));
            t.max_sensor_id = t.max_sensor_id.max(e.sensor.id);
            t.max_loc_id = t.max_loc_id.max(e.location.id.unwrap_or(0));
            t.max_value_id = value_ids
                .into_iter()
                .flatten()
                .fold(t.max_value_id, u64::max);

            let (mut p1, mut p2) = (None, None);
            let mut particulate = false;
            for v in &e.sensordatavalues {
                let kind = v.value_type.as_ref();
                particulate |= matches!(kind, feed::PM10_TYPE | feed::PM25_TYPE);
                let cents = || {
                    scalar_text(v.value)
                        .and_then(|s| fixed_point(&s, 2))
                        .filter(|c| *c >= 0)
                        .map(|c| c as u64)
                };
                match kind {
                    feed::PM10_TYPE => p1 = cents().filter(|c| *c <= P1_MAX_CENTS),
                    feed::PM25_TYPE => p2 = cents().filter(|c| *c <= P2_MAX_CENTS),
                    _ => {}
                }
            }
            if let (Some(p1), Some(p2)) = (p1, p2) {
                t.values.push((p1, p2));
            }

            // Particulate sensors only (their readings are the ones stored),
            // one site per sensor, so that (sensor, time) stays unique.
            if !particulate || !seen.insert(e.sensor.id) {
                continue;
            }
            let loc = e.location;
            let alt = scalar_text(loc.altitude).unwrap_or_default();
            t.sites.push(TemplateSite {
                sensor_id: e.sensor.id,
                loc_id: loc.id,
                lat: Coord::new(scalar_text(loc.latitude).unwrap_or_default()),
                lon: Coord::new(scalar_text(loc.longitude).unwrap_or_default()),
                json_alt: to_raw_value(&alt)?,
                json_type_id: type_id.map(|id| to_raw_value(&id)).transpose()?,
                json_manufacturer: manufacturer.map(|m| to_raw_value(&m)).transpose()?,
                alt,
                country: loc.country.map(Cow::into_owned).unwrap_or_default(),
                type_name: st.name.into_owned(),
            });
        }
        if t.sites.is_empty() {
            bail!("no usable entry (one with a location, a sensor and P1 or P2 values)");
        }
        if t.values.is_empty() {
            bail!("no entry with valid P1 and P2 values to resample");
        }
        Ok(t)
    }
}

/// The path as given when it exists; for a relative path that does not,
/// the same path under the workspace this binary was built from.
fn resolve_template(path: &Path) -> PathBuf {
    if path.exists() || path.is_absolute() {
        return path.to_path_buf();
    }
    let in_workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    if in_workspace.exists() {
        std::fs::canonicalize(&in_workspace).unwrap_or(in_workspace)
    } else {
        path.to_path_buf()
    }
}

// ---- the generator ----

/// A synthetic sensor: a template site, possibly cloned.
struct Site {
    template: u32,
    sensor_id: u64,
    loc_id: Option<u64>,
    /// Offsets of a clone from its template site, in 1e-4 degrees; `None`
    /// for the template site itself.
    jitter: Option<(i16, i16)>,
}

/// One generated entry, borrowed from the generator.
pub struct Entry<'a> {
    id: u64,
    value_id: u64,
    timestamp: i64,
    /// `YYYY-MM-DD` of the entry's day.
    date: &'a str,
    second_of_day: u32,
    site: &'a Site,
    template: &'a TemplateSite,
    p1_cents: u64,
    p2_cents: u64,
}

fn cents_text(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

impl Entry<'_> {
    fn latitude(&self) -> String {
        match self.site.jitter {
            Some((dlat, _)) => self.template.lat.shifted(dlat, 90),
            None => self.template.lat.text.clone(),
        }
    }

    fn longitude(&self) -> String {
        match self.site.jitter {
            Some((_, dlon)) => self.template.lon.shifted(dlon, 180),
            None => self.template.lon.text.clone(),
        }
    }

    /// The reading the feed parser makes of this entry's JSON.
    pub fn to_reading(&self) -> Reading {
        let (p1, p2) = (self.p1_cents as f64 / 100.0, self.p2_cents as f64 / 100.0);
        let indices = aqi::Indices::of(Some(p1), Some(p2));
        Reading {
            id: Some(self.id),
            timestamp: Timestamp(self.timestamp),
            sensor_id: self.site.sensor_id,
            sensor_type: self.template.type_name.clone(),
            loc_id: self.site.loc_id,
            loc_country: self.template.country.clone(),
            loc_lat: self.latitude(),
            loc_long: self.longitude(),
            loc_alt: self.template.alt.clone(),
            p1: Some(cents_text(self.p1_cents)),
            p2: Some(cents_text(self.p2_cents)),
            // Both present, so the indices always exist.
            indices: indices.unwrap_or_else(aqi::Indices::lowest),
            samples: None,
            basis: None,
            // What the parser would flag; generated sites are outdoors.
            flags: airq_core::quality::Flags::NONE.with_if(
                airq_core::quality::Flag::Pm25AbovePm10,
                airq_core::quality::pm25_above_pm10(Some(p1), Some(p2)),
            ),
            air: Default::default(),
        }
    }

    /// Writes the entry as one feed object.
    pub fn write_json(&self, w: &mut impl Write) -> io::Result<()> {
        let s = self.second_of_day;
        let timestamp = format!(
            "{} {:02}:{:02}:{:02}",
            self.date,
            s / 3600,
            s / 60 % 60,
            s % 60
        );
        // The wire shape keeps these as raw JSON, as the feed may send them
        // as strings or numbers; the generator writes them as the feed
        // usually does: coordinates and values as strings, ids as numbers.
        let (lat, lon) = (
            to_raw_value(&self.latitude())?,
            to_raw_value(&self.longitude())?,
        );
        let (p1_id, p2_id) = (
            to_raw_value(&self.value_id)?,
            to_raw_value(&(self.value_id + 1))?,
        );
        let (p1, p2) = (
            to_raw_value(&cents_text(self.p1_cents))?,
            to_raw_value(&cents_text(self.p2_cents))?,
        );
        let t = self.template;
        let entry = feed::RawEntry {
            id: Some(self.id),
            timestamp: Some(Cow::Owned(timestamp)),
            location: feed::RawLocation {
                id: self.site.loc_id,
                latitude: Some(&lat),
                longitude: Some(&lon),
                altitude: Some(&t.json_alt),
                country: Some(Cow::Borrowed(&t.country)),
                indoor: None,
            },
            sensor: feed::RawSensor {
                id: self.site.sensor_id,
                sensor_type: feed::RawSensorType {
                    id: t.json_type_id.as_deref(),
                    name: Cow::Borrowed(&t.type_name),
                    manufacturer: t.json_manufacturer.as_deref(),
                },
            },
            sensordatavalues: vec![
                feed::RawDataValue {
                    id: Some(&p1_id),
                    value: Some(&p1),
                    value_type: Cow::Borrowed(feed::PM10_TYPE),
                },
                feed::RawDataValue {
                    id: Some(&p2_id),
                    value: Some(&p2),
                    value_type: Cow::Borrowed(feed::PM25_TYPE),
                },
            ],
        };
        serde_json::to_writer(w, &entry)?;
        Ok(())
    }
}

pub struct Generator {
    template: Template,
    sites: Vec<Site>,
    /// `YYYY-MM-DD` of each day.
    dates: Vec<String>,
    per_day: u32,
    /// Midnight (UTC) of the first day.
    start: i64,
    /// The share of entries left out.
    gaps: f64,
    rng: StdRng,
}

impl Generator {
    pub fn new(template: Template, shape: &SynthShape) -> anyhow::Result<Generator> {
        let mut rng = StdRng::seed_from_u64(shape.seed);
        let n = template.sites.len();
        let mut sites = Vec::with_capacity(shape.sensors as usize);
        for s in 0..shape.sensors as usize {
            let (tpl, clone) = (s % n, s / n);
            let site = if clone == 0 {
                let t = &template.sites[tpl];
                Site {
                    template: tpl as u32,
                    sensor_id: t.sensor_id,
                    loc_id: t.loc_id,
                    jitter: None,
                }
            } else {
                let fresh = (s - n) as u64 + 1;
                Site {
                    template: tpl as u32,
                    sensor_id: template.max_sensor_id + fresh,
                    loc_id: Some(template.max_loc_id + fresh),
                    jitter: Some((
                        rng.random_range(-CLONE_JITTER_E4..=CLONE_JITTER_E4),
                        rng.random_range(-CLONE_JITTER_E4..=CLONE_JITTER_E4),
                    )),
                }
            };
            sites.push(site);
        }
        // The feed writes four-digit years.
        let dates = (0..shape.days)
            .map(|d| {
                shape
                    .start
                    .checked_add_days(chrono::Days::new(u64::from(d)))
                    .filter(|day| (1..=9999).contains(&day.year()))
                    .map(|day| day.format("%Y-%m-%d").to_string())
            })
            .collect::<Option<Vec<_>>>()
            .with_context(|| {
                format!(
                    "{} days from {} leave the years 0001 to 9999",
                    shape.days, shape.start
                )
            })?;
        let start = shape
            .start
            .and_hms_opt(0, 0, 0)
            .context("invalid start date")?
            .and_utc()
            .timestamp();
        Ok(Generator {
            template,
            sites,
            dates,
            per_day: shape.per_day(),
            start,
            gaps: shape.gaps,
            rng,
        })
    }

    pub fn template(&self) -> &Template {
        &self.template
    }

    pub fn sensors(&self) -> usize {
        self.sites.len()
    }

    /// Generates every entry, day by day, in order, handing each to `emit`;
    /// stops at the first error `emit` returns.
    pub fn run<E>(mut self, mut emit: impl FnMut(&Entry<'_>) -> Result<(), E>) -> Result<u64, E> {
        let slot = 86_400 / self.per_day;
        let mut id = self.template.max_entry_id;
        let mut value_id = self.template.max_value_id;
        let mut count = 0u64;
        for (day, date) in self.dates.iter().enumerate() {
            let day_start = self.start + day as i64 * 86_400;
            for k in 0..self.per_day {
                for site in &self.sites {
                    let second_of_day = k * slot + self.rng.random_range(0..slot);
                    let (p1, p2) =
                        self.template.values[self.rng.random_range(0..self.template.values.len())];
                    let f1 = self.rng.random_range(VALUE_JITTER);
                    let f2 = self.rng.random_range(VALUE_JITTER);
                    if self.gaps > 0.0 && self.rng.random_bool(self.gaps) {
                        continue;
                    }
                    id += 1;
                    value_id += 2;
                    let entry = Entry {
                        id,
                        value_id: value_id - 1,
                        timestamp: day_start + i64::from(second_of_day),
                        date,
                        second_of_day,
                        site,
                        template: &self.template.sites[site.template as usize],
                        p1_cents: ((p1 as f64 * f1).round() as u64).min(P1_MAX_CENTS),
                        p2_cents: ((p2 as f64 * f2).round() as u64).min(P2_MAX_CENTS),
                    };
                    emit(&entry)?;
                    count += 1;
                }
            }
        }
        Ok(count)
    }
}

/// Writes the feed as a JSON array, one entry per line; returns the number
/// of entries.
pub fn write_feed(
    generator: Generator,
    w: &mut impl Write,
    mut on_entry: impl FnMut(u64),
) -> io::Result<u64> {
    w.write_all(b"[")?;
    let mut first = true;
    let n = generator.run(|e| {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        e.write_json(w)?;
        on_entry(1);
        Ok::<(), io::Error>(())
    })?;
    w.write_all(b"\n]\n")?;
    Ok(n)
}

/// Length of one 5-minute feed's window, seconds.
pub const FIVE_MINUTES: i64 = 300;

/// The 5-minute feeds of a generator made with `--resolution 5min`, in
/// order: each (the end of its 5 minutes, the feed as a JSON array) handed
/// to `emit`, which may stop the run with an error. Returns the entries.
pub fn five_minute_feeds(
    generator: Generator,
    mut emit: impl FnMut(i64, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut doc: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut window: Option<i64> = None;
    let mut finish = |doc: &mut Vec<u8>, end: i64| -> anyhow::Result<()> {
        doc.extend_from_slice(b"\n]\n");
        emit(end, doc)?;
        doc.clear();
        Ok(())
    };
    let n = generator.run(|e| -> anyhow::Result<()> {
        let end = (e.timestamp.div_euclid(FIVE_MINUTES) + 1) * FIVE_MINUTES;
        if window != Some(end) {
            if let Some(previous) = window {
                finish(&mut doc, previous)?;
            }
            window = Some(end);
            doc.push(b'[');
        } else {
            doc.push(b',');
        }
        doc.push(b'\n');
        e.write_json(&mut doc)?;
        Ok(())
    })?;
    if let Some(last) = window {
        finish(&mut doc, last)?;
    }
    Ok(n)
}

/// The file name of the 5-minute feed ending at `end`: `2024-01-01T00-05.json`.
pub fn feed_file_name(end: i64) -> String {
    chrono::DateTime::from_timestamp(end, 0)
        .map(|t| t.format("%Y-%m-%dT%H-%M.json").to_string())
        .unwrap_or_else(|| format!("{end}.json"))
}

/// The end of the 5-minute feed a file is named for by [`feed_file_name`];
/// `None` for any other name.
pub fn feed_file_end(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".json")?;
    chrono::NaiveDateTime::parse_from_str(stem, "%Y-%m-%dT%H-%M")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// Writes the 5-minute feeds of `shape` into the directory `out`, one
/// file per feed (see [`feed_file_name`]), each through a `.partial` file.
pub fn to_directory(shape: &SynthShape, out: &Path) -> anyhow::Result<SynthSummary> {
    let started = std::time::Instant::now();
    let generator = Generator::new(Template::load(&shape.template)?, shape)?;
    let mut summary = summary_of(&generator, shape);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let pb = crate::progress::bar("feeds", u64::from(shape.days) * 288);
    let mut bytes = 0u64;
    let written = five_minute_feeds(generator, |end, doc| {
        let path = out.join(feed_file_name(end));
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, doc)
            .and_then(|()| std::fs::rename(&partial, &path))
            .with_context(|| format!("cannot write {}", path.display()))?;
        bytes += doc.len() as u64;
        pb.inc(1);
        Ok(())
    });
    pb.finish_and_clear();
    summary.readings = written?;
    summary.into = out.display().to_string();
    summary.bytes = Some(bytes);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// What a synth command did.
pub struct SynthSummary {
    pub readings: u64,
    pub days: u32,
    pub sensors: usize,
    pub per_day: u32,
    pub seed: u64,
    pub template: PathBuf,
    pub template_sites: usize,
    pub template_values: usize,
    /// The file written, or the store's description.
    pub into: String,
    pub bytes: Option<u64>,
    pub elapsed: std::time::Duration,
}

impl std::fmt::Display for SynthSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "readings:      {} ({} days x {} sensors x {} per day, seed {})",
            self.readings, self.days, self.sensors, self.per_day, self.seed
        )?;
        writeln!(
            f,
            "template:      {} ({} sites, {} P1/P2 pairs)",
            self.template.display(),
            self.template_sites,
            self.template_values
        )?;
        writeln!(f, "into:          {}", self.into)?;
        if let Some(bytes) = self.bytes {
            writeln!(f, "bytes:         {bytes}")?;
        }
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "elapsed:       {secs:.3} s")?;
        writeln!(
            f,
            "rate:          {:.0} readings/s",
            crate::ingest::per_second(self.readings, self.elapsed)
        )
    }
}

fn summary_of(generator: &Generator, shape: &SynthShape) -> SynthSummary {
    SynthSummary {
        readings: 0,
        days: shape.days,
        sensors: generator.sensors(),
        per_day: shape.per_day(),
        seed: shape.seed,
        template: generator.template().path().to_path_buf(),
        template_sites: generator.template().sites.len(),
        template_values: generator.template().values.len(),
        into: String::new(),
        bytes: None,
        elapsed: std::time::Duration::ZERO,
    }
}

/// Writes a synthetic feed to `out`, through a `.partial` file renamed on
/// success so that a failed run never leaves a half feed under the name.
pub fn to_file(shape: &SynthShape, out: &Path) -> anyhow::Result<SynthSummary> {
    let started = std::time::Instant::now();
    let generator = Generator::new(Template::load(&shape.template)?, shape)?;
    let mut summary = summary_of(&generator, shape);
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut w = io::BufWriter::with_capacity(1 << 20, file);
    let pb = crate::progress::bar("readings", shape.readings());
    let written = write_feed(generator, &mut w, |n| pb.inc(n))
        .and_then(|n| w.flush().map(|()| n))
        .with_context(|| format!("cannot write {}", partial.display()));
    pb.finish_and_clear();
    drop(w);
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
    summary.readings = written;
    summary.into = out.display().to_string();
    summary.bytes = std::fs::metadata(out).ok().map(|m| m.len());
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Stores a synthetic feed's readings directly, as the parser would have
/// made them from the JSON.
pub async fn into_store(
    shape: &SynthShape,
    store: std::sync::Arc<dyn airq_core::store::ReadingStore>,
    store_name: String,
    batch_size: usize,
) -> anyhow::Result<SynthSummary> {
    let started = std::time::Instant::now();
    let template_path = shape.template.clone();
    let template = tokio::task::spawn_blocking(move || Template::load(&template_path))
        .await
        .context("the template thread failed")??;
    // The daily series' flags need the whole feed first, and the stored
    // readings just before it, as ingestion's do (`ingest::survey`): the
    // generator, being deterministic, runs twice. Its sites have no T/RH
    // sensors.
    let assessment = match shape.resolution {
        airq_core::Resolution::Day => {
            let shape = shape.clone();
            let survey = tokio::task::spawn_blocking(move || {
                let mut survey = airq_core::quality::Survey::new(shape.resolution);
                let generator = Generator::new(Template::load(&shape.template)?, &shape)?;
                let Ok(_) = generator.run(|e| {
                    survey.reading(&e.to_reading());
                    Ok::<(), std::convert::Infallible>(())
                });
                anyhow::Ok(survey)
            });
            let mut survey = survey.await.context("the survey thread failed")??;
            crate::ingest::learn_history(store.as_ref(), &mut survey).await?;
            Some(survey.finish())
        }
        _ => None,
    };
    let generator = Generator::new(template, shape)?;
    let mut summary = summary_of(&generator, shape);
    let total = shape.readings();
    let (generated, stored) =
        crate::ingest::pipeline(store, batch_size, shape.resolution, move |sink| {
            let pb = crate::progress::bar("readings", total);
            let n = generator.run(|e| {
                sink.push_assessed(e.to_reading(), assessment.as_ref());
                pb.inc(1);
                Ok::<(), std::convert::Infallible>(())
            });
            pb.finish_and_clear();
            n
        })
        .await?;
    let generated = match generated {
        Ok(n) => n,
        Err(never) => match never {},
    };
    if generated != stored.total() {
        bail!(
            "generated {generated} readings but stored {}",
            stored.total()
        );
    }
    summary.readings = stored.total();
    summary.into = store_name;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airq_core::feed;

    const TEMPLATE: &str = r#"[
      {"id":10,"timestamp":"2018-06-03 20:47:58","location":{"id":19,"latitude":"48.7220","longitude":"-9.2100","altitude":"413.2","country":"DE"},
       "sensor":{"id":48,"sensor_type":{"id":14,"name":"SDS011","manufacturer":"Nova Fitness"}},
       "sensordatavalues":[{"id":100,"value":"14.30","value_type":"P1"},{"id":101,"value":"8.10","value_type":"P2"}]},
      {"id":11,"timestamp":"2018-06-03 20:47:58","location":{"id":20,"latitude":"51.0","longitude":"4.4","altitude":"","country":"BE"},
       "sensor":{"id":49,"sensor_type":{"id":14,"name":"SDS011","manufacturer":"Nova Fitness"}},
       "sensordatavalues":[{"id":102,"value":"1999.90","value_type":"P1"},{"id":103,"value":"999.90","value_type":"P2"}]},
      {"id":12,"location":{"id":21},"sensor":{"id":50,"sensor_type":{"name":"DHT22"}},
       "sensordatavalues":[{"id":104,"value":"21.3","value_type":"temperature"}]},
      "not an entry"
    ]"#;

    fn shape(sensors: u32, days: u32, per_day: u32, seed: u64) -> SynthShape {
        SynthShape {
            days,
            sensors,
            per_day,
            seed,
            start: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default(),
            template: PathBuf::new(),
            resolution: airq_core::Resolution::Day,
            gaps: 0.0,
        }
    }

    #[test]
    fn five_minute_feeds_hold_one_entry_per_sensor_in_their_window() {
        let mut live = shape(5, 1, 1, 7);
        live.resolution = airq_core::Resolution::FiveMin;
        let t = Template::from_json(TEMPLATE.as_bytes(), PathBuf::new()).expect("template");
        let mut feeds = Vec::new();
        let n = five_minute_feeds(Generator::new(t, &live).expect("generator"), |end, doc| {
            let mut times = Vec::new();
            feed::parse_feed_at(doc, Timestamp(end), |e| {
                times.push(e.expect("a valid entry").timestamp.0);
            })
            .expect("a feed");
            feeds.push((end, times));
            Ok(())
        })
        .expect("feeds");
        assert_eq!(n, 5 * 288);
        assert_eq!(feeds.len(), 288, "a feed every 5 minutes of the day");
        let midnight = 1_704_067_200; // 2024-01-01 00:00:00 UTC
        for (k, (end, times)) in feeds.iter().enumerate() {
            assert_eq!(*end, midnight + 300 * (k as i64 + 1));
            assert_eq!(times.len(), 5, "one entry per sensor");
            assert!(times.iter().all(|t| (end - 300..*end).contains(t)));
        }
        assert_eq!(feed_file_name(feeds[0].0), "2024-01-01T00-05.json");
        // 2024-01-01 00:05 UTC: 19,723 days after 1970-01-01, then 300 s.
        assert_eq!(
            feed_file_end("2024-01-01T00-05.json"),
            Some(19_723 * 86_400 + 300)
        );
        assert_eq!(feed_file_end(&feed_file_name(feeds[1].0)), Some(feeds[1].0));
        for other in [
            "2024-01-01T00-05.json.partial",
            "notes.json",
            "2024-01-01T00-05",
        ] {
            assert_eq!(feed_file_end(other), None, "{other}");
        }

        // A quarter left out: about 360 of the 1,440, never all.
        live.gaps = 0.25;
        let t = Template::from_json(TEMPLATE.as_bytes(), PathBuf::new()).expect("template");
        let n = five_minute_feeds(Generator::new(t, &live).expect("generator"), |_, _| Ok(()))
            .expect("feeds");
        assert!((1000..1200).contains(&n), "{n} of 1440 kept");
    }

    fn generate(shape: &SynthShape) -> Vec<u8> {
        let t = Template::from_json(TEMPLATE.as_bytes(), PathBuf::new()).expect("template");
        let g = Generator::new(t, shape).expect("generator");
        let mut out = Vec::new();
        write_feed(g, &mut out, |_| {}).expect("write");
        out
    }

    #[test]
    fn template_keeps_valid_pairs_and_every_site() {
        let t = Template::from_json(TEMPLATE.as_bytes(), PathBuf::new()).expect("template");
        assert_eq!(t.sites.len(), 2);
        assert_eq!(t.values, vec![(1430, 810)]);
        assert_eq!((t.max_sensor_id, t.max_loc_id), (50, 21));
        assert_eq!((t.max_entry_id, t.max_value_id), (12, 104));
    }

    #[test]
    fn output_parses_to_the_same_readings_with_no_rejection() {
        let shape = shape(7, 3, 4, 1);
        let t = Template::from_json(TEMPLATE.as_bytes(), PathBuf::new()).expect("template");
        let mut direct = Vec::new();
        Generator::new(t, &shape)
            .expect("generator")
            .run(|e| {
                direct.push(e.to_reading());
                Ok::<(), ()>(())
            })
            .expect("run");
        let doc = generate(&shape);
        let mut parsed = Vec::new();
        let stats = feed::parse_feed(&doc, |r| parsed.push(r)).expect("valid feed");
        assert_eq!(stats.entries, 7 * 3 * 4);
        assert_eq!(stats.rejected_total(), 0);
        let parsed: Vec<Reading> = parsed.into_iter().flatten().collect();
        assert_eq!(parsed, direct);
        // Every (sensor, timestamp) is distinct.
        let keys: HashSet<_> = parsed.iter().map(|r| (r.sensor_id, r.timestamp)).collect();
        assert_eq!(keys.len(), parsed.len());
        // Clones get fresh ids and jittered coordinates.
        assert!(parsed.iter().any(|r| r.sensor_id > 50));
        assert!(parsed.iter().all(|r| r.loc_lat.parse::<f64>().is_ok()));
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(generate(&shape(5, 2, 3, 9)), generate(&shape(5, 2, 3, 9)));
        assert_ne!(generate(&shape(5, 2, 3, 9)), generate(&shape(5, 2, 3, 10)));
    }

    #[test]
    fn years_stay_four_digits() {
        let t = || Template::from_json(TEMPLATE.as_bytes(), PathBuf::new()).expect("template");
        let mut late = shape(1, 3, 1, 1);
        late.start = chrono::NaiveDate::from_ymd_opt(9999, 12, 30).unwrap_or_default();
        assert!(Generator::new(t(), &late).is_err());
        late.days = 2;
        assert!(Generator::new(t(), &late).is_ok());
    }

    #[test]
    fn coordinates_shift_in_fixed_point() {
        let c = Coord::new("-0.0050".to_owned());
        assert_eq!(c.shifted(60, 90), "0.0010");
        assert_eq!(c.shifted(-10, 90), "-0.0060");
        assert_eq!(Coord::new("89.9990".into()).shifted(200, 90), "90.0000");
        assert_eq!(Coord::new("".into()).shifted(5, 90), "");
    }

    #[test]
    fn timestamps_stay_in_their_day_slots() {
        let doc = generate(&shape(2, 2, 24, 3));
        let mut readings = Vec::new();
        feed::parse_feed(&doc, |r| readings.extend(r.ok())).expect("valid feed");
        let start = Timestamp::parse_feed("2024-01-01 00:00:00").map(|t| t.0);
        for r in &readings {
            let off = r.timestamp.0 - start.unwrap_or(0);
            assert!((0..2 * 86_400).contains(&off), "{off}");
        }
    }
}
