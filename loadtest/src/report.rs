//! Output: the JMeter-style aggregate table, the JSON summary, the
//! per-request CSV and Markdown tables for the benchmark report.

use crate::stats::{Latency, Record, Summary};
use crate::threshold::Check;
use anyhow::Context;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn bytes(n: f64) -> String {
    if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / 1024.0 / 1024.0)
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}

const HEAD: [&str; 15] = [
    "label", "samples", "errors", "error %", "mean", "median", "90%", "95%", "99%", "99.9%", "min",
    "max", "req/s", "KB/s", "queued %",
];

/// One aggregate row: `metric` is what the latency columns show.
fn row(s: &Summary, label: &str, lat: &Latency, samples: u64) -> Vec<String> {
    vec![
        label.to_owned(),
        samples.to_string(),
        s.errors.to_string(),
        format!("{:.2}%", s.error_pct),
        ms(lat.mean),
        ms(lat.p50),
        ms(lat.p90),
        ms(lat.p95),
        ms(lat.p99),
        ms(lat.p999),
        ms(lat.min),
        ms(lat.max),
        format!("{:.1}", s.throughput),
        format!("{:.1}", s.kb_per_s),
        format!("{:.1}", s.queued_pct),
    ]
}

fn table(rows: &[Vec<String>]) -> String {
    let mut widths = vec![0; HEAD.len()];
    for r in std::iter::once(HEAD.map(str::to_owned).to_vec()).chain(rows.iter().cloned()) {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if i == 0 {
                let _ = write!(out, "{c}{}", " ".repeat(pad));
            } else {
                let _ = write!(out, "  {}{c}", " ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(&HEAD.map(str::to_owned), &mut out);
    for r in rows {
        line(r, &mut out);
    }
    out
}

/// The aggregate table of one or more runs (one row each, time to result),
/// then the detail of each run.
pub fn text(summaries: &[Summary], checks: &[Check]) -> String {
    let mut out = String::new();
    if summaries.len() > 1 {
        out.push_str("time to result (ms), one row per step:\n");
        let rows: Vec<_> = summaries
            .iter()
            .map(|s| row(s, &s.label, &s.time_to_result, s.planned))
            .collect();
        out.push_str(&table(&rows));
        out.push('\n');
    }
    for s in summaries {
        let _ = writeln!(out, "── {} — {}", s.label, s.description);
        let mut rows = vec![row(s, "time to result", &s.time_to_result, s.planned)];
        rows.push(row(s, "submit", &s.submit, s.submit.count));
        if s.poll.count > 0 {
            rows.push(row(s, "poll", &s.poll, s.poll.count));
        }
        out.push_str(&table(&rows));
        out.push_str(&details(s));
        out.push('\n');
    }
    if !checks.is_empty() {
        out.push_str("thresholds:\n");
        for c in checks {
            let _ = writeln!(
                out,
                "  {} {:<24} {:<14} actual {}",
                if c.pass { "PASS" } else { "FAIL" },
                c.threshold,
                c.step,
                trim(c.actual)
            );
        }
    }
    out
}

fn trim(x: f64) -> String {
    if x.is_nan() {
        "n/a".into()
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

/// What to do about `429`s: a load test from one address spends one
/// client's budget (the gateway's `anonymous` tier: 30 submits a minute).
fn rate_limit_hint(errors: &std::collections::BTreeMap<String, u64>) -> Option<String> {
    let refused = errors.get("http_429").copied()?;
    Some(format!(
        "note: {refused} requests were refused by the gateway's rate limit (429): every \
         request of a load test comes from one client, whose budget is its tier's (without \
         a key, anonymous: 30 submits a minute). Give the run a key of a larger tier: \
         export AIRQ_API_KEY=$(airq-deploy keys create --name loadtest --tier unlimited) \
         (with the gateway's --db), then run again"
    ))
}

/// The lines under a run's table.
fn details(s: &Summary) -> String {
    let mut out = String::new();
    let errors = if s.errors_by_kind.is_empty() {
        "none".to_owned()
    } else {
        s.errors_by_kind
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "  accounted: {} planned = {} ok + {} errors ({errors})",
        s.planned, s.ok, s.errors
    );
    if let Some(hint) = rate_limit_hint(&s.errors_by_kind) {
        let _ = writeln!(out, "  {hint}");
    }
    if s.direct + s.queued > 0 {
        let _ = writeln!(
            out,
            "  answers: {} direct, {} queued ({:.1} %); polls/query {:.2} (max {}), {:.0} B/query besides the answer; result size mean {}, max {}",
            s.direct,
            s.queued,
            s.queued_pct,
            s.polls_per_query,
            s.max_polls,
            s.follow_bytes_per_query,
            bytes(s.mean_result_bytes),
            bytes(s.max_result_bytes as f64)
        );
    }
    if let Some(max) = s.stopped_at_max_requests {
        let _ = writeln!(
            out,
            "  STOPPED EARLY: the run reached --max-requests ({max}) after {:.2} s, before its \
             duration; raise --max-requests or give -n",
            s.elapsed_s
        );
    }
    if s.load == "open" {
        let _ = writeln!(
            out,
            "  schedule: {} of {} started late (> {} ms after the intended time); \
             start delay p50 {:.3} ms, p99 {:.3} ms, max {} ms",
            s.late,
            s.started,
            trim(s.late_allowance_ms),
            s.start_delay.p50,
            s.start_delay.p99,
            ms(s.start_delay.max)
        );
    }
    let _ = writeln!(
        out,
        "  wall {:.2} s, {:.1} completed/s, {:.1} results/s; generator CPU {:.2} s = {:.0} % of one core",
        s.elapsed_s,
        s.throughput,
        s.ok_per_s,
        s.generator_cpu.seconds,
        s.generator_cpu.cores * 100.0
    );
    if let Some(server) = &s.server_cpu {
        let parts: Vec<String> = server
            .iter()
            .filter(|(_, c)| c.seconds > 0.0)
            .map(|(n, c)| format!("{n} {:.0} %", c.cores * 100.0))
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(out, "  server CPU (% of one core): {}", parts.join(", "));
        }
    }
    out
}

/// The `--json` document.
#[derive(Serialize)]
pub struct JsonReport<'a> {
    pub tool: &'static str,
    pub version: &'static str,
    pub target: &'a str,
    pub work: &'a str,
    /// Whether every request asked for gzipped answers (`--gzip`).
    pub gzip: bool,
    pub steps: &'a [Summary],
    pub thresholds: &'a [Check],
    pub passed: bool,
}

pub fn write_json(path: &Path, report: &JsonReport<'_>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report).context("serializing the summary")?;
    if path.as_os_str() == "-" {
        println!("{text}");
        return Ok(());
    }
    create_parent(path)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

pub fn create_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// The per-request CSV: one line per arrival of every step.
pub fn write_csv<'a>(
    path: &Path,
    steps: impl IntoIterator<Item = (&'a str, &'a [Record])>,
) -> anyhow::Result<()> {
    create_parent(path)?;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let io = |e| anyhow::Error::new(e).context(format!("writing {}", path.display()));
    writeln!(
        w,
        "step,index,intended_ms,start_delay_ms,submit_ms,total_ms,status,answer,polls,bytes,outcome"
    )
    .map_err(io)?;
    for (step, records) in steps {
        for r in records {
            writeln!(
                w,
                "{},{},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{}",
                csv_field(step),
                r.index,
                r.intended_us as f64 / 1000.0,
                r.start_delay_us as f64 / 1000.0,
                r.submit_us as f64 / 1000.0,
                r.total_us as f64 / 1000.0,
                r.status,
                r.answer.as_str(),
                r.polls,
                r.bytes,
                r.error.map_or_else(|| "ok".to_owned(), |e| e.name()),
            )
            .map_err(io)?;
        }
    }
    w.flush().map_err(io)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A Markdown table of steps: the time to result and the counts.
pub fn markdown(summaries: &[Summary]) -> String {
    let mut out = String::from(
        "| step | requests | ok | errors | direct / queued | mean | p50 | p90 | p95 | p99 | p99.9 | max | results/s | late | gen. CPU |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for s in summaries {
        let errors = if s.errors == 0 {
            "0".to_owned()
        } else {
            format!(
                "{} ({})",
                s.errors,
                s.errors_by_kind
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let l = &s.time_to_result;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {:.0} % |",
            s.label,
            s.planned,
            s.ok,
            errors,
            s.direct,
            s.queued,
            ms(l.mean),
            ms(l.p50),
            ms(l.p90),
            ms(l.p95),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            s.ok_per_s,
            if s.load == "open" {
                s.late.to_string()
            } else {
                "–".into()
            },
            s.generator_cpu.cores * 100.0
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Answer, ErrorKind};

    #[test]
    fn refusals_by_the_rate_limit_say_how_to_avoid_them() {
        let mut errors = std::collections::BTreeMap::new();
        assert_eq!(rate_limit_hint(&errors), None);
        errors.insert("http_503".to_owned(), 3);
        assert_eq!(rate_limit_hint(&errors), None);
        errors.insert("http_429".to_owned(), 82);
        let hint = rate_limit_hint(&errors).expect("a hint");
        assert!(
            hint.contains("82 requests") && hint.contains("--tier unlimited"),
            "{hint}"
        );
    }

    #[test]
    fn csv_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r/requests.csv");
        let recs = [
            Record {
                index: 0,
                intended_us: 1500,
                start_delay_us: 0,
                submit_us: 1000,
                total_us: 2000,
                status: 200,
                answer: Answer::Direct,
                polls: 0,
                follow_bytes: 0,
                bytes: 42,
                error: None,
            },
            Record {
                index: 1,
                intended_us: 0,
                start_delay_us: 0,
                submit_us: 0,
                total_us: 0,
                status: 503,
                answer: Answer::None,
                polls: 0,
                follow_bytes: 0,
                bytes: 0,
                error: Some(ErrorKind::Status(503)),
            },
        ];
        write_csv(&p, [("10/10", &recs[..])]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[1],
            "10/10,0,1.500,0.000,1.000,2.000,200,direct,0,42,ok"
        );
        assert!(lines[2].ends_with(",503,none,0,0,http_503"));
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
