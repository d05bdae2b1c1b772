// tests/preload_probe_events.cc: probe scenarios of readiness and flags
// (see tests/preload_probe.cc): epoll in its modes and nestings, the poll
// family, non-blocking connect, SO_RCVLOWAT, FIONREAD, SIOCATMARK,
// MSG_PEEK/WAITALL/OOB, EINTR and SA_RESTART, and the silent peer that
// opts in to SMC but never sends CLC (usmc::negotiate, run without usmc).
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <thread>

#include "negotiate/negotiate.h"
#include "tests/preload_probe.h"

namespace usmc::probe {

// A step-driven client used by many server-side scenarios: `steps` rounds
// of (100 bytes of stream 10+i, wait for the server's ack), then
// shutdown(SHUT_WR) and read to EOF.
constexpr size_t kStep = 100;
int ClientSteps(uint16_t port, int steps) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  for (int i = 0; i < steps; ++i) {
    RUN(SendPat(fd, 0, kStep, 10 + i));
    RUN(WaitAck(fd));
  }
  CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int ReadStep(int fd, int i) { return RecvPat(fd, 0, kStep, 10 + i); }

// ---- epoll
// ----------------------------------------------------------------------

int EpWait(int ep, epoll_event* ev, int timeout_ms) {
  int n;
  do {
    n = epoll_wait(ep, ev, 8, timeout_ms);
  } while (n < 0 && errno == EINTR);
  return n;
}
int NewEp(int fd, uint32_t events, uint64_t data) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = data;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) return -1;
  return ep;
}

constexpr int kQuietMs = 200;  // "no event": nothing within this long

int EpollLtServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  int ep = NewEp(fd, EPOLLIN, 1);
  CHECK(ep >= 0, "epoll_ctl add");
  epoll_event ev[8];
  for (int i = 0; i < 2; ++i) {
    CHECK(EpWait(ep, ev, 10000) == 1, "no EPOLLIN in step %d", i);
    CHECK(ev[0].data.u64 == 1 && (ev[0].events & EPOLLIN), "event");
    // Level-triggered: reported again while unread.
    CHECK(EpWait(ep, ev, 0) == 1 && (ev[0].events & EPOLLIN), "LT repeat");
    CHECK(EpWait(ep, ev, 0) == 1 && (ev[0].events & EPOLLIN), "LT repeat 2");
    RUN(ReadStep(fd, i));
    CHECK(EpWait(ep, ev, 0) == 0, "still readable after reading all");
    RUN(Ack(fd));
  }
  // EPOLLOUT too, on the same registration.
  epoll_event mod{};
  mod.events = EPOLLIN | EPOLLOUT;
  mod.data.u64 = 7;
  CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &mod) == 0, "mod");
  CHECK(EpWait(ep, ev, 10000) == 1 && ev[0].data.u64 == 7 &&
            (ev[0].events & EPOLLOUT),
        "EPOLLOUT of a connected socket");
  mod.events = EPOLLIN;
  CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &mod) == 0, "mod");
  CHECK(EpWait(ep, ev, 10000) == 1 && (ev[0].events & EPOLLIN), "EOF");
  RUN(ExpectEof(fd));
  CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr) == 0, "del");
  close(ep);
  close(fd);
  return 0;
}

int EpollEtServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  int ep = NewEp(fd, EPOLLIN | EPOLLET, 2);
  CHECK(ep >= 0, "epoll_ctl add");
  epoll_event ev[8];
  for (int i = 0; i < 2; ++i) {
    CHECK(EpWait(ep, ev, 10000) == 1 && ev[0].data.u64 == 2 &&
              (ev[0].events & EPOLLIN),
          "no edge in step %d", i);
    // Edge-triggered: no second report without new data.
    int again = EpWait(ep, ev, kQuietMs);
    CHECK(again == 0, "ET reported twice (%d, events %#x)", again,
          ev[0].events);
    RUN(ReadStep(fd, i));
    RUN(Ack(fd));
  }
  CHECK(EpWait(ep, ev, 10000) == 1, "no edge for EOF");
  RUN(ExpectEof(fd));
  close(ep);
  close(fd);
  return 0;
}

int EpollOneshotServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  int ep = NewEp(fd, EPOLLIN | EPOLLONESHOT, 3);
  CHECK(ep >= 0, "epoll_ctl add");
  epoll_event ev[8];
  CHECK(EpWait(ep, ev, 10000) == 1 && ev[0].data.u64 == 3, "first event");
  CHECK(EpWait(ep, ev, kQuietMs) == 0, "ONESHOT fired twice");
  RUN(ReadStep(fd, 0));
  RUN(Ack(fd));
  // Disarmed: step 1's data must not wake us until re-armed.
  char c;
  for (int t = 0; t < 10000; ++t) {  // wait until the data is there
    int n = 0;
    ioctl(fd, FIONREAD, &n);
    if (n >= static_cast<int>(kStep)) break;
    usleep(1000);
  }
  CHECK(recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1, "step 1 data missing");
  CHECK(EpWait(ep, ev, kQuietMs) == 0, "disarmed ONESHOT fired");
  epoll_event mod{};
  mod.events = EPOLLIN | EPOLLONESHOT;
  mod.data.u64 = 33;
  CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &mod) == 0, "re-arm");
  CHECK(EpWait(ep, ev, 10000) == 1 && ev[0].data.u64 == 33 &&
            (ev[0].events & EPOLLIN),
        "re-armed ONESHOT did not fire");
  RUN(ReadStep(fd, 1));
  RUN(Ack(fd));
  RUN(ExpectEof(fd));
  close(ep);
  close(fd);
  return 0;
}

int EpollRdhupServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  int ep = NewEp(fd, EPOLLIN | EPOLLRDHUP, 4);
  CHECK(ep >= 0, "epoll_ctl add");
  epoll_event ev[8];
  CHECK(EpWait(ep, ev, 10000) == 1, "step data");
  CHECK(!(ev[0].events & EPOLLRDHUP), "RDHUP before the peer shut down");
  RUN(ReadStep(fd, 0));
  RUN(Ack(fd));
  // The client now shuts down its sending side.
  CHECK(EpWait(ep, ev, 10000) == 1 && (ev[0].events & EPOLLRDHUP),
        "no EPOLLRDHUP after the peer's shutdown(SHUT_WR) (events %#x)",
        ev[0].events);
  RUN(ExpectEof(fd));
  close(ep);
  close(fd);
  return 0;
}

// EPOLLEXCLUSIVE, and one socket in several epoll sets at once.
int EpollMultiServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  int ep1 = NewEp(fd, EPOLLIN, 11);
  int ep2 = NewEp(fd, EPOLLIN | EPOLLEXCLUSIVE, 12);
  int ep3 = NewEp(fd, EPOLLIN | EPOLLET, 13);
  CHECK(ep1 >= 0 && ep2 >= 0 && ep3 >= 0, "epoll_ctl add");
  epoll_event ev[8];
  CHECK(EpWait(ep2, ev, 10000) == 1 && ev[0].data.u64 == 12 &&
            (ev[0].events & EPOLLIN),
        "EXCLUSIVE set");
  CHECK(EpWait(ep1, ev, 10000) == 1 && ev[0].data.u64 == 11, "set 1");
  CHECK(EpWait(ep3, ev, 10000) == 1 && ev[0].data.u64 == 13, "set 3");
  // Removing it from one set leaves the others.
  CHECK(epoll_ctl(ep1, EPOLL_CTL_DEL, fd, nullptr) == 0, "del");
  CHECK(EpWait(ep1, ev, 0) == 0, "deleted registration fired");
  CHECK(EpWait(ep2, ev, 10000) == 1 && ev[0].data.u64 == 12, "set 2 again");
  RUN(ReadStep(fd, 0));
  RUN(Ack(fd));
  CHECK(EpWait(ep3, ev, 10000) == 1 && ev[0].data.u64 == 13, "set 3 step 1");
  CHECK(EpWait(ep2, ev, 10000) == 1 && ev[0].data.u64 == 12, "set 2 step 1");
  RUN(ReadStep(fd, 1));
  RUN(Ack(fd));
  RUN(ExpectEof(fd));
  close(ep1);
  close(ep2);
  close(ep3);
  close(fd);
  return 0;
}

// An epoll fd inside another epoll set and inside poll(); epoll_pwait2.
int EpollNestedServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  int inner = NewEp(fd, EPOLLIN, 21);
  CHECK(inner >= 0, "epoll_ctl add");
  epoll_event ev[8];
  // A look first: an unnested small set runs in scan mode (doorbells
  // disarmed between calls); nesting it must make it kernel-visible again.
  CHECK(epoll_wait(inner, ev, 8, 0) >= 0, "epoll_wait before nesting");
  int outer = NewEp(inner, EPOLLIN, 22);
  CHECK(outer >= 0, "nest");
  CHECK(EpWait(outer, ev, 10000) == 1 && ev[0].data.u64 == 22 &&
            (ev[0].events & EPOLLIN),
        "outer set did not see the inner one become ready");
  struct pollfd p = {inner, POLLIN, 0};
  CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLIN),
        "poll() on the epoll fd");
  timespec ts = {10, 0};
  int n = epoll_pwait2(inner, ev, 8, &ts, nullptr);
  CHECK(n == 1 && ev[0].data.u64 == 21 && (ev[0].events & EPOLLIN),
        "epoll_pwait2 %d", n);
  RUN(ReadStep(fd, 0));
  ts = {0, 0};
  CHECK(epoll_pwait2(inner, ev, 8, &ts, nullptr) == 0,
        "epoll_pwait2 ready after read");
  CHECK(poll(&p, 1, 0) == 0, "epoll fd readable after read");
  RUN(Ack(fd));
  CHECK(EpWait(outer, ev, 10000) == 1, "outer: EOF");
  RUN(ExpectEof(fd));
  close(outer);
  close(inner);
  close(fd);
  return 0;
}

// ---- poll family
// ----------------------------------------------------------------

int PollFamilyServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  struct pollfd p = {fd, POLLOUT, 0};
  CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLOUT), "POLLOUT");
  for (int i = 0; i < 4; ++i) {
    bool readable = false;
    switch (i) {
      case 0: {
        struct pollfd q = {fd, POLLIN, 0};
        readable = poll(&q, 1, 10000) == 1 && (q.revents & POLLIN);
        break;
      }
      case 1: {
        struct pollfd q = {fd, POLLIN, 0};
        timespec ts = {10, 0};
        readable = ppoll(&q, 1, &ts, nullptr) == 1 && (q.revents & POLLIN);
        break;
      }
      case 2: {
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(fd, &rd);
        timeval tv = {10, 0};
        readable = select(fd + 1, &rd, nullptr, nullptr, &tv) == 1 &&
                   FD_ISSET(fd, &rd);
        break;
      }
      default: {
        // Read and write sets: always writable, so it returns at once;
        // the count must match the bits until the data shows up too.
        for (int t = 0; t < 1000 && !readable; ++t) {
          fd_set rd, wr;
          FD_ZERO(&rd);
          FD_ZERO(&wr);
          FD_SET(fd, &rd);
          FD_SET(fd, &wr);
          timespec ts = {10, 0};
          sigset_t mask;
          sigemptyset(&mask);
          int n = pselect(fd + 1, &rd, &wr, nullptr, &ts, &mask);
          readable = FD_ISSET(fd, &rd);
          CHECK(FD_ISSET(fd, &wr) && n == (readable ? 2 : 1),
                "pselect returned %d", n);
          if (!readable) usleep(10000);
        }
        break;
      }
    }
    CHECK(readable, "call %d did not report the data", i);
    RUN(ReadStep(fd, i));
    // Nothing more until we ack (the client waits for it).
    struct pollfd q = {fd, POLLIN, 0};
    CHECK(poll(&q, 1, 0) == 0, "poll: readable with nothing there");
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(fd, &rd);
    timeval tv = {0, 0};
    CHECK(select(fd + 1, &rd, nullptr, nullptr, &tv) == 0,
          "select: readable with nothing there");
    RUN(Ack(fd));
  }
  struct pollfd q = {fd, POLLIN | POLLRDHUP, 0};
  CHECK(poll(&q, 1, 10000) == 1 && (q.revents & POLLIN) &&
            (q.revents & POLLRDHUP),
        "poll: peer shutdown (revents %#x)", q.revents);
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}

// ---- non-blocking connect
// -------------------------------------------------------

// Non-blocking I/O of `len` bytes each way, driven by epoll (client side).
int NbExchange(int fd, int ep, size_t len) {
  std::vector<char> out = Pattern(0, len, 15), in(len);
  size_t sent = 0, got = 0;
  epoll_event mod{};
  mod.events = EPOLLIN | EPOLLOUT;
  CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &mod) == 0, "mod");
  while (got < len || sent < len) {
    epoll_event ev[8];
    CHECK(EpWait(ep, ev, 10000) > 0, "event loop stalled (sent %zu got %zu)",
          sent, got);
    if (sent < len && (ev[0].events & EPOLLOUT)) {
      ssize_t n = send(fd, out.data() + sent, len - sent, MSG_DONTWAIT);
      CHECK(n > 0 || errno == EAGAIN, "send");
      if (n > 0) sent += static_cast<size_t>(n);
      if (sent == len) {
        mod.events = got < len ? uint32_t{EPOLLIN} : 0u;
        CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &mod) == 0, "mod");
      }
    }
    if (ev[0].events & EPOLLIN) {
      ssize_t n = recv(fd, in.data() + got, len - got, 0);
      CHECK(n > 0 || errno == EAGAIN, "recv %zd", n);
      if (n > 0) got += static_cast<size_t>(n);
      if (got == len && sent < len) {
        mod.events = EPOLLOUT;
        CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &mod) == 0, "mod");
      }
    }
  }
  CHECK(Mismatch(in.data(), 0, len, 16) < 0, "reply differs");
  return 0;
}
constexpr size_t kNbLen = 256 << 10;
int NbServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  // Both directions at once: a thread sends while we read.
  int rc_send = 0;
  std::thread t([&] { rc_send = SendPat(fd, 0, kNbLen, 16); });
  int rc = RecvPat(fd, 0, kNbLen, 15);
  t.join();
  CHECK(rc == 0 && rc_send == 0, "exchange");
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int NbConnectStart(uint16_t port, int* out) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a = Loopback(port);
  int r = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  CHECK(r == 0 || errno == EINPROGRESS, "non-blocking connect");
  *out = fd;
  return 0;
}
int NbEpollClient(uint16_t port, const char*) {
  int fd;
  RUN(NbConnectStart(port, &fd));
  int ep = NewEp(fd, EPOLLOUT, 5);
  CHECK(ep >= 0, "epoll add");
  epoll_event ev[8];
  CHECK(EpWait(ep, ev, 10000) == 1 && (ev[0].events & EPOLLOUT) &&
            !(ev[0].events & EPOLLERR),
        "no EPOLLOUT for the finished connect");
  int err = -1;
  socklen_t len = sizeof err;
  CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0,
        "SO_ERROR %d", err);
  RUN(NbExchange(fd, ep, kNbLen));
  close(ep);
  close(fd);
  return 0;
}
int NbPollClient(uint16_t port, const char*) {
  int fd;
  RUN(NbConnectStart(port, &fd));
  struct pollfd p = {fd, POLLOUT, 0};
  CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLOUT), "no POLLOUT");
  int err = -1;
  socklen_t len = sizeof err;
  CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0,
        "SO_ERROR %d", err);
  SetNonblock(fd, false);
  int rc_send = 0;
  std::thread t([&] { rc_send = SendPat(fd, 0, kNbLen, 15); });
  int rc = RecvPat(fd, 0, kNbLen, 16);
  t.join();
  CHECK(rc == 0 && rc_send == 0, "exchange");
  close(fd);
  return 0;
}
// A port nobody listens on: ECONNREFUSED through SO_ERROR (non-blocking,
// epoll and poll) and from a blocking connect.
int RefusedClient(uint16_t, const char*) {
  uint16_t port;
  int l = Listen(&port);
  CHECK(l >= 0, "listen");
  close(l);
  for (int how = 0; how < 2; ++how) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in a = Loopback(port);
    int r = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    CHECK(r < 0 && (errno == EINPROGRESS || errno == ECONNREFUSED),
          "connect to a closed port: %d", r);
    if (errno == EINPROGRESS) {
      if (how == 0) {
        int ep = NewEp(fd, EPOLLOUT, 6);
        epoll_event ev[8];
        CHECK(EpWait(ep, ev, 10000) == 1 && (ev[0].events & EPOLLERR),
              "refused connect: no EPOLLERR (events %#x)", ev[0].events);
        close(ep);
      } else {
        struct pollfd p = {fd, POLLOUT, 0};
        CHECK(poll(&p, 1, 10000) == 1 && (p.revents & (POLLERR | POLLOUT)),
              "refused connect: poll");
      }
      int err = 0;
      socklen_t len = sizeof err;
      CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
                err == ECONNREFUSED,
            "SO_ERROR %d (%s), want ECONNREFUSED", err, strerror(err));
      err = -1;
      CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0,
            "SO_ERROR not cleared by reading it");
    }
    close(fd);
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = Loopback(port);
  CHECK(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 &&
            errno == ECONNREFUSED,
        "blocking connect to a closed port");
  close(fd);
  return 0;
}

