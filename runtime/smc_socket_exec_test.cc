// The exec(2) handover of an SMC-D socket, for real: a forked process
// upgrades a loopback connection, moves bytes, exports the socket and
// execs smc_socket_exec_helper, which adopts it and carries on; the other
// end checks that every byte arrives exactly once, in order, both ways,
// and that the close is orderly. Plus what must fail: export during the
// handshake or in TCP mode, and corrupted records.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>

#include "dev/shm_device.h"
#include "runtime/config.h"
#include "runtime/exec_record.h"
#include "runtime/smc_socket.h"
#include "runtime/smc_socket_exec_test_util.h"
#include "runtime/smc_socket_test_util.h"

#ifndef USMC_EXEC_HELPER
#error "USMC_EXEC_HELPER must name the helper binary"
#endif

namespace usmc::runtime {
namespace {

using testing::ConnectLoopback;
using testing::ForkClient;
using testing::kClientSeed;
using testing::kServerSeed;
using testing::ListenLoopback;
using testing::RecvStream;
using testing::SendStream;
using testing::WaitChild;

// Bytes of each phase. The exec'ing side sends kPreSend and reads kPreRead
// of the kPeerPre the other side sent, so kPeerPre - kPreRead are in its
// DMB, unread, when it execs; kPeerPost more arrive during and after the
// exec (more than a ring: the sender must wait for the new image).
constexpr uint64_t kPreSend = 30000;
constexpr uint64_t kPeerPre = 20000;
constexpr uint64_t kPreRead = 5000;
constexpr uint64_t kPeerPost = 300000;
constexpr uint64_t kPostSend = 200000;

engine::Role Other(engine::Role r) {
  return r == engine::Role::kClient ? engine::Role::kServer
                                    : engine::Role::kClient;
}
uint64_t SeedOf(engine::Role r) {
  return r == engine::Role::kClient ? kClientSeed : kServerSeed;
}

// Forks; the child takes `child_role` on a fresh loopback connection and
// exits with fn(fd); the parent gets the other end.
int ForkPeer(engine::Role child_role, const std::function<int(int)>& fn,
             pid_t* pid) {
  if (child_role == engine::Role::kClient) return ForkClient(fn, pid);
  int port = 0;
  const int lfd = ListenLoopback(&port);
  *pid = ::fork();
  if (*pid == 0) {
    const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    ::close(lfd);
    ::_exit(fd < 0 ? 100 : fn(fd));
  }
  ::close(lfd);
  return ConnectLoopback(port);
}

int CountArenaMappings() {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);) {
    n += line.find("usmc-arena") != std::string::npos;
  }
  return n;
}

// The child that execs: upgrade, traffic, export, exec the helper (which
// execs itself `hops` more times before it finishes).
int ExecSide(engine::Role role, int fd, int hops) {
  ::alarm(60);
  auto s = SmcSocket::Upgrade(fd, Options{.role = role});
  if (!s.ok() || !(*s)->is_smc()) return 20;
  if (dev::ShmArenasOn() != (CountArenaMappings() > 0)) return 27;
  SmcSocket& sock = **s;
  if (SendStream(sock, SeedOf(role), 0, kPreSend) != 0) return 21;
  if (RecvStream(sock, SeedOf(Other(role)), 0, kPreRead) != 0) return 22;
  // All of the peer's first burst is in our DMB before we exec.
  while (sock.Readable() < static_cast<int>(kPeerPre - kPreRead)) {
    if (sock.Wait(POLLIN, 10000) == 0) return 23;
  }
  const SocketStatus st = sock.status();
  std::string blob;
  if (!sock.ExportForExec(blob).ok()) return 24;
  const int mfd = ::memfd_create("usmc-exec-state", 0);  // survives exec
  if (mfd < 0 || ::write(mfd, blob.data(), blob.size()) !=
                     static_cast<ssize_t>(blob.size())) {
    return 25;
  }
  ::setenv("USMC_EXEC_STATE", std::to_string(mfd).c_str(), 1);
  char local[32], peer[32];
  std::snprintf(local, sizeof local, "%llx",
                static_cast<unsigned long long>(st.local_dmb_token));
  std::snprintf(peer, sizeof peer, "%llx",
                static_cast<unsigned long long>(st.peer_dmb_token));
  const std::string sent = std::to_string(kPreSend);
  const std::string read = std::to_string(kPreRead);
  const std::string to_read = std::to_string(kPeerPre - kPreRead + kPeerPost);
  const std::string to_send = std::to_string(kPostSend);
  const std::string more = std::to_string(hops);
  ::execl(USMC_EXEC_HELPER, USMC_EXEC_HELPER,
          role == engine::Role::kClient ? "client" : "server", local, peer,
          sent.c_str(), read.c_str(), to_read.c_str(), to_send.c_str(),
          more.c_str(), static_cast<char*>(nullptr));
  return 26;  // exec failed
}

