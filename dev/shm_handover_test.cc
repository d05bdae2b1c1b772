// Multi-process tests: parent and forked child hold the two ends of a real
// TCP loopback connection and swap DMBs through the handover.
#include "dev/shm_handover.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "dev/shm_identity.h"
#include "dev/shm_test_util.h"
#include "gtest/gtest.h"

namespace usmc::dev {
namespace {

using namespace testing;  // NOLINT: the helpers of this test suite
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint64_t kSize = 256 * 1024;
constexpr char kMapName[] = "memfd:usmc-dmb";

std::atomic_ref<uint64_t> Word(std::span<std::byte> bytes, size_t off) {
  return std::atomic_ref<uint64_t>(
      *reinterpret_cast<uint64_t*>(bytes.data() + off));
}

// A forked child running `body` (its return value is the exit code).
template <typename F>
pid_t Spawn(F body) {
  pid_t pid = ::fork();
  if (pid == 0) _exit(body());
  return pid;
}

bool ExitedZero(int st) { return WIFEXITED(st) && WEXITSTATUS(st) == 0; }

TEST(ShmHandoverTest, ParentAndChildSwapDmbsAndDoorbells) {
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  pid_t pid = Spawn([&] {
    l->Reset();
    Result<UniqueFd> tcp = TcpConnectLoopback(port);
    if (!tcp.ok()) return 10;
    Result<ShmPair> c = SetupShmPair(false, std::move(*tcp), kSize / 2);
    if (!c.ok()) return 11;
    if (c->peer.size() != kSize) return 12;
    // Child -> parent: a message, then the flag, then the doorbell.
    const char msg[] = "hello from the child";
    if (!c->peer.Write(64, std::as_bytes(std::span(msg))).ok()) return 13;
    Word(c->peer.bytes(), 0).store(1, std::memory_order_release);
    c->peer.doorbell().Ring();
    // Parent -> child: wait for its answer in our DMB.
    WaitResult r = c->local.doorbell().Wait(
        [&] {
          return Word(c->local.bytes(), 0).load(std::memory_order_acquire) == 2;
        },
        seconds(30));
    if (r != WaitResult::kReady) return 14;
    if (std::memcmp(c->local.bytes().data() + 64, "hi child", 9) != 0) {
      return 15;
    }
    return 0;
  });
  ASSERT_GT(pid, 0);
  Result<UniqueFd> tcp = TcpAccept(l->get());
  ASSERT_TRUE(tcp.ok());
  Result<ShmPair> s = SetupShmPair(true, std::move(*tcp), kSize);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->peer.size(), kSize / 2);
  WaitResult r = s->local.doorbell().Wait(
      [&] {
        return Word(s->local.bytes(), 0).load(std::memory_order_acquire) == 1;
      },
      seconds(30));
  ASSERT_EQ(r, WaitResult::kReady);
  EXPECT_STREQ(reinterpret_cast<const char*>(s->local.bytes().data() + 64),
               "hello from the child");
  ASSERT_TRUE(s->peer.Write(64, std::as_bytes(std::span("hi child"))).ok());
  Word(s->peer.bytes(), 0).store(2, std::memory_order_release);
  s->peer.doorbell().Ring();
  EXPECT_TRUE(ExitedZero(WaitChild(pid)));
}

// Connects a Unix stream socket to abstract `name`, as anyone can who
// reads the name in /proc/net/unix.
UniqueFd ConnectAbstract(const std::string& name) {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path + 1, name.data(), name.size());
  const socklen_t len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), len) != 0) {
    return UniqueFd();
  }
  return s;
}

// The handover names /proc/net/unix shows every user now.
std::vector<std::string> ListedHandoverNames() {
  std::vector<std::string> names;
  FILE* f = std::fopen("/proc/net/unix", "r");
  if (f == nullptr) return names;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    const char* at = std::strstr(line, "@usmc-shm-");
    if (at == nullptr) continue;
    std::string n(at + 1);
    while (!n.empty() && (n.back() == '\n' || n.back() == ' ')) n.pop_back();
    names.push_back(n);
  }
  std::fclose(f);
  return names;
}

