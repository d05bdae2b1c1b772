// The runtime as event loops (the interposer) drive it: the non-blocking
// handshake (Start/Progress), PrepareWait/AfterWait around poll(2),
// SO_RCVLOWAT, and Forget after fork. Real processes on real TCP loopback
// connections.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "dev/shm_device.h"
#include "dev/shm_dmb.h"
#include "dev/shm_doorbell.h"
#include "dev/shm_handover.h"
#include "dev/shm_identity.h"
#include "runtime/config.h"
#include "runtime/smc_socket.h"
#include "runtime/smc_socket_test_util.h"
#include "wire/reason.h"

namespace usmc::runtime {
namespace {

using testing::Client;
using testing::ConnectedLoopbackPair;
using testing::CountMemfds;
using testing::ForkClient;
using testing::kWatchdogMs;
using testing::LoopUntilDecided;
using testing::LoopWait;
using testing::MustStart;
using testing::Server;
using testing::SetNonblockingFd;
using testing::Stream;
using testing::WaitChild;

// Like smc_socket_test's Exchange, but sleeping through LoopWait: sends
// `total` bytes of one stream while receiving `total` of another, in random
// chunks, all calls non-blocking. 0 if every byte matched.
int LoopExchange(SmcSocket& s, uint64_t total, uint64_t send_seed,
                 uint64_t recv_seed, uint64_t chunk_seed) {
  Stream out(send_seed), expect(recv_seed);
  std::mt19937_64 rng(chunk_seed);
  std::uniform_int_distribution<size_t> size(1, 256 * 1024);
  std::vector<std::byte> sbuf(256 * 1024), rbuf(256 * 1024), want(256 * 1024);
  uint64_t sent = 0, received = 0;
  size_t pending = 0, pending_off = 0;
  while (sent < total || received < total) {
    bool progress = false;
    if (sent < total) {
      if (pending == 0) {
        pending = std::min<uint64_t>(size(rng), total - sent);
        pending_off = 0;
        out.Fill(sbuf.data(), pending);
      }
      ssize_t n = s.Send(sbuf.data() + pending_off, pending, MSG_DONTWAIT);
      if (n > 0) {
        pending -= static_cast<size_t>(n);
        pending_off += static_cast<size_t>(n);
        sent += static_cast<uint64_t>(n);
        progress = true;
      } else if (errno != EAGAIN) {
        return 10;
      }
    }
    if (received < total) {
      size_t want_n = std::min<uint64_t>(size(rng), total - received);
      ssize_t n = s.Recv(rbuf.data(), want_n, MSG_DONTWAIT);
      if (n > 0) {
        expect.Fill(want.data(), static_cast<size_t>(n));
        if (std::memcmp(rbuf.data(), want.data(), static_cast<size_t>(n)))
          return 11;
        received += static_cast<uint64_t>(n);
        progress = true;
      } else if (n == 0 || errno != EAGAIN) {
        return 12;
      }
    }
    if (!progress) {
      short ev = static_cast<short>((sent < total ? POLLOUT : 0) |
                                    (received < total ? POLLIN : 0));
      if (LoopWait(s, ev) == 0) return 13;
    }
  }
  return 0;
}

// Ping-pong of `rounds` messages of 1..max_len bytes (the length and the
// content depend on the round), every wait through LoopWait.
int LoopPingPong(SmcSocket& s, int rounds, size_t max_len, bool client) {
  std::vector<char> buf(max_len), got(max_len);
  for (int i = 0; i < rounds; ++i) {
    const size_t len = 1 + (static_cast<size_t>(i) * 7919) % max_len;
    const char c = static_cast<char>('a' + i % 26);
    if (client) {
      std::fill(buf.begin(), buf.begin() + len, c);
      size_t off = 0;
      while (off < len) {
        ssize_t n = s.Send(buf.data() + off, len - off, MSG_DONTWAIT);
        if (n > 0) {
          off += static_cast<size_t>(n);
        } else if (errno != EAGAIN || LoopWait(s, POLLOUT) == 0) {
          return 20;
        }
      }
    }
    size_t off = 0;
    while (off < len) {
      ssize_t n = s.Recv(got.data() + off, len - off, MSG_DONTWAIT);
      if (n > 0) {
        off += static_cast<size_t>(n);
      } else if (n == 0 || errno != EAGAIN || LoopWait(s, POLLIN) == 0) {
        return 21;
      }
    }
    for (size_t k = 0; k < len; ++k) {
      if (got[k] != (client ? static_cast<char>(c - 'a' + 'A') : c)) return 22;
    }
    if (!client) {
      for (size_t k = 0; k < len; ++k)
        buf[k] = static_cast<char>(c - 'a' + 'A');
      size_t o = 0;
      while (o < len) {
        ssize_t n = s.Send(buf.data() + o, len - o, MSG_DONTWAIT);
        if (n > 0) {
          o += static_cast<size_t>(n);
        } else if (errno != EAGAIN || LoopWait(s, POLLOUT) == 0) {
          return 23;
        }
      }
    }
  }
  return 0;
}

TEST(SmcSocketEventTest, StartOnBothEndsThenNonBlockingProgressReachesSmcd) {
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child;
  int fd = ForkClient(
      [&](int fd) {
        char c;
        if (::read(go[0], &c, 1) != 1) return 1;  // the server started first
        SetNonblockingFd(fd);
        auto s = MustStart(fd, Client());
        if (!s) return 2;
        while (s->handshaking()) {
          if (!s->Progress(0).ok()) return 3;
          ::poll(nullptr, 0, 1);
        }
        if (!s->is_smc()) return 4;
        if (s->Send("ping", 4, 0) != 4) return 5;
        char buf[4];
        if (LoopWait(*s, POLLIN) != POLLIN) return 6;
        if (s->Recv(buf, 4, 0) != 4 || std::memcmp(buf, "pong", 4)) return 7;
        return s->Close() == 0 ? 0 : 8;
      },
      &child);
  SetNonblockingFd(fd);
  auto s = MustStart(fd, Server());
  ASSERT_TRUE(s);
  // No Proposal yet: undecided, and nothing reaches or leaves the app.
  EXPECT_TRUE(s->handshaking());
  EXPECT_EQ(s->Poll(POLLIN | POLLOUT), 0);
  char buf[8];
  EXPECT_EQ(s->Recv(buf, sizeof buf, 0), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_EQ(s->Send("x", 1, 0), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_EQ(s->Readable(), 0);
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  while (s->handshaking()) {
    ASSERT_TRUE(s->Progress(0).ok());
    ::poll(nullptr, 0, 1);
  }
  ASSERT_TRUE(s->is_smc()) << wire::FormatReason(
      s->status().engine.local_reason);
  ASSERT_EQ(LoopWait(*s, POLLIN), POLLIN);
  ASSERT_EQ(s->Recv(buf, sizeof buf, 0), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
  ASSERT_EQ(s->Send("pong", 4, 0), 4);
  EXPECT_EQ(WaitChild(child), 0);
  EXPECT_EQ(s->Close(), 0);
  ::close(go[0]);
  ::close(go[1]);
}

template <class T>
const T* FindAction(const engine::Actions& a) {
  for (const engine::Action& x : a) {
    if (const T* t = std::get_if<T>(&x)) return t;
  }
  return nullptr;
}

// A client driven by hand (engine + shm device) whose handover and Confirm
// go only when the test says: the interleaving below, deterministically.
// After the Accept it runs the handover on the first byte from `go`,
// writes 'a' to `attached` once it is through, sends Confirm on the second
// byte from `go`, then waits for the server's close.
int HandClientConfirmingOnCue(int fd, int attached, int go) {
  Result<dev::ShmGid> gid = dev::LocalShmGid();
  if (!gid.ok()) return 1;
  const Options o = Client();
  engine::EngineParams p;
  p.role = engine::Role::kClient;
  p.device = {.gid = gid->gid, .gid_ext = gid->gid_ext, .chid = dev::kShmChid};
  p.eid = wire::MakeClcEid(o.eid);
  p.dmb_size = o.dmb_size;
  engine::SeededEntropy entropy(7);
  engine::Connection c(p, &entropy);
  const auto now = [] {
    return engine::TimePoint(
        std::chrono::steady_clock::now().time_since_epoch());
  };
  engine::Actions a = c.OnEvent(engine::Start{}, now());
  const auto* proposal = FindAction<engine::SendTcp>(a);
  if (proposal == nullptr ||
      ::send(fd, proposal->bytes.data(), proposal->bytes.size(), 0) !=
          static_cast<ssize_t>(proposal->bytes.size())) {
    return 2;
  }
  // Room for the longest message, shrunk to its length below: growing it
  // from the header's 8 bytes makes gcc 12 -O3 report a false
  // -Warray-bounds inside vector::resize.
  std::vector<std::byte> accept(wire::kClcMaxMessageLen);
  if (::recv(fd, accept.data(), 8, MSG_WAITALL) != 8) return 3;
  const size_t len = (std::to_integer<size_t>(accept[5]) << 8) |
                     std::to_integer<size_t>(accept[6]);
  if (len < 8 || len > wire::kClcMaxMessageLen) return 4;
  accept.resize(len);
  if (::recv(fd, accept.data() + 8, len - 8, MSG_WAITALL) !=
      static_cast<ssize_t>(len - 8)) {
    return 5;
  }
  a = c.OnEvent(engine::TcpBytes{accept}, now());
  const auto* reg = FindAction<engine::RegisterRecvBuffer>(a);
  if (reg == nullptr) return 6;
  Result<dev::LocalDmb> local =
      dev::LocalDmb::Register(reg->size, dev::DmbBudget::Process());
  if (!local.ok()) return 7;
  a = c.OnEvent(
      engine::RecvBufferRegistered{local->token(),
                                   static_cast<uint32_t>(local->size())},
      now());
  const auto* attach = FindAction<engine::AttachPeerBuffer>(a);
  if (attach == nullptr) return 8;
  char cue;
  if (::read(go, &cue, 1) != 1) return 13;  // "run the handover now"
  dev::HandoverParams hp;
  hp.peer_token = attach->token;
  hp.peer_dmb_size = attach->size;
  Result<dev::Handover> peer = dev::ConnectHandover(*local, hp);
  if (!peer.ok()) return 9;
  a = c.OnEvent(engine::PeerBufferAttached{}, now());
  const auto* confirm = FindAction<engine::SendTcp>(a);
  if (confirm == nullptr || confirm->type != wire::ClcType::kConfirm) return 10;
  cue = 'a';
  if (::write(attached, &cue, 1) != 1 || ::read(go, &cue, 1) != 1) return 11;
  if (::send(fd, confirm->bytes.data(), confirm->bytes.size(), 0) !=
      static_cast<ssize_t>(confirm->bytes.size())) {
    return 12;
  }
  char buf[64];
  while (::recv(fd, buf, sizeof buf, 0) > 0) {
  }
  return 0;
}

// Issue 16: a server that runs late (hundreds of handshakes at once) serves
// the client's DMB handover after its Confirm deadline has passed. The
// client confirms right after the handover and is SMC-D from then on; the
// server timed out before that Confirm came, declined and went TCP: the
// client's bytes went into a DMB nobody read, our Decline into its app.
TEST(SmcSocketEventTest, HandoverServedAfterTheDeadlineWaitsForTheConfirm) {
  // Its hand-made client runs the one-memfd-per-DMB handover (offer v2),
  // step by step: the server must use it too (arenas are the default, and
  // both ends must agree). The arena handover's deadline is the same code
  // path in the engine.
  (void)ProcessConfig();  // it sets the switch from the environment once
  dev::SetShmArenas(false);
  int attached[2], go[2];
  ASSERT_EQ(::pipe(attached), 0);
  ASSERT_EQ(::pipe(go), 0);
  pid_t child;
  int fd = ForkClient(
      [&](int fd) {
        // Only the parent's ends open elsewhere: its exit is our EOF.
        ::close(attached[0]);
        ::close(go[1]);
        return HandClientConfirmingOnCue(fd, attached[1], go[0]);
      },
      &child);
  ::close(attached[1]);
  ::close(go[0]);
  SetNonblockingFd(fd);
  Options o = Server();
  o.clc_timeout = std::chrono::milliseconds(1000);
  auto s = MustStart(fd, o);
  ASSERT_TRUE(s);
  // Until the Accept is out (Start may have read the Proposal already):
  // the handover listener is up then.
  SmcSocket::WaitSpec w;
  for (int ms = 0; (w = s->HandshakeSpec()).n < 2; ++ms) {
    ASSERT_LT(ms, kWatchdogMs);
    ASSERT_TRUE(s->Progress(0).ok());
    ASSERT_TRUE(s->handshaking())
        << wire::FormatReason(s->status().engine.local_reason);
    pollfd p = {fd, POLLIN, 0};
    ::poll(&p, 1, 1);
  }
  // The client connects to the handover listener and waits there, while
  // the server's app is busy past the Confirm deadline; then it calls in
  // and serves the handover. The Confirm is not there yet.
  ASSERT_EQ(::write(go[1], "h", 1), 1);
  pollfd l = {w.fds[1].fd, POLLIN, 0};
  ASSERT_EQ(::poll(&l, 1, kWatchdogMs), 1);
  ::poll(nullptr, 0, 1100);
  pollfd cue = {attached[0], POLLIN, 0};
  while (::poll(&cue, 1, 1) == 0) {
    ASSERT_TRUE(s->Progress(0).ok());
    ASSERT_TRUE(s->handshaking())
        << "decided before the Confirm came: "
        << wire::FormatReason(s->status().engine.local_reason);
  }
  ASSERT_TRUE(s->handshaking());
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  while (s->handshaking()) {
    ASSERT_TRUE(s->Progress(0).ok()) << "aborted";
    ::poll(nullptr, 0, 1);
  }
  EXPECT_TRUE(s->is_smc()) << wire::FormatReason(
      s->status().engine.local_reason);
  EXPECT_EQ(s->Close(), 0);
  EXPECT_EQ(WaitChild(child), 0);
  ::close(attached[0]);
  ::close(go[1]);
}

TEST(SmcSocketEventTest, BlockingCallFinishesTheHandshakeFirst) {
  pid_t child;
  int fd = ForkClient(
      [](int fd) {
        auto s = SmcSocket::Upgrade(fd, Client());
        if (!s.ok() || !(*s)->is_smc()) return 1;
        if ((*s)->Send("hello", 5, 0) != 5) return 2;
        char c;
        return (*s)->Recv(&c, 1, 0) == 0 ? 0 : 3;  // waits for our close
      },
      &child);
  auto s = MustStart(fd, Server());  // blocking fd
  ASSERT_TRUE(s);
  char buf[5];
  ASSERT_EQ(s->Recv(buf, 5, MSG_WAITALL), 5);
  EXPECT_EQ(std::string(buf, 5), "hello");
  EXPECT_TRUE(s->is_smc());
  EXPECT_FALSE(s->handshaking());
  EXPECT_EQ(s->Close(), 0);
  EXPECT_EQ(WaitChild(child), 0);
}

TEST(SmcSocketEventTest, ShutdownDuringTheHandshakeAppliesAtTheDecision) {
  pid_t child;
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  int fd = ForkClient(
      [&](int fd) {
        char c;
        if (::read(go[0], &c, 1) != 1) return 1;
        auto s = SmcSocket::Upgrade(fd, Client());
        if (!s.ok() || !(*s)->is_smc()) return 2;
        // The server shut its write side before SMC-D was up: EOF now.
        if ((*s)->Recv(&c, 1, 0) != 0) return 3;
        return (*s)->Send("still", 5, 0) == 5 ? 0 : 4;
      },
      &child);
  SetNonblockingFd(fd);
  auto s = MustStart(fd, Server());
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->handshaking());
  EXPECT_EQ(s->Shutdown(SHUT_WR), 0);  // recorded, not yet applied
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ASSERT_TRUE(LoopUntilDecided(*s));
  ASSERT_TRUE(s->is_smc());
  char buf[5];
  // POLLHUP too once the client has closed (both directions over, as TCP).
  ASSERT_TRUE(LoopWait(*s, POLLIN) & POLLIN);
  ASSERT_EQ(s->Recv(buf, 5, 0), 5);
  EXPECT_EQ(std::string(buf, 5), "still");
  EXPECT_EQ(WaitChild(child), 0);
  ::close(go[0]);
  ::close(go[1]);
}

// A peer that echoed the TCP option but never speaks: the server must not
// stall, must withhold readiness until the CLC timeout, then be plain TCP
// with every later byte of the peer intact.
TEST(SmcSocketEventTest, SilentPeerDoesNotBlockAndEndsOnTcpIntact) {
  const auto [cfd, sfd] = ConnectedLoopbackPair();
  SetNonblockingFd(sfd);
  Options o = Server();
  o.clc_timeout = std::chrono::milliseconds(300);
  auto s = MustStart(sfd, o);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->handshaking());  // returned before the CLC timeout
  // The TCP socket is writable, yet the app hears nothing until decided.
  EXPECT_EQ(s->Poll(POLLIN | POLLOUT), 0);
  char buf[16];
  EXPECT_EQ(s->Recv(buf, sizeof buf, 0), -1);
  EXPECT_EQ(errno, EAGAIN);
  SmcSocket::WaitSpec w = s->PrepareWait(POLLIN);
  EXPECT_EQ(w.ready, 0);
  ASSERT_GE(w.n, 1);
  EXPECT_EQ(w.fds[0].fd, sfd);
  EXPECT_GE(w.timeout_ms, 0);  // the CLC deadline bounds the sleep
  EXPECT_LE(w.timeout_ms, 300);
  ASSERT_TRUE(LoopUntilDecided(*s));
  EXPECT_EQ(s->mode(), engine::Mode::kTcp);
  EXPECT_EQ(s->status().engine.local_reason, wire::kReasonTimeoutCl);
  EXPECT_TRUE(s->Poll(POLLOUT) & POLLOUT);
  // The peer finds our Decline (a CLC header: eyecatcher, type 4) first.
  char decl[8];
  ASSERT_EQ(::recv(cfd, decl, 5, MSG_WAITALL), 5);
  EXPECT_EQ(static_cast<uint8_t>(decl[0]), 0xE2);
  EXPECT_EQ(decl[4], 4);
  const std::string late = "late plain bytes";
  ASSERT_EQ(::send(cfd, late.data(), late.size(), 0),
            static_cast<ssize_t>(late.size()));
  std::string got;
  while (got.size() < late.size()) {
    ASSERT_NE(LoopWait(*s, POLLIN) & POLLIN, 0);
    ssize_t n = s->Recv(buf, sizeof buf, 0);
    ASSERT_GT(n, 0);
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(got, late);
  ::close(cfd);
}

TEST(SmcSocketEventTest, ClientWithSilentServerTimesOutToTcp) {
  const auto [cfd, sfd] = ConnectedLoopbackPair();
  SetNonblockingFd(cfd);
  Options o = Client();
  o.clc_timeout = std::chrono::milliseconds(200);
  auto s = MustStart(cfd, o);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->handshaking());
  ASSERT_TRUE(LoopUntilDecided(*s));
  EXPECT_EQ(s->mode(), engine::Mode::kTcp);
  EXPECT_EQ(s->status().engine.local_reason, wire::kReasonTimeoutCl);
  ASSERT_EQ(::send(sfd, "reply", 5, 0), 5);
  char buf[5];
  ASSERT_NE(LoopWait(*s, POLLIN) & POLLIN, 0);
  ASSERT_EQ(s->Recv(buf, 5, MSG_WAITALL), 5);
  EXPECT_EQ(std::string(buf, 5), "reply");
  ::close(sfd);
}

TEST(SmcSocketEventTest, EventLoopPingPongAnd64MibEachWay) {
  constexpr int kRounds = 5000;
  constexpr uint64_t kTotal = uint64_t{64} << 20;
  pid_t child;
  int fd = ForkClient(
      [&](int fd) {
        SetNonblockingFd(fd);
        auto s = MustStart(fd, Client());
        if (!s || !LoopUntilDecided(*s) || !s->is_smc()) return 1;
        if (int rc = LoopPingPong(*s, kRounds, 3000, /*client=*/true))
          return rc;
        if (int rc = LoopExchange(*s, kTotal, 1, 2, 3)) return rc;
        return s->Close() == 0 ? 0 : 30;
      },
      &child);
  SetNonblockingFd(fd);
  auto s = MustStart(fd, Server());
  ASSERT_TRUE(s);
  // The first waits also drive the handshake (no explicit Progress).
  EXPECT_EQ(LoopPingPong(*s, kRounds, 3000, /*client=*/false), 0);
  ASSERT_TRUE(s->is_smc());
  EXPECT_EQ(LoopExchange(*s, kTotal, 2, 1, 4), 0);
  // The client closed after its last byte: EOF through the loop too.
  ASSERT_NE(LoopWait(*s, POLLIN) & POLLIN, 0);
  char c;
  EXPECT_EQ(s->Recv(&c, 1, 0), 0);
  EXPECT_EQ(WaitChild(child), 0);
  SocketStatus st = s->status();
  EXPECT_GT(st.doorbell.sleeps, 0u);  // the loop really slept on the bell
  EXPECT_EQ(s->Close(), 0);
}

// Lost-wakeup hammer. The waiter sends one byte, spins a random short
// while, then waits for the answer through PrepareWait/poll(2); the peer
// busy-polls and answers at once, so its publish lands all over the
// waiter's check -> arm -> sleep window. A publish lost in that window
// stalls the round and trips the watchdog.
TEST(SmcSocketEventTest, PrepareWaitNeverSleepsThroughAPublish) {
  constexpr int kRounds = 100000;
  pid_t child;
  int fd = ForkClient(
      [&](int fd) {
        SetNonblockingFd(fd);
        auto s = MustStart(fd, Client());
        if (!s || !LoopUntilDecided(*s) || !s->is_smc()) return 1;
        for (int i = 0; i < kRounds; ++i) {
          char c;
          ssize_t n;
          while ((n = s->Recv(&c, 1, 0)) == -1 && errno == EAGAIN) {
          }
          if (n != 1 || c != static_cast<char>(i)) return 2;
          if (s->Send(&c, 1, 0) != 1) return 3;
        }
        return 0;
      },
      &child);
  SetNonblockingFd(fd);
  auto s = MustStart(fd, Server());
  ASSERT_TRUE(s && LoopUntilDecided(*s) && s->is_smc());
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> spin(0, 64);
  for (int i = 0; i < kRounds; ++i) {
    const char c = static_cast<char>(i);
    ASSERT_EQ(s->Send(&c, 1, 0), 1);
    for (int k = spin(rng); k > 0; --k) dev::CpuRelax();
    char got;
    ssize_t n;
    while ((n = s->Recv(&got, 1, 0)) == -1 && errno == EAGAIN) {
      ASSERT_NE(LoopWait(*s, POLLIN), 0) << "lost wakeup in round " << i;
    }
    ASSERT_EQ(n, 1);
    ASSERT_EQ(got, c);
  }
  EXPECT_EQ(WaitChild(child), 0);
  SocketStatus st = s->status();
  EXPECT_GT(st.doorbell.sleeps, 0u);  // it did arm and sleep
}

// Both ends sleep through the hooks for every message (no spinning at all).
TEST(SmcSocketEventTest, OneBytePingPongSleepingEveryTime) {
  constexpr int kRounds = 50000;
  pid_t child;
  int fd = ForkClient(
      [&](int fd) {
        SetNonblockingFd(fd);
        auto s = MustStart(fd, Client());
        if (!s || !LoopUntilDecided(*s) || !s->is_smc()) return 1;
        return LoopPingPong(*s, kRounds, 1, /*client=*/true);
      },
      &child);
  SetNonblockingFd(fd);
  auto s = MustStart(fd, Server());
  ASSERT_TRUE(s && LoopUntilDecided(*s) && s->is_smc());
  EXPECT_EQ(LoopPingPong(*s, kRounds, 1, /*client=*/false), 0);
  EXPECT_EQ(WaitChild(child), 0);
  EXPECT_GT(s->status().doorbell.sleeps, 0u);
}

TEST(SmcSocketEventTest, RcvLowatOnSmcd) {
  int to_child[2], to_parent[2];
  ASSERT_EQ(::pipe(to_child), 0);
  ASSERT_EQ(::pipe(to_parent), 0);
  auto sync = [](int rd, int wr) {
    char c = 's';
    return ::write(wr, &c, 1) == 1 && ::read(rd, &c, 1) == 1;
  };
  pid_t child;
  int fd = ForkClient(
      [&](int fd) {
        auto s = SmcSocket::Upgrade(fd, Client());
        if (!s.ok() || !(*s)->is_smc()) return 1;
        std::string a(50, 'a'), b(30, 'b'), c(40, 'c');
        if ((*s)->Send(a.data(), a.size(), 0) != 50) return 2;
        if (!sync(to_child[0], to_parent[1])) return 3;  // 50 there
        if ((*s)->Send(b.data(), b.size(), 0) != 30) return 4;
        if (!sync(to_child[0], to_parent[1])) return 5;  // 80 there
        if ((*s)->Send(c.data(), c.size(), 0) != 40) return 6;
        if (!sync(to_child[0], to_parent[1])) return 7;  // parent read
        return (*s)->Close();
      },
      &child);
  auto s = SmcSocket::Upgrade(fd, Server());
  ASSERT_TRUE(s.ok() && (*s)->is_smc());
  SmcSocket& sock = **s;
  sock.SetRcvLowat(100);
  char c;
  ASSERT_EQ(::read(to_parent[0], &c, 1), 1);
  EXPECT_EQ(sock.Readable(), 50);
  EXPECT_EQ(sock.Poll(POLLIN), 0);  // below the mark
  SmcSocket::WaitSpec w = sock.PrepareWait(POLLIN);
  EXPECT_EQ(w.ready, 0);
  EXPECT_EQ(w.n, 2);  // would sleep
  sock.AfterWait(w);
  std::vector<char> buf(1000);
  ASSERT_EQ(sock.Recv(buf.data(), 20, 0), 20);  // len < lowat: at once
  ASSERT_EQ(::write(to_child[1], "g", 1), 1);
  ASSERT_EQ(::read(to_parent[0], &c, 1), 1);
  EXPECT_EQ(sock.Readable(), 60);
  EXPECT_EQ(sock.Poll(POLLIN), 0);
  ASSERT_EQ(::write(to_child[1], "g", 1), 1);
  // Blocking recv: returns once 100 bytes came (the last 40 are on the way).
  ssize_t n = sock.Recv(buf.data(), buf.size(), 0);
  ASSERT_EQ(n, 100);
  EXPECT_EQ(std::string(buf.data(), 30), std::string(30, 'a'));
  EXPECT_EQ(std::string(buf.data() + 30, 30), std::string(30, 'b'));
  EXPECT_EQ(std::string(buf.data() + 60, 40), std::string(40, 'c'));
  ASSERT_EQ(::read(to_parent[0], &c, 1), 1);
  ASSERT_EQ(::write(to_child[1], "g", 1), 1);
  // EOF reports POLLIN whatever the mark.
  EXPECT_NE(sock.Wait(POLLIN, kWatchdogMs) & POLLIN, 0);
  EXPECT_EQ(sock.Recv(buf.data(), buf.size(), 0), 0);
  EXPECT_EQ(WaitChild(child), 0);
  for (int p : {to_child[0], to_child[1], to_parent[0], to_parent[1]})
    ::close(p);
}

int TcpLowat(int fd) {
  int v = -1;
  socklen_t len = sizeof v;
  ::getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, &len);
  return v;
}

TEST(SmcSocketEventTest, RcvLowatOfTheAppSurvivesTheHandshake) {
  const auto [cfd, sfd] = ConnectedLoopbackPair();
  int seven = 7;
  ASSERT_EQ(::setsockopt(sfd, SOL_SOCKET, SO_RCVLOWAT, &seven, sizeof seven),
            0);
  SetNonblockingFd(sfd);
  Options o = Server();
  o.clc_timeout = std::chrono::milliseconds(200);
  auto s = MustStart(sfd, o);
  ASSERT_TRUE(s && s->handshaking());
  EXPECT_EQ(TcpLowat(sfd), 1);  // CLC needs every byte while undecided
  // The app changes it meanwhile (the interposer sets it and tells us).
  int nine = 9;
  ASSERT_EQ(::setsockopt(sfd, SOL_SOCKET, SO_RCVLOWAT, &nine, sizeof nine), 0);
  s->SetRcvLowat(9);
  EXPECT_EQ(TcpLowat(sfd), 1);
  ASSERT_TRUE(LoopUntilDecided(*s));
  EXPECT_EQ(s->mode(), engine::Mode::kTcp);
  EXPECT_EQ(TcpLowat(sfd), 9);
  ::close(cfd);
}

TEST(SmcSocketEventTest, ForgetInAForkedChildLeavesTheParentsConnection) {
  constexpr uint64_t kTotal = uint64_t{4} << 20;
  pid_t client;
  int fd = ForkClient(
      [&](int fd) {
        auto s = SmcSocket::Upgrade(fd, Client());
        if (!s.ok() || !(*s)->is_smc()) return 1;
        uint32_t* refs = (*s)->ProcessRefs();
        if (refs == nullptr || std::atomic_ref<uint32_t>(*refs).load() != 1)
          return 2;
        // Everything the server sends, then EOF (after its child forgot).
        Stream expect(5);
        std::vector<std::byte> buf(64 * 1024), want(64 * 1024);
        uint64_t got = 0;
        for (;;) {
          ssize_t n = (*s)->Recv(buf.data(), buf.size(), 0);
          if (n < 0) return 3;
          if (n == 0) break;
          expect.Fill(want.data(), static_cast<size_t>(n));
          if (std::memcmp(buf.data(), want.data(), static_cast<size_t>(n)))
            return 4;
          got += static_cast<uint64_t>(n);
        }
        if (got != kTotal) return 5;
        return (*s)->Close();
      },
      &client);
  auto s = SmcSocket::Upgrade(fd, Server());
  ASSERT_TRUE(s.ok() && (*s)->is_smc());
  uint32_t* refs = (*s)->ProcessRefs();
  ASSERT_NE(refs, nullptr);
  EXPECT_EQ(std::atomic_ref<uint32_t>(*refs).load(), 1u);
  std::atomic_ref<uint32_t>(*refs).fetch_add(1);  // as the interposer does
  // The child sends the first part of the stream, then forgets; the parent
  // carries on from where the child left (the peer sees one stream).
  constexpr uint64_t kChildPart = uint64_t{1} << 20;
  std::vector<std::byte> buf(64 * 1024);
  pid_t forgetter = ::fork();
  if (forgetter == 0) {
    Stream part(5);
    for (uint64_t sent = 0; sent < kChildPart; sent += buf.size()) {
      part.Fill(buf.data(), buf.size());
      if ((*s)->Send(buf.data(), buf.size(), 0) !=
          static_cast<ssize_t>(buf.size())) {
        ::_exit(9);
      }
    }
    (*s)->Forget();
    int rc = 0;
    if ((*s)->mode() != engine::Mode::kSmc) rc = 1;
    if ((*s)->ProcessRefs() != nullptr) rc = 2;
    if ((*s)->Send("x", 1, MSG_NOSIGNAL) != -1 || errno != EBADF) rc = 3;
    if ((*s)->Poll(POLLIN) != POLLNVAL) rc = 4;
    if (CountMemfds() != 0) rc = 5;  // nothing of the DMBs left here
    s->reset();                      // no close protocol either
    ::_exit(rc);
  }
  ASSERT_EQ(WaitChild(forgetter), 0);
  EXPECT_EQ(std::atomic_ref<uint32_t>(*refs).fetch_sub(1), 2u);
  // The parent's connection goes on: it sends the rest and closes.
  Stream out(5);
  for (uint64_t skip = 0; skip < kChildPart; skip += buf.size()) {
    out.Fill(buf.data(), buf.size());
  }
  for (uint64_t sent = kChildPart; sent < kTotal; sent += buf.size()) {
    out.Fill(buf.data(), buf.size());
    ASSERT_EQ((*s)->Send(buf.data(), buf.size(), 0),
              static_cast<ssize_t>(buf.size()));
  }
  EXPECT_EQ((*s)->Close(), 0);
  EXPECT_EQ(WaitChild(client), 0);
}

int CountArenaMappings() {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);) {
    n += line.find("usmc-arena") != std::string::npos;
  }
  return n;
}

