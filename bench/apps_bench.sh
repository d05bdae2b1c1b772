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
#   memcached (as nobody) get, memcslap 4 threads: requests/s
#   PostgreSQL (as postgres, a backend per connection): pgbench -S on 4 kept
#   connections, pgbench -C (a connection per transaction): transactions/s
#   nginx, and HAProxy (as nobody) over two nginx: 1 KiB with ab -c 8 and
#   Connection: close (one request per connection), wrk 16 kept connections
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
import argparse, glob, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser(prog="apps_bench.sh")
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--seconds", type=int, default=3)
ap.add_argument("--json")
ap.add_argument("--only", default="",
                help="sockperf-pp,sockperf-tp,iperf3,redis-p1,redis-p16,setup-fds,memcached,"
                "pg-select,pg-connect,nginx-close,nginx-keep,haproxy-close,haproxy-keep "
                "(default all)")
ap.add_argument("--modes", default="tcp,usmc",
                help="tcp,usmc[,usmc-nostatus,usmc-1end,usmc-tcp]; tcp alone: try the "
                "script without usmc")
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
    """A program under test: pinned, under usmc or not; CPU via wait4.

    Modes: tcp (both ends plain), usmc (both under usmc: SMC-D),
    usmc-nostatus (usmc with USMC_STATUS=off: the cost of publishing),
    usmc-1end (the server under usmc, the client plain: TCP through usmc's
    pass-through on one end), usmc-tcp (both under usmc, the server offering
    nothing, USMC_ENABLE=0: TCP through the pass-through on both ends)."""

    def __init__(self, mode, role, argv, out=None):
        cmd = ["taskset", "-c", SERVER_CPU if role == "server" else CLIENT_CPU]
        under_usmc = mode.startswith("usmc") and not (mode == "usmc-1end" and
                                                      role == "client")
        if under_usmc:
            cmd += [USMC, "run", "--"]
        env = dict(os.environ)
        if mode == "usmc-nostatus":  # what publishing for usmc ss costs
            env["USMC_STATUS"] = "off"
        if mode == "usmc-tcp" and role == "server":
            env["USMC_ENABLE"] = "0"
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
    srv = Proc(mode, "server", ["sockperf", "sr", "--tcp", "-i", "127.0.0.1",
                                  "-p", str(port), "-m", "65536"], out=DEVNULL)
    wait_listen(port)
    cli = Proc(mode, "client", ["sockperf", kind, "--tcp", "-i", "127.0.0.1",
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
    srv = Proc(mode, "server", ["iperf3", "-s", "-1", "-p", str(port)], out=DEVNULL)
    wait_listen(port)
    cli = Proc(mode, "client", ["iperf3", "-c", "127.0.0.1", "-p", str(port),
                                  "-t", str(args.seconds), "-J"]).wait()
    srv.wait()
    end = json.loads(cli.out)["end"]
    gbit = end["sum_received"]["bits_per_second"] / 1e9
    gib = end["sum_received"]["bytes"] / (1 << 30)
    return {"iperf3_Gbps": gbit, "iperf3_cpu_s_per_GiB": (cli.cpu + srv.cpu) / gib}


def redis(mode, pipeline, requests):
    port = free_port()
    srv = Proc(mode, "server", ["redis-server", "--port", str(port), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no",
                                  "--logfile", ""], out=DEVNULL)
    wait_listen(port)
    cli = Proc(mode, "client", ["redis-benchmark", "-h", "127.0.0.1", "-p",
                                  str(port), "-c", "50", "-n", str(requests),
                                  "-P", str(pipeline), "-t", "set,get", "-d", "64",
                                  "-r", "10000", "--csv"]).wait()
    Proc(mode, "client", ["redis-cli", "-p", str(port), "shutdown", "nosave"],
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
    srv = Proc(mode, "server", ["python3", helper, "server", str(port), str(fds)],
               out=DEVNULL)
    wait_listen(port)
    cli = Proc(mode, "client", ["python3", helper, "client", str(port),
                                  str(conns)]).wait()
    srv.wait()
    return {"setup_fds_p50_us": float(cli.out.split()[1])}


def rate(text, pattern, what):
    m = re.search(pattern, text)
    if not m:
        raise RuntimeError(f"no {what} in: {text[-300:]}")
    return float(m.group(1))


def memcached(mode, ops=20000, threads=4):
    """memcslap get with 4 threads (one connection each) against memcached
    (2 threads, dropped to nobody as Debian runs it): replies built with one
    sendmsg of several iovecs."""
    port = free_port()
    srv = Proc(mode, "server", ["memcached", "-u", "nobody", "-l", "127.0.0.1", "-p",
                                str(port), "-U", "0", "-t", "2"], out=DEVNULL)
    wait_listen(port)
    cli = Proc(mode, "client", ["memcslap", "-s", f"127.0.0.1:{port}", "-c",
                                str(threads), "-e", str(ops), "-t", "get"]).wait()
    srv.p.send_signal(signal.SIGINT)
    srv.wait()
    secs = rate(cli.out, r"Time to get\s+\d+ keys by\s+\d+ threads:\s+([\d.]+)", "get time")
    n = threads * ops
    return {"memcached_get_rps": n / secs,
            "memcached_cpu_us_per_req": (cli.cpu + srv.cpu) / (2 * n) * 1e6}


PG = {}


def postgres(mode, connect_each):
    """pgbench against PostgreSQL (as user postgres: a backend forked per
    connection): select-only on 4 kept connections, or TPC-B-like with a new
    connection per transaction (-C)."""
    if not PG:
        d = tempfile.mkdtemp(prefix="usmc-bench-pg.")
        os.chmod(d, 0o711)
        pgbin = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
        # A copy of usmc every user can run (the build may sit in /root).
        for sub in ("tools", "preload"):
            os.makedirs(f"{d}/usmc/{sub}")
        shutil.copy(USMC, f"{d}/usmc/tools/usmc")
        shutil.copy(os.path.join(os.path.dirname(USMC), "..", "preload",
                                 "libusmc-preload.so"), f"{d}/usmc/preload/")
        for sub in ("pg", "sock", "status"):
            os.makedirs(f"{d}/{sub}", mode=0o700)
            shutil.chown(f"{d}/{sub}", "postgres", "postgres")
        subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                        f"{pgbin}/initdb", "-D", f"{d}/pg", "--auth=trust", "-U",
                        "postgres", "--no-sync"], check=True, stdout=DEVNULL)
        PG.update(dir=d, bin=pgbin)
    d, pgbin = PG["dir"], PG["bin"]
    port = free_port()
    usmc = [f"{d}/usmc/tools/usmc", "run", "--"] if mode.startswith("usmc") else []
    env_extra = {"USMC_STATUS": "off"} if mode == "usmc-nostatus" else {}
    if mode == "usmc-tcp":
        env_extra["USMC_ENABLE"] = "0"
    env = ["env", f"USMC_STATUS_DIR={d}/status"] + [f"{k}={v}" for k, v in env_extra.items()]
    srv = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, "setpriv", "--reuid=postgres", "--regid=postgres",
         "--init-groups"] + env + usmc +
        [f"{pgbin}/postgres", "-D", f"{d}/pg", "-p", str(port), "-c",
         "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={d}/sock", "-c",
         "fsync=off", "-c", "max_connections=40", "-c", "synchronous_commit=off"],
        stdout=DEVNULL, stderr=DEVNULL)
    wait_listen(port)
    conn = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
    if "init" not in PG:
        Proc("tcp", "client", [f"{pgbin}/pgbench"] + conn + ["-i", "-s", "4", "-q",
                                                           "postgres"]).wait()
        PG["init"] = True
    argv = [f"{pgbin}/pgbench"] + conn + ["-c", "4", "-j", "2", "-n", "-T",
                                          str(args.seconds)]
    argv += ["-C"] if connect_each else ["-S"]
    cli = Proc(mode, "client", argv + ["postgres"]).wait()
    srv.send_signal(signal.SIGINT)
    srv.wait(timeout=60)
    # -C counts the connections' time in (pgbench words it "including
    # reconnection times"), which is what it measures here.
    tps = rate(cli.out, r"tps = ([\d.]+) \((?:without initial connection time|"
               r"including reconnection times)\)", "tps")
    key = "pg_connect_each_tps" if connect_each else "pg_select_tps"
    return {key: tps}


