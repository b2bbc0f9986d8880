#!/usr/bin/env bash
# Deletes what the test suite, the benchmark and simulations left in the local RabbitMQ (default
# vhost): the queues and exchanges of test topologies ("t-" followed by 32 hex digits, then ".in",
# ".work", ...), the acknowledgement tests' queues ("acks-" and 32 hex digits), the benchmark's
# drains ("bench-" and 32 hex digits, then ".in", ".sink", ...) and `switchboard simulate`'s
# ("switchboard-sim-" and 8 hex digits, then ".in", ...). Each deletes its own when it ends
# well; one that panics, or a run that is interrupted, leaves them, and this sweeps them. Never
# touches anything else. Needs `rabbitmqctl` (it is skipped with a message when there is none).
# Do not run it while tests, a benchmark or a simulation run against the same broker.
set -euo pipefail
if ! command -v rabbitmqctl >/dev/null 2>&1; then
  echo "rabbitmqctl not found: the tests' queues and exchanges were not swept" >&2
  exit 0
fi
pattern='^(t-[0-9a-f]{32}\.|acks-[0-9a-f]{32}$|bench-[0-9a-f]{32}\.|switchboard-sim-[0-9a-f]{8}\.)'
queues=$(rabbitmqctl -q list_queues name --no-table-headers 2>/dev/null | grep -E "$pattern" || true)
for queue in $queues; do rabbitmqctl -q delete_queue "$queue" >/dev/null; done
exchanges=$(rabbitmqctl -q list_exchanges name --no-table-headers 2>/dev/null | grep -E "$pattern" || true)
if [ -n "$exchanges" ]; then
  list=$(printf '<<"%s">>,' $exchanges)
  rabbitmqctl -q eval "[rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, X), false, <<\"tests\">>) || X <- [${list%,}]], ok." >/dev/null
fi
