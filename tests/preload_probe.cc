// tests/preload_probe.cc: the program that tests/preload_test.cc runs under
// LD_PRELOAD=libusmc-preload.so. It is NOT linked with the interposer and
// uses only the plain socket API: one scenario per subcommand, a server part
// and a client part each, checking bytes (patterns), errno values and event
// bits itself. Exit code 0 = the scenario held; anything else is printed to
// stderr as "probe-xxx: FAIL file:line: what".
//
//   preload_probe pair SCEN            # listen, fork: child server, parent
//                                      # client (both under the preload)
//   preload_probe server SCEN          # prints "PORT n", serves one run
//   preload_probe client SCEN PORT [ARG]
//   preload_probe silent-server        # opts in, never sends CLC (no preload)
//   preload_probe silent-client PORT MODE
//
// The processes name themselves (prctl PR_SET_NAME) probe-srv, probe-cli,
// probe-cli2 (forked child), probe-exec (after exec): the exit report line
// of each process carries that name, so the test can tell them apart.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#ifndef USMC_PROBE_STATIC
#include "negotiate/negotiate.h"
#endif

#ifdef USMC_PROBE_STATIC
// The static program the exec-static scenario runs: it cannot load usmc, so
// the SMC socket it inherits must be dead, not a silent idle TCP socket.
// Prints what write and read did; exit 0 if the socket failed loudly.
int main(int argc, char** argv) {
  prctl(PR_SET_NAME, "probe-static", 0, 0, 0);
  signal(SIGPIPE, SIG_IGN);
  if (argc != 2) return 2;
  const int fd = std::atoi(argv[1]);
  ssize_t w = write(fd, "plain bytes", 11);
  int werr = errno;
  struct pollfd p = {fd, POLLIN, 0};
  poll(&p, 1, 5000);
  char c;
  ssize_t r = read(fd, &c, 1);
  int rerr = errno;
  std::printf("write=%zd errno=%d read=%zd errno=%d\n", w, w < 0 ? werr : 0, r,
              r < 0 ? rerr : 0);
  return (w < 0 || r < 0) ? 0 : 1;
}
#else
namespace {

#define CHECK(cond, ...)                                                      \
  do {                                                                        \
    if (!(cond)) {                                                            \
      const int e_ = errno;                                                   \
      char m_[256];                                                           \
      std::snprintf(m_, sizeof m_, __VA_ARGS__);                              \
      std::fprintf(stderr, "%s: FAIL %s:%d: %s [%s] (errno %d %s)\n", Name(), \
                   __FILE__, __LINE__, m_, #cond, e_, strerror(e_));          \
      return 1;                                                               \
    }                                                                         \
  } while (0)
#define RUN(expr)              \
  do {                         \
    if ((expr) != 0) return 1; \
  } while (0)

char g_name[16] = "probe";
const char* Name() { return g_name; }
void SetName(const char* n) {
  std::snprintf(g_name, sizeof g_name, "%s", n);
  prctl(PR_SET_NAME, g_name, 0, 0, 0);
}

// Byte i of stream `seed`.
uint8_t Pat(uint64_t i, int seed) {
  uint64_t x = i * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(seed) * 977;
  return static_cast<uint8_t>((x >> 29) ^ (x >> 47));
}
std::vector<char> Pattern(uint64_t off, size_t len, int seed) {
  std::vector<char> v(len);
  for (size_t i = 0; i < len; ++i) v[i] = static_cast<char>(Pat(off + i, seed));
  return v;
}
// Index of the first mismatch, or -1.
long Mismatch(const char* p, uint64_t off, size_t len, int seed) {
  for (size_t i = 0; i < len; ++i) {
    if (static_cast<uint8_t>(p[i]) != Pat(off + i, seed)) return long(i);
  }
  return -1;
}

int WriteAll(int fd, const void* buf, size_t len) {
  const char* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    CHECK(n > 0, "write fd %d: %zd", fd, n);
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
    CHECK(n > 0, "read fd %d returned %zd with %zu bytes left", fd, n, len);
    p += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}
int SendPat(int fd, uint64_t off, size_t len, int seed) {
  std::vector<char> v = Pattern(off, len, seed);
  return WriteAll(fd, v.data(), v.size());
}
int RecvPat(int fd, uint64_t off, size_t len, int seed) {
  std::vector<char> v(len);
  RUN(ReadExact(fd, v.data(), len));
  long bad = Mismatch(v.data(), off, len, seed);
  CHECK(bad < 0, "byte %lu of stream %d differs", off + bad, seed);
  return 0;
}
int ExpectEof(int fd) {
  char c;
  ssize_t n;
  do {
    n = read(fd, &c, 1);
  } while (n < 0 && errno == EINTR);
  CHECK(n == 0, "expected EOF, read returned %zd", n);
  return 0;
}
int Ack(int fd, char c = 'k') { return WriteAll(fd, &c, 1); }
int WaitAck(int fd) {
  char c;
  return ReadExact(fd, &c, 1);
}

int Listen(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  if (listen(fd, 16) != 0) return -1;
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}
sockaddr_in Loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}
int Connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = Loopback(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::fprintf(stderr, "%s: connect: %s\n", Name(), strerror(errno));
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
  fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

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

// ---- basic
// -------------------------------------------------------------------

constexpr size_t kBasicUp = 1 << 20, kBasicDown = 512 << 10;

int ServeBasic(int fd) {
  RUN(RecvPat(fd, 0, kBasicUp, 1));
  RUN(SendPat(fd, 0, kBasicDown, 2));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int BasicServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  return ServeBasic(fd);
}
int BasicClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  // send() and write() both.
  std::vector<char> v = Pattern(0, kBasicUp, 1);
  size_t half = kBasicUp / 2, off = 0;
  while (off < half) {
    ssize_t n = send(fd, v.data() + off, half - off, 0);
    CHECK(n > 0, "send");
    off += static_cast<size_t>(n);
  }
  RUN(WriteAll(fd, v.data() + half, kBasicUp - half));
  std::vector<char> in(kBasicDown);
  off = 0;
  while (off < kBasicDown) {
    ssize_t n = recv(fd, in.data() + off, kBasicDown - off, 0);
    CHECK(n > 0, "recv %zd", n);
    off += static_cast<size_t>(n);
  }
  CHECK(Mismatch(in.data(), 0, kBasicDown, 2) < 0, "reply differs");
  // The app's fd is the kernel TCP socket; what it carried tells whether
  // the bytes went around it (SMC-D: only the CLC handshake).
  struct stat st {};
  CHECK(fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode), "not a socket");
  tcp_info ti{};
  socklen_t tlen = sizeof ti;
  CHECK(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tlen) == 0, "TCP_INFO");
  std::printf("tcp_bytes_received=%llu\n",
              static_cast<unsigned long long>(ti.tcpi_bytes_received));
  std::fflush(stdout);
  close(fd);
  return 0;
}

