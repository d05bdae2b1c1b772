#!/usr/bin/python3
"""tests/apps/check.py: helpers for the real-program tests (tests/apps/*.sh).

Two kinds of subcommands:
  * assertions on usmc's own status output: `report` (USMC_EXIT_REPORT lines)
    and `ss` (`usmc ss --json` while a program runs);
  * small programs with checked data, run as the apps under test: `xfer-server`
    / `xfer-client` (echo with half-close, SHA-256 compared), `fork-server`
    (forking and pre-forked), `aio-server` / `aio-client` (asyncio echo),
    `http-get` (urllib), `redis-check` (SET/GET over RESP), `blob`, `free-port`.

Every program exits 0 only when the data was right; a failure prints one line
starting with "FAIL" and exits 1.

  check.py report x.exit.jsonl --expect smcd>=1 --expect tcp==0
  check.py ss --usmc build/tools/usmc --comm sockperf --role client --expect mode=SMCD
"""
import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

REASON_PEERNOSMC = 0x03010000  # wire/reason.h kReasonPeerNoSmc


def fail(msg):
    print("FAIL " + msg, flush=True)
    sys.exit(1)


def blob(size, seed):
    return random.Random(seed).randbytes(size)


# ---------------------------------------------------------------- assertions
EXPECT_RE = re.compile(r"^([\w:.]+)(==|>=|<=|>|<|=|!=)(.+)$")


def compare(actual, op, want):
    if op in ("==", "="):
        return actual == want
    return {"!=": actual != want, ">=": actual >= want, "<=": actual <= want,
            ">": actual > want, "<": actual < want}[op]


def parse_expect(text):
    m = EXPECT_RE.match(text)
    if not m:
        fail(f"bad --expect {text!r}")
    key, op, value = m.groups()
    try:
        value = int(value, 0)
    except ValueError:
        pass
    return key, op, value


def load_reports(path):
    lines = []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError as e:
                    fail(f"{path}:{n}: not JSON ({e}): {line[:200]}")
    except FileNotFoundError:
        pass
    return lines


def sum_reports(lines):
    """Adds the counters of every line (a forking server writes several)."""
    total = {"lines": len(lines), "smcd": 0, "tcp": 0, "bytes_smcd_in": 0,
             "bytes_smcd_out": 0, "bytes_tcp_in": 0, "bytes_tcp_out": 0,
             "reasons": 0, "handshake_errors": 0}
    for line in lines:
        for k in ("smcd", "tcp", "bytes_smcd_in", "bytes_smcd_out",
                  "bytes_tcp_in", "bytes_tcp_out"):
            if k not in line:
                fail(f"exit report line without {k!r}: {json.dumps(line)}")
            total[k] += int(line[k])
        total["handshake_errors"] += int(line.get("handshake_errors", 0))
        for reason, n in line.get("fallback_reasons", {}).items():
            key = "reason:0x%08x" % int(reason, 16)
            total[key] = total.get(key, 0) + int(n)
            total["reasons"] += int(n)
    total["conns"] = total["smcd"] + total["tcp"]
    total["bytes_in"] = total["bytes_smcd_in"] + total["bytes_tcp_in"]
    total["bytes_out"] = total["bytes_smcd_out"] + total["bytes_tcp_out"]
    return total


def cmd_report(a):
    lines = load_reports(a.path)
    if a.comm:
        lines = [x for x in lines if x.get("comm") == a.comm]
    total = sum_reports(lines)
    if total["lines"] < a.min_lines:
        fail(f"{a.path}: {total['lines']} exit report line(s)"
             f"{' for comm ' + a.comm if a.comm else ''}, want >= {a.min_lines}")
    for e in a.expect:
        key, op, want = parse_expect(e)
        got = total.get(key, 0)
        if isinstance(want, str) and want in total:
            want = total[want]  # another counter: reasons==tcp
        if not compare(got, op, want):
            fail(f"{os.path.basename(a.path)}: {key} is {got}, want {op}{want}"
                 f" (sum of {total['lines']} line(s): {json.dumps(total)})")
    if a.print:
        print(json.dumps(total))


