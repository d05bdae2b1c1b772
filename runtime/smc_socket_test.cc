// Multi-process tests of the runtime: a forked client and the parent server
// hold the two ends of a real TCP loopback connection and upgrade it.
#include "runtime/smc_socket.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dev/shm_dmb.h"
#include "runtime/smc_socket_test_util.h"
#include "wire/reason.h"

namespace usmc::runtime {
namespace {

using testing::Client;
using testing::ConnectedLoopbackPair;
using testing::ConnectLoopback;
using testing::CountMemfds;
using testing::ForkClient;
using testing::ListenLoopback;
using testing::Server;
using testing::Stream;
using testing::WaitChild;

std::unique_ptr<SmcSocket> MustUpgrade(int fd, const Options& o) {
  auto s = SmcSocket::Upgrade(fd, o);
  if (!s.ok()) return nullptr;
  return std::move(*s);
}

// Sends `total` bytes of stream `send_seed` and receives `total` bytes of
// stream `recv_seed` at the same time, in random-sized chunks, on one
// thread with non-blocking calls and Wait (as an event loop does).
// Returns 0 if every received byte matched.
int Exchange(SmcSocket& s, uint64_t total, uint64_t send_seed,
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
      if (s.Wait(ev, 10000) == 0) return 13;
    }
  }
  return 0;
}

TEST(SmcSocketTest, HandshakeReachesSmcdAndMovesBytes) {
  pid_t child;
  int fd = ForkClient(
      [](int fd) {
        auto s = MustUpgrade(fd, Client());
        if (!s || !s->is_smc()) return 1;
        const char msg[] = "hello over SMC-D";
        if (s->Send(msg, sizeof msg, 0) != sizeof msg) return 2;
        char reply[8] = {};
        if (s->Recv(reply, 3, MSG_WAITALL) != 3) return 3;
        if (std::string(reply, 3) != "ack") return 4;
        return s->Close() == 0 ? 0 : 5;
      },
      &child);
  auto s = MustUpgrade(fd, Server());
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->is_smc()) << wire::FormatReason(
      s->status().engine.local_reason);
  EXPECT_EQ(s->status().engine.local_reason, 0u);
  char buf[64] = {};
  ASSERT_EQ(s->Recv(buf, 17, MSG_WAITALL), 17);
  EXPECT_STREQ(buf, "hello over SMC-D");
  ASSERT_EQ(s->Send("ack", 3, 0), 3);
  EXPECT_EQ(s->Recv(buf, sizeof buf, 0), 0);  // client closed: EOF
  EXPECT_EQ(WaitChild(child), 0);
  EXPECT_EQ(s->Close(), 0);
  EXPECT_EQ(CountMemfds(), 0);
}

// A roomy DMB while the process's DMBs stay within the roomy budget, the
// ordinary size after; the peer learns whichever was registered.
TEST(SmcSocketTest, RoomyDmbOnlyWithinItsBudget) {
  Options server = Server();
  server.dmb_size = 64 * 1024;
  server.roomy_dmb_size = 1024 * 1024;
  server.roomy_budget = 4 << 20;
  auto run = [&](uint32_t want) {
    pid_t child;
    int fd = ForkClient(
        [want](int fd) {
          auto s = MustUpgrade(fd, Client());
          if (!s || !s->is_smc()) return 1;
          if (s->status().engine.peer_dmb_size != want) return 2;
          return s->Close() == 0 ? 0 : 3;
        },
        &child);
    auto s = MustUpgrade(fd, server);
    ASSERT_TRUE(s && s->is_smc());
    EXPECT_EQ(s->status().engine.local_dmb_size, want);
    EXPECT_EQ(WaitChild(child), 0);
    EXPECT_EQ(s->Close(), 0);
  };
  run(1024 * 1024);
  // Four megabytes of DMBs held already: no room for a roomy one.
  std::vector<dev::LocalDmb> held;
  for (int i = 0; i < 4; ++i) {
    Result<dev::LocalDmb> d = dev::LocalDmb::Register(1024 * 1024);
    ASSERT_TRUE(d.ok()) << d.status();
    held.push_back(std::move(*d));
  }
  run(64 * 1024);
  held.clear();
  run(1024 * 1024);
}

