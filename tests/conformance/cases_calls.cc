// tests/conformance/cases_calls.cc: the calls' own semantics on an
// established connection: non-blocking connect, MSG_PEEK and MSG_WAITALL,
// FIONREAD, EAGAIN, SO_RCVLOWAT, shutdown(SHUT_RD), urgent data.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/conformance/conform.h"

namespace usmc::conform {
namespace {

// A server that runs `serve` on one accepted connection.
template <typename F>
pid_t Serve(int lfd, F serve) {
  return Spawn([lfd, serve] {
    int fd = AcceptOne(lfd);
    CCHECK(fd >= 0, "accept");
    CRUN(serve(fd));
    return close(fd);
  });
}

const char* Err(ssize_t r) { return r < 0 ? strerrorname_np(errno) : "-"; }

CONFORM_CASE(nonblocking_connect_then_poll, 2) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  pid_t srv = Serve(lfd, [](int fd) {
    CRUN(RecvPat(fd, 0, 5000, 11));
    Say("srv", "got 5000 bytes");
    return SendPat(fd, 0, 7000, 12);
  });
  close(lfd);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  int r = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  CCHECK(r == 0 || errno == EINPROGRESS, "connect");
  pollfd p{fd, POLLOUT, 0};
  CCHECK(poll(&p, 1, 10000) == 1, "poll");
  Say("cli", "poll after connect: %s", EventNames(p.revents).c_str());
  int err = -1;
  socklen_t len = sizeof err;
  CCHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0, "SO_ERROR");
  Say("cli", "SO_ERROR %d", err);
  char c;
  ssize_t n = recv(fd, &c, 1, 0);
  Say("cli", "recv before any data: %zd %s", n, Err(n));
  SetNonblock(fd, false);
  CRUN(SendPat(fd, 0, 5000, 11));
  CRUN(RecvPat(fd, 0, 7000, 12));
  Say("cli", "got 7000 bytes");
  close(fd);
  return Reap(srv);
}

CONFORM_CASE(peek_waitall_fionread_rcvlowat, 2) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  int go[2];
  CCHECK(pipe(go) == 0, "pipe");
  pid_t srv = Serve(lfd, [&](int fd) {
    char c;
    CRUN(SendPat(fd, 0, 1000, 13));
    CRUN(ReadExact(go[0], &c, 1));
    CRUN(SendPat(fd, 1000, 1000, 13));
    CRUN(ReadExact(go[0], &c, 1));
    CRUN(SendPat(fd, 2000, 100, 13));
    CRUN(ReadExact(go[0], &c, 1));
    CRUN(SendPat(fd, 2100, 400, 13));
    return ExpectEof(fd);
  });
  close(lfd);
  int fd = Connect(port);
  CCHECK(fd >= 0, "connect");
  pollfd p{fd, POLLIN, 0};
  CCHECK(poll(&p, 1, 10000) == 1, "poll");
  int avail = -1;
  CCHECK(ioctl(fd, FIONREAD, &avail) == 0, "FIONREAD");
  Say("cli", "FIONREAD %d", avail);
  char buf[3000];
  ssize_t n = recv(fd, buf, 50, MSG_PEEK);
  Say("cli", "peek 50: %zd", n);
  n = recv(fd, buf, 2000, MSG_PEEK | MSG_DONTWAIT);
  Say("cli", "peek 2000 dontwait: %zd", n);
  CRUN(WriteAll(go[1], "g", 1));
  n = recv(fd, buf, 2000, MSG_WAITALL);
  Say("cli", "waitall 2000: %zd", n);
  for (int i = 0; i < n; ++i) {
    CCHECK(static_cast<uint8_t>(buf[i]) == Pat(i, 13), "byte %d", i);
  }
  n = recv(fd, buf, 10, MSG_DONTWAIT);
  Say("cli", "recv when empty: %zd %s", n, Err(n));
  int lowat = 500;
  CCHECK(setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) == 0,
         "SO_RCVLOWAT");
  CRUN(WriteAll(go[1], "g", 1));
  // 100 bytes come, below the low-water mark: not readable yet.
  p = {fd, POLLIN, 0};
  int r = poll(&p, 1, 300);
  Say("cli", "poll below SO_RCVLOWAT: %d", r);
  CRUN(WriteAll(go[1], "g", 1));
  p = {fd, POLLIN, 0};
  r = poll(&p, 1, 10000);
  Say("cli", "poll at SO_RCVLOWAT: %d %s", r, EventNames(p.revents).c_str());
  CRUN(RecvPat(fd, 2000, 500, 13));
  CCHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
  close(fd);
  return Reap(srv);
}