def cmd_bytes_match(a):
    """The bytes one side sent through usmc are the bytes the other received."""
    c = sum_reports(load_reports(a.client))
    s = sum_reports(load_reports(a.server))
    for cdir, sdir in (("out", "in"), ("in", "out")):
        for kind in a.kind or ("smcd", "tcp"):
            ck, sk = f"bytes_{kind}_{cdir}", f"bytes_{kind}_{sdir}"
            if cdir == "in" and a.unread_ok:
                # A client may end with replies unread (sockperf stops at
                # its deadline): it cannot have read more than was sent.
                if c[ck] > s[sk]:
                    fail(f"client {ck}={c[ck]} > server {sk}={s[sk]}")
            elif c[ck] != s[sk]:
                fail(f"client {ck}={c[ck]} but server {sk}={s[sk]}")
    if a.min_bytes and c["bytes_out"] < a.min_bytes:
        fail(f"client sent {c['bytes_out']} bytes per usmc, want >= {a.min_bytes}")


def cmd_stats_report(a):
    """Prints process PID's counters (`usmc stats`) as one exit report line.

    For a server that ends by a signal (git daemon on SIGTERM) and so writes
    no exit report of its own, yet may have counted connections: those whose
    handshake its progress thread finished before it forked the child that
    serves them.
    """
    r = subprocess.run([a.usmc, "stats", "--json", "-a", "-p", str(a.pid)],
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        fail(f"usmc stats -p {a.pid}: exit {r.returncode}: {r.stderr.strip()[:300]}")
    try:
        procs = json.loads(r.stdout)["processes"]
    except (json.JSONDecodeError, KeyError) as e:
        fail(f"usmc stats --json: bad output ({e}): {r.stdout[:300]}")
    if len(procs) != 1:
        fail(f"usmc stats -p {a.pid}: {len(procs)} process(es), want 1")
    c = procs[0]["counters"]
    conns = c["connections"]
    reasons = {}
    for e in c["fallback_reasons"]:
        reasons[e["hex"]] = reasons.get(e["hex"], 0) + int(e["count"])
    print(json.dumps({
        "pid": procs[0]["pid"], "comm": procs[0]["comm"], "source": "status",
        "smcd": sum(conns["smc"].values()),
        "tcp": sum(conns["tcp_fallback"].values()),
        "handshake_errors": sum(conns["handshake_errors"].values()),
        "fallback_reasons": reasons,
        "bytes_smcd_in": c["rx"]["bytes_smc"], "bytes_smcd_out": c["tx"]["bytes_smc"],
        "bytes_tcp_in": c["rx"]["bytes_tcp"], "bytes_tcp_out": c["tx"]["bytes_tcp"]}))


def ss_snapshot(usmc):
    r = subprocess.run([usmc, "ss", "--json"], capture_output=True, text=True,
                       timeout=20)
    if r.returncode != 0:
        fail(f"usmc ss --json exit {r.returncode}: {r.stderr.strip()[:300]}")
    try:
        return json.loads(r.stdout)["connections"]
    except (json.JSONDecodeError, KeyError) as e:
        fail(f"usmc ss --json: bad output ({e}): {r.stdout[:300]}")


def cmd_ss(a):
    """Waits until >= min connections match, then checks each of them."""
    deadline = time.monotonic() + a.timeout
    while True:
        conns = [c for c in ss_snapshot(a.usmc)
                 if (not a.comm or c.get("comm") == a.comm)
                 and (not a.role or c.get("role") == a.role)
                 and (not a.pid or c.get("pid") == a.pid)]
        settled = [c for c in conns if c.get("mode") != "HANDSHAKE"]
        if len(settled) >= a.min:
            break
        if time.monotonic() > deadline:
            fail(f"usmc ss: {len(settled)} settled connection(s) for "
                 f"comm={a.comm} role={a.role} after {a.timeout}s, want >= "
                 f"{a.min}; seen: {json.dumps(conns)[:600]}")
        time.sleep(0.1)
    for c in settled:
        for e in a.expect:
            key, op, want = parse_expect(e)
            if key not in c:
                fail(f"usmc ss: connection without {key!r}: {json.dumps(c)}")
            if not compare(c[key], op, want):
                fail(f"usmc ss: {key} is {c[key]!r}, want {op}{want!r}: "
                     f"{json.dumps(c)}")
    print(f"ss: {len(settled)} connection(s) ok")


# ------------------------------------------------------------ echo transfer
CHUNK = 64 * 1024


def echo_conn(conn):
    """Echoes until EOF, then closes; returns the bytes echoed."""
    n = 0
    while True:
        data = conn.recv(CHUNK)
        if not data:
            break
        conn.sendall(data)
        n += len(data)
    conn.shutdown(socket.SHUT_WR)
    conn.close()
    return n


def listen(host, port, backlog=128):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(backlog)
    return s


def cmd_xfer_server(a):
    s = listen(a.host, a.port)
    threads, totals = [], []
    for _ in range(a.conns):
        conn, _ = s.accept()
        t = threading.Thread(target=lambda c=conn: totals.append(echo_conn(c)))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    s.close()
    print(json.dumps({"conns": len(totals), "bytes": sum(totals)}), flush=True)


def xfer_one(host, port, size, seed, write_size, results):
    data = blob(size, seed)
    s = socket.create_connection((host, port))
    got = bytearray()

    def reader():
        while True:
            chunk = s.recv(CHUNK)
            if not chunk:
                return
            got.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    view = memoryview(data)
    for off in range(0, size, write_size):
        s.sendall(view[off:off + write_size])
    s.shutdown(socket.SHUT_WR)
    t.join()
    s.close()
    ok = hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    results.append((ok, len(got), size))


def cmd_xfer_client(a):
    before = None
    if a.leak_check:
        # One connection first: what usmc sets up once per process (its
        # status file, a progress thread) is not a leak.
        warm = []
        xfer_one(a.host, a.port, 1024, a.seed, a.write_size, warm)
        if not warm[0][0]:
            fail("xfer: the warm-up connection echoed wrong data")
        time.sleep(1.5)  # a progress thread ends a second after its last job
        before = process_resources()
    results, threads = [], []
    for i in range(a.conns):
        t = threading.Thread(target=xfer_one,
                             args=(a.host, a.port, a.size, a.seed + i,
                                   a.write_size, results))
        t.start()
        threads.append(t)
        if not a.parallel:
            t.join()
    for t in threads:
        t.join()
    bad = [r for r in results if not r[0]]
    if len(results) != a.conns or bad:
        fail(f"xfer: {len(results)}/{a.conns} connections finished, "
             f"{len(bad)} with wrong data: {bad[:3]}")
    if before:
        # Every connection is closed: usmc must have let go of its fds and
        # mappings (threads of this process are gone too).
        for _ in range(30):  # closes under way, a progress thread ending
            after = process_resources()
            if after["fds"] == before["fds"] and after["dmb_maps"] == before["dmb_maps"]:
                break
            time.sleep(0.1)
        if after["fds"] != before["fds"] or after["dmb_maps"] != before["dmb_maps"]:
            fail(f"xfer: after {a.conns} connections the process holds {after}, "
                 f"before it held {before}")
    print(json.dumps({"conns": a.conns, "bytes": a.conns * a.size}), flush=True)


# -------------------------------------------------------------------- soak
def process_resources(pid="self"):
    """What a process holds that usmc could leak: fds, usmc's mappings, RSS."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/maps") as f:
        # DMB memfds, and the arenas that hold DMBs by default.
        maps = sum(1 for line in f if "usmc-dmb" in line or "usmc-arena" in line)
    with open(f"/proc/{pid}/status") as f:
        rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return {"fds": fds, "dmb_maps": maps, "rss_kib": rss_kib}


def steady_resources(**extra):
    """process_resources for soak.sh's before/after comparison, taken the
    same way each time: once no thread but the interpreter's own runs
    (usmc's progress thread ends about a second after the last handshake
    it drove, and closes its eventfd then), from one listing of the fds
    that also names each ("fds" does not count the listing's own)."""
    for _ in range(100):  # 10 s at most
        if len(os.listdir("/proc/self/task")) <= threading.active_count():
            break
        time.sleep(0.1)
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass  # the listing's own fd
    return dict(process_resources(), fds=len(links), fd_links=sorted(links),
                os_threads=len(os.listdir("/proc/self/task")),
                threads=threading.active_count(), **extra)


def cmd_soak_server(a):
    """Echo server with a thread per connection until SIGTERM. A connection
    whose client was killed ends with a reset or an early EOF: counted as
    cut, not failed. Prints its counts and, on SIGUSR1, its resources into
    --resources (after a moment for closes under way)."""
    s = listen(a.host, a.port, backlog=512)
    counts = {"served": 0, "cut": 0}
    lock = threading.Lock()

    def serve(conn):
        try:
            echo_conn(conn)
            key = "served"
        except OSError:
            key = "cut"
            conn.close()
        with lock:
            counts[key] += 1

    def dump(*_):
        r = steady_resources(**counts)
        with open(a.resources, "w") as f:
            json.dump(r, f)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, dump)
    s.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = s.accept()
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        conn.settimeout(None)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    s.close()
    print(json.dumps(counts), flush=True)


def stream_until_cut(s, data, stop):
    """Sends `data` over and over, checking the echo, until the connection
    ends. "cut" (a reset, an error, an EOF), "hung" (a call that waited
    60 s: a dead peer must end the connection) or "bad" (an echoed byte
    that was not sent)."""
    s.settimeout(60)
    verdict = {}
    n, twice = len(data), data + data

    def reader():
        pos = 0
        try:
            while True:
                chunk = s.recv(CHUNK)
                if not chunk:
                    break
                want = twice[pos % n:pos % n + len(chunk)]
                if len(chunk) > n or chunk != want:
                    verdict["bad"] = True
                    break
                pos += len(chunk)
        except socket.timeout:
            verdict["hung"] = True
        except OSError:
            pass

    t = threading.Thread(target=reader)
    t.start()
    try:
        while not stop.is_set() and t.is_alive():
            s.sendall(data)
    except socket.timeout:
        verdict["hung"] = True
    except OSError:
        pass
    # Our side is done writing either way: the reader's EOF or error follows.
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    t.join()
    s.close()
    return "bad" if "bad" in verdict else "hung" if "hung" in verdict else "cut"


def cmd_soak_survivor(a):
    """A client under usmc whose servers soak.sh SIGKILLs: on SIGUSR2 (a
    server listens on --port now) it connects and streams to that echo
    server until the connection is cut; until SIGTERM. It connects only
    when told: retrying a port nothing listens on may connect a socket to
    itself (TCP simultaneous open). On SIGUSR1, once no connection is open
    (between two servers), its resources and counts into --resources."""
    counts = {"connections": 0, "refused": 0, "cut": 0, "hung": 0, "bad": 0}
    stop, dump_asked, go = (threading.Event() for _ in range(3))
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: dump_asked.set())
    signal.signal(signal.SIGUSR2, lambda *_: go.set())
    data = blob(1 << 20, a.seed)
    print("ready", flush=True)  # the signals are ours now
    while not stop.is_set():
        if dump_asked.is_set():
            dump_asked.clear()
            r = steady_resources(**counts)
            with open(a.resources, "w") as f:
                json.dump(r, f)
        if not go.wait(0.1):
            continue
        go.clear()
        try:
            s = socket.create_connection((a.host, a.port), timeout=60)
        except socket.timeout:
            counts["hung"] += 1
            continue
        except OSError:
            counts["refused"] += 1
            continue
        counts["connections"] += 1
        counts[stream_until_cut(s, data, stop)] += 1
    print(json.dumps(counts), flush=True)


