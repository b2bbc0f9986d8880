#!/usr/bin/env bash
# Starts (or stops) a 3-master Redis Cluster on loopback, for running the test suite against a
# cluster: `scripts/redis-cluster.sh start` prints the SWITCHBOARD_REDIS_URL to use.
# Ports: REDIS_CLUSTER_PORTS (default "7101 7102 7103"). Data lives in a temporary directory.
set -euo pipefail

ports=(${REDIS_CLUSTER_PORTS:-7101 7102 7103})
dir="${REDIS_CLUSTER_DIR:-/tmp/switchboard-redis-cluster}"

stop() {
  for port in "${ports[@]}"; do
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
}

start() {
  stop
  for port in "${ports[@]}"; do
    mkdir -p "$dir/$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$dir/$port/nodes.conf" --cluster-node-timeout 2000 \
      --save "" --appendonly no --dir "$dir/$port" --daemonize yes \
      --logfile "$dir/$port/redis.log" >/dev/null
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 50); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  nodes=()
  for port in "${ports[@]}"; do nodes+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  for _ in $(seq 1 100); do
    if redis-cli -p "${ports[0]}" cluster info | grep -q 'cluster_state:ok'; then
      urls=()
      for port in "${ports[@]}"; do urls+=("redis://127.0.0.1:$port"); done
      (IFS=,; echo "${urls[*]}")
      return 0
    fi
    sleep 0.1
  done
  echo "the Redis Cluster did not become ready" >&2
  return 1
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
