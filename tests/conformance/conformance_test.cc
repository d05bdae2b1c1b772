// tests/conformance/conformance_test.cc: runs each conformance case
// (conform_probe, cases_*.cc) four ways and requires the same transcript
// from each:
//   plain         no usmc: the reference
//   smcd          usmc in every process: at least the case's smcd_min
//                 SMC-D connection ends in the exit reports
//   tcp-clients   usmc everywhere, but servers do not offer SMC (policy
//                 "deny server"): each client's connection is usmc's
//                 plain-TCP path (PEERNOSMC)
//   tcp-servers   the same with "deny client": the servers' side is
// and none of them a handshake error. Runs as root inside a private cgroup
// with the eBPF negotiation program attached (as preload_test does).
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/negotiate_harness.h"
#include "tests/proc_util.h"

namespace usmc::conform_test {
namespace {

using json = nlohmann::json;
using negotiate_test::NegotiateCgroup;
using test_proc::EnvMap;
using test_proc::Exit;
using test_proc::Proc;
namespace fs = std::filesystem;

constexpr int kCaseTimeoutMs = 60000;

std::vector<std::string> CaseNames() {
  std::vector<std::string> names;
  FILE* f = popen(USMC_CONFORM_PROBE " list", "r");
  if (f == nullptr) return names;
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    std::string s(line);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    if (!s.empty()) names.push_back(s);
  }
  pclose(f);
  return names;
}

// The case's declared minimum of SMC-D connection ends.
int SmcdMin(const std::string& name) {
  FILE* f = popen(
      (std::string(USMC_CONFORM_PROBE) + " smcd-min " + name).c_str(), "r");
  if (f == nullptr) return -1;
  int v = -1;
  if (std::fscanf(f, "%d", &v) != 1) v = -1;
  pclose(f);
  return v;
}

// Transcript lines grouped by role ("ROLE: ..."), order kept within a role.
std::map<std::string, std::vector<std::string>> ByRole(const std::string& out) {
  std::map<std::string, std::vector<std::string>> m;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    size_t colon = line.find(": ");
    std::string role = colon == std::string::npos ? "?" : line.substr(0, colon);
    m[role].push_back(line);
  }
  return m;
}

std::string Join(const std::map<std::string, std::vector<std::string>>& m) {
  std::string s;
  for (const auto& [role, lines] : m) {
    for (const auto& l : lines) s += l + "\n";
  }
  return s;
}

class ConformanceBase : public ::testing::Test {
 protected:
  void SetUp() override {
    USMC_REQUIRE_ROOT();
    cg_ = std::make_unique<NegotiateCgroup>();
    ASSERT_TRUE(cg_->ok()) << cg_->error();
    char tmpl[] = "/tmp/usmc-conform-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directory(dir_ + "/status");
    // Cases with hundreds of connections need the fds.
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 20000 && rl.rlim_max >= 20000) {
      rl.rlim_cur = 20000;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  void TearDown() override {
    cg_.reset();
    std::error_code ec;
    if (!dir_.empty() && std::getenv("USMC_TEST_KEEP") == nullptr) {
      fs::remove_all(dir_, ec);
    }
  }

  enum class Mode { kPlain, kSmcd, kTcpClients, kTcpServers };
  static const char* Name(Mode m) {
    switch (m) {
      case Mode::kPlain:
        return "plain";
      case Mode::kSmcd:
        return "smcd";
      case Mode::kTcpClients:
        return "tcp-clients";
      case Mode::kTcpServers:
        return "tcp-servers";
    }
    return "?";
  }

  EnvMap Env(Mode mode, const std::string& report) const {
    std::string conf;
    if (mode == Mode::kTcpClients || mode == Mode::kTcpServers) {
      conf = dir_ + "/" + Name(mode) + ".conf";
      std::ofstream(conf) << (mode == Mode::kTcpClients ? "deny server\n"
                                                        : "deny client\n");
    }
    EnvMap env{{"USMC_EXIT_REPORT", report},
               {"USMC_STATUS_DIR", dir_ + "/status"},
               {"USMC_CONF", conf}};
    // The same ASAN_OPTIONS for every run, plain too.
    test_proc::AddAsanOptions(env);
    if (mode != Mode::kPlain) test_proc::AddPreload(env, USMC_PRELOAD_LIB);
    return env;
  }

  Exit Run(const std::string& name, Mode mode, const std::string& report,
           const std::vector<std::string>& wrapper = {}) {
    std::vector<std::string> args = wrapper;
    for (const char* a : {USMC_CONFORM_PROBE, "run"}) args.push_back(a);
    args.push_back(name);
    Proc p(args, Env(mode, report));
    return p.Wait(kCaseTimeoutMs);
  }

  static std::vector<json> Reports(const std::string& path) {
    std::vector<json> v;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded()) v.push_back(j);
    }
    return v;
  }

  std::unique_ptr<NegotiateCgroup> cg_;
  std::string dir_;
};

