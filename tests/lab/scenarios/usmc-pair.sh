# tests/lab/scenarios/usmc-pair.sh: usmc <-> usmc over SMC-R between the two
# guests, every program under `usmc run` after `usmc setup`, none of them
# written here, with the default CLC timer (2 s): socat moves 1 MiB each way
# (SHA-256 compared on the host), iperf3 runs a 4 MiB test (its control and
# data connections: the second joins the first's link group), redis-server
# takes a redis-benchmark SET/GET load over a known key set (500 keys, 64-byte
# values, its own) and 100 SETs of known values from redis-cli, all read back with
# redis-cli and compared. Asserted: each listening process opened the RDMA
# device before any client connected (so no handshake pays for it); `usmc
# ss -R` in the guests shows each live SMC-R connection once (no record with
# address `*`), with its link group, for socat and for redis's connections;
# every exit report says SMC-R with no fallback and no application byte over
# TCP (the TCP socket carried only the CLC messages); rxe received at least
# payload / 1024 packets (the active MTU); SIGKILL of the receiving socat
# makes the sending one fail with ECONNRESET or ECONNABORTED within 3 s (the
# kill is announced over a plain TCP socket, busybox nc, not under usmc).
LAB_GUESTS=2
LAB_TIMEOUT=240
PAIR_BYTES=1048576
PAIR_KEYS=500   # redis-benchmark's key space (-r)
PAIR_KNOWN=100  # keys redis-cli sets to known values

pair_uptime() { cut -d' ' -f1 /proc/uptime; }

pair_known_values() {  # the values redis-cli sets, one a line
  i=1
  while [ $i -le $PAIR_KNOWN ]; do echo "val-$i-$((i * 7919 % 10007))"; i=$((i + 1)); done
}

