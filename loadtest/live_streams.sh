#!/usr/bin/env bash
# Many live streams on one gateway (issue 24): N clients follow
# `GET /api/stream/latest?PLACE` on a store holding the sample's 4,928
# sensors as a 5-minute feed; the gateway's RSS is read with one stream
# open and with all N; then `airq-master ingest --resolution 5min` stores
# the next 5 minutes (every value changed), and each stream's `sync` of
# the new data version is timed from the commit (seen by polling the
# store's data version every millisecond). Loopback only; bounded: N
# connections, 180 s in all.
#   loadtest/live_streams.sh [N] [PLACE]   (default 10000, near=48.78,9.18,10)
# AIRQ_GATEWAY_BIN runs another gateway binary (to compare builds).
# With PERF_OUT=FILE, `perf record -g` samples the gateway from the
# ingestion to the last stream's sync.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"
place="${2:-near=48.78,9.18,10}"
ulimit -n "$((n + 1024))"
[ -n "${AIRQ_SKIP_BUILD:-}" ] || cargo build --release --quiet -p airq-gateway -p airq-master
bin=target/release
dir="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

sample=data/sample/201806032249_data.dust.min.json
# The next 5 minutes of the sample: every timestamp 300 s later, every
# PM2.5 value 1.00 higher, so that every sensor's latest reading changes.
python3 - "$sample" "$dir/next.json" <<'PY'
import json, sys, datetime
entries = json.load(open(sys.argv[1]))
for e in entries:
    t = datetime.datetime.strptime(e["timestamp"], "%Y-%m-%d %H:%M:%S")
    e["timestamp"] = (t + datetime.timedelta(seconds=300)).strftime("%Y-%m-%d %H:%M:%S")
    for v in e["sensordatavalues"]:
        if v["value_type"] == "P2":
            try:
                v["value"] = f"{float(v['value']) + 1:.2f}"
            except ValueError:
                pass
json.dump(entries, open(sys.argv[2], "w"))
PY
"$bin/airq-master" --db "$dir/airq.db" ingest --resolution 5min --source "$sample" >/dev/null 2>&1
"${AIRQ_GATEWAY_BIN:-$bin/airq-gateway}" --db "$dir/airq.db" --listen 127.0.0.1:0 --max-connections-per-client 0 \
    --max-connections "$((n + 100))" --max-streams "$((n + 10))" --max-streams-per-client "$((n + 10))" \
    --tier "anonymous:submits=off,polls=off,queued=off" >"$dir/gw.out" 2>"$dir/gw.log" &
gw=$!
pids+=($gw)
for _ in $(seq 1 100); do grep -q "listening on" "$dir/gw.out" 2>/dev/null && break; sleep 0.1; done
addr="$(sed -n 's|^listening on http://||p' "$dir/gw.out" | head -1)"

python3 - "$n" "$addr" "$gw" "$bin/airq-master" "$dir/airq.db" "$dir/next.json" "$place" <<'PY'
import asyncio, os, sqlite3, subprocess, sys, time

n, addr, gw, master, db, feed, place = sys.argv[1:8]
n = int(n)
host, port = addr.split(":")
port = int(port)
path = f"/api/stream/latest?{place}"

def rss_mib():
    with open(f"/proc/{gw}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

def cpu_s():
    with open(f"/proc/{gw}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def data_version():
    c = sqlite3.connect(db)
    try:
        return c.execute("SELECT n FROM data_version").fetchone()[0]
    finally:
        c.close()

async def stream(i, first_sync, target, got_at, readings):
    r, w = await asyncio.open_connection(host, port)
    w.write(f"GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await w.drain()
    buf = b""
    synced = False
    while True:
        chunk = await r.read(65536)
        if not chunk:
            break
        buf += chunk
        if not synced and b"event: sync" in buf:
            synced = True
            first_sync.release()
            buf = buf[buf.rindex(b"event: sync"):]
        if synced and target[0] is not None and f"id: {target[0]}\n".encode() in buf:
            got_at[i] = time.monotonic()
            readings[i] = buf.count(b"event: reading")
            break
        if len(buf) > 1 << 20:
            buf = buf[-4096:]
    w.close()

async def main():
    deadline = time.monotonic() + 180
    first_sync = asyncio.Semaphore(0)
    target = [None]
    got_at = [None] * n
    readings = [0] * n
    tasks = [asyncio.create_task(stream(0, first_sync, target, got_at, readings))]
    await asyncio.wait_for(first_sync.acquire(), 30)
    await asyncio.sleep(1)
    rss1 = rss_mib()
    opened = time.monotonic()
    for i in range(1, n):
        tasks.append(asyncio.create_task(stream(i, first_sync, target, got_at, readings)))
        if i % 500 == 0:
            await asyncio.sleep(0)
    for _ in range(1, n):
        await asyncio.wait_for(first_sync.acquire(), max(1, deadline - time.monotonic()))
    open_s = time.monotonic() - opened
    await asyncio.sleep(2)
    rssn = rss_mib()
    before = data_version()
    target[0] = before + 1
    cpu0 = cpu_s()
    perf = None
    if os.environ.get("PERF_OUT"):
        perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", gw, "-o",
                                 os.environ["PERF_OUT"]], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        await asyncio.sleep(0.5)
    proc = await asyncio.create_subprocess_exec(
        master, "--db", db, "ingest", "--resolution", "5min", "--source", feed,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The commit: the first moment the store's data version moves.
    committed = None
    while committed is None and time.monotonic() < deadline:
        if data_version() > before:
            committed = time.monotonic()
        else:
            await asyncio.sleep(0.001)
    await proc.wait()
    done, pending = await asyncio.wait(tasks, timeout=max(1, deadline - time.monotonic()))
    for t in pending:
        t.cancel()
    cpu = cpu_s() - cpu0
    if perf:
        perf.send_signal(2)
        perf.wait()
    late = sorted(t - committed for t in got_at if t is not None)
    def pct(p):
        return late[min(len(late) - 1, int(p / 100 * len(late)))] * 1000
    print(f"streams:             {n} on {path}")
    print(f"opened in:           {open_s:.1f} s (each its first answer and sync)")
    print(f"gateway RSS:         {rss1:.1f} MiB with 1 stream, {rssn:.1f} MiB with {n}: "
          f"{(rssn - rss1) * 1024 / max(1, n - 1):.1f} KiB per stream")
    print(f"readings per stream: {readings[0]} in the ingestion's step")
    print(f"commit to sync:      {len(late)} of {n} streams; p50 {pct(50):.0f} ms, "
          f"p99 {pct(99):.0f} ms, max {late[-1] * 1000:.0f} ms")
    print(f"gateway CPU:         {cpu:.2f} s from the ingestion to the last stream")

asyncio.run(main())
PY
