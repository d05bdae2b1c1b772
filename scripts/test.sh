#!/usr/bin/env bash
# README command (b): install, build every flavour, run the whole suite.
#   1. unit + integration tests (gcc build) through CTest
#   2. the same tests under ASan + UBSan; a gcc Release build (-O3, -Werror)
#      and its unit tests (ctest -L unit)
#   3. every libFuzzer target for USMC_FUZZ_SECONDS each (default 10; 30
#      with CI set)
#   4. real programs under `usmc run` (scripts/apps.sh, tests/apps/; ~15 min,
#      Redis's own test suite as a subset: USMC_REDIS_SUITE=full runs all of
#      it, ~20 min more, tests/apps/README.md)
# Ends with one line "usmc: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh || exit 1

passed=0
failed=0
step() {  # step NAME CMD...: runs CMD, counts it
  local name=$1; shift
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); echo "=== $name: ok"
  else failed=$((failed + 1)); echo "=== $name: FAILED"; fi
}

ctest_in() { ctest --test-dir "$1" --output-on-failure -j "$(nproc)" --timeout 600; }

step "build (gcc)" scripts/build.sh default
step "tests (gcc)" ctest_in build
step "build (asan+ubsan)" scripts/build.sh asan
step "tests (asan+ubsan)" ctest_in build-asan
# -O3 under -Werror warns differently (gcc 12); the unit tests only.
step "build (gcc Release)" scripts/build.sh release
step "unit tests (gcc Release)" ctest --test-dir build-release -L unit \
  --output-on-failure -j "$(nproc)" --timeout 600
step "build (fuzz)" scripts/build.sh fuzz
fuzz_seconds=10
if [ -n "${CI:-}" ]; then
  fuzz_seconds=30
fi
step "fuzzers" scripts/fuzz.sh "${USMC_FUZZ_SECONDS:-$fuzz_seconds}"
step "apps (real programs)" scripts/apps.sh

echo "usmc: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
