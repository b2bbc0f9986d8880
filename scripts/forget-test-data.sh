#!/usr/bin/env bash
# Deletes what the test suite, the benchmark and simulations left in a Redis: the keys of their
# generated projects only (ids "p-", "py-" or "bench-" followed by 32 hex digits, "sim-" followed
# by 8), the benchmark relay's counters, and the Switchboard function libraries the builds under
# test loaded ("switchboard_" and 16 hex digits; a worker still running against this Redis loads
# its own again at its next call); never anything else. Do not run it while tests or
# a benchmark are running against the same Redis.
# Usage: scripts/forget-test-data.sh [redis-cli options, e.g. -p 6380]
set -euo pipefail
hex() { printf '[0-9a-f]%.0s' $(seq "$1"); }
patterns=(
  "sb:{p-$(hex 32)}:*"
  "sb:{py-$(hex 32)}:*"
  "sb:{bench-$(hex 32)}:*"
  "sb:{sim-$(hex 8)}:*"
  "{bench}:bench-$(hex 32).work*"
)
for pattern in "${patterns[@]}"; do
  redis-cli "$@" --scan --pattern "$pattern" | xargs -r -n 500 redis-cli "$@" unlink > /dev/null
done
# Every build loads a library of its own version (a few hundred KB each).
redis-cli "$@" FUNCTION LIST LIBRARYNAME 'switchboard_*' \
  | { grep -xE "switchboard_[0-9a-f]{16}" || true; } \
  | while read -r library; do redis-cli "$@" FUNCTION DELETE "$library" > /dev/null; done
