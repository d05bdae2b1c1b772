# tests/lab/scenarios/bench.sh: SMC-R vs TCP between the two guests, side by
# side in one boot pair (docs/benchmarks.md "Between lab guests"). Four
# pairings, guest a serving, guest b connecting, every one running
# tests/lab/bench_proto.h's exchange (64-byte ping-pong, then a stream):
#   tcp          kernel TCP both ends (smc_lab bench-* tcp)
#   kernel       the kernel's AF_SMC both ends (smc_lab bench-* smc)
#   usmc-kernel  usmc's SMC-R runtime (smcr_peer) client, kernel AF_SMC server
#   usmc         smcr_peer both ends (usmc's runtime without the interposer)
# BENCH_REPS rounds, the order rotated each round so no pairing always runs
# first. host_check asserts every run's data and mode (SMC-R where it should
# be), then prints medians and ratios vs tcp (also written next to the logs
# as ...-bench-table.txt). QEMU TCG and software RDMA (rxe): the ratios are
# what this says, not the absolute numbers. Named-only: it measures, it
# does not test, and it costs CI's lab budget.
LAB_GUESTS=2
LAB_TIMEOUT=420
LAB_DEFAULT=no
BENCH_BYTES=${BENCH_BYTES:-8388608}
BENCH_PINGS=${BENCH_PINGS:-200}
BENCH_REPS=${BENCH_REPS:-5}
BENCH_KINDS="tcp kernel usmc-kernel usmc"

bench_server() {  # KIND PORT
  case $1 in
    tcp) timeout 120 smc_lab bench-server "$2" $BENCH_BYTES $BENCH_PINGS tcp tcp ;;
    kernel|usmc-kernel) timeout 120 smc_lab bench-server "$2" $BENCH_BYTES $BENCH_PINGS smc "$1" ;;
    usmc) timeout 120 smcr_peer server "$2" $BENCH_BYTES --bench $BENCH_PINGS --kind usmc ;;
  esac
}

bench_client() {  # KIND PORT
  case $1 in
    tcp|kernel)
      local fam=smc tries=0 brc
      [ "$1" = tcp ] && fam=tcp
      while :; do  # until the server listens (rc 3 = connect failed)
        timeout 120 smc_lab bench-client "$LAB_peer" "$2" $BENCH_BYTES $BENCH_PINGS $fam "$1"
        brc=$?
        tries=$((tries + 1))
        [ $brc -ne 3 ] || [ $tries -ge 100 ] && return $brc
        sleep 0.2
      done ;;
    usmc-kernel|usmc) timeout 120 smcr_peer client "$LAB_peer" "$2" $BENCH_BYTES --bench $BENCH_PINGS --kind "$1" ;;
  esac
}

guest_main() {
  lab_rxe || { echo "LAB-RESULT $LAB_name rxe setup failed"; return 1; }
  smc_lab ueid-add USMC-LAB >/dev/null || return 1
  usmc setup >/dev/null || { echo "LAB-RESULT $LAB_name usmc setup failed"; return 1; }
  lab_wait_peer || { echo "LAB-RESULT $LAB_name peer unreachable"; return 1; }
  echo "BENCH-GUEST $LAB_name cpus=$(grep -c ^processor /proc/cpuinfo)"
  rc=0 r=1
  while [ $r -le $BENCH_REPS ]; do
    # Rotate the order: round r starts with kind number r.
    set -- $BENCH_KINDS; k=1
    while [ $k -lt $r ]; do first=$1; shift; set -- "$@" "$first"; k=$((k + 1)); done
    for kind in "$@"; do
      port=$((6000 + r * 10 + $(echo "$BENCH_KINDS" | tr ' ' '\n' | grep -n "^$kind\$" | cut -d: -f1)))
      echo "BENCH-RUN round=$r kind=$kind port=$port"
      if [ "$LAB_role" = a ]; then
        bench_server "$kind" "$port"
      else
        bench_client "$kind" "$port"
      fi
      x=$?
      echo "BENCH-RC kind=$kind round=$r rc=$x"
      [ $x -eq 0 ] || rc=1
    done
    r=$((r + 1))
  done
  lab_kernel_report 5
  return $rc
}

