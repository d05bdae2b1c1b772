#include "tests/conformance/conform.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdlib>

namespace usmc::conform {

void Say(const char* role, const char* fmt, ...) {
  char line[1024];
  int n = std::snprintf(line, sizeof line, "%s: ", role);
  va_list ap;
  va_start(ap, fmt);
  n += std::vsnprintf(line + n, sizeof line - static_cast<size_t>(n) - 1, fmt,
                      ap);
  va_end(ap);
  if (n > static_cast<int>(sizeof line) - 2) n = sizeof line - 2;
  line[n++] = '\n';
  // One write: lines of concurrent processes stay whole.
  (void)!write(1, line, static_cast<size_t>(n));
}

std::vector<Case>& Cases() {
  static std::vector<Case> cases;
  return cases;
}
Registrar::Registrar(const char* name, int (*run)(), int smcd_min) {
  Cases().push_back({name, run, smcd_min});
}

int Listen(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      listen(fd, 512) != 0) {
    close(fd);
    return -1;
  }
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

int Connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  int r;
  do {
    r = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } while (r < 0 && errno == EINTR);
  if (r != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int AcceptOne(int lfd) {
  int fd;
  do {
    fd = accept(lfd, nullptr, nullptr);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

void SetNonblock(int fd, bool on) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
}

int WriteAll(int fd, const void* buf, size_t len) {
  const char* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    CCHECK(n > 0, "write fd %d: %zd", fd, n);
    p += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}

int ReadExact(int fd, void* buf, size_t len) {
  char* p = static_cast<char*>(buf);
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    CCHECK(n > 0, "read fd %d returned %zd with %zu bytes left", fd, n, len);
    p += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}

int SendPat(int fd, uint64_t off, size_t len, int seed) {
  std::vector<char> v = test_pattern::Pattern(off, len, seed);
  return WriteAll(fd, v.data(), v.size());
}

int RecvPat(int fd, uint64_t off, size_t len, int seed) {
  std::vector<char> v(len);
  CRUN(ReadExact(fd, v.data(), len));
  const long bad = test_pattern::Mismatch(v.data(), off, len, seed);
  CCHECK(bad < 0, "byte %lu of stream %d differs",
         static_cast<unsigned long>(off + static_cast<uint64_t>(bad)), seed);
  return 0;
}

int ExpectEof(int fd) {
  char c;
  ssize_t n;
  do {
    n = read(fd, &c, 1);
  } while (n < 0 && errno == EINTR);
  CCHECK(n == 0, "expected EOF, read returned %zd", n);
  return 0;
}

pid_t Spawn(const std::function<int()>& fn) {
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int rc = fn();
    std::fflush(nullptr);
    // exit(), not _exit(): usmc closes and reports at exit, as a real
    // program's end does.
    std::exit(rc);
  }
  return pid;
}

int Reap(pid_t pid) {
  int st = 0;
  pid_t r;
  do {
    r = waitpid(pid, &st, 0);
  } while (r < 0 && errno == EINTR);
  if (r != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string EventNames(uint32_t ev) {
  static constexpr struct {
    uint32_t bit;
    const char* name;
  } kNames[] = {{EPOLLIN, "IN"},         {EPOLLPRI, "PRI"},
                {EPOLLOUT, "OUT"},       {EPOLLERR, "ERR"},
                {EPOLLHUP, "HUP"},       {EPOLLRDNORM, "RDNORM"},
                {EPOLLRDBAND, "RDBAND"}, {EPOLLWRNORM, "WRNORM"},
                {EPOLLWRBAND, "WRBAND"}, {EPOLLRDHUP, "RDHUP"}};
  std::string s;
  for (const auto& n : kNames) {
    if (ev & n.bit) {
      if (!s.empty()) s += '|';
      s += n.name;
      ev &= ~n.bit;
    }
  }
  if (ev != 0) {
    // Not `("" or "|") + std::to_string(ev)`: gcc 12 -O3 reports a false
    // -Wrestrict in literal + temporary string (GCC bug 105651).
    if (!s.empty()) s += '|';
    s += std::to_string(ev);
  }
  return s.empty() ? "0" : s;
}

}  // namespace usmc::conform