// The other end of ExecSide: it never learns of the exec(s).
void StaySide(engine::Role exec_role, int hops) {
  const engine::Role role = Other(exec_role);
  pid_t pid = -1;
  const int fd = ForkPeer(
      exec_role, [&](int cfd) { return ExecSide(exec_role, cfd, hops); }, &pid);
  ASSERT_GE(fd, 0);
  auto s = SmcSocket::Upgrade(fd, Options{.role = role});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->is_smc());
  SmcSocket& sock = **s;
  const uint64_t own = SeedOf(role), peer = SeedOf(exec_role);
  // Sent while the other side reads, exports, execs and adopts: the second
  // part only fits once the new image consumes.
  ASSERT_EQ(SendStream(sock, own, 0, kPeerPre), 0);
  ASSERT_EQ(SendStream(sock, own, kPeerPre, kPeerPost), 0);
  ASSERT_EQ(sock.Shutdown(SHUT_WR), 0);
  // What the old image sent, then what the new one sent: once, in order.
  EXPECT_EQ(RecvStream(sock, peer, 0, kPreSend + kPostSend), 0);
  char c;
  EXPECT_EQ(sock.Recv(&c, 1, 0), 0);  // the new image closed: EOF
  EXPECT_EQ(sock.status().engine.error, 0);
  EXPECT_EQ(sock.Close(), 0);
  EXPECT_EQ(WaitChild(pid), 0);
}

class ExecHandover : public ::testing::TestWithParam<engine::Role> {};

TEST_P(ExecHandover, NewImageContinuesTheStreamBothWays) {
  StaySide(GetParam(), /*hops=*/0);
}

// The adopted socket exports again: two more execs in a row.
TEST_P(ExecHandover, ChainOfExecs) { StaySide(GetParam(), /*hops=*/2); }

INSTANTIATE_TEST_SUITE_P(BothRoles, ExecHandover,
                         ::testing::Values(engine::Role::kClient,
                                           engine::Role::kServer),
                         [](const auto& info) {
                           return std::string(engine::ToString(info.param));
                         });

// The same with DMBs in arena slots (docs/dev-shm.md, "Arenas"): the
// record carries the arenas' fds, ids, sizes and the slots; the new image
// attaches the arenas and adopts its own (never allocated from).
class ExecHandoverArena : public ::testing::TestWithParam<engine::Role> {
 protected:
  void SetUp() override {
    (void)ProcessConfig();  // it sets the switch from the environment once
    dev::SetShmArenas(true);
  }
  void TearDown() override { dev::SetShmArenas(false); }
};

TEST_P(ExecHandoverArena, NewImageContinuesTheStreamBothWays) {
  StaySide(GetParam(), /*hops=*/0);
}

TEST_P(ExecHandoverArena, ChainOfExecs) { StaySide(GetParam(), /*hops=*/2); }

INSTANTIATE_TEST_SUITE_P(BothRoles, ExecHandoverArena,
                         ::testing::Values(engine::Role::kClient,
                                           engine::Role::kServer),
                         [](const auto& info) {
                           return std::string(engine::ToString(info.param));
                         });

