//! The archive's layout: one directory per UTC day (`YYYY-MM-DD/`), and in
//! it one CSV file per sensor and day, `YYYY-MM-DD_<type>_sensor_<id>.csv`,
//! beside other files a backfill does not read (`.zip` and `.gz` bundles,
//! `…_indoor.csv` variants, monthly aggregates). Over HTTP each directory is
//! an HTML index page; on disk it is a directory.
//!
//! Names are filtered here, before anything is downloaded: a file of a type
//! that was not asked for costs nothing but its line in the listing.

use super::TypeFilter;
use crate::fetch::{self, Download, FetchPolicy};
use anyhow::Context as _;
use chrono::NaiveDate;
use reqwest::Url;
use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

/// Largest directory index page read. A real day lists some 30,000 files in
/// about 5 MB of HTML; more than this is not an index page.
const MAX_LISTING_BYTES: usize = 256 << 20;

/// Largest archive file downloaded. A sensor measuring every second for a
/// whole day writes under 10 MB; a file is held whole before it is parsed
/// (a retry must not count half a file twice), so this bounds the memory of
/// each download in flight.
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// Where the archive is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveSource {
    /// The archive's base URL; always ends with `/`.
    Http(Url),
    Dir(PathBuf),
}

impl ArchiveSource {
    /// `http://` and `https://` are URLs, anything else a directory.
    pub fn parse(s: &str) -> anyhow::Result<ArchiveSource> {
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            // Without the slash, `join` would replace the last segment.
            let with_slash = if s.ends_with('/') {
                s.to_owned()
            } else {
                format!("{s}/")
            };
            let url = Url::parse(&with_slash).with_context(|| format!("invalid URL {s:?}"))?;
            if url.cannot_be_a_base() || url.host_str().is_none_or(str::is_empty) {
                anyhow::bail!("invalid URL {s:?}: no host");
            }
            return Ok(ArchiveSource::Http(url));
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if path.is_empty() {
            anyhow::bail!("the source is empty: give the archive's URL or a directory");
        }
        Ok(ArchiveSource::Dir(PathBuf::from(path)))
    }
}

impl fmt::Display for ArchiveSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveSource::Http(url) => write!(f, "{url}"),
            ArchiveSource::Dir(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One per-sensor daily CSV file of the archive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArchiveFile {
    pub day: NaiveDate,
    /// The file name's type, lower case as the archive writes it
    /// (`sds011`, `sps30`, `radiation_sbm-20`).
    pub sensor_type: String,
    pub sensor_id: u64,
    pub name: String,
}

/// What a day's directory holds, once filtered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Per-sensor CSV files of a requested type, in name order.
    pub files: Vec<ArchiveFile>,
    /// Per-sensor CSV files of a type not asked for.
    pub not_requested: u64,
    /// Anything else: bundles (`.zip`, `.gz`), `_indoor` files, other days'
    /// names, other names.
    pub other: u64,
}

/// The file of `day` that `name` names, if it is a plain per-sensor CSV:
/// `<day>_<type>_sensor_<digits>.csv`. The type may itself hold `_` (the
/// archive's `radiation_sbm-20`), so the name is split at its last
/// `_sensor_`; `…_sensor_123_indoor.csv` has no digits-only id and is not
/// one.
pub fn parse_name(day: NaiveDate, name: &str) -> Option<ArchiveFile> {
    let prefix = day.format("%Y-%m-%d_").to_string();
    let stem = name.strip_prefix(prefix.as_str())?.strip_suffix(".csv")?;
    let (sensor_type, id) = stem.rsplit_once("_sensor_")?;
    let type_ok = !sensor_type.is_empty()
        && sensor_type.len() <= 32
        && sensor_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !type_ok || id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(ArchiveFile {
        day,
        sensor_type: sensor_type.to_ascii_lowercase(),
        sensor_id: id.parse().ok()?,
        name: name.to_owned(),
    })
}

/// Sorts names into a [`Listing`]. Names repeat in some index pages (an
/// icon and a text link to the same file); each file counts once.
pub fn classify<'a>(
    day: NaiveDate,
    names: impl IntoIterator<Item = &'a str>,
    types: &TypeFilter,
) -> Listing {
    let unique: BTreeSet<&str> = names.into_iter().collect();
    let mut listing = Listing::default();
    for name in unique {
        match parse_name(day, name) {
            Some(file) if types.wants(&file.sensor_type) => listing.files.push(file),
            Some(_) => listing.not_requested += 1,
            None => listing.other += 1,
        }
    }
    listing
}

