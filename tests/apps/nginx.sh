#!/usr/bin/env bash
# nginx as a reverse proxy to a keep-alive upstream (a second nginx serving
# files), all under `usmc run`: nginx's upstream module adds each upstream
# socket to epoll before it connects (issue 16 item 2: the reply then sat in
# the DMB unseen and the proxy answered 504 after 60 s). curl fetches every
# file several times over one connection and over separate ones, including
# files of several DMBs; every body's SHA-256 equals the served file's. Each
# curl connection, each proxy connection and each upstream connection is
# SMC-D: curl's and the upstream's exit reports, the proxy's (its SMC-D
# connections = curl's + the upstream's), and `usmc ss` on the proxy's idle
# keep-alive connections to the upstream while they are open.
#
# Both nginx run as a user would run them (`nginx -p DIR -c CONF`, a master
# and two workers each), with their own config, pid file, logs and temp
# paths in the test's directory. The workers stay root like curl (servers
# whose workers drop privileges: haproxy.sh, memcached.sh, postgres.sh).
. "$(dirname "$0")/lib.sh"
app_begin nginx

NGINX=/usr/sbin/nginx
if [ ! -x "$NGINX" ]; then
  note "FAIL no $NGINX (scripts/install-deps.sh installs nginx-light)"
  APP_FAILS=1
  app_end
fi

mkdir "$T/www"
files=(f1 f64k f3m f9m)
declare -A size=([f1]=1 [f64k]=65536 [f3m]=3145728 [f9m]=9437184) sha
for f in "${files[@]}"; do
  sha[$f]=$("${CHECK[@]}" blob "$T/www/$f" --size "${size[$f]}" --seed "${size[$f]}")
done

up_port=$(free_port)
px_port=$(free_port)

# conf NAME SERVER-BLOCK [HTTP-LINES]: a complete nginx.conf in $T/NAME/.
conf() {
  local d=$T/$1
  mkdir "$d" "$d/tmp"
  cat >"$d/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
user root;
pid $d/nginx.pid;
error_log $d/error.log info;
events { worker_connections 256; }
http {
  access_log $d/access.log;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  keepalive_requests 10000;
  $3
  server {
    listen 127.0.0.1:$2;
    $4
  }
}
EOF
}

conf up "$up_port" "" "root $T/www;"
conf px "$px_port" "upstream backend { server 127.0.0.1:$up_port; keepalive 8; }" \
  'location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }'

start usmc up "$NGINX" -p "$T/up" -e "$T/up/error.log" -c "$T/up/nginx.conf"
start usmc px "$NGINX" -p "$T/px" -e "$T/px/error.log" -c "$T/px/nginx.conf"
check "upstream nginx listens" wait_listen "$up_port"
check "proxy nginx listens" wait_listen "$px_port"

# One curl, one keep-alive connection: every file three times.
args=()
for round in 1 2 3; do
  for f in "${files[@]}"; do
    args+=(-o "$T/got.keep.$round.$f" "http://127.0.0.1:$px_port/$f")
  done
done
check "curl: 12 requests over one connection" run usmc curl_keep curl -sSf "${args[@]}"
for round in 1 2 3; do
  for f in "${files[@]}"; do
    check "keep-alive round $round: $f body sha256 equal" \
      same_sha "$T/got.keep.$round.$f" "${sha[$f]}"
  done
done
check "curl (keep-alive): 1 SMC-D connection" \
  expect_report curl_keep --comm curl --expect smcd==1 --expect tcp==0 --expect reasons==0

# Eight more curls, one connection and two files each.
: >"$T/curls.exit.jsonl"
for i in 1 2 3 4 5 6 7 8; do
  a=${files[$(((i - 1) % 4))]}
  b=${files[$((i % 4))]}
  check "curl $i: $a and $b" run usmc "curl_$i" curl -sSf \
    -o "$T/got.$i.$a" "http://127.0.0.1:$px_port/$a" \
    -o "$T/got.$i.$b" "http://127.0.0.1:$px_port/$b"
  for f in "$a" "$b"; do
    check "curl $i: $f body sha256 equal" \
      same_sha "$T/got.$i.$f" "${sha[$f]}"
  done
  check "curl $i: 1 SMC-D connection" \
    expect_report "curl_$i" --comm curl --expect smcd==1 --expect tcp==0 --expect reasons==0
  cat "$T/curl_$i.exit.jsonl" >>"$T/curls.exit.jsonl" 2>/dev/null
done

# The proxy keeps its upstream connections open for the next request.
check "usmc ss: the proxy's keep-alive upstream connections are SMC-D" \
  expect_ss --comm nginx --role client --min 1 --expect mode=SMCD

check "proxy nginx quits on SIGQUIT" stop px QUIT
check "upstream nginx quits on SIGQUIT" stop up QUIT
check "no 5xx in the proxy's access log" \
  bash -c "! awk '\$9 ~ /^5/' '$T/px/access.log' | grep -q ."
check "upstream: every connection SMC-D" expect_smcd up 1
if [ "$APPS_MODE" = usmc ]; then
  up_conns=$("${CHECK[@]}" report "$T/up.exit.jsonl" --print | "$PY" -c \
    'import json,sys; print(json.load(sys.stdin)["smcd"])')
  check "proxy: SMC-D connections = 9 from curl + $up_conns to the upstream" \
    expect_report px --expect "smcd==$((9 + up_conns))" --expect tcp==0 \
    --expect reasons==0 --expect handshake_errors==0
fi
app_end
