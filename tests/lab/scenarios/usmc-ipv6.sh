# tests/lab/scenarios/usmc-ipv6.sh: SMC-Rv2 over IPv6 GIDs between two usmc
# peers (tests/lab/smcr_peer.cc on both guests), beyond the Linux kernel,
# whose SMC-Rv2 has IPv4-mapped GIDs only. The guests' NICs get fd00::1/64
# and fd00::2/64 (no DAD); rxe makes a RoCEv2 GID of each. The TCP
# connection runs over IPv6; dev/verbs opens the GID equal to the local
# address (dev/gid_choice.h); CLC and LLC carry the IPv6 GIDs; 1 MiB each
# way intact over SMC-R. Asserted: both peers in SMC-R with intact data,
# their device GIDs fd00::1 / fd00::2, each link group's peer GID the
# other's IPv6 address, rxe received at least 1 MiB / 1024 packets.
#
# Then the same under `usmc run` with programs not written here (the
# interposer's SMC-R, preload/smcr.cc, keyed by the 16-byte local address):
# socat moves 1 MiB each way over TCP6 (a's receiver bound to fd00::1, its
# sender on the wildcard [::], which opens the device for 10.0.0.1 and for
# fd00::1), iperf3 -6 runs 4 MiB (control and data connections). Asserted:
# SHA-256 equal both ways; a's listeners held the RDMA device before b
# connected; `usmc ss -R` shows socat's connections as SMCR with the peer's
# IPv6 GID; every socat/iperf3 exit report says SMC-R, no fallback, no
# application byte over TCP; rxe received at least 1 MiB / 1024 packets
# more in that phase.
#
# Last, the Linux kernel's SMC over IPv6 against usmc run (the kernel has
# the lab's UEID, so only IPv6 keeps it from SMC-Rv2): the kernel's AF_SMC
# server (`smc_lab server`, SMC_LAB_V6) and socat under usmc run as client,
# then socat as server and the kernel's client; each 1 MiB each way (smc_lab's
# pattern, checked on both ends). Asserted: both fall back to TCP cleanly
# (the kernel's smc_diag says FALLBACK, usmc's exit report says TCP with no
# handshake error), data intact.
LAB_GUESTS=2
LAB_TIMEOUT=200
V6_BYTES=1048576

# Phase 2: socat and iperf3 under `usmc run` over IPv6. $me, $peer set.
v6_run_phase() {
  head -c $V6_BYTES /dev/urandom > /tmp/mine.bin
  export USMC_EXIT_REPORT=/tmp/report
  rx0=$(lab_rcvd)
  rc=0
  if [ "$LAB_role" = a ]; then
    # 1 MiB each way: b -> a on 7000 (bound to fd00::1), a -> b on 7001 ([::]).
    timeout 60 usmc run socat -u "TCP6-LISTEN:7000,reuseaddr,bind=[$me]" CREATE:/tmp/theirs.bin 2>/tmp/s0.err &
    p0=$!
    timeout 60 usmc run socat -u OPEN:/tmp/mine.bin TCP6-LISTEN:7001,reuseaddr 2>/tmp/s1.err &
    p1=$!
    timeout 60 usmc run iperf3 -s -1 -p 5201 >/tmp/iperf3.log 2>&1 &
    p2=$!
    i=0
    while :; do
      pids="$(pidof socat) $(pidof iperf3)"
      opened=$(lab_opened $pids)
      [ "$opened" -ge 3 ] || [ $i -ge 100 ] && break
      i=$((i + 1)); sleep 0.2
    done
    echo "LAB-RESULT $LAB_name run_opened_before_connect=$opened of $(echo $pids | wc -w)"
    lab_tell 7101 ready || echo "LAB-RESULT $LAB_name b never listened for ready"
    wait $p1 || rc=1
    usmc ss -R -d 2>&1 | sed "s/^/LAB-SS $LAB_name /"
    wait $p0 || rc=1
    wait $p2 || { rc=1; tail -5 /tmp/iperf3.log; }
    cat /tmp/s0.err /tmp/s1.err
  else
    timeout 60 nc -l -p 7101 | { read -r w; echo "LAB-RESULT $LAB_name a says ${w:-nothing}"; cat >/dev/null; }
    (cat /tmp/mine.bin; sleep 6) |
      timeout 60 usmc run socat -u STDIN "TCP6:[$peer]:7000,retry=20,interval=0.5" 2>/tmp/s0.err &
    p0=$!
    timeout 60 usmc run socat -u "TCP6:[$peer]:7001,retry=20,interval=0.5" CREATE:/tmp/theirs.bin 2>/tmp/s1.err || rc=1
    # The first connection is still open (its sender sleeps): SMC-R?
    usmc ss -R -d 2>&1 | sed "s/^/LAB-SS $LAB_name /"
    wait $p0 || rc=1
    cat /tmp/s0.err /tmp/s1.err
    i=0
    until timeout 60 usmc run iperf3 -6 -c "$peer" -p 5201 -n 4M >/tmp/iperf3.log 2>&1; do
      i=$((i + 1)); [ $i -lt 5 ] || { rc=1; break; }; sleep 1
    done
    tail -4 /tmp/iperf3.log
    echo "LAB-RESULT $LAB_name iperf3 tries=$i"
  fi
  echo "LAB-RESULT $LAB_name run rc=$rc"
  echo "LAB-RESULT $LAB_name sha_mine=$(sha256sum /tmp/mine.bin | cut -d' ' -f1) sha_theirs=$(sha256sum /tmp/theirs.bin 2>/dev/null | cut -d' ' -f1)"
  echo "LAB-RESULT $LAB_name run_rxe_rcvd_delta=$(( $(lab_rcvd) - rx0 ))"
  sed "s/^/LAB-REPORT $LAB_name /" /tmp/report
  return $rc
}