// ---- dup family
// ----------------------------------------------------------------

constexpr size_t kChunk = 64 << 10;

// Six chunks through six fds of one socket, each fd closed after its chunk:
// only the last close may end the connection.
int DupServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, 6 * kChunk, 3));
  RUN(SendPat(fd, 0, kChunk, 4));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int DupClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  int busy = open("/dev/null", O_RDONLY);  // dup2 replaces an open fd
  CHECK(dup2(busy, 50) == 50, "dup2 busy");
  std::vector<int> fds;
  fds.push_back(dup(fd));
  fds.push_back(dup2(fd, 50));
  fds.push_back(dup3(fd, 51, O_CLOEXEC));
  fds.push_back(fcntl(fd, F_DUPFD, 60));
  fds.push_back(fcntl(fd, F_DUPFD_CLOEXEC, 70));
  for (int d : fds) CHECK(d >= 0, "dup failed");
  CHECK(fds[1] == 50 && fds[2] == 51 && fds[3] >= 60 && fds[4] >= 70,
        "dup numbers");
  RUN(SendPat(fd, 0, kChunk, 3));
  CHECK(close(fd) == 0, "close original");
  for (size_t i = 0; i < fds.size(); ++i) {
    RUN(SendPat(fds[i], (i + 1) * kChunk, kChunk, 3));
    if (i + 1 < fds.size()) CHECK(close(fds[i]) == 0, "close dup %zu", i);
  }
  RUN(RecvPat(fds.back(), 0, kChunk, 4));
  CHECK(close(fds.back()) == 0, "close last");
  close(busy);
  return 0;
}

