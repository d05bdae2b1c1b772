// tests/preload_test.cc: the interposer's semantics (issue 5), black-box.
// Each test joins a private cgroup with the eBPF negotiation program
// attached, runs tests/preload_probe.cc scenarios under
// LD_PRELOAD=libusmc-preload.so (or without it, for the plain side of mixed
// pairs), and asserts what really happened: the probe checks bytes, errno
// values and event bits itself (exit code 0), and the exit-report line of
// each process (USMC_EXIT_REPORT) says whether its connection was SMC-D or
// TCP with which reason, and how many bytes went which way.
//
//   Run r = RunPair("dup");          // probe pair dup, both under usmc
//   ASSERT_TRUE(r.ok()) << r;
//   ExpectSmcd(Report("probe-srv"), /*in=*/6 * kChunk, /*out=*/kChunk);
#include <dlfcn.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/negotiate_harness.h"
#include "tests/proc_util.h"
#include "wire/reason.h"

extern char** environ;

namespace usmc::preload_test {
namespace {

using json = nlohmann::json;
using negotiate_test::NegotiateCgroup;
using test_proc::EnvMap;
using test_proc::Exit;
using test_proc::Proc;
namespace fs = std::filesystem;

constexpr uint64_t kChunk = 64 << 10;
constexpr int kProcTimeoutMs = test_proc::kDefaultTimeoutMs;

std::string Hex(uint32_t reason) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", reason);
  return buf;
}

// What the client's kernel TCP socket received (BasicClient prints it).
uint64_t TcpBytesReceived(const std::string& out) {
  size_t p = out.find("tcp_bytes_received=");
  if (p == std::string::npos) return ~uint64_t{0};
  return std::stoull(out.substr(p + 19));
}
// SMC-D: the kernel socket carried the CLC handshake only; TCP: everything.
constexpr uint64_t kClcBytesMax = 4096;

// ---- fixture
// ------------------------------------------------------------------

class Preload : public ::testing::Test {
 protected:
  void SetUp() override {
    USMC_REQUIRE_ROOT();
    cg_ = std::make_unique<NegotiateCgroup>();
    ASSERT_TRUE(cg_->ok()) << cg_->error();
    char tmpl[] = "/tmp/usmc-preload-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    report_ = dir_ + "/exit-report.jsonl";
    fs::create_directory(dir_ + "/status");
  }
  void TearDown() override {
    cg_.reset();
    std::error_code ec;
    if (std::getenv("USMC_TEST_KEEP") != nullptr) {
      std::printf("kept %s\n", dir_.c_str());
    } else if (!dir_.empty()) {
      fs::remove_all(dir_, ec);
    }
  }

  EnvMap Env(bool preload, const EnvMap& extra = {}) const {
    // A long CLC timeout: a lost wakeup during the handshake then shows as
    // a hang (the process timeout) instead of a slow success.
    EnvMap env{{"USMC_CLC_TIMEOUT_MS", "60000"},
               {"USMC_EXIT_REPORT", report_},
               {"USMC_STATUS_DIR", dir_ + "/status"},
               {"USMC_CONF", ""}};
    if (preload) test_proc::AddPreload(env, USMC_PRELOAD_LIB);
    for (const auto& [k, v] : extra) env[k] = v;
    return env;
  }

  // Both ends in one probe (fork), both under usmc (or as `env` says).
  Exit RunPair(const std::string& scen, const EnvMap& extra = {},
               const std::string& arg = "") {
    std::vector<std::string> args{USMC_PROBE, "pair", scen};
    if (!arg.empty()) args.push_back(arg);
    Proc p(args, Env(true, extra));
    return p.Wait();
  }

  struct SplitRun {
    Exit server, client;
  };
  // Server and client as separate processes, each with its own env.
  SplitRun RunSplit(const std::string& scen, const EnvMap& server_env,
                    const EnvMap& client_env, const std::string& arg = "",
                    std::function<EnvMap(uint16_t)> client_env_for_port = {}) {
    SplitRun r;
    Proc server({USMC_PROBE, "server", scen}, server_env);
    std::optional<std::string> line = server.ReadLine(kProcTimeoutMs);
    if (!line || line->rfind("PORT ", 0) != 0) {
      r.server = server.Wait(1000);
      r.server.err += "\n[no PORT line]\n";
      return r;
    }
    const uint16_t port = static_cast<uint16_t>(std::stoi(line->substr(5)));
    EnvMap cenv = client_env;
    if (client_env_for_port) {
      for (const auto& [k, v] : client_env_for_port(port)) cenv[k] = v;
    }
    std::vector<std::string> args{USMC_PROBE, "client", scen,
                                  std::to_string(port)};
    if (!arg.empty()) args.push_back(arg);
    Proc client(args, cenv);
    r.client = client.Wait();
    r.server = server.Wait();
    return r;
  }

  // Every exit-report line so far.
  std::vector<json> Reports() const {
    std::vector<json> v;
    std::ifstream in(report_);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      EXPECT_FALSE(j.is_discarded()) << "bad exit-report line: " << line;
      if (!j.is_discarded()) v.push_back(j);
    }
    return v;
  }
  std::string AllReports() const {
    std::string s;
    for (const json& j : Reports()) s += j.dump() + "\n";
    return s.empty() ? "(no exit-report lines)\n" : s;
  }
  // The report lines of processes named `comm`.
  std::vector<json> ReportsOf(const std::string& comm) const {
    std::vector<json> v;
    for (const json& j : Reports()) {
      if (j.value("comm", "") == comm) v.push_back(j);
    }
    return v;
  }
  // Exactly one line of process `comm` (else a failure and an empty json).
  json Report(const std::string& comm) const {
    std::vector<json> v = ReportsOf(comm);
    EXPECT_EQ(v.size(), 1u) << "exit-report lines of " << comm << ":\n"
                            << AllReports();
    return v.size() == 1 ? v[0] : json::object();
  }

  std::unique_ptr<NegotiateCgroup> cg_;
  std::string dir_, report_;
};

uint64_t U(const json& j, const char* key) {
  const json* v = j.contains(key) ? &j.at(key) : nullptr;
  return v != nullptr && v->is_number_unsigned() ? v->get<uint64_t>()
                                                 : ~uint64_t{0};
}

// The process's connection was SMC-D: no fallback, the bytes through SMC.
void ExpectSmcd(const json& r, uint64_t in, uint64_t out, uint64_t smcd = 1) {
  SCOPED_TRACE(r.dump());
  EXPECT_EQ(U(r, "smcd"), smcd);
  EXPECT_EQ(U(r, "tcp"), 0u);
  EXPECT_TRUE(r.contains("fallback_reasons") &&
              r["fallback_reasons"].is_object() &&
              r["fallback_reasons"].empty());
  EXPECT_EQ(U(r, "bytes_smcd_in"), in);
  EXPECT_EQ(U(r, "bytes_smcd_out"), out);
  EXPECT_EQ(U(r, "bytes_tcp_in"), 0u);
  EXPECT_EQ(U(r, "bytes_tcp_out"), 0u);
  // No RDMA device serves loopback (nor, usually, this host): no verbs
  // context was opened, so SMC-R was never offered (preload/smcr.h).
  EXPECT_EQ(U(r, "smcr"), 0u);
  EXPECT_EQ(U(r, "smcr_devices"), 0u);
}

// One connection that stayed TCP for `reason`.
void ExpectTcp(const json& r, uint32_t reason, uint64_t in, uint64_t out) {
  SCOPED_TRACE(r.dump());
  EXPECT_EQ(U(r, "smcd"), 0u);
  EXPECT_EQ(U(r, "tcp"), 1u);
  EXPECT_EQ(r.value("fallback_reasons", json::object()),
            json({{Hex(reason), 1}}))
      << "want " << wire::FormatReason(reason);
  EXPECT_EQ(U(r, "bytes_tcp_in"), in);
  EXPECT_EQ(U(r, "bytes_tcp_out"), out);
  EXPECT_EQ(U(r, "bytes_smcd_in"), 0u);
  EXPECT_EQ(U(r, "bytes_smcd_out"), 0u);
  EXPECT_EQ(U(r, "smcr_devices"), 0u);
}

// A process that used no SMC at all (not opted in): no line, or zeros.
void ExpectNoSmc(const std::vector<json>& lines) {
  for (const json& r : lines) {
    SCOPED_TRACE(r.dump());
    EXPECT_EQ(U(r, "smcd"), 0u);
    EXPECT_EQ(U(r, "bytes_smcd_in"), 0u);
    EXPECT_EQ(U(r, "bytes_smcd_out"), 0u);
  }
}

// ---- data path, dup, fork
// --------------------------------------------------------