// Sends a 32-byte offer with `fd` attached (none if fd < 0).
bool SendWithFd(int s, const std::byte (&msg)[kOfferSize], int fd) {
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] = {};
  iovec iov{const_cast<std::byte*>(msg), kOfferSize};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (fd >= 0) {
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fd);
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  return ::sendmsg(s, &mh, MSG_NOSIGNAL) == static_cast<ssize_t>(kOfferSize);
}

// Waits (bounded) until the other side closes; true if it did so without
// sending a byte or an fd.
bool ClosedUnanswered(int s) {
  pollfd p{s, POLLIN, 0};
  if (::poll(&p, 1, 20000) != 1) return false;
  std::byte buf[64];
  alignas(cmsghdr) char cbuf[CMSG_SPACE(8 * sizeof(int))];
  iovec iov{buf, sizeof buf};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  const ssize_t n = ::recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
  return n == 0 && mh.msg_controllen == 0;
}

bool DropTo(uid_t id) {
  return ::setresgid(id, id, id) == 0 && ::setresuid(id, id, id) == 0;
}

// An impostor's attempts on the handover name `name`, which it finds
// listed in /proc/net/unix (other tests' names are left alone): an offer
// whose proof is a guess, one built on the listed name taken for the token
// (the old names were an invertible mix of it), and one with no fd; the
// first two carry a real sealed DMB so that a lax server would attach it.
// 0: nothing came back on any of them.
int TryToStealDmbs(const std::string& want, int done_fd) {
  std::vector<std::string> names = ListedHandoverNames();
  if (std::find(names.begin(), names.end(), want) == names.end()) return 40;
  Result<LocalDmb> bait = LocalDmb::Register(4096);
  if (!bait.ok()) return 41;
  std::vector<UniqueFd> conns;
  for (const std::string& name : {want}) {
    const uint64_t from_name =
        std::strtoull(name.c_str() + std::strlen("usmc-shm-"), nullptr, 16);
    Result<uint64_t> guess = NewDmbToken();
    if (!guess.ok()) return 42;
    const uint64_t proofs[] = {
        HandoverProof(*guess, bait->token(), kOfferFromClient, 4096),
        HandoverProof(from_name, bait->token(), kOfferFromClient, 4096)};
    for (size_t i = 0; i <= std::size(proofs); ++i) {
      UniqueFd c = ConnectAbstract(name);
      if (!c) return 43;
      std::byte msg[kOfferSize];
      EncodeOffer(kOfferFromClient, bait->token(), 4096,
                  i < std::size(proofs) ? proofs[i] : 0, msg);
      if (!SendWithFd(c.get(), msg, i < std::size(proofs) ? bait->memfd() : -1))
        return 44;
      conns.push_back(std::move(c));
    }
  }
  char c = 1;
  if (::write(done_fd, &c, 1) != 1) return 45;
  for (UniqueFd& conn : conns) {
    if (!ClosedUnanswered(conn.get())) return 46;
  }
  return 0;
}

