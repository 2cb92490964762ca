#!/usr/bin/env bash
# Flame graphs of the gateway and of the workers under the sustained random
# mix (issue 27): the stack of random_sustained.sh (answer segments on, an
# `unlimited` key, 2 workers, the generator on the same machine) at RATE
# queries/s, and `perf record` on the gateway and on the workers for
# SECONDS after a warm-up of 5 s. Writes OUT/flame-gateway.svg and
# OUT/flame-worker.svg (inferno, `cargo install inferno`), the folded
# stacks beside them, and the generator's summary. On loopback; the run is
# bounded by --duration and --drain, perf by SECONDS.
#
# The release profile has no frame pointers, so perf unwinds with DWARF
# (the binaries' .eh_frame; `debug = "line-tables-only"` names the lines).
#
# Usage: loadtest/profile_mix.sh   (needs target/bench/store-*.db from loadtest/bench.sh)
# Env: AIRQ_PM_RATE (1000), AIRQ_PM_SECONDS (20), AIRQ_PM_FREQ (99),
#      AIRQ_PM_STORE (target/bench/store-30d-15000s.db), AIRQ_PM_OUT (target/profile-mix).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${AIRQ_PM_OUT:-target/profile-mix}"
store="${AIRQ_PM_STORE:-target/bench/store-30d-15000s.db}"
rate="${AIRQ_PM_RATE:-1000}"
seconds="${AIRQ_PM_SECONDS:-20}"
# Samples per second and process: DWARF unwinding copies 16 KiB of stack a
# sample, which at 499/s took a third of the stack's throughput.
freq="${AIRQ_PM_FREQ:-99}"
for tool in perf inferno-collapse-perf inferno-flamegraph; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (perf; cargo install inferno)" >&2; exit 1; }
done
cargo build --release --bins --quiet
bin=target/release
. loadtest/stack.sh
mkdir -p "$out"
load="" perf_gateway="" perf_worker=""
# On any exit (Ctrl-C too): the generator and perf are background jobs,
# which ignore the interrupt, so they are stopped here.
finish() {
    for pid in $load $perf_gateway $perf_worker; do kill -INT "$pid" 2>/dev/null || true; done
    stop_stack
}
trap finish EXIT
rm -rf "$out/run.db" "$out/run.db-bodies" "$out/run.db-wal" "$out/run.db-shm" "$out"/*.data "$out"/*.data.old "$out/run.json"
copy_store "$store" "$out"
key=$("$bin/airq-deploy" keys create --db "$out/run.db" --name bench --tier unlimited 2>/dev/null)
start_stack "$out"
gateway=$(pgrep -P "$stack" -x airq-gateway | head -1 || true)
workers=$(pgrep -P "$stack" -x airq-worker | paste -sd, - || true)
[ -n "$gateway" ] && [ -n "$workers" ] || { echo "no gateway or worker under the stack" >&2; exit 1; }
"$bin/airq-loadtest" "$url" --api-key "$key" --no-progress --query random --seed 1 \
    --rate "$rate" --duration "$((seconds + 10))s" --drain 30s --json "$out/run.json" \
    >"$out/loadtest.out" &
load=$!
sleep 5
perf record -F "$freq" --call-graph dwarf,16384 -o "$out/gateway.data" -p "$gateway" -- sleep "$seconds" 2>"$out/perf-gateway.log" &
perf_gateway=$!
perf record -F "$freq" --call-graph dwarf,16384 -o "$out/worker.data" -p "$workers" -- sleep "$seconds" 2>"$out/perf-worker.log" &
perf_worker=$!
for who in gateway worker; do
    pid=perf_$who
    wait "${!pid}" || { echo "perf on the $who failed:" >&2; cat "$out/perf-$who.log" >&2; exit 1; }
done
perf_gateway="" perf_worker=""
wait "$load" || echo "airq-loadtest exited with $?: see $out/loadtest.out" >&2
load=""
stop_stack
[ -f "$out/run.json" ] || { echo "no $out/run.json: the load run did not finish" >&2; exit 1; }
for who in gateway worker; do
    perf script -i "$out/$who.data" 2>"$out/script-$who.log" | inferno-collapse-perf >"$out/$who.folded" ||
        { echo "folding the $who's samples failed: see $out/script-$who.log" >&2; exit 1; }
    # Frames narrower than 0.25 % of the samples are left out (a readable,
    # committable file; the folded stacks keep everything).
    inferno-flamegraph --minwidth 0.25 --title "airq-$who, random mix at $rate/s" \
        <"$out/$who.folded" >"$out/flame-$who.svg"
done
python3 - "$out/run.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["steps"][0]
t = s["time_to_result"]
print(f"{s['ok']} ok, {s['errors']} errors, {s['ok_per_s']:.1f} results/s, "
      f"p50 {t['p50']:.0f} ms, p99 {t['p99']:.0f} ms, late {s['late']}")
PY
echo "flame graphs: $out/flame-gateway.svg $out/flame-worker.svg"