guest_main() {
  lab_rxe || { echo "LAB-RESULT $LAB_name rxe setup failed"; return 1; }
  me=fd00::1 peer=fd00::2
  [ "$LAB_role" = a ] || { me=fd00::2 peer=fd00::1; }
  /sbin/ip.full -6 addr add $me/64 dev eth0 nodad || { echo "LAB-RESULT $LAB_name ipv6 address failed"; return 1; }
  # rxe adds a GID per netdev address, asynchronously (an inet6 notifier).
  i=0
  until ibv_devinfo -v -d rxe0 | grep -q "GID.*$me"; do
    i=$((i + 1)); [ $i -lt 50 ] || { echo "LAB-RESULT $LAB_name no rxe GID $me"; return 1; }; sleep 0.1
  done
  ibv_devinfo -v -d rxe0 | grep 'GID\[' | sed 's/^[[:space:]]*/GIDS /'
  i=0
  until ping -c1 -W1 "$peer" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 60 ] || { echo "LAB-RESULT $LAB_name peer unreachable over IPv6"; return 1; }; sleep 0.2
  done
  usmc setup >/dev/null || { echo "LAB-RESULT $LAB_name usmc setup failed"; return 1; }
  rx0=$(cat /sys/class/infiniband/rxe0/ports/1/hw_counters/rcvd_pkts)
  if [ "$LAB_role" = a ]; then
    timeout 90 smcr_peer server 5000 $V6_BYTES --v6 --local $me
  else
    timeout 90 smcr_peer client $peer 5000 $V6_BYTES
  fi
  rc=$?
  rx1=$(cat /sys/class/infiniband/rxe0/ports/1/hw_counters/rcvd_pkts)
  echo "LAB-RESULT $LAB_name usmc-ipv6 rc=$rc rxe_rcvd_delta=$((rx1 - rx0))"
  v6_run_phase || rc=1
  v6_kernel_phase || rc=1
  lab_kernel_report 10
  return $rc
}

