#!/usr/bin/env bash
# Peak memory of the worker and the gateway with large results (issue:
# results of any size in bounded memory). On loopback, every wait bounded.
#
#   1. a synthetic store of DAYS x SENSORS x PER_DAY readings;
#   2. the worker renders the whole store as one queued result (>= 500 MB
#      with the defaults); its peak RSS (VmHWM) is read from /proc;
#   3. 32 clients download one ~50 MB result at once, then 32 clients 32
#      different large results at once; the gateway's peak RSS is read.
#
# Usage: loadtest/results_memory.sh [OUT_DIR]   (default target/results-memory)
# Needs curl and the release binaries (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/stack.sh
out="${1:-target/results-memory}"
days="${AIRQ_RM_DAYS:-31}"
sensors="${AIRQ_RM_SENSORS:-15000}"
per_day="${AIRQ_RM_PER_DAY:-12}"
mkdir -p "$out"
db="$out/store-${days}d-${sensors}s-${per_day}pd.db"

cargo build --release --bins -p airq-master -p airq-gateway -p airq-worker
bin=target/release
if [ ! -f "$db" ]; then
    "$bin/airq-master" synth --into-store --db "$db" \
        --days "$days" --sensors "$sensors" --per-day "$per_day" >&2
fi

peak() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
gw_log="$out/gateway.log"
# No per-client limits: this measures memory, not the limiter.
"$bin/airq-gateway" --db "$db" --listen 127.0.0.1:0 --max-result-rows 100000000 \
    --max-span 40days --result-ttl 1h --tier 'anonymous:submits=off,polls=off,queued=off' >"$out/gateway.out" 2>"$gw_log" &
gw=$!
"$bin/airq-worker" --db "$db" --concurrency 2 2>"$out/worker.log" &
wk=$!
trap 'kill $gw $wk 2>/dev/null || true; wait 2>/dev/null || true' EXIT
url=$(listening_url "$out/gateway.out" "$gw_log" gateway)

# Submits a query to the queue, waits (at most 10 minutes) until it is
# done, prints its result path.
queued() {
    local id
    id="$(curl -sf -H 'Content-Type: application/json' -H 'Prefer: respond-async' \
        --data "$1" "$url/api/query" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')"
    [ -n "$id" ] || { echo "no result id for $1" >&2; exit 1; }
    for _ in $(seq 1 6000); do
        code="$(curl -s -o /dev/null -w '%{http_code}' -r 0-0 "$url/api/results/$id")"
        case "$code" in
            202) sleep 0.1 ;;
            200|206) echo "/api/results/$id"; return ;;
            *) echo "result $id answered $code" >&2; exit 1 ;;
        esac
    done
    echo "result $id not done in time" >&2; exit 1
}
size() { curl -sf -o /dev/null -w '%{size_download}' "$url$1"; }
start="$(date -u -d "2024-01-01" +%s)"
day() { date -u -d "@$((start + $1 * 86400))" '+%Y-%m-%d %H:%M:%S'; }

echo "== the worker renders the whole store"
t0=$(date +%s.%N)
all="$(queued "{\"startDate\":\"$(day 0)\",\"endDate\":\"$(day "$days")\"}")"
t1=$(date +%s.%N)
all_bytes="$(size "$all")"
echo "whole store: $all_bytes bytes in $(echo "$t1 - $t0" | bc) s; worker peak RSS $(( $(peak $wk) / 1024 )) MiB"

echo "== 32 clients download one result at once"
one="$(queued "{\"startDate\":\"$(day 0)\",\"endDate\":\"$(day 3)\"}")"
echo "one result: $(size "$one") bytes"
before=$(peak $gw)
for _ in $(seq 1 32); do curl -sf -o /dev/null --limit-rate 20M "$url$one" & done
wait $(jobs -p | grep -v -e "^$gw\$" -e "^$wk\$") 2>/dev/null || true
echo "gateway peak RSS $(( $(peak $gw) / 1024 )) MiB (before: $(( before / 1024 )) MiB)"

echo "== 32 clients download 32 different results at once"
paths=()
for i in $(seq 0 31); do
    paths+=("$(queued "{\"startDate\":\"$(day $((i % 28)))\",\"endDate\":\"$(day $((i % 28 + 3)))\",\"minAqi\":$((i / 28))}")")
done
for p in "${paths[@]}"; do curl -sf -o /dev/null --limit-rate 20M "$url$p" & done
wait $(jobs -p | grep -v -e "^$gw\$" -e "^$wk\$") 2>/dev/null || true
echo "gateway peak RSS $(( $(peak $gw) / 1024 )) MiB; worker peak RSS $(( $(peak $wk) / 1024 )) MiB"