// Test (c) of the secret handover: a process of another uid and one of the
// same uid that does not hold the TCP socket find the listener in
// /proc/net/unix, connect, forge and guess; none gets an fd or a byte, each
// is counted, and the real client, queued behind them all (one of them
// silent), still completes. Before, the same-uid impostor was only stopped
// by the /proc fd scan, and a silent one held the server until the deadline.
TEST(ShmHandoverTest, ImpostorsOfAnyUidGetNothingRealPeerStillServed) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for the uid 65534 part";
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  int go[2];  // parent -> client: "run your handover now"
  ASSERT_EQ(::pipe(go), 0);
  pid_t client = Spawn([&] {
    l->Reset();
    ::close(go[1]);
    Result<UniqueFd> tcp = TcpConnectLoopback(port);
    if (!tcp.ok()) return 10;
    char b;
    if (::read(go[0], &b, 1) != 1) return 11;
    Result<ShmPair> c = SetupShmPair(false, std::move(*tcp), kSize / 2);
    if (!c.ok()) return 12;
    // The DMBs really are shared: our byte shows on the server's side.
    const char hi[] = "real";
    if (!c->peer.Write(64, std::as_bytes(std::span(hi))).ok()) return 13;
    return WriteU64(c->tcp.get(), 1).ok() ? 0 : 14;
  });
  ASSERT_GT(client, 0);
  ::close(go[0]);
  Result<UniqueFd> tcp = TcpAccept(l->get());
  ASSERT_TRUE(tcp.ok());
  Result<LocalDmb> dmb = LocalDmb::Register(kSize);
  ASSERT_TRUE(dmb.ok());
  Result<HandoverListener> hl = HandoverListener::Listen(*dmb);
  ASSERT_TRUE(hl.ok()) << hl.status();

  const std::string name = HandoverSocketName(dmb->token());
  int done[2];
  ASSERT_EQ(::pipe(done), 0);
  pid_t other_uid = Spawn([&] {
    CloseFdsExcept(done[1]);
    if (!DropTo(65534)) return 30;
    return TryToStealDmbs(name, done[1]);
  });
  ASSERT_GT(other_uid, 0);
  int silent_go[2];
  ASSERT_EQ(::pipe(silent_go), 0);
  pid_t same_uid = Spawn([&] {
    // Same uid, no TCP socket: one silent connection first, then guesses.
    CloseFdsExcept(done[1]);
    UniqueFd silent = ConnectAbstract(name);
    if (!silent) return 51;
    int rc = TryToStealDmbs(name, done[1]);
    if (rc != 0) return rc;
    return ClosedUnanswered(silent.get()) ? 0 : 52;
  });
  ASSERT_GT(same_uid, 0);
  ::close(done[1]);
  char c;
  ASSERT_EQ(::read(done[0], &c, 1), 1);  // both have queued their attempts
  ASSERT_EQ(::read(done[0], &c, 1), 1);
  ::close(done[0]);
  ::close(silent_go[0]);
  ::close(silent_go[1]);

  ASSERT_TRUE(WriteU64(tcp->get(), dmb->token()).ok());
  ASSERT_TRUE(WriteU64(tcp->get(), dmb->size()).ok());
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  Result<uint64_t> ct = ReadU64(tcp->get());
  Result<uint64_t> cs = ReadU64(tcp->get());
  ASSERT_TRUE(ct.ok() && cs.ok());
  // Learning mode (before Confirm): only the proof tells the peer apart.
  Result<Handover> h = hl->Accept(*dmb, {0, 0, milliseconds(20000)});
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->peer.token(), *ct);
  EXPECT_EQ(h->peer.size(), *cs);
  EXPECT_EQ(h->cred.uid, ::geteuid());  // for the record
  EXPECT_GT(h->cred.pid, 0);
  hl->Close();
  Result<uint64_t> wrote = ReadU64(tcp->get());
  ASSERT_TRUE(wrote.ok());
  EXPECT_STREQ(reinterpret_cast<const char*>(dmb->bytes().data() + 64), "real");
  // 3 attempts by each impostor, plus the silent one.
  EXPECT_EQ(hl->rejected(), 7u);
  int st = WaitChild(other_uid);
  EXPECT_TRUE(ExitedZero(st)) << "other uid: " << WEXITSTATUS(st);
  st = WaitChild(same_uid);
  EXPECT_TRUE(ExitedZero(st)) << "same uid: " << WEXITSTATUS(st);
  EXPECT_TRUE(ExitedZero(WaitChild(client)));
}