guest_main() {
  usmc setup >/tmp/setup.log 2>&1
  echo "LAB-RESULT $LAB_name usmc setup rc=$?"
  lab_rxe || { echo "LAB-RESULT $LAB_name rxe setup failed"; return 1; }
  lab_wait_peer || { echo "LAB-RESULT $LAB_name peer unreachable"; return 1; }
  head -c $PAIR_BYTES /dev/urandom > /tmp/mine.bin
  export USMC_EXIT_REPORT=/tmp/report
  rx0=$(lab_rcvd)
  rc=0
  if [ "$LAB_role" = a ]; then
    # b says when its redis-cli connection is open: usmc ss then.
    (timeout 200 nc -l -p 7102 | { read -r _; usmc ss -R > /tmp/ss-redis 2>&1; cat >/dev/null; }) &
    pr=$!
    # 1 MiB each way: b -> a on 7000, a -> b on 7001.
    timeout 60 usmc run socat -u TCP-LISTEN:7000,reuseaddr CREATE:/tmp/theirs.bin 2>/tmp/s0.err &
    p0=$!
    timeout 60 usmc run socat -u OPEN:/tmp/mine.bin TCP-LISTEN:7001,reuseaddr 2>/tmp/s1.err &
    p1=$!
    timeout 60 usmc run iperf3 -s -1 -p 5201 >/tmp/iperf3.log 2>&1 &
    p2=$!
    usmc run redis-server --port 6379 --bind 0.0.0.0 --protected-mode no \
      --save '' --appendonly no --dir /tmp >/tmp/redis.log 2>&1 &
    # The listeners open the device at listen(), before any client (b waits
    # for "ready"): bounded wait for all four.
    i=0
    while :; do
      pids="$(pidof socat) $(pidof iperf3) $(pidof redis-server)"
      opened=$(lab_opened $pids)
      [ "$opened" -ge 4 ] || [ $i -ge 100 ] && break
      i=$((i + 1)); sleep 0.2
    done
    echo "LAB-RESULT $LAB_name opened_before_connect=$opened of $(echo $pids | wc -w)"
    lab_tell 7101 ready || echo "LAB-RESULT $LAB_name b never listened for ready"
    wait $p1 || rc=1
    # b's sender keeps the first connection open a while: SMC-R?
    usmc ss -R -d 2>&1 | sed "s/^/LAB-SS $LAB_name /"
    wait $p0 || rc=1
    wait $p2 || { rc=1; tail -5 /tmp/iperf3.log; }
    echo "LAB-RESULT $LAB_name socat rc=$rc"
    cat /tmp/s0.err /tmp/s1.err
    wait $pr
    sed "s/^/LAB-SS $LAB_name /" /tmp/ss-redis
    # b's last redis connection has ended: redis-server exits (its report).
    timeout 60 nc -l -p 7103 | { read -r _; cat >/dev/null; }
    kill -TERM $(pidof redis-server)
    i=0
    while pidof redis-server >/dev/null && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.2; done
    tail -3 /tmp/redis.log
    # SIGKILL: a's receiver dies while b streams into it (at least 512 KiB
    # arrived: the connection is up).
    rx1=$(lab_rcvd)
    usmc run socat -u TCP-LISTEN:7002,reuseaddr OPEN:/dev/null 2>/tmp/s2.err &
    pk=$!
    i=0
    until [ "$(lab_rcvd)" -gt $((rx1 + 512)) ] || [ $i -ge 300 ]; do
      i=$((i + 1)); sleep 0.2
    done
    kill -9 $pk
    echo killed | timeout 3 nc "$LAB_peer" 7100
    echo "LAB-RESULT $LAB_name killed receiver at $(pair_uptime)"
  else
    (timeout 200 nc -l -p 7100 | { read -r _; pair_uptime > /tmp/t_kill; cat >/dev/null; }) &
    pn=$!
    # a's listeners are up (and have opened the device).
    timeout 60 nc -l -p 7101 | { read -r w; echo "LAB-RESULT $LAB_name a says ${w:-nothing}"; cat >/dev/null; }
    (cat /tmp/mine.bin; sleep 6) |
      timeout 60 usmc run socat -u STDIN TCP:"$LAB_peer":7000,retry=20,interval=0.5 2>/tmp/s0.err &
    p0=$!
    timeout 60 usmc run socat -u TCP:"$LAB_peer":7001,retry=20,interval=0.5 CREATE:/tmp/theirs.bin 2>/tmp/s1.err || rc=1
    # The first connection is still open (its sender sleeps): SMC-R?
    usmc ss -R -d 2>&1 | sed "s/^/LAB-SS $LAB_name /"
    wait $p0 || rc=1
    echo "LAB-RESULT $LAB_name socat rc=$rc"
    cat /tmp/s0.err /tmp/s1.err
    i=0
    until timeout 60 usmc run iperf3 -c "$LAB_peer" -p 5201 -n 4M >/tmp/iperf3.log 2>&1; do
      i=$((i + 1)); [ $i -lt 5 ] || { rc=1; break; }; sleep 1
    done
    tail -4 /tmp/iperf3.log
    echo "LAB-RESULT $LAB_name iperf3 tries=$i"
    # redis: a SET/GET load over key:000000000000..499, then known values.
    rr=0
    timeout 90 usmc run redis-benchmark -h "$LAB_peer" -p 6379 -t set,get -n 400 -c 4 \
      -r $PAIR_KEYS -d 64 -q 2>&1 | tr '\r' '\n' | grep -E '^(SET|GET): [0-9.]+ requests' |
      sed "s/^/LAB-BENCH $LAB_name /"
    i=1
    while [ $i -le $PAIR_KNOWN ]; do
      echo "SET known:$i val-$i-$((i * 7919 % 10007))"; i=$((i + 1))
    done | timeout 30 usmc run redis-cli -h "$LAB_peer" > /tmp/rset.out 2>&1 || rr=1
    pair_known_values > /tmp/rwant
    i=1 keys=
    while [ $i -le $PAIR_KNOWN ]; do keys="$keys known:$i"; i=$((i + 1)); done
    timeout 30 usmc run redis-cli -h "$LAB_peer" --raw MGET $keys > /tmp/rgot 2>&1 || rr=1
    cmp -s /tmp/rwant /tmp/rgot || { rr=1; echo "redis: known values differ"; }
    [ "$(grep -c '^OK$' /tmp/rset.out)" = $PAIR_KNOWN ] || { rr=1; echo "redis: SETs not all OK"; }
    # Every key the benchmark wrote holds its value: 64 bytes, the same for
    # all (redis-benchmark makes one from a fixed seed).
    timeout 30 usmc run redis-cli -h "$LAB_peer" --scan --pattern 'key:*' > /tmp/bkeys 2>&1 || rr=1
    nkeys=$(wc -l < /tmp/bkeys)
    timeout 30 usmc run redis-cli -h "$LAB_peer" --raw MGET $(cat /tmp/bkeys) > /tmp/bvals 2>&1 || rr=1
    bad=$(grep -cv '^.\{64\}$' /tmp/bvals)
    nvals=$(sort -u /tmp/bvals | wc -l)
    [ "$nkeys" -gt 0 ] && [ "$nkeys" -le $PAIR_KEYS ] && [ "$(wc -l < /tmp/bvals)" = "$nkeys" ] &&
      [ "$bad" = 0 ] && [ "$nvals" = 1 ] ||
      { rr=1; echo "redis: benchmark keys $nkeys, not 64 bytes $bad, distinct values $nvals"; }
    echo "LAB-RESULT $LAB_name redis rc=$rr keys=$nkeys known=$(wc -l < /tmp/rgot)"
    # A redis-cli connection held open while both guests look at usmc ss.
    rh=0
    (echo PING; sleep 5; echo 'GET known:1') |
      timeout 30 usmc run redis-cli -h "$LAB_peer" > /tmp/held.out 2>&1 &
    ph=$!
    sleep 2
    usmc ss -R 2>&1 | grep -e '^State' -e redis | sed "s/^/LAB-SS $LAB_name /"
    lab_tell 7102 ss || echo "LAB-RESULT $LAB_name a never listened for ss"
    wait $ph
    lab_tell 7103 done || echo "LAB-RESULT $LAB_name a never listened for done"
    [ "$(tail -1 /tmp/held.out)" = val-1-7919 ] || { rh=1; echo "redis: held connection read $(tail -1 /tmp/held.out)"; }
    echo "LAB-RESULT $LAB_name redis-held rc=$rh"
    [ $rr = 0 ] && [ $rh = 0 ] || rc=1
    # SIGKILL: stream until the peer's receiver is killed.
    timeout 60 usmc run socat -u OPEN:/dev/zero TCP:"$LAB_peer":7002,retry=20,interval=0.5 2>/tmp/s2.err
    echo "LAB-RESULT $LAB_name killed-peer socat rc=$? at $(pair_uptime)"
    pair_uptime > /tmp/t_err
    wait $pn
    sed "s/^/LAB-KILL $LAB_name /" /tmp/s2.err
    echo "LAB-RESULT $LAB_name kill_seen=$(cat /tmp/t_kill) error_at=$(cat /tmp/t_err)"
  fi
  echo "LAB-RESULT $LAB_name sha_mine=$(sha256sum /tmp/mine.bin | cut -d' ' -f1) sha_theirs=$(sha256sum /tmp/theirs.bin 2>/dev/null | cut -d' ' -f1)"
  echo "LAB-RESULT $LAB_name rxe_rcvd_delta=$(( $(lab_rcvd) - rx0 ))"
  sed "s/^/LAB-REPORT $LAB_name /" /tmp/report
  lab_counters
  return $rc
}

