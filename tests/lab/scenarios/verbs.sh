# tests/lab/scenarios/verbs.sh: dev/verbs_test on Soft-RoCE in one guest:
# RdmaContract (the suite SimRdma passes too, dev/rdma_contract_test.cc) on
# a QP pair in loopback on rxe0, and the device checks (GID choice). Fails
# if any test failed or skipped: here a device exists, so a skip is a bug.
# First, `usmc setup` (the eBPF negotiation program) must work in the guest.
LAB_GUESTS=1
LAB_TIMEOUT=240

guest_main() {
  # usmc's own binaries run here (shared libraries complete, eBPF loads).
  usmc setup && usmc setup --status
  echo "LAB-RESULT $LAB_name usmc setup rc=$?"
  lab_rxe || { echo "LAB-RESULT $LAB_name rxe setup failed"; return 1; }
  USMC_VERBS_IPV4=${LAB_ip%/*} /usmc/dev/dev_verbs_test --gtest_color=no
  rc=$?
  echo "LAB-RESULT $LAB_name verbs_test rc=$rc"
  lab_counters
  return $rc
}

host_check() {
  local f=$1 fail=0 ran ok
  grep -q 'LAB-RESULT .* usmc setup rc=0' "$f" || { echo "lab: usmc setup failed in the guest" >&2; fail=1; }
  grep -q 'LAB-RESULT .* verbs_test rc=0' "$f" || { echo "lab: dev_verbs_test failed" >&2; fail=1; }
  grep -q '^\[  SKIPPED \]' "$f" && { echo "lab: dev_verbs_test skipped tests on a guest with rxe" >&2; fail=1; }
  grep -q '^\[  FAILED  \]' "$f" && { grep '^\[  FAILED  \]' "$f" >&2; fail=1; }
  ran=$(sed -n 's/^\[==========\] Running \([0-9]*\) tests.*/\1/p' "$f")
  ok=$(grep -c '^\[       OK \]' "$f")
  [ -n "$ran" ] && [ "$ran" -gt 0 ] && [ "$ok" = "$ran" ] || { echo "lab: ${ok:-0} of ${ran:-?} tests passed" >&2; fail=1; }
  return $fail
}
