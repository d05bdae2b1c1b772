// Tests of the status files: what a publisher writes is exactly what a
// reader sees; seqlock reads are never torn; files of dead, exec'd or
// pid-reusing processes are not reported and get removed.
#include "runtime/publish.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "runtime/publish_layout.h"
#include "runtime/smc_socket.h"
#include "wire/reason.h"

namespace usmc::runtime {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/usmc-publish-test-XXXXXX";
    const char* d = mkdtemp(tmpl);
    EXPECT_NE(d, nullptr);
    path_ = d != nullptr ? d : "/tmp";
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::unique_ptr<StatusPublisher> MustCreate(const std::string& dir) {
  Result<StatusPublisher*> r = StatusPublisher::Create(dir);
  EXPECT_TRUE(r.ok()) << r.status();
  return std::unique_ptr<StatusPublisher>(r.ok() ? *r : nullptr);
}

sockaddr_storage V4(const char* ip, uint16_t port) {
  sockaddr_storage ss{};
  auto* a = reinterpret_cast<sockaddr_in*>(&ss);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  inet_pton(AF_INET, ip, &a->sin_addr);
  return ss;
}

sockaddr_storage V6(const char* ip, uint16_t port) {
  sockaddr_storage ss{};
  auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
  a->sin6_family = AF_INET6;
  a->sin6_port = htons(port);
  inet_pton(AF_INET6, ip, &a->sin6_addr);
  return ss;
}

ConnRecord MakeRecord(int i) {
  ConnRecord r;
  SetState(r, i % 2 ? "ACTIVE" : "APPCLOSEWAIT1");
  r.mode = i % 3 == 0 ? ConnMode::kTcp : ConnMode::kSmcd;
  r.role = i % 2 ? engine::Role::kServer : engine::Role::kClient;
  r.local = i % 2 ? V6("::1", static_cast<uint16_t>(1000 + i))
                  : V4("127.0.0.1", static_cast<uint16_t>(1000 + i));
  r.peer = V4("10.0.0.2", static_cast<uint16_t>(2000 + i));
  r.local_reason = r.mode == ConnMode::kTcp ? wire::kReasonPeerNoSmc : 0;
  r.peer_reason = 0;
  r.uid = 1000 + i;
  r.fd = 10 + i;
  r.inode = 500000 + i;
  r.dmb_size = 65536;
  r.peer_dmb_size = 262144;
  r.dmb_token = 0x1111000000000000ull + i;
  r.peer_dmb_token = 0x2222000000000000ull + i;
  r.tx_producer = {1, static_cast<uint32_t>(100 + i)};
  r.rx_consumer = {2, static_cast<uint32_t>(200 + i)};
  r.wakeups_sent = 7 + i;
  r.wakeups_received = 9 + i;
  r.buffer_full = i;
  return r;
}

ProcessStatus ReadOne(const std::string& dir) {
  std::vector<ProcessStatus> all = ReadAllStatus(dir);
  EXPECT_EQ(all.size(), 1u);
  return all.empty() ? ProcessStatus{} : all[0];
}

size_t FilesIn(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

TEST(HistBucket, EdgesOfEachBucket) {
  EXPECT_EQ(HistBucket(0), 0);
  EXPECT_EQ(HistBucket(1), 0);
  EXPECT_EQ(HistBucket(8192), 0);
  EXPECT_EQ(HistBucket(8193), 1);
  EXPECT_EQ(HistBucket(16384), 1);
  EXPECT_EQ(HistBucket(16385), 2);
  EXPECT_EQ(HistBucket(1 << 20), 7);
  EXPECT_EQ(HistBucket((1 << 20) + 1), 8);
  EXPECT_EQ(HistBucket(uint64_t{1} << 40), 8);
  EXPECT_EQ(HistLabel(0), "8K");
  EXPECT_EQ(HistLabel(7), "1024K");
  EXPECT_EQ(HistLabel(8), ">1024K");
}

TEST(Publish, ReaderSeesExactlyThePublishedConnections) {
  TempDir dir;
  auto pub = MustCreate(dir.path());
  ASSERT_TRUE(pub);
  constexpr int kN = 6;
  SlotId ids[kN];
  for (int i = 0; i < kN; ++i) {
    ids[i] = pub->Acquire();
    ASSERT_NE(ids[i], kNoSlot);
    pub->Update(ids[i], MakeRecord(i));
    pub->AddBytes(ids[i], 1000 * (i + 1), 0, i % 3 != 0);
    pub->AddBytes(ids[i], 0, 10 * (i + 1), i % 3 != 0);
  }
  ProcessStatus p = ReadOne(dir.path());
  EXPECT_EQ(p.pid, getpid());
  EXPECT_EQ(p.uid, geteuid());
  EXPECT_EQ(p.start_time, ProcessStartTime(getpid()));
  EXPECT_FALSE(p.comm.empty());
  EXPECT_EQ(p.path, pub->path());
  ASSERT_EQ(p.connections.size(), static_cast<size_t>(kN));
  for (int i = 0; i < kN; ++i) {
    const ConnRecord want = MakeRecord(i);
    const ConnRecord& got = p.connections[i];  // slots in order
    EXPECT_STREQ(got.state, want.state);
    EXPECT_EQ(got.mode, want.mode);
    EXPECT_EQ(got.role, want.role);
    EXPECT_EQ(std::memcmp(&got.local, &want.local, sizeof(want.local)), 0);
    EXPECT_EQ(std::memcmp(&got.peer, &want.peer, sizeof(want.peer)), 0);
    EXPECT_EQ(got.local_reason, want.local_reason);
    EXPECT_EQ(got.uid, want.uid);
    EXPECT_EQ(got.pid, getpid()) << "filled in when the record has none";
    EXPECT_EQ(got.fd, want.fd);
    EXPECT_EQ(got.inode, want.inode);
    EXPECT_EQ(got.dmb_size, want.dmb_size);
    EXPECT_EQ(got.peer_dmb_size, want.peer_dmb_size);
    EXPECT_EQ(got.dmb_token, want.dmb_token);
    EXPECT_EQ(got.peer_dmb_token, want.peer_dmb_token);
    EXPECT_EQ(got.tx_producer.wrap, 1u);
    EXPECT_EQ(got.tx_producer.count, want.tx_producer.count);
    EXPECT_EQ(got.rx_consumer.count, want.rx_consumer.count);
    EXPECT_EQ(got.wakeups_sent, want.wakeups_sent);
    EXPECT_EQ(got.wakeups_received, want.wakeups_received);
    EXPECT_EQ(got.bytes_in, 1000u * (i + 1));
    EXPECT_EQ(got.bytes_out, 10u * (i + 1));
    EXPECT_EQ(got.bytes_smc_in, i % 3 != 0 ? 1000u * (i + 1) : 0u);
  }
  // Process byte totals: live slots (i = 0, 3 are TCP).
  EXPECT_EQ(p.counters.bytes_tcp_in, 1000u + 4000u);
  EXPECT_EQ(p.counters.bytes_smc_in, 2000u + 3000u + 5000u + 6000u);
  EXPECT_EQ(p.counters.bytes_tcp_out, 10u + 40u);
  EXPECT_EQ(p.counters.bytes_smc_out, 20u + 30u + 50u + 60u);
  EXPECT_EQ(p.counters.rx_calls, 4u);
  EXPECT_EQ(p.counters.tx_calls, 4u);
  EXPECT_EQ(p.counters.tx_buffer_full, 0u + 1 + 2 + 3 + 4 + 5);
}

TEST(Publish, BytesSurviveReleaseInTheProcessTotals) {
  TempDir dir;
  auto pub = MustCreate(dir.path());
  ASSERT_TRUE(pub);
  SlotId a = pub->Acquire();
  SlotId b = pub->Acquire();
  pub->Update(a, MakeRecord(1));
  pub->Update(b, MakeRecord(2));
  pub->AddBytes(a, 100, 0, true);
  pub->AddBytes(a, 0, 20000, true);  // 16K < 20000 <= 32K: bucket 2
  pub->AddBytes(b, 7, 9, false);
  pub->Release(a);
  ProcessStatus p = ReadOne(dir.path());
  ASSERT_EQ(p.connections.size(), 1u);
  EXPECT_EQ(p.connections[0].inode, MakeRecord(2).inode);
  EXPECT_EQ(p.counters.bytes_smc_in, 100u);
  EXPECT_EQ(p.counters.bytes_smc_out, 20000u);
  EXPECT_EQ(p.counters.bytes_tcp_in, 7u);
  EXPECT_EQ(p.counters.bytes_tcp_out, 9u);
  EXPECT_EQ(p.counters.rx_payload_hist[0], 1u);
  EXPECT_EQ(p.counters.tx_payload_hist[2], 1u);
  EXPECT_EQ(p.counters.tx_buffer_full, 1u + 2u);  // a's last record + b's
  // A freed slot is reused and starts from zero.
  SlotId c = pub->Acquire();
  EXPECT_EQ(c, a);
  p = ReadOne(dir.path());
  ASSERT_EQ(p.connections.size(), 2u);
  EXPECT_STREQ(p.connections[0].state, "INIT");
  EXPECT_EQ(p.connections[0].bytes_in, 0u);
  EXPECT_EQ(p.counters.bytes_smc_in, 100u);
}

TEST(Publish, HandshakeCountersEqualWhatWasCounted) {
  TempDir dir;
  auto pub = MustCreate(dir.path());
  ASSERT_TRUE(pub);
  ConnRecord smc = MakeRecord(1);  // SMCD, server, dmb 64K, peer 256K
  smc.role = engine::Role::kClient;
  for (int i = 0; i < 2; ++i) pub->CountHandshake(smc);  // client v2
  smc.role = engine::Role::kServer;
  pub->CountHandshake(smc, 1);  // server v1
  ConnRecord tcp = MakeRecord(0);
  tcp.mode = ConnMode::kTcp;
  tcp.role = engine::Role::kClient;
  tcp.local_reason = wire::kReasonPeerNoSmc;
  for (int i = 0; i < 3; ++i) pub->CountHandshake(tcp);
  tcp.role = engine::Role::kServer;
  tcp.local_reason = wire::kReasonPeerDecl;
  tcp.peer_reason = wire::kReasonNoUeid;
  pub->CountHandshake(tcp);
  ConnRecord failed = MakeRecord(0);
  failed.mode = ConnMode::kHandshake;
  SetState(failed, "FAILED");
  pub->CountHandshake(failed);  // client
  pub->CountHandshakeError(engine::Role::kServer);

  ProcessCounters c = ReadOne(dir.path()).counters;
  EXPECT_EQ(c.smc_ok[0][1], 2u);
  EXPECT_EQ(c.smc_ok[1][0], 1u);
  EXPECT_EQ(c.smc_ok[0][0] + c.smc_ok[1][1], 0u);
  EXPECT_EQ(c.fallbacks[0], 3u);
  EXPECT_EQ(c.fallbacks[1], 1u);
  ASSERT_EQ(c.fallback_reasons[0].size(), 1u);
  EXPECT_EQ(c.fallback_reasons[0][0].reason, wire::kReasonPeerNoSmc);
  EXPECT_EQ(c.fallback_reasons[0][0].count, 3u);
  ASSERT_EQ(c.fallback_reasons[1].size(), 1u);
  EXPECT_EQ(c.fallback_reasons[1][0].reason, wire::kReasonPeerDecl);
  EXPECT_EQ(c.handshake_errors[0], 1u);
  EXPECT_EQ(c.handshake_errors[1], 1u);
  EXPECT_EQ(c.rx_buf_hist[HistBucket(65536)], 3u);
  EXPECT_EQ(c.tx_buf_hist[HistBucket(262144)], 3u);
  // The in-process view agrees with the reader's.
  EXPECT_EQ(pub->counters().fallbacks[0], 3u);

  pub->Reset();
  c = ReadOne(dir.path()).counters;
  EXPECT_EQ(c.smc_ok[0][1] + c.fallbacks[0] + c.handshake_errors[1], 0u);
  EXPECT_TRUE(c.fallback_reasons[0].empty());
  EXPECT_EQ(c.rx_buf_hist[HistBucket(65536)], 0u);
}

TEST(Publish, FallbackTableOverflowIsCounted) {
  TempDir dir;
  auto pub = MustCreate(dir.path());
  ASSERT_TRUE(pub);
  ConnRecord tcp = MakeRecord(0);
  tcp.mode = ConnMode::kTcp;
  for (int i = 0; i < kFallbackEntries + 2; ++i) {
    tcp.local_reason = 0x03000000u + i + 1;
    pub->CountHandshake(tcp);
  }
  ProcessCounters c = pub->counters();
  EXPECT_EQ(c.fallbacks[0], kFallbackEntries + 2u);
  EXPECT_EQ(c.fallback_reasons[0].size(),
            static_cast<size_t>(kFallbackEntries));
  EXPECT_EQ(c.fallback_overflow, 2u);
}

TEST(Publish, AllSlotsInUseCountsOverflowAndNoSlotIsANoOp) {
  TempDir dir;
  auto pub = MustCreate(dir.path());
  ASSERT_TRUE(pub);
  for (uint32_t i = 0; i < kStatusSlots; ++i)
    ASSERT_NE(pub->Acquire(), kNoSlot);
  EXPECT_EQ(pub->Acquire(), kNoSlot);
  pub->Update(kNoSlot, MakeRecord(1));
  pub->AddBytes(kNoSlot, 1, 1, true);
  pub->Release(kNoSlot);
  ProcessStatus p = ReadOne(dir.path());
  EXPECT_EQ(p.connections.size(), kStatusSlots);
  EXPECT_EQ(p.counters.slot_overflow, 1u);
  EXPECT_EQ(p.counters.bytes_smc_in, 0u);
}

// A writer rewrites one slot as fast as it can with records whose fields
// are tied together; every record a reader accepts must be one the writer
// wrote, never a mix of two.
TEST(Publish, SeqlockReadsAreNeverTorn) {
  TempDir dir;
  auto pub = MustCreate(dir.path());
  ASSERT_TRUE(pub);
  SlotId id = pub->Acquire();
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    ConnRecord r = MakeRecord(1);
    for (uint64_t i = 1; !stop.load(std::memory_order_relaxed); ++i) {
      r.dmb_token = i;
      r.peer_dmb_token = ~i;
      r.inode = i * 3;
      r.wakeups_sent = i * 5;
      std::memset(r.state, 'A' + static_cast<int>(i % 26), 20);
      pub->Update(id, r);
    }
  });
  int checked = 0;
  for (int round = 0; round < 300; ++round) {
    Result<ProcessStatus> p = ReadStatusFile(pub->path());
    ASSERT_TRUE(p.ok()) << p.status();
    for (const ConnRecord& r : p->connections) {
      if (r.dmb_token == 0) continue;  // the INIT record
      ASSERT_EQ(r.peer_dmb_token, ~r.dmb_token);
      ASSERT_EQ(r.inode, r.dmb_token * 3);
      ASSERT_EQ(r.wakeups_sent, r.dmb_token * 5);
      ASSERT_EQ(r.state[0], r.state[19]);
      ASSERT_EQ(r.state[0], 'A' + static_cast<int>(r.dmb_token % 26));
      ++checked;
    }
  }
  stop = true;
  writer.join();
  EXPECT_GT(checked, 0);
}

