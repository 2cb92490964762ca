#!/usr/bin/env bash
# What evaluating alerts costs a gateway (issue 24): a live tier of
# SENSORS synthetic sensors (the last 3 hours of 5-minute feeds, so that
# the NowCast is defined), N alerts on N distinct 10 km circles around
# random sensors (the worst case: no two alerts share a place), inserted
# straight into the store; then one more 5-minute feed is ingested and the
# gateway's debug log says how long the evaluation of that change took.
# Loopback only; bounded: one gateway, one ingestion, 300 s in all.
#   loadtest/alert_eval.sh [N] [SENSORS]     (default 10000 15000)
# AIRQ_GATEWAY_BIN runs another gateway binary (to compare builds).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"
sensors="${2:-15000}"
[ -n "${AIRQ_SKIP_BUILD:-}" ] || cargo build --release --quiet -p airq-gateway -p airq-master
bin=target/release
dir="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

today="$(date -u +%Y-%m-%d)"
"$bin/airq-master" synth --resolution 5min --days 1 --sensors "$sensors" --start "$today" \
    --template data/sample/201806032249_data.dust.min.json --out "$dir/feeds" >/dev/null
now="$(date -u +%Y-%m-%dT%H-%M)"
# The 36 feeds of the last 3 hours before now, and the one after them.
mapfile -t feeds < <(ls "$dir/feeds" | sort | awk -v now="$now.json" '$0 <= now' | tail -37)
for f in "${feeds[@]:0:36}"; do
    "$bin/airq-master" --db "$dir/airq.db" ingest --resolution 5min --source "$dir/feeds/$f" >/dev/null 2>&1
done
python3 - "$dir/airq.db" "$n" <<'PY'
import json, random, sqlite3, sys, uuid
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
sites = c.execute("SELECT loc_lat, loc_long FROM latest").fetchall()
random.seed(1)
owner = str(uuid.uuid4())
rows = []
for _ in range(n):
    lat, lon = random.choice(sites)
    spec = {"place": {"near": {"lat": float(lat), "lon": float(lon), "radiusKm": 10}},
            "index": "us-epa", "threshold": {"value": 500},
            "webhookUrl": "http://127.0.0.1:9/hook", "cooldown": "3600s"}
    rows.append((str(uuid.uuid4()), owner, json.dumps(spec), "whsec_c2VjcmV0", 0))
c.executemany("INSERT INTO alerts (id, owner, spec, secret, created_at) VALUES (?, ?, ?, ?, ?)", rows)
c.commit()
PY
RUST_LOG=airq_gateway::alerts=debug,warn "${AIRQ_GATEWAY_BIN:-$bin/airq-gateway}" --db "$dir/airq.db" --listen 127.0.0.1:0 \
    --webhook-allow-loopback >"$dir/gw.out" 2>"$dir/gw.log" &
gw=$!
pids+=($gw)
for _ in $(seq 1 100); do grep -q "listening on" "$dir/gw.out" 2>/dev/null && break; sleep 0.1; done
sleep 3
"$bin/airq-master" --db "$dir/airq.db" ingest --resolution 5min --source "$dir/feeds/${feeds[36]}" >/dev/null 2>&1
for _ in $(seq 1 300); do grep -q "alerts evaluated" "$dir/gw.log" && break; sleep 1; done
echo "alerts: $n on distinct 10 km circles; sensors: $sensors; feeds: ${feeds[0]} … ${feeds[36]}"
grep "alerts evaluated" "$dir/gw.log" | tail -1
grep -o 'VmHWM:.*' "/proc/$gw/status" || true