// ---- fork
// ------------------------------------------------------------------------

// Parent writes A, a forked child writes B and closes its fd (it exits
// with `child_closes`, or without closing), the parent writes C.
int ForkServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, 3 * kChunk, 5));
  RUN(SendPat(fd, 0, kChunk, 6));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int ForkClientImpl(uint16_t port, bool child_closes) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, kChunk, 5));
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    SetName("probe-cli2");
    int rc = SendPat(fd, kChunk, kChunk, 5);
    if (child_closes && close(fd) != 0) rc = 1;
    exit(rc);
  }
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%d)", st);
  RUN(SendPat(fd, 2 * kChunk, kChunk, 5));
  RUN(RecvPat(fd, 0, kChunk, 6));
  close(fd);
  return 0;
}
int ForkClient(uint16_t port, const char*) {
  return ForkClientImpl(port, true);
}
int ForkNoCloseClient(uint16_t port, const char*) {
  return ForkClientImpl(port, false);
}

// The parent closes its fd right after fork; the child carries on alone.
int ForkParentClosesServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, 2 * kChunk, 7));
  RUN(SendPat(fd, 0, kChunk, 8));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int ForkParentClosesClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, kChunk, 7));
  int p[2];
  CHECK(pipe(p) == 0, "pipe");
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    SetName("probe-cli2");
    close(p[1]);
    char c;
    if (read(p[0], &c, 1) != 0) exit(3);  // EOF: the parent closed
    int rc = SendPat(fd, kChunk, kChunk, 7);
    if (rc == 0) rc = RecvPat(fd, 0, kChunk, 8);
    close(fd);
    exit(rc);
  }
  close(p[0]);
  CHECK(close(fd) == 0, "parent close");
  close(p[1]);
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%d)", st);
  return 0;
}

// vfork + exec of /bin/true, which inherits the socket (no FD_CLOEXEC) and
// exits; the parent then goes on using the connection and closes it.
int VforkClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, kChunk, 5));
  pid_t pid = vfork();
  if (pid == 0) {
    execl("/bin/true", "true", static_cast<char*>(nullptr));
    _exit(127);
  }
  CHECK(pid > 0, "vfork");
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "/bin/true failed (%d)", st);
  RUN(SendPat(fd, kChunk, 2 * kChunk, 5));
  RUN(RecvPat(fd, 0, kChunk, 6));
  close(fd);
  return 0;
}

// ---- _FORTIFY_SOURCE
// -----------------------------------------------------------

// The lengths are not compile-time constants, so that glibc's fortified
// inlines call __read_chk, __recv_chk, __recvfrom_chk and __poll_chk.
volatile size_t g_len_noise = 0;

int FortifyServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  char buf[4096];
  std::vector<char> got;
  const size_t want = 3 * kChunk;
  int which = 0;
  while (got.size() < want) {
    struct pollfd p[1] = {{fd, POLLIN, 0}};
    nfds_t nfds = 1 + g_len_noise;
    CHECK(poll(p, nfds, 10000) == 1 && (p[0].revents & POLLIN), "poll");
    size_t len = std::min(sizeof buf, want - got.size()) + g_len_noise;
    ssize_t n;
    switch (which++ % 3) {
      case 0:
        n = read(fd, buf, len);
        break;
      case 1:
        n = recv(fd, buf, len, 0);
        break;
      default: {
        sockaddr_in from{};
        socklen_t flen = sizeof from;
        n = recvfrom(fd, buf, len, 0, reinterpret_cast<sockaddr*>(&from),
                     &flen);
        break;
      }
    }
    CHECK(n > 0, "fortified read %zd", n);
    got.insert(got.end(), buf, buf + n);
  }
  CHECK(Mismatch(got.data(), 0, want, 9) < 0, "data differs");
  RUN(SendPat(fd, 0, kChunk, 10));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int FortifyClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, 3 * kChunk, 9));
  char buf[4096];
  size_t off = 0;
  while (off < kChunk) {
    size_t len = std::min(sizeof buf, kChunk - off) + g_len_noise;
    ssize_t n = read(fd, buf, len);
    CHECK(n > 0, "fortified read");
    CHECK(Mismatch(buf, off, static_cast<size_t>(n), 10) < 0, "reply differs");
    off += static_cast<size_t>(n);
  }
  close(fd);
  return 0;
}

// ---- sendfile / splice
// -----------------------------------------------------------

constexpr size_t kFileLen = 300 << 10, kFile2Len = 100 << 10,
                 kPipeLen = 64 << 10;

int SpliceServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  int p[2];
  CHECK(pipe(p) == 0, "pipe");
  const size_t total = kFileLen + kFile2Len + kPipeLen;
  std::vector<char> got(total);
  size_t off = 0;
  while (off < total) {
    ssize_t n = splice(fd, nullptr, p[1], nullptr, total - off, 0);
    CHECK(n > 0, "splice socket->pipe %zd", n);
    RUN(ReadExact(p[0], got.data() + off, static_cast<size_t>(n)));
    off += static_cast<size_t>(n);
  }
  CHECK(Mismatch(got.data(), 0, total, 11) < 0, "spliced data differs");
  RUN(Ack(fd));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int SpliceClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  int mf = memfd_create("probe", 0);
  std::vector<char> v = Pattern(0, kFileLen + kFile2Len, 11);
  RUN(WriteAll(mf, v.data(), v.size()));
  // sendfile with an offset pointer: the file position stays.
  off_t pos = 0;
  while (pos < static_cast<off_t>(kFileLen)) {
    ssize_t n = sendfile(fd, mf, &pos, kFileLen - static_cast<size_t>(pos));
    CHECK(n > 0, "sendfile");
  }
  // sendfile from the file position.
  CHECK(lseek(mf, kFileLen, SEEK_SET) == static_cast<off_t>(kFileLen), "seek");
  size_t sent = 0;
  while (sent < kFile2Len) {
    ssize_t n = sendfile(fd, mf, nullptr, kFile2Len - sent);
    CHECK(n > 0, "sendfile (file position)");
    sent += static_cast<size_t>(n);
  }
  CHECK(lseek(mf, 0, SEEK_CUR) == static_cast<off_t>(kFileLen + kFile2Len),
        "sendfile did not move the file position");
  // splice pipe -> socket.
  int p[2];
  CHECK(pipe(p) == 0, "pipe");
  std::vector<char> w = Pattern(kFileLen + kFile2Len, kPipeLen, 11);
  size_t done = 0;
  while (done < kPipeLen) {
    size_t part = std::min<size_t>(16 << 10, kPipeLen - done);
    RUN(WriteAll(p[1], w.data() + done, part));
    size_t moved = 0;
    while (moved < part) {
      ssize_t n = splice(p[0], nullptr, fd, nullptr, part - moved, 0);
      CHECK(n > 0, "splice pipe->socket");
      moved += static_cast<size_t>(n);
    }
    done += part;
  }
  RUN(WaitAck(fd));
  close(fd);
  return 0;
}

// ---- recvmmsg / sendmmsg
// -----------------------------------------------------------

constexpr int kMsgs = 8;
constexpr size_t kMsgLen = 4096;

int MmsgServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  const size_t total = 4 * kMsgs * kMsgLen;
  std::vector<char> got;
  while (got.size() < total) {
    std::vector<char> bufs(kMsgs * kMsgLen);
    mmsghdr mm[kMsgs] = {};
    iovec iov[kMsgs];
    for (int i = 0; i < kMsgs; ++i) {
      iov[i] = {bufs.data() + i * kMsgLen, kMsgLen};
      mm[i].msg_hdr.msg_iov = &iov[i];
      mm[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(fd, mm, kMsgs, MSG_WAITFORONE, nullptr);
    CHECK(n > 0, "recvmmsg %d", n);
    for (int i = 0; i < n; ++i) {
      CHECK(mm[i].msg_len > 0, "empty message %d", i);
      got.insert(got.end(), bufs.data() + i * kMsgLen,
                 bufs.data() + i * kMsgLen + mm[i].msg_len);
    }
  }
  CHECK(got.size() == total, "got %zu", got.size());
  CHECK(Mismatch(got.data(), 0, total, 12) < 0, "recvmmsg data differs");
  // Reply with sendmmsg: two iovecs per message.
  std::vector<char> r = Pattern(0, kMsgs * kMsgLen, 13);
  mmsghdr mm[kMsgs] = {};
  iovec iov[kMsgs][2];
  for (int i = 0; i < kMsgs; ++i) {
    char* b = r.data() + i * kMsgLen;
    iov[i][0] = {b, 1000};
    iov[i][1] = {b + 1000, kMsgLen - 1000};
    mm[i].msg_hdr.msg_iov = iov[i];
    mm[i].msg_hdr.msg_iovlen = 2;
  }
  int sent = 0;
  while (sent < kMsgs) {
    int n = sendmmsg(fd, mm + sent, kMsgs - sent, 0);
    CHECK(n > 0, "sendmmsg");
    for (int i = sent; i < sent + n; ++i) {
      CHECK(mm[i].msg_len == kMsgLen, "short sendmmsg message");
    }
    sent += n;
  }
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int MmsgClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  std::vector<char> v = Pattern(0, 4 * kMsgs * kMsgLen, 12);
  for (int round = 0; round < 4; ++round) {
    mmsghdr mm[kMsgs] = {};
    iovec iov[kMsgs];
    for (int i = 0; i < kMsgs; ++i) {
      iov[i] = {v.data() + (round * kMsgs + i) * kMsgLen, kMsgLen};
      mm[i].msg_hdr.msg_iov = &iov[i];
      mm[i].msg_hdr.msg_iovlen = 1;
    }
    int sent = 0;
    while (sent < kMsgs) {
      int n = sendmmsg(fd, mm + sent, kMsgs - sent, 0);
      CHECK(n > 0, "sendmmsg");
      for (int i = sent; i < sent + n; ++i) {
        CHECK(mm[i].msg_len == kMsgLen, "short sendmmsg message");
      }
      sent += n;
    }
  }
  RUN(RecvPat(fd, 0, kMsgs * kMsgLen, 13));
  close(fd);
  return 0;
}

// ---- close_range
// ---------------------------------------------------------------

int CloseRangeServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, 2 * kChunk, 14));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int CloseRangeClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  CHECK(dup2(fd, 100) == 100, "dup2");
  CHECK(close_range(100, 100, 0) == 0, "close_range 100");
  RUN(SendPat(fd, 0, kChunk, 14));  // the other reference still works
  CHECK(dup2(fd, 101) == 101, "dup2");
  CHECK(close(fd) == 0, "close");
  RUN(SendPat(101, kChunk, kChunk, 14));
  CHECK(close_range(3, ~0u, 0) == 0, "close_range all");  // ends it
  return 0;
}

// ---- epoll
// ---------------------------------------------------------------------

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
  int outer = NewEp(inner, EPOLLIN, 22);
  CHECK(outer >= 0, "nest");
  epoll_event ev[8];
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
// -----------------------------------------------------------------

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
        fd_set rd, wr;
        FD_ZERO(&rd);
        FD_ZERO(&wr);
        FD_SET(fd, &rd);
        FD_SET(fd, &wr);
        timespec ts = {10, 0};
        sigset_t mask;
        sigemptyset(&mask);
        int n = pselect(fd + 1, &rd, &wr, nullptr, &ts, &mask);
        readable = n == 2 && FD_ISSET(fd, &rd) && FD_ISSET(fd, &wr);
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
// ----------------------------------------------------------

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
// ---------------------

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
// --------------------------------------------------------

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

