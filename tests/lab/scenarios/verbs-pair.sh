# tests/lab/scenarios/verbs-pair.sh: dev/verbs across the two guests
# (tests/lab/verbs_pair.cc): RC QPs with the kernel's attributes between
# rxe0 of a and rxe0 of b, 16 rounds of one unsignaled 64 KiB RDMA WRITE +
# a 44-byte inline solicited SEND, each checked byte for byte in the
# server's RMB when its SEND is seen, each answered with a SEND.
LAB_GUESTS=2
LAB_TIMEOUT=150
PAIR_ROUNDS=16

guest_main() {
  lab_rxe || { echo "LAB-RESULT $LAB_name rxe setup failed"; return 1; }
  lab_wait_peer || { echo "LAB-RESULT $LAB_name peer unreachable"; return 1; }
  if [ "$LAB_role" = a ]; then
    timeout 100 verbs_pair server 6000 $PAIR_ROUNDS
  else
    timeout 100 verbs_pair client "$LAB_peer" 6000 $PAIR_ROUNDS
  fi
  rc=$?
  echo "LAB-RESULT $LAB_name verbs_pair rc=$rc"
  lab_counters
  return $rc
}

host_check() {
  local f fail=0 rcvd
  for f in "$@"; do
    grep -q 'LAB-RESULT .* verbs_pair rc=0' "$f" || { echo "lab: $f: verbs_pair failed" >&2; fail=1; }
    grep -q "^VERBS-PAIR ok $PAIR_ROUNDS rounds" "$f" || { echo "lab: $f: not every round checked" >&2; fail=1; }
    grep -q '^device rxe0 gid ::ffff:10\.0\.0\.' "$f" || { echo "lab: $f: not the IPv4-mapped GID of rxe0" >&2; fail=1; }
  done
  # The server (a) received the WRITEs as RoCE packets of at most 1024 B.
  rcvd=$(sed -n 's/^LAB-RESULT .* rcvd_pkts=\([0-9]*\).*/\1/p' "$1")
  [ "${rcvd:-0}" -ge $((PAIR_ROUNDS * 65536 / 1024)) ] || { echo "lab: rxe of a received ${rcvd:-no} packets" >&2; fail=1; }
  return $fail
}
