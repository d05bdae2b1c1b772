// tests/preload_probe_pass.cc: accepted sockets passed to another process
// with SCM_RIGHTS (preload/pass.h), as pre-fork servers, socket activation
// and cluster modes do. The listener forks a worker first (so the worker's
// exit report counts only what it moved), accepts, and hands connections
// over a Unix socketpair; the worker serves them.
//
//   pass-stream:     SOCK_STREAM pair, one fd per message; the listener
//                    closes its copy right after sending.
//   pass-dgram-many: SOCK_DGRAM pair, a whole batch of fds in one message.
//   pass-late:       as pass-stream, but the worker receives each batch only
//                    after the listener closed its copies.
//   pass-back:       the worker reads the request and hands the socket back
//                    to the listener (closing its copy), which replies.
//   pass-back-exited: as pass-back for one batch, but the worker has exited
//                    before the listener closes its copies: the connections
//                    are in flight back to the listener, held by no process.
//   pass-static, pass-otheruid-user: a receiver that cannot take the
//                    connection (no usmc; another uid, from a non-root
//                    sender) gets a reset socket.
//   pass-otheruid:   root hands the connection to a worker of uid 65534,
//                    which carries it on over SMC-D.
//   pass-otheruid-shared: as pass-otheruid, while the client holds a second
//                    connection to the server (same arena pair): the
//                    passed one is reset, the other carries on.
//   pass-otheruid-earlier: as pass-otheruid, after an earlier connection of
//                    the same pair ended (its freed slot kept its bytes):
//                    the passed one is reset.
//   pass-arena-alone: one connection at a time, each alone in its arena
//                    pair when passed: it goes with both arenas, and the
//                    listener's pair is retired (the client's next
//                    connection starts a new pair).
//   pass-arena-shared: two live connections from one client process share
//                    a pair: the first goes to the worker (our uid: the
//                    whole pair goes), which replies on it; the second is
//                    served by the listener; both over SMC-D.
//
// The client makes kPassConns connections, kPassBatch at a time: a request
// of kPassReq bytes each, then it checks a reply of kPassReply bytes and EOF.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/preload_probe.h"