TEST_F(Preload, BasicBothEndsSmcd) {
  Exit r = RunPair("basic");
  ASSERT_TRUE(r.ok()) << r;
  EXPECT_LE(TcpBytesReceived(r.out), kClcBytesMax) << r;
  ExpectSmcd(Report("probe-srv"), 1 << 20, 512 << 10);
  ExpectSmcd(Report("probe-cli"), 512 << 10, 1 << 20);
}

// Processes of another uid must be able to write the exit report and the
// status files.
void OpenToAllUids(const std::string& dir, const std::string& report) {
  ::chmod(dir.c_str(), 0755);
  ::chmod((dir + "/status").c_str(), 01777);
  std::FILE* f = std::fopen(report.c_str(), "a");
  if (f != nullptr) std::fclose(f);
  ::chmod(report.c_str(), 0666);
}

// Client and server under different uids (the client as nobody) really use
// SMC-D. Before, the server declined every peer of another uid, and the
// handover needed to read the peer's /proc fd table: TCP fallback.
TEST_F(Preload, CrossUidPairUsesSmcd) {
  OpenToAllUids(dir_, report_);
  Proc server({USMC_PROBE, "server", "basic"}, Env(true));
  std::optional<std::string> line = server.ReadLine(kProcTimeoutMs);
  ASSERT_TRUE(line && line->rfind("PORT ", 0) == 0) << server.Wait(1000);
  Proc client(
      {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
       USMC_PROBE, "client", "basic", line->substr(5)},
      Env(true));
  Exit c = client.Wait();
  Exit s = server.Wait();
  ASSERT_TRUE(c.ok()) << c;
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_LE(TcpBytesReceived(c.out), kClcBytesMax) << c;
  ExpectSmcd(Report("probe-srv"), 1 << 20, 512 << 10);
  ExpectSmcd(Report("probe-cli"), 512 << 10, 1 << 20);
}

// A server that accepts as root and serves in a worker that dropped to
// nobody, against a root client: SMC-D. Before, the worker could not read
// the client's /proc fd table and the connection fell back to TCP. The
// client confirms only once the worker runs (without its progress thread),
// so the worker decides the handshake: a Confirm that came at once let the
// parent's accept() decide it (worker smcd 0 with every byte SMC-D).
TEST_F(Preload, PrivilegeDroppingServerWorkerUsesSmcd) {
  OpenToAllUids(dir_, report_);
  SplitRun r = RunSplit("drop-worker", Env(true),
                        Env(true, {{"USMC_PROGRESS_THREAD", "0"}}));
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  EXPECT_LE(TcpBytesReceived(r.client.out), kClcBytesMax) << r.client;
  ExpectSmcd(Report("probe-worker"), 1 << 20, 512 << 10);
  ExpectSmcd(Report("probe-cli"), 512 << 10, 1 << 20);
  // The parent only accepted: it decided nothing and moved no byte.
  ExpectNoSmc(ReportsOf("probe-srv"));
}

TEST_F(Preload, DupFamilySharesTheConnection) {
  Exit r = RunPair("dup");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 6 * kChunk, kChunk);
  ExpectSmcd(Report("probe-cli"), kChunk, 6 * kChunk);
}

// Client-side processes together sent what the server got (a forked child
// does not count its parent's bytes again).
void ExpectForkSplit(const std::vector<json>& cli,
                     const std::vector<json>& cli2, uint64_t out_total) {
  ASSERT_EQ(cli.size(), 1u);
  ASSERT_EQ(cli2.size(), 1u);
  EXPECT_EQ(U(cli[0], "bytes_smcd_out") + U(cli2[0], "bytes_smcd_out"),
            out_total)
      << cli[0].dump() << "\n"
      << cli2[0].dump();
  EXPECT_EQ(U(cli[0], "bytes_tcp_out") + U(cli2[0], "bytes_tcp_out"), 0u);
}

TEST_F(Preload, ForkChildClosesItsReference) {
  Exit r = RunPair("fork");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 3 * kChunk, kChunk);
  ExpectForkSplit(ReportsOf("probe-cli"), ReportsOf("probe-cli2"), 3 * kChunk);
}

TEST_F(Preload, ForkChildExitsWithoutClosing) {
  Exit r = RunPair("fork-noclose");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 3 * kChunk, kChunk);
  ExpectForkSplit(ReportsOf("probe-cli"), ReportsOf("probe-cli2"), 3 * kChunk);
}

TEST_F(Preload, ForkParentClosesChildCarriesOn) {
  Exit r = RunPair("fork-parent-closes");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 2 * kChunk, kChunk);
  ExpectForkSplit(ReportsOf("probe-cli"), ReportsOf("probe-cli2"), 2 * kChunk);
}

// A thread reads the connection while another forks (git clone): the
// children must not hang in fork() on a lock of the parent's thread.
TEST_F(Preload, ForkWhileAnotherThreadIsInTheConnection) {
  Exit r = RunPair("fork-while-reading");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), kChunk, kChunk);
  ExpectSmcd(Report("probe-cli"), kChunk, kChunk);
}

TEST_F(Preload, VforkExecOfAProgramThatInheritsTheSocket) {
  Exit r = RunPair("vfork");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 3 * kChunk, kChunk);
  ExpectSmcd(Report("probe-cli"), kChunk, 3 * kChunk);
}

TEST_F(Preload, ThreadsShareOneSocketFullDuplex) {
  Exit r = RunPair("threads");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 2 << 20, 2 << 20);
  ExpectSmcd(Report("probe-cli"), 2 << 20, 2 << 20);
}

// Eight threads send 64-byte records on one socket into a small DMB that a
// slow reader keeps full: a send that fits the DMB is placed whole, so no
// record is split by another thread's (the probe checks each record).
TEST_F(Preload, RecordsFromEightThreadsAreNeverSplit) {
  Exit r = RunPair("records", {{"USMC_DMB_SIZE", "16384"}});
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 8 * 1500 * 64, 0);
  ExpectSmcd(Report("probe-cli"), 0, 8 * 1500 * 64);
}

// ---- wrapped calls
// ---------------------------------------------------------------

TEST_F(Preload, FortifiedReadRecvRecvfromPoll) {
  // The probe really calls the _chk variants (else this proves nothing).
  negotiate_test::CommandResult nm = negotiate_test::RunCommand(
      std::string("nm -D --undefined-only ") + USMC_PROBE);
  ASSERT_EQ(nm.exit_code, 0) << nm.err;
  for (const char* sym :
       {"__read_chk", "__recv_chk", "__recvfrom_chk", "__poll_chk"}) {
    EXPECT_NE(nm.out.find(sym), std::string::npos) << sym << " not used";
  }
  Exit r = RunPair("fortify");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 3 * kChunk, kChunk);
  ExpectSmcd(Report("probe-cli"), kChunk, 3 * kChunk);
}

TEST_F(Preload, SendfileAndSplice) {
  Exit r = RunPair("splice");
  ASSERT_TRUE(r.ok()) << r;
  const uint64_t total = (300 << 10) + (100 << 10) + (64 << 10);
  ExpectSmcd(Report("probe-srv"), total, 1);
  ExpectSmcd(Report("probe-cli"), 1, total);
}

TEST_F(Preload, RecvmmsgSendmmsg) {
  Exit r = RunPair("mmsg");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 32 * 4096, 8 * 4096);
  ExpectSmcd(Report("probe-cli"), 8 * 4096, 32 * 4096);
}

TEST_F(Preload, CloseRangeDropsOnlyItsFds) {
  Exit r = RunPair("close-range");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 2 * kChunk, 0);
  ExpectSmcd(Report("probe-cli"), 0, 2 * kChunk);
}

// ---- readiness: epoll, poll, select
// ------------------------------------------------

// Steps scenarios: the client sends n steps of 100 bytes, each acked.
class PreloadSteps
    : public Preload,
      public ::testing::WithParamInterface<std::pair<std::string, int>> {};

TEST_P(PreloadSteps, EventsAndBytes) {
  const auto [scen, steps] = GetParam();
  Exit r = RunPair(scen);
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 100 * steps, steps);
  ExpectSmcd(Report("probe-cli"), steps, 100 * steps);
}

// The same with epoll's scan mode off: small sets then run the mode that
// large and nested sets use (preload/epoll.cc), doorbells armed between
// calls and readiness mirrored into the kernel.
TEST_P(PreloadSteps, EventsAndBytesKernelVisibleEpoll) {
  const auto [scen, steps] = GetParam();
  Exit r = RunPair(scen, {{"USMC_EPOLL_SCAN", "0"}});
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 100 * steps, steps);
  ExpectSmcd(Report("probe-cli"), steps, 100 * steps);
}

