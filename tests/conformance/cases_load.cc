// tests/conformance/cases_load.cc: hundreds of connections at once, their
// handshakes racing each other (issue 16, item 1). Under usmc some fall back
// to TCP by design when a side runs late; whichever way each goes, every
// byte must arrive as sent and no connection may be reset.
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/conformance/conform.h"

namespace usmc::conform {
namespace {

constexpr int kConns = 300;
constexpr int kMsgs = 10;
constexpr uint32_t kMaxMsg = 4000;

uint32_t MsgLen(int conn, int msg) {
  return 1 + static_cast<uint32_t>(conn * 7919 + msg * 104729) % kMaxMsg;
}

uint32_t Fnv(const char* p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) {
    h = (h ^ static_cast<uint8_t>(p[i])) * 16777619u;
  }
  return h;
}

void RaiseFdLimit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

// Server: one epoll loop; each connection sends length-prefixed messages
// and gets the FNV-1a hash of each back, until EOF.
struct SrvConn {
  int fd = -1;
  std::vector<char> in;
  int msgs = 0;
};

int Serve(int lfd) {
  SetNonblock(lfd, true);
  int ep = epoll_create1(0);
  CCHECK(ep >= 0, "epoll_create1");
  epoll_event ev{EPOLLIN, {.u64 = ~uint64_t{0}}};
  CCHECK(epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) == 0, "add listener");
  std::vector<SrvConn> conns;
  int closed = 0, msgs = 0, bad = 0, resets = 0;
  while (closed < kConns) {
    epoll_event evs[64];
    int n = epoll_wait(ep, evs, 64, 30000);
    CCHECK(n > 0, "server idle: %d of %d connections done", closed, kConns);
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.u64 == ~uint64_t{0}) {
        for (;;) {
          int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
          if (fd < 0) break;
          conns.push_back({fd, {}, 0});
          epoll_event cev{EPOLLIN, {.u64 = conns.size() - 1}};
          CCHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) == 0, "add conn");
        }
        continue;
      }
      SrvConn& c = conns[evs[i].data.u64];
      char buf[8192];
      ssize_t r = recv(c.fd, buf, sizeof buf, 0);
      if (r < 0 && errno == EAGAIN) continue;
      if (r <= 0) {
        if (r < 0) ++resets;
        if (!c.in.empty()) ++bad;  // a torn message
        epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        close(c.fd);
        msgs += c.msgs;
        ++closed;
        continue;
      }
      c.in.insert(c.in.end(), buf, buf + r);
      for (;;) {
        if (c.in.size() < 4) break;
        uint32_t len;
        std::memcpy(&len, c.in.data(), 4);
        if (len == 0 || len > kMaxMsg) {  // CLC bytes read as a length
          ++bad;
          c.in.clear();
          break;
        }
        if (c.in.size() < 4 + len) break;
        const uint32_t h = Fnv(c.in.data() + 4, len);
        c.in.erase(c.in.begin(), c.in.begin() + 4 + len);
        CRUN(WriteAll(c.fd, &h, 4));  // 4 bytes into an idle socket
        ++c.msgs;
      }
    }
  }
  close(ep);
  CCHECK(bad == 0 && resets == 0, "server: %d bad messages, %d resets", bad,
         resets);
  CCHECK(msgs == kConns * kMsgs, "server: %d messages", msgs);
  Say("srv", "%d connections, %d messages intact", kConns, msgs);
  return 0;
}

// Client: all connections at once (non-blocking connects), one epoll loop;
// each sends its messages one at a time and checks every reply.
struct CliConn {
  int fd = -1;
  int msg = 0;
  std::vector<char> out;
  size_t off = 0;
  char reply[4];
  size_t got = 0;
  bool eof_wait = false;
};