namespace usmc::probe {
namespace {

constexpr int kPassConns = 50;
constexpr int kPassBatch = 5;
constexpr size_t kPassReq = 4096;
constexpr size_t kPassReply = 96 << 10;

// One message carrying `fds` (and one byte: a stream needs data).
int SendFds(int sock, const std::vector<int>& fds) {
  char byte = 'f';
  iovec iov{&byte, 1};
  std::vector<char> ctl(CMSG_SPACE(fds.size() * sizeof(int)), 0);
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.data();
  mh.msg_controllen = ctl.size();
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
  std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  ssize_t n;
  do {
    n = sendmsg(sock, &mh, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  CHECK(n == 1, "sendmsg of %zu fds", fds.size());
  return 0;
}

// Receives one message with up to `max` fds into *fds; the control buffer
// is exactly what `max` fds need, as an application sizes it.
int RecvFds(int sock, size_t max, std::vector<int>* fds) {
  char byte = 0;
  iovec iov{&byte, 1};
  std::vector<char> ctl(CMSG_SPACE(max * sizeof(int)), 0);
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.data();
  mh.msg_controllen = ctl.size();
  ssize_t n;
  do {
    n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  CHECK(n == 1 && byte == 'f', "recvmsg: %zd", n);
  CHECK(!(mh.msg_flags & MSG_CTRUNC), "control data truncated");
  fds->clear();
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    CHECK(c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS,
          "unexpected cmsg %d/%d", c->cmsg_level, c->cmsg_type);
    const size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds->push_back(fd);
    }
  }
  CHECK(!fds->empty() && fds->size() <= max, "got %zu fds", fds->size());
  return 0;
}

bool IsCloexec(int fd) { return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }

int Reply(int fd, int i) {
  RUN(SendPat(fd, 0, kPassReply, 200 + i));
  close(fd);
  return 0;
}

// kLate: as kStream, but the worker receives a batch only after the
// listener closed its copies (a pipe says so): the connections are in
// flight with no process of the sender's side holding them.
// kBackExited: as kBack, one batch, and the listener closes its copies only
// once the worker has exited (its sends back are all in flight then).
enum class Mode { kStream, kDgramMany, kBack, kLate, kBackExited };

bool Back(Mode m) { return m == Mode::kBack || m == Mode::kBackExited; }
int Conns(Mode m) { return m == Mode::kBackExited ? kPassBatch : kPassConns; }

// The worker: receives every connection, reads its request, and replies
// (or, kBack, hands it back to the listener).
int Worker(int sock, Mode mode, int go) {
  SetName("probe-wrk");
  int next = 0;
  while (next < Conns(mode)) {
    if (mode == Mode::kLate && next % kPassBatch == 0) RUN(WaitAck(go));
    std::vector<int> fds;
    RUN(RecvFds(sock, mode == Mode::kDgramMany ? kPassBatch : 1, &fds));
    for (int fd : fds) {
      CHECK(IsCloexec(fd), "MSG_CMSG_CLOEXEC not applied");
      const int i = next++;
      RUN(RecvPat(fd, 0, kPassReq, 100 + i));
      if (Back(mode)) {
        RUN(SendFds(sock, {fd}));
        close(fd);
      } else {
        RUN(Reply(fd, i));
      }
    }
  }
  return 0;
}

int PassServer(int lfd, Mode mode) {
  int sv[2];
  CHECK(socketpair(AF_UNIX, mode == Mode::kDgramMany ? SOCK_DGRAM : SOCK_STREAM,
                   0, sv) == 0,
        "socketpair");
  int go[2];
  CHECK(pipe(go) == 0, "pipe");
  pid_t worker = fork();
  CHECK(worker >= 0, "fork");
  if (worker == 0) {
    close(lfd);
    close(sv[0]);
    close(go[1]);
    exit(Worker(sv[1], mode, go[0]));  // exit(): its report is written
  }
  close(sv[1]);
  close(go[0]);
  int st = 0;
  for (int b = 0; b < Conns(mode) / kPassBatch; ++b) {
    std::vector<int> fds;
    for (int k = 0; k < kPassBatch; ++k) {
      int fd = AcceptOne(lfd);
      CHECK(fd >= 0, "accept %d", b * kPassBatch + k);
      fds.push_back(fd);
    }
    if (mode == Mode::kDgramMany) {
      RUN(SendFds(sv[0], fds));
    } else {
      for (int fd : fds) RUN(SendFds(sv[0], {fd}));
    }
    if (mode == Mode::kBackExited) {
      CHECK(waitpid(worker, &st, 0) == worker, "waitpid");
      worker = 0;
    }
    for (int fd : fds) close(fd);
    if (mode == Mode::kLate) RUN(Ack(go[1]));
    if (Back(mode)) {
      for (int k = 0; k < kPassBatch; ++k) {
        std::vector<int> back;
        RUN(RecvFds(sv[0], 1, &back));
        RUN(Reply(back[0], b * kPassBatch + k));
      }
    }
  }
  CHECK(worker == 0 || waitpid(worker, &st, 0) == worker, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker failed (%#x)", st);
  close(sv[0]);
  return 0;
}

int PassClientOf(uint16_t port, int conns) {
  for (int b = 0; b < conns / kPassBatch; ++b) {
    std::vector<int> fds;
    for (int k = 0; k < kPassBatch; ++k) {
      int fd = Connect(port);
      CHECK(fd >= 0, "connect %d", b * kPassBatch + k);
      RUN(SendPat(fd, 0, kPassReq, 100 + b * kPassBatch + k));
      fds.push_back(fd);
    }
    for (int k = 0; k < kPassBatch; ++k) {
      RUN(RecvPat(fds[k], 0, kPassReply, 200 + b * kPassBatch + k));
      RUN(ExpectEof(fds[k]));
      close(fds[k]);
    }
  }
  return 0;
}
int PassClient(uint16_t port, const char*) {
  return PassClientOf(port, kPassConns);
}

// pass-static: the client hands its SMC-D socket to a program that does
// not run usmc (a static one, which also reads the socket): it cannot take
// the connection along, so usmc resets it rather than leave that program an
// idle TCP socket whose bytes are in shared memory (as for exec).
int PassStaticServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, kPassReq, 31));
  RUN(Ack(fd));
  char buf[64];
  ssize_t n;
  do {
    n = recv(fd, buf, sizeof buf, 0);
  } while (n < 0 && errno == EINTR);
  CHECK(n < 0 && (errno == ECONNRESET || errno == ECONNABORTED),
        "after the peer passed the socket to a program without usmc: recv "
        "%zd (want ECONNRESET)",
        n);
  close(fd);
  return 0;
}

int PassStaticClient(uint16_t port, const char* static_probe) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, kPassReq, 31));
  RUN(WaitAck(fd));
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0,
        "socketpair");
  pid_t kid = fork();
  CHECK(kid >= 0, "fork");
  if (kid == 0) {
    close(fd);
    const int u = dup(sv[1]);  // without FD_CLOEXEC
    std::string a = std::to_string(u);
    execl(static_probe, "preload_probe_static", "recv", a.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(sv[1]);
  char ready;
  CHECK(read(sv[0], &ready, 1) == 1, "the static program's ready byte");
  RUN(SendFds(sv[0], {fd}));
  close(fd);
  int st = 0;
  CHECK(waitpid(kid, &st, 0) == kid, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
        "the static program's socket did not fail (%#x): it must not be a "
        "silent idle TCP socket",
        st);
  close(sv[0]);
  return 0;
}

// pass-otheruid: the client (root) hands its SMC-D socket to a worker that
// changed its uid after the socketpair was made (SO_PEERCRED still names
// root), as a privileged master does with workers that dropped their
// privileges: the worker holds the TCP socket, so it may have the DMBs,
// and it trusts root's state (preload/pass.cc, kOtherUid). The worker moves
// a request and a reply over the connection it took along.
// pass-otheruid-user: the same between two ordinary uids (the client drops
// to 65533 before it connects): the worker would not trust that state, so
// the connection is reset, and the worker's socket fails.
constexpr size_t kWorkerReq = 8192, kWorkerReply = 256 << 10;

int PassOtherUidServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, kPassReq, 31));
  RUN(Ack(fd));
  RUN(RecvPat(fd, kPassReq, kWorkerReq, 41));  // from the worker
  RUN(SendPat(fd, 0, kWorkerReply, 42));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}

