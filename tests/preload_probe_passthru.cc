// tests/preload_probe_passthru.cc: fds of connections that are plain TCP for
// good take a path that skips usmc's table (FdKind::kPassThru,
// preload/conn.h). An fd number must never carry that mark to whatever the
// number names next.
//   plain-echo      the server part (run without usmc) echoes 7
//                   connections, each in a child, until EOF
//   passthru-reuse  the client (under usmc, ARG: the plain-echo port) makes
//                   TCP-for-good connections to plain-echo and SMC-D ones to
//                   the server part (4, echoed the same way), and checks
//                   every byte through 6 kinds of calls and epoll while:
//                   a child of fork uses an inherited one (its exit report
//                   counts only its own bytes); a closed one's number comes
//                   back as an SMC-D connection (socket), as the target of
//                   dup2 and dup3 from an SMC-D one, and as a pipe (whose
//                   bytes are not the connection's, nor the next one's on
//                   that number), and from recvmsg as an SMC-D connection
//                   a child passed with SCM_RIGHTS.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "tests/preload_probe.h"

namespace usmc::probe {
namespace {

constexpr int kPlainConns = 7;
constexpr int kSmcConns = 4;
constexpr size_t kMsg = 64;
constexpr int kKinds = 6;  // one Exercise: kKinds * kMsg bytes each way

int EchoUntilEof(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    CHECK(n >= 0, "echo read");
    if (n == 0) return 0;
    RUN(WriteAll(fd, buf, static_cast<size_t>(n)));
  }
}

// Echoes `conns` connections, each in its own child, concurrently.
int EchoServer(int lfd, int conns) {
  std::vector<pid_t> kids;
  for (int i = 0; i < conns; ++i) {
    int fd = AcceptOne(lfd);
    CHECK(fd >= 0, "accept");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
      close(lfd);
      const int rc = EchoUntilEof(fd);
      close(fd);
      exit(rc);
    }
    close(fd);
    kids.push_back(pid);
  }
  for (pid_t k : kids) {
    int st = 0;
    CHECK(waitpid(k, &st, 0) == k && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "echo child %d (%#x)", k, st);
  }
  return 0;
}

int PlainEchoServer(int lfd) { return EchoServer(lfd, kPlainConns); }
int SmcEchoServer(int lfd) { return EchoServer(lfd, kSmcConns); }

// Waits for fd's echo with epoll (the app's data must come back as given).
int WaitReadable(int ep, int fd) {
  epoll_event ev{};
  int n;
  do {
    n = epoll_wait(ep, &ev, 1, 20000);
  } while (n < 0 && errno == EINTR);
  CHECK(n == 1 && ev.data.fd == fd && (ev.events & EPOLLIN),
        "epoll_wait for fd %d: %d, data %d, events %#x", fd, n, ev.data.fd,
        ev.events);
  return 0;
}

// One message out with call kind k.
int PutKind(int fd, int k, const char* p) {
  ssize_t n = -1;
  switch (k) {
    case 0:
      n = write(fd, p, kMsg);
      break;
    case 1:
      n = send(fd, p, kMsg, 0);
      break;
    case 2:
      n = sendto(fd, p, kMsg, 0, nullptr, 0);
      break;
    case 3: {
      iovec iov[2] = {{const_cast<char*>(p), 20},
                      {const_cast<char*>(p) + 20, kMsg - 20}};
      n = writev(fd, iov, 2);
      break;
    }
    default: {
      iovec iov[3] = {{const_cast<char*>(p), 16},
                      {const_cast<char*>(p) + 16, 40},
                      {const_cast<char*>(p) + 56, kMsg - 56}};
      msghdr m{};
      m.msg_iov = iov;
      m.msg_iovlen = 3;
      n = sendmsg(fd, &m, 0);
      break;
    }
  }
  CHECK(n == static_cast<ssize_t>(kMsg), "send kind %d on fd %d: %zd", k, fd,
        n);
  return 0;
}

// What is there, up to `len`, with call kind k.
ssize_t TakeKind(int fd, int k, char* p, size_t len) {
  switch (k) {
    case 0:
      return read(fd, p, len);
    case 1:
      return recv(fd, p, len, 0);
    case 2:
      return recvfrom(fd, p, len, 0, nullptr, nullptr);
    case 3:
    case 5: {
      const size_t half = len / 2;
      iovec iov[2] = {{p, half}, {p + half, len - half}};
      return readv(fd, iov, 2);
    }
    default: {
      iovec iov[1] = {{p, len}};
      msghdr m{};
      m.msg_iov = iov;
      m.msg_iovlen = 1;
      return recvmsg(fd, &m, 0);
    }
  }
}

// kKinds messages of kMsg bytes through fd and back, each kind of call once,
// every receive after epoll says fd is readable. `off`: the stream offset.
int Exercise(int fd, uint64_t* off, int seed) {
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  CHECK(ep >= 0, "epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "EPOLL_CTL_ADD %d", fd);
  for (int k = 0; k < kKinds; ++k) {
    std::vector<char> out = Pattern(*off, kMsg, seed), in(kMsg);
    RUN(PutKind(fd, k, out.data()));
    size_t got = 0;
    while (got < kMsg) {
      RUN(WaitReadable(ep, fd));
      ssize_t n = TakeKind(fd, k, in.data() + got, kMsg - got);
      CHECK(n > 0, "receive kind %d on fd %d: %zd", k, fd, n);
      got += static_cast<size_t>(n);
    }
    CHECK(Mismatch(in.data(), *off, kMsg, seed) < 0,
          "fd %d kind %d: the echo differs", fd, k);
    *off += kMsg;
  }
  CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr) == 0, "EPOLL_CTL_DEL");
  close(ep);
  return 0;
}

