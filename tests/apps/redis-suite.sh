#!/usr/bin/env bash
# Redis's own test suite (Debian's source package for the installed
# redis-server), run against Debian's installed binaries: once plain, once
# with the test server, the test clients and every redis-server/redis-cli
# they start under `usmc run`. Passes when both runs give the same verdict for
# every test (the same tests pass, the same fail), the usmc run's connections
# were SMC-D and none fell back to TCP.
#
# How Debian runs it (debian/rules, override_dh_auto_test): `./runtest
# --clients 1` ("avoid race conditions in upstream testsuite") plus --verbose
# --dump-logs --tls. We do the same against /usr/bin/redis-* (symlinked into
# src/, where runtest looks), without --tls (that needs tcl-tls and
# certificates, and is not what usmc changes). The source is fetched once with
# `apt-get source` (a deb-src entry is added if missing) into
# $USMC_BUILD/apps-cache.
#
# The whole suite takes about 35 minutes here per run, so the default is a
# subset (DEFAULT_TESTS below, ~3 minutes); USMC_REDIS_SUITE=full runs all.
# USMC_REDIS_SUITE="unit/foo unit/bar" runs those.
. "$(dirname "$0")/lib.sh"
app_begin redis-suite

# Chosen for network behaviour (request/reply, pipelining, big replies,
# blocking commands, pub/sub, MULTI, client limits and kills, replication
# between two servers, DEBUG RELOAD/restarts) at a modest run time, and
# because they pass plain on this machine every time (no timing-sensitive
# tests such as latency-monitor or the oom/defrag ones).
DEFAULT_TESTS=(
  unit/printver unit/protocol unit/keyspace unit/auth unit/quit unit/info-command
  unit/type/string unit/type/incr unit/type/list unit/type/hash unit/type/set
  unit/pubsub unit/multi unit/introspection unit/limits unit/querybuf
  integration/replication-2 integration/redis-cli
)

cache=$USMC_BUILD/apps-cache
version=$(dpkg-query -W -f='${Version}' redis-server 2>/dev/null)
if [ -z "$version" ]; then
  note "FAIL redis-server is not installed (scripts/install-deps.sh)"
  APP_FAILS=1
  app_end
fi
upstream=${version#*:}
upstream=${upstream%%-*}
src=$cache/redis-$upstream

fetch_source() {
  mkdir -p "$cache" || return 1
  if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # The same mirrors as the binary entries; Debian 12 uses deb822 files.
    cat >/etc/apt/sources.list.d/usmc-deb-src.sources <<'EOF' || return 1
# Added by usmc tests/apps/redis-suite.sh: source packages (apt-get source redis).
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  apt-get update -qq || return 1
  # The exact version of the installed binaries: their tests.
  (cd "$cache" && apt-get source -qq "redis=$version") >"$cache/fetch.log" 2>&1
}

if [ ! -x "$src/runtest" ]; then
  check "apt-get source redis=$version" fetch_source
  [ -x "$src/runtest" ] || app_end
fi
for b in redis-server redis-cli redis-benchmark redis-check-aof redis-check-rdb; do
  ln -sfn "/usr/bin/$b" "$src/src/$b"
done

case "${USMC_REDIS_SUITE:-}" in
  "") tests=("${DEFAULT_TESTS[@]}") ;;
  full) tests=() ;;
  *) read -ra tests <<<"$USMC_REDIS_SUITE" ;;
esac
args=(--clients 1 --dump-logs --timeout 300)
APP_TIMEOUT=${USMC_REDIS_SUITE_TIMEOUT:-1500}  # per run of ./runtest
for t in "${tests[@]}"; do args+=(--single "$t"); done
note "runtest ${args[*]}"

# runtest KIND NAME: one run; the verdict per test in $T/NAME.verdicts.
runtest() {
  local kind=$1 name=$2 rc
  rm -rf "$src/tests/tmp"/* 2>/dev/null
  (cd "$src" && run "$kind" "$name" ./runtest "${args[@]}")
  rc=$?
  "$PY" - "$T/$name.out" >"$T/$name.verdicts" <<'PY'
import re, sys
ansi = re.compile(r"\x1b\[[0-9;]*m")
for line in open(sys.argv[1], errors="replace"):
    line = ansi.sub("", line.rstrip("\n"))
    m = re.match(r"^\[(ok|err|exception|skip|ignore|timeout)\]: (.*)$", line)
    if m:
        name = re.sub(r" \(\d+ ms\)$", "", m.group(2))
        name = re.sub(r" in tests/\S+$", "", name)
        print(f"{m.group(1)}\t{name}")
PY
  note "$name: runtest exit $rc, $(grep -c '^ok' "$T/$name.verdicts") ok," \
    "$(grep -vc '^ok' "$T/$name.verdicts") other, $(($(date +%s) - t0)) s"
  return 0
}

t0=$(date +%s)
runtest plain plain
t0=$(date +%s)
runtest usmc usmc
check "plain run: tests ran" test -s "$T/plain.verdicts"
check "usmc run: the same verdict for every test as the plain run" \
  diff <(sort "$T/plain.verdicts") <(sort "$T/usmc.verdicts")
# The default subset passes plain here; a full run may have tests that fail
# on this machine without usmc too (the diff above is the criterion then).
if [ -z "${USMC_REDIS_SUITE:-}" ]; then
  check "plain run: every test of the subset passed" \
    bash -c "! grep -v -P '^(ok|skip|ignore)\t' '$T/plain.verdicts'"
fi
check "usmc run: SMC-D connections, none fell back to TCP" \
  expect_report usmc --expect "smcd>=100" --expect tcp==0 --expect reasons==0
if [ "$APPS_MODE" = usmc ]; then
  "${CHECK[@]}" report "$T/usmc.exit.jsonl" --print 2>/dev/null | sed 's/^/  usmc run total: /'
fi
app_end