// Test (a) of the secret handover, at the device: client and server under
// different uids swap DMBs and move bytes both ways. Before, each side
// required the other's uid to be its own (and read its /proc fd table).
TEST(ShmHandoverTest, PeersOfDifferentUidsSwapDmbs) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run as nobody";
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  pid_t pid = Spawn([&] {
    l->Reset();
    if (!DropTo(65534)) return 9;
    Result<UniqueFd> tcp = TcpConnectLoopback(port);
    if (!tcp.ok()) return 10;
    Result<ShmPair> c = SetupShmPair(false, std::move(*tcp), kSize / 2);
    if (!c.ok()) return 11;
    const char msg[] = "from nobody";
    if (!c->peer.Write(64, std::as_bytes(std::span(msg))).ok()) return 12;
    Word(c->peer.bytes(), 0).store(1, std::memory_order_release);
    c->peer.doorbell().Ring();
    WaitResult r = c->local.doorbell().Wait(
        [&] {
          return Word(c->local.bytes(), 0).load(std::memory_order_acquire) == 2;
        },
        seconds(30));
    return r == WaitResult::kReady ? 0 : 13;
  });
  ASSERT_GT(pid, 0);
  Result<UniqueFd> tcp = TcpAccept(l->get());
  ASSERT_TRUE(tcp.ok());
  Result<ShmPair> s = SetupShmPair(true, std::move(*tcp), kSize);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(
      s->local.doorbell().Wait(
          [&] {
            return Word(s->local.bytes(), 0).load(std::memory_order_acquire) ==
                   1;
          },
          seconds(30)),
      WaitResult::kReady);
  EXPECT_STREQ(reinterpret_cast<const char*>(s->local.bytes().data() + 64),
               "from nobody");
  Word(s->peer.bytes(), 0).store(2, std::memory_order_release);
  s->peer.doorbell().Ring();
  EXPECT_TRUE(ExitedZero(WaitChild(pid)));
}

// A connection costs three fds on each side once the handover is done: our
// memfd, the peer's memfd, one socket that is both doorbells (it was four:
// two doorbell socketpair ends each, plus a listener until the end).
TEST(ShmHandoverTest, ThreeFdsPerConnectionOnEachSide) {
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  pid_t pid = Spawn([&] {
    l->Reset();
    Result<UniqueFd> tcp = TcpConnectLoopback(port);
    if (!tcp.ok()) return 100;
    const int before = CountOpenFds();
    Result<ShmPair> c = SetupShmPair(false, std::move(*tcp), kSize);
    if (!c.ok()) return 101;
    return CountOpenFds() - before;  // the exit code is the count
  });
  ASSERT_GT(pid, 0);
  Result<UniqueFd> tcp = TcpAccept(l->get());
  ASSERT_TRUE(tcp.ok());
  const int before = CountOpenFds();
  Result<ShmPair> s = SetupShmPair(true, std::move(*tcp), kSize);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(CountOpenFds() - before, 3);
  const int st = WaitChild(pid);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 3) << "client side";
  // Both doorbells are the one socket.
  EXPECT_EQ(s->local.doorbell().fd(), s->peer.doorbell().fd());
}

