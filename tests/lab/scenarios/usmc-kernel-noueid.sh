# tests/lab/scenarios/usmc-kernel-noueid.sh: a Linux kernel WITHOUT a UEID
# (so no SMC-Rv2; rxe has no RoCEv1 GID for SMC-Rv1) meets usmc, which
# speaks SMC-Rv2 only. Guest a: the kernel (no `smc_lab ueid-add`); guest
# b: usmc. Every connection falls back to TCP with the kernel's own reason
# and 1 MiB each way arrives intact over TCP.
#
# Phase 1, usmc's runtime alone (tests/lab/smcr_peer.cc, which prints the
# peer's Decline reason): the kernel serves and usmc connects, then usmc
# serves and the kernel connects.
#
# Phase 2, as a user sees it: socat (nobody here wrote it) under `usmc run`
# after `usmc setup`, first as the client of the kernel's AF_SMC server
# (`smc_lab server`), then as the server of its AF_SMC client. socat sends
# smc_lab's pattern (`smc_lab pattern`, which smc_lab checks on its side)
# and writes what it gets to a file, compared with the pattern on b. While
# each connection is open (b holds socat's input open until it has looked),
# `usmc ss -a -d` and `usmc ss --json` on b must show it as TCP with usmc's
# reason PEERDECL and the kernel's Decline diagnosis NOSMCDEV (0x03030000),
# named. The kernel sends NOSMCDEV both ways (net/smc/af_smc.c, 6.12):
#  - as client, smc_find_proposal_devices() drops SMC-Rv2 when the UEID
#    table is empty (smc_clc_ueid_count() == 0), finds no RoCEv1 GID and no
#    ISM, so "neither ISM nor RDMA" gives SMC_CLC_DECL_NOSMCDEV, which
#    smc_connect_decline_fallback() sends as a Decline in place of the
#    Proposal (the server's TCP option said it does SMC);
#  - as server, usmc's Proposal (v2 only, type v1 N, UEID USMC-LAB) passes
#    smc_listen_v2_check(), smc_find_rdma_v2_device_serv() finds no EID in
#    common and records no reason, and smc_find_rdma_v1_device_serv()
#    returns SMC_CLC_DECL_NOSMCDEV (no SMC-Rv1 offered), which the server's
#    Decline carries. smc_diag on a says the same (`SMC mode=FALLBACK
#    reason=0x03030000`).
LAB_GUESTS=2
LAB_TIMEOUT=240
UN_BYTES=1048576

# un_wait FILE [BYTES]: bounded wait (30 s) until FILE exists and, with
# BYTES, holds that many bytes.
un_wait() {
  i=0
  while :; do
    if [ -e "$1" ]; then
      [ -z "$2" ] && return 0
      [ "$(wc -c < "$1")" -ge "$2" ] && return 0
    fi
    i=$((i + 1)); [ $i -lt 300 ] || return 1; sleep 0.1
  done
}

# un_ss WHO ADDR: once `usmc ss` lists socat's connection with ADDR (the
# kernel's address, or b's listening one) as TCP, prints `usmc ss -a -d`
# and `usmc ss --json` (prefixed LAB-SS / LAB-SSJ WHO).
un_ss() {
  i=0
  until usmc ss -a 2>/dev/null | grep -q "^TCP .* $2 .* TCP 0x.* socat"; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "LAB-RESULT $LAB_name $1 never TCP in usmc ss"; break; }
    sleep 0.2
  done
  usmc ss -a -d 2>&1 | sed "s/^/LAB-SS $1 /"
  usmc ss --json 2>&1 | sed "s/^/LAB-SSJ $1 /"
}

