# tests/lab/scenarios/kernel-baseline.sh: the Linux kernel's SMC-R between
# the two guests, no usmc involved: proves the lab itself works (rxe on
# virtio-net, the backports kernel, a UEID on both sides, SMC-Rv2 over the
# IPv4-mapped RoCEv2 GID). Guest a serves, guest b connects; 1 MiB each way.
# Sourced by scripts/lab.sh on the host and by /init in the guest.
LAB_GUESTS=2
LAB_TIMEOUT=120
BASELINE_BYTES=1048576

guest_main() {
  lab_rxe || { echo "LAB-RESULT $LAB_name rxe setup failed"; return 1; }
  smc_lab ueid-add USMC-LAB || return 1
  lab_wait_peer || { echo "LAB-RESULT $LAB_name peer unreachable"; return 1; }
  if [ "$LAB_role" = a ]; then
    timeout 60 smc_lab server 5000 $BASELINE_BYTES
    rc=$?
  else
    lab_smc_client 50 0.2 "$LAB_peer" 5000 $BASELINE_BYTES
    rc=$?
  fi
  echo "LAB-RESULT $LAB_name smc rc=$rc"
  lab_counters
  sleep 1  # the peer's last reads and diag before the link goes away
  return $rc
}

host_check() {
  local f fail=0 rcvd
  for f in "$@"; do
    grep -q 'LAB-RESULT .* smc rc=0' "$f" || { echo "lab: $f: AF_SMC did not use SMC-R" >&2; fail=1; }
    grep -q '^SMC mode=SMCR .*ibdev=rxe0' "$f" || { echo "lab: $f: smc_diag shows no SMC-R link" >&2; fail=1; }
    grep -q '^DATA ok' "$f" || { echo "lab: $f: data not intact" >&2; fail=1; }
    # 1 MiB arrived as RoCE packets of at most 1024 bytes, not as TCP.
    rcvd=$(sed -n 's/^LAB-RESULT .* rcvd_pkts=\([0-9]*\).*/\1/p' "$f")
    [ "${rcvd:-0}" -ge $((BASELINE_BYTES / 1024)) ] || { echo "lab: $f: rxe rcvd_pkts ${rcvd:-none} < 1 MiB / 1024" >&2; fail=1; }
  done
  return $fail
}
