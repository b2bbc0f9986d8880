#!/usr/bin/env bash
# The README's first command: on a fresh machine, starts RabbitMQ and Redis (installing them
# with apt if missing), builds Switchboard, starts a worker and a demo stream of events, and
# prints the assignments as they happen. Ctrl-C stops everything.
#   DEMO_SECONDS=30 bash scripts/demo.sh   # stop by itself after 30 s
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh
echo "== building switchboard (release)"
cargo build --release --quiet
bin=target/release/switchboard

log=$(mktemp -t switchboard-worker.XXXXXX.log)
SWITCHBOARD_HTTP_ADDR="${SWITCHBOARD_HTTP_ADDR:-127.0.0.1:9464}" "$bin" run 2>"$log" &
worker=$!
trap 'kill -TERM $worker 2>/dev/null; wait $worker 2>/dev/null; echo "worker stopped (log: $log)"' EXIT

for _ in $(seq 1 50); do
  if curl -sf "http://${SWITCHBOARD_HTTP_ADDR:-127.0.0.1:9464}/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
echo "== worker running (pid $worker, metrics on http://${SWITCHBOARD_HTTP_ADDR:-127.0.0.1:9464}/metrics, log $log)"
"$bin" demo --seconds "${DEMO_SECONDS:-0}"
