#!/usr/bin/env bash
# What the quality flags cost a query (issue 28): the 31-day country query
# of issue 27 (DE, CSV, direct) without `quality` (answered from the answer
# segments), with `"quality":"all"` (every reading, with the flags column:
# the rows, since segments keep no flags), `"no-flags"` and a list, and
# the same as a daily aggregate by country. Makes DAYS days of daily
# readings for SENSORS sensors in a fresh store (`synth --into-store`,
# which flags them as ingestion does) and builds its segments, then times
# RUNS rounds, the cases alternating within each round; prints the median
# time, rows and bytes of each.
#
#   bash loadtest/quality_cost.sh [SENSORS] [DAYS] [RUNS]   # default 15000, 31, 7
#
# Needs the release binaries (cargo build --release -p airq-master -p
# airq-gateway) and python3. Loopback only; files in target/quality-cost/.
set -euo pipefail
cd "$(dirname "$0")/.."
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

"$BIN/airq-gateway" --db "$DB" --listen 127.0.0.1:0 --max-span 31days --direct-max-span 31days \
  --max-result-rows 20000000 --answer-cache-ttl 0 >"$OUT/gateway.out" 2>"$OUT/gateway.err" &
GATEWAY=$!
trap 'kill $GATEWAY 2>/dev/null || true' EXIT
URL=""
for _ in $(seq 1 100); do
  URL=$(sed -n 's/^listening on //p' "$OUT/gateway.out" | head -1)
  [ -n "$URL" ] && break
  sleep 0.1
done
[ -n "$URL" ] || { echo "the gateway did not start" >&2; cat "$OUT/gateway.err" >&2; exit 1; }

LAST=$(date -u -d "2024-01-01 + $((DAYS - 1)) days" +%Y-%m-%d)
python3 - "$URL" "$RUNS" "$LAST" <<'PYEOF'
import json, statistics, sys, time, urllib.request
url, runs, last = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = {"startDate": "2024-01-01", "endDate": last, "country": "DE"}
daily = {"period": "day", "by": "country"}
cases = {
    "no quality (segments)": {},
    'quality "all" (rows, flags shown)': {"quality": "all"},
    'quality "no-flags"': {"quality": "no-flags"},
    'quality ["outlier", "stuck"]': {"quality": ["outlier", "stuck"]},
    "aggregate, no quality": {"aggregate": daily},
    'aggregate, quality ["outlier", "stuck"]': {"aggregate": daily, "quality": ["outlier", "stuck"]},
}
times = {k: [] for k in cases}
sizes = {}
for _ in range(runs):
    for name, extra in cases.items():
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
