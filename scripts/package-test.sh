#!/usr/bin/env bash
# The Debian package end to end (issue 22; .ci/run runs it after the suite):
#   1. scripts/package.sh builds the .deb (lintian checked there);
#   2. `cmake --install` into a staging tree holds no build-tree path;
#   3. dpkg -i; man usmc / usmc.conf render without warnings; each
#      `usmc SUB --help` and usmc-SUB(1) name the same options; bash
#      completion completes subcommands and options; usmc.service enabled;
#   4. usmc.service's own ExecStart, run in a private cgroup2 + bpffs view
#      (so this machine's root cgroup is never touched), attaches the program
#      and `usmc setup --status` names the unit; two python3 programs under
#      the installed `usmc run` talk over SMC-D (their exit reports); the
#      unit's ExecStop detaches it;
#   5. dpkg --purge: every file dpkg -L listed is gone, every directory that
#      existed before is still there, and /etc, /usr, /lib, /var/lib/systemd
#      hold exactly what they held before.
# Refuses to run if a usmc package is already installed (leaves the machine
# as it found it). Needs root. Ends with "usmc package test: ok".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
b=${1:-build-pkg}
T=$(mktemp -d /tmp/usmc-pkgtest-XXXXXX)
fail() { echo "usmc package test: FAILED: $*" >&2; exit 1; }

if dpkg-query -W -f='${Status}' usmc 2> /dev/null | grep -q installed; then
  fail "a usmc package is already installed; not touching it"
fi
scripts/package.sh "$b"
deb=$(ls "$b"/usmc_*.deb)

echo "=== staged install: no build-tree path in any installed file"
# Stripped, as cpack installs it (CPACK_STRIP_FILES).
DESTDIR=$T/stage cmake --install "$b" --strip > /dev/null
if grep -rlF -e "$root" -e "$(realpath "$b")" "$T/stage"; then
  fail "the files above name the build tree"
fi
find "$T/stage" -type f | sed "s|^$T/stage||" | sort > "$T/staged.txt"

snapshot() {  # everything under the directories a package touches
  find -H /etc /usr /lib /var/lib/systemd -xdev 2> /dev/null | sort
}
snapshot > "$T/before.txt"
# The package's paths that exist already (directories shared with others).
dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's|^\./|/|; s|/$||' | grep -v '^\.\?$' |
  while read -r f; do [ -e "$f" ] && echo "$f"; done | sort > "$T/preexisting.txt" || true

echo "=== install $deb"
dpkg -i "$deb" > "$T/dpkg-i.log" 2>&1 || { cat "$T/dpkg-i.log"; fail "dpkg -i"; }
trap 'dpkg --purge usmc > /dev/null 2>&1 || true' EXIT
dpkg -L usmc | sort > "$T/listed.txt"
for f in $(cat "$T/staged.txt"); do
  # cmake --install and the package agree (the unit: /lib via usrmerge).
  grep -qxF "$f" "$T/listed.txt" || fail "$f staged but not in the package"
done
[ "$(command -v usmc)" = /usr/bin/usmc ] || fail "usmc not on PATH as /usr/bin/usmc"
lib=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/usmc
[ -f "$lib/libusmc-preload.so" ] && [ -f "$lib/usmc_negotiate.bpf.o" ] || fail "$lib incomplete"
[ -f /usr/include/usmc/usmc.h ] || fail "C API header missing"

echo "=== man pages render, and say what --help says"
for page in usmc usmc.conf; do
  out=$(MANWIDTH=80 man --warnings "$page" 2>&1 > /dev/null) || fail "man $page"
  [ -z "$out" ] || fail "man $page warns: $out"
  # Captured first: `man | grep -q` can SIGPIPE man, which pipefail counts.
  text=$(MANWIDTH=80 man "$page") || fail "man $page"
  [ -n "$text" ] || fail "man $page is empty"
done
subs=$(usmc --help | awk '/^Subcommands:/{s=1;next} s&&/^  [a-z]/{print $1}')
[ -n "$subs" ] || fail "usmc --help lists no subcommands"
for sub in $subs; do
  usmc "$sub" --help > "$T/help-$sub.txt"
  python3 packaging/gen_docs.py --options-of-help "$T/help-$sub.txt" > "$T/help-$sub.opts"
  # The OPTIONS section of the rendered page.
  MANWIDTH=200 man "usmc-$sub" 2> /dev/null | col -b |
    awk '/^OPTIONS/{s=1;next} /^[A-Z]/{s=0} s' > "$T/man-$sub.txt"
  python3 packaging/gen_docs.py --options-of-text "$T/man-$sub.txt" > "$T/man-$sub.opts"
  diff -u "$T/help-$sub.opts" "$T/man-$sub.opts" ||
    fail "usmc $sub --help and usmc-$sub(1) name different options"
  out=$(MANWIDTH=80 man --warnings "usmc-$sub" 2>&1 > /dev/null)
  [ -z "$out" ] || fail "man usmc-$sub warns: $out"
