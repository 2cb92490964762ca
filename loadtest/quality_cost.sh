#!/usr/bin/env bash
# What the quality flags cost a query (issue 28): the 31-day country query
# of issue 27 (DE, CSV, direct) without `quality`, from the answer segments
# and from the rows (a second gateway, `--answer-segments false`); with
# `"quality":"all"` (every reading and its flags: from the rows, since
# segments keep no flags), `"no-flags"` and a list; and a daily aggregate
# by country with and without a list; with a humidity correction
# (`{"method":"kappa-kohler","kappa":0.3}`: rendered from each reading;
# synthetic stations send no humidity, so this is the path's cost, the
# formula's is `cargo bench -p airq-core --bench correction`). Makes DAYS days of daily readings
# for SENSORS sensors in a fresh store (`synth --into-store`, which flags
# them as ingestion does) and builds its segments, then times RUNS
# rounds, the cases alternating within each; prints each one's median
# time, rows and bytes.
#
#   bash loadtest/quality_cost.sh [SENSORS] [DAYS] [RUNS]   # default 15000, 31, 7
#
# Needs the release binaries (cargo build --release -p airq-master -p
# airq-gateway) and python3. Loopback only; files in target/quality-cost/.
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/stack.sh
SENSORS=${1:-15000}
DAYS=${2:-31}
RUNS=${3:-7}
OUT=target/quality-cost
DB=$OUT/airq.db
BIN=target/release
mkdir -p "$OUT"

if [ ! -e "$OUT/loaded-$SENSORS-$DAYS" ]; then
  rm -rf "$OUT"/airq.db* "$OUT"/loaded-*
  /usr/bin/time -f "load: %e s, peak RSS %M KiB" "$BIN/airq-master" --db "$DB" synth \
    --days "$DAYS" --sensors "$SENSORS" --start 2024-01-01 --into-store >/dev/null
  /usr/bin/time -f "segments: %e s, peak RSS %M KiB" "$BIN/airq-master" --db "$DB" segments
  touch "$OUT/loaded-$SENSORS-$DAYS"
fi

start_gateway() { # name segments
  "$BIN/airq-gateway" --db "$DB" --answer-segments "$2" --listen 127.0.0.1:0 --max-span 31days \
    --direct-max-span 31days --max-result-rows 20000000 --answer-cache-ttl 0 \
    --tier "anonymous:submits=off,polls=off,queued=off" \
    >"$OUT/$1.out" 2>"$OUT/$1.err" &
  echo $! >"$OUT/$1.pid"
}
start_gateway seg true
start_gateway rows false
trap 'kill $(cat "$OUT"/seg.pid "$OUT"/rows.pid) 2>/dev/null || true' EXIT
SEG_URL=$(listening_url "$OUT/seg.out" "$OUT/seg.err" "seg gateway")
ROWS_URL=$(listening_url "$OUT/rows.out" "$OUT/rows.err" "rows gateway")

LAST=$(date -u -d "2024-01-01 + $((DAYS - 1)) days" +%Y-%m-%d)
python3 - "$SEG_URL" "$ROWS_URL" "$RUNS" "$LAST" <<'PYEOF'
import json, statistics, sys, time, urllib.request
seg_url, rows_url, runs, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
base = {"startDate": "2024-01-01", "endDate": last, "country": "DE"}
daily = {"period": "day", "by": "country"}
# (gateway, fields added to the base query)
cases = {
    "no quality, from segments": (seg_url, {}),
    "no quality, from rows (`--answer-segments false`)": (rows_url, {}),
    'quality "all" (rows, flags shown)': (seg_url, {"quality": "all"}),
    'quality "no-flags"': (seg_url, {"quality": "no-flags"}),
    'quality ["outlier", "stuck"]': (seg_url, {"quality": ["outlier", "stuck"]}),
    "correction, kappa 0.3": (seg_url, {"correction": {"method": "kappa-kohler", "kappa": 0.3}}),
    "aggregate, no quality, from segments": (seg_url, {"aggregate": daily}),
    "aggregate, no quality, from rows": (rows_url, {"aggregate": daily}),
    'aggregate, quality ["outlier", "stuck"]': (seg_url, {"aggregate": daily, "quality": ["outlier", "stuck"]}),
}
times = {k: [] for k in cases}
sizes = {}
for _ in range(runs):
    for name, (url, extra) in cases.items():
        body = json.dumps({**base, **extra}).encode()
        req = urllib.request.Request(f"{url}/api/query", data=body, method="POST",
                                     headers={"content-type": "application/json"})
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=600) as r:
            assert r.status == 200 and r.headers["X-Airq-Answer"] == "direct", r.status
            data = r.read()
        times[name].append(time.perf_counter() - t)
        sizes[name] = (data.count(b"\n") - 1, len(data))
print(f"| query (31 days, DE, CSV, direct) | median of {runs} | rows | bytes |")
print("|---|--:|--:|--:|")
for name in cases:
    rows, size = sizes[name]
    print(f"| {name} | {statistics.median(times[name]) * 1000:.1f} ms | {rows:,} | {size:,} |")
PYEOF
