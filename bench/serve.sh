#!/usr/bin/env bash
# Starts a release build of xcord for xcord-bench in the background and prints its pid:
# a fresh data directory, rate limits off, cheap password hashes, warnings-only logs.
#
#   bench/serve.sh PORT [sqlite|postgres] [NODE_ID] [REDIS_URL]
#
# With postgres, the database `xcord_bench_PORT` on 127.0.0.1:5432 is created anew.
# Extra XCORD_* variables in the environment are passed through; XCORD_BIN picks another
# build of the server (for before/after pairs).
set -euo pipefail
port=${1:?port}
backend=${2:-sqlite}
node=${3:-0}
redis=${4:-}
root=$(cd "$(dirname "$0")/.." && pwd)
data=${XCORD_BENCH_DATA:-$(mktemp -d /tmp/xcord-bench-XXXXXX)}
export XCORD_DATA_DIR=$data XCORD_LISTEN=127.0.0.1:$port XCORD_RATE_LIMITS=off \
  XCORD_PASSWORD_HASH=bcrypt:4 XCORD_LOG=${XCORD_LOG:-warn} XCORD_NODE_ID=$node
if [ "$backend" = postgres ]; then
  db=${XCORD_BENCH_DB:-xcord_bench_$port}
  if [ -z "${XCORD_BENCH_DB:-}" ]; then
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  fi
  export XCORD_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db XCORD_DATABASE_MAX_CONNECTIONS=32
fi
if [ -n "$redis" ]; then export XCORD_REDIS_URL=$redis; fi
"${XCORD_BIN:-$root/target/release/xcord}" serve >"$data/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  if curl -fs "http://127.0.0.1:$port/health/live" >/dev/null 2>&1; then echo "$pid"; exit 0; fi
  sleep 0.1
done
echo "the server did not start; see $data/server.log" >&2
exit 1
