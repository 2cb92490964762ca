#!/usr/bin/env bash
# `GET /api/latest` for one country at concurrency 1 (issue: latest
# readings, target p99 < 20 ms), with the answer cache on (the default:
# what users get) and off (every request reads the store), on a synthetic
# store of SENSORS sensors. On loopback; every loop bounded.
#
# Usage: loadtest/latest_bench.sh [OUT_DIR]   (default target/latest-bench)
# Env: AIRQ_LB_SENSORS (15000), AIRQ_LB_REQUESTS (2000), AIRQ_LB_COUNTRY (DE).
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/stack.sh
out="${1:-target/latest-bench}"
sensors="${AIRQ_LB_SENSORS:-15000}"
requests="${AIRQ_LB_REQUESTS:-2000}"
country="${AIRQ_LB_COUNTRY:-DE}"
mkdir -p "$out"
db="$out/store-${sensors}s.db"
cargo build --release -q -p airq-master -p airq-gateway -p airq-loadtest --bins
bin=target/release
if [ ! -f "$db" ]; then
    "$bin/airq-master" synth --into-store --db "$db" --days 2 --start 2024-01-01 \
        --sensors "$sensors" --per-day 24 >&2
fi
for cache in on off; do
    ttl=60s
    [ "$cache" = off ] && ttl=0
    "$bin/airq-gateway" --db "$db" --listen 127.0.0.1:0 --answer-cache-ttl "$ttl" \
        --tier 'anonymous:submits=off,polls=off,queued=off' >"$out/gateway-$cache.out" 2>"$out/gateway-$cache.log" &
    gw=$!
    trap 'kill $gw 2>/dev/null || true' EXIT
    url=
    url=$(listening_url "$out/gateway-$cache.out" "$out/gateway-$cache.log" gateway)
    rows=$(curl -sS "$url/api/latest?country=$country" | tail -n +2 | wc -l)
    echo "answer cache $cache: $rows sensors in $country"
    "$bin/airq-loadtest" run "$url" --endpoint "/api/latest?country=$country" \
        -c 1 -n "$requests" --warmup 50 --no-progress --label "latest-$country-cache-$cache" \
        --json "$out/latest-cache-$cache.json" | grep -v "^$" || true
    kill $gw; wait $gw 2>/dev/null || true
done
