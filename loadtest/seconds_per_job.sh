#!/usr/bin/env bash
# Seconds per job of ONE worker (issue 13): the number the workers'
# scaling target is derived from. A backlog of random-mix queries is queued
# first (`Prefer: respond-async`, no worker running), then one worker
# (`--concurrency` = its default, the CPUs) starts on it, and its own
# metrics (`airq_worker_jobs_total{outcome="done"}`) are read twice, WINDOW
# apart, while the backlog lasts: jobs/s of a saturated worker, and seconds
# per job = 1 / that. Twice:
#   embedded: the benchmark store (target/bench/store-*.db, 450,000 readings);
#   moto:     the AWS backend on the moto emulator (provisioned by
#             airq-deploy, the sample feed ingested). moto is one Python
#             process on the same 2 cores: a floor, not AWS.
# Loopback only; bounded runs. Results in target/seconds-per-job/.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${AIRQ_SPJ_OUT:-target/seconds-per-job}"
store="${AIRQ_SPJ_STORE:-target/bench/store-30d-15000s.db}"
window="${AIRQ_SPJ_WINDOW:-10}"
[ -f "$store" ] || { echo "no store at $store: run loadtest/bench.sh first" >&2; exit 1; }
[ -n "${AIRQ_SKIP_BUILD:-}" ] || cargo build --release --bins --quiet
bin=target/release
rm -rf "$out"
mkdir -p "$out/json"

pids=()
stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
}
cleanup() {
    stop_all
    if [ -n "${AIRQ_MOTO_PID:-}" ]; then bash scripts/moto.sh stop "$AIRQ_MOTO_PID" || true; fi
}
trap cleanup EXIT

# Waits for "PREFIX ADDR" on FILE's first matching line; prints ADDR.
address() {
    local file="$1" prefix="$2" found=""
    for _ in $(seq 1 300); do
        found="$(sed -n "s|^$prefix ||p" "$file" | head -1)"
        [ -n "$found" ] && { echo "$found"; return 0; }
        sleep 0.1
    done
    echo "no '$prefix' line in $file" >&2
    exit 1
}
# The worker's done count.
done_jobs() {
    curl -sf "$1" | awk '/^airq_worker_jobs_total\{outcome="done"\}/ {print $2}'
}

# measure NAME RATE SECONDS [backend flags…]: queue RATE×SECONDS jobs, then
# one worker on them.
measure() {
    local name="$1" rate="$2" secs="$3"
    shift 3
    "$bin/airq-gateway" --listen 127.0.0.1:0 --direct-limit 0 --max-span 40days --max-connections-per-client 0 \
        --tier 'anonymous:submits=off,polls=off,queued=off' "$@" >"$out/gw-$name.out" 2>>"$out/gw.log" &
    pids+=($!)
    local url
    url="$(address "$out/gw-$name.out" "listening on")"
    # Polls are rare (every 5 s), so the gateway stays out of the way.
    "$bin/airq-loadtest" "$url" --no-progress --query random --prefer-async --rate "$rate" \
        --duration "${secs}s" --poll-interval 5s --poll-max-interval 5s --poll-timeout 600s \
        --drain 600s --json "$out/json/$name.json" >/dev/null 2>&1 &
    local lt=$!
    sleep $((secs + 2))
    "$bin/airq-worker" --metrics-listen 127.0.0.1:0 "$@" >"$out/worker-$name.out" 2>>"$out/worker.log" &
    pids+=($!)
    local metrics
    metrics="$(address "$out/worker-$name.out" "metrics on")"
    sleep 3
    local c0 t0 c1 t1
    c0="$(done_jobs "$metrics")"; t0="$(date +%s.%N)"
    sleep "$window"
    c1="$(done_jobs "$metrics")"; t1="$(date +%s.%N)"
    wait "$lt" || true
    local total
    total="$(done_jobs "$metrics")"
    python3 - "$name" "$c0" "$c1" "$t0" "$t1" "$total" "$((rate * secs))" <<'EOF' | tee -a "$out/summary.txt"
import sys
name, c0, c1, t0, t1, total, queued = sys.argv[1], *map(float, sys.argv[2:])
rate = (c1 - c0) / (t1 - t0)
ok = "" if c1 < total or total < queued else "  (backlog ran out in the window: a lower bound)"
print(f"{name:<10} {rate:8.2f} jobs/s  {1 / rate:7.4f} s/job  ({c1 - c0:.0f} jobs in {t1 - t0:.1f} s; "
      f"{total:.0f} of {queued:.0f} queued done){ok}")
EOF
    stop_all
}

cp "$store" "$out/run.db"
if [ -d "$store-bodies" ]; then cp -r "$store-bodies" "$out/run.db-bodies"; fi
measure embedded 500 10 --db "$out/run.db"

eval "$(bash scripts/moto.sh start)"
export AIRQ_AWS_ENDPOINT_URL="$AIRQ_TEST_AWS_ENDPOINT" AIRQ_AWS_PREFIX="spj$$-"
eval "$("$bin/airq-deploy" provision 2>>"$out/provision.log" | grep '^export ')"
"$bin/airq-master" ingest --source data/sample/201806032249_data.dust.min.json >/dev/null 2>>"$out/master.log"
measure moto 20 10 --backend aws