CONFORM_CASE(shutdown_read_then_read, 2) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  pid_t srv = Serve(lfd, [](int fd) {
    CRUN(RecvPat(fd, 0, 100, 14));
    Say("srv", "got 100 bytes after the client's SHUT_RD");
    return ExpectEof(fd);
  });
  close(lfd);
  int fd = Connect(port);
  CCHECK(fd >= 0, "connect");
  CCHECK(shutdown(fd, SHUT_RD) == 0, "shutdown");
  char c;
  ssize_t n = recv(fd, &c, 1, 0);
  Say("cli", "recv after SHUT_RD: %zd %s", n, Err(n));
  pollfd p{fd, POLLIN | POLLOUT | POLLRDHUP, 0};
  poll(&p, 1, 0);
  Say("cli", "poll after SHUT_RD: %s", EventNames(p.revents).c_str());
  CRUN(SendPat(fd, 0, 100, 14));
  CCHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
  close(fd);
  return Reap(srv);
}

CONFORM_CASE(urgent_byte, 2) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  int go[2];
  CCHECK(pipe(go) == 0, "pipe");
  pid_t srv = Serve(lfd, [&](int fd) {
    CRUN(WriteAll(fd, "abc", 3));
    CCHECK(send(fd, "!", 1, MSG_OOB) == 1, "send OOB");
    // Over SMC this write waits until the reader consumed everything up to
    // the urgent byte (as the kernel's SMC does: the peer must see the
    // urgent flag before the producer cursor moves on), so the reader
    // below does not wait for it first.
    CRUN(WriteAll(fd, "def", 3));
    char c;
    CRUN(ReadExact(go[0], &c, 1));
    return ExpectEof(fd);
  });
  close(lfd);
  int fd = Connect(port);
  CCHECK(fd >= 0, "connect");
  pollfd p{fd, POLLIN | POLLPRI, 0};
  // Until the urgent byte is there (POLLPRI); "abc" came before it.
  for (int tries = 0; tries < 1000 && !(p.revents & POLLPRI); ++tries) {
    p.revents = 0;
    if (poll(&p, 1, 10000) < 0) break;
    if (!(p.revents & POLLPRI)) usleep(1000);
  }
  Say("cli", "poll: %s", EventNames(p.revents).c_str());
  char buf[16];
  int mark = -1;
  ioctl(fd, SIOCATMARK, &mark);
  Say("cli", "at mark before reading: %d", mark);
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  Say("cli", "read: %zd \"%.*s\"", n, static_cast<int>(n > 0 ? n : 0), buf);
  ioctl(fd, SIOCATMARK, &mark);
  Say("cli", "at mark: %d", mark);
  n = recv(fd, buf, 1, MSG_OOB);
  Say("cli", "OOB: %zd '%c'", n, n == 1 ? buf[0] : '?');
  n = recv(fd, buf, sizeof buf, 0);
  Say("cli", "read: %zd \"%.*s\"", n, static_cast<int>(n > 0 ? n : 0), buf);
  n = recv(fd, buf, 1, MSG_OOB);
  Say("cli", "OOB again: %zd %s", n, Err(n));
  CRUN(WriteAll(go[1], "g", 1));
  close(fd);
  return Reap(srv);
}

}  // namespace
}  // namespace usmc::conform
