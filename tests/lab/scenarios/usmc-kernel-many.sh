# tests/lab/scenarios/usmc-kernel-many.sh: link-group reuse against the
# Linux kernel's SMC-R. Guest a: kernel server (smc_lab, AF_SMC); guest b:
# usmc (tests/lab/smcr_peer.cc, no interposer).
#   1. one usmc process, 10 sequential connections (64 KiB each way): the
#      kernel keeps ONE link group with ONE link (one QP) for all of them;
#   2. two usmc processes at once: two link groups in the kernel (each
#      process proposes its own system ID), and the kernel's fallback
#      counters hold no SYNCERR (0x04000000).
LAB_GUESTS=2
LAB_TIMEOUT=200
UM_BYTES=65536

guest_main() {
  lab_rxe || { echo "LAB-RESULT $LAB_name rxe setup failed"; return 1; }
  smc_lab ueid-add USMC-LAB || return 1
  lab_wait_peer || { echo "LAB-RESULT $LAB_name peer unreachable"; return 1; }
  if [ "$LAB_role" = a ]; then
    timeout 90 smc_lab server 5000 $UM_BYTES 10 | grep -v '^DATA ok' 
    rc1=$?
    # The usmc process holds its group for 4 s after its last connection.
    echo "PHASE seq"; smc_lab lgr
    timeout 90 smc_lab server 5001 $UM_BYTES 2
    rc=$?
    echo "PHASE two"; smc_lab lgr
    smc_lab lgr-wait-empty 8000
    echo "LAB-RESULT $LAB_name lgr-empty rc=$?"
    echo "PHASE fback"; smc_lab fback
    echo "LAB-RESULT $LAB_name kernel-server rc=$rc"
  else
    usmc setup >/dev/null || { echo "LAB-RESULT $LAB_name usmc setup failed"; return 1; }
    timeout 90 smcr_peer client "$LAB_peer" 5000 $UM_BYTES --conns 10 --hold 4 > /tmp/seq.out
    rc=$?
    cat /tmp/seq.out | grep -v '^DATA ok'
    echo "LAB-RESULT $LAB_name usmc-seq rc=$rc smcr=$(grep -c '^USMC mode=SMCR' /tmp/seq.out) data_ok=$(grep -c '^DATA ok' /tmp/seq.out)"
    timeout 90 smcr_peer client "$LAB_peer" 5001 $UM_BYTES --hold 6 > /tmp/p1.out &
    p1=$!
    timeout 90 smcr_peer client "$LAB_peer" 5001 $UM_BYTES --hold 6 > /tmp/p2.out &
    p2=$!
    wait $p1; r1=$?
    wait $p2; r2=$?
    sed 's/^/P1 /' /tmp/p1.out; sed 's/^/P2 /' /tmp/p2.out
    echo "LAB-RESULT $LAB_name usmc-two rc=$r1,$r2"
  fi
  lab_kernel_report 30
  return 0
}

host_check() {
  local a=$1 b=$2 fail=0 seq two
  grep -q 'LAB-RESULT b usmc-seq rc=0 smcr=10 data_ok=10' "$b" || { echo "lab: 10 sequential usmc connections not all SMC-R with intact data" >&2; fail=1; }
  grep -q 'LAB-RESULT b usmc-two rc=0,0' "$b" || { echo "lab: two usmc processes did not both use SMC-R" >&2; fail=1; }
  grep -q 'LAB-RESULT a kernel-server rc=0' "$a" || { echo "lab: kernel server saw a non-SMC-R connection" >&2; fail=1; }
  seq=$(sed -n '/^PHASE seq/,/^LGRS/p' "$a")
  echo "$seq" | grep -q '^LGRS n=1$' || { echo "lab: kernel link groups after 10 sequential connections: $(echo "$seq" | grep '^LGRS')" >&2; fail=1; }
  [ "$(echo "$seq" | grep -c '^LINK .*ibdev=rxe0')" = 1 ] || { echo "lab: kernel has not exactly one link (QP) after 10 connections" >&2; fail=1; }
  # The usmc side: one group, one QP for the 10.
  [ "$(grep '^USMC-LGR n=1 ' "$b" | sed 's/.*qpn=\([0-9]*\) .*/\1/' | sort -u | wc -l)" = 1 ] || { echo "lab: usmc used more than one QP for the 10 connections" >&2; fail=1; }
  two=$(sed -n '/^PHASE two/,/^LGRS/p' "$a")
  echo "$two" | grep -q '^LGRS n=2$' || { echo "lab: kernel link groups with two usmc processes: $(echo "$two" | grep '^LGRS')" >&2; fail=1; }
  grep -q '^LAB-RESULT a lgr-empty rc=0' "$a" || { echo "lab: kernel link groups left after the usmc processes exited" >&2; fail=1; }
  grep -q '^FBACK .*reason=0x04000000' "$a" && { echo "lab: the kernel counted a SYNCERR fallback" >&2; fail=1; }
  return $fail
}
