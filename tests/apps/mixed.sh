#!/usr/bin/env bash
# One end under usmc, the other plain: the connection must work as TCP and
# usmc must say why: fallback reason PEERNOSMC (0x03010000).
#  - usmc client -> plain server: python echo (4 MiB, SHA-256) and curl ->
#    plain http.server;
#  - plain client -> usmc server: python echo, and plain curl -> http.server
#    under usmc, with `usmc ss` showing the server's connection as TCP with
#    local_reason PEERNOSMC while it is open.
. "$(dirname "$0")/lib.sh"
app_begin mixed
size=$((4 << 20))

# usmc client -> plain server
port=$(free_port)
start plain srv1 "$PY" "$APPS_DIR/check.py" xfer-server --port "$port"
check "plain server listens" wait_listen "$port"
check "usmc client -> plain server: echo equal" \
  run usmc cli1 "$PY" "$APPS_DIR/check.py" xfer-client --port "$port" --size "$size"
check "plain server done" finish srv1
check "usmc client: TCP, PEERNOSMC" expect_peernosmc cli1 1
check "usmc client: all bytes over TCP" \
  expect_report cli1 --expect "bytes_tcp_out==$size" --expect "bytes_tcp_in==$size"

mkdir "$T/www"
sha=$("${CHECK[@]}" blob "$T/www/f" --size $((1 << 20)))
port=$(free_port)
start plain http1 "$PY" -m http.server --bind 127.0.0.1 --directory "$T/www" "$port"
check "plain http.server listens" wait_listen "$port"
check "usmc curl -> plain http.server" run usmc curl1 curl -sSf -o "$T/got1" "http://127.0.0.1:$port/f"
check "body sha256 equal" test "$(sha256sum <"$T/got1" | cut -d' ' -f1)" = "$sha"
check "usmc curl: TCP, PEERNOSMC" expect_peernosmc curl1 1
stop http1 INT >/dev/null

# plain client -> usmc server
port=$(free_port)
start usmc srv2 "$PY" "$APPS_DIR/check.py" xfer-server --port "$port"
check "usmc server listens" wait_listen "$port"
check "plain client -> usmc server: echo equal" \
  run plain cli2 "$PY" "$APPS_DIR/check.py" xfer-client --port "$port" --size "$size"
check "usmc server done" finish srv2
check "usmc server: TCP, PEERNOSMC" expect_peernosmc srv2 1
check "usmc server: all bytes over TCP" \
  expect_report srv2 --expect "bytes_tcp_out==$size" --expect "bytes_tcp_in==$size"

port=$(free_port)
start usmc http2 "$PY" -m http.server --bind 127.0.0.1 --directory "$T/www" "$port"
check "usmc http.server listens" wait_listen "$port"
check "plain curl -> usmc http.server" run plain curl2 curl -sSf -o "$T/got2" "http://127.0.0.1:$port/f"
check "body sha256 equal" test "$(sha256sum <"$T/got2" | cut -d' ' -f1)" = "$sha"
start plain slow "$PY" -c "
import socket, time
s = socket.create_connection(('127.0.0.1', $port))
# Half a request: http.server (HTTP/1.0) would close right after its
# answer; this keeps its side of the connection open while ss looks.
s.sendall(b'GET /f HTTP/1.0\r\n')
time.sleep(3)
"
check "ss: the server's connection from a plain client is TCP, PEERNOSMC" \
  expect_ss --comm python3 --role server --expect mode=TCP --expect "local_reason==$PEERNOSMC"
finish slow >/dev/null
check "usmc http.server exits" stop http2 INT
check "usmc http.server: TCP, PEERNOSMC" expect_peernosmc http2 2
app_end