pair_field() {  # pair_field LOG KEY: the value of KEY= on a LAB-RESULT line
  sed -n "s/^LAB-RESULT .* $2=\([^ ]*\).*/\1/p" "$1" | tail -1
}

host_check() {
  local a=$1 b=$2 fail=0 f
  grep -q 'LAB-RESULT a opened_before_connect=4 of 4' "$a" ||
    { echo "lab: a's listeners had not all opened the RDMA device before the first connect" >&2; fail=1; }
  for f in "$a" "$b"; do
    grep -q 'LAB-RESULT .* usmc setup rc=0' "$f" || { echo "lab: $f: usmc setup failed" >&2; fail=1; }
    grep -q 'LAB-RESULT .* socat rc=0' "$f" || { echo "lab: $f: socat failed" >&2; fail=1; }
    # A connection line: state ACTIVE, the peer's address, mode SMCR, its
    # link group (a non-zero id, the peer's IPv4-mapped GID).
    grep -q '^LAB-SS [ab] ACTIVE .* 10\.0\.0\.[12]:[0-9]* .* SMCR .* socat  *\(CLNT\|SERV\) 0*[1-9a-f][0-9a-f]* .* ::ffff:10\.0\.0\.[12] ' "$f" ||
      { echo "lab: $f: usmc ss never said SMC-R (with its link group) for socat's connection" >&2; fail=1; }
    grep -q '^LAB-SS [ab] ACTIVE .* 10\.0\.0\.[12]:[0-9]* .* SMCR .* redis-[a-z]*  *\(CLNT\|SERV\) 0*[1-9a-f][0-9a-f]* .* ::ffff:10\.0\.0\.[12] ' "$f" ||
      { echo "lab: $f: usmc ss never said SMC-R (with its link group) for redis's connection" >&2; fail=1; }
    # Each connection once: no record of the registry's own (address *).
    if grep -q '^LAB-SS [ab] [A-Z_0-9]*  *[0-9]*  *[0-9]* \* ' "$f"; then
      echo "lab: $f: usmc ss lists a connection with address * (twice)" >&2; fail=1
    fi
    # Every program's process: SMC-R, no fallback, no app byte on TCP.
    grep '^LAB-REPORT .*"comm":"\(socat\|iperf3\|redis-[a-z]*\)"' "$f" > /tmp/lab-reports.$$
    [ -s /tmp/lab-reports.$$ ] || { echo "lab: $f: no exit reports" >&2; fail=1; }
    if grep -v '"tcp":0,' /tmp/lab-reports.$$ | grep -q .; then echo "lab: $f: a fallback" >&2; fail=1; fi
    if grep -v '"bytes_tcp_in":0,"bytes_tcp_out":0' /tmp/lab-reports.$$ | grep -q .; then
      echo "lab: $f: application bytes over TCP" >&2; fail=1
    fi
    if grep '"smcr":0' /tmp/lab-reports.$$ | grep -q .; then echo "lab: $f: a process without SMC-R" >&2; fail=1; fi
    rm -f /tmp/lab-reports.$$
    # 2 MiB moved (plus iperf3, redis): at least payload / 1024 RoCE packets in.
    [ "$(pair_field "$f" rxe_rcvd_delta)" -ge $((PAIR_BYTES / 1024)) ] 2>/dev/null ||
      { echo "lab: $f: rxe received too few packets" >&2; fail=1; }
  done
  grep -q '^LAB-REPORT a .*"comm":"redis-server"' "$a" || { echo "lab: no exit report of redis-server" >&2; fail=1; }
  grep -q '^LAB-REPORT b .*"comm":"redis-benchmark"' "$b" || { echo "lab: no exit report of redis-benchmark" >&2; fail=1; }
  grep -q '^LAB-REPORT b .*"comm":"redis-cli"' "$b" || { echo "lab: no exit report of redis-cli" >&2; fail=1; }
  [ -n "$(pair_field "$a" sha_mine)" ] && [ "$(pair_field "$a" sha_mine)" = "$(pair_field "$b" sha_theirs)" ] ||
    { echo "lab: a -> b: SHA-256 differs" >&2; fail=1; }
  [ -n "$(pair_field "$b" sha_mine)" ] && [ "$(pair_field "$b" sha_mine)" = "$(pair_field "$a" sha_theirs)" ] ||
    { echo "lab: b -> a: SHA-256 differs" >&2; fail=1; }
  grep -q 'LAB-RESULT .* iperf3 tries=[0-4]$' "$b" || { echo "lab: iperf3 failed" >&2; fail=1; }
  grep -q "LAB-RESULT b redis rc=0 keys=[1-9][0-9]* known=$PAIR_KNOWN" "$b" || { echo "lab: redis values wrong" >&2; fail=1; }
  grep -q 'LAB-RESULT b redis-held rc=0' "$b" || { echo "lab: redis held connection failed" >&2; fail=1; }
  # SIGKILL of a's receiver: b's sender fails with a reset or abort, within
  # 3 s of learning of the kill.
  grep -q '^LAB-KILL .*\(Connection reset by peer\|Software caused connection abort\)' "$b" ||
    { echo "lab: the killed peer's socket did not reset or abort" >&2; fail=1; }
  local seen err
  seen=$(pair_field "$b" kill_seen) err=$(pair_field "$b" error_at)
  awk -v s="${seen:-0}" -v e="${err:-999999}" 'BEGIN { exit !(e - s < 3) }' ||
    { echo "lab: error $err s, kill seen $seen s: not within 3 s" >&2; fail=1; }
  return $fail
}
