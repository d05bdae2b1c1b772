#!/usr/bin/env bash
# HAProxy as a load balancer (round robin, HTTP mode, kept server
# connections) in front of two backends (one nginx listening on two ports),
# all under `usmc run`. HAProxy starts as root and drops to nobody after
# binding (`user`/`group` in its global section), as its Debian setup does:
# a privilege drop, and a proxy whose clients and servers run as another
# uid (issue 20).
# Checks: curl fetches every file over one kept connection and over
# connections of their own, each body's SHA-256 equal to the file's; ab
# (apache2-utils) runs one request per connection (Connection: close) and
# wrk keeps connections open, both without a failed request; every
# connection of curl, ab, wrk, HAProxy (both sides) and nginx was SMC-D
# (exit reports); both backends served requests.
. "$(dirname "$0")/lib.sh"
app_begin haproxy

HAPROXY=/usr/sbin/haproxy
NGINX=/usr/sbin/nginx
for b in "$HAPROXY" "$NGINX" /usr/bin/ab /usr/bin/wrk; do
  if [ ! -x "$b" ]; then
    note "FAIL no $b (scripts/install-deps.sh installs haproxy, nginx-light, apache2-utils, wrk)"
    APP_FAILS=1
    app_end
  fi
done

mkdir "$T/www"
files=(f1 f64k f3m)
declare -A size=([f1]=1 [f64k]=65536 [f3m]=3145728) sha
for f in "${files[@]}"; do
  sha[$f]=$("${CHECK[@]}" blob "$T/www/$f" --size "${size[$f]}" --seed "${size[$f]}")
done
b1=$(free_port)
b2=$(free_port)
fe=$(free_port)
mkdir "$T/ng" "$T/ng/tmp"
cat >"$T/ng/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
user root;
pid $T/ng/nginx.pid;
error_log $T/ng/error.log info;
events { worker_connections 512; }
http {
  log_format port '\$server_port \$status';
  access_log $T/ng/access.log port;
  client_body_temp_path $T/ng/tmp/body;
  proxy_temp_path $T/ng/tmp/proxy;
  fastcgi_temp_path $T/ng/tmp/fastcgi;
  uwsgi_temp_path $T/ng/tmp/uwsgi;
  scgi_temp_path $T/ng/tmp/scgi;
  keepalive_requests 100000;
  server { listen 127.0.0.1:$b1; root $T/www; add_header X-Backend b1; }
  server { listen 127.0.0.1:$b2; root $T/www; add_header X-Backend b2; }
}
EOF
cat >"$T/haproxy.cfg" <<EOF
global
  user nobody
  group nogroup
  nbthread 2
  maxconn 1000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:$fe
  default_backend be
backend be
  balance roundrobin
  http-reuse always
  server b1 127.0.0.1:$b1
  server b2 127.0.0.1:$b2
EOF

start usmc ng "$NGINX" -p "$T/ng" -e "$T/ng/error.log" -c "$T/ng/nginx.conf"
check "backend 1 listens" wait_listen "$b1"
check "backend 2 listens" wait_listen "$b2"
chmod 0711 "$T"
install -m 0666 /dev/null "$T/hap.exit.jsonl"  # written as nobody
start usmc hap "$HAPROXY" -db -f "$T/haproxy.cfg"
check "haproxy listens" wait_listen "$fe"
check "haproxy dropped to nobody" sh -c "ps -o user= -C haproxy | grep -qx nobody"

args=()
for round in 1 2 3; do
  for f in "${files[@]}"; do
    args+=(-o "$T/got.keep.$round.$f" "http://127.0.0.1:$fe/$f")
  done
done
check "curl: 9 requests over one connection" run usmc curl_keep curl -sSf "${args[@]}"
for round in 1 2 3; do
  for f in "${files[@]}"; do
    check "keep-alive round $round: $f sha256 equal" \
      same_sha "$T/got.keep.$round.$f" "${sha[$f]}"
  done
done
check "curl (keep-alive): 1 SMC-D connection" expect_smcd curl_keep 1
: >"$T/curls.exit.jsonl"
for f in "${files[@]}"; do
  for i in 1 2; do
    check "curl $f ($i): its own connection" \
      run usmc "curl_${f}_$i" curl -sSf -o "$T/got.$f.$i" "http://127.0.0.1:$fe/$f"
    check "curl $f ($i): sha256 equal" same_sha "$T/got.$f.$i" "${sha[$f]}"
    check "curl $f ($i): SMC-D" expect_smcd "curl_${f}_$i" 1
  done
done

# One request per connection (ab without -k sends Connection: close).
n=2000
check "ab: $n requests, one per connection, 8 at once" \
  run usmc ab /usr/bin/ab -q -n "$n" -c 8 "http://127.0.0.1:$fe/f64k"
check "ab: every request complete, none failed, all 200" sh -c "
  grep -Eq '^Complete requests: +$n\$' '$T/ab.out' &&
  grep -Eq '^Failed requests: +0\$' '$T/ab.out' &&
  ! grep -q '^Non-2xx responses' '$T/ab.out'"
check "ab: $n SMC-D connections" expect_smcd ab "$n"
check "wrk: 16 kept connections, 3 s" \
  run usmc wrk /usr/bin/wrk -t 2 -c 16 -d 3s "http://127.0.0.1:$fe/f1"
check "wrk: no socket error, no non-2xx" sh -c "
  ! grep -q 'Socket errors' '$T/wrk.out' && ! grep -q 'Non-2xx' '$T/wrk.out'"
check "wrk: SMC-D only" expect_smcd wrk 16

# A soft stop (SIGUSR1, to haproxy itself: timeout would not pass it on):
# haproxy finishes and exits 0, writing its exit report as nobody.
pkill -USR1 -g "$PID_hap" -x haproxy
check "haproxy stops on SIGUSR1 (soft stop)" finish hap
check "haproxy: SMC-D on both sides, no TCP" expect_smcd hap $((n + 16 + 7))
check "nginx stops" stop ng QUIT
check "nginx: SMC-D only" expect_smcd ng 2
check "both backends served requests, all 200" sh -c "
  grep -q '^$b1 200' '$T/ng/access.log' && grep -q '^$b2 200' '$T/ng/access.log' &&
  ! grep -vq ' 200\$' '$T/ng/access.log'"
app_end
