// tests/preload_probe_early_epoll.cc: probe scenarios of sockets added to
// epoll before they were connections (see tests/preload_probe.cc): nginx's
// upstream code does socket(), epoll_ctl(ADD, IN|OUT|RDHUP|ET), then a
// non-blocking connect(); the connection becomes SMC-D, and its epoll
// registration must then report the bytes that arrive in shared memory.
// Also a dup of the socket registered instead of the socket, the same
// socket in a second set, a registered fd number closed and reused before
// connect, and a listener registered before listen().
#include <arpa/inet.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "tests/preload_probe.h"

namespace usmc::probe {
namespace {

// The request fits early data only partly; the reply is several DMBs.
constexpr size_t kReq = 64 << 10;
constexpr size_t kReply = 3 << 20;
constexpr uint64_t kData = 0x51ab0000beef0001ull;  // the main set's data
constexpr uint64_t kData2 = 77;                    // the second set's
constexpr uint64_t kStale = 99;  // a closed fd's (must never come back)
constexpr int kQuietMs = 200;    // "no event": nothing within this long

int Wait(int ep, epoll_event* ev, int n, int timeout_ms) {
  int r;
  do {
    r = epoll_wait(ep, ev, n, timeout_ms);
  } while (r < 0 && errno == EINTR);
  return r;
}

int Ctl(int ep, int op, int fd, uint32_t events, uint64_t data) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = data;
  return epoll_ctl(ep, op, fd, &ev);
}

int EarlyServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, kReq, 21));
  RUN(SendPat(fd, 0, kReply, 22));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}

// arg: et | lt | oneshot (the flags of the registration made before
// connect), optionally with "-dup" (a dup of the socket is registered and
// used; the original fd is closed right after connect) or "-reuse" (an
// earlier socket registered under the same fd number was closed first) or
// "-fired" (a ONESHOT that fired before connect stays disarmed).
int EarlyEpollClient(uint16_t port, const char* arg) {
  const std::string mode = arg;
  const bool et = mode.rfind("et", 0) == 0;
  const bool oneshot = mode.rfind("oneshot", 0) == 0;
  const bool dup_fd = mode.find("-dup") != std::string::npos;
  const bool reuse = mode.find("-reuse") != std::string::npos;
  const bool fired = mode.find("-fired") != std::string::npos;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int ep2 = epoll_create1(EPOLL_CLOEXEC);
  CHECK(ep >= 0 && ep2 >= 0, "epoll_create1");
  if (reuse) {
    int old = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(old >= 0 &&
              Ctl(ep, EPOLL_CTL_ADD, old, EPOLLIN | EPOLLOUT, kStale) == 0,
          "register the socket that is closed before connect");
    close(old);  // the kernel drops its item; the number is free again
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  CHECK(fd >= 0, "socket");
  const int io = dup_fd ? dup(fd) : fd;
  CHECK(io >= 0, "dup");
  uint32_t flags = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
  if (et) flags |= EPOLLET;
  if (oneshot) flags |= EPOLLONESHOT;
  CHECK(Ctl(ep, EPOLL_CTL_ADD, io, flags, kData) == 0, "add before connect");
  // The same socket in a second set, level-triggered, for its EOF.
  CHECK(Ctl(ep2, EPOLL_CTL_ADD, io, EPOLLIN, kData2) == 0, "add to set 2");
  if (fired) {
    // An unconnected TCP socket polls writable and hung up: the ONESHOT
    // fires now and stays disarmed through connect, until the app's MOD.
    epoll_event ev[8];
    CHECK(Wait(ep, ev, 8, 0) == 1 && ev[0].data.u64 == kData,
          "no event of the unconnected socket");
  }
  sockaddr_in a = Loopback(port);
  int r = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  CHECK(r == 0 || errno == EINPROGRESS, "non-blocking connect");
  if (dup_fd) close(fd);  // the connection lives on in `io`
  if (fired) {
    epoll_event ev[8];
    CHECK(Wait(ep, ev, 8, kQuietMs) == 0, "a fired ONESHOT reported again");
    CHECK(Ctl(ep, EPOLL_CTL_MOD, io, flags, kData) == 0, "re-arm");
  }

  std::vector<char> req = Pattern(0, kReq, 21), reply(kReply);
  size_t sent = 0, got = 0;
  bool out_on = true, shut = false, eof = false;
  for (int round = 0; !eof; ++round) {
    CHECK(round < 100000, "no end (sent %zu got %zu)", sent, got);
    epoll_event ev[8];
    int n = Wait(ep, ev, 8, 10000);
    CHECK(n > 0, "epoll_wait: nothing in 10 s (%s, sent %zu got %zu of %zu)",
          mode.c_str(), sent, got, kReply);
    CHECK(n == 1, "%d events for one socket", n);
    CHECK(ev[0].data.u64 == kData, "event data %#llx",
          static_cast<unsigned long long>(ev[0].data.u64));
    CHECK(!(ev[0].events & EPOLLERR), "EPOLLERR (events %#x)", ev[0].events);
    if ((ev[0].events & EPOLLOUT) && sent < kReq) {
      for (;;) {
        ssize_t k = send(io, req.data() + sent, kReq - sent, MSG_NOSIGNAL);
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) break;
        CHECK(k > 0, "send");
        sent += static_cast<size_t>(k);
        if (sent == kReq) break;
      }
    }
    if (ev[0].events & (EPOLLIN | EPOLLRDHUP)) {
      for (;;) {
        char* p = reply.data() + got;
        size_t room = kReply - got;
        char extra;
        if (room == 0) {
          p = &extra;
          room = 1;
        }
        ssize_t k = recv(io, p, room, 0);
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) break;
        CHECK(k >= 0, "recv");
        if (k == 0) {
          CHECK(shut && got == kReply, "EOF after %zu of %zu bytes", got,
                kReply);
          eof = true;
          break;
        }
        CHECK(got < kReply, "bytes after the reply");
        got += static_cast<size_t>(k);
        if (!et) break;  // level-triggered: the rest is reported again
      }
    }
    if (got == kReply && !shut) {
      long bad = Mismatch(reply.data(), 0, kReply, 22);
      CHECK(bad < 0, "reply byte %ld differs", bad);
      // The server closes when it sees our EOF: its EOF is the last event.
      CHECK(shutdown(io, SHUT_WR) == 0, "shutdown");
      shut = true;
    }
    if (oneshot) {
      const uint32_t want = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT |
                            (sent < kReq ? uint32_t{EPOLLOUT} : 0u);
      if (!eof) CHECK(Ctl(ep, EPOLL_CTL_MOD, io, want, kData) == 0, "re-arm");
    } else if (!et && out_on && sent == kReq) {
      // Level-triggered EPOLLOUT would report on every wait.
      CHECK(Ctl(ep, EPOLL_CTL_MOD, io, EPOLLIN | EPOLLRDHUP, kData) == 0,
            "mod");
      out_on = false;
    }
  }
  CHECK(sent == kReq, "request not all sent");
  epoll_event ev[8];
  CHECK(Wait(ep2, ev, 8, 10000) == 1 && ev[0].data.u64 == kData2 &&
            (ev[0].events & EPOLLIN),
        "the second set does not report the EOF");
  close(ep2);
  close(ep);
  close(io);
  return 0;
}