INSTANTIATE_TEST_SUITE_P(
    Readiness, PreloadSteps,
    ::testing::Values(std::pair<std::string, int>{"epoll-lt", 2},
                      std::pair<std::string, int>{"epoll-et", 2},
                      std::pair<std::string, int>{"epoll-oneshot", 2},
                      std::pair<std::string, int>{"epoll-rdhup", 1},
                      std::pair<std::string, int>{"epoll-multi", 2},
                      std::pair<std::string, int>{"epoll-nested", 1},
                      std::pair<std::string, int>{"poll", 4}),
    [](const auto& info) {
      std::string n = info.param.first;
      for (char& c : n) {
        if (c == '-') c = '_';
      }
      return n;
    });

// ---- how a close reaches the other side (as TCP) ---------------------------

// The scenario's checks are TCP's behaviour: they must hold over plain TCP
// (no preload) and under usmc with both ends SMC-D.
class PreloadClose : public Preload,
                     public ::testing::WithParamInterface<std::string> {};

TEST_P(PreloadClose, SameAsTcp) {
  const std::string scen = GetParam();
  {
    Proc plain({USMC_PROBE, "pair", scen}, Env(false));
    Exit r = plain.Wait();
    ASSERT_TRUE(r.ok()) << "plain TCP: " << r;
    ExpectNoSmc(Reports());
  }
  Exit r = RunPair(scen);
  ASSERT_TRUE(r.ok()) << "usmc: " << r;
  for (const char* comm : {"probe-srv", "probe-cli"}) {
    json j = Report(comm);
    SCOPED_TRACE(j.dump());
    EXPECT_EQ(U(j, "smcd"), 1u);
    EXPECT_EQ(U(j, "tcp"), 0u);
    EXPECT_EQ(U(j, "bytes_tcp_in"), 0u);
    EXPECT_EQ(U(j, "bytes_tcp_out"), 0u);
  }
}

// epoll-order (tests/preload_probe_close.cc): an edge-triggered server sees
// the connection whose bytes came first first, and loses no edge (under
// usmc it hung until ET sets learned of publishes made while the doorbell
// was not armed).
TEST_F(Preload, EpollEtReportsInArrivalOrderAsTcp) {
  {
    Proc plain({USMC_PROBE, "pair", "epoll-order"}, Env(false));
    Exit r = plain.Wait();
    ASSERT_TRUE(r.ok()) << "plain TCP: " << r;
  }
  Exit r = RunPair("epoll-order");
  ASSERT_TRUE(r.ok()) << "usmc: " << r;
  r = RunPair("epoll-order", {{"USMC_EPOLL_SCAN", "0"}});
  ASSERT_TRUE(r.ok()) << "usmc, kernel-visible epoll: " << r;
}