// Memory that follows use: a process that holds 128 MiB of DMBs already
// offers SMC-D's smallest DMB to its next connection (dmb_follows_held),
// and what it asked for without the option.
TEST(SmcSocketTest, SmallDmbOnceManyAreHeld) {
  auto run = [&](bool follows, uint32_t want) {
    Options server = Server();
    server.dmb_size = 256 * 1024;
    server.dmb_follows_held = follows;
    pid_t child;
    int fd = ForkClient(
        [want](int fd) {
          auto s = MustUpgrade(fd, Client());
          if (!s || !s->is_smc()) return 1;
          if (s->status().engine.peer_dmb_size != want) return 2;
          return s->Close() == 0 ? 0 : 3;
        },
        &child);
    auto s = MustUpgrade(fd, server);
    ASSERT_TRUE(s && s->is_smc());
    EXPECT_EQ(s->status().engine.local_dmb_size, want);
    EXPECT_EQ(WaitChild(child), 0);
    EXPECT_EQ(s->Close(), 0);
  };
  run(true, 256 * 1024);
  std::vector<dev::LocalDmb> held;
  for (int i = 0; i < 128; ++i) {
    Result<dev::LocalDmb> d = dev::LocalDmb::Register(1024 * 1024);
    ASSERT_TRUE(d.ok()) << d.status();
    held.push_back(std::move(*d));
  }
  run(true, 16 * 1024);
  run(false, 256 * 1024);
}