bool Cloexec(int fd) { return ::fcntl(fd, F_GETFD) & FD_CLOEXEC; }
bool Open(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

TEST(ExecExport, FailsDuringTheHandshake) {
  int port = 0;
  const int lfd = ListenLoopback(&port);
  const int cfd = ConnectLoopback(port);  // a client that never speaks CLC
  const int sfd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  ::close(lfd);
  auto s = SmcSocket::Start(sfd, Options{.role = engine::Role::kServer});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->handshaking());
  std::string out = "earlier records";
  Status st = (*s)->ExportForExec(out);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("handshake"), std::string::npos) << st;
  EXPECT_EQ(out, "earlier records");
  EXPECT_TRUE(Cloexec(sfd));
  EXPECT_EQ((*s)->Close(), 0);
  ::close(cfd);
}

TEST(ExecExport, FailsInTcpMode) {
  int port = 0;
  const int lfd = ListenLoopback(&port);
  const int cfd = ConnectLoopback(port);
  const int sfd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  ::close(lfd);
  auto s = SmcSocket::Upgrade(
      cfd, Options{.role = engine::Role::kClient, .smcd_enabled = false});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ((*s)->mode(), engine::Mode::kTcp);
  std::string out;
  Status st = (*s)->ExportForExec(out);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("mode TCP"), std::string::npos) << st;
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(Cloexec(cfd));
  EXPECT_EQ((*s)->Close(), 0);
  ::close(sfd);
}

ExecRecord SampleRecord() {
  ExecRecord r;
  r.tcp_fd = 3;
  r.local_memfd = 4;
  r.peer_memfd = 5;
  r.doorbell_fd = 6;
  r.role = engine::Role::kServer;
  r.smcd_enabled = true;
  r.eid = "USMC-SHM";
  r.dmb_size = 65536;
  r.clc_timeout = std::chrono::milliseconds(6000);
  r.handover_timeout = std::chrono::milliseconds(2000);
  r.peer_gone = true;
  r.tcp_cloexec = true;
  r.error = ECONNRESET;
  r.last_area[5] = std::byte{9};
  engine::ConnectionSnapshot& e = r.engine;
  e.role = engine::Role::kServer;
  e.link.local_device = {1, 2, 0xFFFF};
  e.link.peer_device = {1, 2, 0xFFFF};
  e.link.local_dmb_token = 0x1111;
  e.link.local_dmb_size = 65536;
  e.link.peer_dmb_token = 0x2222;
  e.link.peer_dmb_size = 32768;
  e.link.link_id = 77;
  e.link.eid[0] = 'U';
  e.data.tx_producer = {3, 100};
  e.data.peer_consumer = {3, 50};
  e.data.rx_consumer = {1, 10};
  e.data.rx_consumer_confirmed = {1, 5};
  e.data.peer_producer = {1, 400};
  e.data.urgent_mark = {1, 300};
  e.data.urgent_byte_skipped = false;
  e.data.have_urgent_mark = true;
  e.data.urgent_state = engine::UrgentState::kValid;
  e.data.urgent_byte = std::byte{0x42};
  e.data.peer_state.peer_done_writing = true;
  e.close = {.state = engine::CloseState::kAppCloseWait1,
             .peer_write_shut = true};
  e.local_flags.peer_done_writing = false;
  e.read_shut = true;
  e.error = ECONNRESET;
  e.counters.bytes_sent = 123456789;
  e.counters.violations = 1;
  r.local_arena_id = 0x1111;
  r.local_arena_size = 258 << 20;
  r.local_slot = 4096;
  r.peer_arena_id = 0x2222;
  r.peer_arena_size = 258 << 20;
  r.peer_slot = 8192;
  return r;
}

