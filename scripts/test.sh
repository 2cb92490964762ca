#!/usr/bin/env bash
# Runs every test of airq on a fresh machine: formatting and lint gates, then
# the unit, property, contract and end-to-end suites. The end-to-end tests
# start the real binaries, so every binary is built first. The aws backend's
# tests run against moto (an AWS emulator), which scripts/moto.sh installs
# into .venv/ and starts on loopback for the length of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-shot build gains nothing from incremental state, which is several
# GB of the target directory; CI disks are not large.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== crate rules (ARCHITECTURE.md): the domain knows no backend; binaries build without AWS"
if cargo tree -p airq-core -e normal --prefix none | grep -E '^(rusqlite|r2d2|aws-[a-z-]+|tokio) '; then
    echo "airq-core must not depend on a backend or a runtime (see above)" >&2
    exit 1
fi
cargo clippy -p airq-master -p airq-gateway -p airq-worker -p airq-deploy --no-default-features \
    --all-targets --quiet -- -D warnings
# airq-cli alone is built without `aws`: its test of the refusal runs there.
cargo test -p airq-cli --quiet
echo "== build every binary"
cargo build --workspace --bins --quiet
echo "== Chromium and chromedriver (the web page's browser test), curl (the README's examples)"
if { [ -n "${AIRQ_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; } &&
    { [ -n "${AIRQ_CHROMEDRIVER:-}" ] || command -v chromedriver >/dev/null 2>&1; } &&
    command -v curl >/dev/null 2>&1; then
    echo "present"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver curl >/dev/null
    chromedriver --version
else
    echo "missing, and not root on Debian: install them (sudo apt-get install -y chromium chromium-driver curl)" >&2
    echo "or set AIRQ_CHROMIUM and AIRQ_CHROMEDRIVER; the browser test fails without them" >&2
fi
echo "== axe-core (the browser test's accessibility checks), from the npm registry"
# One file of the package, pinned by version and checksum; no node needed.
axe_dir=target/axe-core-4.14.1
if [ ! -s "$axe_dir/package/axe.min.js" ]; then
    mkdir -p "$axe_dir"
    curl -sSfL --retry 3 -o "$axe_dir.tgz" https://registry.npmjs.org/axe-core/-/axe-core-4.14.1.tgz
    echo "e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745  $axe_dir.tgz" | sha256sum -c --quiet
    tar -xzf "$axe_dir.tgz" -C "$axe_dir" package/axe.min.js
    rm -f "$axe_dir.tgz"
fi
echo "present"
echo "== Prometheus (the operator's kit checked against a real one)"
if command -v prometheus >/dev/null 2>&1; then
    echo "present"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    prometheus --version 2>&1 | head -1
else
    echo "missing, and not root on Debian: install it (sudo apt-get install prometheus)" >&2
    echo "the Prometheus test (deploy/tests/prometheus.rs) fails without it" >&2
fi
echo "== AWS emulator (moto in .venv/, for the aws backend's tests)"
# Two steps, so that a moto that fails to start stops the run here (an
# `eval "$(...)"` would swallow the failure).
moto_env="$(bash scripts/moto.sh start)"
eval "$moto_env"
trap 'bash scripts/moto.sh stop "$AIRQ_MOTO_PID"' EXIT
echo "== OpenAPI validator (openapi-spec-validator in .venv/, for gateway/tests/openapi.rs)"
"${AIRQ_VENV:-.venv}/bin/python" -m pip install --quiet --disable-pip-version-check "openapi-spec-validator==0.9.0"
echo "== schemathesis (in .venv/, for gateway/tests/schemathesis.rs)"
"${AIRQ_VENV:-.venv}/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==4.32.5"
echo "== cfn-lint (in .venv/, for deploy/tests/template.rs)"
"${AIRQ_VENV:-.venv}/bin/python" -m pip install --quiet --disable-pip-version-check "cfn-lint==1.58.0"
echo "== tests"
cargo test --workspace --no-fail-fast