/// The file names an HTML index page links to: the last path segment of
/// every `href`, whatever the server (nginx, Apache, a CDN) writes around
/// it: double, single or no quotes, any case, relative or absolute links,
/// query strings. Links to directories (ending in `/`), parents and sort
/// links (`?C=N;O=D`) are not files and give nothing.
pub fn hrefs(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lower = html.to_ascii_lowercase();
    let bytes = html.as_bytes();
    let mut from = 0;
    while let Some(found) = lower[from..].find("href") {
        let mut i = from + found + 4;
        from = i;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let (start, end) = match bytes.get(i) {
            Some(&q) if q == b'"' || q == b'\'' => {
                let start = i + 1;
                match bytes[start..].iter().position(|&c| c == q) {
                    Some(len) => (start, start + len),
                    None => break,
                }
            }
            Some(_) => {
                let len = bytes[i..]
                    .iter()
                    .position(|&c| c.is_ascii_whitespace() || c == b'>')
                    .unwrap_or(bytes.len() - i);
                (i, i + len)
            }
            None => break,
        };
        from = end;
        // Index pages are ASCII; `get` keeps a cut inside a multi-byte
        // character (in hostile HTML) from panicking.
        if let Some(name) = html.get(start..end).and_then(file_name_of_href) {
            out.push(name);
        }
    }
    out
}

/// The file name a link points to, percent-decoded, if it points to a file.
fn file_name_of_href(href: &str) -> Option<String> {
    let path = href.split(['?', '#']).next()?;
    if path.is_empty() || path.ends_with('/') {
        return None;
    }
    let last = path.rsplit('/').next()?;
    let decoded = percent_decode(last)?;
    (!decoded.is_empty() && decoded != "." && decoded != "..").then_some(decoded)
}

