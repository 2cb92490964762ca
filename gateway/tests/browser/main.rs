//! The web page in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven over WebDriver (with `fantoccini`), against a
//! real gateway and a real worker on loopback with the sample data:
//!
//! - the form is filled from `/api/meta` and submitted; a direct answer
//!   shows its row count, preview table (sortable from the keyboard) and
//!   chart, and its Download CSV button saves the API's exact bytes;
//! - a query forced to queue shows `queued`, survives a reload (the result
//!   id is in the URL), then goes `running` and `done` once a worker runs;
//! - the index selector changes the band list and the bounds with it; a
//!   query in the US EPA AQI, as NDJSON, shows the US EPA bands (chart,
//!   band totals, table) and downloads the API's exact NDJSON;
//! - an end before the start is refused next to the field by the page, and
//!   a range the server refuses shows the server's message there too;
//! - answers are read by the page's Web Worker, and the status says the
//!   row count;
//! - the result's map draws a point per sensor over the country outlines
//!   (screenshot `map.png`); N from the keyboard focuses the sensor in
//!   view nearest the centre and shows its reading, described to screen
//!   readers; the time chart counts every reading; a box drawn on the map
//!   with the pointer, and one drawn with B and the arrows, fill the
//!   query's box; zoomed out to the world, no outline crossing ±180° draws
//!   a line across the sea (a pixel check at the latitudes where one did);
//! - "The air now" maps every sensor's latest reading, the live tier's
//!   among them, from the live stream read by a Web Worker; a live sensor
//!   brought to the centre with the arrow keys and picked with N and Enter
//!   shows its last 48 hours of hourly values;
//! - axe-core finds no accessibility violation on either view;
//! - on a phone-sized screen the page does not scroll sideways;
//! - the page never asks anything of another host, and throws no error.
//!
//! Screenshots go to `target/browser/` on every run. Without Chromium or
//! chromedriver the test fails, saying how to install them.

#![cfg(unix)]

mod at_size;
#[path = "../support/mod.rs"]
mod support;
mod webdriver;

use anyhow::{anyhow, bail, ensure, Context};
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client as Browser, Locator};
use futures::FutureExt;
use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{gateway, load_sample, Service, Worker};
use webdriver::{cdp, Driver, Tools};

/// The DAQI colours of indices 1..10, as the chart must use them.
const PALETTE: [&str; 10] = [
    "#9CFF9C", "#31FF00", "#31CF00", "#FFFF00", "#FFCF00", "#FF9A00", "#FF6464", "#FF0000",
    "#990000", "#CE30FF",
];
/// How often waits look at the page.
const POLL: Duration = Duration::from_millis(100);
/// The gateway's span limit in this test, below the page's own (31 days),
/// so a range the page accepts can still be refused by the server.
const SERVER_MAX_SPAN: &str = "2days";
const DESKTOP: (u32, u32) = (1280, 1700);
const PHONE: (u32, u32) = (390, 844);
/// The longest the whole walk through the page may take (it takes seconds).
/// fantoccini puts no time limit on a WebDriver command, so this is what
/// stops a hung chromedriver from hanging the test.
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// The longest the clean-up may wait on the browser.
const CLEANUP_LIMIT: Duration = Duration::from_secs(30);

/// `target/` (beside `debug/`, where the gateway binary is).
fn target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_airq-gateway"));
    bin.parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_page_in_headless_chromium() {
    let tools = Tools::find().unwrap_or_else(|e| panic!("{e}"));
    let shots = target_dir().join("browser");
    std::fs::create_dir_all(&shots).expect("creating target/browser");

    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    load_sample(&db);
    load_live(&db).await;
    let gateway = gateway(&db, &["--max-span", SERVER_MAX_SPAN]);
    // The same page from a gateway with a longer span than the old
    // built-in 31 days, which queues what is longer than a day.
    let wide = self::gateway(&db, &["--max-span", "62days", "--direct-max-span", "24h"]);
    let profile = tempfile::tempdir().expect("temp profile dir");
    let downloads = tempfile::tempdir().expect("temp download dir");

    let driver = Driver::start(&tools.chromedriver)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let session = driver
        .session(&tools.chromium, profile.path(), downloads.path(), DESKTOP)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let t = Test {
        s: &session,
        gateway: &gateway,
        wide: &wide,
        db: &db,
        downloads: downloads.path(),
        shots: &shots,
        http: Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .expect("HTTP client"),
    };
    let outcome = tokio::time::timeout(RUN_LIMIT, AssertUnwindSafe(t.run()).catch_unwind())
        .await
        .unwrap_or_else(|_| Ok(Err(anyhow!("the test did not finish within {RUN_LIMIT:?}"))));
    if !matches!(outcome, Ok(Ok(()))) {
        let _ = tokio::time::timeout(CLEANUP_LIMIT, t.screenshot("failure.png")).await;
    }
    // Errors are ignored: Chromium quits with the session, and dropping the
    // driver kills whatever is left.
    let _ = tokio::time::timeout(CLEANUP_LIMIT, session.close()).await;
    drop(driver);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e:#}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Sensors of the live tier in the test, in Alaska, a few kilometres
/// apart (the keyboard walk pans and zooms to the first).
const LIVE_SENSORS: [(u64, &str, &str); 3] = [
    (900_001, "61.2181", "-149.9003"),
    (900_002, "61.3000", "-149.5000"),
    (900_003, "60.5000", "-149.0000"),
];
/// Hours of 5-minute readings each live sensor has, up to now.
const LIVE_HOURS: i64 = 36;

/// A 5-minute reading of `sensor` in Alaska, PM2.5 12.00 µg/m³ and PM10
/// 20.00, at time 0 (the caller sets it).
fn live_reading(sensor: u64, lat: &str, lon: &str) -> airq_core::Reading {
    airq_core::Reading {
        id: None,
        timestamp: airq_core::Timestamp(0),
        sensor_id: sensor,
        sensor_type: "SDS011".into(),
        loc_id: None,
        loc_country: "US".into(),
        loc_lat: lat.into(),
        loc_long: lon.into(),
        loc_alt: String::new(),
        p1: Some("20.00".into()),
        p2: Some("12.00".into()),
        indices: airq_core::Indices::lowest(),
        samples: None,
        basis: None,
        flags: Default::default(),
        air: Default::default(),
    }
}

/// 36 hours of 5-minute readings up to now for [`LIVE_SENSORS`], PM2.5
/// steady at 12.00 µg/m³ and PM10 at 20.00.
async fn load_live(db: &Path) {
    use airq_core::store::ReadingStore;
    let store = airq_embedded::SqliteReadingStore::new(
        airq_embedded::Db::open(db).expect("opening the test database"),
    );
    let now = airq_core::Timestamp::now().0;
    let start = (now / 3600 - (LIVE_HOURS - 1)) * 3600;
    let mut readings = Vec::new();
    for (sensor, lat, lon) in LIVE_SENSORS {
        let mut t = start;
        while t <= now {
            let mut r = live_reading(sensor, lat, lon);
            r.timestamp = airq_core::Timestamp(t);
            readings.push(r);
            t += 300;
        }
    }
    store
        .put_recent(readings)
        .await
        .expect("storing the live readings");
}

struct Test<'a> {
    s: &'a Browser,
    gateway: &'a Service,
    /// A gateway on the same store with `--max-span 62days`.
    wide: &'a Service,
    db: &'a Path,
    downloads: &'a Path,
    shots: &'a Path,
    http: Client,
}

/// The query the page sends for the form as the test fills it.
fn direct_body(day: &str) -> String {
    json!({
        "startDate": format!("{day} 00:00:00"),
        "endDate": format!("{day} 23:59:59"),
        "country": "DE",
        "minAqi": 1,
        "maxAqi": 10,
    })
    .to_string()
}

/// Rows (header not counted) and readings per AQI index of a CSV without
/// quoted fields.
fn csv_summary(csv: &[u8]) -> anyhow::Result<(usize, [u64; 10])> {
    let text = std::str::from_utf8(csv).context("CSV not UTF-8")?;
    ensure!(!text.contains('"'), "the sample's CSV has no quoted fields");
    let mut counts = [0u64; 10];
    let mut rows = 0;
    for line in text.lines().skip(1) {
        rows += 1;
        let aqi: usize = line
            .split(',')
            .nth(11)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no AQI in {line:?}"))?;
        ensure!((1..=10).contains(&aqi), "AQI {aqi} out of range");
        counts[aqi - 1] += 1;
    }
    Ok((rows, counts))
}

