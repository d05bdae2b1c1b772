// tests/conformance/cases_basic.cc: a connection's life as an application
// sees it: bytes both ways, half-close, EOF, a reset by unread data,
// gather/scatter calls.
#include <sys/socket.h>
#include <sys/uio.h>
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

namespace usmc::conform {
namespace {

// Gather and scatter calls: writev, sendmsg and sendmmsg with several
// iovecs each, read back with readv and recvmsg. On a connection that is
// TCP under usmc each must reach the kernel as one call of its own kind
// (conformance_test's TcpCallsKeepTheirShape counts them with strace: the
// client prints its socket's fd on stderr for that).
CONFORM_CASE(iovec_calls, 2) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  constexpr size_t kPiece = 1000;
  pid_t srv = Spawn([&] {
    int fd = AcceptOne(lfd);
    CCHECK(fd >= 0, "accept");
    // 3 (writev) + 3 (sendmsg) + 2 x 2 (sendmmsg) pieces, in order.
    std::vector<char> all(10 * kPiece);
    std::vector<iovec> iov;
    for (int i = 0; i < 10; ++i) iov.push_back({&all[i * kPiece], kPiece});
    size_t got = 0;
    while (got < all.size()) {
      // readv over the iovecs not yet filled (the first one partly).
      size_t skip = got / kPiece;
      std::vector<iovec> rest(iov.begin() + static_cast<long>(skip), iov.end());
      rest[0].iov_base = &all[got];
      rest[0].iov_len = kPiece - got % kPiece;
      ssize_t n = readv(fd, rest.data(), static_cast<int>(rest.size()));
      CCHECK(n > 0, "readv");
      got += static_cast<size_t>(n);
    }
    for (size_t i = 0; i < all.size(); ++i) {
      CCHECK(static_cast<uint8_t>(all[i]) == Pat(i, 5), "byte %zu", i);
    }
    Say("srv", "readv: %zu bytes in order", got);
    char reply[3][100];
    iovec riov[3] = {{reply[0], 100}, {reply[1], 100}, {reply[2], 100}};
    msghdr m{};
    m.msg_iov = riov;
    m.msg_iovlen = 3;
    CRUN(WriteAll(fd, "k", 1));  // the client sends its reply now
    ssize_t n = recvmsg(fd, &m, MSG_WAITALL);
    Say("srv", "recvmsg: %zd bytes, flags %d", n, m.msg_flags);
    for (int i = 0; i < 300 && n == 300; ++i) {
      CCHECK(reply[i / 100][i % 100] == 'r', "reply byte %d", i);
    }
    CRUN(ExpectEof(fd));
    Say("srv", "eof");
    return close(fd);
  });
  close(lfd);
  int fd = Connect(port);
  CCHECK(fd >= 0, "connect");
  std::fprintf(stderr, "iovec_calls: client pid %d fd %d\n",
               static_cast<int>(getpid()), fd);
  std::vector<char> all(10 * kPiece);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<char>(Pat(i, 5));
  iovec iov[10];
  for (int i = 0; i < 10; ++i) iov[i] = {&all[i * kPiece], kPiece};
  ssize_t n = writev(fd, iov, 3);
  Say("cli", "writev: %zd", n);
  msghdr m{};
  m.msg_iov = iov + 3;
  m.msg_iovlen = 3;
  n = sendmsg(fd, &m, 0);
  Say("cli", "sendmsg: %zd", n);
  mmsghdr mm[2]{};
  mm[0].msg_hdr.msg_iov = iov + 6;
  mm[0].msg_hdr.msg_iovlen = 2;
  mm[1].msg_hdr.msg_iov = iov + 8;
  mm[1].msg_hdr.msg_iovlen = 2;
  int r = sendmmsg(fd, mm, 2, 0);
  Say("cli", "sendmmsg: %d (%u, %u)", r, mm[0].msg_len, mm[1].msg_len);
  char c;
  CRUN(ReadExact(fd, &c, 1));
  std::vector<char> reply(300, 'r');
  iovec riov[3] = {
      {reply.data(), 50}, {reply.data() + 50, 150}, {reply.data() + 200, 100}};
  msghdr rm{};
  rm.msg_iov = riov;
  rm.msg_iovlen = 3;
  n = sendmsg(fd, &rm, 0);
  Say("cli", "sendmsg: %zd", n);
  CCHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
  CRUN(ExpectEof(fd));
  close(fd);
  return Reap(srv);
}

}  // namespace
}  // namespace usmc::conform
