#!/usr/bin/env bash
# Queries with a place (`near`, `bbox`), answered from the answer segments
# and from the rows, side by side on one store (issue 27: a quarter of the
# random mix asks about a place). Two gateways on the benchmark store, one
# reading segments and one with `--answer-segments false` (the row path,
# which every place query took before segments served places); each case
# is asked of both, alternated, RUNS times, direct answers (no cache);
# prints medians and checks that the two answers are the same bytes.
#
#   bash loadtest/place_answers.sh [RUNS]     # default 9
#
# Needs the release binaries and target/bench/store-30d-15000s.db
# (`airq-master --db … synth --into-store --days 30 --sensors 15000`, then
# `airq-master --db … segments`), copied to target/place-answers/ with an
# `unlimited` key. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-9}
STORE=${AIRQ_PA_STORE:-target/bench/store-30d-15000s.db}
BIN=${AIRQ_BIN:-target/release}
OUT=target/place-answers
mkdir -p "$OUT"
. loadtest/stack.sh
[ -d "$STORE-segments" ] || { echo "no segments beside $STORE: run airq-master segments" >&2; exit 1; }
copy_store "$STORE" "$OUT"
KEY=$("$BIN/airq-deploy" keys create --db "$OUT/run.db" --name bench --tier unlimited 2>/dev/null)

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for mode in true false; do
  "$BIN/airq-gateway" --db "$OUT/run.db" --answer-segments "$mode" --listen 127.0.0.1:0 \
    --max-span 31days --direct-max-span 31days --answer-cache-ttl 0 \
    >"$OUT/$mode.out" 2>"$OUT/$mode.err" &
  pids+=($!)
done
SEG_URL=$(listening_url "$OUT/true.out" "$OUT/true.err" "segments gateway")
ROWS_URL=$(listening_url "$OUT/false.out" "$OUT/false.err" "rows gateway")

python3 - "$SEG_URL" "$ROWS_URL" "$RUNS" "$OUT/run.db" "$KEY" <<'PY'
import json, sqlite3, statistics, sys, time, urllib.request
seg, rows, runs, store, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
con = sqlite3.connect(store)
first, last = con.execute("SELECT min(ts), max(ts) FROM readings").fetchone()
day = lambda ts: time.strftime("%Y-%m-%d", time.gmtime(ts))
d0, d13, d_last = day(first), day(first + 13 * 86400), day(last)
cases = {
    "14 days, DE, 50 km around Stuttgart": {"startDate": d0, "endDate": d13, "country": "DE",
        "near": {"lat": 48.78, "lon": 9.18, "radiusKm": 50}},
    "14 days, DE, 10 km around Berlin, NDJSON": {"startDate": d0, "endDate": d13, "country": "DE",
        "near": {"lat": 52.52, "lon": 13.405, "radiusKm": 10}, "format": "ndjson"},
    "1 day, no country, a 3° box around Paris": {"startDate": d_last, "endDate": d_last,
        "bbox": [0.85, 47.36, 3.85, 50.36]},
    "1 day, no country, 2 km around Munich": {"startDate": d_last, "endDate": d_last,
        "near": {"lat": 48.137, "lon": 11.575, "radiusKm": 2}},
    "30 days, DE, 100 km around Stuttgart, daily mean by cell": {"startDate": d0, "endDate": d_last,
        "country": "DE", "near": {"lat": 48.78, "lon": 9.18, "radiusKm": 100},
        "aggregate": {"period": "day", "by": "cell"}},
}
def post(url, body):
    req = urllib.request.Request(f"{url}/api/query", data=json.dumps(body).encode(),
                                 method="POST", headers={"content-type": "application/json", "x-api-key": key})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        assert r.status == 200 and r.headers["X-Airq-Answer"] == "direct", r.status
        data = r.read()
    return time.perf_counter() - t, data
print(f"| query | rows | segments | rows path | segments / rows |")
print(f"|---|--:|--:|--:|--:|")
for name, body in cases.items():
    t_seg, t_rows = [], []
    for _ in range(runs):
        a, x = post(seg, body)
        b, y = post(rows, body)
        assert x == y, f"{name}: the answers differ"
        t_seg.append(a); t_rows.append(b)
    n = x.count(b"\n") - (1 if body.get("format", "csv") == "csv" else 0)
    s, r = statistics.median(t_seg) * 1000, statistics.median(t_rows) * 1000
    print(f"| {name} | {n:,} | {s:.1f} ms | {r:.1f} ms | {s / r:.2f} |")
PY
