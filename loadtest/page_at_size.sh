#!/usr/bin/env bash
# The web page at the size of its answers (issue: the page at size):
# SENSORS sensors × DAYS days of daily readings in a fresh store, one
# queued all-country query over them as CSV, and its result's link opened
# in headless Chromium by gateway/tests/browser/at_size.rs, which prints
# one JSON line: the main-thread long tasks from the page's start to the
# result drawn (at 1× and 4× CPU), the JS heap, and the map's frame and
# draw times while dragged at the fitted zoom and at zoom ≥ 6. Then
# Lighthouse (npm, in target/lighthouse) audits the same link, mobile
# preset, performance only, RUNS times; the script prints each score.
#
#   bash loadtest/page_at_size.sh [SENSORS] [DAYS] [RUNS]   # default 15000, 31, 3
#
# GATEWAY=path/to/airq-gateway measures another build's page (the store,
# the worker and the result are the same).
#
# Needs the release binaries (cargo build --release --no-default-features
# -p airq-master -p airq-gateway -p airq-worker), Chromium and
# chromedriver (scripts/test.sh installs them), node and npm once. All on
# loopback; files go to target/page-at-size/.
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/stack.sh
SENSORS=${1:-15000}
DAYS=${2:-31}
RUNS=${3:-3}
OUT=target/page-at-size
DB=$OUT/airq.db
BIN=target/release
mkdir -p "$OUT"

if [ ! -e "$OUT/loaded-$SENSORS-$DAYS" ]; then
  rm -rf "$DB" "$DB"-* "$OUT"/loaded-*
  echo "loading $DAYS days of daily readings for $SENSORS sensors…"
  "$BIN/airq-master" --db "$DB" synth --days "$DAYS" --sensors "$SENSORS" \
    --start 2024-01-01 --into-store >/dev/null
  touch "$OUT/loaded-$SENSORS-$DAYS"
fi

"${GATEWAY:-$BIN/airq-gateway}" --db "$DB" --listen 127.0.0.1:0 --max-span "${DAYS}days" \
  --max-result-rows 20000000 >"$OUT/gateway.out" 2>"$OUT/gateway.err" &
GW=$!
"$BIN/airq-worker" --db "$DB" --concurrency 1 >"$OUT/worker.out" 2>"$OUT/worker.err" &
WK=$!
trap 'kill $GW $WK 2>/dev/null || true' EXIT
URL=$(listening_url "$OUT/gateway.out" "$OUT/gateway.err" gateway)

END=$(date -u -d "2024-01-01 + $((DAYS - 1)) days" +%Y-%m-%d)
ID=$(curl -sS -X POST "$URL/api/query" -H 'content-type: application/json' -H 'Prefer: respond-async' \
  -d "{\"startDate\":\"2024-01-01\",\"endDate\":\"$END\"}" | sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p')
[ -n "$ID" ] || { echo "the query was not queued" >&2; exit 1; }
for _ in $(seq 1 60); do
  code=$(curl -sS -o "$OUT/answer.csv" -w '%{http_code}' "$URL/api/results/$ID?wait=20s" -H 'Accept: text/csv')
  [ "$code" = 200 ] && break
done
[ "$code" = 200 ] || { echo "the result did not come (HTTP $code)" >&2; exit 1; }
echo "result: $(($(wc -l < "$OUT/answer.csv") - 1)) rows, $(stat -c %s "$OUT/answer.csv") bytes"
PAGE="$URL/?result=$ID&startDate=2024-01-01&endDate=$END"

echo "== headless Chromium (gateway/tests/browser/at_size.rs)"
AIRQ_PAGE_URL="$PAGE" cargo test --quiet -p airq-gateway --test browser -- \
  --ignored --exact at_size::page_at_size --nocapture 2>/dev/null | grep '^{' | tee "$OUT/at_size.json"

echo "== Lighthouse (mobile preset, performance)"
if [ ! -x target/lighthouse/node_modules/.bin/lighthouse ]; then
  npm install --silent --prefix target/lighthouse lighthouse@13.5.0 >/dev/null
fi
for run in $(seq 1 "$RUNS"); do
  CHROME_PATH=$(command -v chromium) target/lighthouse/node_modules/.bin/lighthouse "$PAGE" \
    --quiet --only-categories=performance --output=json --output-path="$OUT/lighthouse-$run.json" \
    --chrome-flags="--headless --no-sandbox --disable-gpu --disable-dev-shm-usage"
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1]));
    const a = (k) => r.audits[k].numericValue;
    console.log(JSON.stringify({ run: Number(process.argv[2]), score: r.categories.performance.score * 100,
      tbt_ms: a("total-blocking-time"), lcp_ms: a("largest-contentful-paint"), fcp_ms: a("first-contentful-paint"),
      cls: a("cumulative-layout-shift"), si_ms: a("speed-index") }));' "$OUT/lighthouse-$run.json" "$run"
done
