#!/usr/bin/env bash
# Backfill throughput from a local directory (issue 15): a month of
# generated archive files for 1,000 sensors (`airq-master synth-archive`:
# deterministic, one file per sensor and day, 576 rows each like an SDS011,
# one sensor in ten an SPS30), then `airq-master backfill` on it, in release
# mode, into a fresh SQLite file. Prints readings/s, files/s and rows/s (from
# the run's own summary, which times the backfill alone) and the peak RSS
# (`/usr/bin/time -v`).
#
#   loadtest/backfill_bench.sh [WORK_DIR]
#
# WORK_DIR keeps the generated archive for the next run (default: a
# temporary directory, removed at the end). About 1.3 GB of files with the
# defaults. Settings (environment):
#   AIRQ_BB_SENSORS     1000     sensors
#   AIRQ_BB_DAYS        30       days, from 2025-09-01
#   AIRQ_BB_ROWS        576      rows per file
#   AIRQ_BB_RESOLUTION  daily    or raw (every row a reading; a large store)
#   AIRQ_BB_CONCURRENCY 8        files read at once
#   AIRQ_SKIP_BUILD     unset    set to use target/release as it is
set -euo pipefail
cd "$(dirname "$0")/.."
sensors="${AIRQ_BB_SENSORS:-1000}"
days="${AIRQ_BB_DAYS:-30}"
rows="${AIRQ_BB_ROWS:-576}"
resolution="${AIRQ_BB_RESOLUTION:-daily}"
concurrency="${AIRQ_BB_CONCURRENCY:-8}"
start=2025-09-01
end="$(date -u -d "$start + $((days - 1)) days" +%F)"

if [ -n "${1:-}" ]; then
    work="$1"
    mkdir -p "$work"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi
[ -n "${AIRQ_SKIP_BUILD:-}" ] || cargo build --release --quiet -p airq-master
bin=target/release/airq-master

archive="$work/archive-${sensors}s-${days}d-${rows}r"
if [ ! -f "$archive/.complete" ]; then
    # About 78 bytes a row; refuse to fill the disk.
    need_mib=$((sensors * days * rows * 80 / 1048576 + 256))
    free_mib="$(df -Pm "$work" | awk 'NR == 2 {print $4}')"
    if [ "$free_mib" -lt $((need_mib * 2)) ]; then
        echo "need about $need_mib MiB in $work (and room to spare), have $free_mib MiB" >&2
        exit 1
    fi
    rm -rf "$archive"
    echo "== generating $days days x $sensors sensors x $rows rows into $archive" >&2
    "$bin" synth-archive --out "$archive" --sensors "$sensors" --days "$days" \
        --rows "$rows" --start "$start" >&2
    touch "$archive/.complete"
fi
files="$(find "$archive" -name '*.csv' | wc -l)"
bytes="$(du -sb "$archive" | cut -f1)"

db="$work/bench.db"
rm -f "$db" "$db"-* "$db.backfill.json"
echo "== backfill $start .. $end ($resolution, concurrency $concurrency)" >&2
cmd=("$bin" backfill --db "$db" --source "$archive" --from "$start" --to "$end"
    --types sds011,sps30 --resolution "$resolution" --concurrency "$concurrency")
echo "/usr/bin/time -v ${cmd[*]}" >&2
/usr/bin/time -v -o "$work/time.txt" "${cmd[@]}" >"$work/summary.txt" 2>"$work/log.txt" || {
    cat "$work/summary.txt" "$work/log.txt" >&2
    exit 1
}

value() { sed -n "s/^$1 *\([0-9.]*\).*/\1/p" "$work/summary.txt" | head -1; }
secs="$(value 'elapsed:')"
stored="$(value 'stored:')"
read_files="$(value 'files read:')"
read_rows="$(value 'rows read:')"
rss_kib="$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt")"
wall="$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time.txt")"
cpu="$(sed -n 's/.*Percent of CPU this job got: //p' "$work/time.txt")"

cat "$work/summary.txt"
echo
echo "archive:     $files files, $((bytes / 1048576)) MiB, $days days x $sensors sensors x $rows rows"
echo "machine:     $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
awk -v s="$secs" -v st="$stored" -v f="$read_files" -v r="$read_rows" 'BEGIN {
    printf "backfill:    %.2f s\n", s
    printf "readings/s:  %.0f (%d readings stored)\n", st / s, st
    printf "files/s:     %.0f\n", f / s
    printf "rows/s:      %.0f\n", r / s
}'
echo "peak RSS:    $((rss_kib / 1024)) MiB ($rss_kib kB)"
echo "wall clock:  $wall (process), CPU $cpu"
echo "database:    $(du -h "$db" | cut -f1)"
