# tests/lab/scenarios/usmc-ipv6.sh: SMC-Rv2 over IPv6 GIDs between two usmc
# peers (tests/lab/smcr_peer.cc on both guests), beyond the Linux kernel,
# whose SMC-Rv2 has IPv4-mapped GIDs only. The guests' NICs get fd00::1/64
# and fd00::2/64 (no DAD); rxe makes a RoCEv2 GID of each. The TCP
# connection runs over IPv6; dev/verbs opens the GID equal to the local
# address (dev/gid_choice.h); CLC and LLC carry the IPv6 GIDs; 1 MiB each
# way intact over SMC-R. Asserted: both peers in SMC-R with intact data,
# their device GIDs fd00::1 / fd00::2, each link group's peer GID the
# other's IPv6 address, rxe received at least 1 MiB / 1024 packets.
LAB_GUESTS=2
LAB_TIMEOUT=150
V6_BYTES=1048576

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
  lab_kernel_report 10
  return $rc
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
  return $fail
}