// A large recv frees the ring in steps: a sender blocked on a full ring
// gets a consumer update after each step (and can refill it while the rest
// is copied), not one after the whole copy.
TEST(SmcSocketTest, LargeRecvReportsConsumptionInSteps) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child;
  int fd = ForkClient(
      [&](int fd) {
        auto s = MustUpgrade(fd, Client());
        if (!s || !s->is_smc()) return 1;
        std::vector<std::byte> data(1 << 20);
        Stream(5).Fill(data.data(), data.size());
        // Fills the ring and leaves the writer-blocked flag up.
        ssize_t n = s->Send(data.data(), data.size(), MSG_DONTWAIT);
        if (n <= 0 || static_cast<size_t>(n) == data.size()) return 2;
        if (::write(ready[1], &n, sizeof n) != sizeof n) return 3;
        char c;
        return s->Recv(&c, 1, 0) == 0 ? 0 : 4;  // waits for our close
      },
      &child);
  auto s = MustUpgrade(fd, Server());
  ASSERT_TRUE(s && s->is_smc());
  ssize_t n = 0;
  ASSERT_EQ(::read(ready[0], &n, sizeof n), static_cast<ssize_t>(sizeof n));
  const uint64_t before = s->status().engine.counters.consumer_updates;
  std::vector<std::byte> got(static_cast<size_t>(n)), want(got.size());
  ASSERT_EQ(s->Recv(got.data(), got.size(), MSG_WAITALL), n);
  Stream(5).Fill(want.data(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0);
  // A ring of almost 256 KiB read in 64 KiB steps: an update per step.
  EXPECT_GE(s->status().engine.counters.consumer_updates - before, 3u);
  EXPECT_EQ(s->Close(), 0);
  EXPECT_EQ(WaitChild(child), 0);
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST(SmcSocketTest, OneGibEachWayAtOnceInRandomChunks) {
  const uint64_t total = uint64_t{1} << 30;
  pid_t child;
  int fd = ForkClient(
      [&](int fd) {
        auto s = MustUpgrade(fd, Client());
        if (!s || !s->is_smc()) return 1;
        int rc = Exchange(*s, total, /*send=*/1, /*recv=*/2, /*chunks=*/3);
        s->Close();
        return rc;
      },
      &child);
  auto s = MustUpgrade(fd, Server());
  ASSERT_TRUE(s && s->is_smc());
  EXPECT_EQ(Exchange(*s, total, /*send=*/2, /*recv=*/1, /*chunks=*/4), 0);
  SocketStatus st = s->status();
  EXPECT_EQ(st.engine.counters.bytes_sent, total);
  EXPECT_EQ(st.engine.counters.bytes_received, total);
  EXPECT_EQ(WaitChild(child), 0);
}

TEST(SmcSocketTest, SmallMessagePingPong) {
  constexpr int kRounds = 20000;
  pid_t child;
  int fd = ForkClient(
      [](int fd) {
        auto s = MustUpgrade(fd, Client());
        if (!s || !s->is_smc()) return 1;
        char buf[64];
        for (int i = 0; i < kRounds; ++i) {
          std::memset(buf, 'a' + i % 26, sizeof buf);
          if (s->Send(buf, sizeof buf, 0) != sizeof buf) return 2;
          char back[64];
          if (s->Recv(back, sizeof back, MSG_WAITALL) != sizeof back) return 3;
          for (char c : back)
            if (c != 'A' + i % 26) return 4;
        }
        return 0;
      },
      &child);
  auto s = MustUpgrade(fd, Server());
  ASSERT_TRUE(s && s->is_smc());
  for (int i = 0; i < kRounds; ++i) {
    char buf[64];
    ASSERT_EQ(s->Recv(buf, sizeof buf, MSG_WAITALL), 64);
    for (char& c : buf) c = static_cast<char>(c - 'a' + 'A');
    ASSERT_EQ(s->Send(buf, sizeof buf, 0), 64);
  }
  EXPECT_EQ(WaitChild(child), 0);
}

// shutdown(SHUT_WR) on one side: the other reads everything, then EOF, and
// can still send back.
void HalfClose(bool client_shuts) {
  pid_t child;
  auto half = [](SmcSocket& s) {
    if (s.Send("request", 7, 0) != 7) return 2;
    if (s.Shutdown(SHUT_WR) != 0) return 3;
    if (s.Send("x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE) return 4;
    char buf[16] = {};
    if (s.Recv(buf, 8, MSG_WAITALL) != 8) return 5;
    if (std::string(buf, 8) != "response") return 6;
    if (s.Recv(buf, sizeof buf, 0) != 0) return 7;  // peer closed
    return 0;
  };
  auto other = [](SmcSocket& s) {
    char buf[16] = {};
    if (s.Recv(buf, sizeof buf, MSG_WAITALL) != 7) return 12;  // short: EOF
    if (std::string(buf, 7) != "request") return 13;
    if (s.Recv(buf, sizeof buf, 0) != 0) return 14;
    if (!(s.Poll(POLLIN | POLLRDHUP) & POLLRDHUP)) return 15;
    if (s.Send("response", 8, 0) != 8) return 16;
    return s.Close();
  };
  int fd = ForkClient(
      [&](int fd) {
        auto s = MustUpgrade(fd, Client());
        if (!s || !s->is_smc()) return 1;
        return client_shuts ? half(*s) : other(*s);
      },
      &child);
  auto s = MustUpgrade(fd, Server());
  ASSERT_TRUE(s && s->is_smc());
  EXPECT_EQ(client_shuts ? other(*s) : half(*s), 0);
  EXPECT_EQ(WaitChild(child), 0);
}

TEST(SmcSocketTest, HalfCloseClientToServer) { HalfClose(true); }
TEST(SmcSocketTest, HalfCloseServerToClient) { HalfClose(false); }

TEST(SmcSocketTest, CloseWithUnreadDataResetsPeer) {
  pid_t child;
  int fd = ForkClient(
      [](int fd) {
        auto s = MustUpgrade(fd, Client());
        if (!s || !s->is_smc()) return 1;
        // Wait until the data is there, then close without reading it.
        if (!(s->Wait(POLLIN, 10000) & POLLIN)) return 2;
        return s->Close();
      },
      &child);
  auto s = MustUpgrade(fd, Server());
  ASSERT_TRUE(s && s->is_smc());
  ASSERT_EQ(s->Send("unread", 6, 0), 6);
  EXPECT_EQ(WaitChild(child), 0);
  // As TCP after an RST: POLLERR and POLLHUP, the error once, then EPIPE
  // for sends and EOF for recvs.
  EXPECT_EQ(s->Poll(POLLIN | POLLOUT), POLLIN | POLLOUT | POLLERR | POLLHUP);
  char buf[8];
  EXPECT_EQ(s->Recv(buf, sizeof buf, 0), -1);
  EXPECT_EQ(errno, ECONNRESET);
  EXPECT_EQ(s->Poll(POLLIN | POLLOUT), POLLIN | POLLOUT | POLLHUP);
  EXPECT_EQ(s->Send("more", 4, MSG_NOSIGNAL), -1);
  EXPECT_EQ(errno, EPIPE);
  EXPECT_EQ(s->Recv(buf, sizeof buf, 0), 0);
}

TEST(SmcSocketTest, PeerKilledMidTransferEndsWithoutHangOrLeak) {
  pid_t child;
  int fd = ForkClient(
      [](int fd) {
        auto s = MustUpgrade(fd, Client());
        if (!s || !s->is_smc()) return 1;
        std::vector<std::byte> buf(64 * 1024, std::byte{7});
        for (;;) s->Send(buf.data(), buf.size(), 0);
      },
      &child);
  {
    auto s = MustUpgrade(fd, Server());
    ASSERT_TRUE(s && s->is_smc());
    std::vector<std::byte> buf(64 * 1024);
    ASSERT_EQ(s->Recv(buf.data(), buf.size(), MSG_WAITALL), 65536);
    ::kill(child, SIGKILL);
    EXPECT_EQ(WaitChild(child), 128 + SIGKILL);
    ssize_t n;
    uint64_t drained = 0;
    while ((n = s->Recv(buf.data(), buf.size(), 0)) > 0) drained += n;
    // We read what it sent and it had read nothing of ours: a plain EOF,
    // as a TCP peer's death gives.
    EXPECT_EQ(n, 0) << "errno " << errno << " after " << drained << " bytes";
    s->Close();
  }
  EXPECT_EQ(CountMemfds(), 0);
}

TEST(SmcSocketTest, PeerKilledWithOurDataUnreadGivesReset) {
  pid_t child;
  int fd = ForkClient(
      [](int fd) {
        auto s = MustUpgrade(fd, Client());
        if (!s || !s->is_smc()) return 1;
        ::pause();  // never reads
        return 0;
      },
      &child);
  auto s = MustUpgrade(fd, Server());
  ASSERT_TRUE(s && s->is_smc());
  ASSERT_EQ(s->Send("never read", 10, 0), 10);
  ::kill(child, SIGKILL);
  EXPECT_EQ(WaitChild(child), 128 + SIGKILL);
  char buf[16];
  EXPECT_EQ(s->Recv(buf, sizeof buf, 0), -1);
  EXPECT_EQ(errno, ECONNRESET);
  s->Close();
  EXPECT_EQ(CountMemfds(), 0);
}

TEST(SmcSocketTest, ServerDeclinesBothStayOnTcpWithoutLosingBytes) {
  pid_t child;
  int fd = ForkClient(
      [](int fd) {
        auto s = MustUpgrade(fd, Client());
        if (!s || s->is_smc()) return 1;
        SocketStatus st = s->status();
        if (st.engine.local_reason != wire::kReasonPeerDecl) return 2;
        if (st.engine.peer_reason == 0) return 3;
        if (s->Send("over tcp", 8, 0) != 8) return 4;
        char buf[8];
        if (s->Recv(buf, 5, MSG_WAITALL) != 5 || std::memcmp(buf, "reply", 5))
          return 5;
        return 0;
      },
      &child);
  Options o = Server();
  o.smcd_enabled = false;
  auto s = MustUpgrade(fd, o);
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->is_smc());
  EXPECT_NE(s->status().engine.local_reason, 0u);
  char buf[8];
  ASSERT_EQ(s->Recv(buf, 8, MSG_WAITALL), 8);
  EXPECT_EQ(std::string(buf, 8), "over tcp");
  ASSERT_EQ(s->Send("reply", 5, 0), 5);
  EXPECT_EQ(WaitChild(child), 0);
}

// Client and server under different uids: the handover rests on the
// tokens in the TCP stream, not on the uid, so this is SMC-D. Before, the
// server declined any peer of another uid (and the handover read the
// peer's /proc fd table, which another uid may not).
TEST(SmcSocketTest, PeerOfAnotherUserUsesSmcd) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch the client's uid";
  int port = 0;
  int lfd = ListenLoopback(&port);
  pid_t child = ::fork();
  if (child == 0) {
    ::close(lfd);
    if (::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(1);  // nobody
    }
    int fd = ConnectLoopback(port);
    auto s = MustUpgrade(fd, Client());
    if (!s || !s->is_smc()) ::_exit(2);
    if (s->Send("smc", 3, 0) != 3) ::_exit(3);
    char b[2];
    ::_exit(s->Recv(b, 2, MSG_WAITALL) == 2 && b[0] == 'o' ? 0 : 4);
  }
  int fd = ::accept(lfd, nullptr, nullptr);
  ::close(lfd);
  auto s = MustUpgrade(fd, Server());
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->is_smc());
  EXPECT_EQ(s->status().engine.local_reason, 0u);
  char buf[3];
  ASSERT_EQ(s->Recv(buf, 3, MSG_WAITALL), 3);
  EXPECT_EQ(std::string(buf, 3), "smc");
  ASSERT_EQ(s->Send("ok", 2, 0), 2);
  EXPECT_EQ(WaitChild(child), 0);
}

