// tests/scale_test.cc: 10,000 concurrent SMC-D connections between two
// processes (issue 21 "Must show"), black-box under LD_PRELOAD in a private
// cgroup with the eBPF negotiation program (as tests/preload_test.cc).
// tests/scale_probe.cc checks every byte itself; this driver asserts what
// the exit reports say (every connection SMC-D, no fallback, no reason, no
// handshake error, every byte through shared memory), the fds per
// connection, and that the last 1,000 setups cost at most 1.5x the first
// 1,000 on each side.
//
//   ctest --test-dir build-dev -L scale
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/negotiate_harness.h"
#include "tests/proc_util.h"

namespace usmc::scale_test {
namespace {

using json = nlohmann::json;
using negotiate_test::NegotiateCgroup;
using test_proc::EnvMap;
using test_proc::Exit;
using test_proc::Proc;
namespace fs = std::filesystem;

constexpr int kConns = 10000;
// What the issue gives each process.
constexpr long kFdLimit = 21000;
// fds per connection on each side, the TCP socket included, at most. The
// issue's goal is 2 (the socket and at most one fd of usmc's). DMB arenas
// (the default, docs/dev-shm.md "Arenas") removed the two memfds per
// connection (8 before); measured here with 2,000 connections: client 3
// (the socket, the interposer's private dup of it, the doorbell), server
// 5.5 (the same, plus the epoll mirrors' two eventfds of its one epoll
// loop, preload/epoll.cc; the last half is not yet accounted for). The
// rest of the goal needs the dup and the mirrors gone. Each process's
// RLIMIT_NOFILE is raised above kFdLimit if the connections need it (Nofile),
// within the hard limit (Conns).
constexpr int kMaxFdsPerConn = 6;
// The setups of the last batch may cost this much more than the first's.
constexpr double kMaxSetupGrowth = 1.5;
// The probes' bytes per connection each way (tests/scale_probe.cc).
constexpr uint64_t kHello = 4096, kRound2 = 8192;

// The hard RLIMIT_NOFILE of this process: the probes cannot go above it
// (raising it needs CAP_SYS_RESOURCE, which a container may not give root).
long HardNofile() {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  return r.rlim_max == RLIM_INFINITY ? long{1} << 20 : long(r.rlim_max);
}
// fds a probe holds besides its connections (stdio, the listener, epoll,
// the interposer's own).
constexpr long kBaseFds = 200;

// The connections to open: kConns, or fewer (a multiple of 1,000) if the
// hard fd limit cannot hold kConns at kMaxFdsPerConn. USMC_SCALE_CONNS=N (a
// multiple of 1,000, at least 2,000) sets it by hand (perf at 5,000 held).
int Conns() {
  const char* e = std::getenv("USMC_SCALE_CONNS");
  const int asked = e != nullptr ? std::atoi(e) : 0;
  const int want = asked >= 2000 && asked % 1000 == 0 ? asked : kConns;
  const long fit = (HardNofile() - kBaseFds) / kMaxFdsPerConn / 1000 * 1000;
  return int(std::min<long>(want, fit));
}

// Each probe's RLIMIT_NOFILE: kFdLimit if Conns() fit in it at
// kMaxFdsPerConn, else as much as they need (never above the hard limit).
long Nofile() {
  return std::min(
      HardNofile(),
      std::max<long>(kFdLimit, long{Conns()} * kMaxFdsPerConn + kBaseFds));
}

struct Stats {
  int conns = 0, fds_before = 0, fds_after = 0;
  std::vector<double> cpu_us, wall_us;  // per setup, per batch of 1,000
  bool ok = false;
};

std::vector<double> Doubles(const std::string& csv) {
  std::vector<double> v;
  std::stringstream ss(csv);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::stod(item));
  return v;
}

Stats ParseStats(const std::string& out) {
  Stats s;
  size_t p = out.find("STATS ");
  if (p == std::string::npos) return s;
  std::stringstream ss(out.substr(p + 6, out.find('\n', p) - p - 6));
  std::string kv;
  int fields = 0;
  while (ss >> kv) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos) continue;
    std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
    if (k == "conns") s.conns = std::stoi(v), ++fields;
    if (k == "fds_before") s.fds_before = std::stoi(v), ++fields;
    if (k == "fds_after") s.fds_after = std::stoi(v), ++fields;
    if (k == "cpu_us_per_setup") s.cpu_us = Doubles(v), ++fields;
    if (k == "wall_us_per_setup") s.wall_us = Doubles(v), ++fields;
  }
  s.ok = fields == 5 && !s.cpu_us.empty();
  return s;
}

