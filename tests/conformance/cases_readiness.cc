// tests/conformance/cases_readiness.cc: readiness as an event loop sees it.
// A non-blocking client registers its socket with epoll before or after
// connect() (nginx's upstream code registers before), edge-triggered,
// level-triggered or one-shot, or uses poll or select, and logs what it
// observes at points where plain TCP makes the answer deterministic: once
// connected, after each reply the server says it sent, after reading all of
// it, and at the server's close; and the bytes it read.
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "tests/conformance/conform.h"

namespace usmc::conform {
namespace {

constexpr size_t kReq = 1000;
constexpr size_t kReply = 40000;  // fits the socket buffer and the DMB
constexpr int kLongMs = 10000;    // "until it comes"
constexpr int kQuietMs = 100;     // "nothing comes": plain TCP says so too

enum class Api { kEpoll, kPoll, kSelect };
struct Mode {
  Api api;
  bool before = false;  // epoll: ADD before connect()
  uint32_t flags = 0;   // epoll: EPOLLET / EPOLLONESHOT
  bool dup = false;     // a dup of the socket is registered and used
};

// The server: reads the request, sends a reply whenever the client asks
// (one byte on `ask`), says so (one byte on `told`), and at the client's
// EOF closes and says so.
int Serve(int lfd, int ask, int told) {
  int fd = AcceptOne(lfd);
  CCHECK(fd >= 0, "accept");
  CRUN(RecvPat(fd, 0, kReq, 1));
  Say("srv", "request: %zu bytes", kReq);
  for (uint64_t off = 0;; off += kReply) {
    char c;
    CRUN(ReadExact(ask, &c, 1));
    if (c == 'e') break;
    CRUN(SendPat(fd, off, kReply, 2));
    CRUN(WriteAll(told, "s", 1));
  }
  CRUN(ExpectEof(fd));
  Say("srv", "eof");
  close(fd);
  return WriteAll(told, "c", 1);
}

// What the app's wait reports now (or within `ms`).
struct Seen {
  int n = 0;
  uint32_t events = 0;
};

class Client {
 public:
  Client(const Mode& m, int fd) : m_(m), fd_(fd) {}
  int ep = -1;

  int Add(uint32_t interest) {
    epoll_event ev{};
    ev.events = interest | m_.flags;
    ev.data.u64 = 42;
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd_, &ev);
  }
  int Mod(uint32_t interest) {
    epoll_event ev{};
    ev.events = interest | m_.flags;
    ev.data.u64 = 43;
    return epoll_ctl(ep, EPOLL_CTL_MOD, fd_, &ev);
  }

  // Waits for `interest` (poll bits; epoll uses the registration's).
  Seen Wait(uint32_t interest, int ms) {
    Seen s;
    switch (m_.api) {
      case Api::kEpoll: {
        epoll_event ev[4];
        do {
          s.n = epoll_wait(ep, ev, 4, ms);
        } while (s.n < 0 && errno == EINTR);
        if (s.n == 1 && ev[0].data.u64 != 42 && ev[0].data.u64 != 43) {
          s.n = -2;  // not our data
        }
        if (s.n > 0) s.events = ev[0].events;
        break;
      }
      case Api::kPoll: {
        pollfd p{fd_, static_cast<short>(interest), 0};
        do {
          s.n = poll(&p, 1, ms);
        } while (s.n < 0 && errno == EINTR);
        s.events = static_cast<uint16_t>(p.revents);
        break;
      }
      case Api::kSelect: {
        fd_set r, w;
        FD_ZERO(&r);
        FD_ZERO(&w);
        if (interest & POLLIN) FD_SET(fd_, &r);
        if (interest & POLLOUT) FD_SET(fd_, &w);
        timeval tv{ms / 1000, (ms % 1000) * 1000};
        do {
          s.n = select(fd_ + 1, &r, &w, nullptr, &tv);
        } while (s.n < 0 && errno == EINTR);
        if (s.n > 0) {
          s.events = (FD_ISSET(fd_, &r) ? uint32_t{POLLIN} : 0u) |
                     (FD_ISSET(fd_, &w) ? uint32_t{POLLOUT} : 0u);
        }
        break;
      }
    }
    return s;
  }

  void Log(const char* when, const Seen& s) {
    Say("cli", "%s: %d %s", when, s.n,
        s.n > 0 ? EventNames(s.events).c_str() : "-");
  }

  // Reads until EAGAIN (or EOF); the bytes must continue stream 2 at
  // `*off`. Returns the count, -1 on a wrong byte or error.
  long Drain(uint64_t* off, bool* eof) {
    long total = 0;
    std::vector<char> buf(16384);
    for (;;) {
      ssize_t n = recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return total;
      if (n < 0) return -1;
      if (n == 0) {
        *eof = true;
        return total;
      }
      for (ssize_t i = 0; i < n; ++i) {
        if (static_cast<uint8_t>(buf[i]) != Pat(*off + i, 2)) return -1;
      }
      *off += static_cast<uint64_t>(n);
      total += n;
    }
  }

 private:
  Mode m_;
  int fd_;
};

int RunReadiness(const Mode& m) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  int ask[2], told[2];
  CCHECK(pipe(ask) == 0 && pipe(told) == 0, "pipe");
  pid_t srv = Spawn([&] { return Serve(lfd, ask[0], told[1]); });
  close(lfd);
  char c;

