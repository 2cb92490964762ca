//! The page at the size of its answers, measured: not a check of
//! behaviour but the figures `loadtest/page_at_size.sh` records in
//! BENCHMARKS.md. The script starts a gateway on a large store, makes a
//! result, and runs this (it is `#[ignore]`d, so `cargo test` skips it)
//! with `AIRQ_PAGE_URL` set to the result's link. In headless Chromium it
//! records, and prints as one JSON line:
//!
//! - every main-thread long task (a `PerformanceObserver` of `longtask`,
//!   installed before the page's own scripts) from the page's start to
//!   the result drawn, at full speed and at 4× CPU throttling, and the JS
//!   heap then;
//! - the map's frames while it is dragged (pointer events sent in the
//!   page, one per frame): the time between frames and the time its
//!   `draw()` took (`data-draw-ms`), at the zoom the result is fitted to
//!   and again at zoom ≥ 6, where the 1:50 m outlines are drawn.

use super::webdriver::{cdp, Driver, Tools};
use anyhow::{anyhow, Context};
use fantoccini::Client as Browser;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long the result may take to load and draw.
const LOAD_LIMIT: Duration = Duration::from_secs(300);
/// Frames of each drag.
const DRAG_FRAMES: u32 = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: loadtest/page_at_size.sh runs it against a large result"]
async fn page_at_size() {
    let url = std::env::var("AIRQ_PAGE_URL").expect("AIRQ_PAGE_URL: the result's link");
    let tools = Tools::find().unwrap_or_else(|e| panic!("{e}"));
    let profile = tempfile::tempdir().expect("temp profile dir");
    let downloads = tempfile::tempdir().expect("temp download dir");
    let driver = Driver::start(&tools.chromedriver)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let session = driver
        .session(
            &tools.chromium,
            profile.path(),
            downloads.path(),
            (1280, 1700),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let outcome = measure(&session, &url).await;
    let _ = session.close().await;
    drop(driver);
    match outcome {
        Ok(figures) => println!("{figures}"),
        Err(e) => panic!("{e:#}"),
    }
}

async fn measure(s: &Browser, url: &str) -> anyhow::Result<Value> {
    cdp(
        s,
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": "window.__airqLongTasks = []; \
            new PerformanceObserver((list) => { \
              for (const e of list.getEntries()) __airqLongTasks.push([e.startTime, e.duration]); \
            }).observe({ type: 'longtask', buffered: true });"}),
    )
    .await?;
    let mut figures = json!({});
    for rate in [1, 4] {
        cdp(s, "Emulation.setCPUThrottlingRate", json!({ "rate": rate })).await?;
        figures[format!("load_cpu{rate}x")] = load(s, url).await?;
    }
    cdp(s, "Emulation.setCPUThrottlingRate", json!({ "rate": 1 })).await?;
    figures["pan_fitted"] = drag(s).await?;
    // Zoom in at the centre until the detailed outlines are drawn.
    s.execute(
        "const c = document.querySelector('#map canvas'); \
         for (let i = 0; i < 6; i += 1) c.dispatchEvent(new KeyboardEvent('keydown', { key: '+', bubbles: true }));",
        vec![],
    )
    .await?;
    // A page that does not say when they are in (an older build) gets
    // a few seconds for them.
    let asked = Instant::now();
    wait(s, "the 1:50 m outlines", || async {
        let v = s
            .execute(
                "return document.getElementById('map').dataset.detailState || '';",
                vec![],
            )
            .await?;
        Ok((v == "loaded" || asked.elapsed() > Duration::from_secs(5)).then_some(()))
    })
    .await?;
    figures["pan_zoomed"] = drag(s).await?;
    Ok(figures)
}

/// Opens `url` and waits until its result is drawn: how long that took,
/// the long tasks on the way and the heap.
async fn load(s: &Browser, url: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    s.goto(url).await?;
    let rows = wait(s, "the result drawn", || async {
        let v = s
            .execute(
                "const st = document.getElementById('status').dataset.state; \
                 if (st === 'error' || st === 'failed') throw new Error(document.getElementById('status-text').textContent); \
                 const m = document.getElementById('map').dataset; \
                 return st === 'done' && Number(m.drawn) > 0 ? document.getElementById('result').dataset.rows : null;",
                vec![],
            )
            .await?;
        Ok(v.as_str().map(str::to_owned))
    })
    .await?;
    let elapsed = started.elapsed();
    // One more frame, so that the drawing's own task is in the record.
    s.execute_async(
        "const done = arguments[arguments.length - 1]; \
         requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
        vec![],
    )
    .await?;
    let v = s
        .execute(
            "return { tasks: window.__airqLongTasks, \
                      heap: performance.memory ? performance.memory.usedJSHeapSize : null };",
            vec![],
        )
        .await?;
    let tasks: Vec<f64> = v["tasks"]
        .as_array()
        .map(|t| t.iter().filter_map(|e| e[1].as_f64()).collect())
        .unwrap_or_default();
    let longest = tasks.iter().copied().fold(0.0, f64::max);
    Ok(json!({
        "rows": rows,
        "seconds_to_drawn": elapsed.as_secs_f64(),
        "long_tasks": tasks.len(),
        "longest_task_ms": longest,
        "tasks_over_200ms": tasks.iter().filter(|&&d| d > 200.0).count(),
        "total_blocking_ms": tasks.iter().map(|d| (d - 50.0).max(0.0)).sum::<f64>(),
        "heap_mib": v["heap"].as_f64().map(|b| b / 1_048_576.0),
    }))
}

/// Drags the result's map for [`DRAG_FRAMES`] frames, one pointer move per
/// frame: the median and 95th percentile of the time between frames and
/// of `draw()`'s own time, and the zoom.
async fn drag(s: &Browser) -> anyhow::Result<Value> {
    let v = s
        .execute_async(
            "const [frames] = arguments; const done = arguments[arguments.length - 1]; \
             const root = document.getElementById('map'); const c = root.querySelector('canvas'); \
             const r = c.getBoundingClientRect(); \
             let x = r.left + r.width / 2; const y = r.top + r.height / 2; \
             const ev = (type) => c.dispatchEvent(new PointerEvent(type, { clientX: x, clientY: y, \
               pointerId: 1, isPrimary: true, pointerType: 'mouse', buttons: type === 'pointerup' ? 0 : 1, bubbles: true })); \
             ev('pointerdown'); \
             const gaps = []; const draws = []; let last = null; let n = 0; let dir = 1; \
             const tick = (t) => { \
               if (last !== null) { gaps.push(t - last); draws.push(Number(root.dataset.drawMs)); } \
               last = t; n += 1; \
               if (n > frames) { ev('pointerup'); done({ gaps, draws, view: root.dataset.view, marks: root.dataset.marks, \
                 drawn: root.dataset.drawn, outlinePoints: root.dataset.outlinePoints }); return; } \
               x += 6 * dir; if (n % 40 === 0) dir = -dir; ev('pointermove'); requestAnimationFrame(tick); }; \
             requestAnimationFrame(tick);",
            vec![json!(DRAG_FRAMES)],
        )
        .await?;
    // `draw()`'s own time is reported by this build's map only (null from
    // an older one).
    let stats = |key: &str| -> anyhow::Result<Value> {
        let mut xs: Vec<f64> = v[key]
            .as_array()
            .ok_or_else(|| anyhow!("no {key} in {v}"))?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        if xs.is_empty() {
            return Ok(Value::Null);
        }
        xs.sort_by(f64::total_cmp);
        let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
        Ok(json!({ "median_ms": at(0.5), "p95_ms": at(0.95), "max_ms": at(1.0) }))
    };
    let view: Value = serde_json::from_str(v["view"].as_str().unwrap_or("{}")).unwrap_or_default();
    let zoom = view["s"].as_f64().unwrap_or(0.0)
        / view["w"]
            .as_f64()
            .unwrap_or(1.0)
            .min(view["h"].as_f64().unwrap_or(1.0) * 1.6);
    Ok(json!({
        "frame": stats("gaps")?,
        "draw": stats("draws")?,
        "zoom": zoom,
        "marks": v["marks"],
        "sensors_drawn": v["drawn"],
        "outline_points": v["outlinePoints"],
    }))
}

/// Calls `probe` every 100 ms until it gives `Some`, for at most
/// [`LOAD_LIMIT`].
async fn wait<T, F, Fut>(s: &Browser, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, fantoccini::error::CmdError>>,
{
    let start = Instant::now();
    while start.elapsed() < LOAD_LIMIT {
        if let Some(v) = probe()
            .await
            .with_context(|| format!("waiting for {what}"))?
        {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = s
        .execute(
            "return document.getElementById('status-text').textContent",
            vec![],
        )
        .await
        .unwrap_or_default();
    Err(anyhow!(
        "{what}: not within {LOAD_LIMIT:?} (page status: {status})"
    ))
}