INSTANTIATE_TEST_SUITE_P(Close, PreloadClose,
                         ::testing::Values("close-unread", "send-after-close",
                                           "close-blocked"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

// Many connections, one epoll set (tests/preload_probe_wake.cc): the server
// wakes a sleeping client once for all of them (sleep tokens), and still
// every byte is reported; with two threads asleep in the set, each is woken
// for its own connection, as TCP does.
TEST_F(Preload, FanInToOneSleepingSetReportsEveryConnection) {
  Exit r = RunPair("fan-in");
  ASSERT_TRUE(r.ok()) << r;
  // Data: a byte per connection and round (and one ack each way after
  // the connect); control: an ack per round, plus two.
  ExpectSmcd(Report("probe-cli"), 200 * 16, 202 + 16, /*smcd=*/17);
  ExpectSmcd(Report("probe-srv"), 202 + 16, 200 * 16, /*smcd=*/17);
}

TEST_F(Preload, TwoThreadsAsleepInOneSetAreBothWoken) {
  Exit r = RunPair("two-sleepers");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-cli"), 100 * 2, 102 + 4, /*smcd=*/5);
}

// A thread asleep in epoll_wait, and another adds (or re-arms) an
// established SMC-D connection in that set: the sleeper wakes for the
// peer's byte, as it would for TCP, whether the set is in scan mode (where
// usmc registers nothing with the kernel until a sleep) or kernel-visible,
// and whether or not the set held a usmc connection when the thread went
// to sleep (tests/preload_probe_wake.cc late-add).
class PreloadLateAdd : public Preload,
                       public ::testing::WithParamInterface<const char*> {};

TEST_P(PreloadLateAdd, SleeperWakesForAConnectionAddedDuringItsSleep) {
  for (const char* scan : {"1", "0"}) {
    SCOPED_TRACE(std::string("USMC_EPOLL_SCAN=") + scan);
    fs::remove(report_);
    Exit r = RunPair("late-add", {{"USMC_EPOLL_SCAN", scan}}, GetParam());
    EXPECT_TRUE(r.ok()) << r;
    if (!r.ok()) continue;
    // Control: an ack after connecting and two more; each connection's
    // ack; the byte the sleeper was woken for. "shrink": 65 connections
    // more, each with its ack.
    const uint64_t more = std::string(GetParam()) == "shrink" ? 65 : 0;
    ExpectSmcd(Report("probe-cli"), 1, 5 + more, /*smcd=*/3 + more);
    ExpectSmcd(Report("probe-srv"), 5 + more, 1, /*smcd=*/3 + more);
  }
}

INSTANTIATE_TEST_SUITE_P(Wake, PreloadLateAdd,
                         ::testing::Values("add", "add-et", "add-oneshot",
                                           "mod", "mod-et", "mod-oneshot",
                                           "readd", "first", "shrink"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

// The server accepts four connections before it touches any, the client
// connects them with blocking connects: the progress thread drives the
// handshakes accept() left undecided (preload/unattended.h), so every
// connection is SMC-D (without it, all four ended in TCP, after seconds).
TEST_F(Preload, BlockingAcceptLoopDrivesEarlierHandshakes) {
  Exit r = RunPair("accept-first");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-cli"), 4, 4, /*smcd=*/4);
  ExpectSmcd(Report("probe-srv"), 4, 4, /*smcd=*/4);
}

// A forking server and eight clients at once: the parent's progress thread
// stops driving a handshake once a child holds it too (two processes
// reading one socket's CLC bytes broke it: ERR_RTOK, ECONNABORTED).
TEST_F(Preload, ForkingServerChildrenHandshakeAlone) {
  Exit r = RunPair("fork-serve");
  ASSERT_TRUE(r.ok()) << r;
  const uint64_t bytes = 8 * (256 << 10);
  ExpectSmcd(Report("probe-cli"), bytes, bytes, /*smcd=*/8);
}

// A forking server whose parent closes each connection while its handshake
// is still undecided, connections one after the other from one client
// (PostgreSQL under pgbench -C): the parent's close freed the DMB slot the
// child still used, and the pair's next connection took it: the lingering
// child lost the client's last 5 bytes, or the new connection was aborted.
TEST_F(Preload, ForkingServerParentCloseLeavesTheChildsSlot) {
  Exit r = RunPair("fork-seq");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-cli"), 24 * (4 << 10), 24 * ((4 << 10) + 5),
             /*smcd=*/24);
}

// Accepted SMC-D sockets passed to a worker over a Unix socketpair
// (tests/preload_probe_pass.cc): the worker takes the connection along
// (its DMBs and cursors) and serves it over SMC-D; the listener closed its
// copy at once. Before usmc carried the connection, the worker read an
// idle TCP socket (0 of 50 requests answered).
class PreloadPass : public Preload,
                    public ::testing::WithParamInterface<const char*> {};

TEST_P(PreloadPass, WorkerServesPassedSmcdConnections) {
  std::string scen = GetParam();
  // "-memfd": one memfd per DMB (USMC_SHM_ARENA=0), the other exec/pass
  // record layout; else arenas: the worker (our uid) takes the listener's
  // whole pair with each connection.
  EnvMap env;
  if (scen.ends_with("-memfd")) {
    scen.resize(scen.size() - 6);
    env["USMC_SHM_ARENA"] = "0";
  }
  Exit r = RunPair(scen, env);
  ASSERT_TRUE(r.ok()) << r << AllReports();
  const uint64_t req = 50 * 4096, reply = 50 * (96 << 10);
  ExpectSmcd(Report("probe-cli"), reply, req, /*smcd=*/50);
  if (scen == "pass-back") {
    // The worker read the requests; the listener, given each socket back,
    // wrote the replies.
    ExpectSmcd(Report("probe-wrk"), req, 0, /*smcd=*/0);
    ExpectSmcd(Report("probe-srv"), 0, reply, /*smcd=*/50);
  } else {
    ExpectSmcd(Report("probe-wrk"), req, reply, /*smcd=*/0);
    ExpectSmcd(Report("probe-srv"), 0, 0, /*smcd=*/50);
  }
}

INSTANTIATE_TEST_SUITE_P(Scenarios, PreloadPass,
                         ::testing::Values("pass-stream", "pass-dgram-many",
                                           "pass-late", "pass-back",
                                           "pass-stream-memfd",
                                           "pass-back-memfd"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

// The worker hands the connections back and exits before the listener
// closes its own copies: then only the messages in flight hold them, as
// they hold the kernel's sockets. The listener's close ended each
// connection (the sender's pass marker died with the worker), and the
// client read EOF where the reply was to come (pass_back, 1 run in 30
// under load, when the last batch's worker exited early).
TEST_F(Preload, PassBackAfterTheWorkerExitedKeepsTheConnections) {
  Exit r = RunPair("pass-back-exited");
  ASSERT_TRUE(r.ok()) << r << AllReports();
  const uint64_t req = 5 * 4096, reply = 5 * (96 << 10);
  ExpectSmcd(Report("probe-cli"), reply, req, /*smcd=*/5);
  ExpectSmcd(Report("probe-wrk"), req, 0, /*smcd=*/0);
  ExpectSmcd(Report("probe-srv"), 0, reply, /*smcd=*/5);
}

// The client passes its SMC-D socket to a program without usmc (static):
// the connection cannot go along, so it is reset, loudly; that program's
// socket fails and the server sees ECONNRESET. Before, the program got an
// idle TCP socket whose bytes were in shared memory.
TEST_F(Preload, PassToAProgramWithoutUsmcResets) {
  SplitRun r =
      RunSplit("pass-static", Env(true), Env(true), USMC_PROBE_STATIC_BIN);
  EXPECT_NE(r.client.err.find("cannot move to the receiving process"),
            std::string::npos)
      << "no message about the reset connection\n"
      << r.client;
  EXPECT_TRUE(r.client.ok()) << r.client;
  EXPECT_TRUE(r.server.ok()) << "the peer did not see ECONNRESET\n" << r.server;
}

// A root process hands its SMC-D connection to a worker that changed its
// uid after the socketpair was made (a privileged master and its workers):
// the worker holds the TCP socket, which is what the handover's threat
// model trusts (docs/dev-shm.md), and it trusts root's state, so it takes
// the connection along and its bytes move over SMC-D. Before, the
// connection was reset ("runs under another uid") and the worker failed.
TEST_F(Preload, PassToAnotherUidFromRootKeepsSmcd) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the worker as nobody";
  SplitRun r = RunSplit("pass-otheruid", Env(true), Env(true));
  EXPECT_EQ(r.client.err.find("cannot move"), std::string::npos) << r.client;
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  // The worker (uid 65534) cannot write this test's report; the server's
  // line says every byte, the worker's too, went through shared memory
  // (out: the reply and the go-ahead byte to the client).
  ExpectSmcd(Report("probe-srv"), 4096 + 8192, (256 << 10) + 1);
}

// Between two ordinary uids it is reset, loudly: the receiver would not
// trust a state another user could have forged. Before, the receiver got
// the usmc fds too (six instead of one) and an idle TCP socket.
TEST_F(Preload, PassBetweenTwoUsersResets) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the worker as nobody";
  SplitRun r =
      RunSplit("pass-otheruid-user", Env(true), Env(true), /*arg=*/"user");
  EXPECT_NE(r.client.err.find("runs under another uid"), std::string::npos)
      << r.client;
  EXPECT_TRUE(r.client.ok()) << r.client;
  EXPECT_TRUE(r.server.ok()) << "the peer did not see ECONNRESET\n" << r.server;
}

// Arena DMBs: a connection alone in its pair goes to the worker with both
// arenas and stays SMC-D there; the listener retires the pair, so the
// client's next connection starts a new one (after one "unknown pair"
// answer, never a fallback). Before, ExportForPass refused arena
// connections: every one was reset.
TEST_F(Preload, PassArenaConnectionAloneInItsPair) {
  Exit r = RunPair("pass-arena-alone");
  ASSERT_TRUE(r.ok()) << r << AllReports();
  const uint64_t req = 10 * 4096, reply = 10 * (96 << 10);
  ExpectSmcd(Report("probe-cli"), reply, req, /*smcd=*/10);
  ExpectSmcd(Report("probe-srv"), 0, 0, /*smcd=*/10);
  ExpectSmcd(Report("probe-wrk"), req, reply, /*smcd=*/0);
}

// Two live connections of one client process share the listener's pair;
// the worker runs under the listener's uid, so the passed one goes with
// the whole pair (docs/dev-shm.md, threat model: that worker could ptrace
// the listener anyway) and both carry on over SMC-D, the passed one in the
// worker. Before, the passed one was reset ("shares its shared-memory
// arenas"): the reason arenas were not the default.
TEST_F(Preload, PassArenaConnectionSharingItsPairGoesToTheSameUid) {
  Exit r = RunPair("pass-arena-shared");
  ASSERT_TRUE(r.ok()) << r << AllReports();
  EXPECT_EQ(r.err.find("cannot move"), std::string::npos) << r;
  ExpectSmcd(Report("probe-cli"), 2 * (96 << 10), 2 * 4096, /*smcd=*/2);
  ExpectSmcd(Report("probe-srv"), 2 * 4096, 96 << 10, /*smcd=*/2);
  ExpectSmcd(Report("probe-wrk"), 0, 96 << 10, /*smcd=*/0);
}

// Root hands a worker of another uid (65534) one of two live connections
// from one client process: its arenas would show that worker the other
// connection, so it is reset, loudly, and the other one carries on.
TEST_F(Preload, PassArenaConnectionSharingItsPairToAnotherUidResets) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the worker as nobody";
  SplitRun r = RunSplit("pass-otheruid-shared", Env(true), Env(true));
  EXPECT_NE(r.client.err.find("shares its shared-memory arenas"),
            std::string::npos)
      << "no message naming the reason\n"
      << r.client;
  EXPECT_TRUE(r.client.ok()) << r.client;
  EXPECT_TRUE(r.server.ok()) << r.server;
}

// The same after the pair's earlier connection ended: its freed slots keep
// that connection's bytes (warm slots are not cleared), so only a pair's
// first and only connection goes to another uid. Before, "alone in its
// pair" was enough, and the worker could read the earlier request.
TEST_F(Preload, PassArenaConnectionAfterAnEarlierOneToAnotherUidResets) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the worker as nobody";
  SplitRun r = RunSplit("pass-otheruid-earlier", Env(true), Env(true));
  EXPECT_NE(r.client.err.find("held earlier connections"), std::string::npos)
      << "no message naming the reason\n"
      << r.client;
  EXPECT_TRUE(r.client.ok()) << r.client;
  EXPECT_TRUE(r.server.ok()) << r.server;
}

TEST_F(Preload, NonblockingConnectEpollOut) {
  Exit r = RunPair("nb-epoll");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 256 << 10, 256 << 10);
  ExpectSmcd(Report("probe-cli"), 256 << 10, 256 << 10);
}

TEST_F(Preload, NonblockingConnectPollOut) {
  Exit r = RunPair("nb-poll");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 256 << 10, 256 << 10);
  ExpectSmcd(Report("probe-cli"), 256 << 10, 256 << 10);
}

// A socket added to epoll before its non-blocking connect (nginx's
// upstream connections: ADD IN|OUT|RDHUP|ET, then connect): once SMC-D,
// its registration reports the bytes that arrive in shared memory (a reply
// of several DMBs), with the app's flags and data, in both epoll modes.
// "-dup": a dup of the socket was registered and carries the connection;
// "-reuse": a closed socket's registration under the same number stays gone;
// "-fired": a ONESHOT that fired before connect stays disarmed until MOD.
class PreloadEarlyEpoll
    : public Preload,
      public ::testing::WithParamInterface<std::tuple<std::string, bool>> {};

TEST_P(PreloadEarlyEpoll, RegisteredBeforeConnectReportsSmcdData) {
  const auto [mode, scan] = GetParam();
  EnvMap env;
  if (!scan) env["USMC_EPOLL_SCAN"] = "0";
  Exit r = RunPair("epoll-before-connect", env, mode);
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 64 << 10, 3 << 20);
  ExpectSmcd(Report("probe-cli"), 3 << 20, 64 << 10);
}

INSTANTIATE_TEST_SUITE_P(
    Readiness, PreloadEarlyEpoll,
    ::testing::Combine(::testing::Values("et", "lt", "oneshot", "et-dup",
                                         "lt-reuse", "oneshot-dup",
                                         "oneshot-fired"),
                       ::testing::Bool()),
    [](const auto& info) {
      std::string n = std::get<0>(info.param);
      for (char& c : n) {
        if (c == '-') c = '_';
      }
      return n + (std::get<1>(info.param) ? "_scan" : "_kernel_visible");
    });

