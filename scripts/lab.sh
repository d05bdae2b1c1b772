#!/usr/bin/env bash
# The SMC-R lab (tests/lab/README.md): QEMU guests (TCG) running Debian's
# bookworm-backports 6.12 kernel with Soft-RoCE (rxe) on virtio-net and the
# kernel's SMC, plus usmc's binaries, booted from a busybox initramfs.
#
#   scripts/lab.sh [SCENARIO...]     default: every tests/lab/scenarios/*.sh
#                                    except those with LAB_DEFAULT=no
#
# Sets up once (host packages, the guest kernel .deb through a private apt
# state, in $USMC_LAB_DIR), builds the usmc targets the guests carry (in
# $USMC_LAB_BUILD), packs the initramfs, then per scenario boots its guests
# (one pair at a time), collects their consoles in $USMC_LAB_DIR/logs and
# runs the scenario's host-side checks. Exit 0 only if every scenario passed.
#
# A hung guest can never stall the caller: each guest crashes itself
# (sysrq) after the scenario's own timeout, qemu runs under `timeout`, and
# the whole run stops starting scenarios once USMC_LAB_BUDGET seconds
# (default 600) are spent.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LAB_SRC=$ROOT/tests/lab
LAB_DIR=${USMC_LAB_DIR:-$ROOT/build-lab}
BUILD=${USMC_LAB_BUILD:-$ROOT/build}
BUDGET=${USMC_LAB_BUDGET:-600}
START=$SECONDS
export DEBIAN_FRONTEND=noninteractive

log() { echo "lab: $*" >&2; }
die() { log "$*"; exit 1; }

# ---- setup (idempotent) ----

HOST_PACKAGES=(qemu-system-x86 busybox-static cpio kmod xz-utils zstd
               rdma-core ibverbs-providers ibverbs-utils libibverbs-dev
               iproute2 debian-archive-keyring iperf3 socat redis-server
               redis-tools)

