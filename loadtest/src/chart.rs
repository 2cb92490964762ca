//! SVG charts (plotters, SVG backend only, so no font or image libraries):
//! latency percentiles against load across steps, errors against load, and
//! latency over time within one run.

use crate::report::create_parent;
use crate::stats::{Record, Summary};
use anyhow::{anyhow, Context};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;

const SIZE: (u32, u32) = (960, 540);
const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(120, 120, 120),
];

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// One named line.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// Draws lines over a categorical x axis (one tick per step, labelled
/// with `labels`) or a numeric one (`labels` empty), y logarithmic if
/// `log_y`.
fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    labels: &[String],
    series: &[Series],
    log_y: bool,
) -> anyhow::Result<()> {
    create_parent(path)?;
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in all {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if !labels.is_empty() {
        x0 = -0.3;
        x1 = labels.len() as f64 - 0.7;
    } else if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72);
    if log_y {
        let lo = (y0.max(0.01) / 1.5).max(0.01);
        let hi = (y1.max(lo * 10.0)) * 1.5;
        let mut chart = builder
            .build_cartesian_2d(x0..x1, (lo..hi).log_scale())
            .map_err(err)?;
        draw(&mut chart, x_desc, y_desc, labels, series, Some(lo))?;
    } else {
        let hi = if y1 <= 0.0 { 1.0 } else { y1 * 1.15 };
        let mut chart = builder.build_cartesian_2d(x0..x1, 0f64..hi).map_err(err)?;
        draw(&mut chart, x_desc, y_desc, labels, series, None)?;
    }
    root.present()
        .map_err(err)
        .with_context(|| format!("writing {}", path.display()))
}

/// Draws the mesh (x labelled as [`lines`] says), the lines and their
/// legend on `chart`, whatever its y axis; with a `floor`, y values below
/// it are raised to it (a log axis cannot show them).
fn draw<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    x_desc: &str,
    y_desc: &str,
    labels: &[String],
    series: &[Series],
    floor: Option<f64>,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let x_fmt = |x: &f64| -> String {
        if labels.is_empty() {
            if x.fract().abs() < 1e-9 {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        } else {
            let i = x.round();
            if (x - i).abs() < 0.05 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        }
    };
    let n_labels = if labels.is_empty() { 10 } else { labels.len() };
    chart
        .configure_mesh()
        .x_labels(n_labels)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|y| format_y(*y))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<_> = s
            .points
            .iter()
            .map(|&(x, y)| (x, floor.map_or(y, |lo| y.max(lo))))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)).point_size(3))
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

fn format_y(y: f64) -> String {
    if y >= 100.0 || y == 0.0 {
        format!("{y:.0}")
    } else if y >= 1.0 {
        format!("{y:.1}")
    } else {
        format!("{y:.2}")
    }
}

/// Time-to-result percentiles (ms, log scale) for each step.
pub fn percentiles_vs_load(path: &Path, title: &str, steps: &[Summary]) -> anyhow::Result<()> {
    let labels: Vec<String> = steps.iter().map(|s| s.label.clone()).collect();
    let pick = |name: &str, f: fn(&Summary) -> f64| Series {
        name: name.to_owned(),
        points: steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.time_to_result.count > 0)
            .map(|(i, s)| (i as f64, f(s)))
            .collect(),
    };
    let series = [
        pick("p50", |s| s.time_to_result.p50),
        pick("p90", |s| s.time_to_result.p90),
        pick("p99", |s| s.time_to_result.p99),
        pick("p99.9", |s| s.time_to_result.p999),
        pick("max", |s| s.time_to_result.max),
    ];
    lines(
        path,
        title,
        "load step",
        "time to result (ms, log scale)",
        &labels,
        &series,
        true,
    )
}

/// Errors (and late starts, for open loops) for each step.
pub fn errors_vs_load(path: &Path, title: &str, steps: &[Summary]) -> anyhow::Result<()> {
    let labels: Vec<String> = steps.iter().map(|s| s.label.clone()).collect();
    let mut series = vec![Series {
        name: "errors".into(),
        points: steps
            .iter()
            .enumerate()
            .map(|(i, s)| (i as f64, s.errors as f64))
            .collect(),
    }];
    if steps.iter().any(|s| s.load == "open") {
        series.push(Series {
            name: "late starts".into(),
            points: steps
                .iter()
                .enumerate()
                .map(|(i, s)| (i as f64, s.late as f64))
                .collect(),
        });
    }
    series.push(Series {
        name: "queued answers".into(),
        points: steps
            .iter()
            .enumerate()
            .map(|(i, s)| (i as f64, s.queued as f64))
            .collect(),
    });
    lines(path, title, "load step", "count", &labels, &series, false)
}