# Phase 3: the kernel's AF_SMC (a) against socat under usmc run (b).
v6_kernel_phase() {
  k=$V6_BYTES
  if [ "$LAB_role" = a ]; then
    smc_lab ueid-add USMC-LAB || { echo "LAB-RESULT $LAB_name ueid-add failed"; return 1; }
    SMC_LAB_V6=1 timeout 60 smc_lab server 7010 $k > /tmp/k1.out 2>&1
    echo "LAB-RESULT $LAB_name kernel-server6 rc=$?"
    sed "s/^/KSERVER /" /tmp/k1.out
    lab_smc_client 101 0.2 "$peer" 7011 $k > /tmp/k2.out 2>&1
    echo "LAB-RESULT $LAB_name kernel-client6 rc=$?"
    sed "s/^/KCLIENT /" /tmp/k2.out
    return 0
  fi
  export USMC_EXIT_REPORT=/tmp/report-k
  want1=$(smc_lab pattern 1 $k | sha256sum | cut -d' ' -f1)
  want2=$(smc_lab pattern 2 $k | sha256sum | cut -d' ' -f1)
  smc_lab pattern 1 $k |
    timeout 60 usmc run socat -t 30 - "TCP6:[$peer]:7010,retry=60,interval=0.5" > /tmp/k1.bin 2>/tmp/k1.err
  c=$?
  got=$(sha256sum < /tmp/k1.bin | cut -d' ' -f1)
  echo "LAB-RESULT $LAB_name usmc-client6 rc=$c data=$([ "$got" = "$want2" ] && echo ok || echo BAD)"
  cat /tmp/k1.err
  timeout 60 usmc run socat -t 30 "TCP6-LISTEN:7011,reuseaddr,bind=[$me]" \
    SYSTEM:"head -c $k > /tmp/k2.bin; smc_lab pattern 2 $k" 2>/tmp/k2.err
  c=$?
  got=$(sha256sum < /tmp/k2.bin | cut -d' ' -f1)
  echo "LAB-RESULT $LAB_name usmc-server6 rc=$c data=$([ "$got" = "$want1" ] && echo ok || echo BAD)"
  cat /tmp/k2.err
  sed "s/^/LAB-KREPORT $LAB_name /" /tmp/report-k
  return 0
}

v6_field() {  # v6_field LOG KEY: the value of KEY= on a LAB-RESULT line
  sed -n "s/^LAB-RESULT .* $2=\([^ ]*\).*/\1/p" "$1" | tail -1
}

