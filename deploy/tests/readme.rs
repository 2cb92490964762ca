//! Everything README.md shows runs as written. The test reads every ```sh
//! block of the README, finds each command in [`PLAN`] (which says how it
//! runs, and what the README promises of its output), and runs the blocks
//! in order with bash in a scratch directory laid out like a checkout
//! (`target/release` holds the binaries under test, `data/sample` the
//! shipped sample), against the local stack `airq-deploy up` starts there.
//! Output the README shows (`#   …` lines after a command) is compared,
//! `…` standing for what differs per run (ids). A README command missing
//! from the plan, or a plan entry no longer in the README, fails the test:
//! a new example is placed before it lands.
//!
//! Rewritten before running, and only these: the gateway's
//! `127.0.0.1:8080` and the worker's `127.0.0.1:9101` become free loopback
//! ports (a developer's own stack may hold the real ones), `/tmp/` the
//! scratch directory's `tmp/`, and the example result id `3f2c…` the id
//! of the last answer in the block.

mod support;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{bin, LocalStack};

/// How the test runs one README command.
enum How {
    /// To the end; it must succeed, and print every one of `expect`.
    Run(&'static [&'static str]),
    /// A server or a scheduler that runs until stopped: started in the
    /// background; the block goes on once it has printed `ready` (at most
    /// 60 s) and it is stopped when the block ends.
    Serve { ready: &'static str },
    /// Not run, for the reason given.
    Skip(&'static str),
}

use How::*;

const BUILDS: &str = "builds the release binaries (minutes); what it then runs, \
                      `airq-deploy up`, is the stack this test starts";

/// Every README command, as the README writes it (continuation lines
/// joined with a space).
const PLAN: &[(&str, How)] = &[
    ("bash scripts/up.sh", Skip(BUILDS)),
    (
        "bash scripts/test.sh",
        Skip("the test suite itself (CI runs it)"),
    ),
    (
        "target/release/airq-master ingest --source data/sample/201806032249_data.dust.min.json",
        // "It reads 4,945 entries and stores 4,928 readings (17 are
        // rejected: sensor saturated)"; then the repeated run says so.
        Run(&[
            "entries read:  4945",
            "stored:        4928 (4928 new, 0 already stored, 0 replaced)",
            "sensor saturated:        17",
        ]),
    ),
    (
        "target/release/airq-master schedule",
        Skip("fetches the live feed from the internet at 00:00 UTC"),
    ),
    (
        "target/release/airq-master schedule --run-now --cron '0 */30 * * * *' --source data/sample/201806032249_data.dust.min.json",
        Serve {
            ready: "ingestion finished",
        },
    ),
    (
        "target/release/airq-master backfill --from 2025-10-01 --to 2025-10-31",
        Skip("downloads a month of the archive from the internet"),
    ),
    (
        "target/release/airq-master backfill --from 2025-10-15 --types sds011,sps30 --resolution raw",
        Skip("downloads from the archive on the internet"),
    ),
    (
        "target/release/airq-master backfill --source /srv/archive-mirror --from 2024-01-01 --to 2024-12-31",
        Skip("a mirror the reader has (`/srv/archive-mirror` stands for it); master/tests/backfill.rs runs backfill on a local mirror"),
    ),
    (
        "target/release/airq-master synth --days 7 --sensors 1000 --out /tmp/feed.json",
        Run(&["readings:"]),
    ),
    (
        "target/release/airq-master ingest --source /tmp/feed.json",
        Run(&["rejected:      0"]),
    ),
    (
        "target/release/airq-master synth --into-store --db data/big.db",
        Run(&["into:          embedded store at data/big.db"]),
    ),
    (
        "target/release/airq-master bench-ingest",
        Skip("a benchmark: three runs of a million readings (BENCHMARKS.md)"),
    ),
    (
        "target/release/airq-master bench-ingest --source data/sample/201806032249_data.dust.min.json --runs 5",
        Run(&["median"]),
    ),
    (
        "target/release/airq-master schedule --resolution 5min",
        Skip("fetches the 5-minute feed from the internet every 5 minutes"),
    ),
    (
        "target/release/airq-master synth --resolution 5min --days 1 --sensors 200 --into-store",
        Run(&["readings:      57600 (1 days x 200 sensors x 288 per day, seed 42)"]),
    ),
    (
        "curl -sS -X POST http://127.0.0.1:8080/api/query -H 'content-type: application/json' -d '{\"startDate\":\"2024-01-01 12:00:00\",\"endDate\":\"2024-01-01 12:59:59\",\"resolution\":\"hour\",\"index\":\"us-epa\",\"format\":\"ndjson\"}' | head -1",
        Run(&["\"nowcastPm25\":", "\"meanPm25_24h\":"]),
    ),
    (
        "curl -sS -X POST http://127.0.0.1:8080/api/query -H 'content-type: application/json' -d '{\"startDate\":\"2018-06-03 20:00:00\",\"endDate\":\"2018-06-03 21:00:00\",\"country\":\"DE\",\"minAqi\":0,\"maxAqi\":10,\"range\":\"Low\"}' -o de-low.csv",
        Run(&[]),
    ),
    (
        "curl -sS -i -X POST http://127.0.0.1:8080/api/query -H 'content-type: application/json' -H 'prefer: respond-async' -d '{\"startDate\":\"2018-06-03\",\"endDate\":\"2018-06-03\"}'",
        Run(&[]),
    ),
    (
        "curl -sS -i http://127.0.0.1:8080/api/results/3f2c…",
        Run(&["HTTP/1.1 20"]),
    ),
    (
        "id=$(curl -sS -X POST http://127.0.0.1:8080/api/query -H 'content-type: application/json' -H 'prefer: respond-async' -d '{\"startDate\":\"2018-06-03\",\"endDate\":\"2018-06-03\"}' | sed 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/')",
        Run(&[]),
    ),
    (
        "until [ \"$(curl -sS -o result.csv -w '%{http_code}' http://127.0.0.1:8080/api/results/$id)\" != 202 ]; do sleep 1; done",
        Run(&[]),
    ),
    (
        "curl -sS -o result.csv \"http://127.0.0.1:8080/api/results/$id?wait=25s\"",
        Run(&[]),
    ),
    (
        "curl -sS -N http://127.0.0.1:8080/api/results/$id/events",
        Run(&["event: done"]),
    ),
    (
        "curl -sS -X POST http://127.0.0.1:8080/api/query -H 'content-type: application/json' -d '{\"startDate\":\"2018-06-03\",\"endDate\":\"2018-06-03\",\"aggregate\":{\"period\":\"day\",\"by\":\"country\"}}'",
        Run(&["period_start,period_end,", "2018-06-03 00:00:00,2018-06-03 23:59:59,,,DE,"]),
    ),
    (
        "curl -sS -X POST http://127.0.0.1:8080/api/query -H 'content-type: application/json' -d '{\"startDate\":\"2018-06-03\",\"endDate\":\"2018-06-03\",\"country\":\"BE\",\"quality\":[\"pm25_above_pm10\",\"outlier\"]}'",
        Run(&["id,timestamp,sensor_id,sensor_type,loc_id,loc_country,loc_lat,loc_long,loc_alt,P1,P2,AQI,Range,flags"]),
    ),
    (
        "curl -sS -i -X POST http://127.0.0.1:8080/api/query -H 'content-type: application/json' -d '{\"startDate\":\"2018-06-03\",\"endDate\":\"2018-06-03\",\"country\":\"BE\",\"correction\":{\"method\":\"kappa-kohler\",\"kappa\":0.3}}'",
        Run(&["x-airq-correction: kappa-kohler; kappa=0.3; rh-max=95", "humidity,P1_corrected,P2_corrected"]),
    ),
    (
        "bash scripts/up.sh --workers 6",
        Skip(BUILDS),
    ),
    (
        "target/release/airq-worker --db data/airq.db --concurrency 4",
        Serve {
            ready: "worker started",
        },
    ),
    (
        "target/release/airq-worker --db data/airq.db --metrics-listen 127.0.0.1:9101",
        Serve {
            ready: "metrics on",
        },
    ),
    (
        "curl -s http://127.0.0.1:9101/metrics | grep '^airq_worker_jobs_total'",
        Run(&["airq_worker_jobs_total"]),
    ),
    (
        "curl -sS -i -X POST http://127.0.0.1:8080/api/query -H 'content-type: application/json' -H 'prefer: respond-async' -H 'x-request-id: nightly-export-42' -d '{\"startDate\":\"2018-06-03\",\"endDate\":\"2018-06-03\"}'",
        Run(&[]),
    ),
    (
        "cargo build --release --no-default-features -p airq-gateway",
        Skip("a build; scripts/test.sh builds and lints every binary without the AWS backend"),
    ),
];

/// One command of a README block with the output the README shows after
/// it.
struct Step {
    command: String,
    shown: Vec<String>,
}

/// The ```sh blocks of `markdown`, each as its commands: comment lines
/// are prose, except `#   …` lines, which show the output of the command
/// before them; a trailing `\` joins the next line.
fn blocks(markdown: &str) -> Vec<Vec<Step>> {
    let mut out = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```sh" {
            continue;
        }
        let mut steps: Vec<Step> = Vec::new();
        let mut pending = String::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            if let Some(shown) = line.strip_prefix("#   ") {
                if let Some(last) = steps.last_mut() {
                    last.shown.push(shown.to_owned());
                }
                continue;
            }
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                continue;
            }
            // A trailing comment is prose too (`cmd   # what it does`).
            let code = match line.find("  #") {
                Some(at) => &line[..at],
                None => line,
            };
            let code = code.trim();
            match code.strip_suffix('\\') {
                Some(part) => {
                    pending.push_str(part.trim());
                    pending.push(' ');
                }
                None => {
                    pending.push_str(code);
                    steps.push(Step {
                        command: std::mem::take(&mut pending),
                        shown: Vec::new(),
                    });
                }
            }
        }
        out.push(steps);
    }
    out
}