// Two threads of the app update one connection at once (a send thread and a
// recv thread both publishing): every record a reader accepts is whole, and
// the slot stays readable afterwards (its seq word ends even).
TEST(Publish, ConcurrentWritersOfOneSlotLeaveItReadable) {
  TempDir dir;
  auto pub = MustCreate(dir.path());
  ASSERT_TRUE(pub);
  const SlotId id = pub->Acquire();
  constexpr uint64_t kUpdates = 200000;
  auto writer = [&](uint64_t base) {
    ConnRecord r = MakeRecord(1);
    for (uint64_t i = 1; i <= kUpdates; ++i) {
      r.dmb_token = base + i;
      r.peer_dmb_token = ~r.dmb_token;
      r.inode = r.dmb_token * 3;
      pub->Update(id, r);
    }
  };
  std::thread a(writer, 0), b(writer, uint64_t{1} << 40);
  int checked = 0, torn = 0;  // counted, not asserted: the writers run on
  for (int round = 0; round < 200; ++round) {
    Result<ProcessStatus> p = ReadStatusFile(pub->path());
    if (!p.ok()) continue;
    for (const ConnRecord& r : p->connections) {
      if (r.dmb_token == 0) continue;  // the INIT record
      if (r.peer_dmb_token != ~r.dmb_token || r.inode != r.dmb_token * 3)
        ++torn;
      ++checked;
    }
  }
  a.join();
  b.join();
  EXPECT_EQ(torn, 0) << "records a reader accepted were a mix of two writes";
  Result<ProcessStatus> p = ReadStatusFile(pub->path());
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->connections.size(), 1u) << "the slot is stuck odd (unreadable)";
  const uint64_t last = p->connections[0].dmb_token;
  EXPECT_TRUE(last == kUpdates || last == (uint64_t{1} << 40) + kUpdates)
      << last;
  EXPECT_GT(checked, 0);
}

