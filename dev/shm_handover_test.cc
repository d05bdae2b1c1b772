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

#include <atomic>
#include <cstring>
#include <vector>

#include "dev/shm_peer_verify.h"
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

// A TCP connection within this process, and the inode of its server end.
struct LoopbackTcp {
  UniqueFd listener, cli, srv;
  uint64_t srv_inode = 0;
};
void OpenLoopbackTcp(LoopbackTcp* t) {
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  Result<UniqueFd> cli = TcpConnectLoopback(port);
  ASSERT_TRUE(cli.ok());
  Result<UniqueFd> srv = TcpAccept(l->get());
  ASSERT_TRUE(srv.ok());
  struct stat st {};
  ASSERT_EQ(::fstat(srv->get(), &st), 0);
  t->listener = std::move(*l);
  t->cli = std::move(*cli);
  t->srv = std::move(*srv);
  t->srv_inode = st.st_ino;
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

TEST(ShmHandoverTest, ThirdProcessIsRejectedRealPeerStillServed) {
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  int go[2];  // parent -> child: "connect now"
  ASSERT_EQ(::pipe(go), 0);
  pid_t child = Spawn([&] {
    l->Reset();
    ::close(go[1]);
    Result<UniqueFd> tcp = TcpConnectLoopback(port);
    if (!tcp.ok()) return 10;
    char b;
    // Read the server's token first (SetupShmPair does), but hold back our
    // handover until the impostor has been dealt with.
    Result<uint64_t> st = ReadU64(tcp->get());
    Result<uint64_t> ss = ReadU64(tcp->get());
    if (!st.ok() || !ss.ok()) return 11;
    Result<LocalDmb> dmb = LocalDmb::Register(kSize);
    if (!dmb.ok()) return 12;
    if (!WriteU64(tcp->get(), dmb->token()).ok() ||
        !WriteU64(tcp->get(), dmb->size()).ok()) {
      return 13;
    }
    if (::read(go[0], &b, 1) != 1) return 14;
    Result<PeerDmb> p =
        ConnectHandover(*dmb, {tcp->get(), *st, *ss, milliseconds(10000)});
    return p.ok() ? 0 : 15;
  });
  ASSERT_GT(child, 0);
  ::close(go[0]);
  Result<UniqueFd> tcp = TcpAccept(l->get());
  ASSERT_TRUE(tcp.ok());
  Result<LocalDmb> dmb = LocalDmb::Register(kSize);
  ASSERT_TRUE(dmb.ok());
  Result<HandoverListener> hl = HandoverListener::Listen(*dmb);
  ASSERT_TRUE(hl.ok()) << hl.status();
  ASSERT_TRUE(WriteU64(tcp->get(), dmb->token()).ok());
  ASSERT_TRUE(WriteU64(tcp->get(), dmb->size()).ok());
  Result<uint64_t> ct = ReadU64(tcp->get());
  Result<uint64_t> cs = ReadU64(tcp->get());
  ASSERT_TRUE(ct.ok() && cs.ok());

  // The impostor knows the name (it is in /proc/net/unix) and even the
  // tokens, but does not hold the client end of the TCP connection.
  int done[2];
  ASSERT_EQ(::pipe(done), 0);
  const uint64_t token = dmb->token(), ctoken = *ct;
  pid_t third = Spawn([&] {
    CloseFdsExcept(done[1]);
    int s = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::string name = HandoverSocketName(token);
    std::memcpy(a.sun_path + 1, name.data(), name.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 +
                                           name.size());
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), len) != 0) return 20;
    char c = 1;
    if (::write(done[1], &c, 1) != 1) return 21;
    std::byte msg[64] = {};
    std::memcpy(msg + 8, &ctoken, 8);  // a plausible offer, without fds
    ::send(s, msg, kOfferSize, MSG_NOSIGNAL);
    alignas(cmsghdr) char cbuf[256];
    iovec iov{msg, sizeof msg};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    ssize_t n = ::recvmsg(s, &mh, 0);  // the server closes on us
    if (n > 0) return 22;
    if (n == 0 && mh.msg_controllen != 0) return 23;  // fds without data
    return 0;
  });
  ASSERT_GT(third, 0);
  ::close(done[1]);
  char c;
  ASSERT_EQ(::read(done[0], &c, 1), 1);  // the impostor is queued first
  ::close(done[0]);
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);

  Result<PeerDmb> peer =
      hl->Accept(*dmb, {tcp->get(), *ct, *cs, milliseconds(10000)});
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(hl->rejected(), 1u);
  EXPECT_EQ(peer->token(), *ct);
  EXPECT_TRUE(ExitedZero(WaitChild(third)));
  EXPECT_TRUE(ExitedZero(WaitChild(child)));
}

