// runtime::Config: defaults, valid values, and each kind of bad value (one
// error line naming the variable and what is allowed; the default is used).
#include "runtime/config.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>

#include "dev/shm_dmb.h"
#include "dev/shm_doorbell.h"
#include "engine/common.h"
#include "runtime/smc_socket.h"

namespace usmc::runtime {
namespace {

using Env = std::map<std::string, std::string>;

struct Loaded {
  Config config;
  std::vector<std::string> errors;
};

Loaded Load(const Env& env) {
  Loaded l;
  l.config = LoadConfig(
      [&](const char* name) -> const char* {
        auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
      },
      &l.errors);
  return l;
}

// The one error line for `var`, which must say what is allowed and that
// the default is used.
void ExpectOneError(const Loaded& l, const std::string& var,
                    const std::string& value, const std::string& allowed) {
  ASSERT_EQ(l.errors.size(), 1u) << var;
  const std::string& e = l.errors[0];
  EXPECT_EQ(e.find(var + "=" + value), 0u) << e;
  EXPECT_NE(e.find("allowed: " + allowed), std::string::npos) << e;
  EXPECT_NE(e.find("using the default"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

// Memory that follows use (issue 21): 10,000 connections of one process
// fit in the default budget of a machine with 4 GiB of RAM.
TEST(ConfigTest, TenThousandDmbsFitTheDefaultBudget) {
  EXPECT_EQ(DefaultDmbBudgetFor(uint64_t{1} << 30), uint64_t{256} << 20);
  EXPECT_EQ(DefaultDmbBudgetFor(uint64_t{8} << 30), uint64_t{1} << 30);
  EXPECT_EQ(DefaultDmbBudgetFor(uint64_t{1} << 40), uint64_t{4} << 30);
  EXPECT_EQ(HeldDmbSize(0), kDefaultDmbSize);
  EXPECT_EQ(HeldDmbSize((uint64_t{64} << 20) - 1), kDefaultDmbSize);
  EXPECT_EQ(HeldDmbSize(uint64_t{64} << 20), 64u * 1024);
  EXPECT_EQ(HeldDmbSize(uint64_t{128} << 20), 16u * 1024);
  // As the preload's sockets register them: the first three roomy.
  uint64_t held = 0;
  for (int i = 0; i < 10000; ++i) {
    const uint64_t size = held + dev::DmbFileSize(1 << 20) <= (4u << 20)
                              ? 1 << 20
                              : HeldDmbSize(held);
    held += dev::DmbFileSize(size);
  }
  EXPECT_LE(held, DefaultDmbBudgetFor(uint64_t{4} << 30)) << held;
}

TEST(ConfigTest, DefaultsWhenNothingIsSet) {
  Loaded l = Load({});
  EXPECT_TRUE(l.errors.empty());
  EXPECT_EQ(l.config.clc_timeout, kInterposerClcTimeout);
  EXPECT_EQ(l.config.clc_timeout, std::chrono::milliseconds(2000));
  EXPECT_FALSE(l.config.dmb_size.has_value());
  EXPECT_EQ(l.config.dmb_budget, DefaultDmbBudget());
  EXPECT_EQ(l.config.spin_us, dev::kDefaultSpinUs);
  EXPECT_TRUE(l.config.epoll_scan);
  EXPECT_TRUE(l.config.progress_thread);
}

TEST(ConfigTest, EmptyCountsAsUnset) {
  Loaded l = Load({{"USMC_DMB_SIZE", ""},
                   {"USMC_CLC_TIMEOUT_MS", ""},
                   {"USMC_SPIN_US", ""},
                   {"USMC_DMB_BUDGET", ""},
                   {"USMC_EPOLL_SCAN", ""},
                   {"USMC_PROGRESS_THREAD", ""}});
  EXPECT_TRUE(l.errors.empty());
  EXPECT_FALSE(l.config.dmb_size.has_value());
  EXPECT_EQ(l.config.clc_timeout, kInterposerClcTimeout);
  EXPECT_TRUE(l.config.epoll_scan);
}

TEST(ConfigTest, ValidValues) {
  Loaded l = Load({{"USMC_DMB_SIZE", "65536"},
                   {"USMC_CLC_TIMEOUT_MS", "300"},
                   {"USMC_SPIN_US", "0"},
                   {"USMC_DMB_BUDGET", "64M"},
                   {"USMC_EPOLL_SCAN", "0"},
                   {"USMC_PROGRESS_THREAD", "0"}});
  EXPECT_TRUE(l.errors.empty());
  EXPECT_EQ(l.config.dmb_size, 65536u);
  EXPECT_EQ(l.config.clc_timeout, std::chrono::milliseconds(300));
  EXPECT_EQ(l.config.spin_us, 0u);
  EXPECT_EQ(l.config.dmb_budget, uint64_t{64} << 20);
  EXPECT_FALSE(l.config.epoll_scan);
  EXPECT_FALSE(l.config.progress_thread);
  // The bounds are allowed.
  l = Load({{"USMC_DMB_SIZE", "16384"},
            {"USMC_CLC_TIMEOUT_MS", "60000"},
            {"USMC_SPIN_US", "100000"},
            {"USMC_EPOLL_SCAN", "1"}});
  EXPECT_TRUE(l.errors.empty());
  EXPECT_EQ(l.config.dmb_size, 16384u);
  EXPECT_EQ(l.config.clc_timeout, std::chrono::milliseconds(60000));
  EXPECT_EQ(l.config.spin_us, 100000u);
  EXPECT_TRUE(l.config.epoll_scan);
}

TEST(ConfigTest, DmbSizeNotANumber) {
  Loaded l = Load({{"USMC_DMB_SIZE", "abc"}});
  ExpectOneError(l, "USMC_DMB_SIZE", "abc", "an integer 16384..1048576");
  EXPECT_FALSE(l.config.dmb_size.has_value());
}

TEST(ConfigTest, DmbSizeOutOfRange) {
  for (const char* v : {"1024", "2097152", "-65536", "65536x"}) {
    Loaded l = Load({{"USMC_DMB_SIZE", v}});
    ExpectOneError(l, "USMC_DMB_SIZE", v, "an integer 16384..1048576");
    EXPECT_FALSE(l.config.dmb_size.has_value()) << v;
  }
}

TEST(ConfigTest, ClcTimeoutZero) {
  Loaded l = Load({{"USMC_CLC_TIMEOUT_MS", "0"}});
  ExpectOneError(l, "USMC_CLC_TIMEOUT_MS", "0", "an integer 10..60000");
  EXPECT_EQ(l.config.clc_timeout, kInterposerClcTimeout);
  l = Load({{"USMC_CLC_TIMEOUT_MS", "60001"}});
  ExpectOneError(l, "USMC_CLC_TIMEOUT_MS", "60001", "an integer 10..60000");
  l = Load({{"USMC_CLC_TIMEOUT_MS", "99999999999999999999999"}});
  ExpectOneError(l, "USMC_CLC_TIMEOUT_MS", "99999999999999999999999",
                 "an integer 10..60000");
}

TEST(ConfigTest, SpinNegative) {
  Loaded l = Load({{"USMC_SPIN_US", "-1"}});
  ExpectOneError(l, "USMC_SPIN_US", "-1", "an integer 0..100000");
  EXPECT_EQ(l.config.spin_us, dev::kDefaultSpinUs);
  l = Load({{"USMC_SPIN_US", "100001"}});
  ExpectOneError(l, "USMC_SPIN_US", "100001", "an integer 0..100000");
  EXPECT_EQ(l.config.spin_us, dev::kDefaultSpinUs);
}

TEST(ConfigTest, DmbBudgetMalformed) {
  for (const char* v : {"lots", "-1", "12Q"}) {
    Loaded l = Load({{"USMC_DMB_BUDGET", v}});
    ExpectOneError(l, "USMC_DMB_BUDGET", v, "bytes, optionally with a K");
    EXPECT_EQ(l.config.dmb_budget, DefaultDmbBudget()) << v;
  }
}

TEST(ConfigTest, FlagsTakeZeroOrOne) {
  Loaded l = Load({{"USMC_EPOLL_SCAN", "off"}});
  ExpectOneError(l, "USMC_EPOLL_SCAN", "off", "0 or 1");
  EXPECT_TRUE(l.config.epoll_scan);
  l = Load({{"USMC_PROGRESS_THREAD", "no"}});
  ExpectOneError(l, "USMC_PROGRESS_THREAD", "no", "0 or 1");
  EXPECT_TRUE(l.config.progress_thread);
  // Arenas are the default; a bad value keeps it.
  EXPECT_TRUE(Load({}).config.shm_arena);
  l = Load({{"USMC_SHM_ARENA", "yes"}});
  ExpectOneError(l, "USMC_SHM_ARENA", "yes", "0 or 1");
  EXPECT_TRUE(l.config.shm_arena);
  l = Load({{"USMC_SHM_ARENA", "0"}});
  EXPECT_TRUE(l.errors.empty());
  EXPECT_FALSE(l.config.shm_arena);
}

TEST(ConfigTest, EachBadValueIsItsOwnLine) {
  Loaded l = Load({{"USMC_DMB_SIZE", "abc"},
                   {"USMC_CLC_TIMEOUT_MS", "0"},
                   {"USMC_SPIN_US", "-1"},
                   {"USMC_EPOLL_SCAN", "0"}});
  EXPECT_EQ(l.errors.size(), 3u);
  EXPECT_FALSE(l.config.epoll_scan);  // the good one still counts
}

TEST(ConfigTest, EveryVariableIsListed) {
  std::vector<std::string> names;
  for (const ConfigVar& v : ConfigVars()) names.push_back(v.name);
  EXPECT_EQ(names, (std::vector<std::string>{
                       "USMC_CLC_TIMEOUT_MS", "USMC_DMB_SIZE",
                       "USMC_DMB_BUDGET", "USMC_SPIN_US", "USMC_EPOLL_SCAN",
                       "USMC_PROGRESS_THREAD", "USMC_SMCR", "USMC_SHM_ARENA"}));
}

TEST(ConfigTest, OneClcTimeoutBelowTheInterposer) {
  // runtime::Options (and the engine) default to the kernel's CLC wait.
  EXPECT_EQ(Options{}.clc_timeout, engine::kClcTimeout);
  EXPECT_EQ(engine::kClcTimeout, std::chrono::seconds(6));
}

// ProcessConfig reads the real environment once and sets the device's
// process-wide values from it. Run in a child so that this process's
// first call is the one under test.
TEST(ConfigTest, ProcessConfigSetsTheDevice) {
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::setenv("USMC_DMB_BUDGET", "8M", 1);
    ::setenv("USMC_SPIN_US", "7", 1);
    const Config& c = ProcessConfig();
    ::setenv("USMC_SPIN_US", "9", 1);  // read once: too late
    bool ok = c.spin_us == 7 && &ProcessConfig() == &c &&
              ProcessConfig().spin_us == 7 && dev::DefaultSpinUs() == 7 &&
              dev::DmbBudget::Process().limit() == (uint64_t{8} << 20);
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// A bad value in the real environment: one line on stderr, "usmc: " first,
// and the app goes on with the default.
TEST(ConfigTest, ProcessConfigReportsBadValuesOnStderr) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(p[0]);
    ::dup2(p[1], 2);
    ::setenv("USMC_SPIN_US", "-1", 1);
    ::unsetenv("USMC_DMB_BUDGET");
    bool ok = ProcessConfig().spin_us == dev::kDefaultSpinUs &&
              dev::DefaultSpinUs() == dev::kDefaultSpinUs;
    std::fflush(stderr);
    ::_exit(ok ? 0 : 1);
  }
  ::close(p[1]);
  std::string out;
  char buf[256];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;) out.append(buf, n);
  ::close(p[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(out,
            "usmc: USMC_SPIN_US=-1 is not allowed (allowed: an integer "
            "0..100000, in microseconds); using the default, 20\n");
}

}  // namespace
}  // namespace usmc::runtime