class Conformance : public ConformanceBase,
                    public ::testing::WithParamInterface<std::string> {};

uint64_t Sum(const std::vector<json>& reports, const char* key) {
  uint64_t s = 0;
  for (const json& r : reports) {
    if (r.contains(key) && r[key].is_number_unsigned()) {
      s += r[key].get<uint64_t>();
    }
  }
  return s;
}

std::string Dump(const std::vector<json>& reports) {
  std::string all;
  for (const json& r : reports) all += r.dump() + "\n";
  return all.empty() ? "(no exit-report lines)\n" : all;
}

TEST_P(Conformance, SameTranscriptPlainAndUnderUsmc) {
  const int smcd_min = SmcdMin(GetParam());
  ASSERT_GE(smcd_min, 0) << "conform_probe smcd-min " << GetParam();

  Exit plain = Run(GetParam(), Mode::kPlain, dir_ + "/plain.jsonl");
  ASSERT_TRUE(plain.ok()) << "plain run failed (the case itself is wrong?)\n"
                          << plain;
  const std::string want = Join(ByRole(plain.out));

  for (Mode mode : {Mode::kSmcd, Mode::kTcpClients, Mode::kTcpServers}) {
    SCOPED_TRACE(Name(mode));
    const std::string report = dir_ + "/" + Name(mode) + ".jsonl";
    const auto t0 = std::chrono::steady_clock::now();
    Exit e = Run(GetParam(), mode, report);
    // For whoever reads the log (a slow mode is a hint); never asserted.
    std::printf("  %s: %lld ms\n", Name(mode),
                static_cast<long long>(
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - t0)
                        .count()));
    ASSERT_TRUE(e.ok()) << "under usmc (" << Name(mode) << ")\n" << e;
    EXPECT_EQ(Join(ByRole(e.out)), want)
        << "the transcript under usmc (" << Name(mode)
        << ", left) differs from plain TCP's (right)";
    std::vector<json> reports = Reports(report);
    EXPECT_EQ(Sum(reports, "handshake_errors"), 0u) << Dump(reports);
    if (mode == Mode::kSmcd) {
      EXPECT_GE(Sum(reports, "smcd"), static_cast<uint64_t>(smcd_min))
          << "SMC-D connection ends in the exit reports:\n"
          << Dump(reports);
      continue;
    }
    // Plain TCP through usmc: one opted-in end per connection, each with
    // reason PEERNOSMC.
    EXPECT_EQ(Sum(reports, "smcd"), 0u) << Dump(reports);
    EXPECT_GE(Sum(reports, "tcp"), static_cast<uint64_t>(smcd_min / 2))
        << Dump(reports);
    for (const json& r : reports) {
      const json reasons = r.value("fallback_reasons", json::object());
      for (const auto& item : reasons.items()) {
        EXPECT_EQ(item.key(), "0x03010000") << Dump(reports);
      }
    }
  }
}

// The calls of a connection that stays TCP reach the kernel as the app
// made them: case iovec_calls makes one writev, two sendmsg and one
// sendmmsg on its client socket; strace counts the client's calls on that
// fd (usmc used to split each into one send per iovec).
TEST_F(ConformanceBase, TcpCallsKeepTheirShape) {
  if (access("/usr/bin/strace", X_OK) != 0) {
    GTEST_SKIP() << "strace not installed (scripts/install-deps.sh)";
  }
  const std::string trace = dir_ + "/strace.out";
  Exit e = Run("iovec_calls", Mode::kTcpClients, dir_ + "/r.jsonl",
               {"/usr/bin/strace", "-f", "-qq", "-o", trace, "-e",
                "trace=write,writev,send,sendto,sendmsg,sendmmsg"});
  ASSERT_TRUE(e.ok()) << e;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(e.err, m, std::regex("client pid (\\d+) fd (\\d+)")))
      << e;
  const std::string pid = m[1], fd = m[2];
  std::map<std::string, int> calls;
  std::ifstream in(trace);
  std::string line;
  const std::regex call("^" + pid + " +(\\w+)\\(" + fd + ",");
  while (std::getline(in, line)) {
    if (std::regex_search(line, m, call)) ++calls[m[1]];
  }
  std::string all;
  for (const auto& [k, v] : calls) all += k + "=" + std::to_string(v) + " ";
  SCOPED_TRACE(all);
  EXPECT_EQ(calls["writev"], 1);
  EXPECT_EQ(calls["sendmsg"], 2);
  EXPECT_EQ(calls["sendmmsg"], 1);
  EXPECT_EQ(calls["sendto"], 0);
}

INSTANTIATE_TEST_SUITE_P(Cases, Conformance, ::testing::ValuesIn(CaseNames()),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return p.param;
                         });

}  // namespace
}  // namespace usmc::conform_test
