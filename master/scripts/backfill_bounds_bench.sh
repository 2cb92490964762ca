#!/usr/bin/env bash
# Peak memory of a backfill from a hostile directory (red-team issue, item
# 4): the bounds on what `airq-master backfill --source DIR` reads, measured
# with `/usr/bin/time -v` on the release binary. Three runs, each on one
# day's directory built here (in a temporary directory, removed at the end):
#
#   baseline   one good archive file: the process's own floor (the country
#              boundaries, the store, the runtime);
#   oversized  eight 200 MB files of one line each (over the 64 MiB limit on
#              a file: refused by their size, before any read) and a
#              symbolic link to /dev/zero (out of the source: skipped),
#              beside the good file;
#   long-line  eight 63 MiB files of a header and one long line each (under
#              the file limit, so read to their end through the 64 KiB cap
#              on a line: one malformed row each), beside the good file.
#
# Before the bounds, the 200 MB file made 282 MB of RSS, eight of them
# 2.1 GB, and the link to /dev/zero grew to 23 GB until the OOM killer came.
#
#   master/scripts/backfill_bounds_bench.sh [WORK_DIR]
#
# WORK_DIR (default: a new temporary directory) needs about 2.2 GB free; it
# is emptied at the end either way. AIRQ_SKIP_BUILD=1 uses target/release as
# it is. Each run is killed after 600 s (a hang is a failure, not a figure).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -n "${1:-}" ]; then
    mkdir -p "$1"
    work="$(mktemp -d "$1/bounds.XXXXXX")"
else
    work="$(mktemp -d)"
fi
trap 'rm -rf "$work"' EXIT
[ -n "${AIRQ_SKIP_BUILD:-}" ] || cargo build --release --quiet -p airq-master
bin=target/release/airq-master

need_mib=$((8 * 200 + 8 * 63 + 256))
free_mib="$(df -Pm "$work" | awk 'NR == 2 {print $4}')"
if [ "$free_mib" -lt $((need_mib * 2)) ]; then
    echo "need about $need_mib MiB in $work (and room to spare), have $free_mib MiB" >&2
    exit 1
fi

day=2025-10-15
header="sensor_id;sensor_type;location;lat;lon;timestamp;P1;durP1;ratioP1;P2;durP2;ratioP2"
good() { # the directory to put one good SDS011 file in
    {
        echo "$header"
        for h in 00 06 12 18; do
            echo "1;SDS011;5001;51.50740000;-0.12780000;${day}T$h:00:00;10.00;;;5.00;;"
        done
    } >"$1/${day}_sds011_sensor_1.csv"
}
one_line() { # path, bytes[, header]: one line of 'x' without a newline, real bytes on disk
    { [ -z "${3:-}" ] || echo "$3"; head -c "$2" /dev/zero | tr '\0' 'x'; } >"$1"
}

# name, then how to fill the day's directory
make_case() {
    local dir="$work/$1/$day"
    mkdir -p "$dir"
    good "$dir"
    case "$1" in
    baseline) ;;
    oversized)
        for i in $(seq 101 108); do one_line "$dir/${day}_sds011_sensor_$i.csv" 200000000; done
        ln -s /dev/zero "$dir/${day}_sds011_sensor_199.csv"
        ;;
    long-line)
        for i in $(seq 101 108); do
            one_line "$dir/${day}_sds011_sensor_$i.csv" $((63 << 20)) "$header"
        done
        ;;
    esac
}

value() { sed -n "s/^ *$1 *\([0-9.]*\).*/\1/p" "$2" | head -1; }

printf '%-10s %4s %5s %7s %6s %5s %9s %9s %9s\n' \
    case exit read skipped failed rows malformed "wall" "peak RSS"
for c in baseline oversized long-line; do
    make_case "$c"
    db="$work/$c.db"
    cmd=("$bin" backfill --db "$db" --source "$work/$c" --from "$day" --to "$day" --concurrency 8)
    echo "/usr/bin/time -v ${cmd[*]}" >>"$work/commands.txt"
    set +e
    /usr/bin/time -v -o "$work/$c.time" timeout 600 "${cmd[@]}" >"$work/$c.out" 2>"$work/$c.log"
    code=$?
    set -e
    if [ "$code" -ge 124 ]; then
        echo "$c: killed or timed out (exit $code)" >&2
        tail -20 "$work/$c.log" >&2
        exit 1
    fi
    rss_kib="$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/$c.time")"
    wall="$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/$c.time")"
    printf '%-10s %4s %5s %7s %6s %5s %9s %9s %5s MiB\n' "$c" "$code" \
        "$(value 'files read:' "$work/$c.out")" "$(value 'files skipped:' "$work/$c.out")" \
        "$(value 'files failed:' "$work/$c.out")" "$(value 'rows read:' "$work/$c.out")" \
        "$(value 'malformed entry:' "$work/$c.out")" "$wall" "$((rss_kib / 1024))"
    # Only the case being measured on disk at a time.
    rm -rf "${work:?}/$c"
done
echo
echo "commands (each in a fresh directory under $work, removed since):"
sed 's/^/  /' "$work/commands.txt"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
