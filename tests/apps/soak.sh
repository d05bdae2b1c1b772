#!/usr/bin/env bash
# A bounded soak (issue 21): one long-lived echo server under usmc while, at
# once and for USMC_SOAK_SECONDS (default 120), clients under usmc
#   - churn: 200 short connections one after another (4 KiB each), checking
#     their own fds and DMB mappings are back where they started;
#   - stream: 2 connections of 16 MiB each way at once;
#   - get killed: a client streaming 1 GiB is SIGKILLed after 0.2-1 s;
#   - kill their server: a long-lived client under usmc (the survivor)
#     streams to an echo server under usmc, which is SIGKILLed 0.2-1 s after
#     their connection is SMC-D; then to the next one, once a round.
# Every churn and stream client's echo must be byte-equal (SHA-256), and
# every byte the survivor got back what it sent. At the end the server must
# be idle and hold what it held after its warm-up: the same fds, no DMB
# mapping, no `usmc ss` line, RSS within 32 MiB of the warm-up's; every
# killed client's connection ended on the server (counted as cut or
# served), none hangs; no handshake error, every connection SMC-D. The
# survivor likewise: each killed server's connection ended (none hung), and
# it holds what it held after the first one: same fds, no DMB mapping, no
# `usmc ss` line, RSS within 32 MiB.
. "$(dirname "$0")/lib.sh"
app_begin soak

seconds=${USMC_SOAK_SECONDS:-120}
APP_TIMEOUT=$((seconds + 120))  # the server lives through the whole soak
port=$(free_port)
start usmc srv "$PY" "$APPS_DIR/check.py" soak-server --port "$port" --resources "$T/res.json"
check "server listens" wait_listen "$port"
srv_pid=$(pgrep -f "^$PY [^ ]*check.py soak-server --port $port" | head -n 1)

# The survivor and its servers, on their own port.
vport=$(free_port)
start usmc surv "$PY" "$APPS_DIR/check.py" soak-survivor --port "$vport" \
  --resources "$T/sres.json"
for _ in $(seq 200); do grep -q ready "$T/surv.out" 2>/dev/null && break; sleep 0.1; done
surv_pid=$(pgrep -f "^$PY [^ ]*check.py soak-survivor --port $vport" | head -n 1)

# kill_server NAME: an echo server for the survivor, SIGKILLed 0.2-1 s after
# the survivor's connection to it left the handshake (SMC-D, or established
# TCP in tcp mode).
kill_server() {
  start usmc "$1" "$PY" "$APPS_DIR/check.py" xfer-server --port "$vport"
  local var="PID_$1" ok=0
  if wait_listen "$vport" >/dev/null; then
    kill -USR2 "$surv_pid"
    if [ "$APPS_MODE" = usmc ]; then
      expect_ss --pid "$surv_pid" --min 1 --expect mode==SMCD >/dev/null && ok=1
    else
      for _ in $(seq 200); do
        [ -n "$(ss -Htn state established "dport = :$vport")" ] && { ok=1; break; }
        sleep 0.1
      done
    fi
  fi
  sleep "0.$((RANDOM % 8 + 2))"
  kill -KILL -- "-${!var}" 2>/dev/null
  wait "${!var}" 2>/dev/null
  [ "$ok" = 1 ] || { note "$1: the survivor's connection never settled"; return 1; }
}

still_running() {
  local var="PID_$1"
  kill -0 "${!var}" 2>/dev/null
}

# snapshot NAME [PID RES]: the server's (or PID's, written to RES)
# resources into $T/NAME.json.
snapshot() {
  local pid=${2:-$srv_pid} res=${3:-$T/res.json}
  rm -f "$res"
  kill -USR1 "$pid"
  for _ in $(seq 150); do [ -s "$res" ] && break; sleep 0.1; done  # steady_resources: <= 10 s
  mv "$res" "$T/$1.json"
}

check "warm-up: 20 connections" \
  run usmc warm "$PY" "$APPS_DIR/check.py" xfer-client --port "$port" --conns 20 --size 65536
check "survivor: first server killed" kill_server vsrv_warm
sleep 2
snapshot warm
snapshot surv_warm "$surv_pid" "$T/sres.json"

