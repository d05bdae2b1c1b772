#!/usr/bin/env python3
"""Connection setup against a server that holds many fds (bench/apps_bench.sh).

  setup_fds.py server PORT FDS   listens; holds FDS extra open files; answers
                                 each connection's byte; "q" ends it
  setup_fds.py client PORT N     N connections one after another, each
                                 connect + one byte each way + close; prints
                                 the p50 in microseconds

usmc proves who its peer is from the peer's fd table; a server with
thousands of connections once made each new one read all of them.
"""
import os
import resource
import socket
import sys
import time


def server(port, fds):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(fds)]
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    while True:
        c, _ = s.accept()
        b = c.recv(1)
        if b != b"q":
            c.sendall(b)
        c.close()
        if b == b"q":
            break
    del held


def client(port, n):
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"x")
        if c.recv(1) != b"x":
            sys.exit("setup_fds: wrong echo")
        lat.append((time.perf_counter() - t) * 1e6)
        c.close()
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"q")
    c.close()
    lat.sort()
    print(f"p50_us {lat[len(lat) // 2]:.1f}")


if __name__ == "__main__":
    what, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    (server if what == "server" else client)(port, count)
