#!/usr/bin/env bash
# OpenSSH's sshd and ssh with a key (issue 16). sshd runs as root on a
# loopback port with its own config and host key in the test's directory;
# each ssh run downloads and uploads an 8 MiB random file, both checked by
# SHA-256.
#  - plain ssh -> sshd under usmc (offering SMC by a user rule), normal
#    (re-exec) mode and `sshd -r`: TCP with reason PEERNOSMC, the data equal (`sshd -r` under usmc used to
#    reset these: its seccomp-sandboxed pre-auth child was killed when usmc
#    turned its read/write into recv/send);
#  - ssh under usmc -> sshd under usmc: TCP, because sshd's listener does not
#    offer SMC (usmc's built-in `deny server prog sshd` rule): the pre-auth child's
#    seccomp sandbox allows read/write/poll but not the sendto/recvfrom of
#    usmc's SMC-D doorbells, so an SMC-D connection would be killed there
#    (docs/preload.md, "Not covered"). The client falls back with PEERNOSMC.
. "$(dirname "$0")/lib.sh"
app_begin ssh

SSHD=/usr/sbin/sshd  # absolute: sshd re-executes itself
[ -x "$SSHD" ] || { note "FAIL no $SSHD (scripts/install-deps.sh)"; APP_FAILS=1; app_end; }
mkdir -p /run/sshd && chmod 755 /run/sshd  # its privilege separation dir
ssh-keygen -q -t ed25519 -N '' -f "$T/host_key" &&
  ssh-keygen -q -t ed25519 -N '' -f "$T/user_key" &&
  cp "$T/user_key.pub" "$T/authorized_keys" ||
  { note "FAIL ssh-keygen"; APP_FAILS=1; app_end; }
want=$("${CHECK[@]}" blob "$T/blob" --size $((8 << 20)) --seed 16)

sshd_config() {  # sshd_config PORT: a config of its own, key login only
  cat >"$T/sshd_$1.conf" <<CONF
Port $1
ListenAddress 127.0.0.1
HostKey $T/host_key
PidFile $T/sshd_$1.pid
AuthorizedKeysFile $T/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
CONF
}

SSH_OPTS=(-i "$T/user_key" -o BatchMode=yes -o StrictHostKeyChecking=no
  -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
# xfer KIND NAME PORT: one download and one upload, each checked.
xfer() {
  local kind=$1 name=$2 port=$3 got
  run "$kind" "${name}_down" ssh -n "${SSH_OPTS[@]}" -p "$port" root@127.0.0.1 \
    "cat $T/blob" >/dev/null || return 1
  got=$(sha256sum <"$T/${name}_down.out" | cut -d' ' -f1)
  [ "$got" = "$want" ] || { echo "download: sha256 $got, want $want"; return 1; }
  run "$kind" "${name}_up" ssh "${SSH_OPTS[@]}" -p "$port" root@127.0.0.1 \
    sha256sum <"$T/blob" || return 1
  got=$(cut -d' ' -f1 "$T/${name}_up.out")
  [ "$got" = "$want" ] || { echo "upload: sha256 $got, want $want"; return 1; }
}
# The run() helper takes stdin from ours: the upload reads the blob.

# sshd offers SMC here by the user's own rule (usmc's built-in one keeps it
# off): its connections from plain clients then take usmc's plain-TCP path.
echo "allow server prog sshd" >"$T/allow_sshd.conf"
for mode in reexec norexec; do
  port=$(free_port)
  sshd_config "$port"
  flags=()
  [ "$mode" = norexec ] && flags=(-r)
  USMC_CONF="$T/allow_sshd.conf" start usmc "sshd_$mode" "$SSHD" -D -e -f "$T/sshd_$port.conf" "${flags[@]}"
  check "$mode: sshd listens" wait_listen "$port"
  for i in 1 2; do
    check "$mode: plain ssh $i: 8 MiB down and up, SHA-256 equal" \
      xfer plain "plain_${mode}_$i" "$port"
  done
  stop "sshd_$mode" TERM
  check "$mode: sshd: TCP (PEERNOSMC) only, no handshake error" \
    expect_report "sshd_$mode" --expect smcd==0 --expect "tcp>=4" \
    --expect "reason:$PEERNOSMC>=4" --expect handshake_errors==0
done

# Both ends under usmc; sshd's listener does not offer SMC (see above).
port=$(free_port)
sshd_config "$port"
start usmc sshd_both "$SSHD" -D -e -f "$T/sshd_$port.conf"
check "both: sshd listens" wait_listen "$port"
for i in 1 2; do
  check "both: ssh $i under usmc: 8 MiB down and up, SHA-256 equal" \
    xfer usmc "both_$i" "$port"
done
stop sshd_both TERM
cat "$T"/both_*.exit.jsonl >"$T/both_cli.exit.jsonl" 2>/dev/null
check "both: ssh clients: TCP with PEERNOSMC" expect_peernosmc both_cli 4
app_end
