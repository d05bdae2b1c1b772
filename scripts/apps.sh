#!/usr/bin/env bash
# The real-program suite (issue 5): sockperf, iperf3, redis (+ Redis's own
# test suite), python, curl, forking servers, mixed usmc/plain pairs, nginx
# as a reverse proxy, git daemon + clone and sshd + ssh, each
# under `usmc run` on both ends unless the test says otherwise. See
# tests/apps/*.sh for what each checks.
#
#   scripts/apps.sh                 every test, under usmc (needs root: eBPF setup)
#   scripts/apps.sh sockperf curl   only these
#   scripts/apps.sh --tcp           the same programs without usmc (data checks only)
#
# The negotiation program is attached to a private cgroup (tests/apps/lib.sh)
# for the suite's duration and removed afterwards. Ends with one line
# "apps: N passed, N failed"; exit status 0 only if none failed.
# USMC_BUILD picks the build directory (default build/). Redis's own test
# suite runs a subset by default (USMC_REDIS_SUITE=full for all of it;
# USMC_APPS_REDIS_SUITE=0 leaves it out).
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/apps/lib.sh

if [ "${1:-}" = --tcp ]; then
  export USMC_APPS_MODE=tcp APPS_MODE=tcp
  shift
fi
export USMC_APPS_MODE=$APPS_MODE
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(sockperf iperf3 redis python asyncio_many curl fork mixed nginx git ssh memcached postgres haproxy
         soak redis-suite)
  # USMC_APPS_REDIS_SUITE=0 leaves Redis's own suite out (two runs of a
  # subset of ./runtest, about 4 minutes together).
  [ "${USMC_APPS_REDIS_SUITE:-1}" = 0 ] && unset 'tests[-1]'
fi

if [ "$APPS_MODE" = usmc ]; then
  if ! "$USMC" run -- true 2>/dev/null; then
    echo "apps: \`$USMC run\` does not work (build it first: scripts/build.sh)"
    echo "apps: 0 passed, ${#tests[@]} failed"
    exit 1
  fi
  trap negotiation_down EXIT
  trap 'exit 130' INT TERM
  if ! negotiation_up; then
    echo "apps: could not set up the negotiation program (root needed)"
    echo "apps: 0 passed, ${#tests[@]} failed"
    exit 1
  fi
fi

passed=0
failed=0
failed_names=()
for t in "${tests[@]}"; do
  limit=300
  if [ "$t" = redis-suite ]; then  # two runs of ./runtest
    limit=1800
    # full: two runs of at most 30 minutes each (redis-suite.sh), ~24 together
    [ "${USMC_REDIS_SUITE:-}" = full ] && limit=3700
  fi
  start_s=$(date +%s)
  timeout --foreground -k 10 "$limit" "tests/apps/$t.sh"
  rc=$?
  echo "=== $t: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $(($(date +%s) - start_s)) s"
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failed_names+=("$t")
  fi
done
[ $failed -eq 0 ] || echo "apps: failed: ${failed_names[*]}"
echo "apps: $passed passed, $failed failed"
[ $failed -eq 0 ]