// ---- SO_RCVLOWAT, FIONREAD, SIOCATMARK, MSG_PEEK/WAITALL/OOB
// --------------------

int WaitFionread(int fd, int want) {
  int n = 0;
  for (int t = 0; t < 10000; ++t) {
    CHECK(ioctl(fd, FIONREAD, &n) == 0, "FIONREAD");
    if (n >= want) break;
    usleep(1000);
  }
  CHECK(n == want, "FIONREAD %d, want %d", n, want);
  return 0;
}

int LowatServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  int lowat = 1000;
  CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) == 0,
        "SO_RCVLOWAT");
  RUN(WaitFionread(fd, 500));
  struct pollfd p = {fd, POLLIN, 0};
  CHECK(poll(&p, 1, 0) == 0, "POLLIN below SO_RCVLOWAT");
  RUN(Ack(fd));
  CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLIN), "no POLLIN at 1100");
  RUN(WaitFionread(fd, 1100));
  std::vector<char> buf(4000);
  CHECK(recv(fd, buf.data(), buf.size(), 0) == 1100, "recv of 1100");
  CHECK(Mismatch(buf.data(), 0, 1100, 17) < 0, "data differs");
  RUN(Ack(fd));
  // A blocking recv waits for SO_RCVLOWAT bytes (the client sends 400, then
  // 700 more).
  ssize_t n = recv(fd, buf.data(), buf.size(), 0);
  CHECK(n >= 1000, "blocking recv returned %zd < SO_RCVLOWAT", n);
  RUN(ReadExact(fd, buf.data() + n, 1100 - static_cast<size_t>(n)));
  CHECK(Mismatch(buf.data(), 1100, 1100, 17) < 0, "data differs");
  RUN(Ack(fd));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int LowatClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  std::vector<char> v = Pattern(0, 2200, 17);
  RUN(WriteAll(fd, v.data(), 500));
  RUN(WaitAck(fd));
  RUN(WriteAll(fd, v.data() + 500, 600));
  RUN(WaitAck(fd));
  RUN(WriteAll(fd, v.data() + 1100, 400));
  usleep(20000);
  RUN(WriteAll(fd, v.data() + 1500, 700));
  RUN(WaitAck(fd));
  close(fd);
  return 0;
}

int OobServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  struct pollfd p = {fd, POLLPRI, 0};
  CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLPRI), "no POLLPRI");
  std::string normal;
  for (int guard = 0; guard < 100; ++guard) {
    int at = -1;
    CHECK(ioctl(fd, SIOCATMARK, &at) == 0, "SIOCATMARK");
    if (at) break;
    char buf[16];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    CHECK(n > 0, "recv before the mark");
    normal.append(buf, static_cast<size_t>(n));
  }
  CHECK(normal == "abc", "before the mark: '%s'", normal.c_str());
  char c = 0;
  CHECK(recv(fd, &c, 1, MSG_OOB) == 1 && c == 'X', "MSG_OOB byte '%c'", c);
  char rest[3];
  RUN(ReadExact(fd, rest, 3));
  CHECK(std::memcmp(rest, "def", 3) == 0, "after the mark");
  RUN(Ack(fd));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int OobClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  CHECK(send(fd, "abc", 3, 0) == 3, "send");
  CHECK(send(fd, "X", 1, MSG_OOB) == 1, "send MSG_OOB");
  CHECK(send(fd, "def", 3, 0) == 3, "send");
  RUN(WaitAck(fd));
  close(fd);
  return 0;
}

int PeekServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  std::vector<char> a(1000), b(1000);
  ssize_t n = recv(fd, a.data(), a.size(), MSG_PEEK);
  CHECK(n > 0 && Mismatch(a.data(), 0, n, 18) < 0, "MSG_PEEK");
  RUN(WaitFionread(fd, 1000));
  CHECK(recv(fd, b.data(), b.size(), MSG_PEEK) == 1000, "second MSG_PEEK");
  CHECK(Mismatch(b.data(), 0, 1000, 18) < 0, "peeked data differs");
  CHECK(recv(fd, b.data(), b.size(), MSG_WAITALL) == 1000, "read after peek");
  CHECK(Mismatch(b.data(), 0, 1000, 18) < 0, "data after peek differs");
  int left = -1;
  CHECK(ioctl(fd, FIONREAD, &left) == 0 && left == 0, "FIONREAD %d", left);
  RUN(Ack(fd));
  // MSG_WAITALL over many small writes.
  std::vector<char> big(64 << 10);
  CHECK(recv(fd, big.data(), big.size(), MSG_WAITALL) ==
            static_cast<ssize_t>(big.size()),
        "MSG_WAITALL short");
  CHECK(Mismatch(big.data(), 0, big.size(), 19) < 0, "WAITALL data differs");
  RUN(Ack(fd));
  // recvmsg with three iovecs and MSG_WAITALL.
  std::vector<char> x(100), y(3000), z(900);
  iovec iov[3] = {
      {x.data(), x.size()}, {y.data(), y.size()}, {z.data(), z.size()}};
  msghdr m{};
  m.msg_iov = iov;
  m.msg_iovlen = 3;
  CHECK(recvmsg(fd, &m, MSG_WAITALL) == 4000, "recvmsg MSG_WAITALL");
  std::vector<char> all(x);
  all.insert(all.end(), y.begin(), y.end());
  all.insert(all.end(), z.begin(), z.end());
  CHECK(Mismatch(all.data(), 0, 4000, 20) < 0, "recvmsg data differs");
  RUN(Ack(fd));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int PeekClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, 1000, 18));
  RUN(WaitAck(fd));
  std::vector<char> v = Pattern(0, 64 << 10, 19);
  for (size_t off = 0; off < v.size(); off += 1024) {
    RUN(WriteAll(fd, v.data() + off, 1024));
  }
  RUN(WaitAck(fd));
  std::vector<char> w = Pattern(0, 4000, 20);
  for (size_t off = 0; off < w.size(); off += 500) {
    RUN(WriteAll(fd, w.data() + off, 500));
  }
  RUN(WaitAck(fd));
  close(fd);
  return 0;
}

// ---- EINTR and SA_RESTART
// -------------------------------------------------------

std::atomic<int> g_signals{0};
void OnSignal(int) { g_signals.fetch_add(1); }

void Handle(bool restart) {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sa.sa_flags = restart ? SA_RESTART : 0;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, nullptr);
}

// Signals `target` every 10 ms until *stop.
std::thread Pester(pthread_t target, std::atomic<bool>* stop) {
  return std::thread([target, stop] {
    while (!stop->load()) {
      pthread_kill(target, SIGUSR1);
      usleep(10000);
    }
  });
}

// Runs `call` while being signalled; returns its result and errno.
template <typename F>
std::pair<long, int> Interrupted(F call) {
  std::atomic<bool> stop{false};
  std::thread t = Pester(pthread_self(), &stop);
  long r = call();
  int err = errno;
  stop = true;
  t.join();
  return {r, err};
}

int EintrServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  char buf[kStep];
  Handle(/*restart=*/false);
  auto [r1, e1] = Interrupted([&] { return long(recv(fd, buf, 1, 0)); });
  CHECK(r1 == -1 && e1 == EINTR, "recv without SA_RESTART: %ld errno %d", r1,
        e1);
  auto [r2, e2] = Interrupted([&] { return long(read(fd, buf, 1)); });
  CHECK(r2 == -1 && e2 == EINTR, "read without SA_RESTART: %ld errno %d", r2,
        e2);
  int ep = NewEp(fd, EPOLLIN, 1);
  epoll_event ev[8];
  auto [r3, e3] = Interrupted([&] { return long(epoll_wait(ep, ev, 8, -1)); });
  CHECK(r3 == -1 && e3 == EINTR, "epoll_wait: %ld errno %d", r3, e3);
  Handle(/*restart=*/true);
  // The kernel never restarts epoll_wait and poll, SA_RESTART or not.
  auto [r4, e4] = Interrupted([&] { return long(epoll_wait(ep, ev, 8, -1)); });
  CHECK(r4 == -1 && e4 == EINTR, "epoll_wait with SA_RESTART: %ld errno %d", r4,
        e4);
  struct pollfd p = {fd, POLLIN, 0};
  auto [r5, e5] = Interrupted([&] { return long(poll(&p, 1, -1)); });
  CHECK(r5 == -1 && e5 == EINTR, "poll with SA_RESTART: %ld errno %d", r5, e5);
  // recv with SA_RESTART: restarted; a thread sharing the socket tells the
  // client to send only after several signals hit.
  g_signals = 0;
  pthread_t self = pthread_self();
  int rc_go = 0;
  std::thread helper([&] {
    for (int i = 0; i < 5; ++i) {
      pthread_kill(self, SIGUSR1);
      usleep(20000);
    }
    rc_go = Ack(fd, 'g');
  });
  ssize_t n;
  n = recv(fd, buf, kStep, MSG_WAITALL);
  const int err = errno;
  helper.join();
  errno = err;
  CHECK(n == static_cast<ssize_t>(kStep), "recv with SA_RESTART: %zd", n);
  CHECK(rc_go == 0 && g_signals >= 5, "signals %d", g_signals.load());
  CHECK(Mismatch(buf, 0, kStep, 10) < 0, "data differs");
  RUN(ExpectEof(fd));
  close(ep);
  close(fd);
  return 0;
}
int EintrClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(WaitAck(fd));
  RUN(SendPat(fd, 0, kStep, 10));
  close(fd);
  return 0;
}

