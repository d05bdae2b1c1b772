# tests/lab/scenarios/usmc-kernel-client.sh: usmc's SMC-R runtime as the
# client (tests/lab/smcr_peer.cc: an LgrRegistry on dev/verbs, its progress
# thread, the TCP option offered by `usmc setup`'s eBPF program), the Linux
# kernel's AF_SMC (smc_lab) as the server. Guest a: kernel server; guest b:
# usmc client. Two connections of 1 MiB each way over one link group: the
# first closed orderly, the second aborted. Then the kernel's link-group
# table must be empty within 1 s of the usmc process's exit (the registry's
# TerminateAll: DELETE_LINK).
LAB_GUESTS=2
LAB_TIMEOUT=150
UK_BYTES=1048576

guest_main() {
  lab_rxe || { echo "LAB-RESULT $LAB_name rxe setup failed"; return 1; }
  smc_lab ueid-add USMC-LAB || return 1
  lab_wait_peer || { echo "LAB-RESULT $LAB_name peer unreachable"; return 1; }
  if [ "$LAB_role" = a ]; then
    # Dump the link group while the client holds it (it sleeps 3 s first).
    ( sleep 1; i=0
      until smc_lab lgr | grep -q '^LGR '; do i=$((i + 1)); [ $i -lt 100 ] || break; sleep 0.2; done
      smc_lab lgr ) &
    timeout 90 smc_lab server 5000 $UK_BYTES 2
    rc=$?
    echo "LAB-RESULT $LAB_name kernel-server rc=$rc"
    smc_lab lgr-wait-empty 5000
    echo "LAB-RESULT $LAB_name lgr-empty rc=$?"
    smc_lab fback
  else
    usmc setup >/dev/null || { echo "LAB-RESULT $LAB_name usmc setup failed"; return 1; }
    timeout 90 smcr_peer client "$LAB_peer" 5000 $UK_BYTES --conns 2 --abort --idle 3
    rc=$?
    echo "LAB-RESULT $LAB_name usmc-client rc=$rc"
  fi
  lab_kernel_report
  return $rc
}

host_check() {
  local a=$1 b=$2 fail=0 ms
  grep -q 'LAB-RESULT a kernel-server rc=0' "$a" || { echo "lab: kernel server did not use SMC-R with intact data" >&2; fail=1; }
  [ "$(grep -c '^SMC mode=SMCR .*role=SERVER ibdev=rxe0' "$a")" = 2 ] || { echo "lab: kernel smc_diag does not show 2 SMC-R connections" >&2; fail=1; }
  grep -q '^LGR .*role=SERVER .*v2=1 ver=2 rel=1 .*eid="USMC-LAB' "$a" || { echo "lab: kernel link group not SMC-Rv2 release 1 with the lab's UEID" >&2; fail=1; }
  [ "$(grep -c '^DATA ok' "$a")" = 2 ] || { echo "lab: kernel side data not intact" >&2; fail=1; }
  grep -q '^PEER-CLOSE eof$' "$a" || { echo "lab: kernel saw no orderly close" >&2; fail=1; }
  grep -q '^PEER-CLOSE \(error=\|eof so_error=\)ECONNRESET' "$a" || { echo "lab: kernel saw no abort (ECONNRESET)" >&2; fail=1; }
  ms=$(sed -n 's/^LGR-EMPTY after \([0-9]*\) ms/\1/p' "$a")
  [ -n "$ms" ] && [ "$ms" -le 1000 ] || { echo "lab: kernel link groups left 1 s after the usmc process exited (${ms:-never})" >&2; fail=1; }
  grep -q 'LAB-RESULT b usmc-client rc=0' "$b" || { echo "lab: usmc client did not use SMC-R with intact data" >&2; fail=1; }
  [ "$(grep -c '^USMC mode=SMCR' "$b")" = 2 ] || { echo "lab: usmc client not in SMC-R twice" >&2; fail=1; }
  grep -q '^CLOSE smcr orderly done' "$b" || { echo "lab: usmc orderly close did not finish" >&2; fail=1; }
  grep -q '^CLOSE smcr abort done' "$b" || { echo "lab: usmc abort did not finish" >&2; fail=1; }
  return $fail
}
