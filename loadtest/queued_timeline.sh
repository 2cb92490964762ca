#!/usr/bin/env bash
# Where a queued answer's time goes: submits one query N times with
# `Prefer: respond-async` to a gateway and one worker (release binaries,
# on loopback), follows each with `?wait=20s`, and splits its time from
# the client's clock and the processes' logs into
#
#   post        the submit, to its 202;
#   hop1        the 202 to the worker starting the job (RequestSend);
#   worker      the worker's job: the answer rendered into a result file;
#   hop2        the job done to the gateway recording it (RequestReceive);
#   first_byte  recorded to the answer's first byte at the client;
#   body        the rest of the answer read by the client;
#
# medians and every run (ms). Uses the store of answers_vs_duckdb.sh (run
# it once first); the default query is its case A (31 days of DE, CSV).
#
#   bash loadtest/queued_timeline.sh [RUNS] [QUERY]    # default 9
# Env: AIRQ_BIN (another build's binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-9}
QUERY=${2:-'{"startDate":"2024-01-01","endDate":"2024-01-31","country":"DE"}'}
BIN=${AIRQ_BIN:-target/release}
DB=target/answers-vs-duckdb/segments/airq.db
OUT=target/queued-timeline
[ -s "$DB" ] || { echo "no $DB: run loadtest/answers_vs_duckdb.sh first" >&2; exit 1; }
mkdir -p "$OUT"
. loadtest/stack.sh
RUST_LOG=info,airq_gateway=debug "$BIN/airq-gateway" --db "$DB" --listen 127.0.0.1:0 \
  --max-span 31days --direct-max-span 31days --max-result-rows 20000000 --answer-cache-ttl 0 \
  --log-format json >"$OUT/gateway.out" 2>"$OUT/gateway.err" &
PIDS=$!
"$BIN/airq-worker" --db "$DB" --concurrency 1 --log-format json >"$OUT/worker.out" 2>"$OUT/worker.err" &
PIDS="$PIDS $!"
trap 'kill $PIDS 2>/dev/null || true' EXIT
URL=$(listening_url "$OUT/gateway.out" "$OUT/gateway.err" "gateway")
python3 - "$URL" "$RUNS" "$QUERY" "$OUT" <<'PYEOF'
import json, statistics, sys, time, urllib.request
from datetime import datetime
url, runs, query, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
client = []
for _ in range(runs):
    t0 = time.time()
    req = urllib.request.Request(f"{url}/api/query", data=query.encode(), method="POST",
        headers={"content-type": "application/json", "Prefer": "respond-async"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 202, r.status
        loc = r.headers["Location"]
    t1 = time.time()
    with urllib.request.urlopen(f"{url}{loc}?wait=20s", timeout=60) as r:
        assert r.status == 200, r.status
        r.read(1); t2 = time.time(); r.read(); t3 = time.time()
    client.append((loc.rstrip("/").split("/")[-1], t0, t1, t2, t3))
    time.sleep(0.3)
time.sleep(0.5)  # the logs written
def events(path):
    for line in open(path):
        try:
            yield json.loads(line)
        except ValueError:
            pass
def at(e):
    return datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
def seconds(text):  # a Debug Duration: 41.2ms, 1.5s, 900µs
    for unit, f in (("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9), ("s", 1.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * f
    raise ValueError(text)
done, recorded = {}, {}
for e in events(f"{out}/worker.err"):
    if e.get("fields", {}).get("message") == "query done":
        rid = e.get("span", {}).get("result") or next((s.get("result") for s in e.get("spans", []) if "result" in s), None)
        done[rid] = (at(e), seconds(e["fields"]["elapsed"]))
for e in events(f"{out}/gateway.err"):
    if e.get("fields", {}).get("message") == "result received":
        recorded[e["fields"]["id"]] = at(e)
parts = {k: [] for k in ("post", "hop1", "worker", "hop2", "first_byte", "body", "total")}
for rid, t0, t1, t2, t3 in client:
    if rid not in done or rid not in recorded:
        sys.exit(f"no log lines for {rid}: see {out}/*.err")
    end, took = done[rid]
    for k, v in (("post", t1 - t0), ("hop1", end - took - t1), ("worker", took),
                 ("hop2", recorded[rid] - end), ("first_byte", t2 - recorded[rid]),
                 ("body", t3 - t2), ("total", t3 - t0)):
        parts[k].append(v * 1000)
for k, v in parts.items():
    print(f"{k:10} median {statistics.median(v):7.1f} ms  ({', '.join(f'{x:.0f}' for x in v)})")
PYEOF
