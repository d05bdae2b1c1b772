#!/usr/bin/env bash
# bench/scale_bench.sh: connections per second and memory per connection with
# 100, 1,000 and 10,000 connections held, usmc vs TCP (issue 21). By hand,
# not in CI; needs root (the negotiation program on a private cgroup, as
# tests/apps/lib.sh) and a build with tests (tests/scale_probe).
#
#   bench/scale_bench.sh [COUNTS]       COUNTS: default "100 1000 10000"
#
# For each count and each mode (TCP: both ends plain; usmc: both under
# `usmc run`) tests/scale_probe opens that many connections one after
# another and holds them all (a 4 KiB hello each way per setup, every byte
# checked), then moves 8 KiB more each way on every one. Printed per side:
#   conn/s     count / wall time from the first connect (client) or accept
#              (server) to the last setup
#   fds/conn   /proc/self/fd after the setups minus before, divided
#   anon KiB   RssAnon growth per connection (heap, usmc's state)
#   shm KiB    RssShmem growth per connection (memfd DMB pages touched:
#              its own DMB and the peer's, both mapped)
# While the usmc client holds them all, `usmc ss` and `usmc stats` are timed.
# A count whose fds do not fit in the hard RLIMIT_NOFILE is skipped with a
# word (usmc's fds per connection: issue 21).
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/apps/lib.sh
export USMC_APPS_MODE=usmc APPS_MODE=usmc
PROBE=${SCALE_PROBE:-$USMC_BUILD/tests/scale_probe}
[ -x "$PROBE" ] || { echo "no $PROBE (build with tests first)" >&2; exit 1; }
COUNTS=${1:-"100 1000 10000"}
HARD=$(ulimit -Hn)
T=$(mktemp -d /tmp/usmc-scale-bench.XXXXXX)
mkdir -m 0700 "$T/status"
export USMC_STATUS_DIR="$T/status"
trap 'negotiation_down; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
negotiation_up || { echo "negotiation setup failed" >&2; exit 1; }

field() {  # field FILE KEY: the value of KEY= on the STATS line
  sed -n "s/.*STATS.* $2=\([^ ]*\).*/\1/p" "$1"
}
per_conn() {  # per_conn "a,b" N: (b - a) / N, one decimal
  awk -v v="$1" -v n="$2" 'BEGIN { split(v, x, ","); printf "%.1f", (x[2] - x[1]) / n }'
}

echo "| held | mode | side | conn/s | fds/conn | anon KiB/conn | shm KiB/conn |"
echo "|---:|---|---|---:|---:|---:|---:|"
for n in $COUNTS; do
  for mode in tcp usmc; do
    prefix=()
    [ "$mode" = usmc ] && prefix=("$USMC" run --)
    # usmc's fds per connection today: up to 8 on a server (issue 21).
    per=1
    [ "$mode" = usmc ] && per=8
    nofile=$((n * per + 200))
    if [ "$nofile" -gt "$HARD" ]; then
      echo "| $n | $mode | - | skipped: needs RLIMIT_NOFILE $nofile, hard limit $HARD | | | |"
      continue
    fi
    rm -f "$T/hold" "$T"/*.out
    "${prefix[@]}" "$PROBE" server "$n" "$nofile" >"$T/srv.out" 2>"$T/srv.err" &
    spid=$!
    for _ in $(seq 100); do grep -q PORT "$T/srv.out" && break; sleep 0.05; done
    port=$(sed -n 's/^PORT //p' "$T/srv.out")
    SCALE_HOLD=$T/hold "${prefix[@]}" "$PROBE" client "$port" "$n" "$nofile" \
      >"$T/cli.out" 2>"$T/cli.err" &
    cpid=$!
    for _ in $(seq 6000); do grep -q HELD "$T/cli.out" && break; sleep 0.05; done
    if [ "$mode" = usmc ]; then
      s0=$(date +%s.%N)
      lines=$("$USMC" ss 2>/dev/null | wc -l)
      s1=$(date +%s.%N)
      "$USMC" stats >/dev/null 2>&1
      s2=$(date +%s.%N)
      echo "usmc ss with $n held: $lines lines in $(echo "$s1 - $s0" | bc) s; usmc stats: $(echo "$s2 - $s1" | bc) s" >&2
    fi
    touch "$T/hold"
    wait "$cpid" || { echo "client failed: $(tail -3 "$T/cli.err")" >&2; }
    wait "$spid" || { echo "server failed: $(tail -3 "$T/srv.err")" >&2; }
    for side in cli srv; do
      f=$T/$side.out
      s=$(field "$f" setup_s)
      [ -n "$s" ] || continue
      rate=$(awk -v n="$n" -v s="$s" 'BEGIN { printf "%.0f", n / s }')
      fds=$(awk -v a="$(field "$f" fds_before)" -v b="$(field "$f" fds_after)" -v n="$n" \
        'BEGIN { printf "%.1f", (b - a) / n }')
      echo "| $n | $mode | $side | $rate | $fds | $(per_conn "$(field "$f" anon_kb)" "$n") | $(per_conn "$(field "$f" shmem_kb)" "$n") |"
    done
  done
done
