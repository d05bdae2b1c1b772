// Early data: a client's sends before the CLC decision are kept and go out
// at the decision, into the peer's DMB or over TCP behind the Decline, so
// that a client's connection is usable when TCP's is, whatever the server's
// application is doing. Real processes on real TCP loopback connections.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "runtime/smc_socket.h"
#include "runtime/smc_socket_test_util.h"
#include "wire/reason.h"

namespace usmc::runtime {
namespace {

using testing::Client;
using testing::ConnectedLoopbackPair;
using testing::ForkClient;
using testing::LoopUntilDecided;
using testing::LoopWait;
using testing::MustStart;
using testing::Server;
using testing::SetNonblockingFd;
using testing::Stream;
using testing::WaitChild;

constexpr size_t kMax = SmcSocket::kEarlyDataMax;

// Receives exactly `len` bytes through event-loop waits; "" on EOF/error.
std::string RecvAll(SmcSocket& s, size_t len) {
  std::string got(len, '\0');
  size_t off = 0;
  while (off < len) {
    ssize_t n = s.Recv(got.data() + off, len - off, MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n == 0 || errno != EAGAIN || !(LoopWait(s, POLLIN) & POLLIN)) {
      return "";
    }
  }
  return got;
}

std::vector<std::byte> StreamBytes(uint64_t seed, size_t n) {
  std::vector<std::byte> v(n);
  Stream(seed).Fill(v.data(), n);
  return v;
}

// The server's application is busy (it has not even started its side of
// the handshake): the client's socket is writable and takes kMax bytes at
// once; they reach the server through its DMB after the decision.
TEST(SmcSocketEarlyTest,
     ClientWritesBeforeTheServerAnswersAndItArrivesOverSmcd) {
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child;
  int fd = ForkClient(
      [&](int fd) {
        SetNonblockingFd(fd);
        auto s = MustStart(fd, Client());
        if (!s || !s->handshaking()) return 1;
        // Writable at once, as a TCP socket after connect; not readable.
        if (s->Poll(POLLIN | POLLOUT) != POLLOUT) return 2;
        const std::vector<std::byte> data = StreamBytes(7, kMax + 100);
        if (s->Send(data.data(), 5000, 0) != 5000) return 3;
        // Non-blocking: what fits, then EAGAIN and no POLLOUT until the
        // decision.
        if (s->Send(data.data() + 5000, data.size() - 5000, 0) !=
            static_cast<ssize_t>(kMax - 5000)) {
          return 4;
        }
        if (s->Send(data.data() + kMax, 100, 0) != -1 || errno != EAGAIN) {
          return 5;
        }
        if (s->Poll(POLLOUT) != 0) return 6;
        char c;
        if (s->Recv(&c, 1, 0) != -1 || errno != EAGAIN) return 7;
        if (::write(go[1], "g", 1) != 1) return 8;  // the server may start
        if (!(LoopWait(*s, POLLOUT) & POLLOUT)) return 9;
        if (!s->is_smc()) return 10;
        // Later bytes follow the early ones.
        if (s->Send(data.data() + kMax, 100, 0) != 100) return 11;
        if (RecvAll(*s, 2) != "ok") return 12;
        return s->Close() == 0 ? 0 : 13;
      },
      &child);
  char c;
  ASSERT_EQ(::read(go[0], &c, 1), 1);  // the client has written by now
  SetNonblockingFd(fd);
  auto s = MustStart(fd, Server());
  ASSERT_TRUE(s);
  ASSERT_TRUE(LoopUntilDecided(*s));
  ASSERT_TRUE(s->is_smc()) << wire::FormatReason(
      s->status().engine.local_reason);
  const std::vector<std::byte> want = StreamBytes(7, kMax + 100);
  const std::string got = RecvAll(*s, want.size());
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0);
  // Every byte came through shared memory, none over TCP.
  EXPECT_EQ(s->status().engine.counters.bytes_received, want.size());
  ASSERT_EQ(s->Send("ok", 2, 0), 2);
  EXPECT_EQ(WaitChild(child), 0);
  EXPECT_EQ(s->Close(), 0);
  ::close(go[0]);
  ::close(go[1]);
}

// shutdown before the decision acts as on TCP at once (SHUT_WR: writable,
// a send fails with EPIPE; SHUT_RD: readable, EOF) and reaches the peer at
// the decision, behind the early data.
TEST(SmcSocketEarlyTest, ShutdownBeforeTheDecisionActsAsTcpAtOnce) {
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child;
  int fd = ForkClient(
      [&](int fd) {
        SetNonblockingFd(fd);
        auto s = MustStart(fd, Client());
        if (!s || !s->handshaking()) return 1;
        if (s->Send("early", 5, 0) != 5) return 2;
        if (s->Shutdown(SHUT_WR) != 0) return 3;
        if (!s->handshaking()) return 4;  // the server has not started
        if (s->Poll(POLLOUT | POLLIN) != POLLOUT) return 5;
        if (s->Send("x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE) return 6;
        if (s->Shutdown(SHUT_RD) != 0) return 7;
        if (s->Poll(POLLIN | POLLRDHUP) != (POLLIN | POLLRDHUP)) return 8;
        char c;
        if (s->Recv(&c, 1, 0) != 0) return 9;
        if (::write(go[1], "g", 1) != 1) return 10;
        if (!LoopUntilDecided(*s)) return 11;
        if (!s->is_smc()) return 12;
        if (s->Send("x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE) return 13;
        return s->Close() == 0 ? 0 : 14;
      },
      &child);
  char c;
  ASSERT_EQ(::read(go[0], &c, 1), 1);
  SetNonblockingFd(fd);
  auto s = MustStart(fd, Server());
  ASSERT_TRUE(s);
  ASSERT_TRUE(LoopUntilDecided(*s));
  ASSERT_TRUE(s->is_smc());
  EXPECT_EQ(RecvAll(*s, 5), "early");
  ASSERT_TRUE(LoopWait(*s, POLLIN) & POLLIN);
  EXPECT_EQ(s->Recv(&c, 1, MSG_DONTWAIT), 0);  // the client's FIN
  EXPECT_EQ(WaitChild(child), 0);
  EXPECT_EQ(s->Close(), 0);
  ::close(go[0]);
  ::close(go[1]);
}

// The server declines: the early bytes go over TCP behind the CLC bytes,
// before the bytes sent after the decision.
TEST(SmcSocketEarlyTest, AfterADeclineEarlyDataGoesOverTcpInOrder) {
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child;
  int fd = ForkClient(
      [&](int fd) {
        SetNonblockingFd(fd);
        auto s = MustStart(fd, Client());
        if (!s) return 1;
        if (s->Send("early ", 6, 0) != 6) return 2;
        if (::write(go[1], "g", 1) != 1) return 3;
        if (!LoopUntilDecided(*s)) return 4;
        if (s->mode() != engine::Mode::kTcp) return 5;
        if (s->status().engine.peer_reason == 0) return 6;  // it declined
        if (s->Send("late", 4, 0) != 4) return 7;
        return s->Close() == 0 ? 0 : 8;
      },
      &child);
  char c;
  ASSERT_EQ(::read(go[0], &c, 1), 1);
  Options o = Server();
  o.smcd_enabled = false;
  auto s = MustStart(fd, o);  // blocking: the Recv finishes the handshake
  ASSERT_TRUE(s);
  char buf[10];
  ASSERT_EQ(s->Recv(buf, sizeof buf, MSG_WAITALL), 10);
  EXPECT_EQ(std::string(buf, 10), "early late");
  EXPECT_EQ(s->mode(), engine::Mode::kTcp);
  EXPECT_EQ(s->Recv(buf, 1, 0), 0);  // and then EOF
  EXPECT_EQ(WaitChild(child), 0);
  EXPECT_EQ(s->Close(), 0);
  ::close(go[0]);
  ::close(go[1]);
}

// The client closes before the server answered (a request timeout): it
// declines at once and its early bytes go over TCP; a server that gets to
// the connection later finds the Proposal, the Decline, the bytes, EOF.
TEST(SmcSocketEarlyTest, CloseBeforeTheDecisionDeclinesAndKeepsTheBytes) {
  const auto [cfd, sfd] = ConnectedLoopbackPair();
  SetNonblockingFd(cfd);
  auto c = MustStart(cfd, Client());
  ASSERT_TRUE(c);
  ASSERT_EQ(c->Send("request", 7, 0), 7);
  ASSERT_TRUE(c->handshaking());
  ASSERT_EQ(c->Close(), 0);  // returns at once: nobody answered
  EXPECT_EQ(c->mode(), engine::Mode::kTcp);
  EXPECT_EQ(c->status().engine.local_reason, wire::kReasonTimeoutCl);

  auto s = MustStart(sfd, Server());
  ASSERT_TRUE(s);
  char buf[8];
  ASSERT_EQ(s->Recv(buf, 7, MSG_WAITALL), 7);
  EXPECT_EQ(std::string(buf, 7), "request");
  EXPECT_EQ(s->mode(), engine::Mode::kTcp);
  EXPECT_EQ(s->status().engine.peer_reason, wire::kReasonTimeoutCl);
  EXPECT_EQ(s->Recv(buf, 1, 0), 0);
  EXPECT_EQ(s->Close(), 0);
}

// A blocking send larger than the room waits for the decision and then
// sends it all, after the early bytes.
TEST(SmcSocketEarlyTest, BlockingSendBeyondTheRoomWaitsForTheDecision) {
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child;
  int fd = ForkClient(
      [&](int fd) {
        auto s = MustStart(fd, Client());  // blocking fd
        if (!s) return 1;
        const std::vector<std::byte> data = StreamBytes(9, 3 * kMax);
        if (s->Send(data.data(), 10, 0) != 10) return 2;  // early
        if (!s->handshaking()) return 3;
        if (::write(go[1], "g", 1) != 1) return 4;
        if (s->Send(data.data() + 10, data.size() - 10, 0) !=
            static_cast<ssize_t>(data.size() - 10)) {
          return 5;
        }
        if (!s->is_smc()) return 6;
        char c;
        return s->Recv(&c, 1, 0) == 0 ? 0 : 7;  // waits for our close
      },
      &child);
  char c;
  ASSERT_EQ(::read(go[0], &c, 1), 1);
  SetNonblockingFd(fd);
  auto s = MustStart(fd, Server());
  ASSERT_TRUE(s);
  ASSERT_TRUE(LoopUntilDecided(*s));
  ASSERT_TRUE(s->is_smc());
  const std::vector<std::byte> want = StreamBytes(9, 3 * kMax);
  const std::string got = RecvAll(*s, want.size());
  EXPECT_EQ(got.size(), want.size());
  EXPECT_TRUE(got.size() == want.size() &&
              std::memcmp(got.data(), want.data(), want.size()) == 0);
  EXPECT_EQ(s->Close(), 0);
  EXPECT_EQ(WaitChild(child), 0);
  ::close(go[0]);
  ::close(go[1]);
}

// Only a client has early data: an undecided server is not writable.
TEST(SmcSocketEarlyTest, ServerHasNoEarlyData) {
  const auto [cfd, sfd] = ConnectedLoopbackPair();
  SetNonblockingFd(sfd);
  auto s = MustStart(sfd, Server());
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->handshaking());
  EXPECT_EQ(s->Poll(POLLOUT), 0);
  EXPECT_EQ(s->Send("x", 1, 0), -1);
  EXPECT_EQ(errno, EAGAIN);
  ::close(cfd);
}

}  // namespace
}  // namespace usmc::runtime