TEST(ShmHandoverTest, ClientRefusesAServerThatIsNotItsTcpPeer) {
  // Someone else listens on the name the client will look up (e.g. knows the
  // token): the client must not send its DMB there.
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  Result<LocalDmb> bait = LocalDmb::Register(4096);
  ASSERT_TRUE(bait.ok());
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const uint64_t bait_token = bait->token();
  pid_t squatter = Spawn([&] {
    Result<HandoverListener> h = HandoverListener::Listen(*bait);
    if (!h.ok()) return 30;
    char c = 1;
    if (::write(ready[1], &c, 1) != 1) return 31;
    ::pause();
    return 0;
  });
  ASSERT_GT(squatter, 0);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  bait->Unregister();  // the parent no longer holds a listener either
  Result<UniqueFd> cli = TcpConnectLoopback(port);
  ASSERT_TRUE(cli.ok());
  Result<UniqueFd> srv = TcpAccept(l->get());
  ASSERT_TRUE(srv.ok());
  Result<LocalDmb> mine = LocalDmb::Register(kSize);
  ASSERT_TRUE(mine.ok());
  // This process holds the server end and never listens; the squatter
  // answers the name but holds no end of this TCP connection.
  Result<PeerDmb> p = ConnectHandover(
      *mine, {cli->get(), bait_token, 4096, milliseconds(3000)});
  EXPECT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kPermissionDenied) << p.status();
  ::kill(squatter, SIGKILL);
  WaitChild(squatter);
  ::close(ready[0]);
  ::close(ready[1]);
}

// A server of another uid that offers its DMB without checking anything (a
// hostile or foreign implementation): the client must apply the server's
// rule (same uid) itself, and neither send its own DMB there nor map the
// server's. Before the client checked, it verified only that the listener's
// process held the server's TCP socket, then swapped DMBs.
TEST(ShmHandoverTest, ClientRefusesAServerOfAnotherUid) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root to run the server as nobody";
  int info[2];
  ASSERT_EQ(::pipe(info), 0);
  pid_t server = Spawn([&] {
    ::close(info[0]);
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 30;
    uint16_t port;
    Result<UniqueFd> l = TcpListenLoopback(&port);
    if (!l.ok()) return 31;
    if (!WriteU64(info[1], port).ok()) return 32;
    Result<UniqueFd> tcp = TcpAccept(l->get());
    if (!tcp.ok()) return 33;
    Result<LocalDmb> dmb = LocalDmb::Register(kSize);
    if (!dmb.ok()) return 34;
    Result<HandoverListener> h = HandoverListener::Listen(*dmb);
    if (!h.ok()) return 35;
    if (!WriteU64(info[1], dmb->token()).ok()) return 36;
    pollfd pfd{h->fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 20000) != 1) return 37;
    UniqueFd conn(::accept4(h->fd(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) return 38;
    // Whatever the client sends: an offer with fds means it handed its DMB
    // to a process of another uid.
    pfd = pollfd{conn.get(), POLLIN, 0};
    if (::poll(&pfd, 1, 20000) != 1) return 39;
    std::byte msg[kOfferSize];
    alignas(cmsghdr) char cbuf[CMSG_SPACE(8 * sizeof(int))];
    iovec iov{msg, sizeof msg};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    const ssize_t n = ::recvmsg(conn.get(), &mh, MSG_CMSG_CLOEXEC);
    if (n <= 0) return 0;  // refused: closed without a byte
    // Answer like a server would, so that an unchecking client attaches.
    uint64_t client_token;
    std::memcpy(&client_token, msg + 8, sizeof client_token);
    std::byte offer[kOfferSize] = {};
    const uint32_t magic = kOfferMagic;
    const uint16_t version = kOfferVersion;
    const uint64_t words[3] = {dmb->token(), dmb->size(), client_token};
    std::memcpy(offer, &magic, 4);
    std::memcpy(offer + 4, &version, 2);
    std::memcpy(offer + 8, words, sizeof words);
    const int fds[2] = {dmb->memfd(), dmb->doorbell_peer_end()};
    alignas(cmsghdr) char out[CMSG_SPACE(sizeof fds)] = {};
    iovec oiov{offer, sizeof offer};
    msghdr om{};
    om.msg_iov = &oiov;
    om.msg_iovlen = 1;
    om.msg_control = out;
    om.msg_controllen = sizeof out;
    cmsghdr* c = CMSG_FIRSTHDR(&om);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    std::memcpy(CMSG_DATA(c), fds, sizeof fds);
    ::sendmsg(conn.get(), &om, MSG_NOSIGNAL);
    char b;
    while (::read(tcp->get(), &b, 1) > 0) {
    }
    return 20;  // the client's DMB reached us
  });
  ASSERT_GT(server, 0);
  ::close(info[1]);
  Result<uint64_t> port = ReadU64(info[0]);
  ASSERT_TRUE(port.ok());
  Result<UniqueFd> cli = TcpConnectLoopback(static_cast<uint16_t>(*port));
  ASSERT_TRUE(cli.ok());
  Result<uint64_t> token = ReadU64(info[0]);
  ASSERT_TRUE(token.ok());
  Result<LocalDmb> mine = LocalDmb::Register(kSize);
  ASSERT_TRUE(mine.ok());
  Result<PeerDmb> p =
      ConnectHandover(*mine, {cli->get(), *token, kSize, milliseconds(3000)});
  EXPECT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kPermissionDenied) << p.status();
  EXPECT_NE(p.status().message().find("uid 65534"), std::string::npos)
      << p.status();
  cli->Reset();
  const int st = WaitChild(server);
  EXPECT_TRUE(ExitedZero(st)) << "server exit " << WEXITSTATUS(st);
  ::close(info[0]);
}