# ----------------------------------------------------------- forking servers
def serve_and_exit(conn):
    try:
        echo_conn(conn)
        code = 0
    except OSError as e:
        print(f"worker {os.getpid()}: {e}", file=sys.stderr, flush=True)
        code = 1
    sys.exit(code)  # normal exit (atexit runs): the exit report is written


def cmd_fork_server(a):
    s = listen(a.host, a.port)
    children, failed = [], 0
    if a.mode == "fork":
        # accept, fork, the child serves, the parent closes.
        for _ in range(a.conns):
            conn, _ = s.accept()
            pid = os.fork()
            if pid == 0:
                s.close()
                serve_and_exit(conn)
            conn.close()
            children.append(pid)
    else:
        # listen, fork N workers, each accepts; the parent counts the served
        # connections through a pipe and then stops the workers.
        rd, wr = os.pipe()
        for _ in range(a.workers):
            pid = os.fork()
            if pid == 0:
                os.close(rd)
                signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
                while True:
                    conn, _ = s.accept()
                    try:
                        echo_conn(conn)
                    except OSError as e:
                        print(f"worker {os.getpid()}: {e}", file=sys.stderr)
                        os.write(wr, b"x")
                        continue
                    os.write(wr, b".")
            children.append(pid)
        os.close(wr)
        s.close()
        served = b""
        while len(served) < a.conns:
            chunk = os.read(rd, a.conns - len(served))
            if not chunk:
                break
            served += chunk
        failed += served.count(b"x")
        for pid in children:
            os.kill(pid, signal.SIGTERM)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            failed += 1
    if failed:
        fail(f"fork-server ({a.mode}): {failed} worker(s)/connection(s) failed")
    print(json.dumps({"mode": a.mode, "children": len(children)}), flush=True)