guest_main() {
  lab_rxe || { echo "LAB-RESULT $LAB_name rxe setup failed"; return 1; }
  lab_wait_peer || { echo "LAB-RESULT $LAB_name peer unreachable"; return 1; }
  if [ "$LAB_role" = a ]; then
    timeout 60 smc_lab server 5000 $UN_BYTES
    echo "LAB-RESULT $LAB_name kernel-server rc=$?"
    lab_smc_client 50 0.3 "$LAB_peer" 5001 $UN_BYTES
    echo "LAB-RESULT $LAB_name kernel-client rc=$?"
    # Phase 2: socat under `usmc run` on b, client then server.
    timeout 60 smc_lab server 5002 $UN_BYTES
    echo "LAB-RESULT $LAB_name kernel-server-socat rc=$?"
    lab_smc_client 100 0.3 "$LAB_peer" 5003 $UN_BYTES
    echo "LAB-RESULT $LAB_name kernel-client-socat rc=$?"
    smc_lab fback
  else
    smc_lab ueid-add USMC-LAB || return 1
    usmc setup >/dev/null || { echo "LAB-RESULT $LAB_name usmc setup failed"; return 1; }
    timeout 60 smcr_peer client "$LAB_peer" 5000 $UN_BYTES
    echo "LAB-RESULT $LAB_name usmc-client rc=$?"
    timeout 60 smcr_peer server 5001 $UN_BYTES
    echo "LAB-RESULT $LAB_name usmc-server rc=$?"
    # Phase 2: socat under `usmc run`. It sends what smc_lab expects (seed
    # 1: the client's bytes) and must get smc_lab's answer (seed 2).
    smc_lab pattern 1 $UN_BYTES > /tmp/p1
    smc_lab pattern 2 $UN_BYTES > /tmp/p2
    export USMC_EXIT_REPORT=/tmp/report
    # Client of the kernel's server: send, then keep socat's input open
    # (the connection up) until usmc ss has looked at it.
    { cat /tmp/p1; un_wait /tmp/go1; } |
      timeout 60 usmc run socat -b 65536 - TCP:"$LAB_peer":5002,retry=100,interval=0.3 \
        > /tmp/got1 2>/tmp/s1.err &
    sp=$!
    un_wait /tmp/got1 $UN_BYTES || echo "LAB-RESULT $LAB_name socat-client short answer"
    un_ss client "$LAB_peer:5002"
    touch /tmp/go1
    wait $sp
    echo "LAB-RESULT $LAB_name socat-client rc=$?"
    cat /tmp/s1.err
    cmp -s /tmp/p2 /tmp/got1 && d=ok || d=BAD
    echo "LAB-RESULT $LAB_name socat-client data=$d $(wc -c < /tmp/got1) bytes"
    # Server for the kernel's client: answer only once the client's bytes
    # are all in (smc_lab's order), after usmc ss has looked.
    { un_wait /tmp/go2; cat /tmp/p2; } |
      timeout 60 usmc run socat -b 65536 TCP-LISTEN:5003,reuseaddr - \
        > /tmp/got2 2>/tmp/s2.err &
    sp=$!
    un_wait /tmp/got2 $UN_BYTES || echo "LAB-RESULT $LAB_name socat-server short request"
    un_ss server "${LAB_ip%/*}:5003"
    touch /tmp/go2
    wait $sp
    echo "LAB-RESULT $LAB_name socat-server rc=$?"
    cat /tmp/s2.err
    cmp -s /tmp/p1 /tmp/got2 && d=ok || d=BAD
    echo "LAB-RESULT $LAB_name socat-server data=$d $(wc -c < /tmp/got2) bytes"
    sed 's/^/LAB-REPORT /' /tmp/report
  fi
  lab_kernel_report
  return 0
}

# un_json LOG WHO: the JSON `usmc ss --json` printed for WHO, checked: one
# connection of socat's, TCP, with PEERDECL and the kernel's NOSMCDEV, named.
un_json() {
  sed -n "s/^LAB-SSJ $2 //p" "$1" | python3 -c '
import json, sys
who, want = sys.argv[1], {"client": ("peer", "10.0.0.1:5002"), "server": ("local", "10.0.0.2:5003")}
doc = json.load(sys.stdin)
key, addr = want[who]
conns = [c for c in doc["connections"] if c[key] == addr]
assert len(conns) == 1, conns
c = conns[0]
for k, v in (("comm", "socat"), ("role", who), ("mode", "TCP"), ("state", "TCP"),
             ("local_reason", 0x05000000), ("peer_reason", 0x03030000)):
  assert c[k] == v, (k, c[k], v)
assert c["local_reason_text"].startswith("PEERDECL: "), c["local_reason_text"]
assert c["peer_reason_text"].startswith("NOSMCDEV: "), c["peer_reason_text"]
' "$2"
}