// Arena mode: the server's end is held by two processes (fork). The one
// that forgets first must leave the client's slot unreleased (the other
// still writes CDCs into it; a released slot may carry another connection
// next); the last holder's close releases it.
TEST(SmcSocketEventTest, ArenaSlotIsReleasedOnlyByTheLastHolder) {
  (void)ProcessConfig();  // it sets the switch from the environment once
  dev::SetShmArenas(true);
  int sync[2], ack[2];
  ASSERT_EQ(::pipe(sync), 0);
  ASSERT_EQ(::pipe(ack), 0);
  pid_t client;
  int fd = ForkClient(
      [&](int fd) {
        ::close(sync[1]);
        ::close(ack[0]);
        auto s = SmcSocket::Upgrade(fd, Client());
        if (!s.ok() || !(*s)->is_smc()) return 1;
        uint32_t* refs = (*s)->ProcessRefs();
        if (refs == nullptr) return 2;
        if (CountArenaMappings() == 0) return 8;  // not in an arena
        // Our slot's control page: the word the server side stores on
        // detach.
        std::atomic_ref<uint64_t> released(*reinterpret_cast<uint64_t*>(
            reinterpret_cast<std::byte*>(refs) - dev::kCtrlProcessRefsOff +
            dev::kCtrlPeerReleasedOff));
        char c;
        if (::read(sync[0], &c, 1) != 1 || c != 'f') return 3;
        if (released.load() != 0) return 4;  // the parent still holds it
        if (::write(ack[1], "k", 1) != 1) return 9;  // now it may close
        if (::read(sync[0], &c, 1) != 1 || c != 'c') return 5;
        if (released.load() != 1) return 6;  // the last holder closed
        char b;
        if ((*s)->Recv(&b, 1, 0) != 0) return 7;
        return (*s)->Close();
      },
      &client);
  ::close(sync[0]);
  ::close(ack[1]);
  auto s = SmcSocket::Upgrade(fd, Server());
  ASSERT_TRUE(s.ok() && (*s)->is_smc());
  uint32_t* refs = (*s)->ProcessRefs();
  ASSERT_NE(refs, nullptr);
  std::atomic_ref<uint32_t>(*refs).fetch_add(1);  // as the interposer does
  pid_t forgetter = ::fork();
  if (forgetter == 0) {
    (*s)->Forget();
    s->reset();
    ::_exit(0);
  }
  ASSERT_EQ(WaitChild(forgetter), 0);
  std::atomic_ref<uint32_t>(*refs).fetch_sub(1);
  ASSERT_EQ(::write(sync[1], "f", 1), 1);
  char k;
  ASSERT_EQ(::read(ack[0], &k, 1), 1);  // the client looked
  ::close(ack[0]);
  EXPECT_EQ((*s)->Close(), 0);
  ASSERT_EQ(::write(sync[1], "c", 1), 1);
  ::close(sync[1]);
  EXPECT_EQ(WaitChild(client), 0);
  dev::SetShmArenas(ProcessConfig().shm_arena);
}

TEST(SmcSocketEventTest, ProcessRefsIsNullInTcpMode) {
  pid_t child;
  int fd = ForkClient(
      [](int fd) {
        auto s = SmcSocket::Upgrade(fd, Client());
        return s.ok() && !(*s)->is_smc() && (*s)->ProcessRefs() == nullptr ? 0
                                                                           : 1;
      },
      &child);
  Options o = Server();
  o.smcd_enabled = false;
  auto s = SmcSocket::Upgrade(fd, o);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE((*s)->is_smc());
  EXPECT_EQ((*s)->ProcessRefs(), nullptr);
  EXPECT_EQ(WaitChild(child), 0);
}

}  // namespace
}  // namespace usmc::runtime