// Runs `child` in a forked process that signals readiness through a pipe,
// and returns its pid (the pipe's read end is closed once it is ready).
template <typename F>
pid_t ForkReady(F child) {
  int p[2];
  EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    child(p[1]);
    _exit(0);
  }
  close(p[1]);
  char c;
  while (read(p[0], &c, 1) < 0 && errno == EINTR) {
  }
  close(p[0]);
  return pid;
}

TEST(Publish, SigkilledProcessDisappearsAndItsFileIsRemoved) {
  TempDir dir;
  const pid_t pid = ForkReady([&](int ready) {
    Result<StatusPublisher*> pub = StatusPublisher::Create(dir.path());
    if (!pub.ok()) _exit(2);
    SlotId id = (*pub)->Acquire();
    (*pub)->Update(id, MakeRecord(1));
    (void)!write(ready, "x", 1);
    pause();
  });
  std::vector<ProcessStatus> all = ReadAllStatus(dir.path());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].pid, pid);
  EXPECT_EQ(all[0].connections.size(), 1u);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(FilesIn(dir.path()), 1u) << "SIGKILL leaves the file behind";
  EXPECT_TRUE(ReadAllStatus(dir.path()).empty());
  EXPECT_EQ(FilesIn(dir.path()), 0u) << "the reader removed the stale file";
}

