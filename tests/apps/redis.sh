#!/usr/bin/env bash
# redis-server with its clients, all under `usmc run`.
# Checks: values written with SET (0 B .. 1 MiB, random bytes) read back
# equal with GET, pipelined GET, APPEND and MGET (a python RESP client);
# redis-benchmark SET/GET with 50 clients at -P 1 and -P 16 completes every
# request; redis-cli reads a value back; every connection of every client and
# of the server was SMC-D (exit reports; `usmc ss` while the benchmark runs);
# the server's byte counters equal the sum of the clients'.
. "$(dirname "$0")/lib.sh"
app_begin redis

port=$(free_port)
start usmc srv redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$T" --logfile "$T/redis.log"
check "server listens" wait_listen "$port"

check "SET/GET values read back equal (python, 1 connection)" \
  run usmc py "$PY" "$APPS_DIR/check.py" redis-check --port "$port" --keys 300
check "python client: SMC-D" expect_smcd py 1

requests=20000
for p in 1 16; do
  name=bench_p$p
  check "redis-benchmark -P $p -c 50" \
    run usmc "$name" redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n "$requests" \
    -P "$p" -t set,get -r 1000 -d 64 --csv
  # --csv: one line per test with its rps; both tests must be there.
  check "$name: SET and GET results" grep -q '^"SET"' "$T/$name.out"
  check "$name: GET result" grep -q '^"GET"' "$T/$name.out"
  check "$name: 50 SMC-D connections, no TCP" expect_smcd "$name" 50
done

# The benchmark's connections, seen while they are open.
# (long enough to be seen: a few seconds even over SMC-D; it runs to its end)
start usmc bench_long redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n 300000 -t get -q
check "ss: benchmark connections are SMCD" \
  expect_ss --comm redis-benchmark --role client --min 50 --expect mode=SMCD
check "ss: server side is SMCD" \
  expect_ss --comm redis-server --role server --min 50 --expect mode=SMCD
check "long benchmark completes" finish bench_long
check "bench_long: 50 SMC-D connections, no TCP" expect_smcd bench_long 50

check "redis-cli SET" run usmc cli_set redis-cli -p "$port" set usmc:cli "hello usmc"
check "redis-cli GET reads it back" run usmc cli_get redis-cli -p "$port" get usmc:cli
check "redis-cli got the value" grep -qx "hello usmc" "$T/cli_get.out"
check "redis-cli SHUTDOWN" run usmc cli_down redis-cli -p "$port" shutdown nosave
check "server exits" finish srv
check "server: SMC-D only" expect_smcd srv 154
cat "$T"/py.exit.jsonl "$T"/bench_*.exit.jsonl "$T"/cli_*.exit.jsonl >"$T/clients.exit.jsonl" 2>/dev/null
check "server bytes = clients' bytes" expect_bytes_match clients srv --min-bytes 1
app_end
