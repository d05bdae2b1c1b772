#!/usr/bin/env bash
# CI's bench smoke run (ctest bench_plot_smoke): `usmc bench --quick --plot
# DIR` runs every workload on both transports and draws the plots. Checks the
# pictures are there and real (PNG signature, SVG with both transports'
# legends and the axis units), not how fast anything was.
#   bench_plot_test.sh USMC
set -euo pipefail
usmc=$1
d=$(mktemp -d /tmp/usmc-bench-plot-XXXXXX)
trap 'rm -rf "$d"' EXIT
"$usmc" bench --quick --plot "$d/plots" > "$d/out.txt" 2>&1 || { cat "$d/out.txt"; exit 1; }
for f in latency-cdf throughput; do
  [ "$(head -c 8 "$d/plots/$f.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
    { echo "$f.png is not a PNG"; exit 1; }
  for want in "SMC-D (usmc)" "TCP loopback"; do
    grep -qF "$want" "$d/plots/$f.svg" || { echo "$f.svg lacks '$want'"; exit 1; }
  done
done
grep -qF "round-trip latency (µs" "$d/plots/latency-cdf.svg"
grep -qF "throughput (GB/s)" "$d/plots/throughput.svg"
grep -qF "write size (bytes" "$d/plots/throughput.svg"
# Five write sizes on each transport, all measured.
[ "$(grep -vc '^#' "$d/plots/throughput.dat")" -eq 5 ]
awk '!/^#/ && !($2 > 0 && $3 > 0) {exit 1}' "$d/plots/throughput.dat"
echo "bench plots ok"