// ---- silent peer (opts in, never sends CLC; run without the preload)
// ------------

// Reads plain bytes from a stream that may start with CLC messages
// (eyecatcher E2 D4 C3 D9/C4, length at offset 5), which are skipped.
int ReadSkippingClc(int fd, std::string* out, size_t want) {
  std::string buf;
  int clc = 0;
  while (out->size() < want) {
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof tmp);
    CHECK(n > 0, "read %zd", n);
    buf.append(tmp, static_cast<size_t>(n));
    for (;;) {
      if (out->empty() && buf.size() >= 8 &&
          static_cast<uint8_t>(buf[0]) == 0xE2 &&
          static_cast<uint8_t>(buf[1]) == 0xD4 &&
          static_cast<uint8_t>(buf[2]) == 0xC3) {
        size_t len =
            (static_cast<uint8_t>(buf[5]) << 8) | static_cast<uint8_t>(buf[6]);
        if (buf.size() < len) break;
        buf.erase(0, len);
        ++clc;
        continue;
      }
      if (out->empty() && buf.size() < 8 && !buf.empty() &&
          static_cast<uint8_t>(buf[0]) == 0xE2) {
        break;  // maybe half a CLC header
      }
      *out += buf;
      buf.clear();
      break;
    }
  }
  std::fprintf(stderr, "%s: skipped %d CLC messages\n", Name(), clc);
  return 0;
}

const std::string kHelloC = "client-hello-after-the-timeout!!";
const std::string kHelloS = "server-hello-after-the-timeout!!";

int SilentServerMain() {
  SetName("probe-silent");
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(usmc::negotiate::OptIn(fd), "OptIn (eBPF program not attached?)");
  sockaddr_in a = Loopback(0);
  CHECK(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "bind");
  CHECK(listen(fd, 4) == 0, "listen");
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  std::printf("PORT %u\n", ntohs(a.sin_port));
  std::fflush(stdout);
  int c = AcceptOne(fd);
  CHECK(c >= 0, "accept");
  CHECK(usmc::negotiate::QueryOutcome(c).both_offered(),
        "the client did not offer SMC");
  std::string got;
  RUN(ReadSkippingClc(c, &got, kHelloC.size()));
  CHECK(got == kHelloC, "plain bytes after the timeout: '%s'", got.c_str());
  RUN(WriteAll(c, kHelloS.data(), kHelloS.size()));
  RUN(ExpectEof(c));
  close(c);
  return 0;
}

// The usmc client closes its socket while the handshake is undecided
// (close-undecided): its close must reach this silent server as EOF at once,
// not at the client's CLC deadline. The server tells the client over an
// abstract Unix socket (not TCP: usmc leaves it alone) when it saw EOF, so
// the client stays alive (its exit would close everything) until then.
std::string EofVerdictName(uint16_t port) {
  return std::string(1, '\0') + "usmc-probe-eof-" + std::to_string(port);
}
int SilentServerEofMain() {
  SetName("probe-silent");
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(usmc::negotiate::OptIn(fd), "OptIn (eBPF program not attached?)");
  sockaddr_in a = Loopback(0);
  CHECK(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "bind");
  CHECK(listen(fd, 4) == 0, "listen");
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const uint16_t port = ntohs(a.sin_port);
  std::printf("PORT %u\n", port);
  std::fflush(stdout);
  int c = AcceptOne(fd);
  CHECK(c >= 0, "accept");
  // The Proposal comes, then nothing but the close: EOF. The client's CLC
  // deadline is a minute; the bound here only turns a hang into a failure.
  bool eof = false;
  for (int i = 0; i < 100 && !eof; ++i) {
    pollfd p{c, POLLIN, 0};
    if (poll(&p, 1, 100) != 1) continue;
    char buf[512];
    const ssize_t n = read(c, buf, sizeof buf);
    CHECK(n >= 0, "read");
    eof = n == 0;
  }
  int u = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un ua{};
  ua.sun_family = AF_UNIX;
  const std::string name = EofVerdictName(port);
  std::memcpy(ua.sun_path, name.data(), name.size());
  CHECK(connect(u, reinterpret_cast<sockaddr*>(&ua),
                static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) +
                                       name.size())) == 0,
        "connect to the client's verdict socket");
  CHECK(write(u, eof ? "E" : "T", 1) == 1, "verdict");
  close(u);
  close(c);
  CHECK(eof, "no EOF after the client closed its undecided socket");
  return 0;
}

