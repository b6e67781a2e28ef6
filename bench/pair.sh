#!/usr/bin/env bash
# Runs xcord-bench against two builds of the server alternately, ROUNDS times, printing the
# JSON lines of each run under its label: a before/after pair measured in one session.
#
#   bench/pair.sh ROUNDS BEFORE_BIN AFTER_BIN BACKEND -- xcord-bench arguments…
#
# XCORD_BENCH_BIN picks another build of the tool (default target/release/xcord-bench);
# e.g. `-- voice --rooms 1 --participants 50` pairs the voice mode.
set -euo pipefail
rounds=$1; before=$2; after=$3; backend=$4; shift 4
[ "${1:-}" = "--" ] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
port=39400
for r in $(seq "$rounds"); do
  for label in before after; do
    bin=$before; [ $label = after ] && bin=$after
    port=$((port + 1))
    pid=$(XCORD_BIN=$bin "$root/bench/serve.sh" "$port" "$backend")
    echo "== $label (round $r)"
    "${XCORD_BENCH_BIN:-$root/target/release/xcord-bench}" --target "http://127.0.0.1:$port" --server-pid "$pid" "$@" | grep '^{' || true
    kill "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
done