// A child of uid 65534 ("probe-nobody") that receives one connection over
// the socketpair `sv` (its end sv[1]): `serve`, it serves it (request 41,
// reply 42); else the connection must be dead, not silent. Returns its pid
// once it is ready, -1 if it could not start.
pid_t StartNobodyReceiver(int sv[2], bool serve) {
  const pid_t kid = fork();
  if (kid == 0) {
    SetName("probe-nobody");
    close(sv[0]);
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(20);
    if (write(sv[1], "r", 1) != 1) _exit(21);
    std::vector<int> got;
    if (RecvFds(sv[1], 1, &got) != 0) _exit(22);
    if (!serve) {
      ssize_t w = write(got[0], "plain bytes", 11);
      char c;
      ssize_t r = read(got[0], &c, 1);
      _exit(w < 0 || r < 0 ? 0 : 23);  // a dead socket, not a silent one
    }
    if (SendPat(got[0], kPassReq, kWorkerReq, 41) != 0) _exit(24);
    if (RecvPat(got[0], 0, kWorkerReply, 42) != 0) _exit(25);
    close(got[0]);
    _exit(0);
  }
  close(sv[1]);
  char ready;
  if (kid < 0 || read(sv[0], &ready, 1) != 1) return -1;
  return kid;
}

int PassOtherUidClient(uint16_t port, const char* arg) {
  const bool user = std::string(arg) == "user";
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
  const pid_t kid = StartNobodyReceiver(sv, /*serve=*/!user);
  CHECK(kid > 0, "the worker (uid 65534) did not start");
  if (user) CHECK(setgid(65533) == 0 && setuid(65533) == 0, "setuid 65533");
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, kPassReq, 31));
  RUN(WaitAck(fd));
  RUN(SendFds(sv[0], {fd}));
  close(fd);
  int st = 0;
  CHECK(waitpid(kid, &st, 0) == kid, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
        user ? "the other uid's socket did not fail (%#x)"
             : "the worker (uid 65534) failed with its connection (%#x)",
        st);
  close(sv[0]);
  return 0;
}

