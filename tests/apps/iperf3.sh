#!/usr/bin/env bash
# iperf3, server and client under `usmc run`: 1 stream, 4 streams, -R (server
# sends), 4 streams -R, and --bidir. Each run moves a fixed 256 MiB (-n).
# Checks: iperf3 reports no error on either end; the sender sent the 256 MiB
# (with -P 4 up to a 128 KiB block more per stream); with --bidir both
# directions moved data and neither received more than was sent; every
# connection (control + data streams) was SMC-D on both ends (exit reports:
# smcd == streams + 1, 2 x streams + 1 with --bidir); usmc's byte counters
# agree with iperf3's (sender's bytes out >= sent, receiver's bytes in >=
# what iperf3 received, never more than the sender wrote).
. "$(dirname "$0")/lib.sh"
app_begin iperf3

bytes=$((256 << 20))
one() {  # one NAME STREAMS [iperf3 client options]
  local name=$1 streams=$2 port; shift 2
  port=$(free_port)
  start usmc "${name}_s" iperf3 -s -1 -J -p "$port"
  check "$name: server listens" wait_listen "$port"
  check "$name: client runs" \
    run usmc "${name}_c" iperf3 -c 127.0.0.1 -p "$port" -n "$bytes" -P "$streams" -J "$@"
  check "$name: server exits" finish "${name}_s"
  local conns=$((streams + 1)) reverse=()
  [ "${1:-}" = --bidir ] && conns=$((2 * streams + 1))
  [ "${1:-}" = -R ] && reverse=(--reverse)
  local reports=()
  [ "$APPS_MODE" = usmc ] &&
    reports=(--client-report "$T/${name}_c.exit.jsonl" --server-report "$T/${name}_s.exit.jsonl")
  if [ "${1:-}" = --bidir ]; then
    # Both directions carry data: check each against the other's JSON.
    check "$name: iperf3 counts" "${CHECK[@]}" iperf3 --client-json "$T/${name}_c.out" \
      --server-json "$T/${name}_s.out" --bytes "$bytes" --streams $((2 * streams)) --bidir
  else
    check "$name: iperf3 and usmc counts" "${CHECK[@]}" iperf3 \
      --client-json "$T/${name}_c.out" --server-json "$T/${name}_s.out" \
      --bytes "$bytes" --streams "$streams" "${reverse[@]}" "${reports[@]}"
  fi
  check "$name: client SMC-D only" \
    expect_report "${name}_c" --expect "smcd==$conns" --expect tcp==0 --expect reasons==0
  check "$name: server SMC-D only" \
    expect_report "${name}_s" --expect "smcd==$conns" --expect tcp==0 --expect reasons==0
}

one p1 1
one p4 4
one r1 1 -R
one r4 4 -R
one bidir 1 --bidir
app_end