TEST(Publish, AnExitedButUnreapedProcessIsNotReported) {
  TempDir dir;
  const pid_t pid = ForkReady([&](int ready) {
    Result<StatusPublisher*> pub = StatusPublisher::Create(dir.path());
    if (!pub.ok()) _exit(2);
    (*pub)->Update((*pub)->Acquire(), MakeRecord(1));
    (void)!write(ready, "x", 1);
    pause();
  });
  ASSERT_EQ(ReadAllStatus(dir.path()).size(), 1u);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  // Wait for the exit but leave the child a zombie (same pid, same start
  // time in /proc, no fds or mappings left).
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT), 0);
  EXPECT_TRUE(ReadAllStatus(dir.path()).empty());
  EXPECT_EQ(FilesIn(dir.path()), 0u) << "the reader removed the stale file";
  waitpid(pid, nullptr, 0);
}

TEST(Publish, NotRemovedWhenTheReaderIsAskedNotTo) {
  TempDir dir;
  const pid_t pid = ForkReady([&](int ready) {
    if (!StatusPublisher::Create(dir.path()).ok()) _exit(2);
    (void)!write(ready, "x", 1);
    _exit(0);  // no atexit, no destructor: the file stays
  });
  waitpid(pid, nullptr, 0);
  ReadOptions keep;
  keep.remove_stale = false;
  EXPECT_TRUE(ReadAllStatus(dir.path(), keep).empty());
  EXPECT_EQ(FilesIn(dir.path()), 1u);
}