TEST(SmcSocketTest, PrivilegeDroppedClientUsesSmcd) {
  // The client's socket was made as root, then the process became nobody
  // (as servers that drop privileges do). Before, the handover could not
  // verify such a process and the connection declined to TCP.
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch the client's uid";
  pid_t child;
  int fd = ForkClient(
      [](int fd) {
        if (::setresgid(65534, 65534, 65534) != 0 ||
            ::setresuid(65534, 65534, 65534) != 0) {
          return 1;
        }
        auto s = MustUpgrade(fd, Client());
        if (!s || !s->is_smc()) return 2;
        return s->Send("smc", 3, 0) == 3 ? 0 : 4;
      },
      &child);
  auto s = MustUpgrade(fd, Server());
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->is_smc());
  EXPECT_EQ(s->status().engine.peer_reason, 0u);
  char buf[3];
  ASSERT_EQ(s->Recv(buf, 3, MSG_WAITALL), 3);
  EXPECT_EQ(std::string(buf, 3), "smc");
  EXPECT_EQ(WaitChild(child), 0);
}

// A server that accepts as root and serves in a worker that dropped its
// privileges first (the usual daemon shape), against a root client.
TEST(SmcSocketTest, ServerWorkerDroppingPrivilegesUsesSmcd) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch uids";
  int port = 0;
  int lfd = ListenLoopback(&port);
  pid_t client = ::fork();
  if (client == 0) {
    ::close(lfd);
    int fd = ConnectLoopback(port);
    auto s = MustUpgrade(fd, Client());
    if (!s || !s->is_smc()) ::_exit(2);
    if (s->Send("ping", 4, 0) != 4) ::_exit(3);
    char b[4];
    ::_exit(s->Recv(b, 4, MSG_WAITALL) == 4 && std::string(b, 4) == "pong" ? 0
                                                                           : 4);
  }
  int fd = ::accept(lfd, nullptr, nullptr);
  ::close(lfd);
  pid_t worker = ::fork();
  if (worker == 0) {
    if (::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(1);
    }
    auto s = MustUpgrade(fd, Server());
    if (!s || !s->is_smc()) ::_exit(2);
    char b[4];
    if (s->Recv(b, 4, MSG_WAITALL) != 4 || std::string(b, 4) != "ping") {
      ::_exit(3);
    }
    ::_exit(s->Send("pong", 4, 0) == 4 ? 0 : 4);
  }
  ::close(fd);
  EXPECT_EQ(WaitChild(worker), 0);
  EXPECT_EQ(WaitChild(client), 0);
}