host_check() {
  local a=$1 b=$2 f fail=0 d
  for f in "$a" "$b"; do
    grep -q 'LAB-RESULT .* usmc-ipv6 rc=0' "$f" || { echo "lab: $f: usmc did not use SMC-R with intact data" >&2; fail=1; }
    grep -q '^USMC mode=SMCR ' "$f" || { echo "lab: $f: not SMC-R" >&2; fail=1; }
    grep -q '^DATA ok 1048576' "$f" || { echo "lab: $f: data not intact" >&2; fail=1; }
    d=$(sed -n 's/^LAB-RESULT .* rxe_rcvd_delta=\([0-9]*\).*/\1/p' "$f")
    [ "${d:-0}" -ge $((V6_BYTES / 1024)) ] || { echo "lab: $f: rxe received ${d:-none} packets < 1 MiB / 1024" >&2; fail=1; }
  done
  grep -q '^USMC-DEVICE rxe0 gid=fd00::1 .* for fd00::1$' "$a" || { echo "lab: a did not open rxe0's GID fd00::1" >&2; fail=1; }
  grep -q '^USMC-DEVICE rxe0 gid=fd00::2 .* for fd00::2$' "$b" || { echo "lab: b did not open rxe0's GID fd00::2" >&2; fail=1; }
  grep -q '^CONN 1 peer=fd00::2$' "$a" || { echo "lab: a's TCP peer is not fd00::2" >&2; fail=1; }
  grep -q '^USMC-LINK .* local_gid=fd00::1 peer_gid=fd00::2$' "$a" || { echo "lab: a's link does not run fd00::1 -> fd00::2" >&2; fail=1; }
  grep -q '^USMC-LINK .* local_gid=fd00::2 peer_gid=fd00::1$' "$b" || { echo "lab: b's link does not run fd00::2 -> fd00::1" >&2; fail=1; }
  # Phase 2: under `usmc run`.
  grep -q 'LAB-RESULT a run_opened_before_connect=3 of 3' "$a" ||
    { echo "lab: a's listeners had not all opened the RDMA device before the first connect" >&2; fail=1; }
  for f in "$a" "$b"; do
    grep -q 'LAB-RESULT .* run rc=0' "$f" || { echo "lab: $f: socat/iperf3 under usmc run failed" >&2; fail=1; }
    # A socat connection: SMCR with its link group to the peer's IPv6 GID.
    grep -q '^LAB-SS [ab] ACTIVE .*fd00::[12].* SMCR .* socat  *\(CLNT\|SERV\) 0*[1-9a-f][0-9a-f]* .* fd00::[12] ' "$f" ||
      { echo "lab: $f: usmc ss never said SMC-R (link group to an IPv6 GID) for socat" >&2; fail=1; }
    grep '^LAB-REPORT .*"comm":"\(socat\|iperf3\)"' "$f" > /tmp/lab-reports.$$
    [ "$(wc -l < /tmp/lab-reports.$$)" -ge 3 ] || { echo "lab: $f: fewer than 3 exit reports" >&2; fail=1; }
    if grep -v '"tcp":0,' /tmp/lab-reports.$$ | grep -q .; then echo "lab: $f: a fallback" >&2; fail=1; fi
    if grep -v '"bytes_tcp_in":0,"bytes_tcp_out":0' /tmp/lab-reports.$$ | grep -q .; then
      echo "lab: $f: application bytes over TCP" >&2; fail=1
    fi
    if grep '"smcr":0' /tmp/lab-reports.$$ | grep -q .; then echo "lab: $f: a process without SMC-R" >&2; fail=1; fi
    rm -f /tmp/lab-reports.$$
    [ "$(v6_field "$f" run_rxe_rcvd_delta)" -ge $((V6_BYTES / 1024)) ] 2>/dev/null ||
      { echo "lab: $f: rxe received too few packets under usmc run" >&2; fail=1; }
  done
  [ -n "$(v6_field "$a" sha_mine)" ] && [ "$(v6_field "$a" sha_mine)" = "$(v6_field "$b" sha_theirs)" ] ||
    { echo "lab: a -> b: SHA-256 differs" >&2; fail=1; }
  [ -n "$(v6_field "$b" sha_mine)" ] && [ "$(v6_field "$b" sha_mine)" = "$(v6_field "$a" sha_theirs)" ] ||
    { echo "lab: b -> a: SHA-256 differs" >&2; fail=1; }
  grep -q 'LAB-RESULT b iperf3 tries=[0-4]$' "$b" || { echo "lab: iperf3 failed" >&2; fail=1; }
  # a's wildcard listeners ([::], dual-stack) opened the device for both
  # families.
  grep -q '^LAB-REPORT a .*"comm":"socat".*"smcr":1,"smcr_devices":2' "$a" ||
    { echo "lab: a's [::] socat did not open a device per family" >&2; fail=1; }
  # Phase 3: the kernel over IPv6 falls back to TCP, cleanly, both ways.
  grep -q 'LAB-RESULT a kernel-server6 rc=2' "$a" || { echo "lab: kernel server (IPv6) not TCP with intact data" >&2; fail=1; }
  grep -q 'LAB-RESULT a kernel-client6 rc=2' "$a" || { echo "lab: kernel client (IPv6) not TCP with intact data" >&2; fail=1; }
  [ "$(grep -c '^K\(SERVER\|CLIENT\) SMC mode=FALLBACK' "$a")" = 2 ] || { echo "lab: the kernel's smc_diag did not say FALLBACK twice" >&2; fail=1; }
  grep -q 'LAB-RESULT b usmc-client6 rc=0 data=ok' "$b" || { echo "lab: usmc client vs the kernel (IPv6): failed or data differs" >&2; fail=1; }
  grep -q 'LAB-RESULT b usmc-server6 rc=0 data=ok' "$b" || { echo "lab: usmc server vs the kernel (IPv6): failed or data differs" >&2; fail=1; }
  [ "$(grep -c '^LAB-KREPORT b .*"comm":"socat".*"tcp":1,"handshake_errors":0,' "$b")" -ge 2 ] ||
    { echo "lab: usmc's socat against the kernel: not TCP, or a handshake error" >&2; fail=1; }
  if grep '^LAB-KREPORT b .*"comm":"socat"' "$b" | grep -v '"smcr":0,' | grep -q .; then
    echo "lab: usmc's socat against the kernel used SMC-R" >&2; fail=1
  fi
  return $fail
}