TEST(Publish, StartTimeMismatchMeansAnotherProcessReusedThePid) {
  TempDir dir;
  auto pub = MustCreate(dir.path());
  ASSERT_TRUE(pub);
  ASSERT_EQ(ReadAllStatus(dir.path()).size(), 1u);
  // Make the file claim an earlier process with our pid.
  const int fd = open(pub->path().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const uint64_t other = ProcessStartTime(getpid()) - 1;
  ASSERT_EQ(pwrite(fd, &other, sizeof(other),
                   offsetof(publish_internal::Header, start_time)),
            static_cast<ssize_t>(sizeof(other)));
  close(fd);
  Result<ProcessStatus> r = ReadStatusFile(pub->path());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("pid reused"), std::string::npos);
  EXPECT_EQ(FilesIn(dir.path()), 0u);
}

// A status file as usmc's format version 1 left it: its magic and version,
// and its size (smaller slots).
bool WriteVersion1File(const std::string& path) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return false;
  const uint32_t lead[2] = {kStatusMagic, 1};
  const bool ok =
      write(fd, lead, sizeof(lead)) == static_cast<ssize_t>(sizeof(lead)) &&
      ftruncate(fd, 704 * 16384 + 4096) == 0;
  close(fd);
  return ok;
}

// A file written by another usmc (an older one: version 1, smaller slots;
// or a newer one) is named as such, never read as this layout.
TEST(Publish, FileOfAnotherFormatVersionIsNamedNotMisread) {
  TempDir dir;
  auto pub = MustCreate(dir.path());
  ASSERT_TRUE(pub);
  for (uint32_t other : {kStatusVersion - 1, kStatusVersion + 1}) {
    SCOPED_TRACE(other);
    const int fd = open(pub->path().c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, &other, sizeof(other),
                     offsetof(publish_internal::Header, version)),
              static_cast<ssize_t>(sizeof(other)));
    close(fd);
    Result<ProcessStatus> r = ReadStatusFile(pub->path());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
    const std::string want = "status format version " + std::to_string(other) +
                             ", this usmc reads version " +
                             std::to_string(kStatusVersion);
    EXPECT_NE(r.status().message().find(want), std::string::npos)
        << r.status().message();
    std::vector<std::string> problems;
    ReadOptions ro;
    ro.problems = &problems;
    EXPECT_TRUE(ReadAllStatus(dir.path(), ro).empty());
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_NE(problems[0].find(want), std::string::npos);
    EXPECT_EQ(FilesIn(dir.path()), 1u);  // not ours to remove
  }
  // A version-1 file has a smaller size: still named by its version (its
  // name says a live process, this one, made it).
  const std::string old =
      dir.Sub(std::to_string(getpid()) + "-" +
              std::to_string(ProcessStartTime(getpid())) + "-9.usmc");
  ASSERT_TRUE(WriteVersion1File(old));
  Result<ProcessStatus> r = ReadStatusFile(old);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("status format version 1,"),
            std::string::npos)
      << r.status().message();
}

