#!/usr/bin/env bash
# curl against python's http.server, both under `usmc run`, over IPv4 and
# IPv6: the downloaded file's SHA-256 equals the served file's (1 B, 64 KiB,
# 16 MiB); each curl made one SMC-D connection and no TCP one (curl's exit
# report), the server's were all SMC-D, and the server sent what curl read.
. "$(dirname "$0")/lib.sh"
app_begin curl

mkdir "$T/www"
declare -A sha
for size in 1 65536 16777216; do
  sha[$size]=$("${CHECK[@]}" blob "$T/www/f$size" --size "$size" --seed "$size")
done

for af in 4 6; do
  if [ $af = 4 ]; then host=127.0.0.1; url_host=127.0.0.1; port=$(free_port)
  else host=::1; url_host="[::1]"; port=$(free_port --v6); fi
  start usmc srv$af "$PY" -m http.server --bind "$host" --directory "$T/www" "$port"
  check "IPv$af: http.server listens" wait_listen "$port"
  : >"$T/curls$af.exit.jsonl"
  for size in "${!sha[@]}"; do
    name=curl${af}_$size
    check "IPv$af: curl $size B" \
      run usmc "$name" curl -sSf -o "$T/got$af.$size" "http://$url_host:$port/f$size"
    check "IPv$af: $size B body sha256 equal" \
      test "$(sha256sum <"$T/got$af.$size" | cut -d' ' -f1)" = "${sha[$size]}"
    check "IPv$af: curl $size B: 1 SMC-D connection" \
      expect_report "$name" --comm curl --expect smcd==1 --expect tcp==0 --expect reasons==0
    cat "$T/$name.exit.jsonl" >>"$T/curls$af.exit.jsonl" 2>/dev/null
  done
  check "IPv$af: http.server exits on SIGINT" stop srv$af INT
  check "IPv$af: http.server: 3 SMC-D" \
    expect_report srv$af --expect smcd==3 --expect tcp==0 --expect reasons==0
  check "IPv$af: byte counters match" expect_bytes_match curls$af srv$af --min-bytes 1
done
app_end
