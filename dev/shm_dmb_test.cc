#include "dev/shm_dmb.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "dev/shm_test_util.h"
#include "gtest/gtest.h"

namespace usmc::dev {
namespace {

using testing::CountMappings;
using testing::CountOpenFds;
using testing::WaitChild;

constexpr uint64_t kSize = 64 * 1024;
constexpr char kMapName[] = "memfd:usmc-dmb";

UniqueFd Dup(int fd) { return UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0)); }

// A memfd laid out like a DMB (control header filled in) but sealed only
// with `seals`, for Attach's rejection paths.
UniqueFd FakeDmb(uint64_t size, uint64_t token, int seals,
                 uint64_t file_size = 0) {
  UniqueFd fd(::memfd_create("fake", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (file_size == 0) file_size = DmbFileSize(size);
  if (::ftruncate(fd.get(), static_cast<off_t>(file_size)) != 0) return {};
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t hdr[3] = {kDmbMagic, token, size};
  if (file_size >= page &&
      ::pwrite(fd.get(), hdr, sizeof hdr,
               static_cast<off_t>(DmbFileSize(size) - page)) !=
          static_cast<ssize_t>(sizeof hdr)) {
    return {};
  }
  if (seals != 0 && ::fcntl(fd.get(), F_ADD_SEALS, seals) != 0) return {};
  return fd;
}

TEST(ShmDmbTest, RegisterGivesSealedSharedMemfd) {
  DmbBudget budget(16 << 20);
  Result<LocalDmb> dmb = LocalDmb::Register(kSize, budget);
  ASSERT_TRUE(dmb.ok()) << dmb.status();
  EXPECT_EQ(dmb->size(), kSize);
  EXPECT_EQ(dmb->bytes().size(), kSize);
  EXPECT_NE(dmb->token(), 0u);
  struct stat st {};
  ASSERT_EQ(::fstat(dmb->memfd(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), DmbFileSize(kSize));
  EXPECT_EQ(::fcntl(dmb->memfd(), F_GET_SEALS),
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_TRUE(::fcntl(dmb->memfd(), F_GETFD) & FD_CLOEXEC);
  EXPECT_EQ(budget.used(), DmbFileSize(kSize));
  dmb->bytes()[kSize - 1] = std::byte{0x5a};
  std::byte b[1];
  ASSERT_TRUE(dmb->Read(kSize - 1, b).ok());
  EXPECT_EQ(b[0], std::byte{0x5a});
  Result<LocalDmb> other = LocalDmb::Register(kSize, budget);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->token(), dmb->token());
}

TEST(ShmDmbTest, RegisterRejectsBadSizes) {
  DmbBudget budget(uint64_t{4} << 30);
  EXPECT_EQ(LocalDmb::Register(0, budget).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(LocalDmb::Register(kMaxDmbSize + 1, budget).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(budget.used(), 0u);
}

TEST(ShmDmbTest, PeerProcessCannotResizeOrReseal) {
  DmbBudget budget(16 << 20);
  Result<LocalDmb> dmb = LocalDmb::Register(kSize, budget);
  ASSERT_TRUE(dmb.ok());
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The "peer": holds the fd as after a handover and tries to hurt us.
    int fd = dmb->memfd();
    int bad = 0;
    if (::ftruncate(fd, 4096) == 0 || errno != EPERM) bad |= 1;
    if (::ftruncate(fd, 1 << 24) == 0 || errno != EPERM) bad |= 2;
    if (::fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) == 0 || errno != EPERM) {
      bad |= 4;
    }
    if (::fallocate(fd, 0, 0, 1 << 24) == 0) bad |= 8;
    _exit(bad);
  }
  int st = WaitChild(pid);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  struct stat s {};
  ASSERT_EQ(::fstat(dmb->memfd(), &s), 0);
  EXPECT_EQ(static_cast<uint64_t>(s.st_size), DmbFileSize(kSize));
}

TEST(ShmDmbTest, AttachSeesOwnerWritesAndWritesBack) {
  DmbBudget budget(16 << 20);
  Result<LocalDmb> dmb = LocalDmb::Register(kSize, budget);
  ASSERT_TRUE(dmb.ok());
  Result<PeerDmb> peer =
      PeerDmb::Attach(Dup(dmb->memfd()), dmb->token(), kSize);
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(peer->size(), kSize);
  EXPECT_EQ(peer->token(), dmb->token());
  const std::byte msg[] = {std::byte{1}, std::byte{2}, std::byte{3}};
  ASSERT_TRUE(peer->Write(kSize - 3, msg).ok());
  EXPECT_EQ(std::memcmp(dmb->bytes().data() + kSize - 3, msg, 3), 0);
  // Two mappings of one memfd: ours and the attached one.
  EXPECT_EQ(peer->bytes().data()[kSize - 1], std::byte{3});
}

TEST(ShmDmbTest, WriteAndReadAreBoundsChecked) {
  DmbBudget budget(16 << 20);
  Result<LocalDmb> dmb = LocalDmb::Register(kSize, budget);
  ASSERT_TRUE(dmb.ok());
  Result<PeerDmb> peer =
      PeerDmb::Attach(Dup(dmb->memfd()), dmb->token(), kSize);
  ASSERT_TRUE(peer.ok());
  std::byte buf[16] = {};
  EXPECT_EQ(peer->Write(kSize - 15, buf).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(peer->Write(~uint64_t{0} - 4, buf).code(),
            StatusCode::kInvalidArgument);  // offset + len wraps
  EXPECT_EQ(peer->Write(kSize + 1, std::span<std::byte>()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(peer->Write(kSize, std::span<std::byte>()).ok());
  EXPECT_TRUE(peer->Write(kSize - 16, buf).ok());
  EXPECT_EQ(dmb->Read(kSize - 15, buf).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(dmb->Read(~uint64_t{0}, buf).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(dmb->Read(0, buf).ok());
}

TEST(ShmDmbTest, AttachRejectsWrongTokenAndSize) {
  DmbBudget budget(16 << 20);
  Result<LocalDmb> dmb = LocalDmb::Register(kSize, budget);
  ASSERT_TRUE(dmb.ok());
  Result<PeerDmb> wrong_token =
      PeerDmb::Attach(Dup(dmb->memfd()), dmb->token() ^ 1, kSize);
  EXPECT_EQ(wrong_token.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(wrong_token.status().message().find("token"), std::string::npos);
  Result<PeerDmb> wrong_size =
      PeerDmb::Attach(Dup(dmb->memfd()), dmb->token(), kSize * 2);
  EXPECT_EQ(wrong_size.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(wrong_size.status().message().find("size"), std::string::npos);
  EXPECT_EQ(PeerDmb::Attach(Dup(dmb->memfd()), dmb->token(), 0).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ShmDmbTest, AttachRejectsUnsealedOrHalfSealedMemfd) {
  const uint64_t token = 0x1234;
  Result<PeerDmb> none =
      PeerDmb::Attach(FakeDmb(kSize, token, 0), token, kSize);
  EXPECT_EQ(none.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(none.status().message().find("sealed"), std::string::npos);
  Result<PeerDmb> no_grow =
      PeerDmb::Attach(FakeDmb(kSize, token, F_SEAL_SHRINK), token, kSize);
  EXPECT_EQ(no_grow.status().code(), StatusCode::kDataLoss);
  Result<PeerDmb> write_sealed = PeerDmb::Attach(
      FakeDmb(kSize, token, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE), token,
      kSize);
  EXPECT_EQ(write_sealed.status().code(), StatusCode::kDataLoss);
  // Correctly sealed fake: accepted (the checks are on the fd, not origin).
  Result<PeerDmb> ok = PeerDmb::Attach(
      FakeDmb(kSize, token, F_SEAL_SHRINK | F_SEAL_GROW), token, kSize);
  EXPECT_TRUE(ok.ok()) << ok.status();
  // Bad magic in the control page.
  UniqueFd bad_magic = FakeDmb(kSize, token, 0);
  const uint64_t zero = 0;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  ASSERT_EQ(::pwrite(bad_magic.get(), &zero, 8,
                     static_cast<off_t>(DmbFileSize(kSize) - page)),
            8);
  ASSERT_EQ(::fcntl(bad_magic.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW),
            0);
  EXPECT_EQ(PeerDmb::Attach(std::move(bad_magic), token, kSize).status().code(),
            StatusCode::kDataLoss);
}

TEST(ShmDmbTest, AttachRejectsWrongFileSizeAndNonMemfd) {
  const uint64_t token = 0x99;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  Result<PeerDmb> bigger =
      PeerDmb::Attach(FakeDmb(kSize, token, F_SEAL_SHRINK | F_SEAL_GROW,
                              DmbFileSize(kSize) + page),
                      token, kSize);
  EXPECT_EQ(bigger.status().code(), StatusCode::kDataLoss);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd w(p[1]);
  EXPECT_EQ(PeerDmb::Attach(UniqueFd(p[0]), token, kSize).status().code(),
            StatusCode::kDataLoss);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd s1(sv[1]);
  EXPECT_EQ(PeerDmb::Attach(UniqueFd(sv[0]), token, kSize).status().code(),
            StatusCode::kDataLoss);
}

TEST(ShmDmbTest, BudgetExhaustedThenFreedAgain) {
  DmbBudget budget(2 * DmbFileSize(kSize));
  Result<LocalDmb> a = LocalDmb::Register(kSize, budget);
  Result<LocalDmb> b = LocalDmb::Register(kSize, budget);
  ASSERT_TRUE(a.ok() && b.ok());
  Result<LocalDmb> c = LocalDmb::Register(kSize, budget);
  EXPECT_EQ(c.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(budget.used(), 2 * DmbFileSize(kSize));
  a->Unregister();
  EXPECT_EQ(budget.used(), DmbFileSize(kSize));
  Result<LocalDmb> d = LocalDmb::Register(kSize, budget);
  EXPECT_TRUE(d.ok()) << d.status();
  LocalDmb moved = std::move(*d);  // the charge moves with the DMB
  EXPECT_EQ(budget.used(), 2 * DmbFileSize(kSize));
  moved.Unregister();
  b->Unregister();
  EXPECT_EQ(budget.used(), 0u);
}

TEST(ShmDmbTest, ProcessBudgetDefaultsTo256MiB) {
  // dev/ reads no environment: the runtime sets the limit from its Config.
  ::setenv("USMC_DMB_BUDGET", "1K", 1);
  EXPECT_EQ(DmbBudget::Process().limit(), kDefaultDmbBudget);
  ::unsetenv("USMC_DMB_BUDGET");
  EXPECT_EQ(kDefaultDmbBudget, uint64_t{256} << 20);
}

TEST(ShmDmbTest, SetProcessDmbBudgetLimitsNewCharges) {
  DmbBudget& b = DmbBudget::Process();
  const uint64_t before = b.limit();
  SetProcessDmbBudget(b.used() + 4096);
  EXPECT_EQ(b.limit(), b.used() + 4096);
  EXPECT_FALSE(b.TryCharge(8192));
  EXPECT_TRUE(b.TryCharge(4096));
  b.Release(4096);
  SetProcessDmbBudget(before);
  EXPECT_EQ(b.limit(), before);
}

TEST(ShmDmbTest, ParseByteSize) {
  EXPECT_EQ(ParseByteSize("4096"), 4096u);
  EXPECT_EQ(ParseByteSize("64k"), 65536u);
  EXPECT_EQ(ParseByteSize("256M"), uint64_t{256} << 20);
  EXPECT_EQ(ParseByteSize("2G"), uint64_t{2} << 30);
  EXPECT_FALSE(ParseByteSize("").has_value());
  EXPECT_FALSE(ParseByteSize("-1").has_value());
  EXPECT_FALSE(ParseByteSize("12X").has_value());
  EXPECT_FALSE(ParseByteSize("1MB").has_value());
  EXPECT_FALSE(ParseByteSize("99999999999999999999").has_value());
  EXPECT_FALSE(ParseByteSize("17179869184G").has_value());
}

TEST(ShmDmbTest, UnregisterAndDetachLeaveNoFdOrMapping) {
  const int fds_before = CountOpenFds();
  const int maps_before = CountMappings(kMapName);
  {
    DmbBudget budget(16 << 20);
    std::vector<LocalDmb> locals;
    std::vector<PeerDmb> peers;
    for (int i = 0; i < 4; ++i) {
      Result<LocalDmb> l = LocalDmb::Register(kSize, budget);
      ASSERT_TRUE(l.ok());
      int sv[2];
      ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
      UniqueFd keep(sv[0]);
      Result<PeerDmb> p = PeerDmb::Attach(Dup(l->memfd()), l->token(), kSize,
                                          ShareFd(UniqueFd(sv[1])));
      ASSERT_TRUE(p.ok());
      locals.push_back(std::move(*l));
      peers.push_back(std::move(*p));
    }
    EXPECT_EQ(CountMappings(kMapName), maps_before + 8);
    EXPECT_GT(CountOpenFds(), fds_before);
    for (auto& p : peers) p.Detach();
    for (auto& l : locals) l.Unregister();
    EXPECT_EQ(CountMappings(kMapName), maps_before);
    EXPECT_EQ(CountOpenFds(), fds_before);
    EXPECT_EQ(budget.used(), 0u);
  }
  EXPECT_EQ(CountOpenFds(), fds_before);
}

// ---- exec handover: rebuilding from inherited fds ----

TEST(ShmDmbAdoptTest, AdoptRebuildsTheSameDmb) {
  DmbBudget budget(16 << 20);
  Result<LocalDmb> dmb = LocalDmb::Register(kSize, budget);
  ASSERT_TRUE(dmb.ok());
  const std::byte msg[] = {std::byte{7}, std::byte{8}};
  std::memcpy(dmb->bytes().data() + 100, msg, 2);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd other(sv[1]);
  Result<LocalDmb> again = LocalDmb::Adopt(
      Dup(dmb->memfd()), ShareFd(UniqueFd(sv[0])), dmb->token(), kSize, budget);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->token(), dmb->token());
  EXPECT_EQ(again->size(), kSize);
  EXPECT_EQ(std::memcmp(again->bytes().data() + 100, msg, 2), 0);
  ASSERT_TRUE(again->has_doorbell());
  EXPECT_EQ(again->doorbell().fd(), sv[0]);
  EXPECT_FALSE(dmb->has_doorbell());  // Register makes none: the handover
  EXPECT_EQ(budget.used(), 2 * DmbFileSize(kSize));
  again->Unregister();
  EXPECT_EQ(budget.used(), DmbFileSize(kSize));
}

TEST(ShmDmbAdoptTest, AdoptChecksTokenSizeSealsAndDoorbell) {
  DmbBudget budget(16 << 20);
  Result<LocalDmb> dmb = LocalDmb::Register(kSize, budget);
  ASSERT_TRUE(dmb.ok());
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd bell_keep(pair[0]), bell_other(pair[1]);
  const int bell = pair[0];
  auto adopt = [&](UniqueFd mem, UniqueFd door, uint64_t token, uint64_t size) {
    return LocalDmb::Adopt(std::move(mem), ShareFd(std::move(door)), token,
                           size, budget)
        .status();
  };
  Status s = adopt(Dup(dmb->memfd()), Dup(bell), dmb->token() ^ 1, kSize);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("token"), std::string::npos) << s;
  EXPECT_EQ(adopt(Dup(dmb->memfd()), Dup(bell), dmb->token(), kSize * 2).code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(adopt(Dup(dmb->memfd()), Dup(bell), dmb->token(), 0).code(),
            StatusCode::kInvalidArgument);
  // Sealed like a peer's DMB (no F_SEAL_SEAL): not one we registered.
  s = adopt(FakeDmb(kSize, dmb->token(), F_SEAL_SHRINK | F_SEAL_GROW),
            Dup(bell), dmb->token(), kSize);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  // The doorbell must be an AF_UNIX stream socket.
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd w(p[1]);
  s = adopt(Dup(dmb->memfd()), UniqueFd(p[0]), dmb->token(), kSize);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("doorbell"), std::string::npos) << s;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd s1(sv[1]);
  EXPECT_EQ(
      adopt(Dup(dmb->memfd()), UniqueFd(sv[0]), dmb->token(), kSize).code(),
      StatusCode::kDataLoss);
  EXPECT_EQ(adopt(UniqueFd(), Dup(bell), dmb->token(), kSize).code(),
            StatusCode::kSystem);
  // Nothing charged by the failures.
  EXPECT_EQ(budget.used(), DmbFileSize(kSize));
  DmbBudget tiny(DmbFileSize(kSize) - 1);
  EXPECT_EQ(LocalDmb::Adopt(Dup(dmb->memfd()), ShareFd(Dup(bell)), dmb->token(),
                            kSize, tiny)
                .status()
                .code(),
            StatusCode::kResourceExhausted);
}

TEST(ShmDmbAdoptTest, PeerDmbKeepsItsMemfdUntilDetach) {
  DmbBudget budget(16 << 20);
  Result<LocalDmb> dmb = LocalDmb::Register(kSize, budget);
  ASSERT_TRUE(dmb.ok());
  const int before = CountOpenFds();
  Result<PeerDmb> peer =
      PeerDmb::Attach(Dup(dmb->memfd()), dmb->token(), kSize);
  ASSERT_TRUE(peer.ok());
  ASSERT_GE(peer->memfd(), 0);
  EXPECT_EQ(CountOpenFds(), before + 1);
  // The kept fd attaches again, as after exec.
  Result<PeerDmb> again =
      PeerDmb::Attach(Dup(peer->memfd()), dmb->token(), kSize);
  EXPECT_TRUE(again.ok()) << again.status();
  again->Detach();
  peer->Detach();
  EXPECT_EQ(peer->memfd(), -1);
  EXPECT_EQ(CountOpenFds(), before);
}

}  // namespace
}  // namespace usmc::dev
