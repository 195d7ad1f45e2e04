#!/usr/bin/env bash
# Latchkey against the reference Node peer (../shared/peers/express-latchkey,
# Express 5 + SimpleWebAuthn + jose + better-sqlite3) with the same load
# generator, in the same run: for each database, both servers are up and every
# run measures Latchkey and then the peer, so that other work on the machine
# touches both alike. Prints medians, each ratio, and server CPU per operation
# (the generator's /proc/PID/stat utime+stime delta over the recorded window,
# divided by the operations).
#
# Usage: benches/side-by-side.sh            (SQLite and PostgreSQL)
#        DBS=sqlite benches/side-by-side.sh
# Settings (environment): RUNS=3 DURATION=8s WARMUP=1s CONCURRENCY=32 USERS=64
#   SCENARIOS="signin mint-ed25519 mint-es256 premium jwks" PORT=18089 PEER_PORT=18099
#   PEER=/work/shared/peers/express-latchkey (run `npm ci` there once)
#   BIN, LOADGEN (default: release binaries under CARGO_TARGET_DIR or target/)
#   PG=postgres://postgres@127.0.0.1:5432 OUT=<dir for raw results>
# Only 127.0.0.1 is ever targeted; every run is bounded by DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-1s}
CONCURRENCY=${CONCURRENCY:-32}
USERS=${USERS:-64}
SCENARIOS=${SCENARIOS:-signin mint-ed25519 mint-es256 premium jwks}
PORT=${PORT:-18089}
PEER_PORT=${PEER_PORT:-18099}
PEER=${PEER:-$(cd .. && pwd)/shared/peers/express-latchkey}
[ -d "$PEER" ] || PEER=/work/shared/peers/express-latchkey
DBS=${DBS:-sqlite postgres}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
ORIGIN=http://localhost:8080
TARGET=${CARGO_TARGET_DIR:-target}
BIN=${BIN:-$TARGET/release/latchkey}
LOADGEN=${LOADGEN:-$TARGET/release/examples/loadgen}
OUT=${OUT:-$(mktemp -d /tmp/latchkey-sbs.XXXXXX)}
export LATCHKEY_RATE_LIMIT_CEREMONIES=0 LATCHKEY_RATE_LIMIT_LICENSES=0 LATCHKEY_RATE_LIMIT_ADMIN=0 LATCHKEY_RATE_LIMIT_PREMIUM=0
mkdir -p "$OUT"
log() { printf '\n== %s\n' "$*" >&2; }

[ -x "$BIN" ] && [ -x "$LOADGEN" ] || { echo "build first: cargo build --release --bin latchkey --example loadgen" >&2; exit 1; }
[ -d "$PEER/node_modules" ] || { echo "run npm ci in $PEER first" >&2; exit 1; }

SERVER_PID="" PEER_PID="" DATA_DIR="" PG_DB=""
cleanup() {
    for pid in $SERVER_PID $PEER_PID; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVER_PID="" PEER_PID=""
    if [ -n "$PG_DB" ]; then
        psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
        PG_DB=""
    fi
    if [ -n "$DATA_DIR" ]; then rm -rf "$DATA_DIR"; DATA_DIR=""; fi
}
trap cleanup EXIT INT TERM

wait_ready() { # url pid
    for _ in $(seq 1 300); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || break
        sleep 0.05
    done
    echo "no answer from $1; logs in $OUT" >&2
    exit 1
}

