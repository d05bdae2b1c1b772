# tests/apps/lib.sh: shared helpers for the real-program tests (tests/apps/*.sh).
# Sourced, not run. Each test starts real programs under `usmc run` (or plain),
# checks their data with its own means (checksums, values read back) and
# checks through usmc's status output (USMC_EXIT_REPORT lines, `usmc ss
# --json`) that the connections were SMC-D, or TCP with the expected reason.
#
#   . "$(dirname "$0")/lib.sh"
#   app_begin sockperf                  # work dir $T, cleanup trap, eBPF setup
#   port=$(free_port)
#   start usmc srv sockperf sr --tcp -i 127.0.0.1 -p "$port"
#   wait_listen "$port"
#   check "ping-pong runs" run usmc cli sockperf pp --tcp -i 127.0.0.1 -p "$port" -t 1
#   expect_report cli --expect smcd==1 --expect tcp==0
#   app_end                             # "PASS sockperf" / "FAIL sockperf", exit status
#
# Environment:
#   USMC_APPS_MODE=usmc (default) | tcp   tcp: every program runs plain and only
#                                         the data checks run (the baseline)
#   USMC_BUILD (default <repo>/build)     where tools/usmc is
#   USMC_APP_TIMEOUT (default 120)        seconds any one program may run
set -uo pipefail

APPS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$APPS_DIR/../.." && pwd)
USMC_BUILD=${USMC_BUILD:-$ROOT/build}
USMC=${USMC:-$USMC_BUILD/tools/usmc}
APPS_MODE=${USMC_APPS_MODE:-usmc}
APP_TIMEOUT=${USMC_APP_TIMEOUT:-120}
# Debian's python, not a pyenv shim (a shell script would run under usmc too).
PY=/usr/bin/python3
CHECK=("$PY" "$APPS_DIR/check.py")
PEERNOSMC=0x03010000  # wire/reason.h kReasonPeerNoSmc

APP_NAME=""
APP_FAILS=0
APP_PIDS=()

note() { echo "  $*"; }

# check DESC CMD...: runs CMD; a non-zero exit fails the test (it goes on, so
# one run reports every broken check); 77 means skipped (a usmc-only check in
# tcp mode).
check() {
  local desc=$1; shift
  "$@" >"$T/check.log" 2>&1  # no subshell: start/finish keep their pids
  local rc=$?
  if [ $rc -eq 0 ]; then
    note "ok   $desc"
  elif [ $rc -eq 77 ]; then
    note "skip $desc (tcp mode)"
  else
    note "FAIL $desc"
    sed 's/^/         /' "$T/check.log" | tail -n 20
    APP_FAILS=$((APP_FAILS + 1))
  fi
}

# The command prefix for KIND into PREFIX: usmc (under `usmc run`, unless tcp
# mode) or plain.
prefix_for() {
  PREFIX=()
  if [ "$1" = usmc ] && [ "$APPS_MODE" = usmc ]; then
    PREFIX=("$USMC" run --)
  fi
}

# run KIND NAME CMD...: runs CMD in the foreground with a timeout; output in
# $T/NAME.out and .err, exit report lines in $T/NAME.exit.jsonl. setsid: each
# program gets its own process group, which cleanup kills (forked children
# included); --foreground: timeout passes a signal on to the program once
# (without it the program gets it twice: directly and through the group).
run() {
  local kind=$1 name=$2; shift 2
  prefix_for "$kind"
  USMC_EXIT_REPORT="$T/$name.exit.jsonl" \
    setsid timeout --foreground -k 5 "$APP_TIMEOUT" "${PREFIX[@]}" "$@" \
    >"$T/$name.out" 2>"$T/$name.err"
  local rc=$?
  [ $rc -eq 0 ] || note "$name exited $rc: $(tail -c 400 "$T/$name.err" | tr '\n' ' ')"
  return $rc
}

