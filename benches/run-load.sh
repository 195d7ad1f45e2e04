#!/usr/bin/env bash
# Load benchmarks in one command: builds release, starts `latchkey serve` on
# SQLite (a temp dir) and on PostgreSQL (a fresh database, dropped afterwards),
# runs every load scenario RUNS times with examples/loadgen.rs, measures
# start-up to ready on the existing database and the idle RSS, and stops the
# server. Prints the medians as a table; raw output goes to $OUT.
#
# Usage: benches/run-load.sh            (both databases)
#        DBS=sqlite benches/run-load.sh (one of them)
# Settings (environment): RUNS=3 DURATION=10s WARMUP=1s CONCURRENCY=32 USERS=64
#   PORT=18089 STARTS=5 PRESIGN=0 LOADGEN_THREADS=1
#   SCRAPE=5 (seconds between /metrics scrapes during the load, as Prometheus
#   would; 0: never, which lets the metrics recorder's histogram samples pile up)
#   PG=postgres://postgres@127.0.0.1:5432 OUT=<dir for raw results>
#   CARGO_TARGET_DIR (default /work/bench-target if it exists, else target)
# Only 127.0.0.1 is ever targeted; every run is bounded by DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
CONCURRENCY=${CONCURRENCY:-32}
USERS=${USERS:-64}
PORT=${PORT:-18089}
STARTS=${STARTS:-5}
PRESIGN=${PRESIGN:-0}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
SCRAPE=${SCRAPE:-5}
DBS=${DBS:-sqlite postgres}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
ORIGIN=http://localhost:8080
URL=http://127.0.0.1:$PORT
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    if [ -d /work/bench-target ]; then CARGO_TARGET_DIR=/work/bench-target; else CARGO_TARGET_DIR=$PWD/target; fi
fi
export CARGO_TARGET_DIR
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
OUT=${OUT:-$(mktemp -d /tmp/latchkey-load.XXXXXX)}
# All load comes from 127.0.0.1 while it stands for many clients: the
# per-address rate limits (120 ceremonies and 60 licenses per minute by
# default) would answer 429 to nearly everything, so they are off here.
export LATCHKEY_RATE_LIMIT_CEREMONIES=${LATCHKEY_RATE_LIMIT_CEREMONIES:-0}
export LATCHKEY_RATE_LIMIT_LICENSES=${LATCHKEY_RATE_LIMIT_LICENSES:-0}
export LATCHKEY_RATE_LIMIT_ADMIN=${LATCHKEY_RATE_LIMIT_ADMIN:-0}
export LATCHKEY_RATE_LIMIT_PREMIUM=${LATCHKEY_RATE_LIMIT_PREMIUM:-0}
# The metrics listener on a port of its own, next to the service's.
METRICS_ADDR=127.0.0.1:$((PORT + 1))
export LATCHKEY_METRICS_LISTEN=$METRICS_ADDR
mkdir -p "$OUT"

log() { printf '\n== %s\n' "$*" >&2; }

log "build (release) into $CARGO_TARGET_DIR"
# The server is built on its own, as an operator builds it (no dev-dependency
# features); the generator is an example and needs the dev-dependencies.
cargo build --release --quiet --bin latchkey
cargo build --release --quiet --example loadgen
BIN=$CARGO_TARGET_DIR/release/latchkey
LOADGEN=$CARGO_TARGET_DIR/release/examples/loadgen

SERVER_PID=""
SCRAPER_PID=""
DATA_DIR=""
PG_DB=""
cleanup() {
    if [ -n "$SCRAPER_PID" ]; then kill "$SCRAPER_PID" 2>/dev/null || true; wait "$SCRAPER_PID" 2>/dev/null || true; SCRAPER_PID=""; fi
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
    if [ -n "$PG_DB" ]; then
        psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
        PG_DB=""
    fi
    if [ -n "$DATA_DIR" ]; then rm -rf "$DATA_DIR"; DATA_DIR=""; fi
}
trap cleanup EXIT INT TERM

for p in "$PORT" "$((PORT + 1))"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "port $p is in use; set PORT (the service uses PORT, its metrics PORT+1)" >&2
        exit 1
    fi
done

start_server() {
    "$BIN" serve --listen "127.0.0.1:$PORT" 2>>"$OUT/server-$1.log" &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        if curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.05
    done
    echo "the server did not become ready; see $OUT/server-$1.log" >&2
    exit 1
}