end=$(($(date +%s) + seconds))
round=0
kills=0
server_kills=1
failed=0
: >"$T/clients.exit.jsonl"
while [ "$(date +%s)" -lt "$end" ]; do
  round=$((round + 1))
  start usmc "churn_$round" "$PY" "$APPS_DIR/check.py" xfer-client --port "$port" \
    --conns 200 --size 4096 --seed "$round" --leak-check
  start usmc "stream_$round" "$PY" "$APPS_DIR/check.py" xfer-client --port "$port" \
    --conns 2 --size $((16 << 20)) --parallel --seed $((round * 7))
  kill_server "vsrv_$round" || failed=$((failed + 1))
  server_kills=$((server_kills + 1))
  while still_running "churn_$round"; do
    # Kill a streaming client every so often while the others run.
    victim="victim_${round}_$kills"
    start usmc "$victim" "$PY" "$APPS_DIR/check.py" xfer-client --port "$port" \
      --conns 1 --size $((1 << 30)) --seed 99
    sleep "0.$((RANDOM % 8 + 2))"
    var="PID_$victim"
    kill -KILL -- "-${!var}" 2>/dev/null
    wait "${!var}" 2>/dev/null
    kills=$((kills + 1))
  done
  finish "churn_$round" || { failed=$((failed + 1)); note "churn round $round failed"; }
  finish "stream_$round" || { failed=$((failed + 1)); note "stream round $round failed"; }
  cat "$T/churn_$round.exit.jsonl" "$T/stream_$round.exit.jsonl" >>"$T/clients.exit.jsonl" \
    2>/dev/null
done
note "$round rounds, $kills clients and $server_kills servers killed"
check "every churn and stream client echoed equal bytes (and churn leaked nothing), every server was killed" \
  test "$failed" -eq 0
check "churn and stream clients: SMC-D only" expect_smcd clients $((round * 202))

sleep 3  # the killed clients' connections end on the server
snapshot end
snapshot surv_end "$surv_pid" "$T/sres.json"
check "server: idle, same fds, no DMB mapping, RSS within 32 MiB" "$PY" - "$T/warm.json" \
  "$T/end.json" <<'EOF'
import json, sys
w, e = (json.load(open(p)) for p in sys.argv[1:3])
print("warm-up:", w, "end:", e)
ok = (e["threads"] == 1 and e["fds"] == w["fds"]
      and e["fd_links"] == w["fd_links"] and e["dmb_maps"] == 0
      and e["rss_kib"] - w["rss_kib"] < 32 * 1024)
sys.exit(0 if ok else 1)
EOF
check "survivor: each killed server's connection ended (none hung), same fds, no DMB mapping, RSS within 32 MiB" \
  "$PY" - "$T/surv_warm.json" "$T/surv_end.json" "$server_kills" <<'EOF'
import json, sys
w, e = (json.load(open(p)) for p in sys.argv[1:3])
print("after the first server:", w, "end:", e)
ok = (e["hung"] == 0 and e["bad"] == 0 and e["refused"] == 0
      and e["cut"] == int(sys.argv[3])
      and e["connections"] == e["cut"] and e["threads"] == 1
      and e["fds"] == w["fds"] and e["fd_links"] == w["fd_links"]
      and e["dmb_maps"] == 0
      and e["rss_kib"] - w["rss_kib"] < 32 * 1024)
sys.exit(0 if ok else 1)
EOF
no_ss_lines() {
  [ "$APPS_MODE" = usmc ] || return 77
  "$PY" -c "
import json, subprocess, sys
out = json.loads(subprocess.run(['$USMC', 'ss', '--json'], capture_output=True,
                                text=True, check=True).stdout)
left = [c for c in out['connections'] if c.get('pid') == $1]
print(left[:3]); sys.exit(1 if left else 0)"
}
check "usmc ss: no connection of the server left" no_ss_lines "$srv_pid"
check "usmc ss: no connection of the survivor left" no_ss_lines "$surv_pid"
check "survivor stops" stop surv TERM
check "survivor: no handshake error, SMC-D for every connection" \
  expect_report surv --expect handshake_errors==0 --expect tcp==0 \
  --expect "smcd==$server_kills"
check "server stops" stop srv TERM
# A client killed inside its handshake may leave a TCP connection behind on
# the server (the handshake never finished): at most one per kill.
check "server: no handshake error, SMC-D for every finished client" \
  expect_report srv --expect handshake_errors==0 --expect "tcp<=$kills" \
  --expect "smcd>=$((round * 202 + 20))"
app_end