int SendFd(int sock, int fd) {
  char byte = 'f';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof ctl;
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  CHECK(sendmsg(sock, &mh, 0) == 1, "sendmsg SCM_RIGHTS");
  return 0;
}

int RecvFd(int sock, int* fd) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof ctl;
  CHECK(recvmsg(sock, &mh, 0) == 1 && byte == 'f', "recvmsg");
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  CHECK(c != nullptr && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int)),
        "no fd came");
  std::memcpy(fd, CMSG_DATA(c), sizeof *fd);
  return 0;
}

int ReuseClient(uint16_t port, const char* arg) {
  const uint16_t plain = static_cast<uint16_t>(std::atoi(arg));
  CHECK(plain != 0, "ARG: the plain echo port");
  uint64_t off[16] = {};  // each connection's stream offset

  // fork: the child's calls on an inherited TCP-for-good fd count in its
  // own report (1 Exercise), the parent's in the parent's.
  const int t6 = Connect(plain);
  CHECK(t6 >= 0, "connect plain");
  RUN(Exercise(t6, &off[0], 1));
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    SetName("probe-cli2");
    exit(Exercise(t6, &off[0], 1));
  }
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
        "fork child (%#x)", st);
  off[0] += kKinds * kMsg;  // what the child moved
  RUN(Exercise(t6, &off[0], 1));

  // close: the number comes back from socket() as an SMC-D connection.
  const int t = Connect(plain);
  CHECK(t >= 0, "connect plain");
  RUN(Exercise(t, &off[1], 2));
  RUN(Exercise(t, &off[1], 2));
  CHECK(close(t) == 0, "close");
  const int s = Connect(port);
  CHECK(s == t, "socket() took %d, not the closed %d", s, t);
  RUN(Exercise(s, &off[2], 3));
  CHECK(close(s) == 0, "close");

  // dup2 and dup3: an SMC-D connection onto a TCP-for-good fd's number.
  for (int use_dup3 = 0; use_dup3 < 2; ++use_dup3) {
    const int tcp = Connect(plain);
    CHECK(tcp >= 0, "connect plain");
    uint64_t* toff = &off[3 + use_dup3];
    uint64_t* soff = &off[5 + use_dup3];
    RUN(Exercise(tcp, toff, 4 + use_dup3));
    const int smc = Connect(port);
    CHECK(smc >= 0, "connect");
    RUN(Exercise(smc, soff, 6 + use_dup3));
    const int r = use_dup3 ? dup3(smc, tcp, O_CLOEXEC) : dup2(smc, tcp);
    CHECK(r == tcp, "dup%d: %d", use_dup3 ? 3 : 2, r);
    RUN(Exercise(tcp, soff, 6 + use_dup3));  // the SMC-D connection now
    CHECK(close(smc) == 0, "close");
    RUN(Exercise(tcp, soff, 6 + use_dup3));
    CHECK(close(tcp) == 0, "close");
  }

  // pipe: the number of a closed TCP-for-good fd; its bytes are the pipe's.
  const int t5 = Connect(plain);
  CHECK(t5 >= 0, "connect plain");
  RUN(Exercise(t5, &off[8], 8));
  CHECK(close(t5) == 0, "close");
  int p[2];
  CHECK(pipe(p) == 0, "pipe");
  CHECK(p[0] == t5 || p[1] == t5, "pipe took %d %d, not %d", p[0], p[1], t5);
  char buf[1000];
  std::memset(buf, 'p', sizeof buf);
  CHECK(write(p[1], buf, sizeof buf) == sizeof buf, "pipe write");
  CHECK(read(p[0], buf, sizeof buf) == sizeof buf, "pipe read");
  close(p[0]);
  close(p[1]);
  // And a connection again: it starts from zero bytes.
  const int t7 = Connect(plain);
  CHECK(t7 == t5, "socket() took %d, not the closed %d", t7, t5);
  RUN(Exercise(t7, &off[9], 9));
  CHECK(close(t7) == 0, "close");

  // SCM_RIGHTS: the number comes back from recvmsg as an SMC-D connection
  // that a child connected and passed (a worker handing one back).
  const int t8 = Connect(plain);
  CHECK(t8 >= 0, "connect plain");
  RUN(Exercise(t8, &off[10], 10));
  int sp[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0,
        "socketpair");
  pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    SetName("probe-cli3");
    close(sp[0]);
    const int smc = Connect(port);
    CHECK(smc >= 0, "connect");
    RUN(SendFd(sp[1], smc));
    close(smc);
    char c;
    CHECK(read(sp[1], &c, 1) == 1, "the parent's ack");
    exit(0);
  }
  close(sp[1]);
  CHECK(close(t8) == 0, "close");
  int got = -1;
  RUN(RecvFd(sp[0], &got));
  CHECK(got == t8, "recvmsg gave %d, not the closed %d", got, t8);
  CHECK(write(sp[0], "k", 1) == 1, "ack");
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
        "passing child (%#x)", st);
  close(sp[0]);
  RUN(Exercise(got, &off[11], 11));
  CHECK(close(got) == 0, "close");
  CHECK(close(t6) == 0, "close");
  // Parent: TCP t6 x2, t x2, dup2's and dup3's x1 each, t5, t7, t8 x1 (9);
  // SMC-D s x1, dup2's and dup3's x3 each, the passed one x1 (8).
  std::printf("exercise_bytes=%zu\n", kKinds * kMsg);
  return 0;
}

}  // namespace

void AddPassThruScenarios(Scenarios& s) {
  s["plain-echo"] = {PlainEchoServer, nullptr};
  s["passthru-reuse"] = {SmcEchoServer, ReuseClient};
}

}  // namespace usmc::probe