// Someone holds the name the client connects to (only possible after the
// server gave up and closed it: it was bound before its token was
// public). It may get the client's offer, but the offer does not carry the
// server's token, and without it the squatter cannot answer: the client
// attaches nothing.
TEST(ShmHandoverTest, ClientRefusesAListenerThatCannotProveTheToken) {
  Result<uint64_t> server_token = NewDmbToken();
  ASSERT_TRUE(server_token.ok());
  UniqueFd squat(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string name = HandoverSocketName(*server_token);
  std::memcpy(a.sun_path + 1, name.data(), name.size());
  ASSERT_EQ(::bind(squat.get(), reinterpret_cast<sockaddr*>(&a),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 +
                                          name.size())),
            0);
  ASSERT_EQ(::listen(squat.get(), 1), 0);
  pid_t pid = Spawn([&] {
    UniqueFd conn(::accept4(squat.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) return 20;
    std::byte got[kOfferSize];
    if (::recv(conn.get(), got, sizeof got, MSG_WAITALL) != kOfferSize) {
      return 21;
    }
    for (size_t i = 0; i + 8 <= kOfferSize; ++i) {
      uint64_t w;
      std::memcpy(&w, got + i, 8);
      if (w == *server_token) return 22;  // the secret went out in clear
    }
    // Answer like a server, with a DMB of its own and a guessed proof.
    Result<LocalDmb> fake = LocalDmb::Register(kSize);
    if (!fake.ok()) return 23;
    uint64_t client_token;
    std::memcpy(&client_token, got + 8, 8);
    std::byte msg[kOfferSize];
    EncodeOffer(kOfferFromServer, 0, kSize,
                HandoverProof(Mix64(client_token), client_token,
                              kOfferFromServer, kSize),
                msg);
    if (!SendWithFd(conn.get(), msg, fake->memfd())) return 24;
    char b;
    return ::read(conn.get(), &b, 1) == 0 ? 0 : 25;  // the client hangs up
  });
  ASSERT_GT(pid, 0);
  squat.Reset();
  Result<LocalDmb> mine = LocalDmb::Register(kSize);
  ASSERT_TRUE(mine.ok());
  const int fds = CountOpenFds();
  Result<Handover> h =
      ConnectHandover(*mine, {*server_token, kSize, milliseconds(5000)});
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), StatusCode::kPermissionDenied) << h.status();
  EXPECT_FALSE(mine->has_doorbell());
  EXPECT_EQ(CountOpenFds(), fds);  // its memfd and the socket are gone
  const int st = WaitChild(pid);
  EXPECT_TRUE(ExitedZero(st)) << WEXITSTATUS(st);
}

// The server gave up and closed its name: the client fails at once
// (refused), it does not wait for the name to come back.
TEST(ShmHandoverTest, ClientFailsAtOnceWhenTheNameIsGone) {
  Result<LocalDmb> server = LocalDmb::Register(kSize);
  ASSERT_TRUE(server.ok());
  Result<HandoverListener> hl = HandoverListener::Listen(*server);
  ASSERT_TRUE(hl.ok());
  hl->Close();
  Result<LocalDmb> mine = LocalDmb::Register(kSize);
  ASSERT_TRUE(mine.ok());
  Result<Handover> h =
      ConnectHandover(*mine, {server->token(), kSize, milliseconds(60000)});
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), StatusCode::kUnavailable) << h.status();
}

// The name is a one-way function of the token: not the token, not its
// old invertible mix, different for every token.
TEST(ShmHandoverTest, NameDoesNotRevealTheToken) {
  Result<uint64_t> t = NewDmbToken();
  ASSERT_TRUE(t.ok());
  const std::string name = HandoverSocketName(*t);
  const uint64_t shown =
      std::strtoull(name.c_str() + std::strlen("usmc-shm-"), nullptr, 16);
  EXPECT_NE(shown, *t);
  EXPECT_NE(shown, Mix64(*t));
  EXPECT_NE(HandoverSocketName(*t ^ 1), name);
  EXPECT_EQ(HandoverSocketName(*t), name);
}

TEST(ShmHandoverTest, SilentClientTimesOut) {
  Result<LocalDmb> dmb = LocalDmb::Register(kSize);
  ASSERT_TRUE(dmb.ok());
  Result<HandoverListener> hl = HandoverListener::Listen(*dmb);
  ASSERT_TRUE(hl.ok());
  UniqueFd silent = ConnectAbstract(HandoverSocketName(dmb->token()));
  ASSERT_TRUE(silent);
  Result<Handover> p = hl->Accept(*dmb, {0, 0, milliseconds(300)});
  EXPECT_EQ(p.status().code(), StatusCode::kUnavailable) << p.status();
  EXPECT_NE(p.status().message().find("timed out"), std::string::npos);
  EXPECT_EQ(hl->rejected(), 1u);  // silent to the end
  // The server speaks second: nothing of ours went to the silent peer.
  EXPECT_TRUE(ClosedUnanswered(silent.get()));
  EXPECT_FALSE(dmb->has_doorbell());
}

