#!/usr/bin/env bash
# Installs the Debian 12 packages usmc needs to build, test and demo.
# Idempotent: does nothing when everything is present.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  clang libclang-rt-14-dev           # fuzzers (libFuzzer) and the eBPF program
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libfmt-dev nlohmann-json3-dev
  libbpf-dev bpftool                 # negotiate/: the TCP option program
  libibverbs-dev                     # dev/verbs (SMC-R)
  tshark                             # independent decoder for wire tests
  iproute2 procps strace             # strace: tests/conformance counts system calls
  sockperf iperf3 redis-server redis-tools tcl curl python3   # tests/apps (scripts/apps.sh)
  nginx-light                                                  # tests/apps/nginx.sh
  git openssh-server openssh-client                          # tests/apps: git.sh, ssh.sh
  memcached libmemcached-tools postgresql haproxy apache2-utils wrk  # tests/apps: memcached.sh, postgres.sh, haproxy.sh
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "usmc: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
