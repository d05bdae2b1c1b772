# tests/lab/scenarios/usmc-kernel-server.sh: the Linux kernel's AF_SMC
# (smc_lab) as the client, usmc's SMC-R runtime (tests/lab/smcr_peer.cc,
# no interposer) as the server. Guest a: usmc server; guest b: kernel
# client. Three connections of 1 MiB each way over one link group: the
# kernel closes the first (usmc sees EOF and closes), closes the second
# with SO_LINGER 0 (AF_SMC still closes orderly: the linger time only bounds
# its wait for unsent data, so usmc sees EOF again), and usmc aborts the
# third (the kernel reads EOF with SO_ERROR ECONNRESET). Then the kernel's link-group table must be
# empty within 1 s of the usmc process's exit (TerminateAll: DELETE_LINK).
# The kernel's TCP RST (SO_LINGER 0) can overtake its close CDC: usmc then
# waits for the CDC (engine::kSmcrPeerCloseWait, docs/dev-rdma.md) and still
# reads EOF; smcr_peer marks that case "PEER-CLOSE eof ... tcp_first=1". (Out of
# the default list on 2026-12-07 when it read ECONNRESET; back since that wait.)
LAB_GUESTS=2
LAB_TIMEOUT=150
UK_BYTES=1048576

uk_client() { lab_smc_client 50 0.3 "$LAB_peer" 5000 $UK_BYTES; }

guest_main() {
  lab_rxe || { echo "LAB-RESULT $LAB_name rxe setup failed"; return 1; }
  smc_lab ueid-add USMC-LAB || return 1
  lab_wait_peer || { echo "LAB-RESULT $LAB_name peer unreachable"; return 1; }
  if [ "$LAB_role" = a ]; then
    usmc setup >/dev/null || { echo "LAB-RESULT $LAB_name usmc setup failed"; return 1; }
    timeout 90 smcr_peer server 5000 $UK_BYTES --conns 3 --abort
    rc=$?
    echo "LAB-RESULT $LAB_name usmc-server rc=$rc"
  else
    uk_client
    rc1=$?
    smc_lab lgr
    SMC_LAB_ABORT=1 uk_client
    rc2=$?
    SMC_LAB_WAIT_CLOSE=1 uk_client
    rc=$?
    [ $rc1 -eq 0 ] || rc=$rc1
    [ $rc2 -eq 0 ] || rc=$rc2
    echo "LAB-RESULT $LAB_name kernel-client rc=$rc"
    smc_lab lgr-wait-empty 5000
    echo "LAB-RESULT $LAB_name lgr-empty rc=$?"
    smc_lab fback
  fi
  lab_kernel_report
  return $rc
}

host_check() {
  local a=$1 b=$2 fail=0 ms
  grep -q 'LAB-RESULT b kernel-client rc=0' "$b" || { echo "lab: kernel client did not use SMC-R with intact data" >&2; fail=1; }
  [ "$(grep -c '^SMC mode=SMCR .*role=CLIENT ibdev=rxe0' "$b")" = 3 ] || { echo "lab: kernel smc_diag does not show 3 SMC-R connections" >&2; fail=1; }
  grep -q '^LGR .*role=CLIENT .*v2=1 ver=2 rel=1 .*eid="USMC-LAB' "$b" || { echo "lab: kernel link group not SMC-Rv2 release 1 with the lab's UEID" >&2; fail=1; }
  [ "$(grep -c '^DATA ok' "$b")" = 3 ] || { echo "lab: kernel side data not intact" >&2; fail=1; }
  grep -q '^PEER-CLOSE \(error=\|eof so_error=\)ECONNRESET' "$b" || { echo "lab: kernel saw no abort (ECONNRESET)" >&2; fail=1; }
  ms=$(sed -n 's/^LGR-EMPTY after \([0-9]*\) ms/\1/p' "$b")
  [ -n "$ms" ] && [ "$ms" -le 1000 ] || { echo "lab: kernel link groups left 1 s after the usmc process exited (${ms:-never})" >&2; fail=1; }
  grep -q 'LAB-RESULT a usmc-server rc=0' "$a" || { echo "lab: usmc server did not use SMC-R with intact data" >&2; fail=1; }
  [ "$(grep -c '^USMC mode=SMCR' "$a")" = 3 ] || { echo "lab: usmc server not in SMC-R 3 times" >&2; fail=1; }
  [ "$(grep -c '^DATA ok' "$a")" = 3 ] || { echo "lab: usmc side data not intact" >&2; fail=1; }
  [ "$(grep -c '^PEER-CLOSE eof' "$a")" = 2 ] || { echo "lab: usmc server did not see the kernel's two closes as EOF" >&2; fail=1; }
  grep -q '^CLOSE smcr orderly done' "$a" || { echo "lab: usmc orderly close did not finish" >&2; fail=1; }
  grep -q '^CLOSE smcr abort done' "$a" || { echo "lab: usmc abort did not finish" >&2; fail=1; }
  return $fail
}
