#!/usr/bin/env bash
# The AWS emulator for airq's AWS-backend tests: moto in server mode, from
# PyPI, in a project-local virtual environment (.venv/, git-ignored).
#
#   bash scripts/moto.sh install        create .venv/ and install the pinned moto
#   eval "$(bash scripts/moto.sh start)" install if needed, start moto on a free
#                                        loopback port, wait until it answers and
#                                        export AIRQ_TEST_AWS_ENDPOINT, AIRQ_MOTO_PID
#                                        and dummy AWS credentials for it
#   bash scripts/moto.sh stop [PID]     stop the moto started above (default
#                                        $AIRQ_MOTO_PID)
#
# `start` prints shell `export` lines on stdout and everything else on
# stderr. The credentials it exports are moto's dummy ones ("testing"): moto
# accepts any, and they are no secret.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION="5.2.5"
VENV="${AIRQ_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

log() { echo "moto.sh: $*" >&2; }

install() {
    if [ -x "$VENV/bin/moto_server" ] &&
        [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" = "$MOTO_VERSION" ]; then
        return 0
    fi
    if ! command -v "$PYTHON" >/dev/null || ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            log "installing Python 3 with venv (Debian packages)"
            apt-get update -qq >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >&2
            PYTHON=python3
        else
            log "$PYTHON with its venv module is needed: install Python 3 (e.g. apt-get install python3 python3-venv)"
            exit 1
        fi
    fi
    log "installing moto[server]==$MOTO_VERSION into $VENV/"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" >&2 || {
        # Debian's python3 makes a venv without pip unless python3-venv is in.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
            rm -rf "$VENV"
            "$PYTHON" -m venv "$VENV" >&2
        else
            exit 1
        fi
    }
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "moto[server]==$MOTO_VERSION" >&2
}

free_port() {
    "$VENV/bin/python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Whether something answers HTTP on $1 (moto's dashboard API).
answers() {
    "$VENV/bin/python" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=1).read()
EOF
}

start() {
    install
    local port pid url log_file
    for _ in 1 2 3; do
        port="$(free_port)"
        url="http://127.0.0.1:$port"
        log_file="$VENV/moto-$port.log"
        "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log_file" 2>&1 &
        pid=$!
        for _ in $(seq 1 100); do
            if answers "$url"; then
                log "moto $MOTO_VERSION answers at $url (pid $pid, log $log_file)"
                echo "export AIRQ_TEST_AWS_ENDPOINT=$url"
                echo "export AIRQ_MOTO_PID=$pid"
                echo "export AWS_ACCESS_KEY_ID=testing"
                echo "export AWS_SECRET_ACCESS_KEY=testing"
                echo "export AWS_REGION=\${AWS_REGION:-us-east-1}"
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        # Lost the port to someone else, or too slow: try another port.
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        log "moto did not answer on port $port; log:"
        tail -n 20 "$log_file" >&2 || true
    done
    log "could not start moto"
    exit 1
}

stop() {
    local pid="${1:-${AIRQ_MOTO_PID:-}}"
    if [ -z "$pid" ]; then
        log "no pid given and AIRQ_MOTO_PID is unset"
        exit 1
    fi
    # Only the moto_server we started: check the command line first.
    if ps -o args= -p "$pid" 2>/dev/null | grep -q moto_server; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || return 0
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop "${2:-}" ;;
*)
    echo "usage: $0 install | start | stop [PID]" >&2
    exit 2
    ;;
esac
