#!/usr/bin/env bash
# Aggregates, airq against DuckDB on the same rows, side by side (issue:
# aggregates). Makes DAYS days of daily readings for SENSORS sensors in a
# fresh store, builds its answer segments, exports them as airq answers them to Parquet, then times,
# RUNS times each, alternating:
#
#   A. monthly statistics per country over the whole year (period month,
#      by country): airq direct, airq queued (a worker, the result read
#      with ?wait=), DuckDB from the Parquet file;
#   B. one month per 0.25° cell (period month, by cell), the same three.
#
# DuckDB computes what airq's columns say: count, mean, min, median, the
# 98th percentile by 40 CFR Part 50 Appendix N's rank (the ⌈n/50⌉-th
# highest), max and the sample sd of PM2.5, and writes CSV. The script
# checks that both give the same groups and PM2.5 statistics (means to
# within 0.005 µg/m³: DuckDB's mean is a float), prints the medians and
# the worker's peak RSS.
#
#   bash loadtest/aggregate_vs_duckdb.sh [SENSORS] [DAYS] [RUNS]   # default 15000, 366, 5
#
# Needs the release binaries (cargo build --release --no-default-features
# -p airq-master -p airq-gateway -p airq-worker), python3 and PyPI once
# (DuckDB is installed in target/duckdb-venv). Everything runs on loopback;
# the store and the files go to target/aggregate-vs-duckdb/.
set -euo pipefail
cd "$(dirname "$0")/.."
SENSORS=${1:-15000}
DAYS=${2:-366}
RUNS=${3:-5}
OUT=target/aggregate-vs-duckdb
DB=$OUT/airq.db
BIN=target/release
mkdir -p "$OUT"
. loadtest/duckdb.sh
. loadtest/stack.sh