NGINX_CONF = """daemon off; master_process on; worker_processes 1; user root;
pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; root {d}; }}
{extra}}}
"""


def http(mode, server, close):
    """nginx (one worker) serving a 1 KiB file, or HAProxy (one thread, as
    nobody) balancing over two such nginx; ab with Connection: close (one
    request per connection, 8 at once) or wrk on 16 kept connections."""
    d = tempfile.mkdtemp(prefix="usmc-bench-http.")
    with open(f"{d}/f1k", "wb") as f:
        f.write(os.urandom(1024))
    port = free_port()
    procs = []
    if server == "nginx":
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(NGINX_CONF.format(d=d, port=port, extra=""))
        procs.append((Proc(mode, "server", ["nginx", "-p", d, "-c", f"{d}/nginx.conf",
                                            "-e", f"{d}/error.log"], out=DEVNULL),
                      signal.SIGQUIT))
    else:
        b1, b2 = free_port(), free_port()
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(NGINX_CONF.format(d=d, port=b1, extra=f"  server {{ listen 127.0.0.1:{b2}; root {d}; }}\n"))
        with open(f"{d}/haproxy.cfg", "w") as f:
            f.write(f"global\n user nobody\n group nogroup\n nbthread 1\n maxconn 2000\n"
                    f"defaults\n mode http\n timeout connect 5s\n timeout client 30s\n"
                    f" timeout server 30s\nfrontend fe\n bind 127.0.0.1:{port}\n"
                    f" default_backend be\nbackend be\n balance roundrobin\n"
                    f" http-reuse always\n server b1 127.0.0.1:{b1}\n"
                    f" server b2 127.0.0.1:{b2}\n")
        procs.append((Proc(mode, "server", ["nginx", "-p", d, "-c", f"{d}/nginx.conf",
                                            "-e", f"{d}/error.log"], out=DEVNULL),
                      signal.SIGQUIT))
        wait_listen(b2)
        procs.append((Proc(mode, "server", ["haproxy", "-db", "-f", f"{d}/haproxy.cfg"],
                           out=DEVNULL), signal.SIGTERM))
    wait_listen(port)
    url = f"http://127.0.0.1:{port}/f1k"
    if close:
        cli = Proc(mode, "client", ["ab", "-q", "-c", "8", "-t", str(args.seconds), "-n",
                                    "10000000", url]).wait()
        if not re.search(r"^Failed requests:\s+0$", cli.out, re.M):
            raise RuntimeError("ab: failed requests")
        rps = rate(cli.out, r"Requests per second:\s+([\d.]+)", "ab rate")
    else:
        cli = Proc(mode, "client", ["wrk", "-t", "1", "-c", "16", "-d",
                                    f"{args.seconds}s", url]).wait()
        if re.search(r"Socket errors|Non-2xx", cli.out):
            raise RuntimeError("wrk: errors")
        rps = rate(cli.out, r"Requests/sec:\s+([\d.]+)", "wrk rate")
    cpu = cli.cpu
    for p, sig in reversed(procs):
        p.p.send_signal(sig)
        try:
            p.wait()
        except RuntimeError:
            if sig != signal.SIGTERM:  # haproxy's hard stop exits 143
                raise
            cpu += p.cpu
        else:
            cpu += p.cpu
    shutil.rmtree(d, ignore_errors=True)
    requests = rps * args.seconds
    key = f"{server}_{'close' if close else 'keep'}"
    return {f"{key}_rps": rps, f"{key}_cpu_us_per_req": cpu / requests * 1e6}


