#!/usr/bin/env bash
# python3 asyncio, both ends under `usmc run`, hundreds of connections at once
# (issue 16, item 1): each connection sends 10 length-prefixed messages and
# checks the SHA-256 the server sends back for each. Under this load some
# handshakes fall back to TCP (a side busy for longer than the CLC timeout,
# both sides declining at once): every byte must still be right, no
# connection may be reset, and each fallback must be counted with its reason.
# USMC_APPS_AIO_CONNS (default "400 1000"): the runs, by connection count.
. "$(dirname "$0")/lib.sh"
app_begin asyncio_many

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
for n in ${USMC_APPS_AIO_CONNS:-400 1000}; do
  port=$(free_port)
  start usmc "srv$n" "$PY" "$APPS_DIR/asyncio_many.py" server --port "$port" --conns "$n"
  check "$n conns: server listens" wait_listen "$port"
  check "$n conns: 10 messages each, every SHA-256 reply right, no reset" \
    run usmc "cli$n" "$PY" "$APPS_DIR/asyncio_many.py" client --port "$port" --conns "$n" --msgs 10
  check "$n conns: server saw every message right, no reset" finish "srv$n"
  note "$n conns: client $(tail -n 1 "$T/cli$n.out")"
  for side in cli srv; do
    # Every connection was SMC-D or TCP with its fallback reason counted.
    check "$n conns: $side: $n connections, each fallback with a reason, no handshake error" \
      expect_report "$side$n" --expect "lines==1" --expect "conns==$n" \
      --expect "reasons==tcp" --expect handshake_errors==0
    [ "$APPS_MODE" = usmc ] &&
      note "$n conns: $side $("${CHECK[@]}" report "$T/$side$n.exit.jsonl" --print)"
  done
  check "$n conns: byte counters match" expect_bytes_match "cli$n" "srv$n"
done
app_end
