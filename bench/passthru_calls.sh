#!/bin/bash
# bench/passthru_calls.sh: what usmc adds to each call on a connection that
# stays plain TCP, in instructions (callgrind), not time: the count does not
# move with the machine's load.
#
#   bench/passthru_calls.sh [--build DIR] [--rounds N] [--roles client,server]
#
# For each role (client: usmc connects to a plain echo peer; server: a plain
# peer connects to usmc), runs bench/passthru_calls under callgrind plain and
# with libusmc-preload, at N/10 and N rounds, and prints the instructions
# per call of each call the app made (inclusive: the wrapper and the C
# library's call under it; the system call's kernel side is not counted),
# the difference of the two runs divided by the difference of the calls, so
# that start-up and connection setup drop out. Needs valgrind.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build-dev
rounds=20000
roles=client,server
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --roles) roles=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--rounds N] [--roles client,server]" >&2; exit 2 ;;
  esac
done
prog=$build/bench/passthru_calls
lib=$build/preload/libusmc-preload.so
command -v valgrind >/dev/null || { echo "valgrind not installed" >&2; exit 1; }
[[ -x $prog && -f $lib ]] || { echo "build passthru_calls and usmc_preload in $build" >&2; exit 1; }
work=$(mktemp -d /tmp/usmc-passthru.XXXXXX)
trap 'rm -rf "$work"' EXIT

# run ROLE MODE N -> $work/ROLE-MODE-N.{out,cg}
run() {
  local role=$1 mode=$2 n=$3 tag=$work/$1-$2-$3
  local pf=$tag.port peer
  rm -f "$pf"
  if [[ $role == client ]]; then peer=echo-listen; else peer=echo-connect; fi
  timeout 600 "$prog" "$peer" "$pf" &
  local pid=$!
  local pre=()
  [[ $mode == usmc ]] && pre=(env "LD_PRELOAD=$lib" "USMC_STATUS_DIR=$work/status")
  "${pre[@]}" timeout 600 valgrind --tool=callgrind --callgrind-out-file="$tag.cg" \
    "$prog" "$role" "$pf" "$n" >"$tag.out" 2>"$tag.err"
  wait "$pid"
}

for role in ${roles//,/ }; do
  for mode in plain usmc; do
    run "$role" "$mode" $((rounds / 10))
    run "$role" "$mode" "$rounds"
  done
done

python3 - "$work" "$rounds" "$roles" <<'EOF'
import re, subprocess, sys
work, rounds, roles = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(',')
calls = ['send', 'sendmsg', 'writev', 'recv', 'readv', 'read', 'epoll_wait']

def counts(tag):
    f = open(f'{work}/{tag}.out').read().split()
    return {f[i]: int(f[i + 1]) for i in range(0, len(f), 2)}

def inclusive(tag, usmc):
    """Ir of the app's calls of each function, inclusive (what the call
    site in bench/passthru_calls.cc costs: the wrapper, if any, and the C
    library under it), from the callgrind file; and the program total."""
    names, got, total = {}, {}, 0
    fn = cfn = None
    pending = False

    def name(v):
        m = re.match(r'\((\d+)\)(?: (.*))?', v)
        if not m:
            return v
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), '?')

    for line in open(f'{work}/{tag}.cg'):
        line = line.rstrip('\n')
        if line.startswith('fn='):
            fn = name(line[3:])
        elif line.startswith('cfn='):
            cfn = name(line[4:])
        elif line.startswith('calls='):
            pending = True
        elif line.startswith('summary:') or line.startswith('totals:'):
            total = int(line.split()[1])
        elif pending and line and (line[0].isdigit() or line[0] in '+-*'):
            pending = False
            callee = re.sub(r'@.*', '', cfn or '')
            if fn and 'passthru_calls' not in (fn or '') and 'Rounds' in fn \
                    and callee in calls:
                got[callee] = got.get(callee, 0) + int(line.split()[-1])
    return got, total

print(f'instructions per call (callgrind, {rounds // 10} -> {rounds} rounds)')
print(f'{"role":8} {"call":12} {"plain":>8} {"usmc":>8} {"added":>8}')
for role in roles:
    res = {}
    for mode in ('plain', 'usmc'):
        lo, hi = f'{role}-{mode}-{rounds // 10}', f'{role}-{mode}-{rounds}'
        clo, chi = counts(lo), counts(hi)
        (ilo, tlo), (ihi, thi) = inclusive(lo, mode == 'usmc'), inclusive(hi, mode == 'usmc')
        per = {c: (ihi.get(c, 0) - ilo.get(c, 0)) / max(chi[c] - clo[c], 1) for c in calls}
        per['round'] = (thi - tlo) / (chi['rounds'] - clo['rounds'])
        res[mode] = per
    for c in calls + ['round']:
        p, u = res['plain'][c], res['usmc'][c]
        print(f'{role:8} {c:12} {p:8.0f} {u:8.0f} {u - p:+8.0f}')
EOF