TEST(ExecRecordCodec, RoundTripsEveryField) {
  const ExecRecord r = SampleRecord();
  ASSERT_EQ(engine::CheckSnapshot(r.engine), "");
  std::string blob = "x";  // appends after what is there
  AppendExecRecord(r, blob);
  ASSERT_EQ(blob.size(), 1 + kExecRecordHeaderLen + kExecRecordBodyLen);
  AppendExecRecord(r, blob);  // two records back to back
  std::string_view in = std::string_view(blob).substr(1);
  Result<ExecRecord> a = DecodeExecRecord(in);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, r);
  EXPECT_EQ(in.size(), kExecRecordHeaderLen + kExecRecordBodyLen);
  Result<ExecRecord> b = DecodeExecRecord(in);
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(in.empty());
}

// Decode must reject `blob` naming `what`; returns what is left of `in`.
std::string_view ExpectBad(const std::string& blob, std::string_view what) {
  std::string_view in = blob;
  Result<ExecRecord> r = DecodeExecRecord(in);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status();
  return in;
}

TEST(ExecRecordCodec, RejectsDamage) {
  std::string good;
  AppendExecRecord(SampleRecord(), good);
  const size_t body = kExecRecordHeaderLen;
  std::string b = good;
  b[0] ^= 1;
  EXPECT_TRUE(ExpectBad(b, "magic").empty());  // nothing after is trusted
  b = good;
  b[5] = 4;  // version 4: skipped, the next record is reachable
  EXPECT_EQ(ExpectBad(b + "next", "version"), "next");
  EXPECT_TRUE(ExpectBad(good.substr(0, good.size() - 1), "truncated").empty());
  EXPECT_TRUE(ExpectBad(good.substr(0, 5), "truncated").empty());
  b = good;
  b[11] = static_cast<char>(kExecRecordBodyLen - 1);  // body length 380
  EXPECT_EQ(ExpectBad(b, "body length").size(), 1u);
  b = good;
  b[body + 17] = 2;  // smcd_enabled is a bool
  ExpectBad(b, "smcd_enabled");
  b = good;
  b[body + 16] = 7;  // role
  ExpectBad(b, "role");
  ExecRecord r = SampleRecord();
  r.peer_memfd = r.tcp_fd;
  b.clear();
  AppendExecRecord(r, b);
  ExpectBad(b, "duplicate");
  r = SampleRecord();
  r.peer_arena_size = 0;  // one side in an arena, the other not
  b.clear();
  AppendExecRecord(r, b);
  ExpectBad(b, "arena sizes");
  r = SampleRecord();
  r.local_arena_size = r.peer_arena_size = 0;
  b.clear();
  AppendExecRecord(r, b);
  ExpectBad(b, "arena fields without arenas");
  r = SampleRecord();
  r.doorbell_fd = -5;
  b.clear();
  AppendExecRecord(r, b);
  ExpectBad(b, "fd");
  r = SampleRecord();
  r.engine.data.peer_producer.count = 1u << 30;
  b.clear();
  AppendExecRecord(r, b);
  ExpectBad(b, "cursor outside its ring");
  r = SampleRecord();
  r.engine.role = engine::Role::kClient;
  b.clear();
  AppendExecRecord(r, b);
  ExpectBad(b, "engine role");
}

TEST(ExecRecordCodec, EveryBitFlipIsSafe) {
  std::string good;
  AppendExecRecord(SampleRecord(), good);
  size_t accepted = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string b = good;
      b[i] = static_cast<char>(b[i] ^ (1 << bit));
      std::string_view in = b;
      Result<ExecRecord> r = DecodeExecRecord(in);
      if (i < kExecRecordHeaderLen) {
        EXPECT_FALSE(r.ok()) << "header byte " << i;
      }
      if (r.ok()) {
        ++accepted;  // then it re-encodes to exactly these bytes
        std::string again;
        AppendExecRecord(*r, again);
        EXPECT_EQ(again, b) << "byte " << i << " bit " << bit;
      }
    }
  }
  EXPECT_LT(accepted, good.size() * 8);
}

int Dup(int fd) { return ::fcntl(fd, F_DUPFD_CLOEXEC, 100); }

