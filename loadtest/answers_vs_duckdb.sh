#!/usr/bin/env bash
# Large answers, airq against DuckDB and the sqlite3 CLI on the same rows,
# side by side (issue 27: answers from pre-built segments). Makes DAYS days
# of daily readings for SENSORS sensors in a fresh store, builds its answer
# segments (timed), copies the store without them for the row path, and
# exports every reading as airq answers it to a Parquet file sorted like
# the store. Then times, RUNS times each, alternating:
#
#   A. 31 days of one country (DE), CSV: airq from segments (direct and
#      queued), airq from rows (direct and queued: a second gateway and
#      worker on the copy, `--answer-segments false`), DuckDB copying the
#      same rows from the Parquet file to CSV;
#   B. 1 day of every country, CSV: the same, and the sqlite3 CLI writing
#      the same rows from the store as CSV.
#
# Every airq answer is checked byte for byte against the others; DuckDB's
# row count against airq's. Also prints the gzip bytes on the wire.
#
#   bash loadtest/answers_vs_duckdb.sh [SENSORS] [DAYS] [RUNS]   # default 15000, 31, 7
#
# Needs the release binaries (cargo build --release --no-default-features
# -p airq-master -p airq-gateway -p airq-worker), python3, sqlite3 and
# PyPI once (DuckDB is installed in target/duckdb-venv). Everything runs
# on loopback; the stores and files go to target/answers-vs-duckdb/.
set -euo pipefail
cd "$(dirname "$0")/.."
SENSORS=${1:-15000}
DAYS=${2:-31}
RUNS=${3:-7}
OUT=target/answers-vs-duckdb
DB=$OUT/segments/airq.db
ROWS_DB=$OUT/rows/airq.db
BIN=${AIRQ_BIN:-target/release}   # AIRQ_BIN: another build, side by side
mkdir -p "$OUT/segments" "$OUT/rows"
. loadtest/duckdb.sh
. loadtest/stack.sh

