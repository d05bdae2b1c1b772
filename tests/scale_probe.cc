// tests/scale_probe.cc: many concurrent connections between two processes
// (issue 21), run under LD_PRELOAD by tests/scale_test.cc.
//
//   scale_probe server N NOFILE          prints "PORT p", serves N conns
//   scale_probe client PORT N NOFILE     opens N conns, one after another
//
// The client opens the connections one at a time and keeps every one: a
// blocking connect, then a hello (4-byte id + kHello bytes of stream id)
// that the server checks and answers (kHello bytes of stream id + N). The
// server is one epoll loop over the listener and every connection (the
// shape of an event-loop server: 10,000 registrations in one set). Once
// all N are held, round two moves kRound2 more bytes each way on every
// connection (all writes first, then all reads: they are all open at
// once), then the client closes them all and the server sees EOF on each.
//
// Each side prints one "STATS" line: fds per connection (/proc/self/fd
// before and after the N setups, divided by N) and the setup cost per
// batch of kBatch connections (see SetupCost).
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/byte_pattern.h"

namespace {

using usmc::test_pattern::Mismatch;
using usmc::test_pattern::Pattern;

constexpr size_t kHello = 4096;   // each way, at setup
constexpr size_t kRound2 = 8192;  // each way, once all are held
constexpr int kBatch = 1000;      // setups per timed batch
constexpr int kSubBatch = 100;    // see SetupCost

const char* g_name = "scale";

#define FAIL(...)                                                         \
  do {                                                                    \
    const int e_ = errno;                                                 \
    std::fprintf(stderr, "%s: FAIL %s:%d: ", g_name, __FILE__, __LINE__); \
    std::fprintf(stderr, __VA_ARGS__);                                    \
    std::fprintf(stderr, " (errno %d %s)\n", e_, strerror(e_));           \
    std::exit(1);                                                         \
  } while (0)

int CountFds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) FAIL("opendir /proc/self/fd");
  int n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the DIR's own fd
}

void SetNofile(long n) {
  rlimit r{static_cast<rlim_t>(n), static_cast<rlim_t>(n)};
  if (setrlimit(RLIMIT_NOFILE, &r) != 0) FAIL("setrlimit NOFILE %ld", n);
}

// CPU time of the whole process (every thread: the app's, usmc's progress
// thread; user and system), in ns.
uint64_t CpuNs() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return uint64_t(t.tv_sec) * 1000000000u + uint64_t(t.tv_nsec);
}
uint64_t WallNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return uint64_t(t.tv_sec) * 1000000000u + uint64_t(t.tv_nsec);
}

// The setup cost of batch b (connections b*kBatch .. +kBatch-1) from the
// clock read after each setup: the median over the batch's sub-batches of
// kSubBatch setups of their mean cost. CPU time is not charged while the
// process waits for a core, so the 4 other builds and tests that share
// this 2-core machine inflate it far less than wall time; the mean over a
// sub-batch keeps any work done every k-th setup (k < kSubBatch) in the
// figure; the median over ten sub-batches drops the few that a cache-cold
// moment or a burst of interrupts inflated.
double SetupCost(const std::vector<uint64_t>& t, int b) {
  std::vector<double> sub;
  for (int s = b * kBatch; s + kSubBatch <= (b + 1) * kBatch; s += kSubBatch) {
    const uint64_t start = s == 0 ? t[0] : t[s - 1];
    const int n = s == 0 ? kSubBatch - 1 : kSubBatch;
    sub.push_back(double(t[s + kSubBatch - 1] - start) / n);
  }
  std::sort(sub.begin(), sub.end());
  return sub.size() % 2 ? sub[sub.size() / 2]
                        : (sub[sub.size() / 2 - 1] + sub[sub.size() / 2]) / 2;
}

// kB of this process's resident memory: anonymous (heap, stacks: usmc's
// per-connection state) and shared (the memfd DMB pages it touched, its
// own and its peers').
struct Mem {
  long anon_kb = 0, shmem_kb = 0;
};
Mem ReadMem() {
  Mem m;
  FILE* f = std::fopen("/proc/self/status", "re");
  if (f == nullptr) return m;
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    std::sscanf(line, "RssAnon: %ld", &m.anon_kb);
    std::sscanf(line, "RssShmem: %ld", &m.shmem_kb);
  }
  std::fclose(f);
  return m;
}

