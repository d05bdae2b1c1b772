#!/usr/bin/env bash
# memcached started as root with `-u nobody` (it binds, then drops to the
# service user, as its Debian unit does), its clients as root, all under
# `usmc run`: a pair of different uids after a privilege drop (issue 20).
# memcached builds its replies with one sendmsg of several iovecs.
# Checks: random values (0 B .. 1 MB) set and read back equal, one at a time,
# pipelined, appended and in one multi-get (a python client speaking the text
# protocol); memcslap (libmemcached's load tool) sets and gets with 4 threads
# without an error; every connection of every client and of the server was
# SMC-D (exit reports); the server's byte counters equal the clients'; a
# plain client's connection to the server under usmc is TCP with PEERNOSMC,
# its data equal too.
. "$(dirname "$0")/lib.sh"
app_begin memcached

MEMCACHED=/usr/bin/memcached
if [ ! -x "$MEMCACHED" ] || ! command -v memcslap >/dev/null; then
  note "FAIL no memcached or memcslap (scripts/install-deps.sh installs memcached, libmemcached-tools)"
  APP_FAILS=1
  app_end
fi

# The server writes its exit report as nobody, after the drop.
chmod 0711 "$T"
install -m 0666 /dev/null "$T/srv.exit.jsonl"

port=$(free_port)
start usmc srv "$MEMCACHED" -u nobody -l 127.0.0.1 -p "$port" -U 0 -t 2 -I 2m -c 256
check "server listens" wait_listen "$port"
check "server dropped to nobody" \
  sh -c "ps -o user= -C memcached | grep -qx nobody"

check "values read back equal (python, 1 connection)" \
  run usmc py "$PY" "$APPS_DIR/check.py" memcached-check --port "$port" --keys 300
check "python client: SMC-D" expect_smcd py 1

for t in set get; do
  check "memcslap -t $t, 4 threads" \
    run usmc "slap_$t" memcslap -s "127.0.0.1:$port" -c 4 -e 5000 -t "$t"
  check "memcslap $t: no error reported" \
    sh -c "! grep -qi 'fail\|error' '$T/slap_$t.out' '$T/slap_$t.err'"
  check "memcslap $t: SMC-D only" expect_smcd "slap_$t" 4
done

# A plain client: the server under usmc talks plain TCP to it.
check "plain client: values read back equal" \
  run plain plain_py "$PY" "$APPS_DIR/check.py" memcached-check --port "$port" --keys 50 --seed 7

check "server exits on SIGINT" stop srv INT
check "server: SMC-D for usmc clients, TCP (PEERNOSMC) for the plain one" \
  expect_report srv --expect "smcd>=9" --expect tcp==1 \
  --expect "reason:$PEERNOSMC==1" --expect reasons==1 --expect handshake_errors==0
cat "$T"/py.exit.jsonl "$T"/slap_*.exit.jsonl >"$T/clients.exit.jsonl" 2>/dev/null
check "server's SMC-D bytes = clients' bytes" \
  expect_bytes_match clients srv --min-bytes 1 --kind smcd
app_end