done

echo "=== bash completion"
complete_words() {  # complete_words WORD...: what <TAB> offers after them
  bash -c '. /usr/share/bash-completion/bash_completion 2> /dev/null || true
           . /usr/share/bash-completion/completions/usmc
           COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _usmc; echo "${COMPREPLY[*]}"' _ "$@"
}
[ "$(complete_words usmc se)" = setup ] || fail "usmc se<TAB>: $(complete_words usmc se)"
[ "$(complete_words usmc setup --st)" = --status ] || fail "usmc setup --st<TAB>"
words=$(complete_words usmc run pyth)
grep -qw python3 <<<"$words" || fail "usmc run pyth<TAB>"

echo "=== usmc.service: enabled; its ExecStart/ExecStop in a private cgroup2 view"
unit=$(ls /lib/systemd/system/usmc.service /usr/lib/systemd/system/usmc.service 2> /dev/null | head -1)
[ -n "$unit" ] || fail "usmc.service not installed"
[ -L /etc/systemd/system/multi-user.target.wants/usmc.service ] ||
  fail "usmc.service not enabled"
start=$(sed -n 's/^ExecStart=//p' "$unit")
stop=$(sed -n 's/^ExecStop=//p' "$unit")
envs=$(sed -n 's/^Environment=//p' "$unit")
cg=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/self/mounts)
[ -n "$cg" ] || fail "no cgroup2 mount"
mkdir "$cg/usmc-pkgtest-$$"
cat > "$T/inside.sh" << EOF
set -euo pipefail
# This namespace's cgroup2 root is $cg/usmc-pkgtest-$$; a fresh bpffs.
umount -l "$cg"; mount -t cgroup2 cgroup2 "$cg"; mount -t bpf bpf /sys/fs/bpf
env $envs $start
/usr/bin/usmc setup --status > "$T/status.txt"
grep -q "by:     usmc.service" "$T/status.txt"
port=\$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
USMC_EXIT_REPORT=$T/srv.jsonl /usr/bin/usmc run python3 $root/tests/apps/check.py aio-server --port \$port --conns 2 &
srv=\$!
for i in \$(seq 100); do ss -Hltn "sport = :\$port" | grep -q . && break; sleep 0.1; done
USMC_EXIT_REPORT=$T/cli.jsonl /usr/bin/usmc run python3 $root/tests/apps/check.py aio-client --port \$port --conns 2 --size 1048576
wait \$srv
$stop
if /usr/bin/usmc setup --status > /dev/null; then exit 1; fi
EOF
rc=0
echo $$ > /dev/null
(echo $BASHPID > "$cg/usmc-pkgtest-$$/cgroup.procs" &&
  exec unshare --mount --cgroup --propagation private bash "$T/inside.sh") || rc=$?
rmdir "$cg/usmc-pkgtest-$$" 2> /dev/null || true
cat "$T/status.txt" 2> /dev/null | sed 's/^/  /'
[ "$rc" -eq 0 ] || fail "the unit's commands or the SMC-D run (rc $rc)"
for side in srv cli; do
  python3 - "$T/$side.jsonl" << 'EOF' || fail "$side: not SMC-D"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
r = {k: sum(x[k] for x in lines) for k in ("smcd", "tcp")}
print(f"  {sys.argv[1].rsplit('/',1)[1]}: smcd={r['smcd']} tcp={r['tcp']}")
sys.exit(0 if r["smcd"] == 2 and r["tcp"] == 0 else 1)
EOF
done

echo "=== remove, purge: nothing left"
dpkg --remove usmc > /dev/null
dpkg --purge usmc > /dev/null
trap - EXIT
snapshot > "$T/after.txt"
while read -r f; do
  if grep -qxF "$f" "$T/preexisting.txt"; then
    [ -e "$f" ] || fail "$f existed before the install and is gone"
  else
    [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f (from dpkg -L) is left"
  fi
done < "$T/listed.txt"
if ! diff -u "$T/before.txt" "$T/after.txt"; then
  fail "the filesystem differs from before the install (above)"
fi
rm -rf "$T"
echo "usmc package test: ok"
