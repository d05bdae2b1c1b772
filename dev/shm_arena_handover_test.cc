// The arena handover (offer v3) between two real processes: a TCP
// connection stands in for CLC (it carries each connection's tokens), each
// handover runs over its own token-bound Unix name as in production.
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "base/endian.h"
#include "dev/shm_handover.h"
#include "dev/shm_identity.h"
#include "dev/shm_test_util.h"
#include "gtest/gtest.h"

namespace usmc::dev {
namespace {

using namespace testing;  // NOLINT: the helpers of this test suite
using std::chrono::seconds;

constexpr uint64_t kSize = 64 * 1024;

std::atomic_ref<uint64_t> Word(std::span<std::byte> bytes, size_t off) {
  return std::atomic_ref<uint64_t>(
      *reinterpret_cast<uint64_t*>(bytes.data() + off));
}

bool ExitedZero(int st) { return WIFEXITED(st) && WEXITSTATUS(st) == 0; }

// Server side of one connection: announce a fresh token (as CLC Accept),
// run the handover, close the listener (the window closes).
Result<ArenaHandoverResult> ServeOne(int ctl, ArenaPairs& pairs) {
  Result<uint64_t> token = NewDmbToken();
  if (!token.ok()) return token.status();
  Result<HandoverListener> l = HandoverListener::Listen(*token);
  if (!l.ok()) return l.status();
  USMC_RETURN_IF_ERROR(WriteU64(ctl, *token));
  USMC_RETURN_IF_ERROR(WriteU64(ctl, kSize));
  return ArenaAccept(*l, pairs,
                     {.own_token = *token,
                      .own_size = kSize,
                      .timeout = std::chrono::milliseconds(10000)});
}

Result<ArenaHandoverResult> ConnectOne(int ctl, ArenaPairs& pairs) {
  Result<uint64_t> peer_token = ReadU64(ctl);
  if (!peer_token.ok()) return peer_token.status();
  Result<uint64_t> peer_size = ReadU64(ctl);
  if (!peer_size.ok()) return peer_size.status();
  Result<uint64_t> token = NewDmbToken();
  if (!token.ok()) return token.status();
  return ArenaConnect(pairs, {.own_token = *token,
                              .own_size = kSize,
                              .peer_token = *peer_token,
                              .peer_size = *peer_size,
                              .timeout = std::chrono::milliseconds(10000)});
}

// The client writes `tag` at 64 in the server's slot, publishes it at 0
// and rings; the server waits for it on its doorbell.
bool SendTag(ArenaHandoverResult& c, uint64_t tag) {
  Word(c.peer.bytes(), 64).store(tag, std::memory_order_relaxed);
  Word(c.peer.bytes(), 0).store(tag, std::memory_order_release);
  c.peer.doorbell().Ring();
  return true;
}
bool GotTag(ArenaHandoverResult& s, uint64_t tag) {
  WaitResult r = s.local.doorbell().Wait(
      [&] {
        return Word(s.local.bytes(), 0).load(std::memory_order_acquire) == tag;
      },
      seconds(30));
  return r == WaitResult::kReady &&
         Word(s.local.bytes(), 64).load(std::memory_order_relaxed) == tag;
}

// The first connection between two processes hands the arenas over; a
// second one costs one fd per side (its doorbell socket) and no memfd; a
// third, after the second closed, takes the same slots again.
TEST(ShmArenaHandoverTest, LaterConnectionsOfAPairCostOneFdAndReuseSlots) {
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    l->Reset();
    Result<UniqueFd> ctl = TcpConnectLoopback(port);
    if (!ctl.ok()) _exit(10);
    ArenaPairs pairs;
    Result<ArenaHandoverResult> c0 = ConnectOne(ctl->get(), pairs);
    if (!c0.ok() || !c0->new_pair || !SendTag(*c0, 100)) _exit(11);
    const int fds = CountOpenFds();
    Result<ArenaHandoverResult> c1 = ConnectOne(ctl->get(), pairs);
    if (!c1.ok() || c1->new_pair || !SendTag(*c1, 101)) _exit(12);
    if (CountOpenFds() != fds + 1) _exit(13);
    if (c1->peer.arena() != c0->peer.arena()) _exit(14);
    const uint64_t slot1 = c1->local.slot_offset();
    *c1 = ArenaHandoverResult();  // connection 1 ends
    // ... on both sides: a slot is reused only after the peer let go.
    char closed;
    if (!ReadAll(ctl->get(), &closed, 1).ok()) _exit(20);
    Result<ArenaHandoverResult> c2 = ConnectOne(ctl->get(), pairs);
    if (!c2.ok() || c2->new_pair || !SendTag(*c2, 102)) _exit(15);
    if (c2->local.slot_offset() != slot1) _exit(16);
    if (CountOpenFds() != fds + 1) _exit(17);
    if (c0->local.arena()->stats().slots_created != 2) _exit(18);
    // Stay until the server has read everything.
    char done;
    if (!ReadAll(ctl->get(), &done, 1).ok()) _exit(19);
    _exit(0);
  }
  Result<UniqueFd> ctl = TcpAccept(l->get());
  ASSERT_TRUE(ctl.ok());
  ArenaPairs pairs;
  Result<ArenaHandoverResult> s0 = ServeOne(ctl->get(), pairs);
  ASSERT_TRUE(s0.ok()) << s0.status();
  EXPECT_TRUE(s0->new_pair);
  EXPECT_EQ(s0->cred.pid, pid);
  EXPECT_TRUE(GotTag(*s0, 100));
  const int fds = CountOpenFds();
  Result<ArenaHandoverResult> s1 = ServeOne(ctl->get(), pairs);
  ASSERT_TRUE(s1.ok()) << s1.status();
  EXPECT_FALSE(s1->new_pair);
  EXPECT_EQ(CountOpenFds(), fds + 1);  // its doorbell socket only
  EXPECT_TRUE(GotTag(*s1, 101));
  const uint64_t slot1 = s1->local.slot_offset();
  s1 = ArenaHandoverResult();
  ASSERT_TRUE(WriteAll(ctl->get(), "c", 1).ok());
  Result<ArenaHandoverResult> s2 = ServeOne(ctl->get(), pairs);
  ASSERT_TRUE(s2.ok()) << s2.status();
  EXPECT_EQ(s2->local.slot_offset(), slot1);  // the warm slot again
  EXPECT_TRUE(GotTag(*s2, 102));
  EXPECT_EQ(s0->local.arena()->stats().slots_created, 2u);
  EXPECT_EQ(pairs.size(), 1u);
  ASSERT_TRUE(WriteAll(ctl->get(), "d", 1).ok());
  EXPECT_TRUE(ExitedZero(WaitChild(pid)));
}

// The server no longer knows the client's pair (dropped, retired, another
// image after exec): it answers "unknown pair", and the client drops its
// record and starts a new pair on the same socket, within the same
// deadline: the connection still gets its slots, no fallback.
TEST(ShmArenaHandoverTest, UnknownPairStartsANewPairOnTheSameSocket) {
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    l->Reset();
    Result<UniqueFd> ctl = TcpConnectLoopback(port);
    if (!ctl.ok()) _exit(10);
    ArenaPairs pairs;
    Result<ArenaHandoverResult> c0 = ConnectOne(ctl->get(), pairs);
    if (!c0.ok() || !c0->new_pair || !SendTag(*c0, 100)) _exit(11);
    char retired;
    if (!ReadAll(ctl->get(), &retired, 1).ok()) _exit(12);
    Result<ArenaHandoverResult> c1 = ConnectOne(ctl->get(), pairs);
    if (!c1.ok()) _exit(13);
    if (!c1->new_pair || !SendTag(*c1, 101)) _exit(14);
    if (c1->peer.arena() == c0->peer.arena()) _exit(15);
    if (c1->local.arena() == c0->local.arena()) _exit(16);
    char done;
    if (!ReadAll(ctl->get(), &done, 1).ok()) _exit(17);
    _exit(0);
  }
  Result<UniqueFd> ctl = TcpAccept(l->get());
  ASSERT_TRUE(ctl.ok());
  ArenaPairs pairs;
  Result<ArenaHandoverResult> s0 = ServeOne(ctl->get(), pairs);
  ASSERT_TRUE(s0.ok()) << s0.status();
  EXPECT_TRUE(GotTag(*s0, 100));
  std::shared_ptr<ArenaPair> pair = pairs.ForPeer(pid);
  ASSERT_NE(pair, nullptr);
  pairs.Retire(pair->id);
  ASSERT_TRUE(WriteAll(ctl->get(), "r", 1).ok());
  Result<ArenaHandoverResult> s1 = ServeOne(ctl->get(), pairs);
  ASSERT_TRUE(s1.ok()) << s1.status();
  EXPECT_TRUE(s1->new_pair);
  EXPECT_TRUE(GotTag(*s1, 101));
  EXPECT_NE(s1->local.arena(), s0->local.arena());
  ASSERT_TRUE(WriteAll(ctl->get(), "d", 1).ok());
  EXPECT_TRUE(ExitedZero(WaitChild(pid)));
}

