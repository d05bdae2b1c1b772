# tests/lab/scenarios/usmc-kernel-client.sh: usmc's SMC-R runtime as the
# client (tests/lab/smcr_peer.cc: an LgrRegistry on dev/verbs, its progress
# thread, the TCP option offered by `usmc setup`'s eBPF program), the Linux
# kernel's AF_SMC (smc_lab) as the server. Guest a: kernel server; guest b:
# usmc client. 1 MiB each way, orderly close, then the kernel's link-group
# table must empty once the usmc process has exited (TerminateAll: the
# registry's DELETE_LINK).
LAB_GUESTS=2
LAB_TIMEOUT=150
UK_BYTES=1048576

guest_main() {
  lab_rxe || { echo "LAB-RESULT $LAB_name rxe setup failed"; return 1; }
  smc_lab ueid-add USMC-LAB || return 1
  lab_wait_peer || { echo "LAB-RESULT $LAB_name peer unreachable"; return 1; }
  if [ "$LAB_role" = a ]; then
    timeout 90 smc_lab server 5000 $UK_BYTES
    rc=$?
    echo "LAB-RESULT $LAB_name kernel-server rc=$rc"
    smc_lab lgr-wait-empty 3000
    echo "LAB-RESULT $LAB_name lgr-empty rc=$?"
  else
    usmc setup >/dev/null || { echo "LAB-RESULT $LAB_name usmc setup failed"; return 1; }
    timeout 90 smcr_peer client "$LAB_peer" 5000 $UK_BYTES
    rc=$?
    echo "LAB-RESULT $LAB_name usmc-client rc=$rc"
  fi
  lab_counters
  dmesg | grep -i -E 'smc|rxe' | tail -20 | sed 's/^/KMSG /'
  sleep 1
  return $rc
}

host_check() {
  local a=$1 b=$2 fail=0
  grep -q 'LAB-RESULT a kernel-server rc=0' "$a" || { echo "lab: kernel server did not use SMC-R with intact data" >&2; fail=1; }
  grep -q '^SMC mode=SMCR .*role=SERVER ibdev=rxe0' "$a" || { echo "lab: kernel smc_diag shows no SMC-R link" >&2; fail=1; }
  grep -q '^LGR .*v2=1 rel=1 .*eid="USMC-LAB' "$a" || { echo "lab: kernel link group not SMC-Rv2 release 1 with the lab's UEID" >&2; fail=1; }
  grep -q 'LAB-RESULT a lgr-empty rc=0' "$a" || { echo "lab: kernel link groups left after the usmc process exited" >&2; fail=1; }
  grep -q '^DATA ok' "$a" || { echo "lab: kernel side data not intact" >&2; fail=1; }
  grep -q 'LAB-RESULT b usmc-client rc=0' "$b" || { echo "lab: usmc client did not use SMC-R with intact data" >&2; fail=1; }
  grep -q '^USMC mode=SMCR' "$b" || { echo "lab: usmc client not in SMC-R" >&2; fail=1; }
  grep -q '^CLOSE smcr orderly done' "$b" || { echo "lab: usmc orderly close did not finish" >&2; fail=1; }
  return $fail
}
