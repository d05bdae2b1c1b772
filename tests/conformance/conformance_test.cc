// tests/conformance/conformance_test.cc: runs each conformance case
// (conform_probe, cases_*.cc) plain and under usmc and requires the same
// transcript from both, and from the usmc run real SMC-D: at least the
// case's smcd_min SMC-D connection ends in the exit reports and no
// handshake error. Runs as root inside a private cgroup with the eBPF
// negotiation program attached (as preload_test does).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "base/loaded_library.h"
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

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    USMC_REQUIRE_ROOT();
    cg_ = std::make_unique<NegotiateCgroup>();
    ASSERT_TRUE(cg_->ok()) << cg_->error();
    ASSERT_EQ(cg_->ForeignSockOps(), 0u)
        << "another usmc negotiation program is attached above the test "
           "cgroup: run `sudo usmc setup --remove` first";
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

  EnvMap Env(bool preload, const std::string& report) const {
    EnvMap env{{"USMC_EXIT_REPORT", report},
               {"USMC_STATUS_DIR", dir_ + "/status"},
               {"USMC_CONF", ""}};
    if (preload) {
      static const std::string asan = LoadedLibrary("libasan.so");
      env["LD_PRELOAD"] =
          asan.empty() ? USMC_PRELOAD_LIB : asan + " " + USMC_PRELOAD_LIB;
      if (!asan.empty()) env["ASAN_OPTIONS"] = "detect_leaks=0";
    }
    return env;
  }

  Exit Run(bool preload, const std::string& report) {
    Proc p({USMC_CONFORM_PROBE, "run", GetParam()}, Env(preload, report));
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

uint64_t Sum(const std::vector<json>& reports, const char* key) {
  uint64_t s = 0;
  for (const json& r : reports) {
    if (r.contains(key) && r[key].is_number_unsigned()) {
      s += r[key].get<uint64_t>();
    }
  }
  return s;
}

TEST_P(Conformance, SameTranscriptPlainAndUnderUsmc) {
  const int smcd_min = SmcdMin(GetParam());
  ASSERT_GE(smcd_min, 0) << "conform_probe smcd-min " << GetParam();

  Exit plain = Run(false, dir_ + "/plain.jsonl");
  ASSERT_TRUE(plain.ok()) << "plain run failed (the case itself is wrong?)\n"
                          << plain;
  const std::string report = dir_ + "/usmc.jsonl";
  Exit smc = Run(true, report);
  ASSERT_TRUE(smc.ok()) << "under usmc\n" << smc;

  EXPECT_EQ(Join(ByRole(smc.out)), Join(ByRole(plain.out)))
      << "the transcript under usmc (left) differs from plain TCP's (right)";

  std::vector<json> reports = Reports(report);
  std::string all;
  for (const json& r : reports) all += r.dump() + "\n";
  EXPECT_GE(Sum(reports, "smcd"), static_cast<uint64_t>(smcd_min))
      << "SMC-D connection ends in the exit reports:\n"
      << all;
  EXPECT_EQ(Sum(reports, "handshake_errors"), 0u) << all;
}

INSTANTIATE_TEST_SUITE_P(Cases, Conformance, ::testing::ValuesIn(CaseNames()),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return p.param;
                         });

}  // namespace
}  // namespace usmc::conform_test
