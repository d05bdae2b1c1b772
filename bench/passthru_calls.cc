// bench/passthru_calls.cc: a fixed TCP workload whose cost is counted in
// instructions (bench/passthru_calls.sh runs it under callgrind), not timed:
// what usmc adds to each call on a connection that stays plain TCP.
//
//   passthru_calls echo-listen PORTFILE    # the peer of `client`: echoes
//   passthru_calls client PORTFILE N       # N rounds as the connecting side
//   passthru_calls echo-connect PORTFILE   # the peer of `server`
//   passthru_calls server PORTFILE N       # N rounds as the accepting side
//
// One round on the measured side: send + recv, sendmsg (3 iovecs) + readv,
// writev + read, each receive after an epoll_wait that finds the echo ready.
// 64 bytes each way per pair.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

constexpr size_t kMsg = 64;

[[noreturn]] void Die(const char* what) {
  std::perror(what);
  std::exit(1);
}

int Listen(const char* portfile) {
  int l = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Die("bind");
  if (::listen(l, 4) != 0) Die("listen");
  socklen_t len = sizeof a;
  ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string tmp = std::string(portfile) + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) Die("portfile");
  std::fprintf(f, "%d\n", ntohs(a.sin_port));
  std::fclose(f);
  std::rename(tmp.c_str(), portfile);
  return l;
}

int Connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    Die("connect");
  }
  return fd;
}

void NoDelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// The peer: echoes every byte until EOF (plain calls, never measured).
int Echo(int fd) {
  NoDelay(fd);
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::send(fd, buf + off, static_cast<size_t>(n - off), 0);
      if (w <= 0) Die("echo send");
      off += w;
    }
  }
  ::close(fd);
  return 0;
}

int PortFrom(const char* portfile) {
  for (int i = 0; i < 3000; ++i) {  // the measured side may start slowly
    if (FILE* f = std::fopen(portfile, "r")) {
      int port = 0;
      const bool ok = std::fscanf(f, "%d", &port) == 1;
      std::fclose(f);
      if (ok) return port;
    }
    ::usleep(10000);
  }
  Die("portfile");
}

struct Counts {
  long send = 0, sendmsg = 0, writev = 0, recv = 0, readv = 0, read = 0,
       epoll_wait = 0;
};

// Waits until fd is readable (the echo came back).
void Wait(int ep, Counts& c) {
  epoll_event ev{};
  for (;;) {
    ++c.epoll_wait;
    int n = ::epoll_wait(ep, &ev, 1, 5000);
    if (n == 1) return;
    if (n < 0 && errno == EINTR) continue;
    Die("epoll_wait");
  }
}

// Receives exactly kMsg bytes with `how` (0 recv, 1 readv, 2 read); a short
// receive waits again and takes the rest with the same call.
void Take(int fd, int ep, int how, char* buf, Counts& c) {
  size_t got = 0;
  while (got < kMsg) {
    Wait(ep, c);
    ssize_t n;
    if (how == 0) {
      ++c.recv;
      n = ::recv(fd, buf + got, kMsg - got, 0);
    } else if (how == 1) {
      ++c.readv;
      const size_t rest = kMsg - got, half = rest / 2;
      iovec iov[2] = {{buf + got, half}, {buf + got + half, rest - half}};
      n = ::readv(fd, iov, 2);
    } else {
      ++c.read;
      n = ::read(fd, buf + got, kMsg - got);
    }
    if (n <= 0) Die("receive");
    got += static_cast<size_t>(n);
  }
}

void Put(int fd, int how, const char* buf, Counts& c) {
  ssize_t n;
  if (how == 0) {
    ++c.send;
    n = ::send(fd, buf, kMsg, 0);
  } else if (how == 1) {
    ++c.sendmsg;
    // Header, value, trailer: one sendmsg of 3 iovecs (memcached's reply).
    iovec iov[3] = {{const_cast<char*>(buf), 16},
                    {const_cast<char*>(buf) + 16, 40},
                    {const_cast<char*>(buf) + 56, 8}};
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = 3;
    n = ::sendmsg(fd, &m, 0);
  } else {
    ++c.writev;
    iovec iov[2] = {{const_cast<char*>(buf), 24},
                    {const_cast<char*>(buf) + 24, 40}};
    n = ::writev(fd, iov, 2);
  }
  if (n != static_cast<ssize_t>(kMsg)) Die("send");
}

int Rounds(int fd, long rounds) {
  NoDelay(fd);
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 42;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) Die("epoll_ctl");
  Counts c;
  char out[kMsg], in[kMsg];
  for (long r = 0; r < rounds; ++r) {
    for (int how = 0; how < 3; ++how) {
      std::memset(out, static_cast<int>('a' + (r + how) % 26), kMsg);
      Put(fd, how, out, c);
      Take(fd, ep, how, in, c);
      if (std::memcmp(in, out, kMsg) != 0) {
        std::fprintf(stderr, "passthru_calls: echo differs\n");
        return 1;
      }
    }
  }
  ::close(ep);
  ::close(fd);
  std::printf(
      "rounds %ld send %ld sendmsg %ld writev %ld recv %ld readv %ld read %ld "
      "epoll_wait %ld\n",
      rounds, c.send, c.sendmsg, c.writev, c.recv, c.readv, c.read,
      c.epoll_wait);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "echo-listen" && argc == 3) {
    int l = Listen(argv[2]);
    int fd = ::accept(l, nullptr, nullptr);
    if (fd < 0) Die("accept");
    ::close(l);
    return Echo(fd);
  }
  if (mode == "echo-connect" && argc == 3) {
    return Echo(Connect(PortFrom(argv[2])));
  }
  if (mode == "client" && argc == 4) {
    return Rounds(Connect(PortFrom(argv[2])), std::atol(argv[3]));
  }
  if (mode == "server" && argc == 4) {
    int l = Listen(argv[2]);
    int fd = ::accept(l, nullptr, nullptr);
    if (fd < 0) Die("accept");
    ::close(l);
    return Rounds(fd, std::atol(argv[3]));
  }
  std::fprintf(stderr,
               "usage: passthru_calls echo-listen PORTFILE | client PORTFILE "
               "N | echo-connect PORTFILE | server PORTFILE N\n");
  return 2;
}