# ------------------------------------------------------------ asyncio echo
def cmd_aio_server(a):
    async def main():
        done = asyncio.Event()
        count = 0

        async def handle(reader, writer):
            nonlocal count
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            count += 1
            if count == a.conns:
                done.set()

        server = await asyncio.start_server(handle, a.host, a.port)
        async with server:
            await done.wait()
    asyncio.run(main())
    print(json.dumps({"conns": a.conns}), flush=True)


def cmd_aio_client(a):
    async def one(i):
        data = blob(a.size, a.seed + i)
        reader, writer = await asyncio.open_connection(a.host, a.port)

        async def send():
            for off in range(0, len(data), 16 * 1024):
                writer.write(data[off:off + 16 * 1024])
                await writer.drain()
            writer.write_eof()
        sender = asyncio.create_task(send())
        got = await reader.read()  # until EOF
        await sender
        writer.close()
        await writer.wait_closed()
        return got == data

    async def main():
        return await asyncio.gather(*(one(i) for i in range(a.conns)))
    oks = asyncio.run(main())
    if not all(oks):
        fail(f"aio: {oks.count(False)}/{a.conns} connections echoed wrong data")
    print(json.dumps({"conns": a.conns, "bytes": a.conns * a.size}))


# -------------------------------------------------------------------- http
def cmd_http_get(a):
    for _ in range(a.times):
        with urllib.request.urlopen(a.url, timeout=60) as r:
            body = r.read()
            if r.status != 200:
                fail(f"GET {a.url}: status {r.status}")
        digest = hashlib.sha256(body).hexdigest()
        if digest != a.sha256:
            fail(f"GET {a.url}: {len(body)} bytes, sha256 {digest} != {a.sha256}")
    print(json.dumps({"gets": a.times, "bytes": len(body)}))