uint64_t U(const json& j, const char* key) {
  const json* v = j.contains(key) ? &j.at(key) : nullptr;
  return v != nullptr && v->is_number_unsigned() ? v->get<uint64_t>()
                                                 : ~uint64_t{0};
}

class Scale : public ::testing::Test {
 protected:
  void SetUp() override {
    USMC_REQUIRE_ROOT();
    cg_ = std::make_unique<NegotiateCgroup>();
    ASSERT_TRUE(cg_->ok()) << cg_->error();
    char tmpl[] = "/tmp/usmc-scale-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    report_ = dir_ + "/exit-report.jsonl";
    fs::create_directory(dir_ + "/status");
  }
  void TearDown() override {
    cg_.reset();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  // The defaults of a usmc process (no tuning variable: 10,000 must fit
  // by default), a long CLC timeout (a lost wakeup shows as a hang).
  EnvMap Env(const EnvMap& extra = {}) const {
    EnvMap env{{"USMC_CLC_TIMEOUT_MS", "60000"},
               {"USMC_EXIT_REPORT", report_},
               {"USMC_STATUS_DIR", dir_ + "/status"},
               {"USMC_CONF", ""}};
    test_proc::AddPreload(env, USMC_PRELOAD_LIB);
    for (const auto& [k, v] : extra) env[k] = v;
    return env;
  }

  json Report(const std::string& comm) const {
    std::vector<json> v;
    std::ifstream in(report_);
    std::string line;
    while (std::getline(in, line)) {
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded() && j.value("comm", "") == comm) v.push_back(j);
    }
    EXPECT_EQ(v.size(), 1u) << "exit-report lines of " << comm;
    return v.size() == 1 ? v[0] : json::object();
  }

  std::unique_ptr<NegotiateCgroup> cg_;
  std::string dir_, report_;
};

void ExpectAllSmcd(const json& r) {
  SCOPED_TRACE(r.dump());
  EXPECT_EQ(U(r, "smcd"), uint64_t(Conns()));
  EXPECT_EQ(U(r, "tcp"), 0u);
  EXPECT_EQ(U(r, "handshake_errors"), 0u);
  EXPECT_TRUE(r.contains("fallback_reasons") &&
              r["fallback_reasons"].is_object() &&
              r["fallback_reasons"].empty());
  EXPECT_EQ(U(r, "bytes_tcp_in"), 0u);
  EXPECT_EQ(U(r, "bytes_tcp_out"), 0u);
}

void ExpectScales(const char* side, const Stats& s) {
  SCOPED_TRACE(side);
  ASSERT_TRUE(s.ok);
  EXPECT_EQ(s.conns, Conns());
  // Integer division rounds down: one long-lived fd of usmc's taken during
  // the run (the progress thread's epoll, a status file) is not a
  // per-connection cost.
  const int per_conn = (s.fds_after - s.fds_before) / Conns();
  std::printf(
      "%s: %d fds before, %d after %d connections: %d per connection "
      "(limit %d)\n",
      side, s.fds_before, s.fds_after, Conns(), per_conn, kMaxFdsPerConn);
  EXPECT_LE(per_conn, kMaxFdsPerConn) << "fds per connection";
  EXPECT_GE(per_conn, 1) << "the TCP socket itself";
  std::string cpu, wall;
  // Appended piecewise: gcc 12 at -O3 warns a false -Wrestrict on the
  // insert that " " + to_string() inlines to.
  for (double d : s.cpu_us) (cpu += ' ') += std::to_string(int(d));
  for (double d : s.wall_us) (wall += ' ') += std::to_string(int(d));
  std::printf("%s: setup cost per batch of 1,000, us of CPU:%s; wall:%s\n",
              side, cpu.c_str(), wall.c_str());
  ASSERT_EQ(s.cpu_us.size(), size_t(Conns() / 1000));
  EXPECT_LE(s.cpu_us.back(), kMaxSetupGrowth * s.cpu_us.front())
      << "the last 1,000 setups cost more than " << kMaxSetupGrowth
      << "x the first 1,000 (CPU us per setup:" << cpu << ")";
}

