#!/usr/bin/env bash
# Unfinished large headers (issue 20, item 1): N connections from one
# address each send `GET /healthz HTTP/1.1`, a `Host` and `X-Big: ` followed
# by 400,000 × `a`, and never finish. Meanwhile another client (another
# loopback address, 127.0.0.2) asks GET /healthz over one kept-alive
# connection every 10 ms. Reports the gateway's peak RSS while the attack
# lasts (sampled every 50 ms), its RSS a minute after the attackers close,
# and the other client's latency. Loopback only; bounded: N connections,
# HOLD seconds of attack, one minute of waiting.
#   loadtest/header_memory.sh [N] [HOLD] [GATEWAY ARGS…]   (default 3000 10)
# e.g. `loadtest/header_memory.sh 3000 10 --max-connections-per-client 0`
# measures the header bound alone (every connection admitted).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-3000}"
hold="${2:-10}"
shift 2 || shift $#
[ -n "${AIRQ_SKIP_BUILD:-}" ] || cargo build --release --quiet -p airq-gateway
ulimit -n 16384
dir="$(mktemp -d)"
gw=""
trap '[ -n "$gw" ] && kill $gw 2>/dev/null; rm -rf "$dir"' EXIT
target/release/airq-gateway --db "$dir/airq.db" --listen 127.0.0.1:0 "$@" \
    >"$dir/out" 2>"$dir/log" &
gw=$!
for _ in $(seq 1 100); do grep -q "listening on" "$dir/out" 2>/dev/null && break; sleep 0.1; done
port="$(sed -n 's|^listening on http://127.0.0.1:||p' "$dir/out")"
python3 - "$port" "$n" "$hold" "$gw" <<'PY'
import asyncio, socket, statistics, sys, time

port, n, hold, pid = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]

def rss_mib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

async def attacker(stop, outcome):
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        outcome["connect failed"] = outcome.get("connect failed", 0) + 1
        return
    key = None
    try:
        w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 40_000
        for _ in range(10):            # 400,000 bytes, never a line end
            w.write(chunk)
            await asyncio.wait_for(w.drain(), timeout=hold)
        answer = await asyncio.wait_for(r.read(64), timeout=hold)
        key = answer.split(b"\r\n")[0].decode(errors="replace") or "closed, no answer"
    except asyncio.TimeoutError:
        key = "still open"
    except (OSError, ConnectionError):
        # What the server said before closing, if it reached us.
        said = bytes(r._buffer[:64]).split(b"\r\n")[0].decode(errors="replace")
        key = (said or "reset, no answer read") + " (then reset)"
    outcome[key] = outcome.get(key, 0) + 1
    try:
        await stop.wait()
    finally:
        w.close()

async def prober(stop, lat):
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    r, w = await asyncio.open_connection(sock=s)
    while not stop.is_set():
        t0 = time.perf_counter()
        w.write(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n")
        head = await r.readuntil(b"\r\n\r\n")
        length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
        await r.readexactly(length)
        lat.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.01)
    w.close()

async def main():
    base = rss_mib()
    stop, outcome, lat, peak = asyncio.Event(), {}, [], [base]
    async def sample():
        while not stop.is_set():
            peak.append(rss_mib())
            await asyncio.sleep(0.05)
    tasks = [asyncio.create_task(sample()), asyncio.create_task(prober(stop, lat))]
    attackers = [asyncio.create_task(attacker(stop, outcome)) for _ in range(n)]
    await asyncio.sleep(hold)
    stop.set()
    await asyncio.gather(*attackers, *tasks, return_exceptions=True)
    closed = rss_mib()
    await asyncio.sleep(60)
    later = rss_mib()
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"{n} attackers for {hold:.0f} s: what they got: {dict(sorted(outcome.items()))}")
    print(f"gateway RSS: {base:.1f} MiB before, peak {max(peak):.1f} MiB during, "
          f"{closed:.1f} MiB as they close, {later:.1f} MiB a minute later")
    print(f"other client's /healthz: {len(lat)} requests, p50 {p(0.5):.2f} ms, "
          f"p99 {p(0.99):.2f} ms, max {lat[-1]:.2f} ms")

asyncio.run(main())
PY