/// Per-second p50, p99 and max of the time to result (by intended start)
/// and the results per second, over one run.
pub fn latency_over_time(path: &Path, title: &str, records: &[Record]) -> anyhow::Result<()> {
    let Some(last) = records.iter().map(|r| r.intended_us).max() else {
        return Err(anyhow!("no requests to chart"));
    };
    let buckets = (last / 1_000_000 + 1) as usize;
    let mut per: Vec<Vec<u64>> = vec![Vec::new(); buckets];
    let mut errors = vec![0u64; buckets];
    for r in records {
        let b = (r.intended_us / 1_000_000) as usize;
        if r.error.is_none() {
            per[b].push(r.total_us);
        } else {
            errors[b] += 1;
        }
    }
    let q = |v: &mut Vec<u64>, q: f64| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        Some(v[i] as f64 / 1000.0)
    };
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    let mut max = Vec::new();
    for (b, v) in per.iter_mut().enumerate() {
        let x = b as f64 + 0.5;
        if let (Some(a), Some(c), Some(m)) = (q(v, 0.5), q(v, 0.99), q(v, 1.0)) {
            p50.push((x, a));
            p99.push((x, c));
            max.push((x, m));
        }
    }
    let mut series = vec![
        Series {
            name: "p50".into(),
            points: p50,
        },
        Series {
            name: "p99".into(),
            points: p99,
        },
        Series {
            name: "max".into(),
            points: max,
        },
    ];
    if errors.iter().any(|e| *e > 0) {
        series.push(Series {
            name: "errors in that second (count)".into(),
            points: errors
                .iter()
                .enumerate()
                .filter(|(_, e)| **e > 0)
                .map(|(b, e)| (b as f64 + 0.5, *e as f64))
                .collect(),
        });
    }
    lines(
        path,
        title,
        "seconds since start (by intended start)",
        "time to result (ms, log scale)",
        &[],
        &series,
        true,
    )
}

/// Offered rate against p50/p99 time to result and achieved results/s,
/// for an open-loop sweep.
pub fn sweep(path: &Path, title: &str, steps: &[Summary]) -> anyhow::Result<()> {
    let pts = |f: fn(&Summary) -> f64| -> Vec<(f64, f64)> {
        steps
            .iter()
            .filter(|s| s.time_to_result.count > 0)
            .filter_map(|s| s.rate.map(|r| (r, f(s))))
            .collect()
    };
    let series = [
        Series {
            name: "p50 (ms)".into(),
            points: pts(|s| s.time_to_result.p50),
        },
        Series {
            name: "p99 (ms)".into(),
            points: pts(|s| s.time_to_result.p99),
        },
        Series {
            name: "max (ms)".into(),
            points: pts(|s| s.time_to_result.max),
        },
    ];
    lines(
        path,
        title,
        "offered rate (arrivals/s)",
        "time to result (ms, log scale)",
        &[],
        &series,
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Answer, Cpu, Latency};

    fn step(label: &str, p50: f64) -> Summary {
        Summary {
            label: label.into(),
            load: "open".into(),
            description: String::new(),
            rate: Some(p50 * 10.0),
            concurrency: None,
            planned: 10,
            started: 10,
            ok: 9,
            errors: 1,
            errors_by_kind: Default::default(),
            error_pct: 10.0,
            late: 0,
            late_allowance_ms: 10.0,
            stopped_at_max_requests: None,
            elapsed_s: 1.0,
            throughput: 10.0,
            ok_per_s: 9.0,
            direct: 9,
            queued: 0,
            queued_pct: 0.0,
            polls: 0,
            polls_per_query: 0.0,
            follow_bytes_per_query: 0.0,
            max_polls: 0,
            result_bytes: 0,
            mean_result_bytes: 0.0,
            max_result_bytes: 0,
            kb_per_s: 0.0,
            time_to_result: Latency {
                count: 9,
                min: 1.0,
                mean: p50,
                p50,
                p90: p50 * 2.0,
                p95: p50 * 3.0,
                p99: p50 * 4.0,
                p999: p50 * 5.0,
                max: p50 * 6.0,
            },
            submit: Latency::default(),
            poll: Latency::default(),
            start_delay: Latency::default(),
            generator_cpu: Cpu::default(),
            server_cpu: None,
        }
    }

    #[test]
    fn charts_are_svg_files() {
        let dir = tempfile::tempdir().unwrap();
        let steps = [
            step("10/10", 1.0),
            step("100/50", 5.0),
            step("2500/500", 40.0),
        ];
        let a = dir.path().join("p.svg");
        percentiles_vs_load(&a, "percentiles", &steps).unwrap();
        let b = dir.path().join("e.svg");
        errors_vs_load(&b, "errors", &steps).unwrap();
        let c = dir.path().join("s.svg");
        sweep(&c, "sweep", &steps).unwrap();
        let recs: Vec<Record> = (0..300u64)
            .map(|i| Record {
                index: i,
                intended_us: i * 10_000,
                start_delay_us: 0,
                submit_us: 0,
                total_us: 1000 + i * 10,
                status: 200,
                answer: Answer::Direct,
                polls: 0,
                follow_bytes: 0,
                bytes: 0,
                error: None,
            })
            .collect();
        let d = dir.path().join("t.svg");
        latency_over_time(&d, "over time", &recs).unwrap();
        for p in [a, b, c, d] {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.contains("<svg"), "{}", p.display());
            assert!(text.contains("</svg>"), "{}", p.display());
        }
        assert!(std::fs::read_to_string(dir.path().join("p.svg"))
            .unwrap()
            .contains("2500/500"));
        assert!(latency_over_time(&dir.path().join("x.svg"), "none", &[]).is_err());
    }
}