// A process that legitimately holds its own connection (it knows that
// connection's token) but claims the pair of another process gets no slot
// of that pair: the server answers "unknown pair" and attaches nothing.
TEST(ShmArenaHandoverTest, ClaimOfAnotherProcesssPairGetsNothing) {
  uint16_t port;
  Result<UniqueFd> l = TcpListenLoopback(&port);
  ASSERT_TRUE(l.ok());
  // Process A: a real client that makes a pair with us and stays.
  const pid_t a = ::fork();
  ASSERT_GE(a, 0);
  if (a == 0) {
    l->Reset();
    Result<UniqueFd> ctl = TcpConnectLoopback(port);
    if (!ctl.ok()) _exit(10);
    ArenaPairs pairs;
    Result<ArenaHandoverResult> c0 = ConnectOne(ctl->get(), pairs);
    if (!c0.ok() || !SendTag(*c0, 7)) _exit(11);
    char done;
    if (!ReadAll(ctl->get(), &done, 1).ok()) _exit(12);
    _exit(0);
  }
  Result<UniqueFd> ctl_a = TcpAccept(l->get());
  ASSERT_TRUE(ctl_a.ok());
  ArenaPairs pairs;
  Result<ArenaHandoverResult> sa = ServeOne(ctl_a->get(), pairs);
  ASSERT_TRUE(sa.ok()) << sa.status();
  ASSERT_TRUE(GotTag(*sa, 7));
  // The pair id is not secret (it crosses the Unix socket); give it to C.
  std::shared_ptr<ArenaPair> pair_a = pairs.ForPeer(a);
  ASSERT_NE(pair_a, nullptr);
  const uint64_t pair_id = pair_a->id;

  // Process C: holds its own connection (its own token), claims A's pair
  // with every proof it can make up, then expects nothing but "unknown".
  const pid_t c = ::fork();
  ASSERT_GE(c, 0);
  if (c == 0) {
    l->Reset();
    Result<UniqueFd> ctl = TcpConnectLoopback(port);
    if (!ctl.ok()) _exit(20);
    Result<uint64_t> ts = ReadU64(ctl->get());
    Result<uint64_t> size = ReadU64(ctl->get());
    if (!ts.ok() || !size.ok()) _exit(21);
    const uint64_t tc = 0x1234567890abcdefULL;
    std::byte msg[kOfferV3Size] = {};
    StoreLe32(msg, kOfferMagic);
    StoreLe16(msg + 4, kOfferVersion3);
    StoreLe16(msg + 6, kOfferFromClient);
    auto put = [&](size_t off, uint64_t v) { std::memcpy(msg + off, &v, 8); };
    put(8, tc);
    put(16, kSize);
    put(24, HandoverProof(*ts, tc, kOfferFromClient, kSize));  // valid
    put(32, pair_id);                                          // A's pair
    put(56, 4096);                                             // a slot
    put(64, PairProof({0, 0}, *ts, tc, kOfferFromClient, pair_id, 4096,
                      kSize));  // without A's key
    UniqueFd u(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string name = HandoverSocketName(*ts);
    std::memcpy(addr.sun_path + 1, name.data(), name.size());
    if (::connect(u.get(), reinterpret_cast<sockaddr*>(&addr),
                  static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 +
                                         name.size())) != 0) {
      _exit(22);
    }
    if (::send(u.get(), msg, sizeof msg, 0) != sizeof msg) _exit(23);
    // No first-time offer follows the "unknown" answer: C gives up.
    ::shutdown(u.get(), SHUT_WR);
    std::byte reply[kOfferV3Size + 1];
    alignas(cmsghdr) char cbuf[CMSG_SPACE(8 * sizeof(int))];
    iovec iov{reply, sizeof reply};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    const ssize_t n = ::recvmsg(u.get(), &mh, MSG_WAITALL);
    if (n != static_cast<ssize_t>(kOfferV3Size)) _exit(24);  // then EOF
    if (mh.msg_controllen != 0) _exit(25);                   // no fd
    if (LoadLe16(reply + 6) != 3) _exit(26);                 // "unknown"
    for (size_t i = 8; i < kOfferV3Size; ++i) {
      if (reply[i] != std::byte{0}) _exit(27);  // no slot, no proof
    }
    _exit(0);
  }
  Result<UniqueFd> ctl_c = TcpAccept(l->get());
  ASSERT_TRUE(ctl_c.ok());
  const ArenaStats before = sa->local.arena()->stats();
  Result<ArenaHandoverResult> sc = ServeOne(ctl_c->get(), pairs);
  ASSERT_FALSE(sc.ok());
  EXPECT_EQ(sc.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(ExitedZero(WaitChild(c)));
  // Nothing of A's pair moved: no slot taken for C.
  const ArenaStats after = sa->local.arena()->stats();
  EXPECT_EQ(after.slots_in_use, before.slots_in_use);
  EXPECT_EQ(after.slots_created, before.slots_created);
  ASSERT_TRUE(WriteAll(ctl_a->get(), "d", 1).ok());
  EXPECT_TRUE(ExitedZero(WaitChild(a)));
}

}  // namespace
}  // namespace usmc::dev
