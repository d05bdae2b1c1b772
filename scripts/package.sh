#!/usr/bin/env bash
# Builds the Debian package: build-pkg/usmc_VERSION_ARCH.deb (CPack DEB,
# packaging/cpack.cmake), then checks it with lintian (tags that remain are
# explained in docs/packaging.md and listed in packaging/lintian-expected).
#   scripts/package.sh [BUILD_DIR]      (default build-pkg)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
b=${1:-build-pkg}

# Debian's build flags (hardening, -ffile-prefix-map so no build path ends
# up in a binary); only what gets installed is built (no tests).
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
CFLAGS=$(dpkg-buildflags --get CFLAGS) CXXFLAGS=$(dpkg-buildflags --get CXXFLAGS) \
CPPFLAGS=$(dpkg-buildflags --get CPPFLAGS) LDFLAGS=$(dpkg-buildflags --get LDFLAGS)
cmake -S . -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_INSTALL_PREFIX=/usr \
  -DCMAKE_C_FLAGS="$CFLAGS $CPPFLAGS" -DCMAKE_CXX_FLAGS="$CXXFLAGS $CPPFLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="$LDFLAGS" -DCMAKE_SHARED_LINKER_FLAGS="$LDFLAGS" \
  -DCMAKE_MODULE_LINKER_FLAGS="$LDFLAGS" > /dev/null
# The installed targets only (CMAKE_SKIP_INSTALL_ALL_DEPENDENCY: cpack
# installs what is built, it does not build the tests first).
cmake --build "$b" -j "$(nproc)" --target usmc usmc_preload usmc_docs usmc_changelog
rm -f "$b"/usmc_*.deb
(cd "$b" && cpack -G DEB > /dev/null)
deb=$(ls "$b"/usmc_*.deb)
echo "usmc: built $deb"

# lintian: any tag not in packaging/lintian-expected fails the build.
# (Tags overridden in /usr/share/lintian/overrides/usmc are not shown.)
out=$(lintian --tag-display-limit 0 -I "$deb" 2> /dev/null || true)
[ -z "$out" ] || echo "$out" | sed 's/^/lintian: /'
unexpected=$(echo "$out" | awk 'NF >= 3 {print $3}' | sort -u |
  grep -vxF -f <(grep -v '^#' packaging/lintian-expected | awk 'NF{print $1}') || true)
if [ -n "$unexpected" ]; then
  echo "usmc: lintian tags not explained in docs/packaging.md: $unexpected" >&2
  exit 1
fi
