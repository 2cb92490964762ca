#!/usr/bin/env bash
# Seconds per job of ONE worker (issue 13): the number the workers' scaling
# target is derived from. Every query of the random mix is queued
# (`Prefer: respond-async`) at a rate above what one worker answers, for
# 30 s, so the worker is never idle; its throughput is jobs/s and
# seconds per job = 1 / throughput. Twice:
#   embedded: the benchmark store (target/bench/store-*.db, 450,000 readings);
#   moto:     the AWS backend on the moto emulator (provisioned by
#             airq-deploy, the sample feed ingested: moto is a Python
#             process on the same 2 cores, so this is a floor, not AWS).
# Loopback only; bounded runs. Results in target/seconds-per-job/.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${AIRQ_SPJ_OUT:-target/seconds-per-job}"
store="${AIRQ_SPJ_STORE:-target/bench/store-30d-15000s.db}"
rate="${AIRQ_SPJ_RATE:-300}"
[ -f "$store" ] || { echo "no store at $store: run loadtest/bench.sh first" >&2; exit 1; }
[ -n "${AIRQ_SKIP_BUILD:-}" ] || cargo build --release --bins --quiet
bin=target/release
rm -rf "$out"
mkdir -p "$out/json"

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${AIRQ_MOTO_PID:-}" ] && bash scripts/moto.sh stop "$AIRQ_MOTO_PID" || true
}
trap cleanup EXIT

# Starts a gateway (args in "$@") and sets $url; no direct answers
# (--direct-limit 0), no per-client limits: only the worker is measured.
gateway() {
    "$bin/airq-gateway" --listen 127.0.0.1:0 --direct-limit 0 --max-span 40days \
        --tier 'anonymous:submits=off,polls=off,queued=off' "$@" >"$out/gw.out" 2>>"$out/gw.log" &
    pids+=($!)
    url=""
    for _ in $(seq 1 200); do
        url="$(sed -n 's/^listening on //p' "$out/gw.out")"
        [ -n "$url" ] && return 0
        sleep 0.1
    done
    echo "the gateway did not start; see $out/gw.log" >&2
    exit 1
}
measure() {
    "$bin/airq-loadtest" "$url" --no-progress --query random --prefer-async --poll-retry-after \
        --rate "$rate" --duration 30s --drain 60s --poll-timeout 120s --json "$out/json/$1.json" >/dev/null || true
}

# Embedded.
cp "$store" "$out/run.db"
[ -d "$store-bodies" ] && cp -r "$store-bodies" "$out/run.db-bodies"
gateway --db "$out/run.db"
"$bin/airq-worker" --db "$out/run.db" 2>>"$out/worker.log" &
pids+=($!)
measure embedded
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()

# moto.
eval "$(bash scripts/moto.sh start)"
export AIRQ_AWS_ENDPOINT_URL="$AIRQ_TEST_AWS_ENDPOINT" AIRQ_AWS_PREFIX="spj$$-"
eval "$("$bin/airq-deploy" provision 2>>"$out/provision.log" | grep '^export ')"
"$bin/airq-master" ingest --source data/sample/201806032249_data.dust.min.json >/dev/null 2>>"$out/master.log"
gateway --backend aws
"$bin/airq-worker" --backend aws 2>>"$out/worker.log" &
pids+=($!)
rate="${AIRQ_SPJ_MOTO_RATE:-20}" measure moto

python3 - "$out/json" <<'EOF'
import json, sys
d = sys.argv[1]
print(f"{'backend':<10}{'jobs':>6}{'jobs/s':>8}{'s/job':>8}{'p50 s':>8}{'p99 s':>8}")
for b in ("embedded", "moto"):
    s = json.load(open(f"{d}/{b}.json"))["steps"][0]
    t = s["time_to_result"]
    rate = s["ok"] / s["elapsed_s"]
    print(f"{b:<10}{s['ok']:>6}{rate:>8.2f}{1 / rate if rate else float('nan'):>8.3f}"
          f"{t['p50'] / 1000:>8.2f}{t['p99'] / 1000:>8.2f}")
EOF
