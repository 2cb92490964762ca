#!/usr/bin/env bash
# The airq load benchmark, end to end on this machine: builds every binary
# in release mode, then `airq-loadtest bench` creates (or reuses) a
# synthetic store (30 days x 15,000 sensors), creates an API key of the
# `unlimited` tier in a copy of it (`airq-deploy keys create --tier
# unlimited`; the key is never printed), starts the local stack on that copy
# (loopback, a free port) and sends the key (`--api-key`) with every run, so
# that the figures measure the system, not the rate limiter. It runs the
# seed matrix with the fixed query and the random mix, open-loop rate
# sweeps, a sustained random-mix run and a /healthz throughput run, writes
# target/bench/report.md, JSON summaries and SVG charts, and stops the
# stack.
#
# The charts are then copied to docs/bench/ (BENCHMARKS.md links them);
# set AIRQ_BENCH_PUBLISH="" to skip that. Extra arguments go to
# `airq-loadtest bench` (see `airq-loadtest bench --help`), e.g.
#   loadtest/bench.sh --workers 4 --step 5s
set -euo pipefail
cd "$(dirname "$0")/.."

publish="${AIRQ_BENCH_PUBLISH-docs/bench}"
out="${AIRQ_BENCH_OUT:-target/bench}"

cargo build --release --bins --quiet
status=0
target/release/airq-loadtest bench --out "$out" "$@" || status=$?
# 0: every target met; 2: some target missed (figures still written).
if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then
    exit "$status"
fi
if [ -n "$publish" ] && [ -d "$out/charts" ]; then
    mkdir -p "$publish"
    cp "$out"/charts/*.svg "$publish"/
    # The charts sit beside the published report.
    sed 's|(charts/|(|g' "$out/report.md" > "$publish/report.md"
    echo "charts and report copied to $publish/"
fi
exit "$status"