# ------------------------------------------------------------------- redis
def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for x in args:
        x = x if isinstance(x, bytes) else str(x).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(x), x))
    return b"".join(out)


class RespReader:
    def __init__(self, sock):
        self.sock, self.buf = sock, bytearray()

    def _fill(self):
        data = self.sock.recv(CHUNK)
        if not data:
            fail("redis: connection closed")
        self.buf.extend(data)

    def _line(self):
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return (kind, rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data = bytes(self.buf[:n])
            del self.buf[:n + 2]
            return data
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        fail(f"redis: bad reply {line[:80]!r}")


def cmd_redis_check(a):
    s = socket.create_connection((a.host, a.port))
    r = RespReader(s)
    rng = random.Random(a.seed)
    sizes = [0, 1, 14, 1000, 4096, 65536, 1 << 20] + \
        [rng.randrange(1, 20000) for _ in range(a.keys)]
    values = {f"usmc:{a.seed}:{i}": rng.randbytes(n) for i, n in enumerate(sizes)}
    # One at a time (request, reply), then the same pipelined.
    for k, v in values.items():
        s.sendall(resp("SET", k, v))
        if r.read() != (b"+", b"OK"):
            fail(f"redis: SET {k} not OK")
        s.sendall(resp("GET", k))
        if r.read() != v:
            fail(f"redis: GET {k} returned other bytes than were SET")
    s.sendall(b"".join(resp("APPEND", k, b"!") for k in values))
    for k, v in values.items():
        if r.read() != len(v) + 1:
            fail(f"redis: APPEND {k} wrong length")
    s.sendall(b"".join(resp("GET", k) for k in values))
    for k, v in values.items():
        if r.read() != v + b"!":
            fail(f"redis: pipelined GET {k} wrong bytes")
    keys = list(values)
    s.sendall(resp("MGET", *keys))
    if r.read() != [values[k] + b"!" for k in keys]:
        fail("redis: MGET wrong")
    s.sendall(resp("DEL", *keys))
    if r.read() != len(keys):
        fail("redis: DEL count wrong")
    s.close()
    print(json.dumps({"keys": len(keys),
                      "bytes": sum(len(v) for v in values.values())}))


# --------------------------------------------------------------- memcached
class LineReader:
    def __init__(self, sock):
        self.sock, self.buf = sock, bytearray()

    def _fill(self):
        data = self.sock.recv(CHUNK)
        if not data:
            fail("memcached: connection closed")
        self.buf.extend(data)

    def line(self):
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data


def mc_get_reply(r, keys):
    """Values of a get/gets reply (VALUE k flags n [cas]\r\ndata\r\n ... END)."""
    got = {}
    while True:
        line = r.line()
        if line == b"END":
            return got
        f = line.split()
        if len(f) < 4 or f[0] != b"VALUE":
            fail(f"memcached: bad reply {line[:80]!r}")
        data = r.exact(int(f[3]) + 2)
        if data[-2:] != b"\r\n":
            fail("memcached: value not followed by CRLF")
        got[f[1].decode()] = data[:-2]


def cmd_memcached_check(a):
    """Random values, 0 B to 1 MiB, stored and read back over the text
    protocol: one at a time, then pipelined, then one multi-get (memcached
    builds these replies with sendmsg of several iovecs)."""
    s = socket.create_connection((a.host, a.port))
    r = LineReader(s)
    rng = random.Random(a.seed)
    sizes = [0, 1, 14, 1000, 4096, 65536, 1000000] + \
        [rng.randrange(1, 20000) for _ in range(a.keys)]
    values = {f"usmc:{a.seed}:{i}": rng.randbytes(n) for i, n in enumerate(sizes)}
    for k, v in values.items():
        s.sendall(b"set %s 7 0 %d\r\n%s\r\n" % (k.encode(), len(v), v))
        if (line := r.line()) != b"STORED":
            fail(f"memcached: set {k}: {line[:80]!r}")
        s.sendall(b"get %s\r\n" % k.encode())
        if mc_get_reply(r, [k]) != {k: v}:
            fail(f"memcached: get {k} returned other bytes than were set")
    s.sendall(b"".join(b"append %s 0 0 1\r\n!\r\n" % k.encode() for k in values))
    for k in values:
        if (line := r.line()) != b"STORED":
            fail(f"memcached: append {k}: {line[:80]!r}")
    s.sendall(b"".join(b"get %s\r\n" % k.encode() for k in values))
    for k, v in values.items():
        if mc_get_reply(r, [k]) != {k: v + b"!"}:
            fail(f"memcached: pipelined get {k} wrong bytes")
    keys = list(values)
    s.sendall(b"get " + b" ".join(k.encode() for k in keys) + b"\r\n")
    if mc_get_reply(r, keys) != {k: values[k] + b"!" for k in keys}:
        fail("memcached: multi-get wrong")
    s.sendall(b"".join(b"delete %s\r\n" % k.encode() for k in keys))
    for k in keys:
        if (line := r.line()) != b"DELETED":
            fail(f"memcached: delete {k}: {line[:80]!r}")
    s.close()
    print(json.dumps({"keys": len(keys),
                      "bytes": sum(len(v) for v in values.values())}))


# ------------------------------------------------------------------ iperf3
def cmd_iperf3(a):
    """iperf3 -J output of both ends, and usmc's byte counters against it.

    iperf3 stops the receiver when the sender is done, so received may be a
    little short of sent; usmc's counters must bracket what iperf3 saw."""
    ends = {}
    for side, path in (("client", a.client_json), ("server", a.server_json)):
        try:
            with open(path) as f:
                j = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            fail(f"iperf3 {side}: no JSON output ({e})")
        if j.get("error"):
            fail(f"iperf3 {side}: {j['error']}")
        if len(j["start"]["connected"]) != a.streams:
            fail(f"iperf3 {side}: {len(j['start']['connected'])} streams, "
                 f"want {a.streams}")
        ends[side] = j["end"]
    if a.bidir:
        # Both directions at once; the run ends when the first is done, so
        # neither has to reach --bytes. Each stream checks the total only
        # after a whole block (128 KiB), so one that finishes may overshoot
        # by a block per stream of its direction (seen in CI: 256 MiB +
        # 128 KiB with one stream each way).
        limit = a.bytes + (a.streams // 2) * (128 << 10)
        for sender, receiver, suffix in (("client", "server", ""),
                                         ("server", "client", "_bidir_reverse")):
            sent = ends[sender]["sum_sent" + suffix]["bytes"]
            received = ends[receiver]["sum_received" + suffix]["bytes"]
            if not 0 < received <= sent <= limit:
                fail(f"iperf3 --bidir: {sender} sent {sent}, {receiver} "
                     f"received {received} (limit {limit})")
        print(json.dumps({"bidir": "ok"}))
        return
    sender, receiver = ("server", "client") if a.reverse else ("client", "server")
    sent = ends[sender]["sum_sent"]["bytes"]
    received = ends[receiver]["sum_received"]["bytes"]
    # Each stream checks the total after a whole block (128 KiB for TCP), so
    # parallel senders may overshoot by up to a block each.
    if not a.bytes <= sent <= a.bytes + a.streams * (128 << 10):
        fail(f"iperf3: {sender} sent {sent} bytes, want {a.bytes} "
             f"(+ at most a 128 KiB block per stream)")
    if not 0 < received <= sent:
        fail(f"iperf3: {receiver} received {received} of {sent} bytes")
    if a.client_report:
        rep = {"client": sum_reports(load_reports(a.client_report)),
               "server": sum_reports(load_reports(a.server_report))}
        out, inn = rep[sender]["bytes_out"], rep[receiver]["bytes_in"]
        if out < sent:
            fail(f"usmc counted {out} bytes out of the {sender}, iperf3 sent {sent}")
        if inn < received:
            fail(f"usmc counted {inn} bytes into the {receiver}, iperf3 "
                 f"received {received}")
        if inn > out:
            fail(f"usmc: {receiver} read {inn} bytes, {sender} wrote only {out}")
    print(json.dumps({"sent": sent, "received": received}))


# ------------------------------------------------------------------- misc
def cmd_blob(a):
    data = blob(a.size, a.seed)
    with open(a.out, "wb") as f:
        f.write(data)
    print(hashlib.sha256(data).hexdigest())


def cmd_free_port(a):
    with socket.socket(socket.AF_INET6 if a.v6 else socket.AF_INET) as s:
        s.bind(("::1" if a.v6 else "127.0.0.1", 0))
        print(s.getsockname()[1])


def cmd_wait_listen(a):
    """Waits for a listener on port without connecting to it (a probe
    connection would count in the server's usmc statistics)."""
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-Hltn", f"sport = :{a.port}"],
                             capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.05)
    fail(f"nothing listens on port {a.port} after {a.timeout}s")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, fn, *args):
        sp = sub.add_parser(name)
        sp.set_defaults(fn=fn)
        for flags, kw in args:
            sp.add_argument(*flags, **kw)
        return sp

    host = (["--host"], {"default": "127.0.0.1"})
    port = (["--port"], {"type": int, "required": True})
    conns = (["--conns"], {"type": int, "default": 1})
    size = (["--size"], {"type": int, "default": 1 << 20})
    seed = (["--seed"], {"type": int, "default": 1})
    add("report", cmd_report, (["path"], {}), (["--comm"], {}),
        (["--min-lines"], {"type": int, "default": 1}),
        (["--expect"], {"action": "append", "default": []}),
        (["--print"], {"action": "store_true"}))
    add("bytes-match", cmd_bytes_match, (["--client"], {"required": True}),
        (["--server"], {"required": True}),
        (["--min-bytes"], {"type": int, "default": 0}),
        (["--unread-ok"], {"action": "store_true"}),
        # only these counters (a plain peer of the server writes no report)
        (["--kind"], {"action": "append", "choices": ["smcd", "tcp"]}))
    add("ss", cmd_ss, (["--usmc"], {"required": True}), (["--comm"], {}),
        (["--role"], {}), (["--pid"], {"type": int}),
        (["--min"], {"type": int, "default": 1}),
        (["--timeout"], {"type": float, "default": 20}),
        (["--expect"], {"action": "append", "default": []}))
    add("stats-report", cmd_stats_report, (["--usmc"], {"required": True}),
        (["--pid"], {"type": int, "required": True}))
    add("xfer-server", cmd_xfer_server, host, port, conns)
    add("xfer-client", cmd_xfer_client, host, port, conns, size, seed,
        (["--parallel"], {"action": "store_true"}),
        (["--leak-check"], {"action": "store_true"}),
        (["--write-size"], {"type": int, "default": CHUNK}))
    add("fork-server", cmd_fork_server, host, port, conns,
        (["--mode"], {"choices": ["fork", "prefork"], "required": True}),
        (["--workers"], {"type": int, "default": 4}))
    add("aio-server", cmd_aio_server, host, port, conns)
    add("soak-server", cmd_soak_server, host, port,
        (["--resources"], {"required": True}))
    add("soak-survivor", cmd_soak_survivor, host, port, seed,
        (["--resources"], {"required": True}))
    add("aio-client", cmd_aio_client, host, port, conns, size, seed)
    add("http-get", cmd_http_get, (["url"], {}),
        (["--sha256"], {"required": True}),
        (["--times"], {"type": int, "default": 1}))
    add("redis-check", cmd_redis_check, host, port, seed,
        (["--keys"], {"type": int, "default": 200}))
    add("memcached-check", cmd_memcached_check, host, port, seed,
        (["--keys"], {"type": int, "default": 200}))
    add("iperf3", cmd_iperf3, (["--client-json"], {"required": True}),
        (["--server-json"], {"required": True}),
        (["--bytes"], {"type": int, "required": True}),
        (["--streams"], {"type": int, "default": 1}),
        (["--reverse"], {"action": "store_true"}),
        (["--bidir"], {"action": "store_true"}),
        (["--client-report"], {}), (["--server-report"], {}))
    add("blob", cmd_blob, (["out"], {}), size, seed)
    add("free-port", cmd_free_port, (["--v6"], {"action": "store_true"}))
    add("wait-listen", cmd_wait_listen, port,
        (["--timeout"], {"type": float, "default": 20}))
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
