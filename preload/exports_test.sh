#!/usr/bin/env bash
# The preload library's dynamic symbol table (nm -D --defined-only) holds
# only C functions it interposes and its public C API (exports.map):
#   - no C++ symbol (_Z...), which could interpose the application's own;
#   - every other name is a function that libc also defines as a function
#     (so this library interposes it), or a function declared in the public
#     C header runtime/usmc.h;
#   - sanitizer ODR indicators only in a sanitized build.
#   exports_test.sh LIB USMC_H
set -uo pipefail
lib=$1
usmc_h=$2
libc=$(ldd "$lib" | awk '/libc\.so/ {print $3}')
[ -n "$libc" ] || { echo "no libc in ldd $lib"; exit 1; }
# "TYPE NAME" per defined dynamic symbol, version suffix dropped.
syms() { nm -D --defined-only "$1" | awk 'NF == 3 {print $2, $3}' | sed 's/@.*//'; }
defined=$(syms "$lib")
[ -n "$defined" ] || { echo "nm found no symbol in $lib"; exit 1; }
# Functions: T (text), W (weak), i (GNU indirect function).
libc_funcs=$(syms "$libc" | awk '$1 ~ /^[TWi]$/ {print $2}' | sort -u)
# The public C API: the usmc_* functions usmc.h declares (comments stripped
# by the preprocessor, so a name mentioned in a comment does not count).
api=$(cc -E -P -x c "$usmc_h" | grep -oE '\busmc_[a-z0-9_]+[[:space:]]*\(' |
      sed 's/[[:space:]]*($//' | sort -u)
[ -n "$api" ] || { echo "no usmc_* function found in $usmc_h"; exit 1; }
sanitized=0
# Not `nm | grep -q`: grep quits at the first match, nm may then die of
# SIGPIPE, and pipefail turns the match into a failure (seen under load).
undefined=$(nm -D --undefined-only "$lib")
grep -qE ' (__asan_init|__ubsan_handle_)' <<<"$undefined" && sanitized=1
bad=0
n=0
while read -r type s; do
  n=$((n + 1))
  case $s in
    _Z*)
      echo "C++ symbol exported: $s ($(c++filt "$s"))"
      bad=$((bad + 1)); continue ;;
    __asan*|__odr_asan*|__ubsan*|__sanitizer*|__sancov*)
      if [ "$sanitized" -eq 1 ]; then continue; fi
      echo "sanitizer symbol in an unsanitized build: $s"
      bad=$((bad + 1)); continue ;;
  esac
  if [[ ! $type =~ ^[TWi]$ ]]; then
    echo "exported non-function ($type): $s"
    bad=$((bad + 1))
  elif grep -qxF -- "$s" <<<"$api"; then
    continue
  elif ! grep -qxF -- "$s" <<<"$libc_funcs"; then
    echo "exported but neither a libc function nor in $(basename "$usmc_h"): $s"
    bad=$((bad + 1))
  fi
done <<<"$defined"
echo "$n exported symbols, $bad unexpected"
[ "$bad" -eq 0 ]