int CloseUndecidedClient(uint16_t port, const char*) {
  int u = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un ua{};
  ua.sun_family = AF_UNIX;
  const std::string name = EofVerdictName(port);
  std::memcpy(ua.sun_path, name.data(), name.size());
  CHECK(bind(u, reinterpret_cast<sockaddr*>(&ua),
             static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) +
                                    name.size())) == 0 &&
            listen(u, 1) == 0,
        "verdict socket");
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a = Loopback(port);
  int r = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  CHECK(r == 0 || errno == EINPROGRESS, "connect");
  pollfd p{fd, POLLOUT, 0};
  CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLOUT), "never writable");
  // Left alone past the progress thread's grace (20 ms): the thread now
  // sleeps on the socket, waiting for the Accept that never comes.
  usleep(200 * 1000);
  close(fd);
  pollfd q{u, POLLIN, 0};
  CHECK(poll(&q, 1, 20000) == 1, "no verdict from the server");
  int v = accept(u, nullptr, nullptr);
  char verdict = 0;
  CHECK(v >= 0 && read(v, &verdict, 1) == 1, "verdict");
  CHECK(verdict == 'E', "the server saw no EOF after our close");
  close(v);
  close(u);
  return 0;
}

// mode "talk": waits for the server's plain bytes (after its CLC timeout),
// answers. mode "idle": prints CONNECTED and waits for EOF.
int SilentClientMain(uint16_t port, const std::string& mode) {
  SetName("probe-silent");
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(usmc::negotiate::OptIn(fd), "OptIn (eBPF program not attached?)");
  sockaddr_in a = Loopback(port);
  CHECK(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "connect");
  CHECK(usmc::negotiate::QueryOutcome(fd).both_offered(),
        "the server did not offer SMC");
  std::printf("CONNECTED\n");
  std::fflush(stdout);
  if (mode == "idle") {
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
    return 0;
  }
  std::string got;
  RUN(ReadSkippingClc(fd, &got, kHelloS.size()));
  CHECK(got == kHelloS, "plain bytes after the timeout: '%s'", got.c_str());
  RUN(WriteAll(fd, kHelloC.data(), kHelloC.size()));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}

// usmc client (non-blocking connect, epoll loop) to the silent server.
int SilentPeerClient(uint16_t port, const char*) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a = Loopback(port);
  int r = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  CHECK(r == 0 || errno == EINPROGRESS, "connect");
  int ep = NewEp(fd, EPOLLOUT, 1);
  epoll_event ev[8];
  CHECK(EpWait(ep, ev, 20000) == 1 && (ev[0].events & EPOLLOUT),
        "never writable");
  int err = -1;
  socklen_t len = sizeof err;
  CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0,
        "SO_ERROR %d", err);
  size_t off = 0;
  while (off < kHelloC.size()) {
    ssize_t n = send(fd, kHelloC.data() + off, kHelloC.size() - off, 0);
    if (n < 0 && errno == EAGAIN) {
      CHECK(EpWait(ep, ev, 20000) == 1, "stalled");
      continue;
    }
    CHECK(n > 0, "send");
    off += static_cast<size_t>(n);
  }
  epoll_event mod{};
  mod.events = EPOLLIN;
  CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &mod) == 0, "mod");
  std::string got;
  while (got.size() < kHelloS.size()) {
    CHECK(EpWait(ep, ev, 20000) == 1, "no reply");
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EAGAIN) continue;
    CHECK(n > 0, "recv %zd", n);
    got.append(buf, static_cast<size_t>(n));
  }
  CHECK(got == kHelloS, "reply '%s'", got.c_str());
  close(ep);
  close(fd);
  return 0;
}