host_check() {
  local a=$1 b=$2 fail=0 who
  # smc_lab: exit 2, TCP (fallback) with intact data, on the kernel's four ends.
  for who in kernel-server kernel-client kernel-server-socat kernel-client-socat; do
    grep -q "LAB-RESULT a $who rc=2" "$a" || { echo "lab: $who (no UEID) not TCP with intact data" >&2; fail=1; }
  done
  grep -q 'LAB-RESULT b usmc-client rc=2' "$b" || { echo "lab: usmc client not TCP with intact data" >&2; fail=1; }
  grep -q 'LAB-RESULT b usmc-server rc=2' "$b" || { echo "lab: usmc server not TCP with intact data" >&2; fail=1; }
  # smc_lab checked what it received from smcr_peer and from socat (4),
  # smcr_peer what it received (2); socat's side is compared on b.
  [ "$(grep -c '^DATA ok' "$a")" = 4 ] && [ "$(grep -c '^DATA ok' "$b")" = 2 ] || { echo "lab: bytes lost over the TCP fallback" >&2; fail=1; }
  for who in socat-client socat-server; do
    grep -q "LAB-RESULT b $who rc=0" "$b" || { echo "lab: $who under usmc run failed" >&2; fail=1; }
    grep -q "LAB-RESULT b $who data=ok 1048576 bytes" "$b" || { echo "lab: $who: bytes lost over the TCP fallback" >&2; fail=1; }
  done
  # The kernel's own reason: NOSMCDEV both ways (see the header), on all
  # four connections, as its smc_diag says it and as usmc got it in the
  # kernel's Decline (usmc's own reason: PEERDECL, the peer declined).
  grep '^SMC mode=FALLBACK' "$a" >&2
  grep '^USMC mode=TCP' "$b" >&2
  [ "$(grep -c '^SMC mode=FALLBACK reason=0x03030000 ' "$a")" = 4 ] || { echo "lab: the kernel's smc_diag did not say NOSMCDEV for all 4" >&2; fail=1; }
  [ "$(grep -c '^USMC mode=TCP reason=0x05000000 peer_reason=0x03030000 ' "$b")" = 2 ] || { echo "lab: smcr_peer did not get the kernel's NOSMCDEV Decline twice" >&2; fail=1; }
  # usmc ss while socat's connections were open: TCP, the kernel's reason
  # beside usmc's in the Mode column, both named by -d, and in the JSON.
  grep -q '^LAB-SS client TCP .* 10\.0\.0\.1:5002 .* TCP 0x05000000/0x03030000 .* socat ' "$b" ||
    { echo "lab: usmc ss: socat's client connection not TCP 0x05000000/0x03030000" >&2; fail=1; }
  grep -q '^LAB-SS server TCP .* 10\.0\.0\.2:5003 .* 10\.0\.0\.1:[0-9]* .* TCP 0x05000000/0x03030000 .* socat ' "$b" ||
    { echo "lab: usmc ss: socat's server connection not TCP 0x05000000/0x03030000" >&2; fail=1; }
  for who in client server; do
    grep -q "^LAB-SS $who  *fallback: PEERDECL: .*; peer: NOSMCDEV: " "$b" ||
      { echo "lab: usmc ss -d: socat's $who connection without the kernel's NOSMCDEV" >&2; fail=1; }
    un_json "$b" $who || { echo "lab: usmc ss --json: socat's $who connection wrong" >&2; fail=1; }
  done
  # socat's exit reports: one TCP connection each (PEERDECL), 1 MiB each way on TCP.
  [ "$(grep -c '^LAB-REPORT {.*"comm":"socat","smcd":0,"tcp":1,"handshake_errors":0,"fallback_reasons":{"0x05000000":1},"bytes_smcd_in":0,"bytes_smcd_out":0,"bytes_tcp_in":1048576,"bytes_tcp_out":1048576,' "$b")" = 2 ] ||
    { echo "lab: socat's exit reports are not one PEERDECL fallback with 1 MiB each way" >&2; fail=1; }
  return $fail
}