stop_server() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
}

for db in $DBS; do
    DATA_DIR=$(mktemp -d /tmp/latchkey-bench-data.XXXXXX)
    export LATCHKEY_DATA_DIR=$DATA_DIR
    case $db in
        sqlite) unset LATCHKEY_DATABASE_URL ;;
        postgres)
            PG_DB=latchkey_bench_$(date +%s)_$$
            psql "$PG/postgres" -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
            export LATCHKEY_DATABASE_URL=$PG/$PG_DB
            ;;
        *) echo "unknown database $db (sqlite or postgres)" >&2; exit 1 ;;
    esac

    log "$db: server up"
    start_server "$db"
    echo "server pid $SERVER_PID, RSS when first ready: $(awk '/VmRSS/{print $2" "$3}' "/proc/$SERVER_PID/status")" \
        | tee -a "$OUT/summary.txt"
    if [ "$SCRAPE" != 0 ]; then
        (while sleep "$SCRAPE"; do curl -fsS -o /dev/null "http://$METRICS_ADDR/metrics" || true; done) &
        SCRAPER_PID=$!
    fi
    for run in $(seq 1 "$RUNS"); do
        log "$db: load run $run of $RUNS (each scenario: $WARMUP warm-up + $DURATION)"
        "$LOADGEN" --url "$URL" --origin "$ORIGIN" --users "$USERS" --concurrency "$CONCURRENCY" \
            --duration "$DURATION" --warmup "$WARMUP" --scenario all --server-pid "$SERVER_PID" \
            --cli "$BIN" --label "$db" --presign "$PRESIGN" --threads "$LOADGEN_THREADS" \
            | tee "$OUT/$db-run$run.txt"
    done
    echo "server after the runs: $(grep -E 'VmRSS|VmHWM' "/proc/$SERVER_PID/status" | tr -s ' \t\n' ' ')" \
        | tee -a "$OUT/summary.txt"
    if [ -n "$SCRAPER_PID" ]; then kill "$SCRAPER_PID"; wait "$SCRAPER_PID" 2>/dev/null || true; SCRAPER_PID=""; fi
    stop_server

    log "$db: start-up to ready on the existing database ($STARTS starts)"
    "$LOADGEN" --url "$URL" --scenario startup --server-bin "$BIN" --repeat "$STARTS" --label "$db" \
        | tee "$OUT/$db-startup.txt"
    cleanup
done

log "medians of $RUNS runs (raw results in $OUT)"
cat "$OUT"/*.txt | grep '^RESULT ' | sed 's/^RESULT //' > "$OUT/results.jsonl"
python3 - "$OUT/results.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
load = {}
for r in rows:
    if r["scenario"] != "startup":
        load.setdefault((r["label"], r["scenario"]), []).append(r)
med = lambda xs: statistics.median([x for x in xs if x is not None]) if any(x is not None for x in xs) else None
fmt = lambda v, p=2: "n/a" if v is None else f"{v:.{p}f}"
print("| db | scenario | runs | req/s | p50 ms | p99 ms | max ms | errors (sum) | server CPU cores | server peak RSS MiB | loadgen CPU cores | machine busy cores |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for (db, sc), rs in load.items():
    print(f"| {db} | {sc} | {len(rs)} | {fmt(med([r['rps'] for r in rs]), 0)} | {fmt(med([r['p50_ms'] for r in rs]))} "
          f"| {fmt(med([r['p99_ms'] for r in rs]))} | {fmt(med([r['max_ms'] for r in rs]))} | {sum(r['errors'] for r in rs)} "
          f"| {fmt(med([r['server_cpu_cores'] for r in rs]))} | {fmt(med([r['server_peak_rss_mib'] for r in rs]), 1)} "
          f"| {fmt(med([r['loadgen_cpu_cores'] for r in rs]))} | {fmt(med([r.get('machine_busy_cores') for r in rs]))} |")
for r in rows:
    if r["scenario"] == "startup":
        print(f"\n{r['label']}: start-up to ready (ms): {', '.join(fmt(x, 1) for x in r['ready_ms'])}; "
              f"median {fmt(r['median_ready_ms'], 1)} ms; idle RSS median {fmt(r['median_idle_rss_mib'], 1)} MiB")
EOF
