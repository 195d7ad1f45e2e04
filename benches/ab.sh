#!/usr/bin/env bash
# Two builds of Latchkey against each other, in the same run: both servers are
# up side by side (each on its own data directory, or its own PostgreSQL
# database), and every scenario measures A and then B with the same load
# generator, run after run, so that other work on the machine touches both
# alike. For one change, this says more than two side-by-side runs an hour apart.
#
# Usage: A=/path/to/old/latchkey B=target/release/latchkey benches/ab.sh
# Settings (environment): DBS="sqlite postgres" RUNS=2 DURATION=8s WARMUP=1s
#   CONCURRENCY=32 USERS=64 SCENARIOS="signin mint-ed25519 premium"
#   LOADGEN (default: the release loadgen under CARGO_TARGET_DIR or target/)
#   PG=postgres://postgres@127.0.0.1:5432 OUT=<dir for raw results>
# Prints one line per run: build, database, scenario, req/s, p99, server CPU
# per operation (µs). Only 127.0.0.1 is ever targeted.
set -euo pipefail
cd "$(dirname "$0")/.."

A=${A:?set A to the first latchkey binary}
B=${B:?set B to the second latchkey binary}
RUNS=${RUNS:-2}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-1s}
CONCURRENCY=${CONCURRENCY:-32}
USERS=${USERS:-64}
SCENARIOS=${SCENARIOS:-signin mint-ed25519 premium}
DBS=${DBS:-sqlite postgres}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
TARGET=${CARGO_TARGET_DIR:-target}
LOADGEN=${LOADGEN:-$TARGET/release/examples/loadgen}
OUT=${OUT:-$(mktemp -d /tmp/latchkey-ab.XXXXXX)}
ORIGIN=http://localhost:8080
export LATCHKEY_RATE_LIMIT_CEREMONIES=0 LATCHKEY_RATE_LIMIT_LICENSES=0 LATCHKEY_RATE_LIMIT_ADMIN=0 LATCHKEY_RATE_LIMIT_PREMIUM=0
mkdir -p "$OUT"
[ -x "$A" ] && [ -x "$B" ] && [ -x "$LOADGEN" ] || { echo "A, B and $LOADGEN must be executables" >&2; exit 1; }

declare -A BIN=([a]=$A [b]=$B) PORT=([a]=18201 [b]=18202) PID=() DIR=() URL=()
cleanup() {
    for v in a b; do
        if [ -n "${PID[$v]:-}" ]; then kill -TERM "${PID[$v]}" 2>/dev/null || true; wait "${PID[$v]}" 2>/dev/null || true; fi
        if [ -n "${URL[$v]:-}" ]; then psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS \"${URL[$v]##*/}\" WITH (FORCE)" >/dev/null 2>&1 || true; fi
        if [ -n "${DIR[$v]:-}" ]; then rm -rf "${DIR[$v]}"; fi
        PID[$v]="" URL[$v]="" DIR[$v]=""
    done
}
trap cleanup EXIT INT TERM

for db in $DBS; do
    for v in a b; do
        DIR[$v]=$(mktemp -d "/tmp/latchkey-ab-$v.XXXXXX")
        URL[$v]=""
        if [ "$db" = postgres ]; then
            URL[$v]=$PG/latchkey_ab_${v}_$$
            psql "$PG/postgres" -qc "CREATE DATABASE \"latchkey_ab_${v}_$$\"" >/dev/null
        fi
        env LATCHKEY_DATA_DIR="${DIR[$v]}" ${URL[$v]:+LATCHKEY_DATABASE_URL=${URL[$v]}} \
            LATCHKEY_METRICS_LISTEN=127.0.0.1:$((PORT[$v] + 1000)) \
            "${BIN[$v]}" serve --listen "127.0.0.1:${PORT[$v]}" >>"$OUT/$v-$db.log" 2>&1 &
        PID[$v]=$!
    done
    for v in a b; do
        for _ in $(seq 1 300); do
            curl -fsS -o /dev/null "http://127.0.0.1:${PORT[$v]}/readyz" 2>/dev/null && break
            kill -0 "${PID[$v]}" 2>/dev/null || { echo "build $v did not start; see $OUT/$v-$db.log" >&2; exit 1; }
            sleep 0.05
        done
    done
    for run in $(seq 1 "$RUNS"); do
        for sc in $SCENARIOS; do
            for v in a b; do
                env LATCHKEY_DATA_DIR="${DIR[$v]}" ${URL[$v]:+LATCHKEY_DATABASE_URL=${URL[$v]}} \
                    "$LOADGEN" --url "http://127.0.0.1:${PORT[$v]}" --origin "$ORIGIN" --users "$USERS" \
                    --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" --scenario "$sc" \
                    --server-pid "${PID[$v]}" --cli "${BIN[$v]}" --label "$v-$db" 2>>"$OUT/loadgen.log" \
                    | grep '^RESULT ' | sed 's/^RESULT //' | tee -a "$OUT/results.jsonl" \
                    | python3 -c 'import json, sys
r = json.loads(sys.stdin.read())
cpu = r["server_cpu_cores"] / r["rps"] * 1e6 if r.get("server_cpu_cores") and r["rps"] else float("nan")
label, sc, rps, p99, err = r["label"], r["scenario"], r["rps"], r["p99_ms"], r["errors"]
print(f"{label:<12} {sc:<13} {rps:>9,.0f}/s  p99 {p99:6.1f} ms  CPU/op {cpu:5.0f} µs  errors {err}")'
            done
        done
    done
    cleanup
done
echo "raw results: $OUT/results.jsonl" >&2