/// Whether `line` is what the README shows: `…` and the hex digits or
/// dashes right before it stand for anything.
fn shows(line: &str, shown: &str) -> bool {
    let mut rest = line;
    let pieces: Vec<&str> = shown.split('…').collect();
    for (k, piece) in pieces.iter().enumerate() {
        let piece = if k + 1 < pieces.len() {
            piece.trim_end_matches(|c: char| c.is_ascii_hexdigit() || c == '-')
        } else {
            piece
        };
        let found = if k == 0 {
            rest.starts_with(piece).then_some(0)
        } else {
            rest.find(piece)
        };
        match found {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    pieces.len() > 1 || rest.is_empty()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn every_readme_command_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let blocks = blocks(&readme);

    // Every command is planned, and every plan entry is still shown.
    let shown: BTreeSet<&str> = blocks
        .iter()
        .flatten()
        .map(|s| s.command.as_str())
        .collect();
    let planned: BTreeSet<&str> = PLAN.iter().map(|(c, _)| *c).collect();
    let unplanned: Vec<_> = shown.difference(&planned).collect();
    let stale: Vec<_> = planned.difference(&shown).collect();
    assert!(
        unplanned.is_empty() && stale.is_empty(),
        "README commands the test does not know: {unplanned:#?}\n\
         plan entries no longer in the README: {stale:#?}"
    );

    // A checkout's layout, with the binaries under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::create_dir_all(root.join("target")).expect("target/");
    std::fs::create_dir_all(root.join("data")).expect("data/");
    std::fs::create_dir_all(root.join("tmp")).expect("tmp/");
    let bins = bin("airq-master")
        .parent()
        .expect("the binaries' directory")
        .to_path_buf();
    std::os::unix::fs::symlink(&bins, root.join("target/release")).expect("target/release");
    std::os::unix::fs::symlink(repo.join("data/sample"), root.join("data/sample"))
        .expect("data/sample");

    // The stack, on the checkout's database, once a block needs it.
    let mut stack: Option<(LocalStack, String)> = None;
    let worker_port = free_port().to_string();
    let tmp = format!("{}/", root.join("tmp").display());

    for (b, steps) in blocks.iter().enumerate() {
        let runs: Vec<(&Step, &How)> = steps
            .iter()
            .map(|s| {
                let how = &PLAN
                    .iter()
                    .find(|(c, _)| *c == s.command)
                    .expect("planned")
                    .1;
                (s, how)
            })
            .filter(|(step, how)| match how {
                Skip(why) => {
                    eprintln!("not run: `{}`: {why}", step.command);
                    false
                }
                _ => true,
            })
            .collect();
        if runs.is_empty() {
            continue;
        }
        let needs_stack = runs.iter().any(|(s, _)| {
            s.command.contains("127.0.0.1:8080") || s.command.contains("airq-worker")
        });
        if needs_stack && stack.is_none() {
            let s = LocalStack::start_at(&root.join("data/airq.db"), 2, &[]);
            let (url, _) = s.wait_until_up();
            let addr = url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned();
            stack = Some((s, addr));
        }
        let gateway = stack.as_ref().map_or("127.0.0.1:8080", |(_, a)| a.as_str());

        // One bash script per block (shell variables carry from one
        // command to the next, as in a terminal), each command's output
        // kept apart between markers.
        let mut script = String::from("BG=''\nLAST_ID=''\n");
        for (k, (step, how)) in runs.iter().enumerate() {
            let command = step
                .command
                .replace("127.0.0.1:8080", gateway)
                .replace("127.0.0.1:9101", &format!("127.0.0.1:{worker_port}"))
                .replace("/tmp/", &tmp)
                .replace("3f2c…", "$LAST_ID");
            let out = format!("out-{b}-{k}");
            match how {
                Run(_) => {
                    let _ = writeln!(
                        script,
                        "{{ {command} ; }} > {out} 2>&1; status=$?\n\
                         echo '@@ {k}'; cat {out}; echo \"@@ status $status\"\n\
                         __id=$(sed -n 's/.*\"id\":\"\\([0-9a-f-]*\\)\".*/\\1/p' {out} | head -n 1)\n\
                         [ -n \"$__id\" ] && LAST_ID=$__id"
                    );
                }
                Serve { ready } => {
                    let _ = writeln!(
                        script,
                        "{command} > {out} 2>&1 & BG=\"$BG $!\"\n\
                         for _ in $(seq 600); do grep -q '{ready}' {out} && break; sleep 0.1; done\n\
                         echo '@@ {k}'; cat {out}; \
                         if grep -q '{ready}' {out}; then echo '@@ status 0'; else echo '@@ status 1'; fi"
                    );
                }
                Skip(_) => {}
            }
        }
        script.push_str("[ -n \"$BG\" ] && kill -TERM $BG && wait\nexit 0\n");

        let mut child = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(root)
            .env_remove("AIRQ_METRICS_LISTEN")
            .env_remove("AIRQ_DB")
            .env_remove("AIRQ_BACKEND")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("bash");
        // Read as it comes: a pipe left unread holds 64 KiB, and a longer
        // output would stop the script.
        let mut stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
            out
        });
        // Every loop in the script is bounded; this bounds the whole.
        let deadline = Instant::now() + Duration::from_secs(600);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("README block {b} ran over 600 s:\n{script}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = reader.join().expect("the output's reader");
        let text = String::from_utf8_lossy(&out);

        for (k, (step, how)) in runs.iter().enumerate() {
            let start = format!("@@ {k}\n");
            let Some(at) = text.find(&start) else {
                panic!("`{}` did not run:\n{text}", step.command);
            };
            let body = &text[at + start.len()..];
            let end = body.find("@@ status ").unwrap_or(body.len());
            let (output, status) = body.split_at(end);
            let status = status.lines().next().unwrap_or_default();
            assert_eq!(
                status, "@@ status 0",
                "`{}` failed:\n{output}",
                step.command
            );
            let lines: Vec<&str> = output.lines().map(|l| l.trim_end_matches('\r')).collect();
            if let Run(expect) = how {
                for want in *expect {
                    assert!(
                        output.contains(want),
                        "`{}` did not print {want:?}:\n{output}",
                        step.command
                    );
                }
            }
            for want in &step.shown {
                assert!(
                    lines.iter().any(|l| shows(l, want)),
                    "`{}` did not print what the README shows, {want:?}:\n{output}",
                    step.command
                );
            }
        }
    }

    // What the README says of the files its examples write.
    let csv = std::fs::read_to_string(root.join("de-low.csv")).expect("de-low.csv");
    assert_eq!(
        csv.lines().count(),
        1 + 3_315,
        "\"Direct answer: 200 with the CSV (3,315 rows)\""
    );
    let result = std::fs::read_to_string(root.join("result.csv")).expect("result.csv");
    assert_eq!(
        result.lines().next(),
        csv.lines().next(),
        "the polled result is a CSV with the same header"
    );
    drop(stack);
}

#[test]
fn shown_output_matches_with_placeholders() {
    assert!(shows("HTTP/1.1 202 Accepted", "HTTP/1.1 202 Accepted"));
    assert!(!shows("HTTP/1.1 200 OK", "HTTP/1.1 202 Accepted"));
    assert!(shows(
        "location: /api/results/0b6e1c2a-9d7f-4f3e-8a1b-2c3d4e5f6a7b",
        "location: /api/results/3f2c…"
    ));
    assert!(shows(
        r#"{"id":"0b6e","status":"queued","requestId":"77aa-bb"}"#,
        r#"{"id":"3f2c…","status":"queued","requestId":"a2b9…"}"#
    ));
    assert!(!shows(
        r#"{"id":"0b6e","status":"running","requestId":"77aa"}"#,
        r#"{"id":"3f2c…","status":"queued","requestId":"a2b9…"}"#
    ));
    let b = blocks("```sh\na \\\n  b   # why\n#   out\n# prose\nc\n```\n");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0][0].command, "a b");
    assert_eq!(b[0][0].shown, ["out"]);
    assert_eq!(b[0][1].command, "c");
}