host_check() {
  local a=$1 b=$2 fail=0 k n table=${1%-a.log}-table.txt
  for k in $BENCH_KINDS; do
    n=$(grep -c "^BENCH-RC kind=$k round=[0-9]* rc=0" "$a")
    [ "$n" = "$BENCH_REPS" ] || { echo "lab: $k: $n of $BENCH_REPS server runs ok" >&2; fail=1; }
    n=$(grep -c "^BENCH-RC kind=$k round=[0-9]* rc=0" "$b")
    [ "$n" = "$BENCH_REPS" ] || { echo "lab: $k: $n of $BENCH_REPS client runs ok" >&2; fail=1; }
    n=$(cat "$a" "$b" | grep -c "^BENCH-DATA ok kind=$k\$")
    [ "$n" = $((2 * BENCH_REPS)) ] || { echo "lab: $k: $n of $((2 * BENCH_REPS)) exchanges intact" >&2; fail=1; }
  done
  # SMC-R where it should be: the kernel's smc_diag (both ends of kernel, the
  # server of usmc-kernel), usmc's own mode line (usmc-kernel client, usmc).
  [ "$(grep -c '^SMC mode=SMCR ' "$a")" = $((2 * BENCH_REPS)) ] || { echo "lab: kernel server not SMC-R in every kernel/usmc-kernel run" >&2; fail=1; }
  [ "$(grep -c '^SMC mode=SMCR ' "$b")" = "$BENCH_REPS" ] || { echo "lab: kernel client not SMC-R in every kernel run" >&2; fail=1; }
  [ "$(grep -c '^USMC mode=SMCR ' "$a")" = "$BENCH_REPS" ] || { echo "lab: usmc server not SMC-R in every usmc run" >&2; fail=1; }
  [ "$(grep -c '^USMC mode=SMCR ' "$b")" = $((2 * BENCH_REPS)) ] || { echo "lab: usmc client not SMC-R in every usmc/usmc-kernel run" >&2; fail=1; }
  { bench_table "$a" "$b"
    # The host's load over the run (1, 5, 15 min): the guests share it.
    echo "BENCH-TABLE host load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) host cores, guests 1 vCPU each (TCG)"
  } | tee "$table" >&2
  return $fail
}

# Medians over the rounds and ratios vs tcp: ping p50 (client), stream MB/s
# (client), CPU per byte of the stream (ns/B): both processes' getrusage,
# and both guests' /proc/stat busy time.
bench_table() {
  sed -n 's/^BENCH kind=/a kind=/p' "$1" > /tmp/bench.$$
  sed -n 's/^BENCH kind=/b kind=/p' "$2" >> /tmp/bench.$$
  awk -v kinds="$BENCH_KINDS" '
    function val(line, key,   m) { return match(line, " " key "=[^ ]*") ? substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 2) + 0 : 0 }
    function med(list,   v, n, i, j, t) {
      n = split(list, v, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
      return n == 0 ? 0 : (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
    }
    {
      split($2, kv, "="); k = kv[2]
      role = ($3 == "role=client") ? "c" : "s"; phase = ($4 == "phase=ping") ? "p" : "t"
      key = k SUBSEP role SUBSEP phase; i = ++cnt[key]
      if (role == "c" && phase == "p") p50[k] = p50[k] " " val($0, "p50_us")
      if (role == "c" && phase == "t") { mbps[k] = mbps[k] " " val($0, "mbps"); bytes[k] = val($0, "bytes") }
      if (phase == "t") { pc[k, i] += val($0, "cpu_us"); gc[k, i] += val($0, "guest_us") }
      reps[k] = i
    }
    END {
      n = split(kinds, K, " ")
      for (x = 1; x <= n; x++) {
        k = K[x]; pl = ""; gl = ""
        for (i = 1; i <= reps[k]; i++) { pl = pl " " 1000 * pc[k, i] / bytes[k]; gl = gl " " 1000 * gc[k, i] / bytes[k] }
        P[k] = med(p50[k]); M[k] = med(mbps[k]); PC[k] = med(pl); GC[k] = med(gl)
      }
      printf "BENCH-TABLE medians of %d rounds (ratios vs tcp in brackets)\n", reps["tcp"]
      printf "BENCH-TABLE %-12s %20s %20s %24s %24s\n", "pairing", "ping p50 us", "stream MB/s", "proc CPU ns/B", "guest CPU ns/B"
      for (x = 1; x <= n; x++) {
        k = K[x]
        printf "BENCH-TABLE %-12s %11.1f [%5.2fx] %11.2f [%5.2fx] %13.1f [%5.2fx] %13.1f [%5.2fx]\n", k, P[k], P[k] / P["tcp"], M[k], M[k] / M["tcp"], PC[k], PC[k] / PC["tcp"], GC[k], GC[k] / GC["tcp"]
      }
    }' /tmp/bench.$$
  rm -f /tmp/bench.$$
}
