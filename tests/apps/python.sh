#!/usr/bin/env bash
# python3 (Debian's), both ends under `usmc run`:
#  - an asyncio echo server and client: 8 concurrent connections of 1 MiB each
#    in 16 KiB writes, then write_eof; each echo must equal what was sent;
#  - http.server (ThreadingHTTPServer) serving a 5 MiB random file fetched 5
#    times with urllib: status 200 and the body's SHA-256 equal to the file's.
# Checks also that every connection of both ends was SMC-D (exit reports,
# `usmc ss` while the server runs) and that usmc's byte counters of client and
# server agree.
. "$(dirname "$0")/lib.sh"
app_begin python

port=$(free_port)
start usmc aio_srv "$PY" "$APPS_DIR/check.py" aio-server --port "$port" --conns 8
check "asyncio server listens" wait_listen "$port"
check "asyncio echo: 8 x 1 MiB equal" \
  run usmc aio_cli "$PY" "$APPS_DIR/check.py" aio-client --port "$port" --conns 8 --size $((1 << 20))
check "asyncio server exits after 8 connections" finish aio_srv
check "asyncio client: 8 SMC-D" expect_report aio_cli --expect smcd==8 --expect tcp==0 --expect reasons==0
check "asyncio server: 8 SMC-D" expect_report aio_srv --expect smcd==8 --expect tcp==0 --expect reasons==0
check "asyncio: byte counters match" expect_bytes_match aio_cli aio_srv --min-bytes $((8 << 20))

mkdir "$T/www"
sha=$("${CHECK[@]}" blob "$T/www/blob.bin" --size $((5 << 20)) --seed 7)
port=$(free_port)
start usmc http_srv "$PY" -m http.server --bind 127.0.0.1 --directory "$T/www" "$port"
check "http.server listens" wait_listen "$port"
check "urllib: 5 GETs, sha256 equal" \
  run usmc urllib "$PY" "$APPS_DIR/check.py" http-get "http://127.0.0.1:$port/blob.bin" \
  --sha256 "$sha" --times 5
# One connection held open (a slow reader) to see it in `usmc ss`.
start usmc slow "$PY" -c "
import socket, time
s = socket.create_connection(('127.0.0.1', $port))
s.sendall(b'GET /blob.bin HTTP/1.0\r\n\r\n')
s.recv(1000)
time.sleep(3)
"
check "ss: http.server's connection is SMCD" \
  expect_ss --comm python3 --role server --expect mode=SMCD --expect local_reason==0
finish slow >/dev/null
check "http.server exits on SIGINT" stop http_srv INT
check "urllib client: 5 SMC-D" expect_report urllib --expect smcd==5 --expect tcp==0 --expect reasons==0
check "http.server: 6 SMC-D" expect_report http_srv --expect smcd==6 --expect tcp==0 --expect reasons==0
check "urllib: got 5 x 5 MiB per usmc" expect_report urllib --expect "bytes_smcd_in>=$((25 << 20))"
app_end