TEST(ShmHandoverTest, SilentServerTimesOutTheClient) {
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  int tok[2];
  ASSERT_EQ(::pipe(tok), 0);
  pid_t pid = Spawn([&] {
    // Server that listens but never accepts.
    Result<UniqueFd> tcp = TcpAccept(l->get());
    if (!tcp.ok()) return 10;
    Result<LocalDmb> dmb = LocalDmb::Register(kSize);
    if (!dmb.ok()) return 11;
    Result<HandoverListener> h = HandoverListener::Listen(*dmb);
    if (!h.ok()) return 12;
    if (!WriteU64(tok[1], dmb->token()).ok()) return 13;
    char b;
    while (::read(tcp->get(), &b, 1) > 0) {
    }
    return 0;
  });
  ASSERT_GT(pid, 0);
  l->Reset();
  Result<UniqueFd> tcp = TcpConnectLoopback(port);
  ASSERT_TRUE(tcp.ok());
  Result<uint64_t> st = ReadU64(tok[0]);
  ASSERT_TRUE(st.ok());
  Result<LocalDmb> dmb = LocalDmb::Register(kSize);
  ASSERT_TRUE(dmb.ok());
  Result<Handover> p = ConnectHandover(*dmb, {*st, kSize, milliseconds(300)});
  EXPECT_EQ(p.status().code(), StatusCode::kUnavailable) << p.status();
  tcp->Reset();
  EXPECT_TRUE(ExitedZero(WaitChild(pid)));
  ::close(tok[0]);
  ::close(tok[1]);
}

// CLC (Confirm) named the client's DMB already: an offer that proves the
// token but names another DMB is refused, and the server keeps waiting.
TEST(ShmHandoverTest, OfferNamingAnotherDmbThanClcIsRejected) {
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  pid_t pid = Spawn([&] {
    l->Reset();
    Result<UniqueFd> tcp = TcpConnectLoopback(port);
    if (!tcp.ok()) return 10;
    Result<ShmPair> c =
        SetupShmPair(false, std::move(*tcp), kSize, milliseconds(3000));
    // The server refuses us, so we must fail too (no offer comes back).
    return c.ok() ? 1 : 0;
  });
  ASSERT_GT(pid, 0);
  Result<UniqueFd> tcp = TcpAccept(l->get());
  ASSERT_TRUE(tcp.ok());
  Result<LocalDmb> dmb = LocalDmb::Register(kSize);
  ASSERT_TRUE(dmb.ok());
  Result<HandoverListener> hl = HandoverListener::Listen(*dmb);
  ASSERT_TRUE(hl.ok());
  ASSERT_TRUE(WriteU64(tcp->get(), dmb->token()).ok());
  ASSERT_TRUE(WriteU64(tcp->get(), dmb->size()).ok());
  Result<uint64_t> ct = ReadU64(tcp->get());
  Result<uint64_t> cs = ReadU64(tcp->get());
  ASSERT_TRUE(ct.ok() && cs.ok());
  Result<Handover> p = hl->Accept(*dmb, {*ct ^ 0x10, *cs, milliseconds(1000)});
  EXPECT_EQ(p.status().code(), StatusCode::kUnavailable) << p.status();
  EXPECT_NE(p.status().message().find("another DMB"), std::string::npos)
      << p.status();
  EXPECT_EQ(hl->rejected(), 1u);
  hl->Close();
  EXPECT_TRUE(ExitedZero(WaitChild(pid)));
}

// Ring layout used by the streaming test (our own, not SMC's CDC):
// consumer DMB: [0,8) producer count, data at [64, 64 + kRing)
// producer DMB: [0,8) consumer count.
constexpr uint64_t kRing = kSize - 64;
constexpr uint64_t kTotal = uint64_t{64} << 20;
constexpr uint64_t kSeed = 0x5eed;

