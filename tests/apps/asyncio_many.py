#!/usr/bin/python3
"""tests/apps/asyncio_many.py: many concurrent asyncio connections, every byte
checked (issue 16, item 1).

The client opens --conns connections at once; each sends --msgs messages
(a 4-byte big-endian length, then that many pseudo-random bytes) and reads
for each the SHA-256 of the payload back from the server. Under load some
handshakes fall back to TCP: nothing of the CLC exchange may reach either
application, and no connection may be reset.

  asyncio_many.py server --port P --conns N    # exits after N connections
  asyncio_many.py client --port P --conns N --msgs 10

Each side prints one JSON line with its counts and exits 1 if any message was
wrong, any connection was reset or failed.
"""
import argparse
import asyncio
import hashlib
import json
import random
import resource
import struct
import sys


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def server(a):
    stats = {"conns": 0, "msgs": 0, "bad": 0, "resets": 0, "errors": 0}

    async def main():
        done = asyncio.Event()

        async def handle(reader, writer):
            try:
                while True:
                    try:
                        head = await reader.readexactly(4)
                    except asyncio.IncompleteReadError as e:
                        if e.partial:  # a torn length prefix
                            stats["bad"] += 1
                        break
                    (n,) = struct.unpack(">I", head)
                    if n > a.max_size:  # CLC bytes read as a length, say
                        stats["bad"] += 1
                        print(f"bad length prefix {head.hex()}", file=sys.stderr)
                        break
                    body = await reader.readexactly(n)
                    writer.write(hashlib.sha256(body).digest())
                    await writer.drain()
                    stats["msgs"] += 1
            except ConnectionResetError:
                stats["resets"] += 1
            except Exception as e:  # pylint: disable=broad-except
                stats["errors"] += 1
                print(f"server: {type(e).__name__}: {e}", file=sys.stderr)
            finally:
                writer.close()
                try:
                    await writer.wait_closed()
                except Exception:  # pylint: disable=broad-except
                    pass
                stats["conns"] += 1
                if stats["conns"] == a.conns:
                    done.set()

        srv = await asyncio.start_server(handle, a.host, a.port,
                                         backlog=min(a.conns, 4096))
        async with srv:
            await done.wait()

    asyncio.run(main())
    print(json.dumps(stats), flush=True)
    return 1 if stats["bad"] or stats["resets"] or stats["errors"] else 0


def client(a):
    stats = {"conns": 0, "msgs": 0, "wrong": 0, "resets": 0, "errors": 0}

    async def one(i):
        rng = random.Random(a.seed * 100003 + i)
        try:
            reader, writer = await asyncio.open_connection(a.host, a.port)
        except OSError as e:
            stats["errors"] += 1
            print(f"client {i}: connect: {e}", file=sys.stderr)
            return
        try:
            for _ in range(a.msgs):
                body = rng.randbytes(rng.randint(1, a.max_size))
                writer.write(struct.pack(">I", len(body)) + body)
                await writer.drain()
                got = await reader.readexactly(32)
                if got != hashlib.sha256(body).digest():
                    stats["wrong"] += 1
                    print(f"client {i}: wrong reply {got[:8].hex()}",
                          file=sys.stderr)
                    break  # the stream is out of step from here on
                stats["msgs"] += 1
            writer.write_eof()
            rest = await reader.read()
            if rest:
                stats["wrong"] += 1
                print(f"client {i}: {len(rest)} stray bytes {rest[:8].hex()}",
                      file=sys.stderr)
            stats["conns"] += 1
        except ConnectionResetError:
            stats["resets"] += 1
            print(f"client {i}: reset", file=sys.stderr)
        except Exception as e:  # pylint: disable=broad-except
            stats["errors"] += 1
            print(f"client {i}: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except Exception:  # pylint: disable=broad-except
                pass

    async def main():
        await asyncio.gather(*(one(i) for i in range(a.conns)))

    asyncio.run(main())
    print(json.dumps(stats), flush=True)
    ok = (stats["conns"] == a.conns and stats["msgs"] == a.conns * a.msgs)
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["server", "client"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=400)
    p.add_argument("--msgs", type=int, default=10)
    p.add_argument("--max-size", type=int, default=4096)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    raise_fd_limit(2 * a.conns + 256)
    sys.exit(server(a) if a.role == "server" else client(a))


if __name__ == "__main__":
    main()