TEST(SmcSocketTest, PlainTcpPeerBytesReachTheAppUntouched) {
  // A peer that echoed the option but speaks no CLC: its first bytes are
  // application data and must all reach the server's app.
  const std::string request = "GET / HTTP/1.0\r\nHost: x\r\n\r\n";
  pid_t child;
  int fd = ForkClient(
      [&](int fd) {
        if (::send(fd, request.data(), request.size(), 0) !=
            static_cast<ssize_t>(request.size()))
          return 1;
        char buf[16];
        return ::recv(fd, buf, sizeof buf, 0) == 2 ? 0 : 2;
      },
      &child);
  auto s = MustUpgrade(fd, Server());
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->is_smc());
  std::string got(request.size(), '\0');
  ASSERT_EQ(s->Recv(got.data(), got.size(), MSG_WAITALL),
            static_cast<ssize_t>(request.size()));
  EXPECT_EQ(got, request);
  ASSERT_EQ(s->Send("ok", 2, 0), 2);
  EXPECT_EQ(WaitChild(child), 0);
}

TEST(SmcSocketTest, SilentPeerTimesOutToTcp) {
  const auto [cfd, sfd] = ConnectedLoopbackPair();
  Options o = Server();
  o.clc_timeout = std::chrono::milliseconds(200);
  auto s = MustUpgrade(sfd, o);
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->is_smc());
  EXPECT_EQ(s->status().engine.local_reason, wire::kReasonTimeoutCl);
  // The server declined; the plain peer sees the Decline bytes first,
  // which is what a peer that echoed the option but ignores CLC gets.
  ASSERT_EQ(::send(cfd, "late", 4, 0), 4);
  char buf[4];
  ASSERT_EQ(s->Recv(buf, 4, MSG_WAITALL), 4);
  EXPECT_EQ(std::string(buf, 4), "late");
  ::close(cfd);
}