// ---- threads
// ---------------------------------------------------------------------

constexpr size_t kThreadLen = 2 << 20;
int ThreadsServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  int rc_send = 0;
  std::thread t([&] { rc_send = SendPat(fd, 0, kThreadLen, 22); });
  int rc = RecvPat(fd, 0, kThreadLen, 21);
  t.join();
  CHECK(rc == 0 && rc_send == 0, "full duplex on one fd from two threads");
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int ThreadsClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  int rc_send = 0, rc_recv = 0;
  std::thread a([&] { rc_send = SendPat(fd, 0, kThreadLen, 21); });
  std::thread b([&] { rc_recv = RecvPat(fd, 0, kThreadLen, 22); });
  a.join();
  b.join();
  CHECK(rc_send == 0 && rc_recv == 0, "threads");
  close(fd);
  return 0;
}

// ---- exec
// ------------------------------------------------------------------------

int ExecServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, kChunk, 23));
  RUN(Ack(fd));
  RUN(RecvPat(fd, kChunk, 2 * kChunk, 23));
  RUN(SendPat(fd, 0, kChunk, 24));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int ExecClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, kChunk, 23));
  RUN(WaitAck(fd));
  CHECK(dup2(fd, 40) == 40, "dup2");
  std::string a = std::to_string(fd);
  execl("/proc/self/exe", "preload_probe", "exec-child", a.c_str(), "40",
        static_cast<char*>(nullptr));
  CHECK(false, "exec");
  return 1;
}
// The new image: both fds must still be the connection.
int ExecChild(int fd, int fd2) {
  SetName("probe-exec");
  RUN(SendPat(fd, kChunk, kChunk, 23));
  CHECK(close(fd) == 0, "close");
  RUN(SendPat(fd2, 2 * kChunk, kChunk, 23));
  RUN(RecvPat(fd2, 0, kChunk, 24));
  CHECK(close(fd2) == 0, "close");
  return 0;
}

// The socket is FD_CLOEXEC: exec closes the last reference, which must end
// the connection in order (EOF at the peer).
int ExecCloexecServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, kChunk, 23));
  RUN(Ack(fd));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int ExecCloexecClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, kChunk, 23));
  RUN(WaitAck(fd));
  CHECK(fcntl(fd, F_SETFD, FD_CLOEXEC) == 0, "FD_CLOEXEC");
  execl("/bin/true", "true", static_cast<char*>(nullptr));
  CHECK(false, "exec");
  return 1;
}

// exec of a static program (it cannot load usmc): the socket must be dead
// there, and the peer must see the connection fail.
int ExecStaticServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, kChunk, 23));
  RUN(Ack(fd));
  char buf[64];
  ssize_t n;
  do {
    n = recv(fd, buf, sizeof buf, 0);
  } while (n < 0 && errno == EINTR);
  CHECK(n < 0 && (errno == ECONNRESET || errno == ECONNABORTED),
        "after the peer's failed exec handover: recv %zd (want ECONNRESET)", n);
  close(fd);
  return 0;
}
int ExecStaticClient(uint16_t port, const char* static_probe) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, kChunk, 23));
  RUN(WaitAck(fd));
  std::string a = std::to_string(fd);
  execl(static_probe, "preload_probe_static", a.c_str(),
        static_cast<char*>(nullptr));
  CHECK(false, "exec %s", static_probe);
  return 1;
}

// ---- silent peer (opts in, never sends CLC; run without the preload)
// ----------------

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

// ---- dispatch
// -----------------------------------------------------------------

struct Scenario {
  std::function<int(int)> server;
  std::function<int(uint16_t, const char*)> client;
};

