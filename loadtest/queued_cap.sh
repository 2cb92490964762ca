#!/usr/bin/env bash
# The queued cap under a burst (issue 20, item 3): 200 submits at once with
# `Prefer: respond-async`, no worker running, from one client whose tier
# allows 5 queued queries and no submit budget; how many are accepted (202),
# on one gateway and spread over two gateways sharing one SQLite file.
# Each round is a new client (X-Forwarded-For from a trusted loopback
# proxy), so rounds do not see each other's queries. Loopback only;
# bounded: ROUNDS × 200 requests per setup.
#   loadtest/queued_cap.sh [ROUNDS] [CAP]     (default 20 5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-20}"
cap="${2:-5}"
[ -n "${AIRQ_SKIP_BUILD:-}" ] || cargo build --release --quiet -p airq-gateway
dir="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
# Not in a subshell, so that the trap knows every pid.
start() {
    local out="$dir/out.$1"
    target/release/airq-gateway --db "$dir/airq.db" --listen 127.0.0.1:0 \
        --trusted-proxy 127.0.0.1 --max-connections-per-client 0 \
        --tier "anonymous:submits=off,polls=off,queued=$cap" >"$out" 2>"$dir/log.$1" &
    pids+=($!)
    for _ in $(seq 1 100); do grep -q "listening on" "$out" 2>/dev/null && break; sleep 0.1; done
}
start a
start b
a="$(sed -n 's|^listening on http://||p' "$dir/out.a")"
b="$(sed -n 's|^listening on http://||p' "$dir/out.b")"
python3 - "$rounds" "$cap" "$a" "$b" <<'PY'
import http.client, sys, threading
rounds, cap, a, b = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
body = b'{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE"}'

def burst(gateways, client):
    barrier, got = threading.Barrier(200), []
    def one(i):
        host, port = gateways[i % len(gateways)].split(":")
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        c.connect()
        barrier.wait()
        c.request("POST", "/api/query", body, {
            "Content-Type": "application/json", "Prefer": "respond-async",
            "X-Forwarded-For": client})
        got.append(c.getresponse().status)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
    for t in threads: t.start()
    for t in threads: t.join()
    return got.count(202), len(got) - got.count(202) - got.count(429)

for name, gateways, base in [("one gateway", [a], 0), ("two gateways", [a, b], 100)]:
    accepted, other = [], 0
    for r in range(rounds):
        n, o = burst(gateways, f"10.20.{base + r // 250}.{r % 250 + 1}")
        accepted.append(n); other += o
    print(f"{name}: cap {cap}, {rounds} bursts of 200: accepted min {min(accepted)}, "
          f"max {max(accepted)}, over the cap in {sum(x > cap for x in accepted)} "
          f"(counts {sorted(accepted)}); other statuses: {other}")
PY