// The same against a server without usmc: the connection is TCP
// (PEERNOSMC) and the kernel's epoll items, made before connect, serve it.
TEST_F(Preload, RegisteredBeforeConnectToAPlainServer) {
  for (const char* mode : {"et", "lt", "oneshot-dup"}) {
    SCOPED_TRACE(mode);
    SplitRun r = RunSplit("epoll-before-connect", Env(false), Env(true), mode);
    ASSERT_TRUE(r.client.ok()) << r.client;
    ASSERT_TRUE(r.server.ok()) << r.server;
  }
  std::vector<json> cli = ReportsOf("probe-cli");
  ASSERT_EQ(cli.size(), 3u) << AllReports();
  for (const json& j : cli) {
    ExpectTcp(j, wire::kReasonPeerNoSmc, 3 << 20, 64 << 10);
  }
  EXPECT_TRUE(ReportsOf("probe-srv").empty()) << AllReports();
}

// A listener added to epoll before listen(): its readiness is the kernel's
// (accepts), and the accepted connection is SMC-D.
TEST_F(Preload, ListenerRegisteredBeforeListen) {
  Exit r = RunPair("epoll-before-listen");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-cli"), 64 << 10, 64 << 10);
  ExpectSmcd(Report("probe-cli2"), 64 << 10, 64 << 10);
}

// The server's application accepts only after the client wrote (as Redis
// in DEBUG SLEEP, its MIGRATE test): the client's connect is writable and
// takes the request at once (early data), and the connection is SMC-D.
TEST_F(Preload, ClientWritesBeforeTheServerAccepts) {
  Exit r = RunPair("busy-accept", {{"USMC_CLC_TIMEOUT_MS", "30000"}});
  ASSERT_TRUE(r.ok()) << r;
  // The control connection carried the client's one go-ahead byte.
  ExpectSmcd(Report("probe-srv"), 3000 + 1, 70000, 2);
  ExpectSmcd(Report("probe-cli"), 70000, 3000 + 1, 2);
}

// The client forks (and the child exits) while its request is early data:
// the parent sends it first, over TCP after a Decline if the server still
// sleeps, and the server reads it exactly once (then EOF).
TEST_F(Preload, ForkWithEarlyDataSendsItOnce) {
  Exit r = RunPair("busy-accept-fork", {{"USMC_CLC_TIMEOUT_MS", "30000"}});
  ASSERT_TRUE(r.ok()) << r;
  uint64_t srv_in = 0, cli_out = 0;
  for (const json& j : ReportsOf("probe-srv")) {
    srv_in += U(j, "bytes_smcd_in") + U(j, "bytes_tcp_in");
  }
  for (const json& j : ReportsOf("probe-cli")) {
    cli_out += U(j, "bytes_smcd_out") + U(j, "bytes_tcp_out");
  }
  EXPECT_EQ(srv_in, 3000u + 1) << AllReports();
  EXPECT_EQ(cli_out, 3000u + 1) << AllReports();
  const json srv = Report("probe-srv");
  EXPECT_EQ(srv.value("fallback_reasons", json::object()),
            json({{Hex(wire::kReasonPeerDecl), 1}}))
      << AllReports();
}

// Edge-triggered, writing until EAGAIN before the server accepts: the
// decision must be a new EPOLLOUT edge.
TEST_F(Preload, ClientWritesUntilEagainBeforeTheServerAcceptsEt) {
  Exit r = RunPair("busy-accept-et", {{"USMC_CLC_TIMEOUT_MS", "30000"}});
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), (64 << 10) + 1, 70000, 2);
  ExpectSmcd(Report("probe-cli"), 70000, (64 << 10) + 1, 2);
}

TEST_F(Preload, RefusedConnectReportsEconnrefused) {
  Proc p({USMC_PROBE, "client", "refused", "0"}, Env(true));
  Exit r = p.Wait();
  ASSERT_TRUE(r.ok()) << r;
  ExpectNoSmc(Reports());
}

// ---- socket options and flags
// -------------------------------------------------------

TEST_F(Preload, RcvlowatAndFionread) {
  Exit r = RunPair("lowat");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 2200, 3);
  ExpectSmcd(Report("probe-cli"), 3, 2200);
}

TEST_F(Preload, OobAndSiocatmark) {
  Exit r = RunPair("oob");
  ASSERT_TRUE(r.ok()) << r;
  json s = Report("probe-srv");
  EXPECT_EQ(U(s, "smcd"), 1u) << s.dump();
  EXPECT_EQ(U(s, "tcp"), 0u) << s.dump();
}

TEST_F(Preload, PeekAndWaitall) {
  Exit r = RunPair("peek");
  ASSERT_TRUE(r.ok()) << r;
  const uint64_t in = 1000 + (64 << 10) + 4000;
  ExpectSmcd(Report("probe-srv"), in, 3);
  ExpectSmcd(Report("probe-cli"), 3, in);
}

TEST_F(Preload, EintrAndSaRestartAsTheKernel) {
  Exit r = RunPair("eintr");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 100, 1);
  ExpectSmcd(Report("probe-cli"), 1, 100);
}

// ---- exec
// --------------------------------------------------------------------------

TEST_F(Preload, ExecReattachesTheSocket) {
  SplitRun r = RunSplit("exec", Env(true), Env(true));
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  ExpectSmcd(Report("probe-srv"), 3 * kChunk, kChunk + 1);
  ExpectSmcd(Report("probe-cli"), 1, kChunk);
  // The new image counts the adopted connection's bytes as SMC-D.
  json e = Report("probe-exec");
  SCOPED_TRACE(e.dump());
  EXPECT_EQ(U(e, "bytes_smcd_out"), 2 * kChunk);
  EXPECT_EQ(U(e, "bytes_smcd_in"), kChunk);
  EXPECT_EQ(U(e, "bytes_tcp_out"), 0u);
  EXPECT_EQ(U(e, "bytes_tcp_in"), 0u);
}

TEST_F(Preload, ExecClosingTheLastReferenceEndsTheConnection) {
  SplitRun r = RunSplit("exec-cloexec", Env(true), Env(true));
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << "the peer did not see an orderly EOF\n"
                             << r.server;
  ExpectSmcd(Report("probe-srv"), kChunk, 1);
  ExpectSmcd(Report("probe-cli"), 1, kChunk);
}

TEST_F(Preload, ExecOfAStaticProgramFailsLoudly) {
  SplitRun r =
      RunSplit("exec-static", Env(true), Env(true), USMC_PROBE_STATIC_BIN);
  EXPECT_NE(r.client.err.find("cannot move"), std::string::npos)
      << "no message about the dropped connection\n"
      << r.client;
  EXPECT_TRUE(r.client.ok())
      << "the static program's socket did not fail (it must not be a "
         "silent idle TCP socket)\n"
      << r.client;
  EXPECT_TRUE(r.server.ok()) << "the peer did not see ECONNRESET\n" << r.server;
}

// fork, the socket onto 0 and 1, small numbers dup2'ed over, every fd from 3
// closed, exec (Python's close_fds, git daemon, sshd's re-exec): usmc's own
// fds survive, and the connection moves to the new image as SMC-D.
class PreloadExecCloseAll : public Preload,
                            public ::testing::WithParamInterface<std::string> {
};

TEST_P(PreloadExecCloseAll, ConnectionMovesAsSmcd) {
  SplitRun r = RunSplit(GetParam(), Env(true), Env(true));
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  EXPECT_EQ(r.client.err.find("usmc:"), std::string::npos) << r.client;
  ExpectSmcd(Report("probe-srv"), 3 * kChunk, kChunk + 1);
  json e = Report("probe-exec");
  SCOPED_TRACE(e.dump());
  EXPECT_EQ(U(e, "bytes_smcd_out"), 2 * kChunk);
  EXPECT_EQ(U(e, "bytes_smcd_in"), kChunk);
  EXPECT_EQ(U(e, "bytes_tcp_out"), 0u);
  EXPECT_EQ(U(e, "bytes_tcp_in"), 0u);
  EXPECT_EQ(U(e, "handshake_errors"), 0u);
}

// stdio through fdopen() on an SMC-D socket: glibc's FILE writes with its
// internal write(2), which usmc must not let reach the kernel TCP socket.
TEST_F(Preload, FdopenStreamMovesItsBytesOverSmcd) {
  Exit r = RunPair("fdopen");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), kChunk, kChunk);
  ExpectSmcd(Report("probe-cli"), kChunk, kChunk);
}

// A TCP connection (the client has no usmc) served by a forked child in a
// seccomp sandbox that kills on recvfrom/sendto and allows read/write (sshd's
// pre-auth child): usmc must make the calls the app makes.
TEST_F(Preload, TcpConnectionInASeccompSandboxKeepsTheAppsCalls) {
  SplitRun r = RunSplit("sandbox-tcp", Env(true), Env(false));
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  json s = Report("probe-srv");
  SCOPED_TRACE(s.dump());
  EXPECT_EQ(U(s, "smcd"), 0u);
  EXPECT_EQ(U(s, "tcp"), 1u);
  EXPECT_EQ(s["fallback_reasons"].value("0x03010000", 0u), 1u);
}

