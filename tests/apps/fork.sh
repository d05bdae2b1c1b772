#!/usr/bin/env bash
# Forking servers under `usmc run` (python, os.fork):
#  - "fork": accept, fork, the child serves the connection, the parent closes
#    its copy at once (the SMC connection must live on in the child);
#  - "prefork": listen, fork 4 workers, each accepts and serves in turn.
# Clients (under usmc) send 24 connections of 2 MiB (12 of them at once) and
# check each echo by SHA-256. Checks: all echoes equal, every worker/child
# exited 0, all client connections SMC-D, no TCP connection on any server
# process, and the bytes all server processes received/sent equal the
# clients' (exit reports of parent and children summed).
. "$(dirname "$0")/lib.sh"
app_begin fork

for mode in fork prefork; do
  port=$(free_port)
  start usmc "${mode}_srv" "$PY" "$APPS_DIR/check.py" fork-server --mode "$mode" \
    --port "$port" --conns 24 --workers 4
  check "$mode: listens" wait_listen "$port"
  check "$mode: 12 sequential echoes equal" \
    run usmc "${mode}_seq" "$PY" "$APPS_DIR/check.py" xfer-client --port "$port" \
    --conns 12 --size $((2 << 20)) --seed 100
  check "$mode: 12 parallel echoes equal" \
    run usmc "${mode}_par" "$PY" "$APPS_DIR/check.py" xfer-client --port "$port" \
    --conns 12 --size $((2 << 20)) --seed 200 --parallel
  check "$mode: server and workers exit 0" finish "${mode}_srv"
  check "$mode: clients 12 SMC-D" expect_smcd "${mode}_seq" 12
  check "$mode: clients 12 SMC-D (parallel)" expect_smcd "${mode}_par" 12
  cat "$T/${mode}_seq.exit.jsonl" "$T/${mode}_par.exit.jsonl" >"$T/${mode}_cli.exit.jsonl" 2>/dev/null
  check "$mode: clients: 24 SMC-D" expect_report "${mode}_cli" --min-lines 2 --expect smcd==24
  # A line from every child / worker (each moved data; a process that never
  # had a connection, like the pre-fork parent, writes none).
  lines=4
  [ "$mode" = fork ] && lines=24
  check "$mode: server processes: 24 SMC-D, no TCP, reports from all" \
    expect_report "${mode}_srv" --min-lines "$lines" --expect smcd==24 --expect tcp==0 \
    --expect reasons==0 --expect handshake_errors==0
  check "$mode: server bytes = clients' bytes" \
    expect_bytes_match "${mode}_cli" "${mode}_srv" --min-bytes $((48 << 20))
done
app_end
