#!/usr/bin/env bash
# Makes sure RabbitMQ (127.0.0.1:5672, guest/guest) and Redis (127.0.0.1:6379) are running on
# this Debian machine: starts whichever is down, installing it with apt first if it is missing.
# Idempotent; returns once both answer.
set -euo pipefail

apt_updated=0
install() {
  if [ "$apt_updated" = 0 ]; then
    echo "apt-get update" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  echo "installing $*" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name, check command, seconds
  local name=$1 check=$2 seconds=$3
  for _ in $(seq 1 "$seconds"); do
    if eval "$check" >/dev/null 2>&1; then echo "$name: ready"; return 0; fi
    sleep 1
  done
  echo "$name: did not become ready within ${seconds}s" >&2
  return 1
}

redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! redis_up; then
  command -v redis-server >/dev/null || install redis-server redis-tools
  if ! redis_up; then
    logdir=/var/log/redis; datadir=/var/lib/redis
    mkdir -p "$logdir" "$datadir" 2>/dev/null || { logdir=/tmp; datadir=/tmp; }
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir "$datadir" --logfile "$logdir/redis-server.log" \
      || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
           --dir "$datadir" --logfile "$logdir/redis-server.log"
  fi
fi
wait_for redis redis_up 30

rabbit_up() { port_open 5672 && rabbitmq-diagnostics -q check_port_connectivity; }

if ! port_open 5672; then
  command -v rabbitmq-server >/dev/null || install rabbitmq-server
  if ! port_open 5672; then
    rabbitmq-server -detached
  fi
fi
wait_for rabbitmq rabbit_up 120
# Quorum queues and at-least-once dead-lettering need the 3.10 feature flags enabled.
rabbitmqctl -q enable_feature_flag all >/dev/null 2>&1 || true
