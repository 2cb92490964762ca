#!/usr/bin/env bash
# What an idle gateway and worker cost: both on a fresh store (release
# binaries, loopback), their CPU time (utime + stime from /proc/PID/stat)
# over SECONDS seconds with nothing to do. Linux only.
#
#   bash loadtest/idle_cpu.sh [SECONDS]    # default 20
# Env: AIRQ_BIN (another build's binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
BIN=${AIRQ_BIN:-target/release}
D=$(mktemp -d)
"$BIN/airq-gateway" --db "$D/airq.db" --listen 127.0.0.1:0 >"$D/g.out" 2>"$D/g.err" &
G=$!
"$BIN/airq-worker" --db "$D/airq.db" --concurrency 2 >"$D/w.out" 2>"$D/w.err" &
W=$!
trap 'kill $G $W 2>/dev/null || true; wait 2>/dev/null; rm -rf "$D"' EXIT
sleep 3
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
g0=$(cpu $G) w0=$(cpu $W)
sleep "$SECS"
g1=$(cpu $G) w1=$(cpu $W)
tck=$(getconf CLK_TCK)
echo "idle for $SECS s: gateway $(((g1 - g0) * 1000 / tck)) ms of CPU, worker $(((w1 - w0) * 1000 / tck)) ms"
