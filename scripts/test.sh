#!/usr/bin/env bash
# The README's test command: checks (starts, installs) RabbitMQ and Redis, runs every test
# against them, then the integration tests again in store layout 2, then both on a local
# 3-master Redis Cluster.
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

echo "== the previous release, for the upgrade test (built once)"
bash scripts/previous-release.sh

echo "== python example's dependency (pika)"
python3 -m pip install -q --disable-pip-version-check -r examples/python/requirements.txt \
  || echo "pika could not be installed: the Python example's test will skip" >&2

# Whatever the outcome, leave the machine's Redis without the tests' projects and RabbitMQ without
# their queues and exchanges (their names are generated; nothing else is touched), and stop the
# test cluster.
cluster_started=""
finish() {
  if [ -n "$cluster_started" ]; then bash scripts/redis-cluster.sh stop; fi
  local redis_args=()
  if [ -n "${SWITCHBOARD_REDIS_URL:-}" ]; then redis_args=(-u "${SWITCHBOARD_REDIS_URL%%,*}"); fi
  bash scripts/forget-test-data.sh "${redis_args[@]}" \
    || echo "could not delete the tests' data from Redis" >&2
  bash scripts/forget-test-topology.sh || echo "could not delete the tests' queues and exchanges" >&2
}
trap finish EXIT

echo "== tests (Redis single node)"
run --workspace --lib --bins --tests "$@"

# Store layout 2 (SWITCHBOARD_STORE_LAYOUT=2) must keep every invariant layout 1 keeps: the
# integration tests again with the tests' workers and stores writing it. The upgrade tests run
# an earlier release beside this one, which layout 2 is not for.
echo "== integration tests in store layout 2 (Redis single node)"
SWITCHBOARD_STORE_LAYOUT=2 run --test integration "$@" -- --skip upgrade

echo "== integration tests (3-master Redis Cluster)"
cluster_started=yes
cluster_url=$(bash scripts/redis-cluster.sh start)
SWITCHBOARD_REDIS_URL="$cluster_url" run --test integration "$@"

echo "== integration tests in store layout 2 (3-master Redis Cluster)"
SWITCHBOARD_REDIS_URL="$cluster_url" SWITCHBOARD_STORE_LAYOUT=2 run --test integration "$@" -- --skip upgrade