// By hand (bench/scale_bench.sh): with SCALE_HOLD=PATH set, the client
// holds every connection after the setups until PATH exists (`usmc ss`
// and `usmc stats` are timed meanwhile); at most two minutes.
void HoldIfAsked() {
  const char* path = std::getenv("SCALE_HOLD");
  if (path == nullptr) return;
  std::printf("HELD\n");
  std::fflush(stdout);
  for (int i = 0; i < 12000 && access(path, F_OK) != 0; ++i) usleep(10000);
}

void PrintStats(int n, int fds_before, int fds_after,
                const std::vector<uint64_t>& cpu,
                const std::vector<uint64_t>& wall, uint64_t wall_start,
                const Mem& m0, const Mem& m1) {
  std::printf("STATS conns=%d fds_before=%d fds_after=%d", n, fds_before,
              fds_after);
  std::printf(" setup_s=%.3f anon_kb=%ld,%ld shmem_kb=%ld,%ld",
              double(wall[size_t(n) - 1] - wall_start) / 1e9, m0.anon_kb,
              m1.anon_kb, m0.shmem_kb, m1.shmem_kb);
  std::printf(" cpu_us_per_setup=");
  for (int b = 0; b < n / kBatch; ++b) {
    std::printf("%s%.1f", b ? "," : "", SetupCost(cpu, b) / 1000);
  }
  std::printf(" wall_us_per_setup=");
  for (int b = 0; b < n / kBatch; ++b) {
    std::printf("%s%.1f", b ? "," : "", SetupCost(wall, b) / 1000);
  }
  std::printf("\n");
  std::fflush(stdout);
}

void WriteAllFd(int fd, const char* p, size_t len) {
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      pollfd pf{fd, POLLOUT, 0};
      if (poll(&pf, 1, 20000) != 1) FAIL("poll POLLOUT fd %d", fd);
      continue;
    }
    if (w <= 0) FAIL("write fd %d", fd);
    p += w;
    len -= size_t(w);
  }
}

void ReadExactFd(int fd, char* p, size_t len) {
  while (len > 0) {
    ssize_t r = read(fd, p, len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) FAIL("read fd %d (got %zd)", fd, r);
    p += r;
    len -= size_t(r);
  }
}

// ---- server -----------------------------------------------------------

struct SConn {
  int fd = -1;
  int id = -1;     // from the hello
  size_t got = 0;  // bytes of the current stage received
  int stage = 0;   // 0 hello, 1 round two, 2 wait EOF, 3 closed
  char buf[4 + kRound2];
};

int Server(int n, long nofile) {
  g_name = "scale-srv";
  prctl(PR_SET_NAME, g_name);
  SetNofile(nofile);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (lfd < 0) FAIL("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) FAIL("bind");
  if (listen(lfd, 4096) != 0) FAIL("listen");
  socklen_t al = sizeof a;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &al);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) FAIL("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = ~uint64_t{0};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0) FAIL("epoll_ctl listener");
  const int fds_before = CountFds();
  const Mem m0 = ReadMem();
  Mem m1;
  uint64_t wall_start = 0;
  std::printf("PORT %d\n", ntohs(a.sin_port));
  std::fflush(stdout);

  std::vector<SConn> conns(size_t(n) + 1);
  std::vector<uint64_t> cpu(static_cast<size_t>(n)),
      wall(static_cast<size_t>(n));
  int accepted = 0, hellos = 0, round2 = 0, closed = 0;
  int fds_after = -1;
  std::vector<epoll_event> evs(256);
  while (closed < n) {
    int k = epoll_wait(ep, evs.data(), int(evs.size()), 60000);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      FAIL("epoll_wait: %d accepted, %d hellos, %d round two, %d closed",
           accepted, hellos, round2, closed);
    }
    for (int e = 0; e < k; ++e) {
      if (evs[e].data.u64 == ~uint64_t{0}) {
        while (accepted < n) {
          int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
          if (fd < 0 && errno == EAGAIN) break;
          if (accepted == 0) wall_start = WallNs();
          if (fd < 0) FAIL("accept4 (#%d)", accepted);
          SConn& c = conns[size_t(accepted)];
          c.fd = fd;
          epoll_event ce{};
          ce.events = EPOLLIN | EPOLLRDHUP;
          ce.data.u64 = uint64_t(accepted);
          if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce) != 0) FAIL("epoll_ctl ADD");
          ++accepted;
        }
        continue;
      }
      SConn& c = conns[evs[e].data.u64];
      for (;;) {
        if (c.stage == 3) break;
        const size_t want = c.stage == 0 ? 4 + kHello : kRound2;
        if (c.stage == 2) {
          char x;
          ssize_t r = read(c.fd, &x, 1);
          if (r < 0 && errno == EAGAIN) break;
          if (r != 0) FAIL("conn %d: expected EOF, got %zd", c.id, r);
          epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
          close(c.fd);
          c.stage = 3;
          ++closed;
          break;
        }
        ssize_t r = read(c.fd, c.buf + c.got, want - c.got);
        if (r < 0 && errno == EAGAIN) break;
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) FAIL("read stage %d conn %d (got %zd)", c.stage, c.id, r);
        c.got += size_t(r);
        if (c.got < want) continue;
        c.got = 0;
        if (c.stage == 0) {
          std::memcpy(&c.id, c.buf, 4);
          if (c.id < 0 || c.id >= n) FAIL("bad id %d", c.id);
          long bad = Mismatch(c.buf + 4, 0, kHello, c.id);
          if (bad >= 0) FAIL("conn %d: hello byte %ld differs", c.id, bad);
          std::vector<char> out = Pattern(0, kHello, c.id + n);
          WriteAllFd(c.fd, out.data(), out.size());
          cpu[size_t(hellos)] = CpuNs();
          wall[size_t(hellos)] = WallNs();
          if (++hellos == n) {
            fds_after = CountFds();
            m1 = ReadMem();
          }
          c.stage = 1;
        } else {
          long bad = Mismatch(c.buf, kHello, kRound2, c.id);
          if (bad >= 0) FAIL("conn %d: round-two byte %ld differs", c.id, bad);
          std::vector<char> out = Pattern(kHello, kRound2, c.id + n);
          WriteAllFd(c.fd, out.data(), out.size());
          ++round2;
          c.stage = 2;
        }
      }
    }
  }
  PrintStats(n, fds_before, fds_after, cpu, wall, wall_start, m0, m1);
  return 0;
}