if [ ! -e "$OUT/loaded-$SENSORS-$DAYS" ]; then
  rm -rf "$OUT"/segments/* "$OUT"/rows/* "$OUT"/loaded-* "$OUT"/*.parquet
  echo "loading $DAYS days of daily readings for $SENSORS sensors…"
  /usr/bin/time -f "load: %e s, peak RSS %M KiB" "$BIN/airq-master" --db "$DB" synth \
    --days "$DAYS" --sensors "$SENSORS" --start 2024-01-01 --into-store >/dev/null
  sqlite3 "$DB" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
  cp "$DB" "$ROWS_DB"
  /usr/bin/time -f "segments: %e s, peak RSS %M KiB" "$BIN/airq-master" --db "$DB" segments
  du -sh "$DB" "$DB-segments"
  touch "$OUT/loaded-$SENSORS-$DAYS"
fi

start_pair() { # name db segments: a gateway and a worker
  "$BIN/airq-gateway" --db "$2" --answer-segments "$3" --listen 127.0.0.1:0 --max-span 31days \
    --direct-max-span 31days --max-result-rows 20000000 --answer-cache-ttl 0 \
    >"$OUT/$1-gateway.out" 2>"$OUT/$1-gateway.err" &
  echo $! >"$OUT/$1.pids"
  "$BIN/airq-worker" --db "$2" --answer-segments "$3" --concurrency 1 \
    >"$OUT/$1-worker.out" 2>"$OUT/$1-worker.err" &
  echo $! >>"$OUT/$1.pids"
}
start_pair seg "$DB" true
start_pair rows "$ROWS_DB" false
trap 'kill $(cat "$OUT"/seg.pids "$OUT"/rows.pids) 2>/dev/null || true' EXIT
SEG_URL=$(listening_url "$OUT/seg-gateway.out" "$OUT/seg-gateway.err" "seg gateway")
ROWS_URL=$(listening_url "$OUT/rows-gateway.out" "$OUT/rows-gateway.err" "rows gateway")

LAST=$(date -u -d "2024-01-01 + $((DAYS - 1)) days" +%Y-%m-%d)
PARQUET=$OUT/daily-$SENSORS-$DAYS.parquet
if [ ! -s "$PARQUET" ]; then
  curl -sS -X POST "$ROWS_URL/api/query" -H 'content-type: application/json' \
    -d "{\"startDate\":\"2024-01-01\",\"endDate\":\"$LAST\"}" >"$OUT/all.csv"
  "$PY" - "$OUT/all.csv" "$PARQUET" <<'PYEOF'
import duckdb, sys
src, dst = sys.argv[1], sys.argv[2]
con = duckdb.connect()
# Every column as airq writes it (text), plus the timestamp as a
# timestamp for the range filter; sorted like the store.
con.execute(f"""COPY (SELECT CAST(timestamp AS TIMESTAMP) AS ts, *
                FROM read_csv('{src}', all_varchar=true, header=true)
                ORDER BY ts, CAST(sensor_id AS BIGINT))
                TO '{dst}' (FORMAT parquet)""")
print("parquet rows:", con.execute(f"SELECT count(*) FROM '{dst}'").fetchone()[0])
PYEOF
  rm -f "$OUT/all.csv"
fi

"$PY" - "$SEG_URL" "$ROWS_URL" "$PARQUET" "$OUT" "$RUNS" "$LAST" "$ROWS_DB" <<'PYEOF'
import duckdb, gzip, statistics, subprocess, sys, time, urllib.request
seg_url, rows_url, parquet, out, runs, last, rows_db = sys.argv[1:8]
runs = int(runs)
con = duckdb.connect()

def post(url, body, queued, gz=False):
    headers = {"content-type": "application/json"}
    if queued:
        headers["Prefer"] = "respond-async"
    if gz:
        headers["Accept-Encoding"] = "gzip"
    req = urllib.request.Request(f"{url}/api/query", data=body.encode(), method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=600) as r:
        status, h, data = r.status, r.headers, r.read()
    if not queued:
        assert status == 200 and h["X-Airq-Answer"] == "direct", (status, dict(h))
        return data
    assert status == 202, status
    loc = h["Location"]
    while True:
        with urllib.request.urlopen(f"{url}{loc}?wait=20s", timeout=60) as r:
            if r.status == 200:
                return r.read()

COLS = "id, timestamp, sensor_id, sensor_type, loc_id, loc_country, loc_lat, loc_long, loc_alt, P1, P2, AQI, Range"
cases = {
    "A. 31 days, country DE": (
        f'{{"startDate":"2024-01-01","endDate":"{last}","country":"DE"}}',
        f"SELECT {COLS} FROM '{parquet}' WHERE loc_country = 'DE' AND ts BETWEEN '2024-01-01' AND '{last} 23:59:59' ORDER BY ts, CAST(sensor_id AS BIGINT)",
        None),
    "B. 1 day, every country": (
        '{"startDate":"2024-01-15","endDate":"2024-01-15"}',
        f"SELECT {COLS} FROM '{parquet}' WHERE ts BETWEEN '2024-01-15' AND '2024-01-15 23:59:59' ORDER BY ts, CAST(sensor_id AS BIGINT)",
        # The same rows and columns straight from the store's table.
        "SELECT id, strftime('%Y-%m-%d %H:%M:%S', ts, 'unixepoch') AS timestamp, sensor_id, sensor_type, loc_id, "
        "loc_country, loc_lat, loc_long, loc_alt, p1 AS P1, p2 AS P2, aqi AS AQI, aqi AS Range FROM readings "
        "WHERE ts BETWEEN 1705276800 AND 1705363199 ORDER BY ts, sensor_id"),
}
for name, (body, sql, sqlite_sql) in cases.items():
    times = {k: [] for k in ("segments direct", "segments queued", "rows direct", "rows queued", "DuckDB")}
    if sqlite_sql:
        times["sqlite3 CLI"] = []
    answers = {}
    for _ in range(runs):
        for k, url, queued in (("segments direct", seg_url, False), ("rows direct", rows_url, False),
                               ("segments queued", seg_url, True), ("rows queued", rows_url, True)):
            t = time.perf_counter(); answers[k] = post(url, body, queued); times[k].append(time.perf_counter() - t)
        t = time.perf_counter()
        con.execute(f"COPY ({sql}) TO '{out}/duckdb.csv' (HEADER, DELIMITER ',')")
        times["DuckDB"].append(time.perf_counter() - t)
        if sqlite_sql:
            t = time.perf_counter()
            with open(f"{out}/sqlite.csv", "wb") as f:
                subprocess.run(["sqlite3", "-csv", "-header", rows_db, sqlite_sql], stdout=f, check=True)
            times["sqlite3 CLI"].append(time.perf_counter() - t)
    first = answers["rows direct"]
    same = all(a == first for a in answers.values())
    duck_rows = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
    airq_rows = first.count(b"\n") - 1
    zipped = post(seg_url, body, False, gz=True)
    print(f"{name}: {airq_rows} rows, {len(first)} bytes; the four airq answers identical: {same}; "
          f"DuckDB rows: {duck_rows}; gzip on the wire: {len(zipped)} bytes ({len(zipped) / len(first):.3f} of plain)")
    assert gzip.decompress(zipped) == first, "the gzipped answer is the answer"
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"  {k:16} median {med[k]*1000:7.1f} ms (runs: {', '.join(f'{x*1000:.0f}' for x in v)})")
    print(f"  segments direct / DuckDB: {med['segments direct'] / med['DuckDB']:.2f}; "
          f"segments queued / DuckDB: {med['segments queued'] / med['DuckDB']:.2f}; "
          f"rows direct / segments direct: {med['rows direct'] / med['segments direct']:.2f}")
    if sqlite_sql:
        print(f"  segments direct / sqlite3 CLI: {med['segments direct'] / med['sqlite3 CLI']:.2f}")
PYEOF