int Produce(ShmPair& c) {
  ByteStream gen(kSeed);
  std::vector<std::byte> chunk(16 * 1024);
  uint64_t sent = 0;
  auto space = [&] {
    return kRing -
           (sent - Word(c.local.bytes(), 0).load(std::memory_order_acquire));
  };
  while (sent < kTotal) {
    if (space() == 0) {
      WaitResult r =
          c.local.doorbell().Wait([&] { return space() != 0; }, seconds(30));
      if (r != WaitResult::kReady) return 20;
    }
    uint64_t n = std::min<uint64_t>(
        {space(), chunk.size(), kTotal - sent, kRing - sent % kRing});
    gen.Fill(chunk.data(), n);
    if (!c.peer.Write(64 + sent % kRing, std::span(chunk.data(), n)).ok()) {
      return 21;
    }
    sent += n;
    Word(c.peer.bytes(), 0).store(sent, std::memory_order_release);
    c.peer.doorbell().Ring();
  }
  // Report the producer's doorbell counters to the consumer.
  DoorbellStats s = c.peer.doorbell().stats();
  uint64_t counters[3] = {s.rings, s.wakeups_sent, s.wakeups_skipped};
  return WriteAll(c.tcp.get(), counters, sizeof counters).ok() ? 0 : 22;
}

TEST(ShmHandoverTest, Stream64MiBThroughRingWithDoorbell) {
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  pid_t pid = Spawn([&] {
    l->Reset();
    Result<UniqueFd> tcp = TcpConnectLoopback(port);
    if (!tcp.ok()) return 10;
    Result<ShmPair> c = SetupShmPair(false, std::move(*tcp), 4096);
    if (!c.ok()) return 11;
    return Produce(*c);
  });
  ASSERT_GT(pid, 0);
  Result<UniqueFd> tcp = TcpAccept(l->get());
  ASSERT_TRUE(tcp.ok());
  Result<ShmPair> s = SetupShmPair(true, std::move(*tcp), kSize);
  ASSERT_TRUE(s.ok()) << s.status();
  s->local.doorbell().set_spin_us(5);
  uint64_t got = 0, sum = kFnvOffset;
  auto avail = [&] {
    return Word(s->local.bytes(), 0).load(std::memory_order_acquire) - got;
  };
  while (got < kTotal) {
    if (avail() == 0) {
      ASSERT_EQ(
          s->local.doorbell().Wait([&] { return avail() != 0; }, seconds(30)),
          WaitResult::kReady);
    }
    uint64_t a = avail();
    ASSERT_LE(a, kRing);  // validate what the peer published
    uint64_t n = std::min(a, kRing - got % kRing);
    sum = Fnv1a(sum, s->local.bytes().data() + 64 + got % kRing, n);
    got += n;
    Word(s->peer.bytes(), 0).store(got, std::memory_order_release);
    s->peer.doorbell().Ring();
  }
  ByteStream gen(kSeed);
  std::vector<std::byte> buf(1 << 20);
  uint64_t want = kFnvOffset;
  for (uint64_t i = 0; i < kTotal; i += buf.size()) {
    gen.Fill(buf.data(), buf.size());
    want = Fnv1a(want, buf.data(), buf.size());
  }
  EXPECT_EQ(sum, want);
  EXPECT_EQ(got, kTotal);
  uint64_t producer[3] = {};  // rings, wakeups sent, wakeups skipped
  ASSERT_TRUE(ReadAll(s->tcp.get(), producer, sizeof producer).ok());
  EXPECT_TRUE(ExitedZero(WaitChild(pid)));
  // One ring per published chunk (at most 16 KiB each); each ring either
  // found us armed and sent one wakeup, or skipped the system call.
  EXPECT_GE(producer[0], kTotal / (16 * 1024));
  EXPECT_EQ(producer[1] + producer[2], producer[0]);
  // Every wakeup we took was one the producer sent.
  DoorbellStats ws = s->local.doorbell().stats();
  EXPECT_LE(ws.wakeups_received, producer[1]);
  // No wait timed out, so every sleep ended with a wakeup that was sent.
  EXPECT_EQ(ws.timeouts, 0u);
  if (ws.sleeps > 0) {
    EXPECT_GE(ws.wakeups_received, 1u);
  }
}