// ---- client -----------------------------------------------------------

int Client(int port, int n, long nofile) {
  g_name = "scale-cli";
  prctl(PR_SET_NAME, g_name);
  SetNofile(nofile);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(uint16_t(port));
  std::vector<int> fds(size_t(n), -1);
  std::vector<uint64_t> cpu(static_cast<size_t>(n)),
      wall(static_cast<size_t>(n));
  std::vector<char> in(kRound2);
  const int fds_before = CountFds();
  const Mem m0 = ReadMem();
  const uint64_t wall_start = WallNs();
  for (int i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) FAIL("socket (#%d)", i);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      FAIL("connect (#%d)", i);
    }
    std::vector<char> out(4);
    std::memcpy(out.data(), &i, 4);
    std::vector<char> p = Pattern(0, kHello, i);
    out.insert(out.end(), p.begin(), p.end());
    WriteAllFd(fd, out.data(), out.size());
    ReadExactFd(fd, in.data(), kHello);
    long bad = Mismatch(in.data(), 0, kHello, i + n);
    if (bad >= 0) FAIL("conn %d: reply byte %ld differs", i, bad);
    fds[size_t(i)] = fd;
    cpu[size_t(i)] = CpuNs();
    wall[size_t(i)] = WallNs();
  }
  const int fds_after = CountFds();
  const Mem m1 = ReadMem();
  HoldIfAsked();
  // Round two on every connection, all of them open: all writes (the last
  // connection first), then all reads.
  for (int i = n - 1; i >= 0; --i) {
    std::vector<char> p = Pattern(kHello, kRound2, i);
    WriteAllFd(fds[size_t(i)], p.data(), p.size());
  }
  for (int i = 0; i < n; ++i) {
    ReadExactFd(fds[size_t(i)], in.data(), kRound2);
    long bad = Mismatch(in.data(), kHello, kRound2, i + n);
    if (bad >= 0) FAIL("conn %d: round-two reply byte %ld differs", i, bad);
  }
  PrintStats(n, fds_before, fds_after, cpu, wall, wall_start, m0, m1);
  for (int fd : fds) close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string role = argc > 1 ? argv[1] : "";
  if (role == "server" && argc == 4) {
    return Server(std::atoi(argv[2]), std::atol(argv[3]));
  }
  if (role == "client" && argc == 5) {
    return Client(std::atoi(argv[2]), std::atoi(argv[3]), std::atol(argv[4]));
  }
  std::fprintf(stderr,
               "usage: scale_probe server N NOFILE | client PORT N NOFILE\n");
  return 2;
}
