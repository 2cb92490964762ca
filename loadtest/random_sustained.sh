#!/usr/bin/env bash
# The sustained random mix alone (the suite's last target: 500 queries/s,
# open loop, p99 < 1 s, zero errors), RUNS times on a fresh copy of the
# benchmark store each, with an `unlimited` key, so that a change to the
# query path can be measured in minutes rather than the suite's ten.
# On loopback; every run bounded by --duration and --drain.
#
# Usage: loadtest/random_sustained.sh   (needs target/bench/store-*.db from loadtest/bench.sh)
# Env: AIRQ_RS_RUNS (3), AIRQ_RS_RATE (500), AIRQ_RS_DURATION (30s), AIRQ_BIN;
# AIRQ_LT_GZIP=true asks for gzipped answers as browsers do (the load
# generator's own flag, read from the environment).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${AIRQ_RS_OUT:-target/random-sustained}"
store="${AIRQ_RS_STORE:-target/bench/store-30d-15000s.db}"
runs="${AIRQ_RS_RUNS:-3}"
rate="${AIRQ_RS_RATE:-500}"
duration="${AIRQ_RS_DURATION:-30s}"
# AIRQ_BIN: another build's binaries (measured as they are, not built).
bin="${AIRQ_BIN:-target/release}"
[ -n "${AIRQ_BIN:-}" ] || cargo build --release --bins --quiet
. loadtest/stack.sh
mkdir -p "$out/json"
trap stop_stack EXIT
for i in $(seq 1 "$runs"); do
    rm -rf "$out/run.db" "$out/run.db-bodies" "$out/run.db-wal" "$out/run.db-shm"
    copy_store "$store" "$out"
    key=$("$bin/airq-deploy" keys create --db "$out/run.db" --name bench --tier unlimited 2>/dev/null)
    start_stack "$out"
    "$bin/airq-loadtest" "$url" --api-key "$key" --no-progress --query random --seed "$i" \
        --rate "$rate" --duration "$duration" --drain 30s --json "$out/json/run-$i.json" >/dev/null || true
    stop_stack
done
python3 - "$out/json" "$runs" <<'PY'
import json, statistics, sys
d, runs = sys.argv[1], int(sys.argv[2])
rows = []
for i in range(1, runs + 1):
    s = json.load(open(f"{d}/run-{i}.json"))["steps"][0]
    rows.append(s)
    t = s["time_to_result"]
    print(f"run {i}: {s['ok']} ok, {s['errors']} errors, {s['ok_per_s']:.1f} results/s, "
          f"p50 {t['p50']:.0f} ms, p99 {t['p99']:.0f} ms, late {s['late']}")
p99 = statistics.median(r["time_to_result"]["p99"] for r in rows)
print(f"median p99 {p99:.0f} ms; errors {sum(r['errors'] for r in rows)}")
PY