impl Test<'_> {
    async fn run(&self) -> anyhow::Result<()> {
        // Records every uncaught error and Content-Security-Policy violation
        // of every page the session opens.
        cdp(
            self.s,
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "window.__airqErrors = []; \
                addEventListener('error', e => __airqErrors.push(String(e.message))); \
                addEventListener('unhandledrejection', e => __airqErrors.push(String(e.reason))); \
                addEventListener('securitypolicyviolation', e => \
                    __airqErrors.push(`CSP: ${e.violatedDirective} ${e.blockedURI}`));"}),
        )
        .await?;
        let day = latest_day();
        self.open("/").await?;
        self.the_air_now().await?;
        self.check_defaults(&day).await?;
        self.direct_query(&day).await?;
        self.map_and_time_chart(&day).await?;
        let id = self.queued_query().await?;
        self.other_index_and_format(&day).await?;
        self.field_errors().await?;
        self.shared_link(&day).await?;
        self.the_gateways_own_span(&day).await?;
        self.aggregates(&day).await?;
        self.quality(&day).await?;
        self.correction(&day).await?;
        self.phone(&id).await?;
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        self.gateway.url(path)
    }

    /// Calls `probe` every [`POLL`] until it gives `Some`, for at most
    /// `limit`; fails naming `what` (and the last error) otherwise.
    async fn wait<T, F, Fut>(&self, what: &str, limit: Duration, mut probe: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let attempts = (limit.as_millis() / POLL.as_millis()).max(1);
        let start = Instant::now();
        let mut last_error = None;
        for _ in 0..attempts {
            match probe().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last_error = Some(e),
            }
            if start.elapsed() > limit {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let status = self.status_text().await.unwrap_or_default();
        match last_error {
            Some(e) => Err(e.context(format!("waiting for {what} (page status: {status:?})"))),
            None => bail!("{what}: not within {limit:?} (page status: {status:?})"),
        }
    }

    async fn js(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.s
            .execute(script, args)
            .await
            .context("running a script in the page")
    }

    async fn find(&self, css: &str) -> anyhow::Result<Element> {
        self.s
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("finding {css}"))
    }

    async fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element>> {
        self.s
            .find_all(Locator::Css(css))
            .await
            .with_context(|| format!("finding {css}"))
    }

    async fn js_str(&self, script: &str) -> anyhow::Result<String> {
        let v = self.js(script, vec![]).await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    async fn state(&self) -> anyhow::Result<String> {
        self.js_str("return document.getElementById('status').dataset.state")
            .await
    }

    async fn status_text(&self) -> anyhow::Result<String> {
        self.js_str("return document.getElementById('status').innerText")
            .await
    }

    async fn wait_state(&self, want: &str, limit: Duration) -> anyhow::Result<()> {
        self.wait(&format!("state {want}"), limit, || async {
            let state = self.state().await?;
            if ["failed", "error"].contains(&state.as_str()) && state != want {
                bail!(
                    "the page reports {state}: {}",
                    self.status_text().await.unwrap_or_default()
                );
            }
            Ok((state == want).then_some(()))
        })
        .await
    }

    /// Scrolls the result view into sight, its table to the left.
    async fn show_results(&self) -> anyhow::Result<()> {
        self.js(
            "document.querySelector('#results .table-wrap').scrollLeft = 0; \
             document.getElementById('results').scrollIntoView();",
            vec![],
        )
        .await
        .map(drop)
    }

    /// The result's map zoomed out to the whole world: along the latitudes
    /// where outlines crossing ±180° used to draw a line across the map
    /// (Fiji at 16° S, Russia at 65° N and 71.5° N), stretches of open sea
    /// are the sea's colour, but for columns near a sensor (`places`,
    /// whose dots and groups are drawn there).
    async fn no_line_across_the_map(
        &self,
        places: &std::collections::BTreeMap<String, (f64, f64)>,
    ) -> anyhow::Result<()> {
        let canvas = self.find("#map canvas").await?;
        canvas.send_keys(&"-".repeat(20)).await?;
        // A little north of the centre, so that 71.5° N is in view.
        self.pan_to("map", (0.5, 0.4), 0).await?;
        let view = self.map_view("map").await?;
        // Open sea on the 110 m outlines: no country polygon holds any
        // point of these stretches (checked once against the outlines).
        let latitudes: [(f64, &[(f64, f64)]); 3] = [
            (-16.0, &[(-140.0, -90.0)]),
            (65.0, &[(-60.0, -55.0), (-36.0, -27.0), (-4.0, 6.0)]),
            (71.5, &[(-68.0, -60.0), (-18.0, -12.0), (30.0, 48.0)]),
        ];
        // A group's disc (radius up to 14 px, 1.5 px of edge) is centred
        // within its 28 px grid square, so it reaches at most 56 px from
        // any of its sensors.
        let clear = 56.0;
        let dots: Vec<(f64, f64)> = places
            .values()
            .map(|&(lon, lat)| view.screen(lon, lat))
            .collect();
        for (lat, stretches) in latitudes {
            let y = view.screen(0.0, lat).1;
            let mut columns = Vec::new();
            for &(west, east) in stretches {
                let (x0, x1) = (view.screen(west, lat).0, view.screen(east, lat).0);
                columns.extend(
                    (x0.ceil() as i64..=x1.floor() as i64)
                        .map(|x| x as f64)
                        .filter(|&x| dots.iter().all(|&(dx, dy)| (dx - x).hypot(dy - y) > clear)),
                );
            }
            ensure!(
                columns.len() >= 5 && (0.0..view.h).contains(&y),
                "latitude {lat}: {} clear columns at y {y} in {view:?}",
                columns.len()
            );
            let rows: Vec<f64> = (-2..=2).map(|d| y.round() + f64::from(d)).collect();
            let off = self
                .js(
                    "const [cols, rows] = arguments; \
                     const c = document.querySelector('#map canvas'); \
                     const k = c.width / c.getBoundingClientRect().width; \
                     const ctx = c.getContext('2d'); \
                     return rows.map(y => cols.filter(x => { \
                       const d = ctx.getImageData(Math.round(x * k), Math.round(y * k), 1, 1).data; \
                       return Math.abs(d[0] - 0xdb) > 12 || Math.abs(d[1] - 0xe9) > 12 || Math.abs(d[2] - 0xf4) > 12; \
                     }).length / cols.length);",
                    vec![json!(columns), json!(rows)],
                )
                .await?;
            let worst = off
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_f64).fold(0.0, f64::max))
                .unwrap_or(1.0);
            ensure!(
                worst < 0.1,
                "a line crosses the map at latitude {lat}: in rows {rows:?}, {off} of the sea's pixels are not sea"
            );
        }
        self.screenshot("map-world.png").await?;
        Ok(())
    }

    /// axe-core's checks (every rule of its default set) on the page as it
    /// is now: no violation. axe-core comes from the npm registry's
    /// tarball, which scripts/test.sh fetches ([`axe_source`]).
    async fn axe(&self, when: &str) -> anyhow::Result<()> {
        let source = axe_source()?;
        self.js(&format!("{source}; return true;"), vec![])
            .await
            .context("loading axe-core into the page")?;
        let violations = self
            .s
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 axe.run(document).then((r) => done(r.violations.map((v) => \
                   `${v.id} (${v.impact}): ${v.help}; ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`)), \
                   (e) => done([`axe failed: ${e}`]));",
                vec![],
            )
            .await
            .context("running axe-core")?;
        let list = violations.as_array().cloned().unwrap_or_default();
        ensure!(
            list.is_empty(),
            "axe-core finds {} violations {when}:\n{}",
            list.len(),
            list.iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok(())
    }

    /// Waits for two animation frames, so that the maps have drawn what
    /// the keys sent before asked for.
    async fn frames(&self) -> anyhow::Result<()> {
        self.s
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
                vec![],
            )
            .await
            .context("waiting for the page to draw")?;
        Ok(())
    }

    /// Where the map `map` (its element id) looks, as its last frame drew.
    async fn map_view(&self, map: &str) -> anyhow::Result<MapView> {
        self.frames().await?;
        let v = self
            .js(
                "return document.getElementById(arguments[0]).dataset.view || '';",
                vec![json!(map)],
            )
            .await?;
        let v: Value = serde_json::from_str(v.as_str().unwrap_or(""))
            .with_context(|| format!("the map {map} has not drawn yet"))?;
        let f = |k: &str| {
            v[k].as_f64()
                .with_context(|| format!("the map's view has no {k}: {v}"))
        };
        Ok(MapView {
            cx: f("cx")?,
            cy: f("cy")?,
            s: f("s")?,
            w: f("w")?,
            h: f("h")?,
        })
    }

    /// Moves the map `map` from the keyboard (its canvas focused) until
    /// the world point `(x, y)` is within half an arrow's step of its
    /// centre, zooming in `zoom_ins` times on the way (+ zooms at the
    /// centre, so each round pans again at the new scale).
    async fn pan_to(&self, map: &str, (x, y): (f64, f64), zoom_ins: usize) -> anyhow::Result<()> {
        let canvas = self.find(&format!("#{map} canvas")).await?;
        for round in 0..=zoom_ins {
            let view = self.map_view(map).await?;
            // An arrow pans 60 CSS pixels (map.js).
            let steps = |d: f64| (d * view.s / 60.0).round() as i64;
            let (sx, sy) = (steps(x - view.cx), steps(y - view.cy));
            let mut keys = String::new();
            let (kx, ky) = (
                if sx > 0 { Key::Right } else { Key::Left },
                if sy > 0 { Key::Down } else { Key::Up },
            );
            keys.push_str(&kx.to_string().repeat(sx.unsigned_abs() as usize));
            keys.push_str(&ky.to_string().repeat(sy.unsigned_abs() as usize));
            if round < zoom_ins {
                keys.push('+');
            }
            if !keys.is_empty() {
                canvas.send_keys(&keys).await?;
            }
        }
        Ok(())
    }

    async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.s.screenshot().await?;
        ensure!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let path = self.shots.join(name);
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("screenshot: {}", path.display());
        Ok(path)
    }

    /// "The air now": the map has every sensor's latest reading, the live
    /// tier's three among them (coloured by their hour's index); from the
    /// keyboard, arrows and + bring a live sensor to the centre, N focuses
    /// it and Enter picks it, and its last 48 hours show as a chart and a
    /// table.
    async fn the_air_now(&self) -> anyhow::Result<()> {
        let live = self
            .wait(
                "the map of the air now",
                Duration::from_secs(20),
                || async {
                    let v = self
                        .js(
                            "const n = document.getElementById('now').dataset; \
                         return [n.sensors || '', n.live || ''];",
                            vec![],
                        )
                        .await?;
                    let sensors: usize = v[0].as_str().unwrap_or("").parse().unwrap_or(0);
                    Ok((sensors > 0).then(|| (sensors, v[1].as_str().unwrap_or("").to_owned())))
                },
            )
            .await?;
        ensure!(
            live.0 == 4928 + LIVE_SENSORS.len(),
            "every sensor's latest reading: {} of {}",
            live.0,
            4928 + LIVE_SENSORS.len()
        );
        ensure!(live.1 == "3", "the live tier's sensors: {:?}", live.1);
        // The map follows the live stream: a reading another process
        // stores now appears without a reload.
        let stream = self
            .js_str("return document.getElementById('now').dataset.stream || ''")
            .await?;
        ensure!(
            stream == "open",
            "the Now map uses the live stream: {stream:?}"
        );
        let via = self
            .js_str("return document.getElementById('now').dataset.streamVia || ''")
            .await?;
        ensure!(
            via == "worker",
            "the live stream is read off the page's thread: {via:?}"
        );
        let store = airq_embedded::SqliteReadingStore::new(
            airq_embedded::Db::open(self.db).context("opening the test database")?,
        );
        let mut arrival = live_reading(900_004, "61.1000", "-148.5000");
        arrival.timestamp = airq_core::Timestamp(airq_core::Timestamp::now().0 / 300 * 300);
        airq_core::store::ReadingStore::put_recent(&store, vec![arrival])
            .await
            .context("storing a new live reading")?;
        self.wait(
            "the new live sensor on the map",
            Duration::from_secs(20),
            || async {
                let v = self
                    .js(
                        "const n = document.getElementById('now').dataset; \
                         return [n.sensors || '', n.live || ''];",
                        vec![],
                    )
                    .await?;
                let sensors: usize = v[0].as_str().unwrap_or("").parse().unwrap_or(0);
                Ok((sensors == live.0 + 1 && v[1].as_str() == Some("4")).then_some(()))
            },
        )
        .await?;
        // From the keyboard: pan to the live sensors and zoom in on them
        // (Send Keys focuses the canvas first; a click could pick a dot),
        // then N focuses the sensor nearest the centre: 900001, which the
        // arrows brought there.
        let (_, lat, lon) = LIVE_SENSORS[0];
        let target = mercator(lon.parse()?, lat.parse()?);
        self.pan_to("now-map", target, 12).await?;
        let canvas = self.find("#now-map canvas").await?;
        canvas.send_keys("n").await?;
        let tip = self
            .js_str("return document.querySelector('#now-map .map-tip').textContent")
            .await?;
        ensure!(
            tip.contains("Sensor 900001")
                && tip.contains("5-minute reading")
                && tip.contains("DAQI"),
            "the sensor nearest the centre after panning to 900001: {tip}"
        );
        canvas.send_keys(&Key::Enter.to_string()).await?;
        let hours: usize = self
            .wait(
                "the picked sensor's 48 hours",
                Duration::from_secs(20),
                || async {
                    let h = self
                        .js_str("return document.getElementById('now-sensor').dataset.hours || ''")
                        .await?;
                    Ok(h.parse().ok())
                },
            )
            .await?;
        ensure!(
            (LIVE_HOURS as usize..=LIVE_HOURS as usize + 1).contains(&hours),
            "{hours} hours of sensor 900001 in the last 48"
        );
        let title = self
            .js_str("return document.getElementById('now-chart-title').textContent")
            .await?;
        ensure!(title.contains("24-hour running mean"), "{title}");
        let rows = self.find_all("#now-table tbody tr").await?;
        ensure!(
            rows.len() == hours,
            "a table row per hour: {} of {hours}",
            rows.len()
        );
        // Each hour's flags (its 5-minute readings carry no air:
        // `no_humidity`), in the column before the last.
        let flags = self.now_column(2).await?;
        ensure!(
            flags.split('|').all(|f| f == "no_humidity") && flags.split('|').count() == hours,
            "the hours' flags: {flags}"
        );
        self.screenshot("now.png").await?;
        self.axe("on the air now, a sensor picked").await?;

        // Zoomed back out (the minus key, as many times as + was
        // pressed), a box drawn with the pointer around that sensor shows
        // each hour's median over the three live sensors.
        self.find("#now-map canvas")
            .await?
            .send_keys(&"-".repeat(12))
            .await?;
        let view = self.map_view("now-map").await?;
        let (px, py) = view.screen(lon.parse()?, lat.parse()?);
        // From the canvas's centre, where the pointer actions start.
        let (x, y) = (px - view.w / 2.0, py - view.h / 2.0);
        self.find("#now-box").await?.click().await?;
        use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
        let drag = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element: canvas.clone(),
                duration: None,
                x: x - 15.0,
                y: y - 15.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::MoveBy {
                duration: Some(Duration::from_millis(200)),
                x: 30.0,
                y: 30.0,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        self.s.perform_actions(drag).await?;
        let title = self
            .wait("the box's 48 hours", Duration::from_secs(20), || async {
                let t = self
                    .js_str("return document.getElementById('now-chart-title').textContent")
                    .await?;
                Ok(t.contains("median").then_some(t))
            })
            .await?;
        ensure!(title.starts_with("The box of longitudes"), "{title}");
        let cells = self.now_column(1).await?;
        ensure!(cells.contains("3 of 3 sensors"), "the box's hours: {cells}");
        let flagged = self.now_column(2).await?;
        ensure!(
            flagged.contains("3 of 3 sensors flagged"),
            "the box's flags: {flagged}"
        );
        self.screenshot("now-box.png").await?;
        self.assert_healthy().await
    }

    /// Loads `path` and waits until the page has its metadata.
    async fn open(&self, path: &str) -> anyhow::Result<()> {
        self.s.goto(&self.url(path)).await?;
        self.open_here().await
    }

    /// Waits until the page just loaded has its metadata.
    async fn open_here(&self) -> anyhow::Result<()> {
        self.wait_for_meta().await?;
        self.assert_healthy().await
    }

    /// Waits until the page has loaded /api/meta (its options, limits
    /// and summary).
    async fn wait_for_meta(&self) -> anyhow::Result<()> {
        self.wait(
            "the form to load /api/meta",
            Duration::from_secs(20),
            || async {
                let meta = self
                    .js_str("return document.getElementById('query').dataset.meta")
                    .await?;
                ensure!(meta != "failed", "the page could not load /api/meta");
                Ok((meta == "loaded").then_some(()))
            },
        )
        .await
    }

    /// No script error so far, and no request to another host.
    async fn assert_healthy(&self) -> anyhow::Result<()> {
        let v = self
            .js(
                "return {errors: window.__airqErrors, \
                 urls: performance.getEntriesByType('resource').map(e => e.name)}",
                vec![],
            )
            .await?;
        let errors = v["errors"]
            .as_array()
            .cloned()
            .ok_or_else(|| anyhow!("the error trap is not installed: {v}"))?;
        ensure!(errors.is_empty(), "script errors in the page: {errors:?}");
        let base = self.url("/");
        for u in v["urls"].as_array().cloned().unwrap_or_default() {
            let u = u.as_str().unwrap_or_default();
            ensure!(
                u.starts_with(&base) || u.starts_with("blob:") || u.starts_with("data:"),
                "the page requested {u}, outside the gateway"
            );
        }
        Ok(())
    }

    async fn set_value(&self, id: &str, value: &str) -> anyhow::Result<String> {
        let v = self
            .js(
                "const e = document.getElementById(arguments[0]); e.value = arguments[1]; \
                 e.dispatchEvent(new Event('input', {bubbles: true})); \
                 e.dispatchEvent(new Event('change', {bubbles: true})); return e.value;",
                vec![json!(id), json!(value)],
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    async fn value(&self, id: &str) -> anyhow::Result<String> {
        let v = self
            .js(
                "return document.getElementById(arguments[0]).value",
                vec![json!(id)],
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    async fn check_defaults(&self, day: &str) -> anyhow::Result<()> {
        // Chromium shows whole minutes without ":00" seconds.
        let start = self.value("startDate").await?;
        ensure!(
            start == format!("{day}T00:00") || start == format!("{day}T00:00:00"),
            "the start defaults to {start:?}, not the latest day with data ({day})"
        );
        let end = self.value("endDate").await?;
        ensure!(
            end == format!("{day}T23:59:59"),
            "the end defaults to {end:?}"
        );
        let countries = self
            .js(
                "return [...document.querySelectorAll('#country option')].map(o => o.value)",
                vec![],
            )
            .await?;
        let countries: Vec<&str> = countries
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        ensure!(
            countries.first() == Some(&"") && countries.contains(&"DE"),
            "the country list is {countries:?}"
        );
        let summary = self.find("#meta-summary").await?.text().await?;
        ensure!(
            summary.contains("readings from"),
            "no data summary: {summary:?}"
        );
        Ok(())
    }

    /// A summary: the day's statistics per 0.25° cell, asked from the
    /// form; the page shows the period chart over the index's bands (with
    /// its text), a square per cell on the map (the API's rows), and the
    /// table of the answer's columns; a yearly summary is allowed past the
    /// readings' span; an hourly one of the daily series is refused beside
    /// the field.
    async fn aggregates(&self, day: &str) -> anyhow::Result<()> {
        self.open("/").await?;
        self.set_value("aggregatePeriod", "day").await?;
        self.set_value("aggregateBy", "cell").await?;
        self.submit().await?;
        self.wait_state("done", Duration::from_secs(30)).await?;
        let body = json!({
            "startDate": format!("{day} 00:00:00"),
            "endDate": format!("{day} 23:59:59"),
            "minAqi": 0,
            "maxAqi": 10,
            "aggregate": {"period": "day", "by": "cell"},
        })
        .to_string();
        let r = self.post_query(body).await?;
        ensure!(
            r.status() == StatusCode::OK,
            "the API answered {}",
            r.status()
        );
        let api = String::from_utf8(r.bytes().await?.to_vec())?;
        let cells = api.lines().count() - 1;
        ensure!(cells > 10, "the sample's day has cells: {api:.300}");
        let shown = self
            .js(
                "const r = document.getElementById('result'); \
                 return {aggregate: r.dataset.aggregate, rows: r.dataset.rows, \
                   periods: document.getElementById('timechart').dataset.periods, \
                   stripes: document.querySelectorAll('#timechart .band-stripe').length, \
                   desc: (document.querySelector('#timechart desc') || {}).textContent, \
                   points: document.getElementById('map').dataset.points, \
                   mapHidden: document.getElementById('map').hidden, \
                   head: document.querySelector('#preview thead th').textContent, \
                   label: document.getElementById('row-label').textContent};",
                vec![],
            )
            .await?;
        ensure!(shown["aggregate"] == "true", "{shown}");
        ensure!(
            shown["rows"].as_str() == Some(cells.to_string().as_str()),
            "{shown} vs {cells} cells"
        );
        ensure!(shown["periods"] == "1", "one day, one period: {shown}");
        ensure!(
            shown["stripes"].as_u64().is_some_and(|n| n >= 1),
            "the bands behind the mean: {shown}"
        );
        ensure!(
            shown["desc"]
                .as_str()
                .is_some_and(|d| d.contains("PM2.5") && d.contains("coverage")),
            "the chart's text: {shown}"
        );
        ensure!(shown["mapHidden"] == false, "{shown}");
        ensure!(
            shown["points"].as_str() == Some(cells.to_string().as_str()),
            "a square per cell: {shown}"
        );
        ensure!(
            shown["head"]
                .as_str()
                .is_some_and(|h| h.starts_with("period_start")),
            "{shown}"
        );
        ensure!(shown["label"] == "rows of statistics", "{shown}");
        self.show_results().await?;
        self.screenshot("aggregate.png").await?;
        // An hourly summary of the daily series: refused beside the field.
        self.set_value("aggregatePeriod", "hour").await?;
        self.submit().await?;
        let refused = self
            .js(
                "const box = document.getElementById('aggregate-error'); \
                 return {text: box.hidden ? null : box.innerText, \
                   invalid: document.getElementById('aggregatePeriod').getAttribute('aria-invalid'), \
                   state: document.getElementById('status').dataset.state};",
                vec![],
            )
            .await?;
        ensure!(
            refused["text"]
                .as_str()
                .is_some_and(|m| m.contains("hourly"))
                && refused["invalid"] == "true",
            "{refused}"
        );
        self.set_value("aggregatePeriod", "").await?;
        self.assert_healthy().await
    }

    /// The quality filter: the flags ticked in the form leave their
    /// readings out (the API's count), the answer carries the flags (the
    /// table's last column), and the hourly series takes the filter too.
    async fn quality(&self, day: &str) -> anyhow::Result<()> {
        self.open("/").await?;
        self.set_value("quality", "list").await?;
        let ticked = self
            .js(
                "const box = document.getElementById('qualityFlag-pm25_above_pm10'); \
                 box.checked = true; return {disabled: box.disabled, \
                   shown: !document.getElementById('qualityFlags').hidden};",
                vec![],
            )
            .await?;
        ensure!(
            ticked["disabled"] == false && ticked["shown"] == true,
            "{ticked}"
        );
        self.submit().await?;
        self.wait_state("done", Duration::from_secs(30)).await?;
        self.shown_as_the_api_answers(day, json!({"quality": ["pm25_above_pm10"]}), ",flags")
            .await?;
        // The hourly series keeps flags too (its readings'): the form
        // sends the filter, nothing is refused beside the field.
        self.set_value("resolution", "hour").await?;
        self.submit().await?;
        self.wait_state("done", Duration::from_secs(30)).await?;
        let quality = self.fieldset_error("quality").await?;
        ensure!(
            quality["text"].is_null() && quality["invalid"] != "true",
            "{quality}"
        );
        self.set_value("resolution", "day").await?;
        self.set_value("quality", "").await?;
        self.assert_healthy().await
    }

    /// The humidity correction: the form explains it and links its source
    /// (from `/api/meta`), refuses a missing κ beside the field, and sends
    /// the κ typed: the answer is the API's (the corrected values are the
    /// table's last columns).
    async fn correction(&self, day: &str) -> anyhow::Result<()> {
        self.open("/").await?;
        let before = self
            .js(
                "return {kappa: document.getElementById('correctionKappa').disabled, \
                   source: document.getElementById('correction-source').href, \
                   summary: document.getElementById('correction-summary').textContent};",
                vec![],
            )
            .await?;
        ensure!(
            before["kappa"] == true
                && before["source"] == "https://doi.org/10.5194/amt-11-709-2018"
                && before["summary"]
                    .as_str()
                    .is_some_and(|t| t.contains("κ-Köhler")),
            "{before}"
        );
        self.set_value("correction", "kappa-kohler").await?;
        self.submit().await?;
        let refused = self.fieldset_error("correction").await?;
        ensure!(
            refused["text"]
                .as_str()
                .is_some_and(|m| m.to_lowercase().contains("needs a κ"))
                && refused["invalid"] == "true",
            "{refused}"
        );
        self.set_value("correctionKappa", "0.3").await?;
        self.submit().await?;
        self.wait_state("done", Duration::from_secs(30)).await?;
        self.shown_as_the_api_answers(
            day,
            json!({"correction": {"method": "kappa-kohler", "kappa": 0.3}}),
            ",humidity,P1_corrected,P2_corrected",
        )
        .await?;
        self.set_value("correction", "").await?;
        self.assert_healthy().await
    }

    /// The page's finished answer to the form is the API's answer to the
    /// day's query with `extra` fields: as many rows, and the table's
    /// last column is the last of `header_end`, which the API's header
    /// ends with.
    async fn shown_as_the_api_answers(
        &self,
        day: &str,
        extra: Value,
        header_end: &str,
    ) -> anyhow::Result<()> {
        let mut body = json!({
            "startDate": format!("{day} 00:00:00"),
            "endDate": format!("{day} 23:59:59"),
            "minAqi": 0,
            "maxAqi": 10,
        });
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        let r = self.post_query(body.to_string()).await?;
        ensure!(
            r.status() == StatusCode::OK,
            "the API answered {}",
            r.status()
        );
        let api = String::from_utf8(r.bytes().await?.to_vec())?;
        let rows = api.lines().count() - 1;
        ensure!(
            api.lines().next().is_some_and(|h| h.ends_with(header_end)),
            "{api:.300}"
        );
        let last = header_end.rsplit(',').next().unwrap_or_default();
        let shown = self
            .js(
                "const r = document.getElementById('result'); \
                 const heads = [...document.querySelectorAll('#preview thead th')]; \
                 return {rows: r.dataset.rows, last: heads.length ? heads.pop().textContent.trim().split(/\\s/)[0] : null};",
                vec![],
            )
            .await?;
        ensure!(
            shown["rows"].as_str() == Some(rows.to_string().as_str()) && shown["last"] == last,
            "{shown} vs {rows} rows"
        );
        Ok(())
    }

    /// The Now table's cells of the column `from_end` from its end (1: the
    /// last), row by row, joined by `|`.
    async fn now_column(&self, from_end: usize) -> anyhow::Result<String> {
        self.js_str(&format!(
            "return [...document.querySelectorAll('#now-table tbody tr td:nth-last-child({from_end})')] \
             .map(td => td.textContent).join('|')"
        ))
        .await
    }

    /// The error the page shows under a fieldset's `field` (`text`, null
    /// when none) and whether its first input is marked invalid
    /// (`invalid`); [`Test::field_error`] checks a one-input field's.
    async fn fieldset_error(&self, field: &str) -> anyhow::Result<Value> {
        self.js(
            "const box = document.getElementById(`${arguments[0]}-error`); \
             return {text: box.hidden ? null : box.innerText, \
               invalid: document.getElementById(arguments[0]).getAttribute('aria-invalid')};",
            vec![json!(field)],
        )
        .await
    }

    /// `POST /api/query` of `body` (JSON), as a script would send it.
    async fn post_query(
        &self,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(self.url("/api/query"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?)
    }

    /// Submits the form from the keyboard: Enter on its focused button.
    async fn submit(&self) -> anyhow::Result<()> {
        self.find("#submit")
            .await?
            .send_keys(&Key::Enter.to_string())
            .await?;
        Ok(())
    }

    async fn direct_query(&self, day: &str) -> anyhow::Result<()> {
        // Fill the form as a user would: pick, clear, type.
        self.find("#country option[value='DE']")
            .await?
            .click()
            .await?;
        let min = self.find("#minAqi").await?;
        min.clear().await?;
        min.send_keys("1").await?;
        ensure!(self.value("minAqi").await? == "1", "typing into minAqi");
        self.submit().await?;
        self.wait_state("done", Duration::from_secs(30)).await?;

        let answer = self.find("#answer").await?.text().await?;
        ensure!(
            answer.contains("directly"),
            "expected a direct answer: {answer:?}"
        );
        let r = self.post_query(direct_body(day)).await?;
        ensure!(
            r.status() == StatusCode::OK,
            "the API answered {}",
            r.status()
        );
        ensure!(r.headers()["x-airq-answer"] == "direct");
        let api_csv = r.bytes().await?.to_vec();
        let (rows, counts) = csv_summary(&api_csv)?;
        ensure!(
            rows > 100,
            "the sample should give more than a preview ({rows})"
        );
        self.check_result_view(&api_csv, rows, counts).await?;
        self.check_sorting().await?;
        self.download_and_compare(&api_csv, "csv").await?;
        self.show_results().await?;
        self.screenshot("result.png").await?;
        self.js("window.scrollTo(0, 0)", vec![]).await?;
        self.assert_healthy().await
    }

    /// The map and the time chart of the direct answer shown: a point per
    /// sensor, drawn over the outlines; N from the keyboard focuses a
    /// sensor and shows its reading; the time chart's bars add up to the
    /// answer; a box drawn with the pointer fills the form's box.
    async fn map_and_time_chart(&self, day: &str) -> anyhow::Result<()> {
        use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
        let r = self.post_query(direct_body(day)).await?;
        let api_csv = r.bytes().await?.to_vec();
        let mut reader = csv::Reader::from_reader(api_csv.as_slice());
        let mut sensors = std::collections::BTreeSet::new();
        // Each sensor's place in its last reading (the one the map shows).
        let mut places = std::collections::BTreeMap::new();
        let mut rows = 0u64;
        for record in reader.records() {
            let record = record?;
            sensors.insert(record[2].to_owned());
            if let (Ok(lat), Ok(lon)) = (record[6].parse::<f64>(), record[7].parse::<f64>()) {
                places.insert(record[2].to_owned(), (lon, lat));
            }
            rows += 1;
        }
        self.js("document.getElementById('map').scrollIntoView()", vec![])
            .await?;
        let drawn = self
            .wait("the map's outlines and points", Duration::from_secs(20), || async {
                let v = self
                    .js(
                        "const m = document.getElementById('map').dataset; \
                         return {points: Number(m.points), drawn: Number(m.drawn), outlines: m.outlinesState || ''};",
                        vec![],
                    )
                    .await?;
                ensure!(v["outlines"] != "failed", "the outlines did not load");
                Ok((v["outlines"] == "loaded" && v["drawn"].as_u64().unwrap_or(0) > 0).then_some(v))
            })
            .await?;
        ensure!(
            drawn["points"].as_u64() == Some(sensors.len() as u64),
            "the map shows {} points for {} sensors",
            drawn["points"],
            sensors.len()
        );
        // The canvas holds more than the sea's colour: outlines and points.
        let colours = self
            .js(
                "const c = document.querySelector('#map canvas'); \
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
                 const seen = new Set(); \
                 for (let i = 0; i < d.length; i += 4 * 97) seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]); \
                 return seen.size;",
                vec![],
            )
            .await?;
        ensure!(
            colours.as_u64().unwrap_or(0) > 3,
            "the map's canvas is nearly blank ({colours} colours)"
        );
        self.screenshot("map.png").await?;

        // From the keyboard: focus the map, N steps to a sensor.
        let canvas = self.find("#map canvas").await?;
        self.js("document.querySelector('#map canvas').focus()", vec![])
            .await?;
        canvas.send_keys("n").await?;
        let tip = self
            .wait(
                "the focused sensor's reading",
                Duration::from_secs(5),
                || async {
                    let v = self
                        .js(
                            "const t = document.querySelector('#map .map-tip'); \
                         return t.hidden ? '' : t.textContent;",
                            vec![],
                        )
                        .await?;
                    Ok(v.as_str().filter(|t| !t.is_empty()).map(str::to_owned))
                },
            )
            .await?;
        let id = tip
            .strip_prefix("Sensor ")
            .and_then(|t| t.split(' ').next())
            .unwrap_or_default();
        ensure!(
            sensors.contains(id) && tip.contains("PM2.5") && tip.contains("DAQI"),
            "the tooltip does not show a sensor's reading: {tip:?}"
        );
        let live = self
            .js_str("return document.querySelector('#map .map-live').textContent")
            .await?;
        ensure!(
            live == tip,
            "screen readers are not told the reading: {live:?}"
        );
        // N starts from the sensor in view nearest the centre.
        let view = self.map_view("map").await?;
        let (cx, cy) = (view.w / 2.0, view.h / 2.0);
        let distance = |&(lon, lat): &(f64, f64)| {
            let (x, y) = view.screen(lon, lat);
            view.shows((x, y)).then(|| (x - cx).hypot(y - cy))
        };
        let nearest = places
            .values()
            .filter_map(distance)
            .fold(f64::INFINITY, f64::min);
        let focused = places.get(id).and_then(distance);
        ensure!(
            focused.is_some_and(|d| d <= nearest + 1e-6),
            "N focused sensor {id} at {focused:?} px from the centre; the nearest in view is {nearest} px away"
        );
        let summary = self
            .js_str("return document.getElementById('map-summary').textContent")
            .await?;
        let described = self
            .js_str("return document.querySelector('#map canvas').getAttribute('aria-describedby')")
            .await?;
        ensure!(
            summary.contains(&format!("{} sensors on the map", sensors.len()))
                && summary.contains("in view")
                && described.split(' ').any(|d| d == "map-summary"),
            "the map's description: {summary:?} (described by {described:?})"
        );
        self.screenshot("map-focused.png").await?;

        // The time chart: its bars add up to the answer's rows.
        let counted = self
            .js(
                "return [...document.querySelectorAll('#timechart g > title')] \
                   .map(t => Number(t.textContent.split(': ')[1].split(' ')[0].replace(/,/g, ''))) \
                   .reduce((a, b) => a + b, 0);",
                vec![],
            )
            .await?;
        ensure!(
            counted.as_u64() == Some(rows),
            "the time chart counts {counted} readings, the answer has {rows}"
        );
        ensure!(
            !self.find_all("#timechart rect.bar").await?.is_empty(),
            "the time chart has no bars"
        );
        // Its text alternative, a table behind a toggle, counts them too.
        let tabled = self
            .js(
                "return [...document.querySelectorAll('#timechart .chart-data tbody tr')] \
                   .map(tr => Number(tr.cells[1].textContent.replace(/,/g, ''))) \
                   .reduce((a, b) => a + b, 0);",
                vec![],
            )
            .await?;
        ensure!(
            tabled.as_u64() == Some(rows),
            "the time chart's table counts {tabled} readings, the answer has {rows}"
        );

        // A box drawn with the pointer fills the query's box.
        self.find("#map-box").await?.click().await?;
        let drag = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element: canvas.clone(),
                duration: None,
                x: -80.0,
                y: -50.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::MoveBy {
                duration: Some(Duration::from_millis(200)),
                x: 160.0,
                y: 100.0,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        self.s.perform_actions(drag).await?;
        let mut bbox = Vec::new();
        for id in ["bboxMinLon", "bboxMinLat", "bboxMaxLon", "bboxMaxLat"] {
            let v: f64 = self
                .value(id)
                .await?
                .parse()
                .with_context(|| format!("{id} was not filled with a number"))?;
            bbox.push(v);
        }
        ensure!(
            self.value("placeKind").await? == "bbox" && bbox[0] < bbox[2] && bbox[1] < bbox[3],
            "the drawn box did not fill the form: {bbox:?}"
        );
        // From the keyboard: B starts an 80-pixel box at the centre, each
        // arrow moves its far corner 20 pixels, Enter uses it.
        self.set_value("placeKind", "").await?;
        let view = self.map_view("map").await?;
        let keys = format!(
            "b{}{}{}",
            Key::Right.to_string().repeat(3),
            Key::Down.to_string().repeat(2),
            Key::Enter
        );
        canvas.send_keys(&keys).await?;
        let (west, north) = view.lon_lat(view.w / 2.0 - 40.0, view.h / 2.0 - 40.0);
        let (east, south) = view.lon_lat(view.w / 2.0 + 100.0, view.h / 2.0 + 80.0);
        let mut keyed = Vec::new();
        for id in ["bboxMinLon", "bboxMinLat", "bboxMaxLon", "bboxMaxLat"] {
            keyed.push(self.value(id).await?.parse::<f64>().unwrap_or(f64::NAN));
        }
        let want = [west, south, east, north];
        ensure!(
            self.value("placeKind").await? == "bbox"
                && keyed.iter().zip(want).all(|(k, w)| (k - w).abs() < 2e-4),
            "the box drawn from the keyboard: {keyed:?}, expected {want:?}"
        );
        self.no_line_across_the_map(&places).await?;
        self.axe("on a result with its map, charts and table")
            .await?;
        // Back to no place filter, for the steps that follow.
        self.set_value("placeKind", "").await?;
        self.js("window.scrollTo(0, 0)", vec![]).await?;
        self.assert_healthy().await
    }

    /// The row count, the preview and the chart match the API's CSV.
    async fn check_result_view(
        &self,
        api_csv: &[u8],
        rows: usize,
        counts: [u64; 10],
    ) -> anyhow::Result<()> {
        let shown = self
            .js_str("return document.getElementById('result').dataset.rows")
            .await?;
        ensure!(
            shown == rows.to_string(),
            "the page counts {shown} rows, the API sent {rows}"
        );
        let count_text = self.find("#row-count").await?.text().await?;
        ensure!(
            count_text.replace(',', "") == rows.to_string(),
            "row count shown as {count_text:?}"
        );
        // Read by the Web Worker, and the status says how many rows.
        let read_by = self
            .js_str("return document.getElementById('result').dataset.readBy || ''")
            .await?;
        let status = self.status_text().await?;
        ensure!(
            read_by == "worker" && status.starts_with("Done: ") && status.contains(&count_text),
            "the answer was read by {read_by:?}; the status says {status:?}"
        );

        let preview = self.find_all("#preview tbody tr").await?;
        ensure!(
            preview.len() == rows.min(100),
            "the preview has {} rows",
            preview.len()
        );
        let header = self
            .js(
                "return [...document.querySelectorAll('#preview thead th')].map(th => th.innerText.replace(/[↕▲▼]/g, '').trim())",
                vec![],
            )
            .await?;
        let api_text = String::from_utf8_lossy(api_csv);
        let mut lines = api_text.lines();
        let api_header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        ensure!(
            header == json!(api_header),
            "preview header {header} vs {api_header:?}"
        );
        let first = self
            .js(
                "return [...document.querySelectorAll('#preview tbody tr:first-child td')].map(td => td.textContent)",
                vec![],
            )
            .await?;
        let api_first: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        ensure!(
            first == json!(api_first),
            "first preview row {first} vs {api_first:?}"
        );

        let bars = self
            .js(
                "return [...document.querySelectorAll('#chart svg rect.bar')].map(r => \
                 [r.getAttribute('fill'), Number(r.dataset.count), r.getBoundingClientRect().height])",
                vec![],
            )
            .await?;
        let bars = bars.as_array().cloned().unwrap_or_default();
        ensure!(bars.len() == 10, "the chart has {} bars", bars.len());
        for (i, bar) in bars.iter().enumerate() {
            ensure!(
                bar[0]
                    .as_str()
                    .is_some_and(|f| f.eq_ignore_ascii_case(PALETTE[i])),
                "bar {} is {} not {}",
                i + 1,
                bar[0],
                PALETTE[i]
            );
            ensure!(
                bar[1].as_u64() == Some(counts[i]),
                "bar {} counts {} readings, the CSV has {}",
                i + 1,
                bar[1],
                counts[i]
            );
            let height = bar[2].as_f64().unwrap_or(0.0);
            ensure!(
                (counts[i] > 0) == (height > 0.0),
                "bar {} is {height}px high for {} readings",
                i + 1,
                counts[i]
            );
        }
        let bands = self
            .js(
                "return [...document.querySelectorAll('#bands li')].map(li => li.textContent)",
                vec![],
            )
            .await?;
        ensure!(
            bands.as_array().is_some_and(|b| b.len() == 4),
            "band totals: {bands}"
        );
        Ok(())
    }

    /// The AQI column sorts both ways from the keyboard (Enter on its
    /// heading button).
    async fn check_sorting(&self) -> anyhow::Result<()> {
        let aqi_col = 12; // 1-based, as CSS counts
        let button = self
            .find(&format!("#preview thead th:nth-child({aqi_col}) button"))
            .await?;
        for (dir, ascending) in [("ascending", true), ("descending", false)] {
            button.send_keys(&Key::Enter).await?;
            let th = self
                .find(&format!("#preview thead th:nth-child({aqi_col})"))
                .await?;
            let sort = th.attr("aria-sort").await?;
            ensure!(
                sort.as_deref() == Some(dir),
                "aria-sort is {sort:?}, expected {dir}"
            );
            let values = self
                .js(
                    "return [...document.querySelectorAll(`#preview tbody td:nth-child(${arguments[0]})`)].map(td => Number(td.textContent))",
                    vec![json!(aqi_col)],
                )
                .await?;
            let values: Vec<f64> = values
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            ensure!(values.len() > 1, "no AQI values in the preview");
            let sorted = values.windows(2).all(|w| {
                if ascending {
                    w[0] <= w[1]
                } else {
                    w[0] >= w[1]
                }
            });
            ensure!(sorted, "the preview is not sorted {dir} by AQI: {values:?}");
            let focused = self
                .js(
                    "return document.activeElement === arguments[0]",
                    vec![json!(button)],
                )
                .await?;
            ensure!(focused == true, "sorting moved the keyboard focus");
        }
        Ok(())
    }

    /// Clicks Download and compares the saved file (named `*.ext`) with
    /// `expected`.
    async fn download_and_compare(&self, expected: &[u8], ext: &str) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(self.downloads)? {
            std::fs::remove_file(entry?.path())?;
        }
        let name = self
            .js_str("return document.getElementById('result').dataset.filename")
            .await?;
        ensure!(
            name.starts_with("airq-") && name.ends_with(&format!(".{ext}")),
            "download name {name:?}"
        );
        // From the keyboard, as submit is.
        self.find("#download")
            .await?
            .send_keys(&Key::Enter.to_string())
            .await?;
        let path = self.downloads.join(&name);
        let saved = self
            .wait(
                "the download to finish",
                Duration::from_secs(20),
                || async {
                    let partial = std::fs::read_dir(self.downloads)?
                        .filter_map(Result::ok)
                        .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"));
                    if partial {
                        return Ok(None);
                    }
                    match std::fs::read(&path) {
                        Ok(bytes) if bytes.len() >= expected.len() => Ok(Some(bytes)),
                        _ => Ok(None),
                    }
                },
            )
            .await?;
        ensure!(
            saved == expected,
            "the downloaded CSV ({} bytes) differs from the API's ({} bytes)",
            saved.len(),
            expected.len()
        );
        Ok(())
    }

    /// Queues a query; watches it through a reload, then queued → running
    /// → done once a worker starts. Returns the result id.
    async fn queued_query(&self) -> anyhow::Result<String> {
        let background = self.find("#background").await?;
        background.send_keys(" ").await?;
        let checked = self
            .js(
                "return document.getElementById('background').checked",
                vec![],
            )
            .await?;
        ensure!(checked == true, "space did not tick the checkbox");
        self.submit().await?;
        self.wait_state("queued", Duration::from_secs(15)).await?;

        let url = String::from(self.s.current_url().await?);
        let id = url
            .split_once("result=")
            .map(|(_, id)| {
                id.chars()
                    .take_while(|c| *c != '&' && *c != '#')
                    .collect::<String>()
            })
            .ok_or_else(|| anyhow!("no result id in the URL {url}"))?;
        uuid::Uuid::parse_str(&id).with_context(|| format!("{id:?} in the URL is not a UUID"))?;
        let link = self.find("#result-link").await?.attr("href").await?;
        ensure!(
            link.as_deref() == Some(url.as_str()),
            "the shown link {link:?} is not the page's URL {url}"
        );

        // Nothing answers yet: leave, and come back through the link, which
        // also brings the query back into the form.
        self.s.goto("about:blank").await?;
        self.s.goto(&url).await?;
        self.open_here().await?;
        self.wait_state("queued", Duration::from_secs(15)).await?;
        let form = (
            self.value("country").await?,
            self.value("minAqi").await?,
            self.value("endDate").await?,
        );
        ensure!(
            form.0 == "DE" && form.1 == "1" && form.2.ends_with("T23:59:59"),
            "the link did not refill the form: {form:?}"
        );
        self.wait("the elapsed time", Duration::from_secs(5), || async {
            let elapsed = self.find("#elapsed").await?.text().await?;
            Ok(elapsed.ends_with(" s").then_some(()))
        })
        .await?;

        // Long enough that the page sees the query running.
        let _worker = Worker::start(
            self.db,
            &["--receive-wait", "1s", "--test-query-delay", "3s"],
        );
        let mut seen: Vec<String> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let state = self.state().await?;
            if seen.last() != Some(&state) {
                seen.push(state.clone());
            }
            if ["done", "failed", "error"].contains(&state.as_str()) {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        ensure!(
            seen == ["queued", "running", "done"],
            "the page went through {seen:?}, not queued → running → done (status: {:?})",
            self.status_text().await.unwrap_or_default()
        );
        // It followed the result through its event stream, not by polling.
        let metrics = self
            .http
            .get(self.gateway.url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        ensure!(
            metrics
                .lines()
                .any(|l| l.starts_with("airq_http_requests_total")
                    && l.contains("route=\"result_events\"")
                    && l.contains("status=\"200\"")
                    // Counted, not only registered at 0.
                    && l
                        .rsplit(' ')
                        .next()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(|v| v >= 1.0)),
            "no event stream was opened:\n{}",
            metrics
                .lines()
                .filter(|l| l.starts_with("airq_http_requests_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let answer = self.find("#answer").await?.text().await?;
        ensure!(answer.contains("queued"), "answer note {answer:?}");
        let described = self.find("#query-desc").await?.text().await?;
        ensure!(
            described.starts_with("DE · ") && described.contains("AQI 1–10"),
            "the result does not say which query it answers: {described:?}"
        );

        let r = self
            .http
            .get(self.url(&format!("/api/results/{id}")))
            .send()
            .await?;
        ensure!(
            r.status() == StatusCode::OK,
            "the API answered {}",
            r.status()
        );
        let api_csv = r.bytes().await?.to_vec();
        let (rows, counts) = csv_summary(&api_csv)?;
        self.check_result_view(&api_csv, rows, counts).await?;
        self.download_and_compare(&api_csv, "csv").await?;
        self.show_results().await?;
        self.screenshot("result-queued.png").await?;
        self.assert_healthy().await?;
        Ok(id)
    }

    /// The options of a select, by value.
    async fn options(&self, id: &str) -> anyhow::Result<Vec<String>> {
        let v = self
            .js(
                "return [...document.getElementById(arguments[0]).options].map(o => o.value)",
                vec![json!(id)],
            )
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Moves a select one option down or up from the keyboard, as a user
    /// without a mouse does, and checks where it landed.
    async fn choose_by_keyboard(&self, id: &str, key: Key, want: &str) -> anyhow::Result<()> {
        let select = self.find(&format!("#{id}")).await?;
        select.send_keys(&key).await?;
        let got = self.value(id).await?;
        ensure!(got == want, "#{id} is {got:?} after a key, not {want:?}");
        Ok(())
    }

    /// The page takes its limits from the gateway that serves it: from one
    /// started with `--max-span 62days`, a 40-day range is accepted and
    /// queued (no worker runs now, so it stays queued).
    async fn the_gateways_own_span(&self, day: &str) -> anyhow::Result<()> {
        self.s.goto(&self.wide.url("/")).await?;
        self.wait_for_meta().await?;
        let end = chrono_like_days_before(day, 0);
        let start = chrono_like_days_before(day, 39);
        self.set_value("startDate", &format!("{start}T00:00:00"))
            .await?;
        self.set_value("endDate", &format!("{end}T23:59:59"))
            .await?;
        self.submit().await?;
        self.wait_state("queued", Duration::from_secs(15)).await?;
        let errors = self
            .js(
                "return [...document.querySelectorAll('.error')].filter(e => !e.hidden).map(e => e.textContent)",
                vec![],
            )
            .await?;
        ensure!(errors == json!([]), "no field error: {errors}");
        // (Another origin than assert_healthy's: the page's own record of
        // script errors and CSP violations.)
        let page_errors = self.js("return window.__airqErrors", vec![]).await?;
        ensure!(page_errors == json!([]), "page errors: {page_errors}");
        Ok(())
    }

    /// A bare link to a result this page did not submit (queued by a
    /// script, no worker running) fills the form with the query the result
    /// answers, from the server: index, bounds, place, types and format.
    async fn shared_link(&self, day: &str) -> anyhow::Result<()> {
        let body = json!({
            "startDate": format!("{day} 00:00:00"),
            "endDate": format!("{day} 23:59:59"),
            "index": "us-epa",
            "minAqi": 0,
            "maxAqi": 150,
            "bbox": [5.5, 47.25, 15.0, 55.0],
            "sensorType": ["SDS011", "PMS5003"],
            "format": "ndjson",
        });
        let r = self
            .http
            .post(self.url("/api/query"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("Prefer", "respond-async")
            .body(body.to_string())
            .send()
            .await?;
        ensure!(
            r.status() == StatusCode::ACCEPTED,
            "the API answered {}",
            r.status()
        );
        let queued: Value = r.json().await?;
        let id = queued["id"].as_str().context("no id")?.to_owned();
        self.open(&format!("/?result={id}")).await?;
        self.wait_state("queued", Duration::from_secs(15)).await?;
        let form = self
            .wait(
                "the form to be refilled",
                Duration::from_secs(10),
                || async {
                    let f = self
                        .js(
                            "const v = (id) => document.getElementById(id).value; \
                         return {index: v('index'), minAqi: v('minAqi'), maxAqi: v('maxAqi'), \
                           top: document.getElementById('maxAqi').max, place: v('placeKind'), \
                           bbox: ['bboxMinLon', 'bboxMinLat', 'bboxMaxLon', 'bboxMaxLat'].map(v), \
                           types: v('sensorType'), format: v('format'), \
                           start: v('startDate'), url: location.search};",
                            vec![],
                        )
                        .await?;
                    Ok((f["index"] == "us-epa").then_some(f))
                },
            )
            .await?;
        ensure!(
            form["minAqi"] == "0"
                && form["maxAqi"] == "150"
                && form["top"] == "500"
                && form["place"] == "bbox"
                && form["bbox"] == json!(["5.5", "47.25", "15", "55"])
                && form["types"] == "PMS5003, SDS011"
                && form["format"] == "ndjson"
                && form["start"].as_str().is_some_and(|s| s.starts_with(day)),
            "the form does not show the result's query: {form}"
        );
        ensure!(
            form["url"]
                .as_str()
                .is_some_and(|u| u.contains("index=us-epa")),
            "the link now carries the query: {form}"
        );
        self.assert_healthy().await
    }

    /// The index selector drives the band list and the bounds; a query in
    /// the US EPA AQI, as NDJSON, shows that index's bands everywhere and
    /// downloads the API's NDJSON. Leaves the form as it found it (DAQI, CSV).
    async fn other_index_and_format(&self, day: &str) -> anyhow::Result<()> {
        let daqi = ["", "Low", "Moderate", "High", "Very High"];
        let epa = [
            "",
            "Good",
            "Moderate",
            "Unhealthy for Sensitive Groups",
            "Unhealthy",
            "Very Unhealthy",
            "Hazardous",
        ];
        ensure!(self.options("range").await? == daqi, "the DAQI bands first");
        self.choose_by_keyboard("index", Key::Down, "us-epa")
            .await?;
        let bands = self.options("range").await?;
        ensure!(
            bands == epa,
            "the band list did not follow the index: {bands:?}"
        );
        let bounds = (
            self.value("minAqi").await?,
            self.value("maxAqi").await?,
            self.js_str("return document.getElementById('maxAqi').max")
                .await?,
        );
        ensure!(
            bounds == ("0".into(), "500".into(), "500".into()),
            "the bounds did not follow the index: {bounds:?}"
        );
        self.choose_by_keyboard("format", Key::Down, "ndjson")
            .await?;
        // Answered directly: the queued query before left the box ticked.
        let queued = self
            .js(
                "return document.getElementById('background').checked",
                vec![],
            )
            .await?;
        if queued == true {
            self.find("#background").await?.send_keys(" ").await?;
        }
        self.submit().await?;
        self.wait_state("done", Duration::from_secs(30)).await?;

        // What the API answers to the same query.
        let body = json!({
            "startDate": format!("{day} 00:00:00"),
            "endDate": format!("{day} 23:59:59"),
            "country": "DE",
            "index": "us-epa",
            "minAqi": 0,
            "maxAqi": 500,
            "format": "ndjson",
        });
        let r = self.post_query(body.to_string()).await?;
        ensure!(
            r.status() == StatusCode::OK,
            "the API answered {}",
            r.status()
        );
        ensure!(r.headers()["x-airq-index"] == "us-epa");
        let api = r.bytes().await?.to_vec();
        let lines: Vec<Value> = String::from_utf8_lossy(&api)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .context("the API's NDJSON")?;
        ensure!(lines.len() > 100, "{} readings", lines.len());

        let shown = self
            .js(
                "const r = document.getElementById('result');                  return {rows: r.dataset.rows, format: r.dataset.format, index: r.dataset.index,                    bands: [...document.querySelectorAll('#bands li')].map(li => li.dataset.band),                    bars: [...document.querySelectorAll('#chart svg rect.bar')].map(b =>                      [b.dataset.band, Number(b.dataset.count)]),                    ranges: [...new Set([...document.querySelectorAll('#preview tbody td:nth-child(13)')]                      .map(td => td.textContent))],                    first: [...document.querySelectorAll('#preview tbody tr:first-child td')]                      .map(td => td.textContent),                    download: document.getElementById('download').textContent};",
                vec![],
            )
            .await?;
        ensure!(
            shown["rows"].as_str() == Some(lines.len().to_string().as_str())
                && shown["format"] == "ndjson"
                && shown["index"] == "us-epa",
            "the result view: {shown}"
        );
        ensure!(
            shown["bands"] == json!(&epa[1..]),
            "band totals: {}",
            shown["bands"]
        );
        let bars = shown["bars"].as_array().cloned().unwrap_or_default();
        ensure!(bars.len() == 6, "{} bars", bars.len());
        for (i, bar) in bars.iter().enumerate() {
            let band = epa[i + 1];
            let want = lines.iter().filter(|l| l["Range"] == band).count();
            ensure!(
                bar[0] == band && bar[1].as_u64() == Some(want as u64),
                "bar {i}: {bar}, the API has {want} {band}"
            );
        }
        let ranges = shown["ranges"].as_array().cloned().unwrap_or_default();
        ensure!(
            !ranges.is_empty()
                && ranges
                    .iter()
                    .all(|r| r.as_str().is_some_and(|r| epa[1..].contains(&r))),
            "the table's Range column: {ranges:?}"
        );
        let first = &lines[0];
        ensure!(
            shown["first"][1] == first["timestamp"]
                && shown["first"][2].as_str() == Some(first["sensor_id"].to_string().as_str())
                && shown["first"][11].as_str() == Some(first["AQI"].to_string().as_str())
                && shown["first"][12] == first["Range"],
            "first preview row {} vs {first}",
            shown["first"]
        );
        ensure!(
            shown["download"] == "Download NDJSON",
            "{}",
            shown["download"]
        );
        self.download_and_compare(&api, "ndjson").await?;
        self.show_results().await?;
        self.screenshot("result-us-epa.png").await?;

        // Back: the DAQI's bands and bounds, and the CSV.
        self.choose_by_keyboard("index", Key::Up, "daqi").await?;
        ensure!(self.options("range").await? == daqi, "the DAQI bands again");
        ensure!(self.value("maxAqi").await? == "10", "the DAQI's top again");
        self.choose_by_keyboard("format", Key::Up, "csv").await?;
        self.js("window.scrollTo(0, 0)", vec![]).await?;
        self.assert_healthy().await
    }

    /// The field error shown for `field`, checked to be next to its input
    /// and tied to it for assistive technology.
    async fn field_error(&self, field: &str) -> anyhow::Result<String> {
        let v = self
            .js(
                "const input = document.getElementById(arguments[0]); \
                 const box = document.getElementById(arguments[0] + '-error'); \
                 const a = input.getBoundingClientRect(), b = box.getBoundingClientRect(); \
                 return {text: box.hidden ? null : box.innerText, \
                   invalid: input.getAttribute('aria-invalid'), \
                   describedBy: (input.getAttribute('aria-describedby') || '').split(' '), \
                   sameField: input.closest('.field') === box.closest('.field'), \
                   gap: b.top - a.bottom, focused: document.activeElement === input};",
                vec![json!(field)],
            )
            .await?;
        let text = v["text"]
            .as_str()
            .ok_or_else(|| anyhow!("no error shown for {field}"))?
            .to_owned();
        ensure!(v["invalid"] == "true", "{field} not aria-invalid: {v}");
        ensure!(
            v["describedBy"]
                .as_array()
                .is_some_and(|d| d.contains(&json!(format!("{field}-error")))),
            "{field} is not described by its error: {v}"
        );
        ensure!(
            v["sameField"] == true,
            "the error is not beside {field}: {v}"
        );
        let gap = v["gap"].as_f64().unwrap_or(f64::MAX);
        ensure!(
            (0.0..40.0).contains(&gap),
            "the error is {gap}px from {field}"
        );
        ensure!(v["focused"] == true, "the focus is not on {field}: {v}");
        Ok(text)
    }

    async fn field_errors(&self) -> anyhow::Result<()> {
        // Refused by the page: the end before the start.
        self.set_value("startDate", "2018-06-03T12:00:00").await?;
        self.set_value("endDate", "2018-06-03T11:00:00").await?;
        self.submit().await?;
        let text = self
            .wait("the end-date error", Duration::from_secs(5), || async {
                self.field_error("endDate").await.map(Some)
            })
            .await?;
        ensure!(
            text.contains("before the start"),
            "end-date error: {text:?}"
        );
        ensure!(
            self.state().await? == "done",
            "an invalid form must not be sent"
        );

        // Over this gateway's --max-span (2days): the page knows its limit
        // (from /api/meta; it used to hold 31 days of its own) and says
        // so without sending anything.
        self.set_value("startDate", "2018-05-30T00:00:00").await?;
        self.set_value("endDate", "2018-06-03T23:59:59").await?;
        self.submit().await?;
        let text = self
            .wait("the span error", Duration::from_secs(5), || async {
                self.field_error("endDate").await.map(Some)
            })
            .await?;
        ensure!(
            text.contains("at most 2 days is allowed"),
            "the page's span error names the gateway's limit: {text:?}"
        );
        ensure!(
            self.state().await? == "done",
            "a span over the gateway's limit must not be sent"
        );

        // A refusal only the server makes, beside its field: simulated (the
        // page now knows every limit this gateway applies), by answering
        // the next query with the gateway's own 400 for a span over 2 days.
        self.js(
            "const real = window.fetch; window.fetch = (url, init) => { \
               if (String(url).endsWith('/api/query')) { window.fetch = real; \
                 return Promise.resolve(new Response(JSON.stringify({error: 'invalid query', \
                   fields: [{field: 'endDate', message: 'the range spans 2 days 23h 59m 59s but at most 2 days is allowed'}]}), \
                   {status: 400, headers: {'Content-Type': 'application/json'}})); } \
               return real(url, init); };",
            vec![],
        )
        .await?;
        self.set_value("startDate", "2018-06-01T00:00:00").await?;
        self.set_value("endDate", "2018-06-02T23:59:59").await?;
        self.wait(
            "the error to clear on edit",
            Duration::from_secs(5),
            || async {
                let hidden = self
                    .js(
                        "return document.getElementById('endDate-error').hidden",
                        vec![],
                    )
                    .await?;
                Ok((hidden == true).then_some(()))
            },
        )
        .await?;
        self.submit().await?;
        self.wait_state("error", Duration::from_secs(15)).await?;
        let text = self.field_error("endDate").await?;
        ensure!(
            text.contains("at most 2 days"),
            "the server's end-date error: {text:?}"
        );
        ensure!(
            self.js("return window.fetch.name", vec![]).await? == "fetch",
            "the real fetch is back"
        );
        let summary = self.find("#form-error").await?.text().await?;
        ensure!(
            summary.contains("did not accept"),
            "form error summary: {summary:?}"
        );
        self.js("window.scrollTo(0, 0)", vec![]).await?;
        self.screenshot("field-error.png").await?;

        // A place the page refuses: a radius over 100 km, said beside the
        // point's inputs, the first of which takes the focus.
        self.set_value("endDate", "2018-06-01T23:59:59").await?;
        self.choose_by_keyboard("placeKind", Key::Down, "bbox")
            .await?;
        self.choose_by_keyboard("placeKind", Key::Down, "near")
            .await?;
        let shown = self
            .js(
                "return [document.getElementById('bbox-fields').hidden,                  document.getElementById('near-fields').hidden]",
                vec![],
            )
            .await?;
        ensure!(shown == json!([true, false]), "the point's inputs: {shown}");
        for (id, v) in [
            ("nearLat", "48.78"),
            ("nearLon", "9.18"),
            ("nearRadius", "150"),
        ] {
            self.set_value(id, v).await?;
        }
        self.submit().await?;
        let v = self
            .wait("the point's error", Duration::from_secs(5), || async {
                let v = self
                    .js(
                        "const box = document.getElementById('near-error'); \
                         const lat = document.getElementById('nearLat'); \
                         return box.hidden ? null : {text: box.innerText, \
                           invalid: lat.getAttribute('aria-invalid'), \
                           describedBy: lat.getAttribute('aria-describedby'), \
                           focused: document.activeElement === lat};",
                        vec![],
                    )
                    .await?;
                Ok((!v.is_null()).then_some(v))
            })
            .await?;
        ensure!(
            v["text"]
                .as_str()
                .is_some_and(|t| t.contains("at most 100 km"))
                && v["invalid"] == "true"
                && v["describedBy"] == "near-error"
                && v["focused"] == true,
            "the point's error: {v}"
        );
        self.choose_by_keyboard("placeKind", Key::Up, "bbox")
            .await?;
        self.choose_by_keyboard("placeKind", Key::Up, "").await?;
        self.assert_healthy().await
    }

    /// A done result opened from its link on a phone-sized window.
    async fn phone(&self, id: &str) -> anyhow::Result<()> {
        self.s.set_window_size(PHONE.0, PHONE.1).await?;
        self.open(&format!("/?result={id}")).await?;
        self.wait_state("done", Duration::from_secs(15)).await?;
        let v = self
            .js(
                "const wrap = document.querySelector('#results .table-wrap'); \
                 return {page: document.documentElement.scrollWidth, view: window.innerWidth, \
                   table: wrap.scrollWidth, wrap: wrap.clientWidth, \
                   submit: document.getElementById('submit').getBoundingClientRect().right, \
                   chartText: Math.min(...[...document.querySelectorAll('#chart text')] \
                     .map(t => t.getBoundingClientRect().height))};",
                vec![],
            )
            .await?;
        let n = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        ensure!(n("view") <= 420.0, "the window is not phone-sized: {v}");
        ensure!(n("page") <= n("view"), "the page scrolls sideways: {v}");
        ensure!(
            n("submit") <= n("view"),
            "the submit button is cut off: {v}"
        );
        ensure!(
            n("chartText") >= 9.0,
            "the chart's text is too small to read: {v}"
        );
        ensure!(
            n("table") > n("wrap"),
            "the preview should scroll inside its box: {v}"
        );
        self.show_results().await?;
        self.screenshot("result-phone.png").await?;
        self.js("window.scrollTo(0, 0)", vec![]).await?;
        self.screenshot("form-phone.png").await?;
        self.assert_healthy().await
    }
}

/// `YYYY-MM-DD` of the latest sample reading.
fn latest_day() -> String {
    let last = support::sample_readings()
        .iter()
        .map(|r| r.timestamp)
        .max()
        .expect("the sample has readings");
    last.to_string()[..10].to_owned()
}

/// The date `days` days before `day` (`YYYY-MM-DD`), as `YYYY-MM-DD`
/// (days from the civil date and back, proleptic Gregorian: H. Hinnant's
/// `days_from_civil`).
fn chrono_like_days_before(day: &str, days: i64) -> String {
    let parts: Vec<i64> = day.split('-').filter_map(|p| p.parse().ok()).collect();
    let [y, m, d] = parts[..] else {
        panic!("not a day: {day}")
    };
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let z = era * 146_097 + doe - days;
    // And back.
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[test]
fn days_before_a_day() {
    assert_eq!(chrono_like_days_before("2018-06-03", 0), "2018-06-03");
    assert_eq!(chrono_like_days_before("2018-06-03", 39), "2018-04-25");
    assert_eq!(chrono_like_days_before("2024-03-01", 1), "2024-02-29");
    assert_eq!(chrono_like_days_before("2025-01-01", 1), "2024-12-31");
}

/// The axe-core release the browser test runs, as scripts/test.sh fetches it.
const AXE_VERSION: &str = "4.14.1";

/// axe-core's script: `AIRQ_AXE`, else where scripts/test.sh unpacks it
/// (`target/axe-core-VERSION/package/axe.min.js`).
fn axe_source() -> anyhow::Result<String> {
    let path = std::env::var_os("AIRQ_AXE").map_or_else(
        || {
            target_dir()
                .join(format!("axe-core-{AXE_VERSION}"))
                .join("package/axe.min.js")
        },
        PathBuf::from,
    );
    std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading axe-core from {}: run scripts/test.sh (it fetches axe-core {AXE_VERSION} \
             from the npm registry), or set AIRQ_AXE to an axe.min.js",
            path.display()
        )
    })
}

/// Where a map looks, as map.js reports it after each frame: the centre
/// in the world square [0, 1]², the scale (CSS pixels per world) and the
/// canvas's size in CSS pixels.
#[derive(Debug, Clone, Copy)]
struct MapView {
    cx: f64,
    cy: f64,
    s: f64,
    w: f64,
    h: f64,
}

impl MapView {
    /// `(lon, lat)` in CSS pixels from the canvas's top left.
    fn screen(&self, lon: f64, lat: f64) -> (f64, f64) {
        let (x, y) = mercator(lon, lat);
        (
            (x - self.cx) * self.s + self.w / 2.0,
            (y - self.cy) * self.s + self.h / 2.0,
        )
    }

    fn shows(&self, (x, y): (f64, f64)) -> bool {
        (0.0..=self.w).contains(&x) && (0.0..=self.h).contains(&y)
    }

    /// The longitude and latitude at CSS pixel `(px, py)`.
    fn lon_lat(&self, px: f64, py: f64) -> (f64, f64) {
        let x = (px - self.w / 2.0) / self.s + self.cx;
        let y = (py - self.h / 2.0) / self.s + self.cy;
        let lat = (2.0 * (std::f64::consts::PI * (1.0 - 2.0 * y)).exp().atan()
            - std::f64::consts::FRAC_PI_2)
            .to_degrees();
        (x * 360.0 - 180.0, lat)
    }
}

/// Web Mercator onto the world square [0, 1]² (x east, y south), from the
/// projection's definition (latitudes clipped at ±85.0511°, where the
/// world is square), written here apart from map.js.
fn mercator(lon: f64, lat: f64) -> (f64, f64) {
    use std::f64::consts::{FRAC_PI_4, PI};
    let phi = lat.clamp(-85.0511, 85.0511).to_radians();
    (
        (lon + 180.0) / 360.0,
        (1.0 - (FRAC_PI_4 + phi / 2.0).tan().ln() / PI) / 2.0,
    )
}

#[test]
fn mercator_corners_and_centre() {
    let (x, y) = mercator(0.0, 0.0);
    assert!((x - 0.5).abs() < 1e-12 && (y - 0.5).abs() < 1e-12);
    let (x, y) = mercator(-180.0, 85.0511);
    assert!(x.abs() < 1e-12 && y.abs() < 1e-5, "{y}");
    let view = MapView {
        cx: 0.5,
        cy: 0.5,
        s: 1000.0,
        w: 800.0,
        h: 400.0,
    };
    let (lon, lat) = view.lon_lat(400.0 + 250.0, 200.0);
    assert!((lon - 90.0).abs() < 1e-9 && lat.abs() < 1e-9);
    let (px, py) = view.screen(lon, 45.0);
    let (lon2, lat2) = view.lon_lat(px, py);
    assert!((lon2 - 90.0).abs() < 1e-9 && (lat2 - 45.0).abs() < 1e-9);
}
