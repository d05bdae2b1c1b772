# tests/lab/scenarios/usmc-kernel-testlink.sh: the kernel's TEST_LINK is
# answered by usmc's progress thread while the application sleeps. Guest a:
# kernel server with net.smc.smcr_testlink_time=3; guest b: usmc client
# (tests/lab/smcr_peer.cc) that idles 10 s with the link up, then sends:
# the connection still carries 1 MiB each way, and the usmc link group
# counted the kernel's TEST_LINK requests.
LAB_GUESTS=2
LAB_TIMEOUT=150
UT_BYTES=1048576

guest_main() {
  lab_rxe || { echo "LAB-RESULT $LAB_name rxe setup failed"; return 1; }
  smc_lab ueid-add USMC-LAB || return 1
  lab_wait_peer || { echo "LAB-RESULT $LAB_name peer unreachable"; return 1; }
  if [ "$LAB_role" = a ]; then
    echo 3 > /proc/sys/net/smc/smcr_testlink_time
    echo "TESTLINK-TIME $(cat /proc/sys/net/smc/smcr_testlink_time)"
    timeout 90 smc_lab server 5000 $UT_BYTES
    rc=$?
    echo "LAB-RESULT $LAB_name kernel-server rc=$rc"
  else
    usmc setup >/dev/null || { echo "LAB-RESULT $LAB_name usmc setup failed"; return 1; }
    timeout 90 smcr_peer client "$LAB_peer" 5000 $UT_BYTES --idle 10
    rc=$?
    echo "LAB-RESULT $LAB_name usmc-client rc=$rc"
  fi
  lab_kernel_report
  return $rc
}

host_check() {
  local a=$1 b=$2 fail=0 n
  grep -q '^TESTLINK-TIME 3' "$a" || { echo "lab: smcr_testlink_time not set" >&2; fail=1; }
  grep -q 'LAB-RESULT a kernel-server rc=0' "$a" || { echo "lab: kernel server: no SMC-R with intact data after the idle time" >&2; fail=1; }
  grep -q 'LAB-RESULT b usmc-client rc=0' "$b" || { echo "lab: usmc client: no SMC-R with intact data after the idle time" >&2; fail=1; }
  n=$(sed -n 's/^USMC-LGR n=1 .*test_link_rx=\([0-9]*\)\].*/\1/p' "$b" | head -1)
  [ "${n:-0}" -ge 2 ] || { echo "lab: usmc answered ${n:-no} TEST_LINK in 10 s idle (want >= 2)" >&2; fail=1; }
  return $fail
}
