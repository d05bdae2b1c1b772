#!/usr/bin/env bash
# Configures and builds one flavour of usmc.
#   scripts/build.sh            -> build/        (gcc, RelWithDebInfo)
#   scripts/build.sh asan       -> build-asan/   (ASan + UBSan)
#   scripts/build.sh fuzz       -> build-fuzz/   (clang, libFuzzer targets)
#   scripts/build.sh release    -> build-release/        (gcc, Release, -O3)
#   scripts/build.sh release-clang -> build-release-clang/ (clang, Release)
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-default}
case "$flavour" in
  default) dir=build; args=() ;;
  asan) dir=build-asan; args=(-DUSMC_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug) ;;
  fuzz) dir=build-fuzz
        args=(-DUSMC_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++) ;;
  release) dir=build-release; args=(-DCMAKE_BUILD_TYPE=Release) ;;
  release-clang) dir=build-release-clang
        args=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang
              -DCMAKE_CXX_COMPILER=clang++) ;;
  *) echo "usage: $0 [default|asan|fuzz|release|release-clang]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -G Ninja "${args[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"