INSTANTIATE_TEST_SUITE_P(Exec, PreloadExecCloseAll,
                         ::testing::Values("exec-close-range", "exec-closefrom",
                                           "exec-close-loop", "exec-proc-walk",
                                           "exec-stdio"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::erase(n, '-');
                           return n;
                         });

// ---- silent peer: echoed the option, never sends CLC
// ---------------------------------

TEST_F(Preload, SilentServerNonblockingConnectTimesOutToTcp) {
  Proc server({USMC_PROBE, "silent-server"}, Env(false));
  std::optional<std::string> line = server.ReadLine(kProcTimeoutMs);
  ASSERT_TRUE(line && line->rfind("PORT ", 0) == 0) << server.Wait(1000);
  Proc client({USMC_PROBE, "client", "silent-peer", line->substr(5)},
              Env(true, {{"USMC_CLC_TIMEOUT_MS", "300"}}));
  Exit c = client.Wait();
  Exit s = server.Wait();
  ASSERT_TRUE(c.ok()) << c;
  ASSERT_TRUE(s.ok()) << s;
  ExpectTcp(Report("probe-cli"), wire::kReasonTimeoutCl, 32, 32);
}

// The client closes its socket while the progress thread sleeps in poll(2)
// on it (undecided: the server never answers the Proposal): the close is
// EOF for the server at once. Before, the thread's poll held the socket
// open until that poll's timeout, the CLC deadline (a minute here); a
// forking client under load hung so (ForkWithEarlyDataSendsItOnce).
TEST_F(Preload, CloseWhileTheProgressThreadWaitsIsEofAtOnce) {
  Proc server({USMC_PROBE, "silent-server-eof"}, Env(false));
  std::optional<std::string> line = server.ReadLine(kProcTimeoutMs);
  ASSERT_TRUE(line && line->rfind("PORT ", 0) == 0) << server.Wait(1000);
  Proc client({USMC_PROBE, "client", "close-undecided", line->substr(5)},
              Env(true, {{"USMC_CLC_TIMEOUT_MS", "60000"}}));
  Exit c = client.Wait();
  Exit s = server.Wait();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(c.ok()) << c;
}

// accept() hands out the silent client's connection at once: a second
// client is served (SMC-D) while the first one's handshake is pending. The
// CLC timeout is long, so a stalled accept turns into a test timeout.
TEST_F(Preload, SilentClientDoesNotStallAccept) {
  Proc server({USMC_PROBE, "server", "silent-accept"},
              Env(true, {{"USMC_CLC_TIMEOUT_MS", "60000"}}));
  std::optional<std::string> line = server.ReadLine(kProcTimeoutMs);
  ASSERT_TRUE(line && line->rfind("PORT ", 0) == 0) << server.Wait(1000);
  const std::string port = line->substr(5);
  Proc silent({USMC_PROBE, "silent-client", port, "idle"}, Env(false));
  std::optional<std::string> connected = silent.ReadLine(kProcTimeoutMs);
  ASSERT_EQ(connected.value_or(""), "CONNECTED") << silent.Wait(1000);
  Proc client({USMC_PROBE, "client", "basic", port}, Env(true));
  Exit c = client.Wait(20000);
  Exit s = server.Wait(20000);
  Exit q = silent.Wait(20000);
  ASSERT_TRUE(c.ok()) << c;
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(q.ok()) << q;
  json sr = Report("probe-srv");
  EXPECT_EQ(U(sr, "smcd"), 1u) << sr.dump();
  EXPECT_EQ(U(sr, "bytes_smcd_in"), uint64_t{1} << 20) << sr.dump();
  ExpectSmcd(Report("probe-cli"), 512 << 10, 1 << 20);
}

TEST_F(Preload, SilentClientTimesOutToTcpBytesIntact) {
  Proc server({USMC_PROBE, "server", "silent-talk"},
              Env(true, {{"USMC_CLC_TIMEOUT_MS", "300"}}));
  std::optional<std::string> line = server.ReadLine(kProcTimeoutMs);
  ASSERT_TRUE(line && line->rfind("PORT ", 0) == 0) << server.Wait(1000);
  Proc silent({USMC_PROBE, "silent-client", line->substr(5), "talk"},
              Env(false));
  Exit q = silent.Wait();
  Exit s = server.Wait();
  ASSERT_TRUE(q.ok()) << q;
  ASSERT_TRUE(s.ok()) << s;
  ExpectTcp(Report("probe-srv"), wire::kReasonTimeoutCl, 32, 32);
}

// The handshake ended inside accept() (the client's Decline was already
// there): accept must return and both ends carry on over TCP. It hung on a
// lock the fallback path took twice.
TEST_F(Preload, HandshakeEndingInsideAcceptFallsBackToTcp) {
  SplitRun r = RunSplit("late-accept", Env(true),
                        Env(true, {{"USMC_CLC_TIMEOUT_MS", "100"}}));
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  ExpectTcp(Report("probe-cli"), wire::kReasonTimeoutCl, 512 << 10, 1 << 20);
  ExpectTcp(Report("probe-srv"), wire::kReasonPeerDecl, 1 << 20, 512 << 10);
}

// A pool connects ahead of use: the client's non-blocking connect is left
// alone far longer than the server's CLC timer. The client's progress
// thread answers the server's Accept, so both ends are SMC-D (without the
// thread, both were TCP: the case below). The server's timer leaves the
// thread a second (150 ms was missed once under ASan at load 8).
TEST_F(Preload, IdleNonblockingConnectStillGetsSmcd) {
  SplitRun r =
      RunSplit("late-client", Env(true, {{"USMC_CLC_TIMEOUT_MS", "1000"}}),
               Env(true), "3000");
  ASSERT_TRUE(r.client.ok()) << r.client << r.server;
  ASSERT_TRUE(r.server.ok()) << r.server;
  ExpectSmcd(Report("probe-cli"), 512 << 10, 1 << 20);
  ExpectSmcd(Report("probe-srv"), 1 << 20, 512 << 10);
}

// Without the client's progress thread (USMC_PROGRESS_THREAD=0; a process
// that cannot run is the same), the handshake moves only when the app calls
// in. The client's app calls in only after its own CLC timer ran out; the
// server's Accept came in time, so the handshake completes: SMC-D. The
// client calls in once the Accept is in its socket (it slept 600 ms, and a
// server slower than that under load had not answered yet: TIMEOUT_CL).
TEST_F(Preload, ClientCallingInLateStillReadsTheTimelyAccept) {
  SplitRun r = RunSplit(
      "late-client", Env(true, {{"USMC_CLC_TIMEOUT_MS", "5000"}}),
      Env(true,
          {{"USMC_CLC_TIMEOUT_MS", "100"}, {"USMC_PROGRESS_THREAD", "0"}}),
      "accept");
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  ExpectSmcd(Report("probe-cli"), 512 << 10, 1 << 20);
  ExpectSmcd(Report("probe-srv"), 1 << 20, 512 << 10);
}

// ... and after the server's timer ran out too: its Decline is behind its
// Accept, so the client sends no Confirm and both ends are TCP. The client
// calls in once the Decline is in its socket (it slept 800 ms, and a server
// slower than that under load got the Confirm in time: SMC-D).
TEST_F(Preload, ClientCallingInAfterTheServerGaveUpIsTcp) {
  SplitRun r = RunSplit(
      "late-client", Env(true, {{"USMC_CLC_TIMEOUT_MS", "150"}}),
      Env(true,
          {{"USMC_CLC_TIMEOUT_MS", "100"}, {"USMC_PROGRESS_THREAD", "0"}}),
      "decline");
  ASSERT_TRUE(r.client.ok()) << r.client << r.server << AllReports();
  ASSERT_TRUE(r.server.ok()) << r.server;
  ExpectTcp(Report("probe-cli"), wire::kReasonPeerDecl, 512 << 10, 1 << 20);
  ExpectTcp(Report("probe-srv"), wire::kReasonTimeoutCl, 1 << 20, 512 << 10);
}

// ---- fallbacks whose CLC must not reach the app (issue 16)
// -------------------------------------------------------------
// A scripted peer (tests/preload_probe_clc.cc) forces the interleaving.

// The usmc server declines the peer's Proposal at once; the peer's own
// Decline (its timer ran out before it read ours) crosses it, followed by
// its app bytes. The server's app read that Decline as payload (the
// 400-connection asyncio run read E2 D4 C3 .. 04 ..: a Decline header);
// through splice(2) (a proxy's way) it went into the app's pipe, and a
// stdio stream on the socket (fdopen: glibc's own reads) read it too.
class PreloadLateClc : public Preload,
                       public ::testing::WithParamInterface<const char*> {};

