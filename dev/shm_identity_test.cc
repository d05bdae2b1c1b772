#include "dev/shm_identity.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "dev/shm_test_util.h"
#include "gtest/gtest.h"

namespace usmc::dev {
namespace {

using testing::ReadAll;
using testing::WaitChild;
using testing::WriteAll;

constexpr char kBootA[] = "99e6cf70-6963-46b7-b403-3232fe3b0140\n";
constexpr char kBootB[] = "99e6cf70-6963-46b7-b403-3232fe3b0141";

TEST(ShmIdentityTest, DeriveIsDeterministicAndSeparatesInputs) {
  Result<ShmGid> a1 = DeriveShmGid(kBootA, 7);
  Result<ShmGid> a2 = DeriveShmGid(kBootA, 7);
  Result<ShmGid> b = DeriveShmGid(kBootB, 7);
  Result<ShmGid> other_ns = DeriveShmGid(kBootA, 8);
  ASSERT_TRUE(a1.ok() && a2.ok() && b.ok() && other_ns.ok());
  EXPECT_EQ(*a1, *a2);
  EXPECT_NE(a1->gid, b->gid);  // one bit of boot_id changes both words
  EXPECT_NE(a1->gid_ext, b->gid_ext);
  EXPECT_EQ(a1->gid, other_ns->gid);  // netns only enters gid_ext
  EXPECT_NE(a1->gid_ext, other_ns->gid_ext);
  EXPECT_NE(a1->gid, 0u);
  EXPECT_NE(a1->gid_ext, 0u);
}

TEST(ShmIdentityTest, DeriveRejectsNonUuid) {
  EXPECT_EQ(DeriveShmGid("", 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(
      DeriveShmGid("99e6cf70-6963-46b7-b403-3232fe3b01", 0).status().code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(
      DeriveShmGid("99e6cf70-6963-46b7-b403-3232fe3b0140aa", 0).status().code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(
      DeriveShmGid("zze6cf70-6963-46b7-b403-3232fe3b0140", 0).status().code(),
      StatusCode::kInvalidArgument);
}

TEST(ShmIdentityTest, LocalGidComesFromThisBootId) {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string boot_id;
  ASSERT_TRUE(std::getline(in, boot_id));
  Result<ShmGid> local = LocalShmGid();
  ASSERT_TRUE(local.ok()) << local.status();
  Result<ShmGid> derived = DeriveShmGid(boot_id, 0);
  ASSERT_TRUE(derived.ok());
  EXPECT_EQ(local->gid, derived->gid);
}

TEST(ShmIdentityTest, TwoProcessesOnThisHostShareTheGid) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Result<ShmGid> g = LocalShmGid();
    Result<uint64_t> t = NewDmbToken();
    uint64_t out[3] = {g.ok() ? g->gid : 0, g.ok() ? g->gid_ext : 0,
                       t.ok() ? *t : 0};
    _exit(WriteAll(fds[1], out, sizeof out).ok() ? 0 : 1);
  }
  ::close(fds[1]);
  uint64_t child[3] = {};
  ASSERT_TRUE(ReadAll(fds[0], child, sizeof child).ok());
  ::close(fds[0]);
  int st = WaitChild(pid);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  Result<ShmGid> mine = LocalShmGid();
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(child[0], mine->gid);
  EXPECT_EQ(child[1], mine->gid_ext);
  Result<uint64_t> my_token = NewDmbToken();
  ASSERT_TRUE(my_token.ok());
  EXPECT_NE(child[2], 0u);
  EXPECT_NE(child[2], *my_token);
}

// A process out of fds at its first look: the failure says EMFILE (the
// fallback names NOFD) and is not kept; it used to be cached, and every
// later connection of the process declined NOSMCDDEV. (Run alone, as ctest
// does: an earlier success in this process would be cached already.)
TEST(ShmIdentityTest, FailureOutOfFdsIsNotKept) {
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) _exit(10);
    lim.rlim_cur = 64;
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) _exit(11);
    std::vector<int> fill;
    for (int f; (f = ::open("/dev/null", O_RDONLY)) >= 0;) fill.push_back(f);
    Result<ShmGid> out = LocalShmGid();
    if (out.ok()) _exit(12);
    if (!OutOfFds(out.status())) _exit(13);
    for (int f : fill) ::close(f);
    _exit(LocalShmGid().ok() ? 0 : 14);
  }
  const int st = WaitChild(pid);
  ASSERT_TRUE(WIFEXITED(st));
  if (WEXITSTATUS(st) == 12) {
    GTEST_SKIP() << "an earlier test of this process cached the GID: run it "
                    "alone, as ctest does";
  }
  EXPECT_EQ(WEXITSTATUS(st), 0);
}

TEST(ShmIdentityTest, ChidIsVirtualButNotLoopbackIsm) {
  EXPECT_EQ(kShmChid & kVirtualChidMask, kVirtualChidMask);
  EXPECT_NE(kShmChid, 0xFFFF);
}

TEST(ShmIdentityTest, TokensAreNonZeroAndDistinct) {
  std::set<uint64_t> seen;
  for (int i = 0; i < 10000; ++i) {
    Result<uint64_t> t = NewDmbToken();
    ASSERT_TRUE(t.ok());
    ASSERT_NE(*t, 0u);
    seen.insert(*t);
  }
  EXPECT_EQ(seen.size(), 10000u);
}

TEST(ShmIdentityTest, TokensAreRandomInEveryBit) {
  // No bit is fixed (the old fd hint pinned the low 16): over 1000 tokens
  // every bit position is seen both set and clear.
  uint64_t ones = 0, zeros = 0;
  for (int i = 0; i < 1000; ++i) {
    Result<uint64_t> t = NewDmbToken();
    ASSERT_TRUE(t.ok());
    ones |= *t;
    zeros |= ~*t;
  }
  EXPECT_EQ(ones, ~uint64_t{0});
  EXPECT_EQ(zeros, ~uint64_t{0});
}

TEST(ShmIdentityTest, SipHashMatchesThePapersVectors) {
  // Key 00 01 .. 0f; messages 00 01 .. (len-1): the paper's test vectors
  // (appendix A: 15 bytes -> a129ca6149be45e5) and the first of its table.
  const uint64_t k0 = 0x0706050403020100ULL, k1 = 0x0f0e0d0c0b0a0908ULL;
  unsigned char m[64];
  for (int i = 0; i < 64; ++i) m[i] = static_cast<unsigned char>(i);
  EXPECT_EQ(SipHash24(k0, k1, m, 0), 0x726fdb47dd0e0e31ULL);
  EXPECT_EQ(SipHash24(k0, k1, m, 1), 0x74f839c593dc67fdULL);
  EXPECT_EQ(SipHash24(k0, k1, m, 15), 0xa129ca6149be45e5ULL);
  EXPECT_NE(SipHash24(k0, k1 ^ 1, m, 15), 0xa129ca6149be45e5ULL);
}

TEST(ShmIdentityTest, Mix64IsNotIdentityAndSpreadsBits) {
  EXPECT_NE(Mix64(1), 1u);
  EXPECT_NE(Mix64(1), Mix64(2));
  // One input bit flips roughly half the output bits.
  int bits = __builtin_popcountll(Mix64(0x1000) ^ Mix64(0x1001));
  EXPECT_GT(bits, 16);
  EXPECT_LT(bits, 48);
}

}  // namespace
}  // namespace usmc::dev