// pass-otheruid-shared / -earlier: the server side. `shared`: two live
// connections, the first is reset; else an earlier connection ends first,
// then the next one is reset.
int PassOtherUidResetServer(int lfd, bool shared) {
  int a = AcceptOne(lfd);
  CHECK(a >= 0, "accept");
  if (!shared) {
    RUN(RecvPat(a, 0, kPassReq, 30));
    RUN(SendPat(a, 0, kPassReq, 40));
    RUN(ExpectEof(a));
    close(a);
    a = AcceptOne(lfd);
    CHECK(a >= 0, "accept");
  }
  RUN(RecvPat(a, 0, kPassReq, 31));
  RUN(Ack(a));
  int b = -1;
  if (shared) {
    b = AcceptOne(lfd);
    CHECK(b >= 0, "accept");
    RUN(RecvPat(b, 0, kPassReq, 32));
  }
  char buf[64];
  ssize_t n;
  do {
    n = recv(a, buf, sizeof buf, 0);
  } while (n < 0 && errno == EINTR);
  CHECK(n < 0 && (errno == ECONNRESET || errno == ECONNABORTED),
        "the connection passed to another uid: recv %zd (want ECONNRESET)", n);
  close(a);
  if (shared) {
    RUN(SendPat(b, 0, kWorkerReply, 42));
    RUN(ExpectEof(b));
    close(b);
  }
  return 0;
}

int PassOtherUidResetClient(uint16_t port, bool shared) {
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
  const pid_t kid = StartNobodyReceiver(sv, /*serve=*/false);
  CHECK(kid > 0, "the worker (uid 65534) did not start");
  if (!shared) {
    int e = Connect(port);
    CHECK(e >= 0, "connect");
    RUN(SendPat(e, 0, kPassReq, 30));
    RUN(RecvPat(e, 0, kPassReq, 40));
    close(e);
  }
  int a = Connect(port);
  CHECK(a >= 0, "connect");
  RUN(SendPat(a, 0, kPassReq, 31));
  RUN(WaitAck(a));
  int b = -1;
  if (shared) {
    b = Connect(port);
    CHECK(b >= 0, "connect");
    RUN(SendPat(b, 0, kPassReq, 32));
  }
  RUN(SendFds(sv[0], {a}));
  close(a);
  if (shared) {
    RUN(RecvPat(b, 0, kWorkerReply, 42));
    close(b);
  }
  int st = 0;
  CHECK(waitpid(kid, &st, 0) == kid, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
        "the other uid's socket did not fail (%#x)", st);
  close(sv[0]);
  return 0;
}

constexpr int kArenaConns = 10;