TEST_P(PreloadLateClc, ServerAndPeerDecliningAtOnceLeaveNoClcForTheApp) {
  Proc server({USMC_PROBE, "server", GetParam()}, Env(true));
  std::optional<std::string> line = server.ReadLine(kProcTimeoutMs);
  ASSERT_TRUE(line && line->rfind("PORT ", 0) == 0) << server.Wait(1000);
  Proc peer({USMC_PROBE, "clc-client", "cross", line->substr(5)}, Env(false));
  Exit p = peer.Wait();
  Exit s = server.Wait();
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(p.ok()) << p;
  const json r = Report("probe-srv");
  // glibc's own stream (the connection was TCP for good at fdopen, the
  // Decline already dropped) reads with calls usmc does not see: uncounted.
  const bool glibc_stream =
      std::string(GetParam()) == "clc-hello-stdio" && U(r, "bytes_tcp_in") == 0;
  ExpectTcp(r, wire::kReasonCnfErr, glibc_stream ? 0 : 32, 32);
}

INSTANTIATE_TEST_SUITE_P(Reads, PreloadLateClc,
                         ::testing::Values("clc-hello", "clc-hello-splice",
                                           "clc-hello-stdio"),
                         [](const auto& info) {
                           const std::string n = info.param;
                           return n == "clc-hello" ? std::string("recv")
                                                   : n.substr(10);
                         });

// The same on the client: it declines the peer's Accept, the peer's
// Decline crosses its own (a server whose Confirm timer ran out).
TEST_F(Preload, ClientAndPeerDecliningAtOnceLeaveNoClcForTheApp) {
  Proc peer({USMC_PROBE, "clc-server", "cross"}, Env(false));
  std::optional<std::string> line = peer.ReadLine(kProcTimeoutMs);
  ASSERT_TRUE(line && line->rfind("PORT ", 0) == 0) << peer.Wait(1000);
  Proc client({USMC_PROBE, "client", "clc-hello", line->substr(5)}, Env(true));
  Exit c = client.Wait();
  Exit p = peer.Wait();
  ASSERT_TRUE(c.ok()) << c;
  ASSERT_TRUE(p.ok()) << p;
  ExpectTcp(Report("probe-cli"), wire::kReasonCnfErr, 32, 32);
}

// Issue 16 (6a): a valid CLC header, then nothing. The server declines at
// its CLC timeout; the peer's later bytes reached the app only once their
// total passed the length that header announced (here: never). The header
// it started is its app's bytes, handed over with the rest at once.
TEST_F(Preload, HalfAClcMessageThenAppBytesReachTheAppAtOnce) {
  Proc server({USMC_PROBE, "server", "clc-partial"},
              Env(true, {{"USMC_CLC_TIMEOUT_MS", "300"}}));
  std::optional<std::string> line = server.ReadLine(kProcTimeoutMs);
  ASSERT_TRUE(line && line->rfind("PORT ", 0) == 0) << server.Wait(1000);
  Proc peer({USMC_PROBE, "clc-client", "partial", line->substr(5)}, Env(false));
  Exit p = peer.Wait();
  Exit s = server.Wait();
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(p.ok()) << p;
  ExpectTcp(Report("probe-srv"), wire::kReasonTimeoutCl, 8 + 32, 32);
}

// ---- out of file descriptors ------------------------------------------------

// The client runs out of fds during the handshake (issue 21: at the usual
// limit of 1,024 a client ran out after 171 connections): the connection
// stays TCP with every byte, and its reason names the cause, NOFD, not
// MEM. The parameter is how many fds are left free after the socket: each
// value runs out at a later step of the handshake.
class PreloadFdLimit : public Preload,
                       public ::testing::WithParamInterface<int> {};

// UBSan checks a vptr by writing the memory into a pipe it opens on the
// spot: in a process with no fd left it reports every virtual call as an
// invalid vptr. The plain build runs these tests.
#if defined(__SANITIZE_ADDRESS__)
#define SKIP_WITHOUT_FREE_FDS_UNDER_SANITIZERS() \
  GTEST_SKIP() << "UBSan's vptr check needs free fds of its own"
#else
#define SKIP_WITHOUT_FREE_FDS_UNDER_SANITIZERS() (void)0
#endif

TEST_P(PreloadFdLimit, FallbackNamesTheFdLimit) {
  SKIP_WITHOUT_FREE_FDS_UNDER_SANITIZERS();
  Exit r = RunPair("fd-limit", {}, std::to_string(GetParam()));
  ASSERT_TRUE(r.ok()) << r;
  // Every byte over TCP (the probe checked them), behind what CLC the
  // handshake read before it ran out.
  EXPECT_GE(TcpBytesReceived(r.out), 512u << 10) << r;
  EXPECT_LE(TcpBytesReceived(r.out), (512u << 10) + kClcBytesMax) << r;
  ExpectTcp(Report("probe-cli"), wire::kReasonNoFd, 512 << 10, 1 << 20);
  const json srv = Report("probe-srv");
  SCOPED_TRACE(srv.dump());
  EXPECT_EQ(U(srv, "smcd"), 0u);
  EXPECT_EQ(U(srv, "tcp"), 1u);
  EXPECT_EQ(U(srv, "bytes_tcp_in"), 1u << 20);
  EXPECT_EQ(U(srv, "bytes_tcp_out"), 512u << 10);
}

// 0..3: out at the arena's memfd, the handover socket, the peer's arena
// (dropped by the kernel in recvmsg: MSG_CTRUNC; /3 read as a malformed
// offer, ERR_RTOK, until the arena handover probed the fd table as the
// memfd one does) and the steps between.
INSTANTIATE_TEST_SUITE_P(FreeFds, PreloadFdLimit,
                         ::testing::Values(0, 1, 2, 3));

// Four free fds are enough for an SMC-D client (three are not, above): its
// first connection to a peer process keeps its own arena, the peer's, the
// handover socket and the peer's pidfd (docs/dev-shm.md). A new fd in the
// setup path fails here.
TEST_F(Preload, FourFreeFdsAreEnoughForSmcd) {
  SKIP_WITHOUT_FREE_FDS_UNDER_SANITIZERS();
  Exit r = RunPair("fd-limit", {}, "4");
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-cli"), 512 << 10, 1 << 20);
  ExpectSmcd(Report("probe-srv"), 1 << 20, 512 << 10);
}

// ---- mixed pairs
// -----------------------------------------------------------------

TEST_F(Preload, UsmcClientToPlainServer) {
  SplitRun r = RunSplit("basic", Env(false), Env(true));
  ASSERT_TRUE(r.client.ok()) << r.client;
  EXPECT_EQ(TcpBytesReceived(r.client.out), 512u << 10) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  ExpectTcp(Report("probe-cli"), wire::kReasonPeerNoSmc, 512 << 10, 1 << 20);
  EXPECT_TRUE(ReportsOf("probe-srv").empty()) << AllReports();
}

TEST_F(Preload, PlainClientToUsmcServer) {
  SplitRun r = RunSplit("basic", Env(true), Env(false));
  ASSERT_TRUE(r.client.ok()) << r.client;
  EXPECT_EQ(TcpBytesReceived(r.client.out), 512u << 10) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  ExpectTcp(Report("probe-srv"), wire::kReasonPeerNoSmc, 1 << 20, 512 << 10);
  EXPECT_TRUE(ReportsOf("probe-cli").empty()) << AllReports();
}