// A forking server: the process that created the handover listener (the
// client's SO_PEERCRED) handed the TCP socket to a child and closed its own
// copy; the child holds it now and is accepted as the peer.
TEST(ShmHandoverTest, AChildHoldingTheTcpSocketIsTheServersProcess) {
  LoopbackTcp t;
  ASSERT_NO_FATAL_FAILURE(OpenLoopbackTcp(&t));
  int hold[2];
  ASSERT_EQ(::pipe(hold), 0);
  pid_t child = Spawn([&] {
    ::close(hold[1]);
    char c;
    return ::read(hold[0], &c, 1) >= 0 ? 0 : 1;  // keeps srv until told
  });
  ASSERT_GT(child, 0);
  t.srv.Reset();
  const PeerCred me{::getpid(), ::getuid(), ::getgid()};
  EXPECT_FALSE(*ProcessHoldsSocket(me.pid, t.srv_inode));
  EXPECT_TRUE(ChildHoldsSocket(me.pid, t.srv_inode));
  const auto deadline = std::chrono::steady_clock::now() + seconds(3);
  EXPECT_TRUE(VerifyTcpPeerProcess(t.cli.get(), me, deadline).ok());
  ::close(hold[1]);
  WaitChild(child);
  ::close(hold[0]);
  // The child is gone with its copy: nobody of ours holds it any more.
  EXPECT_FALSE(VerifyTcpPeerProcess(t.cli.get(), me, deadline).ok());
}

// The fd hint shortens the search and decides nothing: a right one finds
// the socket at once, a wrong or stale one falls back to the whole table,
// and no hint makes a process hold a socket it does not.
TEST(ShmHandoverTest, FdHintIsOnlyWhereToLookFirst) {
  LoopbackTcp t;
  ASSERT_NO_FATAL_FAILURE(OpenLoopbackTcp(&t));
  const pid_t me = ::getpid();
  for (int hint : {t.srv.get(), t.cli.get(), t.listener.get(), 65000, -1}) {
    Result<bool> holds = ProcessHoldsSocket(me, t.srv_inode, hint);
    ASSERT_TRUE(holds.ok()) << hint;
    EXPECT_TRUE(*holds) << hint;
  }
  // A child that holds only other fds: no hint makes it hold ours.
  int hold[2], ready[2];
  ASSERT_EQ(::pipe(hold), 0);
  ASSERT_EQ(::pipe(ready), 0);
  const int srv_fd = t.srv.get();
  pid_t child = Spawn([&] {
    ::close(srv_fd);
    ::close(hold[1]);
    char c = 'r';
    if (::write(ready[1], &c, 1) != 1) return 1;
    return ::read(hold[0], &c, 1) >= 0 ? 0 : 1;
  });
  ASSERT_GT(child, 0);
  ::close(ready[1]);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);  // its copy of srv is closed
  ::close(ready[0]);
  for (int hint : {srv_fd, hold[0], -1}) {
    Result<bool> holds = ProcessHoldsSocket(child, t.srv_inode, hint);
    ASSERT_TRUE(holds.ok()) << hint;
    EXPECT_FALSE(*holds) << hint;
  }
  ::close(hold[1]);
  WaitChild(child);
  ::close(hold[0]);
}

