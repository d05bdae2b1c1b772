#include "runtime/smc_socket_test_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "runtime/smc_socket.h"

namespace usmc::runtime::testing {

int ListenLoopback(int* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, 16) != 0) {
    std::abort();
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

int ConnectLoopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return -1;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

LoopbackPair ConnectedLoopbackPair() {
  int port = 0;
  const int lfd = ListenLoopback(&port);
  LoopbackPair p;
  p.client = ConnectLoopback(port);
  p.server = ::accept(lfd, nullptr, nullptr);
  ::close(lfd);
  return p;
}

Options Client() { return Options{.role = engine::Role::kClient}; }
Options Server() { return Options{.role = engine::Role::kServer}; }

void SetNonblockingFd(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

std::unique_ptr<SmcSocket> MustStart(int fd, const Options& o) {
  auto s = SmcSocket::Start(fd, o);
  if (!s.ok()) return nullptr;
  return std::move(*s);
}

int ForkClient(const std::function<int(int fd)>& client, pid_t* child) {
  int port = 0;
  int lfd = ListenLoopback(&port);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(lfd);
    int fd = ConnectLoopback(port);
    ::_exit(fd < 0 ? 100 : client(fd));
  }
  *child = pid;
  int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  ::close(lfd);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int WaitChild(pid_t child) {
  int st = 0;
  if (::waitpid(child, &st, 0) != child) return -1;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

int CountMemfds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      char target[256] = {};
      std::string path = std::string("/proc/self/fd/") + e->d_name;
      ssize_t len = readlink(path.c_str(), target, sizeof target - 1);
      if (len > 0 && std::strstr(target, "memfd:") &&
          !std::strstr(target, "memfd:usmc-arena")) {
        ++n;
      }
    }
    closedir(d);
  }
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);)
    if (line.find("memfd:") != std::string::npos &&
        line.find("memfd:usmc-arena") == std::string::npos) {
      ++n;
    }
  return n;
}

void Stream::Fill(std::byte* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (left_ == 0) {
      x_ ^= x_ << 13;
      x_ ^= x_ >> 7;
      x_ ^= x_ << 17;
      word_ = x_;
      left_ = 8;
    }
    p[i] = static_cast<std::byte>(word_);
    word_ >>= 8;
    --left_;
  }
}

short LoopWait(SmcSocket& s, short events) {
  for (;;) {
    SmcSocket::WaitSpec w = s.PrepareWait(events);
    if (w.ready != 0) return w.ready;
    if (w.n == 0) {  // TCP mode: the kernel socket itself
      struct pollfd p = {s.fd(), events, 0};
      return ::poll(&p, 1, kWatchdogMs) > 0 ? p.revents : 0;
    }
    const int ms =
        w.timeout_ms < 0 ? kWatchdogMs : std::min(w.timeout_ms, kWatchdogMs);
    const int r = ::poll(w.fds, static_cast<nfds_t>(w.n), ms);
    if (r == 0 && ms == kWatchdogMs) return 0;  // lost wakeup
    s.AfterWait(w);
    if (short got = s.Poll(events); got != 0) return got;
  }
}

bool LoopUntilDecided(SmcSocket& s) {
  while (s.handshaking()) {
    // POLLIN only: a client's POLLOUT holds during the handshake (early
    // data), and a loop asking for it would never sleep.
    SmcSocket::WaitSpec w = s.PrepareWait(POLLIN);
    if (w.ready & (POLLHUP | POLLERR)) return false;
    if (w.n > 0) {
      const int ms =
          w.timeout_ms < 0 ? kWatchdogMs : std::min(w.timeout_ms, kWatchdogMs);
      if (::poll(w.fds, static_cast<nfds_t>(w.n), ms) == 0 &&
          ms == kWatchdogMs) {
        return false;
      }
    }
    s.AfterWait(w);
  }
  return true;
}

}  // namespace usmc::runtime::testing
