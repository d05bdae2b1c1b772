// tests/preload_probe_data.cc: probe scenarios of the data path (see
// tests/preload_probe.cc): plain transfers, the dup family, fork, vfork,
// exec, threads, the _FORTIFY_SOURCE variants, sendfile/splice,
// recvmmsg/sendmmsg and close_range.
#include <fcntl.h>
#include <linux/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "tests/preload_probe.h"

namespace usmc::probe {

// ---- basic
// ----------------------------------------------------------------------

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
// accept() only after the client gave up on the handshake (its CLC
// timeout is short): the server finds the Proposal and the client's
// Decline together, so its handshake ends inside accept().
int LateAcceptServer(int lfd) {
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  return BasicServer(lfd);
}
// The file LateClient creates once its connect() returned, named by the
// server's port.
std::string ConnectReturnedMark(uint16_t port) {
  return "/tmp/usmc-probe-connected-" + std::to_string(port);
}
// accept() only once the client's connect() returned, so the server's
// Accept can only reach it after (at connect, a quick Accept is read at
// once and the handshake ends inside connect()). A 200 ms sleep here was
// too short for an ASan client on a loaded machine: SMC-D, and the client
// waited for a Decline that never came.
int SlowAcceptServer(int lfd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  CHECK(getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) == 0,
        "getsockname");
  const std::string mark = ConnectReturnedMark(ntohs(a.sin_port));
  for (int tries = 0; access(mark.c_str(), F_OK) != 0; ++tries) {
    CHECK(tries < 6000, "the client's connect() never returned");  // 30 s
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  unlink(mark.c_str());
  return BasicServer(lfd);
}
// accept() as root, then serve in a worker that dropped to uid 65534 first
// (a daemon's usual shape): the handshake's handover runs in the worker.
int DropWorkerServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  pid_t kid = fork();
  CHECK(kid >= 0, "fork");
  if (kid == 0) {
    SetName("probe-worker");
    close(lfd);
    if (setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0) {
      _exit(30);
    }
    exit(ServeBasic(fd));  // exit, not _exit: the exit report is written
  }
  close(fd);
  int st = 0;
  CHECK(waitpid(kid, &st, 0) == kid, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker failed");
  return 0;
}
int BasicExchange(int fd);
int BasicClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  return BasicExchange(fd);
}
// Waits until the kernel socket holds the peer's CLC Decline (after its
// Accept, or alone), looking with raw system calls: the interposer sees
// no call of the app, so the handshake does not move meanwhile.
int WaitForPeerDecline(int fd) {
  for (int tries = 0; tries < 6000; ++tries) {  // 30 s at most
    char buf[4096];
    const long n = syscall(SYS_recvfrom, fd, buf, sizeof buf,
                           MSG_PEEK | MSG_DONTWAIT, nullptr, nullptr);
    CHECK(n >= 0 || errno == EAGAIN || errno == EINTR, "peek");
    // Message by message: header (eyecatcher, type, length), then body.
    for (long off = 0; n > 0 && off + 8 <= n;) {
      CHECK(static_cast<uint8_t>(buf[off]) == 0xE2, "not CLC at %ld", off);
      if (buf[off + 4] == 4) return 0;
      const long len = (static_cast<uint8_t>(buf[off + 5]) << 8) |
                       static_cast<uint8_t>(buf[off + 6]);
      CHECK(len >= 8, "CLC length %ld", len);
      off += len;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(false, "no Decline from the server");
  return 1;
}

// Non-blocking connect, then nothing for ARG ms (a pool that connects
// ahead of use), or (ARG "decline") until the server gave up on the
// handshake: the handshake moves only when the app calls in again, or when
// the progress thread does.
int LateClient(uint16_t port, const char* arg) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a = Loopback(port);
  CHECK(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 &&
            errno == EINPROGRESS,
        "non-blocking connect");
  const int mark = open(ConnectReturnedMark(port).c_str(),
                        O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  CHECK(mark >= 0, "mark");
  close(mark);
  if (std::string(arg) == "decline") {
    RUN(WaitForPeerDecline(fd));
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(arg)));
  }
  SetNonblock(fd, false);
  return BasicExchange(fd);
}
int BasicExchange(int fd) {
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
// -----------------------------------------------------------------

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
// -----------------------------------------------------------------------

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

// One thread of the app is inside the connection (git clone's sideband
// thread reads it) while another forks (git clone forks index-pack): the
// child must not inherit the socket's lock, or the fd table's, taken by a
// thread it does not have. Each child closes its copy (as a child does
// before exec) and exits. Without the locks held across fork, a child hung
// in fork() within the first few dozen forks (60 keep the test short on a
// loaded 2-core machine, where each fork waits for the spinning reader).
constexpr int kForksWhileReading = 60;
int ForkWhileReadingServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, kChunk, 9));
  RUN(SendPat(fd, 0, kChunk, 10));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int ForkWhileReadingClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    char c;
    // Nothing comes until the forks are done: every call is EAGAIN.
    while (!stop.load()) (void)recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
  });
  int failed = 0;
  for (int i = 0; i < kForksWhileReading && failed == 0; ++i) {
    pid_t pid = fork();
    if (pid == 0) _exit(close(fd) == 0 ? 0 : 3);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
        WEXITSTATUS(st) != 0) {
      failed = i + 1;
    }
  }
  stop.store(true);
  reader.join();
  CHECK(failed == 0, "fork %d (or its child) failed", failed);
  RUN(SendPat(fd, 0, kChunk, 9));
  RUN(RecvPat(fd, 0, kChunk, 10));
  close(fd);
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
    // Only the task's own name (no shared memory is touched): the exit
    // report written at exec then does not pass for the parent's.
    prctl(PR_SET_NAME, "probe-vfork", 0, 0, 0);
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
// ------------------------------------------------------------

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
// ----------------------------------------------------------

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
// --------------------------------------------------------

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
// ----------------------------------------------------------------

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