int Drive(uint16_t port) {
  int ep = epoll_create1(0);
  CCHECK(ep >= 0, "epoll_create1");
  std::vector<CliConn> conns(kConns);
  const sockaddr_in a = [port] {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    s.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s.sin_port = htons(port);
    return s;
  }();
  auto next = [](CliConn& c, int i) {
    const uint32_t len = MsgLen(i, c.msg);
    c.out.resize(4 + len);
    std::memcpy(c.out.data(), &len, 4);
    for (uint32_t k = 0; k < len; ++k) {
      c.out[4 + k] = static_cast<char>(Pat(k, i * kMsgs + c.msg));
    }
    c.off = 0;
    c.got = 0;
  };
  for (int i = 0; i < kConns; ++i) {
    CliConn& c = conns[i];
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CCHECK(c.fd >= 0, "socket");
    int r = connect(c.fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
    CCHECK(r == 0 || errno == EINPROGRESS, "connect %d", i);
    next(c, i);
    epoll_event ev{EPOLLOUT, {.u64 = static_cast<uint64_t>(i)}};
    CCHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev) == 0, "add");
  }
  int done = 0, wrong = 0, resets = 0, replies = 0;
  while (done < kConns) {
    epoll_event evs[64];
    int n = epoll_wait(ep, evs, 64, 30000);
    CCHECK(n > 0, "client idle: %d of %d connections done", done, kConns);
    for (int e = 0; e < n; ++e) {
      const int i = static_cast<int>(evs[e].data.u64);
      CliConn& c = conns[i];
      bool finished = false;
      if (c.off < c.out.size()) {  // sending
        ssize_t w = send(c.fd, c.out.data() + c.off, c.out.size() - c.off,
                         MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) continue;
        if (w < 0) {
          ++resets;
          finished = true;
        } else {
          c.off += static_cast<size_t>(w);
          if (c.off == c.out.size()) {
            epoll_event ev{EPOLLIN, {.u64 = static_cast<uint64_t>(i)}};
            epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
          }
          continue;
        }
      } else {
        char buf[64];
        ssize_t r = recv(c.fd, buf, c.eof_wait ? sizeof buf : 4 - c.got, 0);
        if (r < 0 && errno == EAGAIN) continue;
        if (r < 0) {
          ++resets;
          finished = true;
        } else if (r == 0 || c.eof_wait) {
          if (r != 0 || !c.eof_wait) ++wrong;  // stray bytes, or EOF early
          finished = true;
        } else {
          std::memcpy(c.reply + c.got, buf, static_cast<size_t>(r));
          c.got += static_cast<size_t>(r);
          if (c.got < 4) continue;
          uint32_t h;
          std::memcpy(&h, c.reply, 4);
          if (h != Fnv(c.out.data() + 4, c.out.size() - 4)) {
            ++wrong;
            finished = true;
          } else {
            ++replies;
            if (++c.msg == kMsgs) {
              c.eof_wait = true;
              CCHECK(shutdown(c.fd, SHUT_WR) == 0, "shutdown");
            } else {
              next(c, i);
              epoll_event ev{EPOLLOUT, {.u64 = static_cast<uint64_t>(i)}};
              epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
            }
          }
        }
      }
      if (finished) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        close(c.fd);
        ++done;
      }
    }
  }
  close(ep);
  CCHECK(wrong == 0 && resets == 0, "client: %d wrong replies, %d resets",
         wrong, resets);
  CCHECK(replies == kConns * kMsgs, "client: %d replies", replies);
  Say("cli", "%d connections, all %d replies correct", kConns, replies);
  return 0;
}

// smcd_min 0: under this load some handshakes fall back by design (a side
// busier than the CLC timeout); the bytes must be right either way.
CONFORM_CASE(hundreds_of_connections_at_once, 0) {
  RaiseFdLimit();
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  pid_t srv = Spawn([&] { return Serve(lfd); });
  close(lfd);
  const int rc = Drive(port);
  const int src = Reap(srv);
  return rc != 0 ? rc : src;
}

}  // namespace
}  // namespace usmc::conform
