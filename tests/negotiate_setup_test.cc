// tests/negotiate_setup_test.cc: `usmc setup` as a user runs it (root only):
// load + attach to the cgroup2 root, idempotence, --cgroup, --status,
// --remove, and the error without privilege. Checked independently with
// `bpftool cgroup show`. These attach globally, so CTest runs them alone.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "tests/negotiate_harness.h"

namespace usmc::negotiate_test {
namespace {

class UsmcSetup : public ::testing::Test {
 protected:
  void SetUp() override {
    USMC_REQUIRE_ROOT();
    pin_dir_ = "/sys/fs/bpf/usmc-negsetup-" + std::to_string(getpid());
    Result<std::string> root = negotiate::FindCgroup2Root();
    ASSERT_TRUE(root.ok()) << root.status();
    root_ = *root;
  }
  void TearDown() override {
    if (!pin_dir_.empty()) Usmc("--remove");
    if (!child_.empty()) rmdir(child_.c_str());
  }

  CommandResult Usmc(const std::string& args) {
    return RunCommand(std::string(USMC_BIN) + " setup --pin-dir " + pin_dir_ +
                      " " + args);
  }

  nlohmann::json Status() {
    CommandResult r = Usmc("--status --json");
    EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 3) << r.err;
    return nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  }

  std::set<uint32_t> ProgIds(const nlohmann::json& status) {
    std::set<uint32_t> ids;
    for (const auto& p : status["programs"])
      ids.insert(p["prog_id"].get<uint32_t>());
    return ids;
  }

  // Program ids attached to cgroup dir, as bpftool (not usmc) reports them;
  // each id once per attachment.
  std::multiset<uint32_t> BpftoolIds(const std::string& dir) {
    CommandResult r = RunCommand("bpftool -j cgroup show " + dir);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::multiset<uint32_t> ids;
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    if (j.is_array())
      for (const auto& e : j) ids.insert(e["id"].get<uint32_t>());
    return ids;
  }

  static size_t CountOf(const std::multiset<uint32_t>& in,
                        const std::set<uint32_t>& ids) {
    size_t n = 0;
    for (uint32_t id : ids) n += in.count(id);
    return n;
  }

  std::string pin_dir_;
  std::string root_;
  std::string child_;
};

TEST_F(UsmcSetup, SetupIsIdempotentAndRemoveLeavesNothingBehind) {
  CommandResult r = Usmc("");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("attached to " + root_), std::string::npos) << r.out;

  nlohmann::json st = Status();
  ASSERT_TRUE(st.is_object());
  EXPECT_TRUE(st["attached"].get<bool>());
  EXPECT_EQ(st["cgroup"].get<std::string>(), root_);
  std::set<uint32_t> ids = ProgIds(st);
  ASSERT_EQ(ids.size(), 3u);
  std::multiset<uint32_t> seen = BpftoolIds(root_);
  for (uint32_t id : ids) EXPECT_EQ(seen.count(id), 1u) << "prog " << id;

  // Pins are root-only: attaching a pinned program needs only O_RDWR on it.
  struct stat sb {};
  ASSERT_EQ(stat((pin_dir_ + "/prog_sockops").c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);

  r = Usmc("");  // again: nothing new
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("already attached"), std::string::npos) << r.out;
  seen = BpftoolIds(root_);
  for (uint32_t id : ids) EXPECT_EQ(seen.count(id), 1u) << "prog " << id;

  r = Usmc("--remove");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(CountOf(BpftoolIds(root_), ids), 0u);
  EXPECT_NE(access(pin_dir_.c_str(), F_OK), 0) << "pin dir left behind";
  r = Usmc("--status");
  EXPECT_EQ(r.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("not set up"), std::string::npos) << r.out;

  r = Usmc("");  // setup, remove, setup: exactly one fresh attachment
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::set<uint32_t> again = ProgIds(Status());
  ASSERT_EQ(again.size(), 3u);
  seen = BpftoolIds(root_);
  EXPECT_EQ(CountOf(seen, ids), 0u) << "stale attachment of the first setup";
  for (uint32_t id : again) EXPECT_EQ(seen.count(id), 1u) << "prog " << id;

