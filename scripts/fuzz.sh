#!/usr/bin/env bash
# Runs every libFuzzer target in build-fuzz/ for SECONDS each, seeded from
# fuzz/corpus/<target>/, and prints the executions per target.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
rc=0
while read -r target; do
  [ -n "$target" ] || continue
  bin=$(find build-fuzz -type f -name "$target" -perm -u+x | head -1)
  seeds=fuzz/corpus/$target
  work=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds/." "$work/"
  log=$(mktemp)
  if "$bin" -max_total_time="$seconds" -print_final_stats=1 "$work" >"$log" 2>&1; then
    execs=$(grep -m1 stat::number_of_executed_units "$log" | awk '{print $2}')
    echo "fuzz $target: ok, $execs executions in ${seconds}s"
  else
    echo "fuzz $target: FAILED"; tail -40 "$log"; rc=1
  fi
  rm -rf "$work" "$log"
done < build-fuzz/fuzzers.txt
exit $rc
