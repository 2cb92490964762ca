#!/usr/bin/env bash
# The main job: builds airq in release mode and starts the whole stack on
# this machine (master, gateway, workers on one SQLite file). Extra
# arguments go to `airq-deploy up` (e.g. --workers 4 --listen 0.0.0.0:8080).
#
# The local stack runs on the embedded backend only, so this builds without
# the AWS backend (`--no-default-features`), which would more than double a
# first build. Build with `cargo build --release` for `--backend aws`.
# Nor does it keep line tables (`debug` in Cargo.toml's release profile, for
# profilers): a quarter of a first build's CPU on 2 cores is debug info.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "building airq (release, embedded backend; a first build takes a few minutes)..." >&2
CARGO_PROFILE_RELEASE_DEBUG="${CARGO_PROFILE_RELEASE_DEBUG:-false}" \
    cargo build --release --no-default-features \
    -p airq-master -p airq-gateway -p airq-worker -p airq-deploy --bins
exec target/release/airq-deploy up "$@"