  r = Usmc("--remove");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Usmc("--remove");  // removing twice is fine
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(UsmcSetup, CgroupOptionAttachesThereAndSetupMovesIt) {
  child_ = root_ + "/usmc-negsetup-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(child_.c_str(), 0755), 0);
  CommandResult r = Usmc("--cgroup " + child_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json st = Status();
  EXPECT_EQ(st["cgroup"].get<std::string>(), child_);
  std::set<uint32_t> ids = ProgIds(st);
  EXPECT_EQ(CountOf(BpftoolIds(child_), ids), 3u);
  EXPECT_EQ(CountOf(BpftoolIds(root_), ids), 0u);

  r = Usmc("");  // to the root: moved, not duplicated
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("moved"), std::string::npos) << r.out;
  EXPECT_EQ(CountOf(BpftoolIds(child_), ids), 0u);
  EXPECT_EQ(CountOf(BpftoolIds(root_), ids), 3u);
  EXPECT_EQ(Status()["cgroup"].get<std::string>(), root_);
}

// A pin directory that is not this build's complete set (half-done, or an
// older usmc) is replaced: the old attachments go, exactly one new set stays.
TEST_F(UsmcSetup, IncompletePinsAreReplacedWithoutStaleAttachments) {
  ASSERT_EQ(Usmc("").exit_code, 0);
  std::set<uint32_t> old_ids = ProgIds(Status());
  ASSERT_EQ(old_ids.size(), 3u);
  ASSERT_EQ(unlink((pin_dir_ + "/map_counters").c_str()), 0);
  CommandResult r = Usmc("");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("loaded and attached"), std::string::npos) << r.out;
  std::set<uint32_t> new_ids = ProgIds(Status());
  ASSERT_EQ(new_ids.size(), 3u);
  std::multiset<uint32_t> seen = BpftoolIds(root_);
  EXPECT_EQ(CountOf(seen, old_ids), 0u);
  for (uint32_t id : new_ids) EXPECT_EQ(seen.count(id), 1u) << "prog " << id;
}

TEST_F(UsmcSetup, StatusShowsCounters) {
  ASSERT_EQ(Usmc("").exit_code, 0);
  CommandResult r = Usmc("--status");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* word :
       {"attached", "sock_ops", "setsockopt", "getsockopt", "options_written",
        "offers_seen", "echoes", "reserve_failures", "cookie_fallbacks"})
    EXPECT_NE(r.out.find(word), std::string::npos) << word << " in\n" << r.out;
}

// usmc.service sets USMC_SETUP_BY; --status names who attached, --remove
// forgets it (the note in /run/usmc-setup).
TEST_F(UsmcSetup, StatusNamesWhoAttached) {
  CommandResult r =
      RunCommand("USMC_SETUP_BY=usmc.service " + std::string(USMC_BIN) +
                 " setup --pin-dir " + pin_dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Usmc("--status");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("by:     usmc.service since "), std::string::npos)
      << r.out;
  EXPECT_EQ(Status()["attached_by"].get<std::string>().rfind("usmc.service", 0),
            0u);
  // A hand-made setup over it keeps the owner; a new attachment by hand
  // after a remove says so.
  ASSERT_EQ(Usmc("").exit_code, 0);
  EXPECT_NE(Usmc("--status").out.find("by:     usmc.service"),
            std::string::npos);
  ASSERT_EQ(Usmc("--remove").exit_code, 0);
  ASSERT_EQ(Usmc("").exit_code, 0);
  EXPECT_NE(Usmc("--status").out.find("by:     usmc setup by hand"),
            std::string::npos);
}

TEST_F(UsmcSetup, WithoutPrivilegeNamesTheCapabilityAndTheFix) {
  // As an ordinary user: no capabilities at all.
  CommandResult r =
      RunCommand("setpriv --reuid=65534 --regid=65534 --clear-groups " +
                 std::string(USMC_BIN) + " setup --pin-dir " + pin_dir_);
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_NE(r.err.find("CAP_BPF"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("CAP_NET_ADMIN"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("sudo usmc setup"), std::string::npos) << r.err;
  EXPECT_NE(access(pin_dir_.c_str(), F_OK), 0) << "nothing may be pinned";

  // Root without CAP_NET_ADMIN (and CAP_SYS_ADMIN): only that one is named.
  r = RunCommand(
      "setpriv --inh-caps=-net_admin,-sys_admin "
      "--bounding-set=-net_admin,-sys_admin " +
      std::string(USMC_BIN) + " setup --pin-dir " + pin_dir_);
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_NE(r.err.find("missing capability CAP_NET_ADMIN"), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace usmc::negotiate_test
