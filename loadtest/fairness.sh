#!/usr/bin/env bash
# Fairness and the rate limiter's cost (issue 11), on the local stack.
#
# 1. A polite client (10 queries/s, a key whose budget allows it) alone for
#    30 s; then the same polite client beside a greedy one sending 20x its
#    budget (a key of 600 submits/min = 10/s, sending 200/s). The polite
#    client should get no 429 and keep its p99 time to result within 20 %.
# 2. The limiter's own cost: the random mix at 1,000 queries/s for 30 s with
#    a key of the `unlimited` tier (no limiter runs) and with a key whose
#    budgets are far above the load (the limiter runs on every request but
#    never refuses), alternated RUNS times.
#
# Uses the benchmark's synthetic store (target/bench/store-*.db, made by
# loadtest/bench.sh) on a copy; prints a summary and leaves the JSON of
# every run in target/fairness/. Loopback only; every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${AIRQ_FAIRNESS_OUT:-target/fairness}"
store="${AIRQ_FAIRNESS_STORE:-target/bench/store-30d-15000s.db}"
runs="${AIRQ_FAIRNESS_RUNS:-3}"

cargo build --release --bins --quiet
bin=target/release
rm -rf "$out"
mkdir -p "$out/json"
. loadtest/stack.sh
copy_store "$store" "$out"

key() { "$bin/airq-deploy" keys create --db "$out/run.db" "$@" 2>/dev/null; }
greedy=$(key --name greedy --tier standard --submits 600/min)
polite=$(key --name polite --tier standard --submits 1200/min --polls 12000/min --max-queued 100)
roomy=$(key --name roomy --tier standard --submits 100000000/min --polls 100000000/min --max-queued 1000000)
free=$(key --name free --tier unlimited)

trap stop_stack EXIT
start_stack "$out"
echo "stack at $url"

lt() { "$bin/airq-loadtest" "$url" --no-progress --drain 10s "$@" >/dev/null; }

# The polite client: the fixed query (answered directly), 10/s, 30 s.
polite_run() { lt --api-key "$polite" --rate 10 --duration 30s --json "$out/json/$1.json"; }
# Warm up the answer cache and the store's pages, then measure.
lt --api-key "$free" --rate 10 --duration 5s --json "$out/json/warmup.json"
for i in $(seq 1 "$runs"); do
    polite_run "polite-alone-$i"
    lt --api-key "$greedy" --rate 200 --duration 30s --json "$out/json/greedy-$i.json" &
    g=$!
    polite_run "polite-beside-greedy-$i"
    wait $g || true
done

# The limiter's cost: the random mix at 1,000/s, unlimited vs limited-but-roomy.
for i in $(seq 1 "$runs"); do
    for who in free roomy; do
        lt --api-key "${!who}" --query random --rate 1000 --duration 30s \
            --json "$out/json/random-$who-$i.json" || true
    done
done

python3 - "$out/json" "$runs" <<'EOF'
import json, statistics, sys
d, runs = sys.argv[1], int(sys.argv[2])
def step(name):
    return json.load(open(f"{d}/{name}.json"))["steps"][0]
def med(xs):
    return statistics.median(xs)
print("\nfairness: the polite client, 10 queries/s for 30 s (time to result, ms)")
print(f"{'run':<28}{'ok':>6}{'429s':>6}{'p50':>8}{'p99':>8}")
alone, beside = [], []
for i in range(1, runs + 1):
    for name, acc in ((f"polite-alone-{i}", alone), (f"polite-beside-greedy-{i}", beside)):
        s = step(name)
        t = s["time_to_result"]
        n429 = s["errors_by_kind"].get("http_429", 0)
        acc.append((t["p99"], n429))
        print(f"{name:<28}{s['ok']:>6}{n429:>6}{t['p50']:>8.1f}{t['p99']:>8.1f}")
    g = step(f"greedy-{i}")
    print(f"{'  greedy-' + str(i) + ' (200/s)':<28}{g['ok']:>6}{g['errors_by_kind'].get('http_429', 0):>6}"
          f"{g['time_to_result']['p50']:>8.1f}{g['time_to_result']['p99']:>8.1f}")
a, b = med(p for p, _ in alone), med(p for p, _ in beside)
print(f"median p99 alone {a:.1f} ms, beside the greedy client {b:.1f} ms ({(b / a - 1) * 100:+.0f} %); "
      f"429s to the polite client: {sum(n for _, n in beside)}")
print("\nlimiter cost: random mix at 1,000/s for 30 s")
print(f"{'run':<20}{'ok/s':>8}{'errors':>8}{'p50':>8}{'p99':>9}")
for who in ("free", "roomy"):
    p50s, p99s, rates = [], [], []
    for i in range(1, runs + 1):
        s = step(f"random-{who}-{i}")
        t = s["time_to_result"]
        p50s.append(t["p50"]); p99s.append(t["p99"]); rates.append(s["ok_per_s"])
        print(f"{who + '-' + str(i):<20}{s['ok_per_s']:>8.1f}{s['errors']:>8}{t['p50']:>8.1f}{t['p99']:>9.1f}")
    print(f"{who + ' median':<20}{med(rates):>8.1f}{'':>8}{med(p50s):>8.1f}{med(p99s):>9.1f}")
EOF