// pass-arena-alone: the client connects, asks, reads the reply and closes,
// one connection after the other.
int PassArenaAloneServer(int lfd) {
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
  pid_t worker = fork();
  CHECK(worker >= 0, "fork");
  if (worker == 0) {
    SetName("probe-wrk");
    close(lfd);
    close(sv[0]);
    for (int i = 0; i < kArenaConns; ++i) {
      std::vector<int> fds;
      if (RecvFds(sv[1], 1, &fds) != 0) exit(20);
      if (RecvPat(fds[0], 0, kPassReq, 100 + i) != 0) exit(21);
      if (Reply(fds[0], i) != 0) exit(22);
    }
    exit(0);
  }
  close(sv[1]);
  for (int i = 0; i < kArenaConns; ++i) {
    int fd = AcceptOne(lfd);
    CHECK(fd >= 0, "accept %d", i);
    RUN(SendFds(sv[0], {fd}));
    close(fd);
  }
  int st = 0;
  CHECK(waitpid(worker, &st, 0) == worker, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker failed (%#x)", st);
  close(sv[0]);
  return 0;
}

int PassArenaAloneClient(uint16_t port, const char*) {
  for (int i = 0; i < kArenaConns; ++i) {
    int fd = Connect(port);
    CHECK(fd >= 0, "connect %d", i);
    RUN(SendPat(fd, 0, kPassReq, 100 + i));
    RUN(RecvPat(fd, 0, kPassReply, 200 + i));
    RUN(ExpectEof(fd));
    close(fd);
  }
  return 0;
}

// pass-arena-shared: two connections from one client, both SMC-D before
// the listener passes the first.
int PassArenaSharedServer(int lfd) {
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
  pid_t worker = fork();
  CHECK(worker >= 0, "fork");
  if (worker == 0) {
    SetName("probe-wrk");
    close(lfd);
    close(sv[0]);
    std::vector<int> fds;
    if (RecvFds(sv[1], 1, &fds) != 0) exit(20);
    if (SendPat(fds[0], 0, kPassReply, 61) != 0) exit(21);
    close(fds[0]);
    exit(0);
  }
  close(sv[1]);
  int a = AcceptOne(lfd);
  int b = AcceptOne(lfd);
  CHECK(a >= 0 && b >= 0, "accept");
  RUN(RecvPat(a, 0, kPassReq, 51));
  RUN(RecvPat(b, 0, kPassReq, 52));
  RUN(SendFds(sv[0], {a}));
  close(a);
  RUN(SendPat(b, 0, kPassReply, 62));
  close(b);
  int st = 0;
  CHECK(waitpid(worker, &st, 0) == worker, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker failed (%#x)", st);
  close(sv[0]);
  return 0;
}

int PassArenaSharedClient(uint16_t port, const char*) {
  int a = Connect(port);
  int b = Connect(port);
  CHECK(a >= 0 && b >= 0, "connect");
  RUN(SendPat(a, 0, kPassReq, 51));
  RUN(SendPat(b, 0, kPassReq, 52));
  RUN(RecvPat(b, 0, kPassReply, 62));
  RUN(ExpectEof(b));
  RUN(RecvPat(a, 0, kPassReply, 61));  // from the worker
  RUN(ExpectEof(a));
  close(a);
  close(b);
  return 0;
}

}  // namespace

void AddPassScenarios(Scenarios& s) {
  s["pass-arena-alone"] = {PassArenaAloneServer, PassArenaAloneClient};
  s["pass-arena-shared"] = {PassArenaSharedServer, PassArenaSharedClient};
  s["pass-static"] = {PassStaticServer, PassStaticClient};
  s["pass-otheruid"] = {PassOtherUidServer, PassOtherUidClient};
  s["pass-otheruid-user"] = {PassStaticServer, PassOtherUidClient};
  s["pass-otheruid-shared"] = {
      [](int lfd) { return PassOtherUidResetServer(lfd, true); },
      [](uint16_t port, const char*) {
        return PassOtherUidResetClient(port, true);
      }};
  s["pass-otheruid-earlier"] = {
      [](int lfd) { return PassOtherUidResetServer(lfd, false); },
      [](uint16_t port, const char*) {
        return PassOtherUidResetClient(port, false);
      }};
  s["pass-stream"] = {[](int lfd) { return PassServer(lfd, Mode::kStream); },
                      PassClient};
  s["pass-dgram-many"] = {
      [](int lfd) { return PassServer(lfd, Mode::kDgramMany); }, PassClient};
  s["pass-late"] = {[](int lfd) { return PassServer(lfd, Mode::kLate); },
                    PassClient};
  s["pass-back"] = {[](int lfd) { return PassServer(lfd, Mode::kBack); },
                    PassClient};
  s["pass-back-exited"] = {
      [](int lfd) { return PassServer(lfd, Mode::kBackExited); },
      [](uint16_t port, const char*) {
        return PassClientOf(port, kPassBatch);
      }};
}

}  // namespace usmc::probe