// A listener added to epoll before listen(): accepts come from the kernel
// as on TCP, and the accepted connection is SMC-D.
int EarlyListenClient(uint16_t, const char*) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = Loopback(0);
  CHECK(bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "bind");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  CHECK(Ctl(ep, EPOLL_CTL_ADD, l, EPOLLIN, 3) == 0, "add before listen");
  CHECK(listen(l, 4) == 0, "listen");
  socklen_t len = sizeof a;
  CHECK(getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) == 0, "name");
  const uint16_t port = ntohs(a.sin_port);
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    SetName("probe-cli2");
    close(l);
    int fd = Connect(port);
    if (fd < 0) exit(1);
    if (SendPat(fd, 0, kReq, 23) != 0 || RecvPat(fd, 0, kReq, 24) != 0) {
      exit(1);
    }
    close(fd);
    exit(0);  // (not _exit: the exit report is written at exit)
  }
  epoll_event ev[8];
  CHECK(Wait(ep, ev, 8, 10000) == 1 && ev[0].data.u64 == 3 &&
            (ev[0].events & EPOLLIN),
        "no EPOLLIN on the listener");
  int fd = AcceptOne(l);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, kReq, 23));
  RUN(SendPat(fd, 0, kReq, 24));
  RUN(ExpectEof(fd));
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
        "the connecting child failed (%#x)", st);
  close(fd);
  close(ep);
  close(l);
  return 0;
}

}  // namespace

void AddEarlyEpollScenarios(Scenarios& s) {
  s["epoll-before-connect"] = {EarlyServer, EarlyEpollClient};
  s["epoll-before-listen"] = {[](int) { return 0; }, EarlyListenClient};
}

}  // namespace usmc::probe
