#!/usr/bin/env bash
# Rows read against rows returned for `near` queries over one dense day
# (issue: place filters use an index), on the embedded store, with each
# query's time beside raw SQLite answering the same question by reading the
# day. Figures: BENCHMARKS.md, "Place filters".
#
# Usage: loadtest/near_rows.sh [OUT_DIR]   (default target/near-rows)
# Env: AIRQ_NR_SENSORS (15000), AIRQ_NR_PER_DAY (24), AIRQ_NR_RUNS (15).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/near-rows}"
sensors="${AIRQ_NR_SENSORS:-15000}"
per_day="${AIRQ_NR_PER_DAY:-24}"
runs="${AIRQ_NR_RUNS:-15}"
mkdir -p "$out"
db="$out/day-${sensors}s-${per_day}pd.db"
cargo build --release -q -p airq-master --bin airq-master
cargo build --release -q -p airq-loadtest --example near_rows
if [ ! -f "$db" ]; then
    target/release/airq-master synth --into-store --db "$db" --days 1 \
        --start 2024-01-01 --sensors "$sensors" --per-day "$per_day" >&2
fi
target/release/examples/near_rows "$db" 2024-01-01 "$runs"
