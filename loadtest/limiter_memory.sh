#!/usr/bin/env bash
# What the rate limiter's memory bound costs (issue 11): the gateway's
# resident memory before and after N clients (distinct addresses, through
# X-Forwarded-For from a trusted loopback proxy) each spent one request of
# their poll budget on GET /api/meta. Loopback only; N requests, no more.
#   loadtest/limiter_memory.sh [N]          (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
[ -n "${AIRQ_SKIP_BUILD:-}" ] || cargo build --release --quiet -p airq-gateway
dir="$(mktemp -d)"
trap 'kill $gw 2>/dev/null || true; rm -rf "$dir"' EXIT
target/release/airq-gateway --db "$dir/airq.db" --listen 127.0.0.1:0 --trusted-proxy 127.0.0.1 \
    --max-tracked-clients "$n" >"$dir/out" 2>"$dir/log" &
gw=$!
for _ in $(seq 1 100); do grep -q "listening on" "$dir/out" 2>/dev/null && break; sleep 0.1; done
port="$(sed -n 's|^listening on http://127.0.0.1:||p' "$dir/out")"
rss() { awk '/VmRSS/ {print $2}' "/proc/$gw/status"; }
python3 - "$port" 2000 <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(int(sys.argv[2])):   # warm up: the same client
    c.request("GET", "/api/meta"); c.getresponse().read()
PY
before="$(rss)"
python3 - "$port" "$n" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(int(sys.argv[2])):
    addr = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    c.request("GET", "/api/meta", headers={"X-Forwarded-For": addr})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
after="$(rss)"
echo "gateway RSS: $((before / 1024)) MiB before, $((after / 1024)) MiB after $n clients: $(( (after - before) * 1024 / n )) bytes per tracked client"