// ---- threads
// --------------------------------------------------------------------

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

// ---- records from many threads --------------------------------------------

// Eight threads send 64-byte records on one socket while the reader is
// slow, so senders find the peer's DMB full: no record may be split by
// another thread's (a send that fits the DMB is placed whole).
constexpr int kRecThreads = 8, kRecEach = 1500;
constexpr size_t kRecLen = 64;
int RecordsServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  std::vector<int> next(kRecThreads, 0);
  char rec[kRecLen];
  for (int n = 0; n < kRecThreads * kRecEach; ++n) {
    if (n % 64 == 0)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    RUN(ReadExact(fd, rec, sizeof rec));
    const int t = static_cast<unsigned char>(rec[0]);
    CHECK(t < kRecThreads, "record %d: thread byte %d", n, t);
    int seq = 0;
    std::memcpy(&seq, rec + 1, sizeof seq);
    CHECK(seq == next[t], "record %d: thread %d seq %d, want %d", n, t, seq,
          next[t]);
    for (size_t i = 1 + sizeof seq; i < kRecLen; ++i)
      CHECK(rec[i] == static_cast<char>(t * 31 + seq), "record %d split", n);
    ++next[t];
  }
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int RecordsClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kRecThreads; ++t) {
    ts.emplace_back([&, t] {
      char rec[kRecLen];
      for (int seq = 0; seq < kRecEach; ++seq) {
        rec[0] = static_cast<char>(t);
        std::memcpy(rec + 1, &seq, sizeof seq);
        std::memset(rec + 1 + sizeof seq, t * 31 + seq,
                    kRecLen - 1 - sizeof seq);
        if (send(fd, rec, sizeof rec, 0) != static_cast<ssize_t>(kRecLen))
          bad.fetch_add(1);
      }
    });
  }
  for (std::thread& t : ts) t.join();
  CHECK(bad.load() == 0, "a send of a record was short or failed");
  close(fd);
  return 0;
}

// ---- exec
// -----------------------------------------------------------------------

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

// ---- out of file descriptors -----------------------------------------------

// The client runs out of fds in the middle of its handshake: every free fd
// number below a lowered RLIMIT_NOFILE is taken but ARG of them, after its
// socket exists. The connection must stay TCP with every byte (the reason
// is the test's to check: NOFD, not MEM).
int FdLimitClient(uint16_t port, const char* arg) {
  const int spare = std::atoi(arg);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0, "socket");
  // Small, so filling is cheap; above every fd open now (usmc's own start
  // at 64, and keep working: only new ones fail).
  rlimit lim{};
  CHECK(getrlimit(RLIMIT_NOFILE, &lim) == 0, "getrlimit");
  lim.rlim_cur = 48;
  CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0, "setrlimit");
  std::vector<int> fill;
  for (;;) {
    const int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (f < 0) break;
    fill.push_back(f);
  }
  CHECK(errno == EMFILE, "filling the fd table");
  for (int i = 0; i < spare && !fill.empty(); ++i) {
    close(fill.back());
    fill.pop_back();
  }
  const sockaddr_in a = Loopback(port);
  CHECK(connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0,
        "connect");
  return BasicExchange(fd);
}

void AddDataScenarios(Scenarios& s) {
  s["fd-limit"] = {BasicServer, FdLimitClient};
  s["records"] = {RecordsServer, RecordsClient};
  s["basic"] = {BasicServer, BasicClient};
  s["drop-worker"] = {DropWorkerServer, BasicClient};
  s["late-accept"] = {LateAcceptServer, BasicClient};
  s["late-client"] = {SlowAcceptServer, LateClient};
  s["dup"] = {DupServer, DupClient};
  s["fork"] = {ForkServer, ForkClient};
  s["fork-noclose"] = {ForkServer, ForkNoCloseClient};
  s["fork-parent-closes"] = {ForkParentClosesServer, ForkParentClosesClient};
  s["vfork"] = {ForkServer, VforkClient};
  s["fork-while-reading"] = {ForkWhileReadingServer, ForkWhileReadingClient};
  s["fortify"] = {FortifyServer, FortifyClient};
  s["splice"] = {SpliceServer, SpliceClient};
  s["mmsg"] = {MmsgServer, MmsgClient};
  s["close-range"] = {CloseRangeServer, CloseRangeClient};
  s["threads"] = {ThreadsServer, ThreadsClient};
  s["exec"] = {ExecServer, ExecClient};
  s["exec-cloexec"] = {ExecCloexecServer, ExecCloexecClient};
  s["exec-static"] = {ExecStaticServer, ExecStaticClient};
}

}  // namespace usmc::probe