TEST(ShmHandoverTest, PeerKilledWhileWaitingNoLeak) {
  const int fds_before = CountOpenFds();
  const int maps_before = CountMappings(kMapName);
  {
    uint16_t port;
    Result<UniqueFd> l = TcpListenLoopback(&port);
    ASSERT_TRUE(l.ok());
    pid_t pid = Spawn([&] {
      l->Reset();
      Result<UniqueFd> tcp = TcpConnectLoopback(port);
      if (!tcp.ok()) return 10;
      Result<ShmPair> c = SetupShmPair(false, std::move(*tcp), kSize);
      if (!c.ok()) return 11;
      struct timespec t = {0, 100 * 1000 * 1000};
      ::nanosleep(&t, nullptr);  // let the parent go to sleep first
      ::raise(SIGKILL);
      return 12;
    });
    ASSERT_GT(pid, 0);
    Result<UniqueFd> tcp = TcpAccept(l->get());
    ASSERT_TRUE(tcp.ok());
    l->Reset();
    Result<ShmPair> s = SetupShmPair(true, std::move(*tcp), kSize);
    ASSERT_TRUE(s.ok()) << s.status();
    s->local.doorbell().set_spin_us(0);
    // Nothing will ever be published: only the peer's death ends this.
    WaitResult r = s->local.doorbell().Wait([] { return false; }, seconds(60));
    EXPECT_EQ(r, WaitResult::kPeerGone);
    int st = WaitChild(pid);
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << st;
    EXPECT_EQ(CountMappings(kMapName), maps_before + 2);
    s->peer.Detach();
    s->local.Unregister();
    EXPECT_EQ(CountMappings(kMapName), maps_before);
  }
  EXPECT_EQ(CountOpenFds(), fds_before);
  EXPECT_EQ(CountMappings(kMapName), maps_before);
}

}  // namespace
}  // namespace usmc::dev

namespace usmc::dev {
namespace {

// The server may accept the handover before CLC Confirm names the client's
// DMB: token and size then come from the offer whose proof holds.
TEST(ShmHandoverTest, ServerLearnsTheClientTokenFromTheOffer) {
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  pid_t pid = Spawn([&] {
    l->Reset();
    Result<UniqueFd> tcp = TcpConnectLoopback(port);
    if (!tcp.ok()) return 10;
    Result<ShmPair> c = SetupShmPair(false, std::move(*tcp), kSize / 2);
    return c.ok() ? 0 : 11;
  });
  ASSERT_GT(pid, 0);
  Result<UniqueFd> tcp = TcpAccept(l->get());
  ASSERT_TRUE(tcp.ok());
  Result<LocalDmb> local = LocalDmb::Register(kSize);
  ASSERT_TRUE(local.ok());
  Result<HandoverListener> listener = HandoverListener::Listen(*local);
  ASSERT_TRUE(listener.ok());
  // The same token/size exchange SetupShmPair does, but we ignore what the
  // client tells us over TCP and accept with peer_token 0.
  uint64_t v[2] = {local->token(), local->size()};
  ASSERT_EQ(::write(tcp->get(), v, sizeof v), static_cast<ssize_t>(sizeof v));
  uint64_t told[2];
  ASSERT_EQ(::recv(tcp->get(), told, sizeof told, MSG_WAITALL),
            static_cast<ssize_t>(sizeof told));
  HandoverParams p{.timeout = seconds(10)};
  Result<Handover> peer = listener->Accept(*local, p);
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(peer->peer.token(), told[0]);
  EXPECT_EQ(peer->peer.size(), told[1]);
  EXPECT_EQ(peer->peer.size(), kSize / 2);
  EXPECT_TRUE(ExitedZero(WaitChild(pid)));
}

// The client side still needs the server's token: it names the socket.
TEST(ShmHandoverTest, ClientWithoutServerTokenIsRefused) {
  Result<LocalDmb> local = LocalDmb::Register(kSize);
  ASSERT_TRUE(local.ok());
  HandoverParams p{.peer_token = 0, .peer_dmb_size = kSize};
  Result<Handover> peer = ConnectHandover(*local, p);
  ASSERT_FALSE(peer.ok());
  EXPECT_EQ(peer.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace usmc::dev
