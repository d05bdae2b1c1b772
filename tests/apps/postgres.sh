#!/usr/bin/env bash
# PostgreSQL: the postmaster runs as the service user postgres and forks a
# backend process per connection; its clients (psql, pgbench) run as root,
# all under `usmc run` (issue 20: a backend forked per connection, client and
# server of different uids).
# Checks: a 4 MiB large object imported by psql (client -> server) has the
# file's MD5 on the server and exports back (server -> client) with the
# file's SHA-256; pgbench initialises its tables and runs its TPC-B-like
# script with 4 clients on kept connections, then with a new connection per
# transaction (-C), every transaction done and none failed (pgbench's own
# count); every connection of every client and of every backend was SMC-D
# (exit reports: the backends' lines together); the server's bytes equal
# the clients'.
. "$(dirname "$0")/lib.sh"
app_begin postgres

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/postgres" ] || [ ! -x "$PGBIN/pgbench" ]; then
  note "FAIL no PostgreSQL server or pgbench (scripts/install-deps.sh installs postgresql)"
  APP_FAILS=1
  app_end
fi
id postgres >/dev/null 2>&1 || { note "FAIL no user postgres"; APP_FAILS=1; app_end; }

stage_usmc_for_others
install -d -o postgres -m 0700 "$T/pg" "$T/pgsock"
check "initdb" runuser -u postgres -- "$PGBIN/initdb" -D "$T/pg" --auth=trust -U postgres \
  --no-sync -E UTF8
port=$(free_port)
as_user_prefix postgres usmc srv
start plain srv "${AS_USER[@]}" "$PGBIN/postgres" -D "$T/pg" -p "$port" \
  -c listen_addresses=127.0.0.1 -c unix_socket_directories="$T/pgsock" \
  -c fsync=off -c max_connections=40 -c logging_collector=off
check "server listens" wait_listen "$port"

PG=(-h 127.0.0.1 -p "$port" -U postgres)
"${CHECK[@]}" blob "$T/blob" --size $((4 << 20)) --seed 5 >/dev/null
sha=$(sha256sum "$T/blob" | cut -d' ' -f1)
md5=$(md5sum "$T/blob" | cut -d' ' -f1)
printf '%s\n' "\\lo_import '$T/blob'" 'select md5(lo_get(:LASTOID));' \
  'select :LASTOID;' >"$T/in.sql"
check "psql imports a 4 MiB large object" \
  run usmc psql_in "$PGBIN/psql" "${PG[@]}" -v ON_ERROR_STOP=1 -At -f "$T/in.sql"
check "the server's MD5 of it is the file's" \
  sh -c "sed -n 2p '$T/psql_in.out' | grep -qx '$md5'"
oid=$(sed -n 3p "$T/psql_in.out")
check "psql exports it back" \
  run usmc psql_out "$PGBIN/psql" "${PG[@]}" -v ON_ERROR_STOP=1 -At \
  -c "\\lo_export $oid '$T/blob.back'"
check "exported SHA-256 equals the file's" \
  same_sha "$T/blob.back" "$sha"

check "pgbench -i" run usmc bench_init "$PGBIN/pgbench" "${PG[@]}" -i -s 2 -q postgres
declare -A tx=([keep]=300 [new]=100)
for c in keep new; do
  args=(-c 4 -j 2 -t "${tx[$c]}" -n)
  [ $c = new ] && args+=(-C)
  check "pgbench ${args[*]}" run usmc "bench_$c" "$PGBIN/pgbench" "${PG[@]}" "${args[@]}" postgres
  check "pgbench ($c): every transaction processed" \
    grep -q "number of transactions actually processed: $((4 * tx[$c]))/$((4 * tx[$c]))" \
    "$T/bench_$c.out"
  check "pgbench ($c): none failed" \
    sh -c "! grep -q 'number of failed transactions: [1-9]' '$T/bench_$c.out'"
done
check "pgbench (kept connections): SMC-D only" expect_smcd bench_keep 4
check "pgbench -C: a connection per transaction, SMC-D only" \
  expect_smcd bench_new $((4 * tx[new]))

check "server stops (fast shutdown)" stop srv INT
cat "$T"/psql_*.exit.jsonl "$T"/bench_*.exit.jsonl >"$T/clients.exit.jsonl" 2>/dev/null
clients=$("${CHECK[@]}" report "$T/clients.exit.jsonl" --print | "$PY" -c \
  'import json,sys; print(json.load(sys.stdin)["conns"])')
check "backends: SMC-D only, one per client connection ($clients)" \
  expect_report srv --expect "smcd==$clients" --expect tcp==0 --expect reasons==0 \
  --expect handshake_errors==0
check "server bytes = clients' bytes" expect_bytes_match clients srv --min-bytes 1
app_end
