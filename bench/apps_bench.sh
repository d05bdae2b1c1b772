#!/usr/bin/env bash
# bench/apps_bench.sh: real programs over TCP and under `usmc run` (both ends),
# side by side in one run; prints a markdown table of medians and ratios.
#
#   bench/apps_bench.sh [--repeats N] [--seconds S] [--json FILE] [--modes LIST]
#                       [--only LIST]
#   (--modes: tcp,usmc by default; tcp alone tries the script without usmc;
#   add usmc-nostatus for usmc with USMC_STATUS=off, the cost of publishing;
#   --only: some of sockperf-pp,sockperf-tp,iperf3,redis-p1,redis-p16,
#   setup-fds)
#
# Workloads (client pinned to CPU 0, server to CPU 1, as `usmc bench`):
#   sockperf ping-pong 64 B: p50 latency (sockperf's one-way figure, RTT/2)
#   sockperf throughput 64 KiB messages: MB/s as sockperf's sender reports it
#   iperf3, 1 stream: Gbit/s received
#   redis-benchmark SET and GET, 50 clients, -P 1 and -P 16: requests/s
#   connection setup (connect, one byte each way, close) to a python server
#   holding 5000 open files: p50 (bench/setup_fds.py)
# CPU: user + system time of the client and the server processes (wait4
# rusage, children included), divided by round trips, bytes or requests.
# Each workload runs --repeats times per mode (TCP, usmc alternating); each
# cell is the median. Needs root (the negotiation program is attached to a
# private cgroup for the run and removed afterwards, tests/apps/lib.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/apps/lib.sh
export USMC_APPS_MODE=usmc APPS_MODE=usmc
trap negotiation_down EXIT
trap 'exit 130' INT TERM
tcp_only=0
prev=""
for a in "$@"; do
  [ "$prev" = --modes ] && [ "$a" = tcp ] && tcp_only=1
  prev=$a
done
if [ $tcp_only = 0 ]; then  # --modes tcp (trying the script out) needs no usmc
  negotiation_up || { echo "apps_bench: cannot set up the negotiation program" >&2; exit 1; }
  "$USMC" run -- true || { echo "apps_bench: \`$USMC run\` does not work" >&2; exit 1; }
fi
USMC="$USMC" "$PY" - "$@" <<'PY'
import argparse, json, os, re, signal, socket, statistics, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser(prog="apps_bench.sh")
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--seconds", type=int, default=3)
ap.add_argument("--json")
ap.add_argument("--only", default="",
                help="sockperf-pp,sockperf-tp,iperf3,redis-p1,redis-p16,setup-fds (default all)")
ap.add_argument("--modes", default="tcp,usmc",
                help="tcp,usmc[,usmc-nostatus]; tcp alone: try the script without usmc")
