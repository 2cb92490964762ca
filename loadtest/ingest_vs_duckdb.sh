#!/usr/bin/env bash
# Ingesting a feed file, airq against DuckDB's `read_json` into a table,
# side by side (issue 27: ingestion ahead of DuckDB). Makes a synthetic
# feed of about a million readings (DAYS days × SENSORS sensors, from the
# shipped sample), then RUNS times, alternating, each into a fresh store:
#
#   airq        `airq-master ingest --source FEED` (parse, validate, the
#               three indices, store, latest; then the answer segments
#               of the days it changed);
#   airq, no segments   the same with `--answer-segments false`;
#   DuckDB      `CREATE TABLE feed AS SELECT * FROM read_json(FEED)` into
#               a fresh database file.
#
# Wall time and peak RSS of each process (`/usr/bin/time`; DuckDB's
# includes starting Python and importing it, which the script measures
# alone first and prints), medians.
#
#   bash loadtest/ingest_vs_duckdb.sh [SENSORS] [DAYS] [RUNS]   # default 33334, 30, 3
#
# Needs the release binary (cargo build --release --no-default-features
# -p airq-master), python3 and PyPI once (DuckDB in target/duckdb-venv).
# Files go to target/ingest-vs-duckdb/.
set -euo pipefail
cd "$(dirname "$0")/.."
SENSORS=${1:-33334}
DAYS=${2:-30}
RUNS=${3:-3}
OUT=target/ingest-vs-duckdb
BIN=${AIRQ_BIN:-target/release}   # AIRQ_BIN: another build, side by side
mkdir -p "$OUT"
. loadtest/duckdb.sh
FEED=$OUT/feed-$SENSORS-$DAYS.json
if [ ! -s "$FEED" ]; then
  "$BIN/airq-master" synth --days "$DAYS" --sensors "$SENSORS" --out "$FEED" >/dev/null
fi
ls -l "$FEED"

measure() { # label command… → "label seconds kib" on stdout
  local label="$1"
  shift
  /usr/bin/time -f "%e %M" -o "$OUT/time" "$@" >/dev/null 2>"$OUT/err" || { cat "$OUT/err" >&2; exit 1; }
  echo "$label $(cat "$OUT/time")"
}
fresh() { rm -rf "$OUT/airq.db" "$OUT"/airq.db-* "$OUT/duck.duckdb" "$OUT/duck.duckdb.wal"; }

: >"$OUT/runs"
fresh
measure "python+import" "$PY" -c 'import duckdb' >>"$OUT/runs"
for _ in $(seq 1 "$RUNS"); do
  fresh
  measure "airq" "$BIN/airq-master" --db "$OUT/airq.db" ingest --source "$FEED" >>"$OUT/runs"
  fresh
  measure "airq-no-segments" "$BIN/airq-master" --db "$OUT/airq.db" --answer-segments false \
    ingest --source "$FEED" >>"$OUT/runs"
  fresh
  measure "DuckDB" "$PY" -c "import duckdb, sys
con = duckdb.connect(sys.argv[1])
con.execute(f\"CREATE TABLE feed AS SELECT * FROM read_json('{sys.argv[2]}')\")
print(con.execute('SELECT count(*) FROM feed').fetchone()[0], file=sys.stderr)" \
    "$OUT/duck.duckdb" "$FEED" >>"$OUT/runs"
done
fresh
python3 - "$OUT/runs" <<'PYEOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, secs, kib = line.split()
    runs.setdefault(label, []).append((float(secs), int(kib)))
for label, v in runs.items():
    t = statistics.median(s for s, _ in v)
    m = statistics.median(k for _, k in v)
    print(f"{label:18} median {t:6.2f} s, peak RSS {m / 1024:6.0f} MiB (runs: {', '.join(f'{s:.2f} s' for s, _ in v)})")
if "DuckDB" in runs:
    d = statistics.median(s for s, _ in runs["DuckDB"])
    dm = statistics.median(k for _, k in runs["DuckDB"])
    for label in ("airq", "airq-no-segments"):
        a = statistics.median(s for s, _ in runs[label])
        am = statistics.median(k for _, k in runs[label])
        print(f"{label} / DuckDB: time {a / d:.2f}, memory {am / dm:.2f}")
PYEOF