WORKLOADS = {
    "sockperf-pp": lambda m: sockperf(m, "pp", 64),
    "sockperf-tp": lambda m: sockperf(m, "tp", 65536),
    "iperf3": iperf3,
    "redis-p1": lambda m: redis(m, 1, 200000),
    "redis-p16": lambda m: redis(m, 16, 3000000),
    "setup-fds": setup_fds,
    "memcached": memcached,
    "pg-select": lambda m: postgres(m, False),
    "pg-connect": lambda m: postgres(m, True),
    "nginx-close": lambda m: http(m, "nginx", True),
    "nginx-keep": lambda m: http(m, "nginx", False),
    "haproxy-close": lambda m: http(m, "haproxy", True),
    "haproxy-keep": lambda m: http(m, "haproxy", False),
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
    ("memcached_get_rps", "memcached (as nobody) get, memcslap 4 threads", "req/s", "high", "≥ 1.3"),
    ("memcached_cpu_us_per_req", "memcached, CPU per request", "µs", "low", ""),
    ("pg_select_tps", "PostgreSQL pgbench -S, 4 kept connections", "tx/s", "high", "≥ 1.3"),
    ("pg_connect_each_tps", "PostgreSQL pgbench -C (a connection per transaction)", "tx/s", "high", "≥ 0.8"),
    ("nginx_close_rps", "nginx 1 KiB, ab -c 8, Connection: close", "req/s", "high", "≥ 0.8"),
    ("nginx_close_cpu_us_per_req", "nginx, Connection: close, CPU per request", "µs", "low", ""),
    ("nginx_keep_rps", "nginx 1 KiB, wrk 16 kept connections", "req/s", "high", "≥ 1.3"),
    ("nginx_keep_cpu_us_per_req", "nginx, kept connections, CPU per request", "µs", "low", ""),
    ("haproxy_close_rps", "HAProxy → 2 nginx, ab -c 8, Connection: close", "req/s", "high", "≥ 0.8"),
    ("haproxy_close_cpu_us_per_req", "HAProxy, Connection: close, CPU per request", "µs", "low", ""),
    ("haproxy_keep_rps", "HAProxy → 2 nginx, wrk 16 kept connections", "req/s", "high", "≥ 1.3"),
    ("haproxy_keep_cpu_us_per_req", "HAProxy, kept connections, CPU per request", "µs", "low", ""),
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
tcp_modes = [m for m in ("usmc-1end", "usmc-tcp") if m in args.modes.split(",")]
if tcp_modes:
    # Issue 20: connections that stay TCP must cost what plain TCP costs.
    names = {"usmc-1end": "server under usmc, client plain",
             "usmc-tcp": "both under usmc, server offering nothing"}
    print("\nTCP through usmc's pass-through (no SMC on any connection), against plain TCP:\n")
    print("| workload | TCP | " + " | ".join(f"{names[m]} | ratio" for m in tcp_modes) + " |")
    print("|---|---|" + "---|---|" * len(tcp_modes))
    for key, label, unit, better, target in ROWS:
        base = samples["tcp"].get(key)
        if not base:
            continue
        cells = []
        for m in tcp_modes:
            v = samples[m].get(key)
            if not v:
                cells += ["–", "–"]
                continue
            med = statistics.median(v)
            result["median"].setdefault(key, {})[m] = med
            cells += [f"{fmt(med)} {unit}", f"{med / statistics.median(base):.2f}"]
        print(f"| {label} | {fmt(statistics.median(base))} {unit} | " + " | ".join(cells) + " |")
if args.json:
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
PY
