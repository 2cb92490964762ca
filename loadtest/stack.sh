# Shared by the benchmark scripts in loadtest/ (source it; bash): a copy of
# the benchmark store and the local stack on it.
#
#   copy_store STORE OUT      OUT/run.db (and its payload and segment files) from STORE
#   start_stack OUT [ARGS…]   `airq-deploy up` on OUT/run.db, on a free
#                             loopback port, 2 workers, no seed, extra ARGS;
#                             sets $url and $stack (its pid); the binaries
#                             are $AIRQ_BIN's (default target/release), so
#                             that two builds can be measured side by side
#   stop_stack                Ctrl-C to the stack, and wait for it
#   listening_url OUT ERR NAME  the http://ADDR a binary printed to OUT
#                             (`listening on …`), waited for up to 10 s;
#                             exits naming NAME, with ERR shown, if none

copy_store() {
    local store="$1" out="$2"
    [ -f "$store" ] || { echo "no store at $store: run loadtest/bench.sh first" >&2; exit 1; }
    cp "$store" "$out/run.db"
    if [ -d "$store-bodies" ]; then cp -r "$store-bodies" "$out/run.db-bodies"; fi
    # Segment files are never changed in place: the copy links them.
    rm -rf "$out/run.db-segments"
    if [ -d "$store-segments" ]; then cp -al "$store-segments" "$out/run.db-segments"; fi
}

stack=""
start_stack() {
    local out="$1"
    shift
    : >"$out/stack.out"
    # The load generator is one address with up to hundreds of
    # connections: the gateway's per-client share of connections is off.
    AIRQ_MAX_CONNECTIONS_PER_CLIENT=0 "${AIRQ_BIN:-target/release}/airq-deploy" up --db "$out/run.db" --listen 127.0.0.1:0 --seed "" --workers 2 \
        "$@" >"$out/stack.out" 2>>"$out/stack.log" &
    stack=$!
    url=""
    for _ in $(seq 1 120); do
        url="$(sed -n 's/^airq is up at \(http[^ ]*\).*/\1/p' "$out/stack.out")"
        [ -n "$url" ] && return 0
        sleep 0.5
    done
    echo "the stack did not start; see $out/stack.log" >&2
    exit 1
}

listening_url() {
    local out="$1" err="$2" name="$3" url=""
    for _ in $(seq 1 100); do
        url=$(sed -n 's/^listening on //p' "$out" | head -1)
        [ -n "$url" ] && break
        sleep 0.1
    done
    [ -n "$url" ] || { echo "the $name did not start" >&2; cat "$err" >&2; exit 1; }
    echo "$url"
}

stop_stack() {
    if [ -n "$stack" ]; then
        kill -INT "$stack" 2>/dev/null || true
        wait "$stack" 2>/dev/null || true
        stack=""
    fi
}