// A server whose application is busy when the client connects (Redis in
// DEBUG SLEEP): it accepts only after the client's request was written.
// With TCP the client's connect completes in the kernel and the request
// waits in the server's receive queue; under usmc the same must hold (the
// request is early data), and the connection must still become SMC-D.
// "busy-accept": a 3000-byte request, level-triggered epoll.
// "busy-accept-et": 64 KiB, edge-triggered: the client writes until EAGAIN
// before the server accepts, and the decision must be a new EPOLLOUT edge.
constexpr size_t kBusyReq = 3000, kBusyReqEt = 64 << 10, kBusyRep = 70000;
int BusyAcceptServe(int lfd, size_t req) {
  int ctl = AcceptOne(lfd);
  CHECK(ctl >= 0, "accept control");
  RUN(WaitAck(ctl));  // the client has connected and written by now
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, req, 31));
  RUN(SendPat(fd, 0, kBusyRep, 32));
  RUN(ExpectEof(fd));
  close(fd);
  close(ctl);
  return 0;
}
int BusyAcceptClientWith(uint16_t port, bool et, bool fork_after = false) {
  const size_t req_len = et ? kBusyReqEt : kBusyReq;
  int ctl = Connect(port);
  CHECK(ctl >= 0, "connect control");
  int fd;
  RUN(NbConnectStart(port, &fd));
  const uint32_t flags = et ? uint32_t{EPOLLET} : 0u;
  int ep = NewEp(fd, EPOLLOUT | flags, 1);
  CHECK(ep >= 0, "epoll add");
  epoll_event ev[8];
  // The test sets a CLC timeout far above this watchdog: EPOLLOUT here
  // cannot be a fallback's.
  CHECK(EpWait(ep, ev, 10000) == 1 && (ev[0].events & EPOLLOUT),
        "not writable while the server's application is busy");
  std::vector<char> req = Pattern(0, req_len, 31);
  size_t sent = 0;
  if (!et) {
    CHECK(
        send(fd, req.data(), req.size(), 0) == static_cast<ssize_t>(req.size()),
        "request not taken at once");
    sent = req.size();
    if (fork_after) {
      // A child that exits normally (our exit path releases what it holds)
      // while the request is still early data: the server must get it once.
      pid_t pid = fork();
      CHECK(pid >= 0, "fork");
      if (pid == 0) exit(0);
      int st = 0;
      CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st), "child");
    }
  } else {
    for (;;) {  // until the socket takes no more
      ssize_t n = send(fd, req.data() + sent, req.size() - sent, 0);
      if (n < 0 && errno == EAGAIN) break;
      CHECK(n > 0, "send");
      sent += static_cast<size_t>(n);
      CHECK(sent < req.size(), "all of %zu taken before the server accepted",
            req.size());
    }
    CHECK(sent > 0, "nothing taken before the server accepted");
  }
  // Not readable before the server answers.
  char c;
  CHECK(recv(fd, &c, 1, 0) < 0 && errno == EAGAIN, "recv before reply");
  RUN(Ack(ctl));  // the server may accept now
  while (sent < req.size()) {
    CHECK(EpWait(ep, ev, 10000) == 1 && (ev[0].events & EPOLLOUT),
          "no EPOLLOUT after EAGAIN (sent %zu)", sent);
    for (;;) {
      ssize_t n = send(fd, req.data() + sent, req.size() - sent, 0);
      if (n < 0 && errno == EAGAIN) break;
      CHECK(n > 0, "send");
      sent += static_cast<size_t>(n);
      if (sent == req.size()) break;
    }
  }
  epoll_event mod{};
  mod.events = EPOLLIN | flags;
  CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &mod) == 0, "mod");
  std::vector<char> got(kBusyRep);
  size_t off = 0;
  bool wait = true;
  while (off < got.size()) {
    if (wait) CHECK(EpWait(ep, ev, 10000) == 1, "no reply (got %zu)", off);
    ssize_t n = recv(fd, got.data() + off, got.size() - off, 0);
    wait = n < 0 && errno == EAGAIN;  // ET: read until EAGAIN, then wait
    if (wait) continue;
    CHECK(n > 0, "recv %zd", n);
    off += static_cast<size_t>(n);
  }
  CHECK(Mismatch(got.data(), 0, got.size(), 32) < 0, "reply differs");
  close(ep);
  close(fd);
  close(ctl);
  return 0;
}

// The usmc server, facing a silent client first (listener must not stall):
// "silent-accept": accept the silent one, then serve a normal client
// (basic) to the end; "silent-talk": after the timeout, talk plain TCP.
int SilentAcceptServer(int lfd) {
  int c1 = AcceptOne(lfd);
  CHECK(c1 >= 0, "accept 1");
  std::printf("ACCEPTED1\n");
  std::fflush(stdout);
  int c2 = AcceptOne(lfd);
  CHECK(c2 >= 0, "accept 2");
  RUN(ServeBasic(c2));
  close(c1);
  return 0;
}
int SilentTalkServer(int lfd) {
  int c = AcceptOne(lfd);
  CHECK(c >= 0, "accept");
  RUN(WriteAll(c, kHelloS.data(), kHelloS.size()));
  std::string got(kHelloC.size(), '\0');
  RUN(ReadExact(c, got.data(), got.size()));
  CHECK(got == kHelloC, "got '%s'", got.c_str());
  close(c);
  return 0;
}

void AddEventScenarios(Scenarios& s) {
  auto steps = [](int n) {
    return [n](uint16_t port, const char*) { return ClientSteps(port, n); };
  };
  s["epoll-lt"] = {EpollLtServer, steps(2)};
  s["epoll-et"] = {EpollEtServer, steps(2)};
  s["epoll-oneshot"] = {EpollOneshotServer, steps(2)};
  s["epoll-rdhup"] = {EpollRdhupServer, steps(1)};
  s["epoll-multi"] = {EpollMultiServer, steps(2)};
  s["epoll-nested"] = {EpollNestedServer, steps(1)};
  s["poll"] = {PollFamilyServer, steps(4)};
  s["nb-epoll"] = {NbServer, NbEpollClient};
  s["nb-poll"] = {NbServer, NbPollClient};
  s["refused"] = {nullptr, RefusedClient};
  s["lowat"] = {LowatServer, LowatClient};
  s["oob"] = {OobServer, OobClient};
  s["peek"] = {PeekServer, PeekClient};
  s["eintr"] = {EintrServer, EintrClient};
  s["silent-peer"] = {nullptr, SilentPeerClient};
  s["close-undecided"] = {nullptr, CloseUndecidedClient};
  s["busy-accept"] = {
      [](int l) { return BusyAcceptServe(l, kBusyReq); },
      [](uint16_t p, const char*) { return BusyAcceptClientWith(p, false); }};
  s["busy-accept-fork"] = {[](int l) { return BusyAcceptServe(l, kBusyReq); },
                           [](uint16_t p, const char*) {
                             return BusyAcceptClientWith(p, false,
                                                         /*fork_after=*/true);
                           }};
  s["busy-accept-et"] = {
      [](int l) { return BusyAcceptServe(l, kBusyReqEt); },
      [](uint16_t p, const char*) { return BusyAcceptClientWith(p, true); }};
  s["silent-accept"] = {SilentAcceptServer, BasicClient};
  s["silent-talk"] = {SilentTalkServer, nullptr};
}

}  // namespace usmc::probe