install_host_packages() {
  local missing=() p
  for p in "${HOST_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The guest kernel comes from bookworm-backports: the stock bookworm 6.1
# rxe cannot carry the kernel's SMC-R (it hangs, ../shared/design/LAB.md
# §5). A private apt state leaves the host's sources untouched.
fetch_kernel() {
  [ -d "$LAB_DIR/kernel/boot" ] && return 0
  local apt=$LAB_DIR/apt
  mkdir -p "$apt/sources" "$apt/lists/partial" "$apt/cache/archives/partial"
  cat > "$apt/sources/lab.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  local o=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt/sources"
           -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
           -o APT::Default-Release=bookworm-backports)
  apt-get "${o[@]}" update -qq || return 1
  local pkg
  pkg=$(apt-cache "${o[@]}" depends linux-image-amd64 |
        awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$pkg" ] || { log "no linux-image in bookworm-backports"; return 1; }
  log "guest kernel: $pkg"
  (cd "$apt" && rm -f ./*.deb && apt-get "${o[@]}" download "$pkg" 2>&1 | grep -v unsandboxed) || true
  rm -rf "$LAB_DIR/kernel.tmp"
  dpkg -x "$apt"/"$pkg"_*.deb "$LAB_DIR/kernel.tmp" && mv "$LAB_DIR/kernel.tmp" "$LAB_DIR/kernel"
}

# What the guests run, from the usmc build tree.
GUEST_TARGETS=(usmc usmc_preload usmc_verbs_module smc_lab verbs_pair dev_verbs_test smcr_peer)

build_usmc() {
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -G Ninja >/dev/null || return 1
  fi
  cmake --build "$BUILD" -j "$(nproc)" --target "${GUEST_TARGETS[@]}" | tail -3
}

# ---- initramfs ----

# Kernel modules the guests load, dependencies first (resolved on the host).
GUEST_MODULES="crc32_generic virtio_pci virtio_net rdma_rxe ib_uverbs smc smc_diag"
GUEST_TOOLS="/usr/bin/rdma /usr/bin/ibv_devices /usr/bin/ibv_devinfo /usr/bin/ibv_rc_pingpong"
# Real programs the usmc-pair scenario runs under `usmc run` (sha256sum is
# busybox's).
GUEST_TOOLS="$GUEST_TOOLS /usr/bin/iperf3 /usr/bin/socat /usr/bin/redis-server"
GUEST_TOOLS="$GUEST_TOOLS /usr/bin/redis-cli /usr/bin/redis-benchmark"

build_initramfs() {
  local kdir=$LAB_DIR/kernel kver r=$LAB_DIR/root
  kver=$(ls "$kdir/lib/modules" | head -1)
  rm -rf "$r"
  mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,tmp,run,usr/bin,lab,lib/modules/$kver}
  cp /bin/busybox "$r/bin/busybox"
  local a
  for a in $("$r/bin/busybox" --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
  [ -f "$kdir/lib/modules/$kver/modules.dep" ] || depmod -b "$kdir" "$kver"
  local m ko b
  : > "$r/etc/modules.list"
  for m in $GUEST_MODULES; do
    modprobe -d "$kdir" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
  done | awk '!seen[$0]++' | while read -r ko; do
    # busybox insmod takes plain .ko only
    b=$(basename "$ko")
    case $b in
      *.ko.xz) xz -dc "$ko" > "$r/lib/modules/$kver/${b%.xz}"; b=${b%.xz} ;;
      *.ko.zst) zstd -qdc "$ko" > "$r/lib/modules/$kver/${b%.zst}"; b=${b%.zst} ;;
      *) cp "$ko" "$r/lib/modules/$kver/" ;;
    esac
    echo "$b" >> "$r/etc/modules.list"
  done
  # usmc's build outputs keep their build-tree layout under /usmc, so the
  # usmc CLI finds its interposer as it does in the build tree.
  local f rel bins=()
  for f in tools/usmc preload/libusmc-preload.so preload/libusmc-verbs.so \
           tests/smc_lab tests/verbs_pair dev/dev_verbs_test tests/smcr_peer; do
    [ -e "$BUILD/$f" ] || { log "missing $BUILD/$f"; return 1; }
    mkdir -p "$r/usmc/$(dirname "$f")"
    # without debug info: the guest unpacks every byte under TCG
    objcopy --strip-debug "$BUILD/$f" "$r/usmc/$f"
    bins+=("$BUILD/$f")
  done
  for f in $(cd "$BUILD" && find . -name '*.bpf.o'); do
    rel=${f#./}; mkdir -p "$r/usmc/$(dirname "$rel")"; cp "$BUILD/$rel" "$r/usmc/$rel"
  done
  ln -s /usmc/tools/usmc "$r/usr/bin/usmc"
  ln -s /usmc/tests/smc_lab "$r/usr/bin/smc_lab"
  ln -s /usmc/tests/verbs_pair "$r/usr/bin/verbs_pair"
  ln -s /usmc/tests/smcr_peer "$r/usr/bin/smcr_peer"
  local ip; ip=$(command -v ip)
  cp "$ip" "$r/sbin/ip.full"   # busybox ip lacks what rdma/rxe setups show
  for f in $GUEST_TOOLS; do cp "$f" "$r/usr/bin/"; done
  # Shared libraries of everything above, and libibverbs' rxe provider
  # (dlopened, so ldd does not name it) with its driver file.
  local prov=(/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav*.so)
  local lib
  for lib in $( (for f in "${bins[@]}" $GUEST_TOOLS "$ip" "${prov[@]}"; do ldd "$f"; done) |
                awk '/=> \// {print $3} /^\t\// {print $1}' | sort -u) \
             /lib64/ld-linux-x86-64.so.2 "${prov[@]}"; do
    mkdir -p "$r$(dirname "$lib")"
    cp -L "$lib" "$r$lib"
  done
  mkdir -p "$r/etc/libibverbs.d"
  cp /etc/libibverbs.d/rxe.driver "$r/etc/libibverbs.d/"
  cp "$LAB_SRC/guest/init" "$r/init"
  chmod +x "$r/init"
  cp "$LAB_SRC"/scenarios/*.sh "$r/lab/"
  echo "root:x:0:0:root:/root:/bin/sh" > "$r/etc/passwd"
  echo "root:x:0:" > "$r/etc/group"
  (cd "$r" && find . | cpio -o -H newc --quiet) | gzip -1 > "$LAB_DIR/initramfs.cpio.gz"
  log "initramfs $(du -h "$LAB_DIR/initramfs.cpio.gz" | cut -f1) (kernel $kver)"
}

# ---- guests ----

# boot_guest NAME IP PEER ROLE MAC UDP_LOCAL UDP_REMOTE SCENARIO TMO LOG:
# one guest on a virtio-net NIC tunnelled over UDP on 127.0.0.1 (an L2
# segment between two guests; nothing else is reachable).
boot_guest() {
  local name=$1 ip=$2 peer=$3 role=$4 mac=$5 lport=$6 rport=$7 sc=$8 tmo=$9 out=${10}
  local kdir=$LAB_DIR/kernel kver
  kver=$(ls "$kdir/lib/modules" | head -1)
  # The host-side bound: the guest's own watchdog plus boot and poweroff.
  # no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer
  # check can miss its ticks and panic at boot ("IO-APIC + timer doesn't
  # work!", seen here with 5 helpers' builds and labs on 2 cores).
  timeout -k 5 $((tmo + 60)) qemu-system-x86_64 -accel tcg -m 1024 -smp 1 \
    -nographic -no-reboot -kernel "$kdir/boot/vmlinuz-$kver" \
    -initrd "$LAB_DIR/initramfs.cpio.gz" \
    -append "console=ttyS0 panic=-1 no_timer_check quiet loglevel=3 lab.name=$name lab.ip=$ip/24 lab.peer=$peer lab.role=$role lab.scenario=$sc lab.tmo=$tmo" \
    -netdev socket,id=n0,udp=127.0.0.1:$rport,localaddr=127.0.0.1:$lport \
    -device virtio-net-pci,netdev=n0,mac=$mac > "$out.raw" 2>&1 < /dev/null
  local rc=$?
  tr -d '\r' < "$out.raw" > "$out" && rm -f "$out.raw"
  echo "LAB-HOST qemu rc=$rc" >> "$out"
}

# run_scenario NAME: boots its guests, then its host_check over their logs.
run_scenario() {
  local sc=$1 file=$LAB_SRC/scenarios/$1.sh
  [ -f "$file" ] || { log "no scenario $sc"; return 1; }
  local LAB_GUESTS=1 LAB_TIMEOUT=120
  # shellcheck source=/dev/null
  . "$file"
  local left=$((BUDGET - (SECONDS - START)))
  [ "$left" -gt 30 ] || { log "$sc: not started, budget of ${BUDGET}s spent"; return 1; }
  local tmo=$LAB_TIMEOUT
  [ "$tmo" -lt "$((left - 20))" ] || tmo=$((left - 20))
  local ts port logs
  ts=$(date +%H%M%S)
  port=$((20000 + RANDOM % 20000))
  mkdir -p "$LAB_DIR/logs"
  logs=$LAB_DIR/logs/$ts-$sc
  local t0=$SECONDS
  if [ "$LAB_GUESTS" = 2 ]; then
    boot_guest a 10.0.0.1 10.0.0.2 a 52:54:00:00:00:01 $port $((port + 1)) "$sc" "$tmo" "$logs-a.log" &
    local pa=$!
    boot_guest b 10.0.0.2 10.0.0.1 b 52:54:00:00:00:02 $((port + 1)) $port "$sc" "$tmo" "$logs-b.log" &
    local pb=$!
    wait $pa $pb
    set -- "$logs-a.log" "$logs-b.log"
  else
    boot_guest a 10.0.0.1 10.0.0.2 a 52:54:00:00:00:01 $port $((port + 1)) "$sc" "$tmo" "$logs-a.log"
    set -- "$logs-a.log"
  fi
  log "$sc: guests done in $((SECONDS - t0)) s, logs $logs-*.log"
  local f fail=0
  for f in "$@"; do
    grep -q '^LAB-TIMEOUT' "$f" && { log "$sc: FAIL: watchdog fired in $(basename "$f")"; fail=1; }
    grep -q '^LAB-DONE' "$f" || { log "$sc: FAIL: $(basename "$f") never finished"; fail=1; }
  done
  grep -h '^LAB-' "$@" | sed "s/^/  /" >&2
  if ! host_check "$@"; then fail=1; fi
  if [ $fail = 0 ]; then log "$sc: PASS"; else
    log "$sc: FAIL (last lines of each guest follow)"
    for f in "$@"; do echo "--- $f" >&2; tail -40 "$f" >&2; done
  fi
  return $fail
}

main() {
  [ "$(id -u)" = 0 ] || die "run as root (apt, and the guests' kernel .deb)"
  mkdir -p "$LAB_DIR"
  install_host_packages || die "host packages"
  fetch_kernel || die "guest kernel"
  build_usmc || die "build"
  build_initramfs || die "initramfs"
  local scenarios=("$@") s
  if [ ${#scenarios[@]} -eq 0 ]; then
    # A scenario that says LAB_DEFAULT=no runs only when named.
    for s in "$LAB_SRC"/scenarios/*.sh; do
      grep -q '^LAB_DEFAULT=no' "$s" || scenarios+=("$(basename "$s" .sh)")
    done
  fi
  local passed=0 failed=0
  for s in "${scenarios[@]}"; do
    if (run_scenario "$s"); then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
  log "$passed passed, $failed failed, $((SECONDS - START)) s"
  [ $failed -eq 0 ]
}

main "$@"
