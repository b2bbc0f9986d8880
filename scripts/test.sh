#!/usr/bin/env bash
# The README's test command: checks (starts, installs) RabbitMQ and Redis, runs every test
# against them, then runs the integration tests again on a local 3-master Redis Cluster.
# Arguments are passed to the test runner (a filter, say).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== services"
bash scripts/services.sh

if cargo nextest --version >/dev/null 2>&1; then
  run() { cargo nextest run --no-fail-fast "$@"; }
else
  run() { cargo test --no-fail-fast "$@"; }
fi

echo "== python example's dependency (pika)"
python3 -m pip install -q --disable-pip-version-check -r examples/python/requirements.txt \
  || echo "pika could not be installed: the Python example's test will skip" >&2

echo "== tests (Redis single node)"
run --workspace --lib --bins --tests "$@"

echo "== integration tests (3-master Redis Cluster)"
cluster_url=$(bash scripts/redis-cluster.sh start)
trap 'bash scripts/redis-cluster.sh stop' EXIT
SWITCHBOARD_REDIS_URL="$cluster_url" run --test integration "$@"