// A real record, adopted with damage: each failure is an error, never a
// crash, closes nothing it does not own, and once the buffers are named
// correctly the peer learns of the failure (its recv sees the end).
TEST(ExecAdopt, RejectsCorruptedRecords) {
  pid_t pid = -1;
  const int fd = ForkClient(
      [](int cfd) {
        ::alarm(60);
        auto s =
            SmcSocket::Upgrade(cfd, Options{.role = engine::Role::kClient});
        if (!s.ok() || !(*s)->is_smc()) return 30;
        char c;
        const ssize_t n = (*s)->Recv(&c, 1, 0);
        return n == 0 || (n < 0 && errno == ECONNRESET) ? 0 : 31;
      },
      &pid);
  auto s = SmcSocket::Upgrade(fd, Options{.role = engine::Role::kServer});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->is_smc());
  std::string blob;
  ASSERT_TRUE((*s)->ExportForExec(blob).ok());
  std::string_view view = blob;
  Result<ExecRecord> rec = DecodeExecRecord(view);
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->tcp_fd, fd);
  EXPECT_TRUE(rec->tcp_cloexec);
  EXPECT_EQ(rec->engine.link.local_dmb_token, (*s)->status().local_dmb_token);
  EXPECT_EQ(rec->engine.link.peer_dmb_token, (*s)->status().peer_dmb_token);
  const int orig[] = {rec->tcp_fd, rec->local_memfd, rec->peer_memfd,
                      rec->doorbell_fd};
  for (int f : orig) EXPECT_FALSE(Cloexec(f)) << "fd " << f;

  // The same record on duplicates, so failures never touch the socket's
  // own fds.
  ExecRecord dup = *rec;
  dup.tcp_fd = Dup(rec->tcp_fd);
  dup.local_memfd = Dup(rec->local_memfd);
  dup.peer_memfd = Dup(rec->peer_memfd);
  dup.doorbell_fd = Dup(rec->doorbell_fd);
  auto adopt = [](const ExecRecord& r) {
    std::string b;
    AppendExecRecord(r, b);
    std::string_view in = b;
    return SmcSocket::AdoptAfterExec(in).status();
  };
  std::string b;
  AppendExecRecord(dup, b);
  b[0] ^= 1;
  std::string_view in = b;
  EXPECT_EQ(SmcSocket::AdoptAfterExec(in).status().code(),
            StatusCode::kInvalidArgument);

  // Wrong kinds: detected before anything is owned or shut down.
  ExecRecord swapped = dup;
  std::swap(swapped.tcp_fd, swapped.local_memfd);
  Status st = adopt(swapped);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("not a TCP socket"), std::string::npos) << st;
  ExecRecord memfd_bell = dup;
  memfd_bell.doorbell_fd = Dup(dup.local_memfd);  // a memfd, no socket
  st = adopt(memfd_bell);
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st;
  EXPECT_TRUE(Open(memfd_bell.doorbell_fd));
  ::close(memfd_bell.doorbell_fd);
  for (int f : {dup.local_memfd, dup.peer_memfd, dup.doorbell_fd}) {
    EXPECT_TRUE(Open(f)) << "fd " << f;
  }
  // That one shut the TCP socket down (the peer must not wait on a dead
  // connection): from here on the connection is over.

  // A token that is not the DMB's: the buffers are refused and closed.
  ExecRecord bad_token = dup;
  bad_token.engine.link.local_dmb_token ^= 0x10;
  st = adopt(bad_token);
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find("token"), std::string::npos) << st;
  for (int f : {dup.local_memfd, dup.peer_memfd, dup.doorbell_fd}) {
    EXPECT_FALSE(Open(f)) << "fd " << f;
  }
  ::close(dup.tcp_fd);
  EXPECT_EQ(WaitChild(pid), 0);  // the peer saw the end
  for (int f : orig) EXPECT_TRUE(Open(f)) << "fd " << f;
  (*s)->Abort();
}

}  // namespace
}  // namespace usmc::runtime