std::map<std::string, Scenario> Scenarios() {
  auto steps = [](int n) {
    return [n](uint16_t port, const char*) { return ClientSteps(port, n); };
  };
  return {
      {"basic", {BasicServer, BasicClient}},
      {"dup", {DupServer, DupClient}},
      {"fork", {ForkServer, ForkClient}},
      {"fork-noclose", {ForkServer, ForkNoCloseClient}},
      {"fork-parent-closes", {ForkParentClosesServer, ForkParentClosesClient}},
      {"vfork", {ForkServer, VforkClient}},
      {"fortify", {FortifyServer, FortifyClient}},
      {"splice", {SpliceServer, SpliceClient}},
      {"mmsg", {MmsgServer, MmsgClient}},
      {"close-range", {CloseRangeServer, CloseRangeClient}},
      {"epoll-lt", {EpollLtServer, steps(2)}},
      {"epoll-et", {EpollEtServer, steps(2)}},
      {"epoll-oneshot", {EpollOneshotServer, steps(2)}},
      {"epoll-rdhup", {EpollRdhupServer, steps(1)}},
      {"epoll-multi", {EpollMultiServer, steps(2)}},
      {"epoll-nested", {EpollNestedServer, steps(1)}},
      {"poll", {PollFamilyServer, steps(4)}},
      {"nb-epoll", {NbServer, NbEpollClient}},
      {"nb-poll", {NbServer, NbPollClient}},
      {"refused", {nullptr, RefusedClient}},
      {"lowat", {LowatServer, LowatClient}},
      {"oob", {OobServer, OobClient}},
      {"peek", {PeekServer, PeekClient}},
      {"eintr", {EintrServer, EintrClient}},
      {"threads", {ThreadsServer, ThreadsClient}},
      {"exec", {ExecServer, ExecClient}},
      {"exec-cloexec", {ExecCloexecServer, ExecCloexecClient}},
      {"exec-static", {ExecStaticServer, ExecStaticClient}},
      {"silent-peer", {nullptr, SilentPeerClient}},
      {"silent-accept", {SilentAcceptServer, BasicClient}},
      {"silent-talk", {SilentTalkServer, nullptr}},
  };
}

int Usage() {
  std::fprintf(stderr,
               "usage: preload_probe pair|server SCEN | client SCEN PORT "
               "[ARG] | exec-child FD FD2 | silent-server | silent-client "
               "PORT talk|idle\n");
  return 2;
}

int ProbeMain(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) return Usage();
  const std::string mode = argv[1];
  if (mode == "exec-child" && argc == 4) {
    return ExecChild(std::atoi(argv[2]), std::atoi(argv[3]));
  }
  if (mode == "silent-server") return SilentServerMain();
  if (mode == "silent-client" && argc == 4) {
    return SilentClientMain(static_cast<uint16_t>(std::atoi(argv[2])), argv[3]);
  }
  if (argc < 3) return Usage();
  auto all = Scenarios();
  auto it = all.find(argv[2]);
  if (it == all.end()) return Usage();
  const Scenario& s = it->second;
  if (mode == "client" && argc >= 4) {
    SetName("probe-cli");
    return s.client(static_cast<uint16_t>(std::atoi(argv[3])),
                    argc >= 5 ? argv[4] : "");
  }
  uint16_t port = 0;
  int lfd = Listen(&port);
  CHECK(lfd >= 0, "listen");
  if (mode == "server") {
    SetName("probe-srv");
    std::printf("PORT %u\n", port);
    std::fflush(stdout);
    return s.server(lfd);
  }
  if (mode != "pair") return Usage();
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    SetName("probe-srv");
    exit(s.server(lfd));
  }
  close(lfd);
  SetName("probe-cli");
  int rc = s.client(port, argc >= 4 ? argv[3] : "");
  int st = 0;
  if (rc != 0) kill(pid, SIGKILL);  // the server may wait for us forever
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  CHECK(rc == 0, "client part failed");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server part failed (%#x)", st);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ProbeMain(argc, argv); }

#endif  // USMC_PROBE_STATIC