TEST(ShmHandoverTest, SilentClientTimesOut) {
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  pid_t pid = Spawn([&] {
    l->Reset();
    Result<UniqueFd> tcp = TcpConnectLoopback(port);
    if (!tcp.ok()) return 10;
    Result<uint64_t> st = ReadU64(tcp->get());
    if (!st.ok()) return 11;
    // Connect to the handover socket as the genuine peer, then say nothing
    // until the server gives up (EOF on TCP).
    int s = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::string name = HandoverSocketName(*st);
    std::memcpy(a.sun_path + 1, name.data(), name.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 +
                                           name.size());
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), len) != 0) return 12;
    char b;
    while (::read(tcp->get(), &b, 1) > 0) {
    }
    return 0;
  });
  ASSERT_GT(pid, 0);
  Result<UniqueFd> tcp = TcpAccept(l->get());
  ASSERT_TRUE(tcp.ok());
  Result<LocalDmb> dmb = LocalDmb::Register(kSize);
  ASSERT_TRUE(dmb.ok());
  Result<HandoverListener> hl = HandoverListener::Listen(*dmb);
  ASSERT_TRUE(hl.ok());
  ASSERT_TRUE(WriteU64(tcp->get(), dmb->token()).ok());
  Result<PeerDmb> p =
      hl->Accept(*dmb, {tcp->get(), 0x1234, kSize, milliseconds(300)});
  EXPECT_EQ(p.status().code(), StatusCode::kUnavailable) << p.status();
  EXPECT_NE(p.status().message().find("timed out"), std::string::npos);
  EXPECT_EQ(hl->rejected(), 0u);  // it was the real peer, just silent
  // The server speaks second: nothing of ours went to the silent peer.
  EXPECT_GE(dmb->doorbell_peer_end(), 0);
  tcp->Reset();
  EXPECT_TRUE(ExitedZero(WaitChild(pid)));
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
  Result<PeerDmb> p =
      ConnectHandover(*dmb, {tcp->get(), *st, kSize, milliseconds(300)});
  EXPECT_EQ(p.status().code(), StatusCode::kUnavailable) << p.status();
  tcp->Reset();
  EXPECT_TRUE(ExitedZero(WaitChild(pid)));
  ::close(tok[0]);
  ::close(tok[1]);
}

TEST(ShmHandoverTest, WrongTokenFromPeerIsRejected) {
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
  Result<PeerDmb> p =
      hl->Accept(*dmb, {tcp->get(), *ct ^ 0x10, *cs, milliseconds(5000)});
  EXPECT_EQ(p.status().code(), StatusCode::kDataLoss) << p.status();
  EXPECT_NE(p.status().message().find("token"), std::string::npos);
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
// DMB: token and size then come from the verified client's offer.
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
  HandoverParams p{.tcp_fd = tcp->get(), .timeout = seconds(10)};
  Result<PeerDmb> peer = listener->Accept(*local, p);
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(peer->token(), told[0]);
  EXPECT_EQ(peer->size(), told[1]);
  EXPECT_EQ(peer->size(), kSize / 2);
  EXPECT_TRUE(ExitedZero(WaitChild(pid)));
}

// The client side still needs the server's token: it names the socket.
TEST(ShmHandoverTest, ClientWithoutServerTokenIsRefused) {
  Result<LocalDmb> local = LocalDmb::Register(kSize);
  ASSERT_TRUE(local.ok());
  HandoverParams p{.tcp_fd = 0, .peer_token = 0, .peer_dmb_size = kSize};
  Result<PeerDmb> peer = ConnectHandover(*local, p);
  ASSERT_FALSE(peer.ok());
  EXPECT_EQ(peer.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace usmc::dev
