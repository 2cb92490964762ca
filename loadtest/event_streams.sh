#!/usr/bin/env bash
# Many result event streams on one gateway (issue 24): N clients follow the
# same queued result through `GET /api/results/{id}/events` while no worker
# runs; the gateway's RSS is read before and once every stream has its
# `queued` event; then a worker starts, and each stream's `done` is timed
# from the first stream's (the fan-out of one recorded result to every
# follower). Loopback only; bounded: N connections, 120 s in all.
#   loadtest/event_streams.sh [N]      (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"
ulimit -n "$((n + 1024))"
[ -n "${AIRQ_SKIP_BUILD:-}" ] || cargo build --release --quiet -p airq-gateway -p airq-worker -p airq-master
bin=target/release
dir="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

"$bin/airq-master" --db "$dir/airq.db" ingest --source data/sample/201806032249_data.dust.min.json >/dev/null 2>&1
"$bin/airq-gateway" --db "$dir/airq.db" --listen 127.0.0.1:0 --max-connections-per-client 0 \
    --max-connections "$((n + 100))" --max-followers "$((n + 10))" --max-followers-per-client "$((n + 10))" \
    --tier "anonymous:submits=off,polls=off,queued=off" >"$dir/gw.out" 2>"$dir/gw.log" &
gw=$!
pids+=($gw)
for _ in $(seq 1 100); do grep -q "listening on" "$dir/gw.out" 2>/dev/null && break; sleep 0.1; done
addr="$(sed -n 's|^listening on http://||p' "$dir/gw.out" | head -1)"

python3 - "$n" "$addr" "$gw" "$bin/airq-worker" "$dir/airq.db" <<'PY'
import asyncio, json, os, subprocess, sys, time, statistics

n, addr, gw, worker_bin, db = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
host, port = addr.split(":")
port = int(port)

def rss_mib():
    with open(f"/proc/{gw}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

def cpu_s():
    with open(f"/proc/{gw}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

async def request(method, path, body=b"", headers=None):
    r, w = await asyncio.open_connection(host, port)
    h = {"Host": addr, "Connection": "close", "Content-Length": str(len(body))}
    h.update(headers or {})
    w.write(f"{method} {path} HTTP/1.1\r\n".encode()
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in h.items()) + b"\r\n" + body)
    await w.drain()
    data = await r.read()
    w.close()
    return data

async def follow(path, got_queued, queued_at, done_at, i):
    r, w = await asyncio.open_connection(host, port)
    w.write(f"GET {path}/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await w.drain()
    buf = b""
    while True:
        chunk = await r.read(4096)
        if not chunk:
            break
        buf += chunk
        if queued_at[i] is None and b"event: queued" in buf:
            queued_at[i] = time.monotonic()
            got_queued.release()
        if b"event: done" in buf:
            done_at[i] = time.monotonic()
            break
    w.close()

async def main():
    body = b'{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE"}'
    reply = await request("POST", "/api/query", body,
                          {"Content-Type": "application/json", "Prefer": "respond-async"})
    path = next(l.split(b": ", 1)[1].strip().decode() for l in reply.split(b"\r\n")
                if l.lower().startswith(b"location:"))
    before = rss_mib()
    got_queued = asyncio.Semaphore(0)
    queued_at, done_at = [None] * n, [None] * n
    tasks = []
    t0 = time.monotonic()
    for i in range(n):
        tasks.append(asyncio.create_task(follow(path, got_queued, queued_at, done_at, i)))
        if i % 500 == 499:
            await asyncio.sleep(0)  # let the connects go out in waves
    for _ in range(n):
        await asyncio.wait_for(got_queued.acquire(), timeout=120)
    opened = time.monotonic() - t0
    await asyncio.sleep(2)
    during = rss_mib()
    # The gateway's CPU while the streams wait (each re-reads its result
    # once a second).
    c0, w0 = cpu_s(), time.monotonic()
    await asyncio.sleep(5)
    idle_cpu = (cpu_s() - c0) / (time.monotonic() - w0) * 100
    worker = subprocess.Popen([worker_bin, "--db", db], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    finally:
        worker.kill()
    done = [d for d in done_at if d is not None]
    first = min(done)
    spread = sorted((d - first) * 1000 for d in done)
    q = lambda p: spread[min(len(spread) - 1, int(p * len(spread)))]
    print(f"{n} streams opened (each with its queued event) in {opened:.1f} s")
    print(f"gateway RSS: {before:.1f} MiB before, {during:.1f} MiB with {n} streams open: "
          f"{(during - before) * 1024 / n:.1f} KiB a stream")
    print(f"gateway CPU while {n} streams wait: {idle_cpu:.0f} % of one core")
    print(f"done received by {len(done)} of {n} streams; after the first stream's done: "
          f"p50 {q(0.5):.0f} ms, p99 {q(0.99):.0f} ms, last {spread[-1]:.0f} ms")

asyncio.run(main())
PY
