#!/usr/bin/env bash
# What gzip costs a large answer: the same query asked plain and with
# `Accept-Encoding: gzip`, of one or more gateway builds side by side on
# one store, RUNS times alternated; time to the last byte (curl's
# `time_total`) and bytes on the wire, medians.
#
#   bash loadtest/gzip_answers.sh DB RUNS BIN...   # each BIN an airq-gateway
#
# DB: a store with the days queried (e.g. loadtest/answers_vs_duckdb.sh's
# target/answers-vs-duckdb/segments/airq.db: 31 days x 15,000 sensors).
# QUERY (env) is the request body; default 31 days of DE, CSV. CACHE_TTL
# (env, default 0: off) is the gateways' --answer-cache-ttl: with it on,
# an answer that fits in the cache is computed once and every later run
# is a hit.
set -euo pipefail
cd "$(dirname "$0")/.."
DB=$1
RUNS=$2
shift 2
QUERY=${QUERY:-'{"startDate":"2024-01-01","endDate":"2024-01-31","country":"DE"}'}
OUT=target/gzip-answers
mkdir -p "$OUT"
. loadtest/stack.sh
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
URLS=()
for i in $(seq 1 $#); do
  bin=${!i}
  "$bin" --db "$DB" --listen 127.0.0.1:0 --max-span 31days --direct-max-span 31days \
    --max-result-rows 20000000 --answer-cache-ttl "${CACHE_TTL:-0}" >"$OUT/$i.out" 2>"$OUT/$i.err" &
  PIDS+=($!)
  url=$(listening_url "$OUT/$i.out" "$OUT/$i.err" "gateway $bin")
  URLS+=("$url")
done
: >"$OUT/runs"
for _ in $(seq 1 "$RUNS"); do
  for i in "${!URLS[@]}"; do
    for enc in gzip identity; do
      curl -sS -o /dev/null -w "$((i + 1)) $enc %{time_total} %{size_download}\n" \
        -H "accept-encoding: $enc" -H 'content-type: application/json' \
        -X POST "${URLS[$i]}/api/query" -d "$QUERY" >>"$OUT/runs"
    done
  done
done
python3 - "$OUT/runs" "$@" <<'PYEOF'
import statistics, sys
runs, bins = sys.argv[1], sys.argv[2:]
rows = [l.split() for l in open(runs)]
for i, b in enumerate(bins, 1):
    for enc in ("identity", "gzip"):
        t = [float(r[2]) for r in rows if r[0] == str(i) and r[1] == enc]
        n = statistics.median(int(r[3]) for r in rows if r[0] == str(i) and r[1] == enc)
        print(f"{b} {enc:8} median {statistics.median(t) * 1000:7.1f} ms  runs {' '.join(f'{x * 1000:.0f}' for x in t)}  bytes {n:.0f}")
PYEOF
