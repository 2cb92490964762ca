#!/usr/bin/env bash
# A 7-day hourly country query, airq against DuckDB on the same rows,
# side by side (issue: live air). Makes 30 days of 5-minute feeds for
# SENSORS sensors into a fresh store (the live tier keeps the hourly
# series), exports the hourly rows as airq answers them (the CSV's columns,
# sorted by time then sensor) to Parquet, then times, RUNS times each,
# alternating: airq's direct answer (`POST /api/query`, resolution hour,
# country DE, 7 days, CSV) from its answer segments, the same from a
# gateway that reads the rows only (`--answer-segments false`), and DuckDB
# copying the same rows from the
# Parquet file to CSV. Prints the medians and checks the two CSVs are the
# same rows.
#
#   bash loadtest/hourly_vs_duckdb.sh [SENSORS] [RUNS]     # default 1500, 7
#
# Needs the release binaries (cargo build --release --no-default-features
# -p airq-master -p airq-gateway), python3 and the network to PyPI once
# (DuckDB is installed in target/duckdb-venv). Everything runs on loopback;
# the store and the files go to target/hourly-vs-duckdb/.
set -euo pipefail
cd "$(dirname "$0")/.."
SENSORS=${1:-1500}
RUNS=${2:-7}
OUT=target/hourly-vs-duckdb
DB=$OUT/airq.db
BIN=target/release
mkdir -p "$OUT"
. loadtest/duckdb.sh
. loadtest/stack.sh

if [ ! -e "$OUT/loaded-$SENSORS" ]; then
  rm -rf "$DB" "$DB"-* "$OUT"/loaded-*
  echo "loading 30 days of 5-minute feeds for $SENSORS sensors…"
  /usr/bin/time -f "load: %e s, peak RSS %M KiB" "$BIN/airq-master" --db "$DB" synth --resolution 5min \
    --days 30 --sensors "$SENSORS" --start 2024-01-01 --batch-size 18000 --into-store >/dev/null
  touch "$OUT/loaded-$SENSORS"
fi
# The answer segments of every day not built yet (issue 27).
/usr/bin/time -f "segments: %e s, peak RSS %M KiB" "$BIN/airq-master" --db "$DB" segments

START="2024-01-20 00:00:00"
END="2024-01-26 23:59:59"
QUERY="{\"startDate\":\"$START\",\"endDate\":\"$END\",\"country\":\"DE\",\"resolution\":\"hour\"}"

# The hourly rows as airq's CSV has them, to Parquet, sorted as answered.
"$BIN/airq-gateway" --db "$DB" --listen 127.0.0.1:0 --max-span 31days --direct-max-span 31days \
  --max-result-rows 20000000 --answer-cache-ttl 0 >"$OUT/gateway.out" 2>"$OUT/gateway.err" &
GW=$!
trap 'kill $GW 2>/dev/null || true' EXIT
URL=$(listening_url "$OUT/gateway.out" "$OUT/gateway.err" gateway)
if [ ! -s "$OUT/hourly-$SENSORS.parquet" ]; then
  # The whole 30 days, every country, as airq answers it (queried by
  # 7-day pieces, within the hourly series' span).
  : > "$OUT/all.csv"
  for from in 01 08 15 22 29; do
    to=$(date -u -d "2024-01-$from + 6 days" +%Y-%m-%d)
    body="{\"startDate\":\"2024-01-$from 00:00:00\",\"endDate\":\"$to 23:59:59\",\"resolution\":\"hour\"}"
    if [ "$from" = 01 ]; then
      curl -sS -X POST "$URL/api/query" -H 'content-type: application/json' -d "$body" >> "$OUT/all.csv"
    else
      curl -sS -X POST "$URL/api/query" -H 'content-type: application/json' -d "$body" | tail -n +2 >> "$OUT/all.csv"
    fi
  done
  "$PY" - "$OUT/all.csv" "$OUT/hourly-$SENSORS.parquet" <<'PYEOF'
import duckdb, sys
src, dst = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(f"""COPY (SELECT * FROM read_csv('{src}', all_varchar=true, header=true)
                ORDER BY timestamp, CAST(sensor_id AS BIGINT))
                TO '{dst}' (FORMAT parquet)""")
print("parquet rows:", con.execute(f"SELECT count(*) FROM '{dst}'").fetchone()[0])
PYEOF
fi

# A second gateway on the same store that reads the rows only.
"$BIN/airq-gateway" --db "$DB" --answer-segments false --listen 127.0.0.1:0 --max-span 31days \
  --direct-max-span 31days --max-result-rows 20000000 --answer-cache-ttl 0 \
  >"$OUT/rows-gateway.out" 2>"$OUT/rows-gateway.err" &
GW2=$!
trap 'kill $GW $GW2 2>/dev/null || true' EXIT
ROWS_URL=$(listening_url "$OUT/rows-gateway.out" "$OUT/rows-gateway.err" "second gateway")

# Alternating runs: airq direct (segments, then rows), then DuckDB, RUNS times.
"$PY" - "$URL" "$QUERY" "$OUT/hourly-$SENSORS.parquet" "$OUT" "$RUNS" "$START" "$END" "$ROWS_URL" <<'PYEOF'
import duckdb, json, statistics, subprocess, sys, time
url, query, parquet, out, runs, start, end, rows_url = sys.argv[1:9]
runs = int(runs)
con = duckdb.connect()
airq, rows_path, duck = [], [], []
for i in range(runs):
    t = time.perf_counter()
    subprocess.run(["curl", "-sS", "-o", f"{out}/airq.csv", "-X", "POST", f"{url}/api/query",
                    "-H", "content-type: application/json", "-d", query], check=True)
    airq.append(time.perf_counter() - t)
    t = time.perf_counter()
    subprocess.run(["curl", "-sS", "-o", f"{out}/rows.csv", "-X", "POST", f"{rows_url}/api/query",
                    "-H", "content-type: application/json", "-d", query], check=True)
    rows_path.append(time.perf_counter() - t)
    t = time.perf_counter()
    con.execute(f"""COPY (SELECT * FROM '{parquet}'
                    WHERE loc_country = 'DE' AND timestamp BETWEEN '{start}' AND '{end}'
                    ORDER BY timestamp, CAST(sensor_id AS BIGINT))
                    TO '{out}/duckdb.csv' (HEADER, DELIMITER ',')""")
    duck.append(time.perf_counter() - t)
rows = sum(1 for _ in open(f"{out}/airq.csv")) - 1
size = sum(len(l) for l in open(f"{out}/airq.csv", "rb"))
a, d = statistics.median(airq), statistics.median(duck)
print(f"rows: {rows}, airq CSV {size} bytes")
print(f"airq direct: median {a*1000:.0f} ms (runs: {', '.join(f'{x*1000:.0f}' for x in airq)})")
r = statistics.median(rows_path)
print(f"airq direct, rows only: median {r*1000:.0f} ms (runs: {', '.join(f'{x*1000:.0f}' for x in rows_path)})")
print("segments and rows answers identical:", open(f"{out}/airq.csv", "rb").read() == open(f"{out}/rows.csv", "rb").read())
print(f"DuckDB:      median {d*1000:.0f} ms (runs: {', '.join(f'{x*1000:.0f}' for x in duck)})")
print(f"airq / DuckDB: {a/d:.2f}")
def rows_of(path):
    with open(path) as f:
        next(f)
        return sorted(line.rstrip("\n") for line in f)
# DuckDB writes an empty cell as empty, as airq does; the same rows either way.
same = rows_of(f"{out}/airq.csv") == rows_of(f"{out}/duckdb.csv")
print("same rows:", same)
PYEOF