// Issue 20: a connection that stays TCP gets only the system calls usmc
// needs to know it and to publish it. accept() takes the peer's address from
// the app's buffer and asks the negotiation program once; a connect() that
// returned 0 knows its peer; nobody asks getpid (the status publisher knows
// its process); a listener the policy denied offers nothing, so its
// connections are not asked about at all. Before: accept 1 getpeername,
// 1 getpid, 2 usmc getsockopt (0 with USMC_ENABLE=0: 1); connect 1
// getpeername, 1 getpid.
TEST_F(Preload, TcpSetupMakesOnlyTheCallsItNeeds) {
  {
    SCOPED_TRACE("usmc server, plain client");
    SplitRun r = RunSplit("setup-calls", Env(true), Env(false));
    ASSERT_TRUE(r.server.ok()) << r.server;
    ASSERT_TRUE(r.client.ok()) << r.client;
    EXPECT_NE(
        r.server.out.find("accept getpeername=0 getpid=0 usmc_getsockopt=1\n"),
        std::string::npos)
        << r.server;
    const json j = Report("probe-srv");
    EXPECT_EQ(U(j, "tcp"), 2u) << AllReports();
    EXPECT_EQ(j.value("fallback_reasons", json::object()),
              json({{Hex(wire::kReasonPeerNoSmc), 2}}))
        << AllReports();
  }
  {
    SCOPED_TRACE("plain server, usmc client");
    SplitRun r = RunSplit("setup-calls", Env(false), Env(true));
    ASSERT_TRUE(r.server.ok()) << r.server;
    ASSERT_TRUE(r.client.ok()) << r.client;
    EXPECT_NE(
        r.client.out.find("connect getpeername=0 getpid=0 usmc_getsockopt=1\n"),
        std::string::npos)
        << r.client;
    const json j = Report("probe-cli");
    EXPECT_EQ(U(j, "tcp"), 2u) << AllReports();
    EXPECT_EQ(j.value("fallback_reasons", json::object()),
              json({{Hex(wire::kReasonPeerNoSmc), 2}}))
        << AllReports();
  }
  {
    SCOPED_TRACE("usmc server with USMC_ENABLE=0, plain client");
    SplitRun r =
        RunSplit("setup-calls", Env(true, {{"USMC_ENABLE", "0"}}), Env(false));
    ASSERT_TRUE(r.server.ok()) << r.server;
    ASSERT_TRUE(r.client.ok()) << r.client;
    EXPECT_NE(
        r.server.out.find("accept getpeername=0 getpid=0 usmc_getsockopt=0\n"),
        std::string::npos)
        << r.server;
    EXPECT_EQ(ReportsOf("probe-srv").size(), 1u) << AllReports();
  }
}

// ---- configuration
// -----------------------------------------------------------------

// Issue 20: an fd of a connection that is TCP for good skips usmc's table
// (FdKind::kPassThru). Its number, closed and reused by an SMC-D connection
// (socket, dup2, dup3, recvmsg of one passed with SCM_RIGHTS) or by a pipe
// and then a connection, must be the new file's; a fork child's calls on
// an inherited one are the child's. The probe checks every byte through
// read/recv/recvfrom/readv/recvmsg, write/send/sendto/writev/sendmsg and
// epoll; the reports say exactly which bytes went where (a child that
// counted the parent's bytes shows here).
TEST_F(Preload, PassThroughFdNumbersAreNeverTakenForAnotherFile) {
  Proc plain({USMC_PROBE, "server", "plain-echo"}, Env(false));
  std::optional<std::string> line = plain.ReadLine(kProcTimeoutMs);
  ASSERT_TRUE(line && line->rfind("PORT ", 0) == 0) << plain.Wait(1000);
  SplitRun r =
      RunSplit("passthru-reuse", Env(true), Env(true), line->substr(5));
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  Exit pe = plain.Wait();
  ASSERT_TRUE(pe.ok()) << pe;
  const uint64_t ex = 6 * 64;  // one Exercise, each way
  const json cli = Report("probe-cli");
  SCOPED_TRACE(cli.dump());
  // The passed connection's handshake counts in the child that made it.
  EXPECT_EQ(U(cli, "smcd"), 3u);
  EXPECT_EQ(U(cli, "tcp"), 7u);
  EXPECT_EQ(cli.value("fallback_reasons", json::object()),
            json({{Hex(wire::kReasonPeerNoSmc), 7}}));
  EXPECT_EQ(U(cli, "handshake_errors"), 0u);
  EXPECT_EQ(U(cli, "bytes_tcp_in"), 9 * ex);
  EXPECT_EQ(U(cli, "bytes_tcp_out"), 9 * ex);
  EXPECT_EQ(U(cli, "bytes_smcd_in"), 8 * ex);
  EXPECT_EQ(U(cli, "bytes_smcd_out"), 8 * ex);
  const json passer = Report("probe-cli3");
  EXPECT_EQ(U(passer, "smcd"), 1u) << passer.dump();
  EXPECT_EQ(U(passer, "tcp"), 0u) << passer.dump();
  const json child = Report("probe-cli2");
  EXPECT_EQ(U(child, "smcd"), 0u) << child.dump();
  EXPECT_EQ(U(child, "bytes_tcp_in"), ex) << child.dump();
  EXPECT_EQ(U(child, "bytes_tcp_out"), ex) << child.dump();
  EXPECT_EQ(U(child, "bytes_smcd_in"), 0u) << child.dump();
}

TEST_F(Preload, UsmcDisableOnTheClient) {
  SplitRun r = RunSplit("basic", Env(true), Env(true, {{"USMC_DISABLE", "1"}}));
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  ExpectTcp(Report("probe-srv"), wire::kReasonPeerNoSmc, 1 << 20, 512 << 10);
  EXPECT_TRUE(ReportsOf("probe-cli").empty()) << AllReports();
}

TEST_F(Preload, ExcludePortsOnTheClient) {
  SplitRun r = RunSplit("basic", Env(true), Env(true), "", [](uint16_t port) {
    return EnvMap{{"USMC_EXCLUDE_PORTS", "1-2," + std::to_string(port)}};
  });
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  ExpectTcp(Report("probe-srv"), wire::kReasonPeerNoSmc, 1 << 20, 512 << 10);
  ExpectNoSmc(ReportsOf("probe-cli"));
}

TEST_F(Preload, PortsListIncludingThePortAllows) {
  SplitRun r = RunSplit("basic", Env(true), Env(true), "", [](uint16_t port) {
    return EnvMap{{"USMC_PORTS", std::to_string(port) + " 7000-7010"}};
  });
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  ExpectSmcd(Report("probe-srv"), 1 << 20, 512 << 10);
  ExpectSmcd(Report("probe-cli"), 512 << 10, 1 << 20);
}

class PreloadConf : public Preload {
 protected:
  std::string Conf(const std::string& text) {
    std::string path = dir_ + "/usmc.conf";
    std::ofstream(path) << text;
    return path;
  }
};

TEST_F(PreloadConf, ConfigFileDeniesServers) {
  Exit r = RunPair("basic", {{"USMC_CONF", Conf("# servers stay TCP\n"
                                                "deny server\n")}});
  ASSERT_TRUE(r.ok()) << r;
  ExpectTcp(Report("probe-cli"), wire::kReasonPeerNoSmc, 512 << 10, 1 << 20);
  ExpectNoSmc(ReportsOf("probe-srv"));
}

TEST_F(PreloadConf, ConfigFileDeniesAProgramByName) {
  // Only the client side of the pair is covered by the rule.
  Exit r = RunPair("basic", {{"USMC_CONF", Conf("deny client prog "
                                                "preload_pro*\n")}});
  ASSERT_TRUE(r.ok()) << r;
  ExpectTcp(Report("probe-srv"), wire::kReasonPeerNoSmc, 1 << 20, 512 << 10);
  ExpectNoSmc(ReportsOf("probe-cli"));
}

TEST_F(PreloadConf, ConfigFileAllowsLoopback) {
  Exit r = RunPair("basic", {{"USMC_CONF", Conf("allow client addr "
                                                "127.0.0.0/8 port 1-65535\n"
                                                "allow server\n"
                                                "deny\n")}});
  ASSERT_TRUE(r.ok()) << r;
  ExpectSmcd(Report("probe-srv"), 1 << 20, 512 << 10);
  ExpectSmcd(Report("probe-cli"), 512 << 10, 1 << 20);
}

TEST_F(PreloadConf, BadConfigFileMeansTcpAndAMessage) {
  Exit r = RunPair("basic", {{"USMC_CONF", Conf("deny client prot 5\n")}});
  ASSERT_TRUE(r.ok()) << r;
  EXPECT_NE(r.err.find("usmc.conf:1"), std::string::npos) << r;
  EXPECT_NE(r.err.find("SMC is off"), std::string::npos) << r;
  ExpectNoSmc(Reports());
}

// A config path that names a FIFO: every program under usmc hung in its
// constructor (open waited for a writer). Now it is a bad config file:
// a message, and TCP.
TEST_F(PreloadConf, FifoConfigFileDoesNotHangTheProgram) {
  const std::string fifo = dir_ + "/fifo.conf";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  Exit r = RunPair("basic", {{"USMC_CONF", fifo}});
  ASSERT_TRUE(r.ok()) << r;
  EXPECT_NE(r.err.find(fifo + ": not a regular file"), std::string::npos) << r;
  ExpectNoSmc(Reports());
}

TEST_F(Preload, BadEnvironmentValueMeansTcp) {
  SplitRun r = RunSplit("basic", Env(true), Env(true, {{"USMC_PORTS", "ssh"}}));
  ASSERT_TRUE(r.client.ok()) << r.client;
  ASSERT_TRUE(r.server.ok()) << r.server;
  EXPECT_NE(r.client.err.find("USMC_PORTS"), std::string::npos) << r.client;
  ExpectTcp(Report("probe-srv"), wire::kReasonPeerNoSmc, 1 << 20, 512 << 10);
  ExpectNoSmc(ReportsOf("probe-cli"));
}

}  // namespace
}  // namespace usmc::preload_test
