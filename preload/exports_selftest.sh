#!/usr/bin/env bash
# exports_test.sh is itself tested: tiny shared libraries, built here, that
# export one thing the preload library must not (a C++ function, a usmc_*
# name runtime/usmc.h does not declare, a data object named like libc's)
# must each fail it, naming the symbol; one that exports only an interposed
# libc function and a usmc.h function must pass.
#   exports_selftest.sh EXPORTS_TEST_SH USMC_H
set -uo pipefail
check=$1
usmc_h=$2
tmp=$(mktemp -d /tmp/usmc_exports_selftest.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
# case NAME LANG SOURCE EXPECT_RC EXPECT_TEXT
case_() {
  local name=$1 lang=$2 src=$3 want_rc=$4 want=$5 cc=cc
  [ "$lang" = c++ ] && cc=c++
  printf '%s\n' "$src" >"$tmp/$name.src"
  if ! $cc -x "$lang" -shared -fPIC -o "$tmp/$name.so" "$tmp/$name.src" -Wl,--no-as-needed -lc; then
    echo "$name: could not build"; fails=$((fails + 1)); return
  fi
  local out rc
  out=$(bash "$check" "$tmp/$name.so" "$usmc_h" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want_rc" ] || ! grep -qF -- "$want" <<<"$out"; then
    echo "$name: want rc $want_rc and '$want', got rc $rc:"; echo "$out"
    fails=$((fails + 1))
  else
    echo "$name: ok (rc $rc)"
  fi
}
case_ good c 'int close(int fd) { return fd; }
int usmc_close(void* s) { return s != 0; }' 0 "0 unexpected"
case_ cxx c++ 'int Helper(int x) { return x; }' 1 "C++ symbol exported: _Z6Helperi"
case_ usmc_internal c 'int usmc_internal_helper(void) { return 1; }' 1 \
  "exported but neither a libc function nor in usmc.h: usmc_internal_helper"
case_ data c 'char** environ = 0;' 1 "exported non-function (B): environ"
case_ asan_name c 'int __asan_report_load1(void) { return 1; }' 1 \
  "sanitizer symbol in an unsanitized build: __asan_report_load1"
echo "exports_selftest: $fails failed"
[ "$fails" -eq 0 ]
