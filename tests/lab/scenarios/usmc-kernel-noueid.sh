# tests/lab/scenarios/usmc-kernel-noueid.sh: a Linux kernel WITHOUT a UEID
# (so no SMC-Rv2; rxe has no RoCEv1 GID for SMC-Rv1) meets usmc, which
# speaks SMC-Rv2 only. Guest a: the kernel (no `smc_lab ueid-add`); guest
# b: usmc (tests/lab/smcr_peer.cc). First the kernel serves and usmc
# connects, then usmc serves and the kernel connects. Both connections
# fall back to TCP with the kernel's own reason (the usmc side prints the
# peer's Decline reason), and 1 MiB each way arrives intact over TCP.
LAB_GUESTS=2
LAB_TIMEOUT=150
UN_BYTES=1048576

guest_main() {
  lab_rxe || { echo "LAB-RESULT $LAB_name rxe setup failed"; return 1; }
  lab_wait_peer || { echo "LAB-RESULT $LAB_name peer unreachable"; return 1; }
  if [ "$LAB_role" = a ]; then
    timeout 60 smc_lab server 5000 $UN_BYTES
    echo "LAB-RESULT $LAB_name kernel-server rc=$?"
    i=0
    while :; do
      timeout 60 smc_lab client "$LAB_peer" 5001 $UN_BYTES
      rc=$?
      i=$((i + 1))
      [ $rc -ne 3 ] || [ $i -ge 50 ] && break
      sleep 0.3
    done
    echo "LAB-RESULT $LAB_name kernel-client rc=$rc"
    smc_lab fback
  else
    smc_lab ueid-add USMC-LAB || return 1
    usmc setup >/dev/null || { echo "LAB-RESULT $LAB_name usmc setup failed"; return 1; }
    timeout 60 smcr_peer client "$LAB_peer" 5000 $UN_BYTES
    echo "LAB-RESULT $LAB_name usmc-client rc=$?"
    timeout 60 smcr_peer server 5001 $UN_BYTES
    echo "LAB-RESULT $LAB_name usmc-server rc=$?"
  fi
  lab_kernel_report
  return 0
}

host_check() {
  local a=$1 b=$2 fail=0
  # exit 2: TCP (fallback) with intact data, on all four ends.
  grep -q 'LAB-RESULT a kernel-server rc=2' "$a" || { echo "lab: kernel server (no UEID) not TCP with intact data" >&2; fail=1; }
  grep -q 'LAB-RESULT a kernel-client rc=2' "$a" || { echo "lab: kernel client (no UEID) not TCP with intact data" >&2; fail=1; }
  grep -q 'LAB-RESULT b usmc-client rc=2' "$b" || { echo "lab: usmc client not TCP with intact data" >&2; fail=1; }
  grep -q 'LAB-RESULT b usmc-server rc=2' "$b" || { echo "lab: usmc server not TCP with intact data" >&2; fail=1; }
  [ "$(grep -c '^DATA ok' "$a")" = 2 ] && [ "$(grep -c '^DATA ok' "$b")" = 2 ] || { echo "lab: bytes lost over the TCP fallback" >&2; fail=1; }
  # The kernel's reason, as the kernel's smc_diag says it and as usmc saw
  # it (the peer's Decline, or usmc's own when the kernel sent none).
  grep '^SMC mode=FALLBACK' "$a" >&2
  grep '^USMC mode=TCP' "$b" >&2
  [ "$(grep -c '^USMC mode=TCP reason=0x0[0-9a-f]* peer_reason=0x0[1-9a-f]' "$b")" -ge 1 ] || { echo "lab: usmc saw no kernel Decline reason" >&2; fail=1; }
  return $fail
}
