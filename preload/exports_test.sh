#!/usr/bin/env bash
# The preload library's dynamic symbol table holds only what it interposes
# (functions libc also defines) and its public C API (usmc_*): no C++
# symbol, which could interpose the application's own (exports.map).
#   exports_test.sh LIB
set -uo pipefail
lib=$1
libc=$(ldd "$lib" | awk '/libc\.so/ {print $3}')
[ -n "$libc" ] || { echo "no libc in ldd $lib"; exit 1; }
defined=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//')
[ -n "$defined" ] || { echo "nm found no symbol in $lib"; exit 1; }
libc_syms=$(nm -D --defined-only "$libc" | awk '{print $3}' | sed 's/@.*//' | sort -u)
bad=0
for s in $defined; do
  case $s in
    usmc_*) continue ;;
    __asan*|__odr_asan*|__ubsan*|__sanitizer*|__sancov*) continue ;;  # sanitizer builds
  esac
  if ! grep -qxF -- "$s" <<<"$libc_syms"; then
    echo "exported but neither a libc function nor usmc_*: $s"
    bad=$((bad + 1))
  fi
done
echo "$(wc -w <<<"$defined") exported symbols, $bad unexpected"
[ "$bad" -eq 0 ]
