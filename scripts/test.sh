#!/usr/bin/env bash
# Runs every test of airq on a fresh machine: formatting and lint gates, then
# the unit, property, contract and end-to-end suites. The end-to-end tests
# start the real binaries, so every binary is built first.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== build every binary"
cargo build --workspace --bins --quiet
echo "== tests"
cargo test --workspace --no-fail-fast
