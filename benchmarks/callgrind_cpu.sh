#!/bin/bash
# Instructions (callgrind's Ir) the uvicorn server executes for one download:
#   benchmarks/callgrind_cpu.sh VARIANT CHUNK COUNT   (e.g. sluice 65536 1024)
# VARIANT is a path of benchmarks/apps.py (bare, starlette, sluice). Instruction
# counts repeat to ±0.3 % run to run, where CPU seconds on this shared machine swing
# ±15 %: use it to compare engine changes. The server runs under valgrind with
# instrumentation off; it is switched on for the second of two downloads only (the
# first warms up), so start-up and imports are not counted. 127.0.0.1 only; the
# server is stopped by its pid. Needs valgrind and curl; takes a minute or two.
set -euo pipefail
cd "$(dirname "$0")/.."
V=$1 CHUNK=$2 COUNT=$3
PY=${PYTHON:-.venv/bin/python}
PORT=$($PY -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
OUT=$(mktemp -d)
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/cg.%p" \
  "$PY" -m uvicorn benchmarks.apps:app --port "$PORT" --log-level warning --no-access-log \
  --lifespan off --http httptools --loop uvloop >/dev/null 2>"$OUT/valgrind.log" &
PID=$!
trap 'kill -INT $PID 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$PORT/idle" && break; sleep 0.2; done
URL="http://127.0.0.1:$PORT/$V?kind=bytes&chunk=$CHUNK&count=$COUNT"
curl -s -o /dev/null "$URL"
callgrind_control -i on "$PID" >/dev/null 2>&1
curl -s -o /dev/null "$URL"
callgrind_control -i off "$PID" >/dev/null 2>&1
kill -INT $PID
wait $PID || true
trap - EXIT
echo "$V chunk=$CHUNK count=$COUNT Ir=$(grep -h -m1 '^totals:' "$OUT"/cg.* | cut -d' ' -f2)"
rm -rf "$OUT"