for db in $DBS; do
    DATA_DIR=$(mktemp -d /tmp/latchkey-sbs-data.XXXXXX)
    export LATCHKEY_DATA_DIR=$DATA_DIR
    case $db in
        sqlite) unset LATCHKEY_DATABASE_URL ;;
        postgres)
            PG_DB=latchkey_sbs_$(date +%s)_$$
            psql "$PG/postgres" -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
            export LATCHKEY_DATABASE_URL=$PG/$PG_DB
            ;;
        *) echo "unknown database $db" >&2; exit 1 ;;
    esac
    "$BIN" serve --listen "127.0.0.1:$PORT" 2>>"$OUT/latchkey-$db.log" &
    SERVER_PID=$!
    wait_ready "http://127.0.0.1:$PORT/readyz" "$SERVER_PID"
    (cd "$PEER" && PORT=$PEER_PORT ORIGIN=$ORIGIN RP_ID=localhost DB_PATH="$DATA_DIR/peer.db" \
        exec node server.js) >>"$OUT/peer-$db.log" 2>&1 &
    PEER_PID=$!
    wait_ready "http://127.0.0.1:$PEER_PORT/.well-known/jwks.json" "$PEER_PID"
    for run in $(seq 1 "$RUNS"); do
        for sc in $SCENARIOS; do
            log "$db run $run/$RUNS: $sc, Latchkey then the peer"
            "$LOADGEN" --url "http://127.0.0.1:$PORT" --origin "$ORIGIN" --users "$USERS" \
                --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" --scenario "$sc" \
                --server-pid "$SERVER_PID" --cli "$BIN" --label "latchkey-$db" >"$OUT/latchkey-$db-$sc-$run.txt" 2>>"$OUT/loadgen.log"
            "$LOADGEN" --url "http://127.0.0.1:$PEER_PORT" --origin "$ORIGIN" --users "$USERS" \
                --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" --scenario "$sc" \
                --server-pid "$PEER_PID" --label "peer-$db" >"$OUT/peer-$db-$sc-$run.txt" 2>>"$OUT/loadgen.log"
        done
    done
    echo "latchkey-$db $(grep -E 'VmHWM' "/proc/$SERVER_PID/status" | tr -s ' \t' ' ')" >>"$OUT/rss.txt"
    echo "peer-$db $(grep -E 'VmHWM' "/proc/$PEER_PID/status" | tr -s ' \t' ' ')" >>"$OUT/rss.txt"
    cleanup
done

cat "$OUT"/*-*-*.txt | grep '^RESULT ' | sed 's/^RESULT //' >"$OUT/results.jsonl"
log "medians of $RUNS runs (raw results in $OUT)"
python3 - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault((r["label"], r["scenario"]), []).append(r)
med = lambda xs: statistics.median(xs) if xs else None
def m(label, sc, key):
    return med([r[key] for r in by.get((label, sc), []) if r.get(key) is not None])
def cpu_op(label, sc):
    xs = [r["server_cpu_cores"] / r["rps"] * 1e6 for r in by.get((label, sc), []) if r.get("server_cpu_cores") and r["rps"]]
    return med(xs)
f = lambda v, p=0: "n/a" if v is None else f"{v:,.{p}f}"
dbs = sorted({l.split("-", 1)[1] for (l, _) in by if l.startswith("latchkey-")})
for db in dbs:
    print(f"\n{db} (peer on its SQLite file, measured in the same run)")
    print("| operation | Latchkey | peer | ratio | Latchkey p99 ms | peer p99 ms | Latchkey CPU/op µs | peer CPU/op µs | Latchkey peak RSS MiB | peer peak RSS MiB | errors L/P |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    scs = [sc for (l, sc) in by if l == f"latchkey-{db}"]
    for sc in dict.fromkeys(scs):
        a, b = f"latchkey-{db}", f"peer-{db}"
        ra, rb = m(a, sc, "rps"), m(b, sc, "rps")
        ratio = f"{ra / rb:.2f}×" if ra and rb else "n/a"
        ea = sum(r["errors"] for r in by.get((a, sc), []))
        eb = sum(r["errors"] for r in by.get((b, sc), []))
        print(f"| {sc} | {f(ra)}/s | {f(rb)}/s | {ratio} | {f(m(a, sc, 'p99_ms'), 1)} | {f(m(b, sc, 'p99_ms'), 1)} "
              f"| {f(cpu_op(a, sc))} | {f(cpu_op(b, sc))} | {f(m(a, sc, 'server_peak_rss_mib'), 1)} | {f(m(b, sc, 'server_peak_rss_mib'), 1)} | {ea}/{eb} |")
PY