args = ap.parse_args()
USMC = os.environ["USMC"]
CLIENT_CPU, SERVER_CPU = "0", "1"
DEVNULL = subprocess.DEVNULL


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listen(port, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"],
                             capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Proc:
    """A program under test: pinned, under usmc or not; CPU via wait4."""

    def __init__(self, mode, cpu, argv, out=None):
        cmd = ["taskset", "-c", cpu]
        if mode.startswith("usmc"):
            cmd += [USMC, "run", "--"]
        env = dict(os.environ)
        if mode == "usmc-nostatus":  # what publishing for usmc ss costs
            env["USMC_STATUS"] = "off"
        # Files, not pipes: nobody reads while the program runs.
        self.stdout = tempfile.TemporaryFile("w+") if out is None else None
        self.stderr = tempfile.TemporaryFile("w+")
        self.p = subprocess.Popen(cmd + argv, stdout=out or self.stdout,
                                  stderr=self.stderr, text=True, env=env)

    def wait(self, timeout=120):
        end = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(self.p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > end:
                self.p.kill()
                raise RuntimeError("timeout")
            time.sleep(0.01)
        self.cpu = ru.ru_utime + ru.ru_stime
        self.rc = os.waitstatus_to_exitcode(status)
        self.out, self.err = "", ""
        if self.stdout:
            self.stdout.seek(0)
            self.out = self.stdout.read()
        self.stderr.seek(0)
        self.err = self.stderr.read()
        if self.rc != 0:
            raise RuntimeError(f"{self.p.args} exit {self.rc}: {self.err[-300:]}")
        return self


# Ping-pong without a rate assumes at most 600,000 round trips a second and
# aborts ("_seqN > m_maxSequenceNo") when a transport is faster; name one.
PP_RATE = ["--mps", "2000000"]


def sockperf(mode, kind, size):
    port = free_port()
    srv = Proc(mode, SERVER_CPU, ["sockperf", "sr", "--tcp", "-i", "127.0.0.1",
                                  "-p", str(port), "-m", "65536"], out=DEVNULL)
    wait_listen(port)
    cli = Proc(mode, CLIENT_CPU, ["sockperf", kind, "--tcp", "-i", "127.0.0.1",
                                  "-p", str(port), "-m", str(size), "-t",
                                  str(args.seconds)] + PP_RATE * (kind == "pp")).wait()
    srv.p.send_signal(signal.SIGINT)
    srv.wait()
    text = cli.out + cli.err
    cpu = cli.cpu + srv.cpu
    if kind == "pp":
        p50 = float(re.search(r"percentile 50\.000 =\s+([\d.]+)", text).group(1))
        rts = int(re.search(r"ReceivedMessages=(\d+)", text).group(1))
        return {"sockperf_pp_p50_us": p50, "sockperf_pp_cpu_us_per_rt": cpu / rts * 1e6}
    mbps = float(re.search(r"BandWidth is ([\d.]+) MBps", text).group(1))
    return {"sockperf_tp_MBps": mbps}


def iperf3(mode):
    port = free_port()
    srv = Proc(mode, SERVER_CPU, ["iperf3", "-s", "-1", "-p", str(port)], out=DEVNULL)
    wait_listen(port)
    cli = Proc(mode, CLIENT_CPU, ["iperf3", "-c", "127.0.0.1", "-p", str(port),
                                  "-t", str(args.seconds), "-J"]).wait()
    srv.wait()
    end = json.loads(cli.out)["end"]
    gbit = end["sum_received"]["bits_per_second"] / 1e9
    gib = end["sum_received"]["bytes"] / (1 << 30)
    return {"iperf3_Gbps": gbit, "iperf3_cpu_s_per_GiB": (cli.cpu + srv.cpu) / gib}


def redis(mode, pipeline, requests):
    port = free_port()
    srv = Proc(mode, SERVER_CPU, ["redis-server", "--port", str(port), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no",
                                  "--logfile", ""], out=DEVNULL)
    wait_listen(port)
    cli = Proc(mode, CLIENT_CPU, ["redis-benchmark", "-h", "127.0.0.1", "-p",
                                  str(port), "-c", "50", "-n", str(requests),
                                  "-P", str(pipeline), "-t", "set,get", "-d", "64",
                                  "-r", "10000", "--csv"]).wait()
    Proc(mode, CLIENT_CPU, ["redis-cli", "-p", str(port), "shutdown", "nosave"],
         out=DEVNULL).wait()
    srv.wait()
    rps = {}
    for line in cli.out.splitlines():
        f = [x.strip('"') for x in line.split(",")]
        if f[0] in ("SET", "GET"):
            rps[f[0]] = float(f[1])
    p = f"redis_P{pipeline}"
    return {f"{p}_SET_rps": rps["SET"], f"{p}_GET_rps": rps["GET"],
            f"{p}_cpu_us_per_req": (cli.cpu + srv.cpu) / (2 * requests) * 1e6}


def setup_fds(mode, fds=5000, conns=300):
    port = free_port()
    helper = os.path.join(os.getcwd(), "bench", "setup_fds.py")
    srv = Proc(mode, SERVER_CPU, ["python3", helper, "server", str(port), str(fds)],
               out=DEVNULL)
    wait_listen(port)
    cli = Proc(mode, CLIENT_CPU, ["python3", helper, "client", str(port),
                                  str(conns)]).wait()
    srv.wait()
    return {"setup_fds_p50_us": float(cli.out.split()[1])}


WORKLOADS = {
    "sockperf-pp": lambda m: sockperf(m, "pp", 64),
    "sockperf-tp": lambda m: sockperf(m, "tp", 65536),
    "iperf3": iperf3,
    "redis-p1": lambda m: redis(m, 1, 200000),
    "redis-p16": lambda m: redis(m, 16, 3000000),
    "setup-fds": setup_fds,
}
only = [w for w in args.only.split(",") if w]
for w in only:
    if w not in WORKLOADS:
        sys.exit(f"apps_bench: --only: unknown workload {w!r} ({', '.join(WORKLOADS)})")
workloads = [WORKLOADS[w] for w in (only or WORKLOADS)]
load_start = open("/proc/loadavg").read().split()[:3]
samples = {m: {} for m in ["tcp", "usmc"] + args.modes.split(",")}
for rep in range(args.repeats):
    for w in workloads:
        for mode in args.modes.split(","):
            try:
                for k, v in w(mode).items():
                    samples[mode].setdefault(k, []).append(v)
            except Exception as e:  # noqa: BLE001 - report and go on
                print(f"apps_bench: {mode} run {rep + 1}: {e}", file=sys.stderr)
load_end = open("/proc/loadavg").read().split()[:3]

ROWS = [  # key, label, unit, better, target ratio text
    ("sockperf_pp_p50_us", "sockperf ping-pong 64 B, p50", "µs", "low", "≤ 0.1"),
    ("sockperf_pp_cpu_us_per_rt", "sockperf ping-pong 64 B, CPU per round trip", "µs", "low", ""),
    ("sockperf_tp_MBps", "sockperf throughput 64 KiB", "MB/s", "high", "≥ 4"),
    ("iperf3_Gbps", "iperf3, 1 stream", "Gbit/s", "high", "≥ 4"),
    ("iperf3_cpu_s_per_GiB", "iperf3, CPU per GiB", "s", "low", ""),
    ("redis_P1_SET_rps", "redis-benchmark SET, 50 clients, -P 1", "req/s", "high", "≥ 1.5"),
    ("redis_P1_GET_rps", "redis-benchmark GET, 50 clients, -P 1", "req/s", "high", "≥ 1.5"),
    ("redis_P1_cpu_us_per_req", "redis, -P 1, CPU per request", "µs", "low", ""),
    ("redis_P16_SET_rps", "redis-benchmark SET, 50 clients, -P 16", "req/s", "high", "≥ 1.5"),
    ("redis_P16_GET_rps", "redis-benchmark GET, 50 clients, -P 16", "req/s", "high", "≥ 1.5"),
    ("redis_P16_cpu_us_per_req", "redis, -P 16, CPU per request", "µs", "low", ""),
    ("setup_fds_p50_us", "setup + 1 B echo, server holding 5000 fds, p50", "µs", "low", ""),
]


def fmt(v):
    return "–" if v is None else (f"{v:.3g}" if v < 1000 else f"{v:,.0f}")


print(f"\nRuns per cell: {args.repeats} (median), {args.seconds} s each; load average "
      f"{' '.join(load_start)} at the start, {' '.join(load_end)} at the end.\n")
# The machine drifts between runs (other tenants): each TCP run is paired
# with the usmc run right after it, and the spread of those pair ratios
# shows what the ratio of medians hides.
print("| workload | TCP | usmc (SMC-D) | usmc / TCP | per pair (min–max) | target |")
print("|---|---|---|---|---|---|")
result = {"repeats": args.repeats, "seconds": args.seconds, "load_start": load_start,
          "load_end": load_end, "samples": samples, "median": {}}
for key, label, unit, better, target in ROWS:
    med = {m: statistics.median(samples[m][key]) if samples[m].get(key) else None
           for m in ("tcp", "usmc")}
    if all(v is None for v in med.values()):
        continue  # not run (--only)
    result["median"][key] = med
    ratio = med["usmc"] / med["tcp"] if med["tcp"] and med["usmc"] is not None else None
    mark = ""
    if ratio is not None and target:
        want = float(target.split()[1])
        ok = ratio <= want if target.startswith("≤") else ratio >= want
        mark = " ✔" if ok else " ✘"
    pairs = [u / t for t, u in zip(samples["tcp"].get(key, []),
                                   samples["usmc"].get(key, [])) if t]
    spread = f"{min(pairs):.2f}–{max(pairs):.2f}" if pairs else "–"
    print(f"| {label} | {fmt(med['tcp'])} {unit} | {fmt(med['usmc'])} {unit} | "
          f"{'–' if ratio is None else f'{ratio:.2f}'} | {spread} | {target}{mark} |")
if "usmc-nostatus" in args.modes.split(","):
    # Issue 6: publishing state for usmc ss/stats must cost nothing visible.
    print("\n| workload | usmc, USMC_STATUS=off | usmc (publishing) | publishing / off |")
    print("|---|---|---|---|")
    for key, label, unit, better, target in ROWS:
        off = samples["usmc-nostatus"].get(key)
        on = samples["usmc"].get(key)
        if not off or not on:
            continue
        moff, mon = statistics.median(off), statistics.median(on)
        result["median"].setdefault(key, {})["usmc-nostatus"] = moff
        print(f"| {label} | {fmt(moff)} {unit} | {fmt(mon)} {unit} | {mon / moff:.2f} |")
if args.json:
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
PY
