#!/usr/bin/env bash
# The main job: builds airq in release mode and starts the whole stack on
# this machine (master, gateway, workers on one SQLite file). Extra
# arguments go to `airq-deploy up` (e.g. --workers 4 --listen 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins --quiet
exec target/release/airq-deploy up "$@"