  int sock = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  CCHECK(sock >= 0, "socket");
  const int fd = m.dup ? dup(sock) : sock;
  Client cl(m, fd);
  const bool ep = m.api == Api::kEpoll;
  const bool oneshot = m.flags & EPOLLONESHOT;
  if (ep) {
    cl.ep = epoll_create1(EPOLL_CLOEXEC);
    CCHECK(cl.ep >= 0, "epoll_create1");
  }
  if (ep && m.before) {
    Say("cli", "add before connect: %d",
        cl.Add(EPOLLIN | EPOLLOUT | EPOLLRDHUP));
  }
  if (!ep) {
    // An unconnected TCP socket polls writable and hung up.
    cl.Log("before connect", cl.Wait(POLLIN | POLLOUT, 0));
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  int r = connect(sock, reinterpret_cast<sockaddr*>(&a), sizeof a);
  CCHECK(r == 0 || errno == EINPROGRESS, "connect");
  if (m.dup) close(sock);  // the connection lives on in the dup
  if (ep && !m.before) {
    Say("cli", "add after connect: %d",
        cl.Add(EPOLLIN | EPOLLOUT | EPOLLRDHUP));
  }
  cl.Log("connected", cl.Wait(POLLOUT, kLongMs));
  ssize_t sent = 0;
  {
    std::vector<char> req(kReq);
    for (size_t i = 0; i < kReq; ++i) req[i] = static_cast<char>(Pat(i, 1));
    sent = send(fd, req.data(), req.size(), 0);
  }
  Say("cli", "send: %zd", sent);
  // From here on only reading interests us (LT EPOLLOUT would always be
  // ready); for a ONESHOT this also re-arms.
  if (ep) Say("cli", "mod: %d", cl.Mod(EPOLLIN | EPOLLRDHUP));

  uint64_t off = 0;
  bool eof = false;
  for (int round = 1; round <= 2; ++round) {
    CRUN(WriteAll(ask[1], "r", 1));
    CRUN(ReadExact(told[0], &c, 1));  // the reply is on its way
    if (oneshot && round == 2) {
      // Fired in round 1 and not re-armed: nothing, as the kernel.
      cl.Log("round 2, disarmed", cl.Wait(POLLIN, kQuietMs));
      Say("cli", "re-arm: %d", cl.Mod(EPOLLIN | EPOLLRDHUP));
    }
    char when[32];
    std::snprintf(when, sizeof when, "round %d", round);
    cl.Log(when, cl.Wait(POLLIN, kLongMs));
    long got = 0;
    while (got < static_cast<long>(kReply)) {
      long n = cl.Drain(&off, &eof);
      CCHECK(n >= 0 && !eof, "read (%ld of %zu)", got, kReply);
      got += n;
      if (got < static_cast<long>(kReply)) {
        // The rest of the reply is still on the way (TCP segments):
        // blocking wait, not logged (how many wakeups is timing).
        pollfd p{fd, POLLIN, 0};
        poll(&p, 1, kLongMs);
      }
    }
    Say("cli", "round %d: read %ld bytes", round, got);
    std::snprintf(when, sizeof when, "round %d, all read", round);
    cl.Log(when, cl.Wait(POLLIN, 0));
  }

  CCHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
  CRUN(WriteAll(ask[1], "e", 1));
  CRUN(ReadExact(told[0], &c, 1));  // the server closed
  if (oneshot) Say("cli", "re-arm: %d", cl.Mod(EPOLLIN | EPOLLRDHUP));
  cl.Log("peer closed", cl.Wait(POLLIN | POLLRDHUP, kLongMs));
  long n = cl.Drain(&off, &eof);
  Say("cli", "read at the end: %ld, eof %d", n, eof ? 1 : 0);
  if (ep) close(cl.ep);
  close(fd);
  return Reap(srv);
}

CONFORM_CASE(epoll_et_added_before_connect, 2) {
  return RunReadiness({Api::kEpoll, true, EPOLLET});
}
CONFORM_CASE(epoll_lt_added_before_connect, 2) {
  return RunReadiness({Api::kEpoll, true, 0});
}
CONFORM_CASE(epoll_oneshot_added_before_connect, 2) {
  return RunReadiness({Api::kEpoll, true, EPOLLONESHOT});
}
CONFORM_CASE(epoll_et_added_after_connect, 2) {
  return RunReadiness({Api::kEpoll, false, EPOLLET});
}
CONFORM_CASE(epoll_lt_added_after_connect, 2) {
  return RunReadiness({Api::kEpoll, false, 0});
}
CONFORM_CASE(epoll_oneshot_added_after_connect, 2) {
  return RunReadiness({Api::kEpoll, false, EPOLLONESHOT});
}
// A dup registered before connect; the original fd closed after it.
CONFORM_CASE(epoll_et_dup_added_before_connect, 2) {
  return RunReadiness({Api::kEpoll, true, EPOLLET, /*dup=*/true});
}
CONFORM_CASE(poll_around_connect, 2) { return RunReadiness({Api::kPoll}); }
CONFORM_CASE(select_around_connect, 2) { return RunReadiness({Api::kSelect}); }

}  // namespace
}  // namespace usmc::conform