// After an upgrade, the files an older usmc's processes left when they
// died: stale, removed like this version's, not reported one line each
// (`usmc ss` printed 51 such lines on a dev machine).
TEST(Publish, DeadProcessFileOfAnotherFormatVersionIsStale) {
  TempDir dir;
  const pid_t pid = ForkReady([&](int) { _exit(0); });
  ASSERT_GT(pid, 0);
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);  // gone, not a zombie
  const std::string old = dir.Sub(std::to_string(pid) + "-1-1.usmc");
  ASSERT_TRUE(WriteVersion1File(old));
  ReadOptions keep;
  keep.remove_stale = false;
  Result<ProcessStatus> r = ReadStatusFile(old, keep);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound) << r.status().message();
  EXPECT_EQ(FilesIn(dir.path()), 1u);  // not asked to remove
  std::vector<std::string> problems;
  ReadOptions ro;
  ro.problems = &problems;
  EXPECT_TRUE(ReadAllStatus(dir.path(), ro).empty());
  EXPECT_TRUE(problems.empty()) << problems[0];
  EXPECT_EQ(FilesIn(dir.path()), 0u);
}

TEST(Publish, ProcessThatExecsAnotherProgramIsNotShown) {
  TempDir dir;
  const pid_t pid = ForkReady([&](int) {
    if (!StatusPublisher::Create(dir.path()).ok()) _exit(2);
    // The ready pipe is O_CLOEXEC: the parent wakes when exec succeeded.
    execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
    _exit(3);
  });
  EXPECT_EQ(ProcessStartTime(pid) != 0, true);
  EXPECT_EQ(FilesIn(dir.path()), 1u);
  EXPECT_TRUE(ReadAllStatus(dir.path()).empty());
  EXPECT_EQ(FilesIn(dir.path()), 0u);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

TEST(Publish, NormalExitUnlinksAndForkChildGetsItsOwnFile) {
  TempDir dir;
  // Process() in a child process of its own, so this test binary's
  // singleton stays untouched.
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    setenv("USMC_STATUS_DIR", dir.path().c_str(), 1);
    StatusPublisher* parent = StatusPublisher::Process();
    if (parent == nullptr) _exit(2);
    const std::string parent_path = parent->path();
    const pid_t grandchild = fork();
    if (grandchild == 0) {
      StatusPublisher* mine = StatusPublisher::Process();
      const bool ok = mine != nullptr && mine != parent &&
                      mine->path() != parent_path && fs::exists(mine->path()) &&
                      fs::exists(parent_path);
      exit(ok ? 0 : 4);  // exit(): atexit unlinks the grandchild's file only
    }
    int st = 0;
    waitpid(grandchild, &st, 0);
    const bool parent_kept = fs::exists(parent_path);
    (void)!write(p[1], parent_path.data(), parent_path.size());
    exit(WIFEXITED(st) && WEXITSTATUS(st) == 0 && parent_kept ? 0 : 5);
  }
  close(p[1]);
  char buf[512];
  const ssize_t n = read(p[0], buf, sizeof(buf));
  close(p[0]);
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  ASSERT_GT(n, 0);
  EXPECT_FALSE(fs::exists(std::string(buf, n)));
  EXPECT_EQ(FilesIn(dir.path()), 0u);
}

