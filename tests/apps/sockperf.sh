#!/usr/bin/env bash
# sockperf over TCP, server and clients under `usmc run`: ping-pong,
# throughput and under-load, messages of 14 B, 1 KiB and 64 KiB.
# Checks: each client run succeeds with its summary; every connection of
# clients and server was SMC-D (exit reports; `usmc ss` while a ping-pong
# runs); the bytes the clients sent are the bytes the server received, and
# they read no more than it sent (a client stops at its deadline with replies
# in flight) (usmc's counters on both ends). sockperf has no payload
# check of its own, so a SHA-256-checked echo of 8 MiB runs between two
# python processes in the same way (both under usmc).
. "$(dirname "$0")/lib.sh"
app_begin sockperf

port=$(free_port)
start usmc srv sockperf sr --tcp -i 127.0.0.1 -p "$port" -m 65536
check "server listens" wait_listen "$port"

# sockperf's ping-pong sizes its table of send times for 600,000 round trips
# a second unless told a rate, and stops with "_seqN > m_maxSequenceNo" when
# a transport is faster than that (its defs.h: MPS_MAX_PP); SMC-D can be.
pp_rate=(--mps 2000000)

clients=()
for size in 14 1024 65536; do
  for mode in pp tp ul; do
    name=${mode}_$size
    clients+=("$name")
    rate=()
    [ "$mode" = pp ] && rate=("${pp_rate[@]}")
    check "sockperf $mode -m $size" \
      run usmc "$name" sockperf "$mode" --tcp -i 127.0.0.1 -p "$port" -m "$size" -t 1 "${rate[@]}"
    check "$name printed its summary" grep -q "Summary:" "$T/$name.out"
    check "$name: SMC-D" expect_smcd "$name" 1
  done
done

# A connection seen while it is open (not only counted at exit).
start usmc pp_long sockperf pp --tcp -i 127.0.0.1 -p "$port" -m 64 -t 4 "${pp_rate[@]}"
check "ss: client connection is SMCD" \
  expect_ss --comm sockperf --role client --expect mode=SMCD --expect local_reason==0
check "ss: server connection is SMCD" \
  expect_ss --comm sockperf --role server --expect mode=SMCD --expect peer_reason==0
check "long ping-pong" finish pp_long
clients+=(pp_long)

check "server exits on SIGINT" stop srv INT
check "server: all SMC-D" expect_smcd srv "${#clients[@]}"
for c in "${clients[@]}"; do cat "$T/$c.exit.jsonl"; done >"$T/clients.exit.jsonl" 2>/dev/null
check "bytes: clients sent = server received; clients read <= server sent" \
  expect_bytes_match clients srv --min-bytes 1 --unread-ok

# Payload check next to sockperf.
xport=$(free_port)
start usmc xsrv "$PY" "$APPS_DIR/check.py" xfer-server --port "$xport"
check "xfer server listens" wait_listen "$xport"
check "8 MiB echo, sha256 equal" \
  run usmc xcli "$PY" "$APPS_DIR/check.py" xfer-client --port "$xport" --size $((8 << 20))
check "xfer server done" finish xsrv
check "xfer: SMC-D both ends" expect_smcd xcli 1
check "xfer: SMC-D server" expect_smcd xsrv 1
check "xfer: byte counters match" expect_bytes_match xcli xsrv --min-bytes $((8 << 20))
app_end
