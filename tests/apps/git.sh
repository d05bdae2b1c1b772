#!/usr/bin/env bash
# git daemon + git clone over git://, both under `usmc run` (issue 16): the
# daemon forks a child per connection that puts the socket on fds 0/1,
# closes every other fd and execs `git daemon --serve`, which runs
# upload-pack; the connection must reach the served process as SMC-D.
# A bare repository with random files (up to 4 MiB) is cloned 4 times (2 of
# them at once); each clone's HEAD and files must equal the origin's.
# Checks: every clone SMC-D, no TCP or fallback on either side, the bytes
# the daemon's processes sent equal what the clients received.
. "$(dirname "$0")/lib.sh"
app_begin git

G=(git -c init.defaultBranch=main -c user.name=usmc -c user.email=usmc@localhost)
mkdir -p "$T/work" "$T/repos"
(
  cd "$T/work" && "${G[@]}" init -q . &&
    "$PY" -c 'import random,sys
for name, size, seed in (("a.bin", 4 << 20, 1), ("b.bin", 1 << 20, 2), ("c.txt", 3000, 3)):
    open(name, "wb").write(random.Random(seed).randbytes(size))' &&
    "${G[@]}" add . && "${G[@]}" commit -qm one &&
    "${G[@]}" clone -q --bare . "$T/repos/proj.git"
) || { note "FAIL making the repository"; APP_FAILS=1; app_end; }
head=$(git -C "$T/work" rev-parse HEAD)
sums=$(cd "$T/work" && sha256sum a.bin b.bin c.txt)

port=$(free_port)
start usmc daemon git daemon --reuseaddr --export-all --base-path="$T/repos" \
  --listen=127.0.0.1 --port="$port" "$T/repos"
check "daemon listens" wait_listen "$port"

clone_ok() {  # clone_ok N: clone N has the origin's HEAD and files
  [ "$(git -C "$T/clone$1" rev-parse HEAD)" = "$head" ] &&
    [ "$(cd "$T/clone$1" && sha256sum a.bin b.bin c.txt)" = "$sums" ]
}
for i in 1 2; do
  check "clone $i: complete" run usmc "clone$i" git clone -q \
    "git://127.0.0.1:$port/proj.git" "$T/clone$i"
  check "clone $i: HEAD and files equal" clone_ok "$i"
done
start usmc clone3 git clone -q "git://127.0.0.1:$port/proj.git" "$T/clone3"
start usmc clone4 git clone -q "git://127.0.0.1:$port/proj.git" "$T/clone4"
check "clones 3, 4 (at once): complete" eval 'finish clone3 && finish clone4'
for i in 3 4; do check "clone $i: HEAD and files equal" clone_ok "$i"; done

# The daemon's main process accepts each connection and forks its server;
# its progress thread may finish a handshake before the fork (on a busy
# machine), and then that process counts the connection. It ends by SIGTERM,
# without an exit report: its counters are read from its status file first.
if [ "$APPS_MODE" = usmc ]; then
  dpid=$(pgrep -f -- "git-daemon --reuseaddr --export-all --base-path=$T/repos")
  check "daemon's main process: counters" eval \
    '"${CHECK[@]}" stats-report --usmc "$USMC" --pid "$dpid" >>"$T/daemon.exit.jsonl"'
fi
stop daemon TERM
cat "$T"/clone[1-4].exit.jsonl >"$T/clones.exit.jsonl" 2>/dev/null
check "clients: 4 connections, all SMC-D" \
  expect_report clones --min-lines 4 --expect smcd==4 --expect tcp==0 \
  --expect reasons==0 --expect handshake_errors==0
check "daemon processes: SMC-D, no TCP, no fallback" \
  expect_report daemon --expect smcd==4 --expect tcp==0 --expect reasons==0 \
  --expect handshake_errors==0
check "daemon bytes = clients' bytes" \
  expect_bytes_match clones daemon --min-bytes 1
app_end
