#!/usr/bin/env bash
# What metrics cost on the hot path (issue 12): the local stack with the
# gateway's `--metrics on` (the default) and `--metrics off` (no recorder,
# no counting layer), alternated RUNS times: the random mix at 1,000
# queries/s for 30 s, and /healthz, closed loop, 64 users for 10 s. With
# an `unlimited` key, so the rate limiter plays no part.
#
# Uses the benchmark's synthetic store (target/bench/store-*.db, made by
# loadtest/bench.sh) on a copy; prints a summary and leaves the JSON of
# every run in target/metrics-cost/. Loopback only; every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${AIRQ_METRICS_COST_OUT:-target/metrics-cost}"
store="${AIRQ_METRICS_COST_STORE:-target/bench/store-30d-15000s.db}"
runs="${AIRQ_METRICS_COST_RUNS:-3}"

cargo build --release --bins --quiet
bin=target/release
rm -rf "$out"
mkdir -p "$out/json"
. loadtest/stack.sh
copy_store "$store" "$out"
key=$("$bin/airq-deploy" keys create --db "$out/run.db" --name metrics-cost --tier unlimited 2>/dev/null)

trap stop_stack EXIT
lt() { "$bin/airq-loadtest" "$url" --no-progress --drain 10s --api-key "$key" "$@" >/dev/null; }

for i in $(seq 1 "$runs"); do
    for m in on off; do
        start_stack "$out" --gateway-args "--metrics $m"
        lt --query random --rate 1000 --duration 30s --json "$out/json/random-$m-$i.json" || true
        lt --endpoint /healthz -c 64 --duration 10s --json "$out/json/healthz-$m-$i.json" || true
        stop_stack
    done
done

python3 - "$out/json" "$runs" <<'EOF'
import json, statistics, sys
d, runs = sys.argv[1], int(sys.argv[2])
step = lambda n: json.load(open(f"{d}/{n}.json"))["steps"][0]
med = statistics.median
print(f"{'metrics':<8}{'random ok/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'healthz req/s':>15}   (medians of {runs})")
for m in ("on", "off"):
    r = [step(f"random-{m}-{i}") for i in range(1, runs + 1)]
    h = [step(f"healthz-{m}-{i}") for i in range(1, runs + 1)]
    print(f"{m:<8}{med(s['ok_per_s'] for s in r):>12.1f}{med(s['time_to_result']['p50'] for s in r):>9.1f}"
          f"{med(s['time_to_result']['p99'] for s in r):>9.1f}{med(s['throughput'] for s in h):>15.0f}")
    print("         runs: random ok/s " + ", ".join(f"{s['ok_per_s']:.1f}" for s in r)
          + "; healthz req/s " + ", ".join(f"{s['throughput']:.0f}" for s in h))
EOF