if [ ! -e "$OUT/loaded-$SENSORS-$DAYS" ]; then
  rm -rf "$DB" "$DB"-* "$OUT"/loaded-* "$OUT"/*.parquet
  echo "loading $DAYS days of daily readings for $SENSORS sensors…"
  /usr/bin/time -f "load: %e s, peak RSS %M KiB" "$BIN/airq-master" --db "$DB" synth \
    --days "$DAYS" --sensors "$SENSORS" --start 2024-01-01 --into-store >/dev/null
  touch "$OUT/loaded-$SENSORS-$DAYS"
fi
# The answer segments of every day not built yet (all of them after a
# load; none when they are), which aggregations read.
/usr/bin/time -f "segments: %e s, peak RSS %M KiB" "$BIN/airq-master" --db "$DB" segments

"$BIN/airq-gateway" --db "$DB" --listen 127.0.0.1:0 --max-span 31days --direct-max-span 366days \
  --max-aggregate-span 366days --max-result-rows 20000000 --answer-cache-ttl 0 \
  >"$OUT/gateway.out" 2>"$OUT/gateway.err" &
GW=$!
"$BIN/airq-worker" --db "$DB" --concurrency 1 >"$OUT/worker.out" 2>"$OUT/worker.err" &
WK=$!
trap 'kill $GW $WK 2>/dev/null || true' EXIT
URL=$(listening_url "$OUT/gateway.out" "$OUT/gateway.err" gateway)

PARQUET=$OUT/daily-$SENSORS-$DAYS.parquet
if [ ! -s "$PARQUET" ]; then
  # Every reading as airq answers it, by 31-day pieces (--max-span).
  : > "$OUT/all.csv"
  first=1
  for ((d = 0; d < DAYS; d += 31)); do
    from=$(date -u -d "2024-01-01 + $d days" +%Y-%m-%d)
    last=$((d + 30 < DAYS - 1 ? d + 30 : DAYS - 1))
    to=$(date -u -d "2024-01-01 + $last days" +%Y-%m-%d)
    body="{\"startDate\":\"$from\",\"endDate\":\"$to\"}"
    if [ "$first" = 1 ]; then
      curl -sS -X POST "$URL/api/query" -H 'content-type: application/json' -d "$body" >> "$OUT/all.csv"
      first=0
    else
      curl -sS -X POST "$URL/api/query" -H 'content-type: application/json' -d "$body" | tail -n +2 >> "$OUT/all.csv"
    fi
  done
  "$PY" - "$OUT/all.csv" "$PARQUET" <<'PYEOF'
import duckdb, sys
src, dst = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(f"""COPY (SELECT CAST(timestamp AS TIMESTAMP) AS ts, CAST(sensor_id AS BIGINT) AS sensor_id,
                       loc_country, CAST(loc_lat AS DOUBLE) AS lat, CAST(loc_long AS DOUBLE) AS lon,
                       CAST(P1 AS DOUBLE) AS p1, CAST(P2 AS DOUBLE) AS p2, AQI
                FROM read_csv('{src}', all_varchar=true, header=true)
                ORDER BY ts, sensor_id)
                TO '{dst}' (FORMAT parquet)""")
print("parquet rows:", con.execute(f"SELECT count(*) FROM '{dst}'").fetchone()[0])
PYEOF
  rm -f "$OUT/all.csv"
fi

END=$(date -u -d "2024-01-01 + $((DAYS - 1)) days" +%Y-%m-%d)
"$PY" - "$URL" "$PARQUET" "$OUT" "$RUNS" "$END" "$WK" <<'PYEOF'
import duckdb, json, statistics, subprocess, sys, time, urllib.request, csv, io
url, parquet, out, runs, end, worker = sys.argv[1:7]
runs = int(runs)
con = duckdb.connect()

def post(body, queued):
    req = urllib.request.Request(f"{url}/api/query", data=body.encode(), method="POST",
                                 headers={"content-type": "application/json",
                                          **({"Prefer": "respond-async"} if queued else {})})
    with urllib.request.urlopen(req, timeout=600) as r:
        status, headers, data = r.status, r.headers, r.read()
    if not queued:
        assert status == 200 and headers["X-Airq-Answer"] == "direct", (status, dict(headers))
        return data
    assert status == 202, status
    loc = headers["Location"]
    while True:
        with urllib.request.urlopen(f"{url}{loc}?wait=20s", timeout=60) as r:
            if r.status == 200:
                return r.read()

# Appendix N's rank: the ⌈n/50⌉-th highest.
STATS = """count(p2) AS n, avg(p2) AS mean, min(p2) AS min, median(p2) AS p50,
           list_sort(list(p2))[count(p2) - CAST(ceil(count(p2) / 50.0) AS BIGINT) + 1] AS p98,
           max(p2) AS max, stddev_samp(p2) AS sd"""
cases = {
    "A. monthly, by country, the year": (
        f'{{"startDate":"2024-01-01","endDate":"{end}","aggregate":{{"period":"month","by":"country"}}}}',
        f"""SELECT strftime(date_trunc('month', ts), '%Y-%m-%d %H:%M:%S') AS period, loc_country AS g, {STATS}
            FROM '{parquet}' WHERE p2 IS NOT NULL GROUP BY ALL ORDER BY period, g""",
        lambda row: (row["period_start"], row["loc_country"])),
    "B. one month, by cell": (
        '{"startDate":"2024-03-01","endDate":"2024-03-31","aggregate":{"period":"month","by":"cell"}}',
        f"""SELECT strftime(date_trunc('month', ts), '%Y-%m-%d %H:%M:%S') AS period,
                   CAST(floor((lat + 90) / 0.25) * 1440 + floor((lon + 180) / 0.25) AS BIGINT) AS g, {STATS}
            FROM '{parquet}' WHERE p2 IS NOT NULL AND ts BETWEEN '2024-03-01' AND '2024-03-31 23:59:59'
            GROUP BY ALL ORDER BY period, g""",
        lambda row: (row["period_start"],
                     int((float(row["cell_min_lat"]) + 90) / 0.25) * 1440 + int((float(row["cell_min_lon"]) + 180) / 0.25))),
}
for name, (body, sql, key) in cases.items():
    times = {"airq direct": [], "airq queued": [], "DuckDB": []}
    for _ in range(runs):
        t = time.perf_counter(); direct = post(body, False); times["airq direct"].append(time.perf_counter() - t)
        t = time.perf_counter(); queued = post(body, True); times["airq queued"].append(time.perf_counter() - t)
        t = time.perf_counter()
        con.execute(f"COPY ({sql}) TO '{out}/duckdb.csv' (HEADER, DELIMITER ',')")
        times["DuckDB"].append(time.perf_counter() - t)
    assert direct == queued, "queued ≠ direct"
    airq = {key(r): r for r in csv.DictReader(io.StringIO(direct.decode()))}
    duck = {(r["period"], r["g"] if name.startswith("A") else int(r["g"])): r
            for r in csv.DictReader(open(f"{out}/duckdb.csv"))}
    same = airq.keys() == duck.keys()
    for k, d in duck.items():
        a = airq.get(k)
        if a is None or int(a["readings"]) < int(d["n"]) or \
           abs(float(a["P2_mean"]) - float(d["mean"])) > 0.005 + 1e-9 or \
           any(abs(float(a[f"P2_{s}"]) - float(d[s])) > 0.005 + 1e-9 for s in ("min", "p50", "p98", "max")):
            same = False
            print("differs:", k, a and {c: a[c] for c in a if c.startswith("P2_")}, dict(d))
            break
    print(f"{name}: {len(airq)} rows, {len(direct)} bytes; same groups and PM2.5 statistics: {same}")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"  {k:12} median {med[k]*1000:7.0f} ms (runs: {', '.join(f'{x*1000:.0f}' for x in v)})")
    print(f"  airq direct / DuckDB: {med['airq direct'] / med['DuckDB']:.2f}")
status = open(f"/proc/{worker}/status").read()
print("worker peak RSS:", [l.split(':')[1].strip() for l in status.splitlines() if l.startswith("VmHWM")][0])
PYEOF