TEST(StatusDir, RefusesADirectoryOfAnotherUid) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  TempDir dir;
  const std::string d = dir.Sub("other");
  ASSERT_EQ(mkdir(d.c_str(), 0700), 0);
  ASSERT_EQ(chown(d.c_str(), 65534, 65534), 0);
  Status s = EnsureStatusDir(d);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("belongs to uid 65534"), std::string::npos)
      << s.message();
  EXPECT_FALSE(StatusPublisher::Create(d).ok());
}

TEST(StatusDir, CreatesPrivateDirAndRefusesAWritableOne) {
  TempDir dir;
  const std::string d = dir.Sub("new");
  ASSERT_TRUE(EnsureStatusDir(d).ok());
  struct stat st;
  ASSERT_EQ(stat(d.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(chmod(d.c_str(), 0777), 0);
  EXPECT_EQ(EnsureStatusDir(d).code(), StatusCode::kPermissionDenied);
  const std::string file = dir.Sub("file");
  close(open(file.c_str(), O_CREAT | O_WRONLY, 0600));
  EXPECT_EQ(EnsureStatusDir(file).code(), StatusCode::kFailedPrecondition);
}

TEST(StatusDir, EnvironmentOverridesTheDefault) {
  const char* old = std::getenv("USMC_STATUS_DIR");
  const std::string saved = old ? old : "";
  setenv("USMC_STATUS_DIR", "/some/where", 1);
  EXPECT_EQ(StatusDir(), "/some/where");
  unsetenv("USMC_STATUS_DIR");
  if (geteuid() == 0)
    EXPECT_EQ(StatusDir(), "/run/usmc");
  else
    EXPECT_NE(StatusDir().find("/usmc-" + std::to_string(geteuid())),
              std::string::npos);
  if (old) setenv("USMC_STATUS_DIR", saved.c_str(), 1);
}

TEST(RecordFrom, FillsEngineFieldsAndTheFdsAddressesAndInode) {
  const int lst = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(lst, 0);
  sockaddr_storage any = V4("127.0.0.1", 0);
  ASSERT_EQ(bind(lst, reinterpret_cast<sockaddr*>(&any), sizeof(sockaddr_in)),
            0);
  ASSERT_EQ(listen(lst, 1), 0);
  sockaddr_storage la{};
  socklen_t len = sizeof(la);
  getsockname(lst, reinterpret_cast<sockaddr*>(&la), &len);
  const int cli = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(connect(cli, reinterpret_cast<sockaddr*>(&la), len), 0);

  SocketStatus s;
  s.engine.role = engine::Role::kClient;
  s.engine.mode = engine::Mode::kSmc;
  s.engine.close_state = engine::CloseState::kAppCloseWait1;
  s.engine.local_dmb_size = 32768;
  s.engine.peer_dmb_size = 65536;
  s.engine.tx_producer = {3, 77};
  s.engine.counters.buffer_full = 4;
  s.doorbell.wakeups_received = 11;
  s.peer_doorbell.wakeups_sent = 12;
  s.local_dmb_token = 0xabc;
  s.peer_dmb_token = 0xdef;
  ConnRecord r = RecordFrom(s, cli);
  EXPECT_EQ(r.mode, ConnMode::kSmcd);
  EXPECT_STREQ(r.state, "APPCLOSEWAIT1");
  EXPECT_EQ(r.dmb_size, 32768u);
  EXPECT_EQ(r.peer_dmb_size, 65536u);
  EXPECT_EQ(r.tx_producer.wrap, 3u);
  EXPECT_EQ(r.tx_producer.count, 77u);
  EXPECT_EQ(r.buffer_full, 4u);
  EXPECT_EQ(r.wakeups_received, 11u);
  EXPECT_EQ(r.wakeups_sent, 12u);
  EXPECT_EQ(r.dmb_token, 0xabcu);
  EXPECT_EQ(r.peer_dmb_token, 0xdefu);
  EXPECT_EQ(r.pid, getpid());
  EXPECT_EQ(r.fd, cli);
  struct stat st;
  ASSERT_EQ(fstat(cli, &st), 0);
  EXPECT_EQ(r.inode, st.st_ino);
  EXPECT_EQ(r.uid, geteuid());
  ASSERT_EQ(r.peer.ss_family, AF_INET);
  EXPECT_EQ(reinterpret_cast<sockaddr_in*>(&r.peer)->sin_port,
            reinterpret_cast<sockaddr_in*>(&la)->sin_port);
  EXPECT_EQ(r.local.ss_family, AF_INET);

  s.engine.mode = engine::Mode::kFailed;
  r = RecordFrom(s, cli);
  EXPECT_EQ(r.mode, ConnMode::kHandshake);
  EXPECT_STREQ(r.state, "FAILED");
  close(cli);
  close(lst);
}

TEST(ListenRecord, IsAListeningServerWithItsAddressInodeAndNoPeer) {
  TempDir dir;
  auto pub = MustCreate(dir.path());
  const int lst = socket(AF_INET6, SOCK_STREAM, 0);
  ASSERT_GE(lst, 0);
  sockaddr_storage any = V6("::1", 0);
  ASSERT_EQ(bind(lst, reinterpret_cast<sockaddr*>(&any), sizeof(sockaddr_in6)),
            0);
  ASSERT_EQ(listen(lst, 1), 0);
  sockaddr_storage la{};
  socklen_t len = sizeof(la);
  getsockname(lst, reinterpret_cast<sockaddr*>(&la), &len);

  const SlotId id = pub->Acquire();
  pub->Update(id, ListenRecord(lst));
  Result<ProcessStatus> ps = ReadStatusFile(pub->path());
  ASSERT_TRUE(ps.ok()) << ps.status();
  ASSERT_EQ(ps->connections.size(), 1u);
  const ConnRecord& r = ps->connections[0];
  EXPECT_STREQ(r.state, "LISTEN");
  EXPECT_EQ(r.mode, ConnMode::kSmcd);
  EXPECT_EQ(r.role, engine::Role::kServer);
  EXPECT_EQ(r.peer.ss_family, AF_UNSPEC);
  ASSERT_EQ(r.local.ss_family, AF_INET6);
  EXPECT_EQ(reinterpret_cast<const sockaddr_in6&>(r.local).sin6_port,
            reinterpret_cast<sockaddr_in6*>(&la)->sin6_port);
  struct stat st;
  ASSERT_EQ(fstat(lst, &st), 0);
  EXPECT_EQ(r.inode, st.st_ino);
  EXPECT_EQ(r.uid, geteuid());
  EXPECT_EQ(r.pid, getpid());
  EXPECT_EQ(r.fd, lst);
  EXPECT_EQ(r.local_reason, 0u);

  // Closing the listener releases its slot: it is no longer reported.
  pub->Release(id);
  ps = ReadStatusFile(pub->path());
  ASSERT_TRUE(ps.ok()) << ps.status();
  EXPECT_TRUE(ps->connections.empty());
  close(lst);
}

}  // namespace
}  // namespace usmc::runtime