TEST_F(Scale, TenThousandConcurrentSmcdConnections) {
  const std::string n = std::to_string(Conns());
  const std::string nofile = std::to_string(Nofile());
  // Said on every run: a machine whose limits shrink the test must not
  // pass silently as if it had run all of it.
  std::printf(
      "%d connections (issue: %d), RLIMIT_NOFILE %ld (issue: %ld; "
      "hard limit %ld; kMaxFdsPerConn %d)\n",
      Conns(), kConns, Nofile(), kFdLimit, HardNofile(), kMaxFdsPerConn);
  ASSERT_GE(Conns(), 2000) << "the hard fd limit is too low for this test";
  constexpr int kTimeoutMs = 400000;
  Proc server({USMC_SCALE_PROBE, "server", n, nofile}, Env());
  std::optional<std::string> line = server.ReadLine(20000);
  ASSERT_TRUE(line && line->rfind("PORT ", 0) == 0)
      << server.Wait(1000) << "\n[no PORT line]";
  Proc client({USMC_SCALE_PROBE, "client", line->substr(5), n, nofile}, Env());
  Exit c = client.Wait(kTimeoutMs);
  Exit s = server.Wait(c.ok() ? 60000 : 1000);
  ASSERT_TRUE(c.ok() && s.ok()) << "client: " << c << "\nserver: " << s;
  std::printf("client: %s", c.out.c_str());
  std::printf("server: %s", s.out.c_str());

  const json cr = Report("scale-cli"), sr = Report("scale-srv");
  ExpectAllSmcd(cr);
  ExpectAllSmcd(sr);
  const uint64_t kUp = uint64_t(Conns()) * (4 + kHello + kRound2);
  const uint64_t kDown = uint64_t(Conns()) * (kHello + kRound2);
  EXPECT_EQ(U(cr, "bytes_smcd_out"), kUp);
  EXPECT_EQ(U(cr, "bytes_smcd_in"), kDown);
  EXPECT_EQ(U(sr, "bytes_smcd_in"), kUp);
  EXPECT_EQ(U(sr, "bytes_smcd_out"), kDown);

  ExpectScales("client", ParseStats(c.out));
  ExpectScales("server", ParseStats(s.out));
}

// Past the DMB budget the server declines (reason MEM) and the connections
// are TCP, every byte still delivered. The server's epoll set once held
// such a connection with no kernel item at all when the decline came from
// the look before a sleep (PrepareWait): its hello was never reported and
// the server slept until its timeout (about one fallback in a few hundred).
TEST_F(Scale, FallbacksAtTheBudgetUnderEpoll) {
  constexpr int kN = 2000;
  const EnvMap env = Env({{"USMC_DMB_BUDGET", "8M"}});
  const std::string n = std::to_string(kN), nofile = std::to_string(Nofile());
  Proc server({USMC_SCALE_PROBE, "server", n, nofile}, env);
  std::optional<std::string> line = server.ReadLine(20000);
  ASSERT_TRUE(line && line->rfind("PORT ", 0) == 0)
      << server.Wait(1000) << "\n[no PORT line]";
  Proc client({USMC_SCALE_PROBE, "client", line->substr(5), n, nofile}, env);
  Exit c = client.Wait(120000);
  Exit s = server.Wait(c.ok() ? 60000 : 1000);
  ASSERT_TRUE(c.ok() && s.ok()) << "client: " << c << "\nserver: " << s;
  const json sr = Report("scale-srv"), cr = Report("scale-cli");
  EXPECT_EQ(U(sr, "smcd") + U(sr, "tcp"), uint64_t{kN}) << sr.dump();
  EXPECT_GT(U(sr, "tcp"), uint64_t{kN / 2}) << sr.dump();
  EXPECT_EQ(U(sr, "handshake_errors"), 0u) << sr.dump();
  EXPECT_EQ(U(cr, "smcd") + U(cr, "tcp"), uint64_t{kN}) << cr.dump();
  ASSERT_TRUE(sr.contains("fallback_reasons"));
  EXPECT_EQ(sr["fallback_reasons"].value("0x01010000", uint64_t{0}),
            U(sr, "tcp"))
      << sr.dump();
}

}  // namespace
}  // namespace usmc::scale_test
