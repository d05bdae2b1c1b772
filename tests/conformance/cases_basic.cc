// tests/conformance/cases_basic.cc: a connection's life as an application
// sees it: bytes both ways, half-close, EOF, a reset by unread data.
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "tests/conformance/conform.h"

namespace usmc::conform {
namespace {

constexpr size_t kBig = 3 << 20;  // larger than a DMB: the ring wraps

// Bytes both ways at once (a sending thread beside the reading one), then
// each side half-closes. (Two processes sharing one connection at the same
// time after fork is not supported: docs/preload.md.)
CONFORM_CASE(stream_both_ways, 2) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  pid_t srv = Spawn([&] {
    int fd = AcceptOne(lfd);
    CCHECK(fd >= 0, "accept");
    int sent = -1;
    std::thread tx([&] { sent = SendPat(fd, 0, kBig, 2); });
    const int got = RecvPat(fd, 0, kBig, 1);
    tx.join();
    CCHECK(got == 0 && sent == 0, "both ways");
    Say("srv", "received %zu bytes", kBig);
    CCHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
    CRUN(ExpectEof(fd));
    Say("srv", "eof");
    return close(fd);
  });
  close(lfd);
  int fd = Connect(port);
  CCHECK(fd >= 0, "connect");
  int sent = -1;
  std::thread tx([&] { sent = SendPat(fd, 0, kBig, 1); });
  const int got = RecvPat(fd, 0, kBig, 2);
  tx.join();
  CCHECK(got == 0 && sent == 0, "both ways");
  Say("cli", "received %zu bytes", kBig);
  CRUN(ExpectEof(fd));
  Say("cli", "eof");
  CCHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
  close(fd);
  return Reap(srv);
}

// A peer that closes with bytes of ours unread resets the connection: the
// bytes it sent first stay readable, then ECONNRESET, then EPIPE.
CONFORM_CASE(close_with_unread_data_resets, 2) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  int sync[2];
  CCHECK(pipe(sync) == 0, "pipe");
  pid_t srv = Spawn([&] {
    int fd = AcceptOne(lfd);
    CCHECK(fd >= 0, "accept");
    CRUN(SendPat(fd, 0, 1000, 3));
    char c;
    CRUN(ReadExact(sync[0], &c, 1));  // the client's bytes are here
    Say("srv", "closing with unread bytes");
    return close(fd);
  });
  close(lfd);
  int fd = Connect(port);
  CCHECK(fd >= 0, "connect");
  CRUN(SendPat(fd, 0, 100, 4));
  CRUN(WriteAll(sync[1], "x", 1));
  CCHECK(Reap(srv) == 0, "server");
  CRUN(RecvPat(fd, 0, 1000, 3));
  Say("cli", "read the 1000 bytes sent before the reset");
  char buf[16];
  ssize_t n = read(fd, buf, sizeof buf);
  Say("cli", "read: %zd errno %s", n, n < 0 ? strerrorname_np(errno) : "-");
  n = write(fd, buf, 1);
  Say("cli", "write: %zd errno %s", n, n < 0 ? strerrorname_np(errno) : "-");
  close(fd);
  return 0;
}

}  // namespace
}  // namespace usmc::conform