TEST(SmcSocketTest, UrgentByteAndMark) {
  pid_t child;
  int fd = ForkClient(
      [](int fd) {
        auto s = MustUpgrade(fd, Client());
        if (!s || !s->is_smc()) return 1;
        if (s->Send("abc", 3, 0) != 3) return 2;
        if (s->Send("!", 1, MSG_OOB) != 1) return 3;
        char buf[4];
        return s->Recv(buf, 1, 0) == 1 ? 0 : 4;  // wait for the server
      },
      &child);
  auto s = MustUpgrade(fd, Server());
  ASSERT_TRUE(s && s->is_smc());
  ASSERT_TRUE(s->Wait(POLLPRI, 10000) & POLLPRI);
  EXPECT_FALSE(s->AtMark());
  char buf[8] = {};
  ASSERT_EQ(s->Recv(buf, sizeof buf, 0), 3);  // stops at the mark
  EXPECT_EQ(std::string(buf, 3), "abc");
  EXPECT_TRUE(s->AtMark());
  ASSERT_EQ(s->Recv(buf, 1, MSG_OOB), 1);
  EXPECT_EQ(buf[0], '!');
  ASSERT_EQ(s->Send("k", 1, 0), 1);
  EXPECT_EQ(WaitChild(child), 0);
}

}  // namespace
}  // namespace usmc::runtime
