//! The API description against the server, by schemathesis (pinned,
//! installed into the project's `.venv/` by scripts/test.sh): requests
//! generated from `/api/openapi.json` (its examples, then its schemas,
//! then chains of calls through the result links) to a gateway and a
//! worker on a store holding the sample, with every check on but one: no
//! answer is a server error; every status, content type, header and JSON
//! body is one the description gives; every request outside the schemas
//! is refused; auth and methods behave as described.
//!
//! One check is left out: `positive_data_acceptance` (every request
//! inside the schemas is accepted) asks for rules JSON Schema cannot
//! state: a start no later than the end and a span within the gateway's
//! `--max-span` (rules between two fields' values), calendar-valid dates,
//! a radius within (0, 100] km inside the `near` text. The rules it can
//! state are in the description (`bbox` or `near`, a `range` of the
//! query's own index; see `openapi/rules.rs`). `negative_data_rejection`
//! (every request outside the schemas is refused) is on: the names'
//! leniency (case, blanks, `-`, `_`) is stated as patterns built from
//! the one rule that parses them (`airq_core::name`).
//!
//! Bounded: a fixed seed and at most `EXAMPLES` cases per operation.

mod support;

use std::process::Command;
use support::{venv_bin, Setup, Worker};

/// The pinned schemathesis (scripts/test.sh installs it).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// Cases per operation and phase.
const EXAMPLES: &str = "60";

#[test]
fn the_server_does_what_its_description_says() {
    let Some(st) = venv_bin("schemathesis") else {
        panic!(
            "schemathesis is not installed in the project's virtual environment (.venv/): \
             run `bash scripts/moto.sh install && .venv/bin/python -m pip install \
             {SCHEMATHESIS}` (scripts/test.sh does both)"
        );
    };
    // No budgets and no per-client connection cap: thousands of requests
    // from one address are the point here.
    let s = Setup::new(&[
        "--tier",
        "anonymous:submits=off,polls=off,queued=off",
        "--max-connections-per-client",
        "0",
    ]);
    let _worker = Worker::start(&s.dir.path().join("airq.db"), &["--receive-wait", "1s"]);
    let out = Command::new(st)
        .current_dir(s.dir.path())
        .args([
            "run",
            &s.url("/api/openapi.json"),
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            EXAMPLES,
            "--seed",
            "20261205",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
            // A live stream's 200 never ends, which a fuzzer reads as a
            // timeout; its answers are checked by tests/openapi.rs and
            // tests/stream.rs.
            "--exclude-operation-id",
            "streamLatest",
            // Hypothesis's health checks judge the generator (how slow or
            // how often filtered), not the server, and trip on a busy
            // machine.
            "--suppress-health-check",
            "all",
            "--no-color",
        ])
        .output()
        .expect("running schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found the server and its description apart:\n{text}"
    );
    // "Selected: 12/13" then "Tested: 12": every operation but the one
    // excluded was tested.
    let number_after = |label: &str| {
        text.split(label).nth(1).and_then(|rest| {
            rest.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse::<u32>().ok())
        })
    };
    let total = text
        .split("Selected:")
        .nth(1)
        .and_then(|rest| rest.split('/').nth(1))
        .and_then(|n| n.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u32>().ok());
    let selected = number_after("Selected:");
    assert!(
        selected.is_some_and(|n| n >= 10)
            && number_after("Tested:") == selected
            && total == selected.map(|n| n + 1),
        "every operation but the live stream was tested:\n{text}"
    );
}