/// `%XX` escapes decoded; `None` when they do not make UTF-8 text.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Lists one day, with the policy's retries over HTTP. An error is a day
/// that cannot be done this run (no directory, a server that keeps failing).
pub async fn list_day(
    source: &ArchiveSource,
    client: Option<&reqwest::Client>,
    policy: &FetchPolicy,
    day: NaiveDate,
    types: &TypeFilter,
) -> anyhow::Result<Listing> {
    let dir = day.format("%Y-%m-%d").to_string();
    match source {
        ArchiveSource::Http(base) => {
            let client = client.context("no HTTP client")?;
            let url = base
                .join(&format!("{dir}/"))
                .with_context(|| format!("cannot make the URL of {dir}/ under {base}"))?;
            let download = Download {
                limit: MAX_LISTING_BYTES,
                progress: false,
            };
            let body = fetch::get(client, &url, policy, download).await?;
            let html = String::from_utf8_lossy(&body);
            let names = hrefs(&html);
            Ok(classify(day, names.iter().map(String::as_str), types))
        }
        ArchiveSource::Dir(root) => {
            let path = root.join(&dir);
            let types = types.clone();
            tokio::task::spawn_blocking(move || {
                let entries = std::fs::read_dir(&path)
                    .with_context(|| format!("cannot list {}", path.display()))?;
                let mut names = Vec::new();
                for entry in entries {
                    let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
                    // A name that is not UTF-8 is no archive file; it is
                    // counted as "other" through its lossy form.
                    names.push(entry.file_name().to_string_lossy().into_owned());
                }
                Ok(classify(day, names.iter().map(String::as_str), &types))
            })
            .await
            .context("the listing thread failed")?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 10, 15).expect("a date")
    }

    #[test]
    fn names_of_per_sensor_csv_files() {
        let f = parse_name(day(), "2025-10-15_sds011_sensor_82312.csv").expect("a file");
        assert_eq!((f.sensor_type.as_str(), f.sensor_id), ("sds011", 82312));
        let r = parse_name(day(), "2025-10-15_radiation_sbm-20_sensor_7.csv").expect("a file");
        assert_eq!(
            (r.sensor_type.as_str(), r.sensor_id),
            ("radiation_sbm-20", 7)
        );
        assert_eq!(
            parse_name(day(), "2025-10-15_SPS30_sensor_1.csv").map(|f| f.sensor_type),
            Some("sps30".to_owned())
        );
        for not in [
            "2025-10-15_sds011_sensor_82312.csv.gz",
            "2025-10-15_sds011_sensor_82312.zip",
            "2025-10-15_sds011_sensor_82312_indoor.csv",
            "2025-10-16_sds011_sensor_82312.csv",
            "2025-10-15_sensor_82312.csv",
            "2025-10-15__sensor_82312.csv",
            "2025-10-15_sds011_sensor_.csv",
            "2025-10-15_sds011_sensor_-1.csv",
            "2025-10-15_sds011_sensor_99999999999999999999.csv",
            "2025-10-15_sds 011_sensor_1.csv",
            "2025-10-15_sds011_sensor_1.CSV",
            "2025-10-15_sds011.csv",
            "",
        ] {
            assert_eq!(parse_name(day(), not), None, "{not:?}");
        }
    }

    #[test]
    fn hrefs_are_found_whatever_the_server_writes() {
        let html = r##"<html><head><title>Index of /2025-10-15/</title></head><body>
<h1>Index of /2025-10-15/</h1><hr><pre><a href="../">../</a>
<a href="?C=N;O=D">Name</a>
<a href="2025-10-15_sds011_sensor_82312.csv">2025-10-15_sds011_sensor_82312.csv</a>  16-Oct-2025 00:31  45477
<A HREF='2025-10-15_sps30_sensor_1.csv'>x</A>
<a class=x href=2025-10-15_pms5003_sensor_2.csv>y</a>
<a href = "/2025-10-15/2025-10-15_hpm_sensor_3.csv?download=1">z</a>
<a href="https://archive.example/2025-10-15/2025-10-15_nextpm_sensor_4.csv#top">w</a>
<a href="2025-10-15_sds011_sensor_5%5Findoor.csv">escaped</a>
<a href="sub/">sub/</a><a href="">empty</a><a href="#">anchor</a>
<a href="2025-10-15_sds011_sensor_82312.csv"><img></a>
<p>a stray href without a value, and href="unterminated"##;
        assert_eq!(
            hrefs(html),
            [
                "2025-10-15_sds011_sensor_82312.csv",
                "2025-10-15_sps30_sensor_1.csv",
                "2025-10-15_pms5003_sensor_2.csv",
                "2025-10-15_hpm_sensor_3.csv",
                "2025-10-15_nextpm_sensor_4.csv",
                "2025-10-15_sds011_sensor_5_indoor.csv",
                "2025-10-15_sds011_sensor_82312.csv",
            ]
        );
        // Hostile input does not panic.
        for odd in [
            "href",
            "href=",
            "href=\"",
            "href=%",
            "href=é%C3",
            "hrefhref='a",
        ] {
            let _ = hrefs(odd);
        }
    }

    #[test]
    fn a_listing_keeps_requested_types_and_counts_the_rest() {
        let names = [
            "2025-10-15_sds011_sensor_2.csv",
            "2025-10-15_sds011_sensor_1.csv",
            "2025-10-15_sds011_sensor_1.csv",
            "2025-10-15_bme280_sensor_3.csv",
            "2025-10-15_sds011_sensor_4_indoor.csv",
            "2025-10-15_sds011_sensor_5.zip",
            "2025-10-15_sps30_sensor_6.csv",
        ];
        let types = TypeFilter::parse("SDS011,sps30").expect("types");
        let l = classify(day(), names, &types);
        let ids: Vec<u64> = l.files.iter().map(|f| f.sensor_id).collect();
        assert_eq!(ids, [1, 2, 6]);
        assert_eq!((l.not_requested, l.other), (1, 2));
        let all = classify(day(), names, &TypeFilter::All);
        assert_eq!((all.files.len(), all.not_requested), (4, 0));
    }

    #[test]
    fn sources() {
        assert_eq!(
            ArchiveSource::parse("https://archive.sensor.community").ok(),
            Url::parse("https://archive.sensor.community/")
                .ok()
                .map(ArchiveSource::Http)
        );
        let ArchiveSource::Http(base) =
            ArchiveSource::parse("http://127.0.0.1:9/mirror").expect("a URL")
        else {
            panic!("not a URL");
        };
        assert_eq!(
            base.join("2025-10-15/").expect("joins").as_str(),
            "http://127.0.0.1:9/mirror/2025-10-15/"
        );
        assert_eq!(
            ArchiveSource::parse("/data/archive").ok(),
            Some(ArchiveSource::Dir("/data/archive".into()))
        );
        assert_eq!(
            ArchiveSource::parse("file:///data/archive").ok(),
            Some(ArchiveSource::Dir("/data/archive".into()))
        );
        assert!(ArchiveSource::parse("").is_err());
        assert!(ArchiveSource::parse("http://").is_err());
    }
}
