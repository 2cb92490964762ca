#!/usr/bin/env bash
# Polling against long polls against the event stream (issue 24): the
# same closed loop of queued queries (`Prefer: respond-async`, the sample's
# DE hour) three times, once per `--follow` mode, against one gateway and
# one worker on the shipped sample, and what each finished result cost:
# requests after the submit ("polls/query" in the report), the body bytes
# of those responses besides the answer ("B/query besides the answer"),
# and the time to the result. Loopback only; bounded: N queries per mode.
#   loadtest/follow_cost.sh [N] [USERS]     (default 200 4)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200}"
users="${2:-4}"
[ -n "${AIRQ_SKIP_BUILD:-}" ] || cargo build --release --quiet -p airq-gateway -p airq-worker -p airq-master -p airq-loadtest
bin=target/release
dir="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

"$bin/airq-master" --db "$dir/airq.db" ingest --source data/sample/201806032249_data.dust.min.json >/dev/null
"$bin/airq-gateway" --db "$dir/airq.db" --listen 127.0.0.1:0 --max-connections-per-client 0 \
    --tier "anonymous:submits=off,polls=off,queued=off" >"$dir/gw.out" 2>"$dir/gw.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "listening on" "$dir/gw.out" 2>/dev/null && break; sleep 0.1; done
addr="$(sed -n 's|^listening on ||p' "$dir/gw.out" | head -1)"
"$bin/airq-worker" --db "$dir/airq.db" >/dev/null 2>"$dir/worker.log" &
pids+=($!)

query='{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE"}'
echo "$query" >"$dir/query.json"
for mode in poll wait events; do
    echo "== --follow $mode: $n queued queries, $users users"
    "$bin/airq-loadtest" "$addr" --prefer-async --follow "$mode" -c "$users" -n "$n" \
        --queries "$dir/query.json" --poll-retry-after 2>&1 |
        grep -vE "^\s*$|INFO|WARN" || true
done