# start KIND NAME CMD...: as run, in the background; the pid (of the timeout
# wrapper, which forwards signals; also the process group id) is in PID_NAME.
start() {
  local kind=$1 name=$2; shift 2
  prefix_for "$kind"
  USMC_EXIT_REPORT="$T/$name.exit.jsonl" \
    setsid timeout --foreground -k 5 "$APP_TIMEOUT" "${PREFIX[@]}" "$@" \
    >"$T/$name.out" 2>"$T/$name.err" &
  local pid=$!
  APP_PIDS+=("$pid")
  printf -v "PID_$name" %s "$pid"
}

# finish NAME: waits for a started program; its exit status.
finish() {
  local var="PID_$1" rc
  wait "${!var}"
  rc=$?
  [ $rc -eq 0 ] || note "$1 exited $rc: $(tail -c 400 "$T/$1.err" | tr '\n' ' ')"
  return $rc
}

# stop NAME [SIGNAL]: asks a started server to exit (default SIGINT), waits.
stop() {
  local var="PID_$1"
  kill -"${2:-INT}" "${!var}" 2>/dev/null
  finish "$1"
}

# same_sha FILE SHA: FILE exists and its SHA-256 is SHA.
same_sha() {
  [ -f "$1" ] || { echo "no $1"; return 1; }
  [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

free_port() { "${CHECK[@]}" free-port "$@"; }
wait_listen() { "${CHECK[@]}" wait-listen --port "$1"; }

# expect_report NAME ARGS...: asserts on NAME's exit report lines (check.py
# report); usmc mode only.
expect_report() {
  local name=$1; shift
  [ "$APPS_MODE" = usmc ] || return 77
  "${CHECK[@]}" report "$T/$name.exit.jsonl" "$@"
}

# expect_smcd NAME [MIN]: every connection of NAME was SMC-D, at least MIN.
expect_smcd() {
  expect_report "$1" --expect "smcd>=${2:-1}" --expect tcp==0 --expect reasons==0 \
    --expect handshake_errors==0
}

# expect_peernosmc NAME N: NAME had N connections, all TCP for PEERNOSMC.
expect_peernosmc() {
  expect_report "$1" --expect smcd==0 --expect "tcp==$2" \
    --expect "reason:$PEERNOSMC==$2" --expect "reasons==$2"
}

# expect_bytes_match CLIENT SERVER: what one side sent the other received.
expect_bytes_match() {
  [ "$APPS_MODE" = usmc ] || return 77
  "${CHECK[@]}" bytes-match --client "$T/$1.exit.jsonl" --server "$T/$2.exit.jsonl" \
    "${@:3}"
}

# expect_ss ARGS...: `usmc ss --json` of the running programs (check.py ss).
expect_ss() {
  [ "$APPS_MODE" = usmc ] || return 77
  "${CHECK[@]}" ss --usmc "$USMC" "$@"
}

# stage_usmc_for_others: a copy of usmc and its preload library that every
# user can read and run, in $T/usmc (the build tree may sit in a directory
# only root can enter, such as /root), for programs that run as a service
# user from the start. Its path in USMC_SHARED.
stage_usmc_for_others() {
  chmod 0711 "$T"
  mkdir -p "$T/usmc/tools" "$T/usmc/preload"
  install -m 0755 "$USMC" "$T/usmc/tools/usmc"
  install -m 0755 "$(dirname "$USMC")/../preload/libusmc-preload.so" "$T/usmc/preload/"
  USMC_SHARED=$T/usmc/tools/usmc
}

# as_user_prefix USER KIND NAME: sets AS_USER, a prefix for `start plain
# NAME`/`run plain NAME` that runs the command as USER under the staged usmc
# (KIND usmc) or plain, with a status directory of USER's own (usmc ss reads
# every user's as root). NAME's exit report file is made writable for USER.
as_user_prefix() {
  local user=$1 kind=$2 name=$3
  install -m 0666 /dev/null "$T/$name.exit.jsonl"
  [ -d "$T/status-$user" ] || install -d -o "$user" -m 0700 "$T/status-$user"
  # setpriv execs the command (runuser would stay as its parent and turn a
  # signal into its own exit status).
  AS_USER=(setpriv "--reuid=$user" "--regid=$user" --init-groups --
    env "USMC_STATUS_DIR=$T/status-$user")
  if [ "$kind" = usmc ] && [ "$APPS_MODE" = usmc ]; then
    AS_USER+=("$USMC_SHARED" run --)
  fi
}

# --- the negotiation program, scoped to a private cgroup ----------------------
# Attaching to the cgroup2 root would touch every process on the host (and
# breaks the negotiation tests), so the apps run in their own child cgroup.
negotiation_up() {
  [ "$APPS_MODE" = usmc ] || return 0
  [ -n "${USMC_APPS_CGROUP:-}" ] && return 0  # scripts/apps.sh did it
  if [ ! -x "$USMC" ]; then
    echo "no usmc binary at $USMC (build first: scripts/build.sh)" >&2
    return 1
  fi
  local root own
  root=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
  [ -n "$root" ] || { echo "no cgroup2 mount" >&2; return 1; }
  own=$(sed -n 's/^0:://p' /proc/self/cgroup)
  APPS_CG_ORIG=$root${own%/}
  APPS_CG_ORIG=${APPS_CG_ORIG:-$root}
  USMC_APPS_CGROUP=$root/usmc-apps-$$
  USMC_APPS_PIN=/sys/fs/bpf/usmc-apps-$$
  mkdir -p "$USMC_APPS_CGROUP" || return 1
  APPS_CG_OWNER=1
  "$USMC" setup --cgroup "$USMC_APPS_CGROUP" --pin-dir "$USMC_APPS_PIN" >/dev/null ||
    return 1
  echo "$BASHPID" >"$USMC_APPS_CGROUP/cgroup.procs" || return 1
  export USMC_APPS_CGROUP USMC_APPS_PIN
}

negotiation_down() {
  [ "${APPS_CG_OWNER:-0}" = 1 ] || return 0
  APPS_CG_OWNER=0
  echo "$BASHPID" >"$APPS_CG_ORIG/cgroup.procs" 2>/dev/null
  # Nothing may outlive the suite inside the cgroup.
  [ -e "$USMC_APPS_CGROUP/cgroup.kill" ] && echo 1 >"$USMC_APPS_CGROUP/cgroup.kill"
  "$USMC" setup --remove --pin-dir "$USMC_APPS_PIN" >/dev/null
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    rmdir "$USMC_APPS_CGROUP" 2>/dev/null && break
    sleep 0.2
  done
  unset USMC_APPS_CGROUP USMC_APPS_PIN
}

# --- test frame ---------------------------------------------------------------
app_cleanup() {
  # A forked subshell that has not exec'd yet inherits this trap: only the
  # test's own shell cleans up.
  [ "$BASHPID" = "$APP_SHELL" ] || return 0
  local pid
  for pid in "${APP_PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
  sleep 0.2
  for pid in "${APP_PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
  wait 2>/dev/null
  negotiation_down
  cd / || true
  if [ "$APP_FAILS" -eq 0 ] && [ -z "${USMC_APPS_KEEP:-}" ]; then
    rm -rf "$T"
  else
    echo "  (logs kept in $T)"
  fi
}

app_begin() {
  APP_NAME=$1
  T=$(mktemp -d "/tmp/usmc-apps-$APP_NAME.XXXXXX")
  mkdir -m 0700 "$T/status"
  # A crash leaves its core next to the logs (core_pattern "core": the cwd).
  cd "$T" || exit 1
  ulimit -c unlimited 2>/dev/null
  export USMC_STATUS_DIR="$T/status"
  APP_SHELL=$BASHPID
  trap app_cleanup EXIT
  trap 'exit 130' INT TERM
  echo "--- $APP_NAME ($APPS_MODE)"
  if ! negotiation_up; then
    note "FAIL setting up the negotiation program"
    APP_FAILS=1
    exit 1
  fi
}

app_end() {
  if [ "$APP_FAILS" -eq 0 ]; then
    echo "PASS $APP_NAME"
    exit 0
  fi
  echo "FAIL $APP_NAME ($APP_FAILS check(s))"
  exit 1
}
