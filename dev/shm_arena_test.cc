#include "dev/shm_arena.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "base/owned_fd.h"
#include "dev/shm_test_util.h"

namespace usmc::dev {
namespace {

using testing::CountMappings;
using testing::CountOpenFds;

constexpr uint64_t kArena = 16 << 20;
constexpr uint64_t kDmb = 64 * 1024;

UniqueFd Dup(int fd) {
  return UniqueFd(base::OwnFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0)));
}

// What PeerDmb::Detach does on the peer's side of a slot.
void PeerReleases(ShmArena& a, ArenaSlot s) {
  std::atomic_ref<uint64_t>(
      *reinterpret_cast<uint64_t*>(a.Ctrl(s) + kCtrlPeerReleasedOff))
      .store(1, std::memory_order_release);
}

// Free as a connection's end does it once the peer has detached too.
void Done(ShmArena& a, ArenaSlot s) {
  PeerReleases(a, s);
  a.Free(s);
}

TEST(ShmArenaTest, SlotIsADmbThePeerSeesThroughOneMapping) {
  DmbBudget budget(kArena);
  auto a = ShmArena::Create(kArena, budget);
  ASSERT_TRUE(a.ok()) << a.status();
  auto s = (*a)->Allocate(kDmb, 0x1234);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(budget.used(), DmbFileSize(kDmb));
  auto peer =
      ShmArena::AttachPeer(Dup((*a)->memfd()), (*a)->file_size(), (*a)->id());
  ASSERT_TRUE(peer.ok()) << peer.status();
  ASSERT_TRUE((*peer)->CheckSlot(*s).ok());
  // The control page of the slot names the DMB exactly as a DMB file's.
  uint64_t magic, token, size;
  std::memcpy(&magic, (*peer)->Ctrl(*s) + kCtrlMagicOff, 8);
  std::memcpy(&token, (*peer)->Ctrl(*s) + kCtrlTokenOff, 8);
  std::memcpy(&size, (*peer)->Ctrl(*s) + kCtrlSizeOff, 8);
  EXPECT_EQ(magic, kDmbMagic);
  EXPECT_EQ(token, 0x1234u);
  EXPECT_EQ(size, kDmb);
  // The peer writes the slot, the owner reads it.
  std::memcpy((*peer)->Bytes(*s).data() + 100, "hello", 5);
  EXPECT_EQ(std::memcmp((*a)->Bytes(*s).data() + 100, "hello", 5), 0);
  Done(**a, *s);
  EXPECT_EQ(budget.used(), 0u);
}

// The point of the arena: after the first connection of a pair, a new
// connection's DMB costs no memfd, no mapping and no fd.
TEST(ShmArenaTest, SequentialSlotsReuseOneWarmSlotWithoutFdsOrMappings) {
  DmbBudget budget(kArena);
  auto a = ShmArena::Create(kArena, budget);
  ASSERT_TRUE(a.ok());
  auto first = (*a)->Allocate(kDmb, 1);
  ASSERT_TRUE(first.ok());
  Done(**a, *first);
  const int fds = CountOpenFds();
  const int maps = CountMappings("usmc-");
  for (int i = 0; i < 100; ++i) {
    auto s = (*a)->Allocate(kDmb, 2 + i);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(*s, *first);  // the warmest slot
    // A reused slot starts as a fresh DMB: CDC area zero.
    for (int b = 0; b < 32; ++b) EXPECT_EQ((*a)->Bytes(*s)[b], std::byte{0});
    std::memset((*a)->Bytes(*s).data(), 0xab, 64);  // the last conn's bytes
    Done(**a, *s);
  }
  EXPECT_EQ(CountOpenFds(), fds);
  EXPECT_EQ(CountMappings("usmc-"), maps);
  const ArenaStats st = (*a)->stats();
  EXPECT_EQ(st.slots_created, 1u);
  EXPECT_EQ(st.slots_reused, 100u);
  EXPECT_EQ(st.slots_in_use, 0u);
}

TEST(ShmArenaTest, ConcurrentSlotsCostOneFdInTotal) {
  DmbBudget budget(kArena);
  const int fds = CountOpenFds();
  auto a = ShmArena::Create(kArena, budget);
  ASSERT_TRUE(a.ok());
  std::vector<ArenaSlot> slots;
  for (int i = 0; i < 50; ++i) {
    auto s = (*a)->Allocate(16 * 1024, 1 + i);
    ASSERT_TRUE(s.ok()) << s.status();
    for (const ArenaSlot& o : slots) EXPECT_NE(o.offset, s->offset);
    slots.push_back(*s);
  }
  EXPECT_EQ(CountOpenFds(), fds + 1);
  EXPECT_EQ(CountMappings("usmc-arena"), 1);
  for (const ArenaSlot& s : slots) Done(**a, s);
}

// Above the warm watermark a freed slot's pages go back to the kernel; the
// file keeps its size and seals, and the slot can be taken again.
TEST(ShmArenaTest, FreedSlotsAboveTheWatermarkArePunched) {
  DmbBudget budget(kArena);
  auto a = ShmArena::Create(kArena, budget, /*warm_bytes=*/DmbFileSize(kDmb));
  ASSERT_TRUE(a.ok());
  auto s1 = (*a)->Allocate(kDmb, 1);
  auto s2 = (*a)->Allocate(kDmb, 2);
  ASSERT_TRUE(s1.ok() && s2.ok());
  std::memset((*a)->Bytes(*s1).data(), 1, kDmb);
  std::memset((*a)->Bytes(*s2).data(), 2, kDmb);
  struct stat before {};
  ASSERT_EQ(::fstat((*a)->memfd(), &before), 0);
  Done(**a, *s1);  // kept warm
  Done(**a, *s2);  // over the watermark: punched
  struct stat after {};
  ASSERT_EQ(::fstat((*a)->memfd(), &after), 0);
  EXPECT_EQ(after.st_size, before.st_size);
  EXPECT_LE(after.st_blocks * 512,
            before.st_blocks * 512 - static_cast<off_t>(kDmb));
  EXPECT_EQ((*a)->stats().punched, 1u);
  EXPECT_EQ((*a)->stats().warm_bytes, DmbFileSize(kDmb));
  // Warm first, then the punched one (zeros again).
  auto r1 = (*a)->Allocate(kDmb, 3);
  auto r2 = (*a)->Allocate(kDmb, 4);
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_EQ(*r1, *s1);
  EXPECT_EQ(*r2, *s2);
  EXPECT_EQ((*a)->Bytes(*r2)[kDmb - 1], std::byte{0});
  EXPECT_EQ((*a)->stats().slots_created, 2u);
}

TEST(ShmArenaTest, BudgetAndArenaSizeBoundAllocation) {
  DmbBudget budget(2 * DmbFileSize(kDmb));
  auto a = ShmArena::Create(kArena, budget);
  ASSERT_TRUE(a.ok());
  auto s1 = (*a)->Allocate(kDmb, 1);
  auto s2 = (*a)->Allocate(kDmb, 2);
  ASSERT_TRUE(s1.ok() && s2.ok());
  auto s3 = (*a)->Allocate(kDmb, 3);
  ASSERT_FALSE(s3.ok());
  EXPECT_EQ(s3.status().code(), StatusCode::kResourceExhausted);
  Done(**a, *s1);
  EXPECT_TRUE((*a)->Allocate(kDmb, 4).ok());

  DmbBudget big(uint64_t{1} << 30);
  auto small = ShmArena::Create(kMinArenaSize, big);
  ASSERT_TRUE(small.ok());
  ASSERT_TRUE((*small)->Allocate(1 << 20, 1).ok());
  auto full = (*small)->Allocate(16 * 1024, 2);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(big.used(), DmbFileSize(1 << 20));  // the failed one uncharged
}

// A peer names slots (offset, size): nothing it names may form a pointer
// outside the arena or into its header page.
TEST(ShmArenaTest, CheckSlotRejectsEverySlotOutsideTheArena) {
  DmbBudget budget(kArena);
  auto a = ShmArena::Create(kArena, budget);
  ASSERT_TRUE(a.ok());
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t size = (*a)->file_size();
  const ArenaSlot bad[] = {
      {0, kDmb},            // the header page
      {page + 1, kDmb},     // unaligned
      {size, kDmb},         // past the end
      {size - page, kDmb},  // straddles the end
      {size - DmbFileSize(kDmb) + page, kDmb},
      {~uint64_t{0} - page + 1, kDmb},  // wraps
      {page, 0},                        // no DMB
      {page, kMaxDmbSize + 1},          // too large
      {page, size},                     // larger than the arena
  };
  for (const ArenaSlot& s : bad) {
    EXPECT_EQ((*a)->CheckSlot(s).code(), StatusCode::kDataLoss)
        << s.offset << "+" << s.size;
  }
  EXPECT_TRUE((*a)->CheckSlot({size - DmbFileSize(kDmb), kDmb}).ok());
  EXPECT_TRUE((*a)->CheckSlot({page, kDmb}).ok());
}

TEST(ShmArenaTest, AttachPeerRejectsWrongSizeIdAndSeals) {
  DmbBudget budget(kArena);
  auto a = ShmArena::Create(kArena, budget);
  ASSERT_TRUE(a.ok());
  const uint64_t size = (*a)->file_size();
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  EXPECT_EQ(ShmArena::AttachPeer(Dup((*a)->memfd()), size + page, (*a)->id())
                .status()
                .code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(ShmArena::AttachPeer(Dup((*a)->memfd()), size, (*a)->id() ^ 1)
                .status()
                .code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(
      ShmArena::AttachPeer(Dup((*a)->memfd()), kMaxArenaSize * 2, (*a)->id())
          .status()
          .code(),
      StatusCode::kDataLoss);
  // An unsealed memfd of the right size and header: a peer could shrink it
  // under us (SIGBUS).
  UniqueFd loose(base::OwnFd(::memfd_create("x", MFD_CLOEXEC)));
  ASSERT_EQ(::ftruncate(loose.get(), static_cast<off_t>(size)), 0);
  std::byte hdr[24];
  std::memcpy(hdr, (*a)->Bytes({0, 24}).data(), sizeof hdr);
  ASSERT_EQ(::pwrite(loose.get(), hdr, sizeof hdr, 0), 24);
  EXPECT_EQ(
      ShmArena::AttachPeer(std::move(loose), size, (*a)->id()).status().code(),
      StatusCode::kDataLoss);
  // A peer arena is never carved by us.
  auto peer = ShmArena::AttachPeer(Dup((*a)->memfd()), size, (*a)->id());
  ASSERT_TRUE(peer.ok());
  EXPECT_EQ((*peer)->Allocate(kDmb, 1).status().code(),
            StatusCode::kFailedPrecondition);
}

// A slot we freed while the peer is still attached (its close has not
// reached it yet) must not be reused: its late writes (data, CDC, cursor
// updates) would land in the next connection's buffer.
TEST(ShmArenaTest, SlotIsReusedOnlyAfterThePeerReleasedIt) {
  DmbBudget budget(kArena);
  auto a = ShmArena::Create(kArena, budget);
  ASSERT_TRUE(a.ok());
  auto s1 = (*a)->Allocate(kDmb, 1);
  ASSERT_TRUE(s1.ok());
  (*a)->Free(*s1);  // the peer still holds it
  EXPECT_EQ(budget.used(), 0u);
  EXPECT_EQ((*a)->stats().quarantined, 1u);
  auto s2 = (*a)->Allocate(kDmb, 2);
  ASSERT_TRUE(s2.ok());
  EXPECT_NE(s2->offset, s1->offset);
  PeerReleases(**a, *s1);
  Done(**a, *s2);
  auto s3 = (*a)->Allocate(kDmb, 3);
  ASSERT_TRUE(s3.ok());
  EXPECT_TRUE(*s3 == *s1 || *s3 == *s2);
  EXPECT_EQ((*a)->stats().quarantined, 0u);
  // A reused slot starts unreleased again.
  uint64_t released;
  std::memcpy(&released, (*a)->Ctrl(*s3) + kCtrlPeerReleasedOff, 8);
  EXPECT_EQ(released, 0u);
}

// A peer that never releases its slots (it died holding them, or is
// hostile) fills the quarantine; Allocate and Free must still look at a
// bounded number of control words each, not at every quarantined slot.
TEST(ShmArenaTest, QuarantineCostPerAllocateIsBounded) {
  DmbBudget budget(kArena);
  auto a = ShmArena::Create(kArena, budget);
  ASSERT_TRUE(a.ok());
  constexpr int kStuck = 100, kCycles = 50;
  std::vector<ArenaSlot> stuck;
  for (int i = 0; i < kStuck; ++i) {
    auto s = (*a)->Allocate(16 * 1024, 1);
    ASSERT_TRUE(s.ok()) << s.status();
    stuck.push_back(*s);
  }
  for (ArenaSlot s : stuck) (*a)->Free(s);
  ASSERT_EQ((*a)->stats().quarantined, uint64_t{kStuck});
  const uint64_t looks = (*a)->stats().quarantine_looks;
  ArenaSlot first{};
  for (int i = 0; i < kCycles; ++i) {
    auto s = (*a)->Allocate(kDmb, 2);
    ASSERT_TRUE(s.ok());
    if (i == 0) first = *s;
    EXPECT_EQ(*s, first);  // the warm slot, every time
    Done(**a, *s);
  }
  EXPECT_LE((*a)->stats().quarantine_looks - looks,
            uint64_t{kCycles} * (kQuarantineSweep + 1));
  EXPECT_EQ((*a)->stats().quarantined, uint64_t{kStuck});
  // Released late, they all come back within a bounded number of
  // allocations.
  for (ArenaSlot s : stuck) PeerReleases(**a, s);
  for (int i = 0; i < kStuck; ++i) {
    auto s = (*a)->Allocate(kDmb, 3);
    ASSERT_TRUE(s.ok());
    Done(**a, *s);
  }
  EXPECT_EQ((*a)->stats().quarantined, 0u);
}

// After exec or a pass, several records name one arena: it is attached
// once (one mapping, one fd), a duplicate fd of it is closed, and an
// adopted own arena gives back its slots but never allocates.
TEST(ShmArenaTest, AdoptArenaAttachesEachArenaOnce) {
  DmbBudget budget(kArena);
  auto a = ShmArena::Create(kArena, budget);
  ASSERT_TRUE(a.ok());
  auto s1 = (*a)->Allocate(kDmb, 1);
  auto s2 = (*a)->Allocate(kDmb, 2);
  ASSERT_TRUE(s1.ok() && s2.ok());
  const int fd = Dup((*a)->memfd()).Release();
  const int maps = CountMappings("usmc-arena");
  auto x = AdoptArena(fd, (*a)->file_size(), (*a)->id(), /*own=*/true);
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_TRUE((*x)->adopted());
  EXPECT_EQ(CountMappings("usmc-arena"), maps + 1);
  const int fds = CountOpenFds();
  // The same fd number again (exec: every record of the pair names it).
  auto y = AdoptArena(fd, (*a)->file_size(), (*a)->id(), /*own=*/true);
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(*y, *x);
  EXPECT_GE(::fcntl(fd, F_GETFD), 0);  // still open: the arena's
  // Another fd of the same arena (a pass): closed, the arena reused.
  const int dup = Dup(fd).Release();
  auto z = AdoptArena(dup, (*a)->file_size(), (*a)->id(), /*own=*/true);
  ASSERT_TRUE(z.ok()) << z.status();
  EXPECT_EQ(*z, *x);
  EXPECT_EQ(CountOpenFds(), fds);
  EXPECT_EQ(CountMappings("usmc-arena"), maps + 1);
  // A known arena's fd under another id is refused and stays open.
  EXPECT_FALSE(AdoptArena(fd, (*a)->file_size(), 99, /*own=*/true).ok());
  EXPECT_GE(::fcntl(fd, F_GETFD), 0);
  // Slots come back by offset; Allocate is refused.
  EXPECT_TRUE((*x)->AdoptSlot(*s1).ok());
  EXPECT_FALSE((*x)->AdoptSlot(*s1).ok());  // twice
  EXPECT_EQ((*x)->Allocate(kDmb, 3).status().code(),
            StatusCode::kFailedPrecondition);
  (*x)->Free(*s1);  // never shelved: another holder may still use it
  EXPECT_EQ((*x)->stats().free_slots, 0u);
  EXPECT_EQ((*x)->stats().leaked, 1u);
}

// A forked child inherits the mapping, but must not carve slots in it: the
// parent's peer maps it and would read the child's connections.
TEST(ShmArenaTest, ForkedChildCannotAllocateFromTheParentsArena) {
  DmbBudget budget(kArena);
  auto a = ShmArena::Create(kArena, budget);
  ASSERT_TRUE(a.ok());
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = (*a)->Allocate(kDmb, 1);
    ::_exit(!s.ok() && s.status().code() == StatusCode::kFailedPrecondition
                ? 0
                : 1);
  }
  const int status = testing::WaitChild(pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE((*a)->Allocate(kDmb, 2).ok());  // the parent still may
}

// A forking server: the parent (the arena's creator) leaves a slot to its
// child, which holds the connection alone. The slot comes back once the
// child freed it and the peer released it, not before (the child's
// connection would share it with the next one), and not only at exit.
TEST(ShmArenaTest, SlotLeftToAForkedChildComesBackOnceItFreedIt) {
  DmbBudget budget(kArena);
  auto a = ShmArena::Create(kArena, budget);
  ASSERT_TRUE(a.ok());
  auto s1 = (*a)->Allocate(kDmb, 1);
  ASSERT_TRUE(s1.ok());
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    char c;
    if (::read(go[0], &c, 1) != 1) ::_exit(2);
    (*a)->Free(*s1);  // the last holder lets go
    ::_exit(0);
  }
  ::close(go[0]);
  (*a)->Leak(*s1);  // the parent's close: the child holds it
  PeerReleases(**a, *s1);
  auto s2 = (*a)->Allocate(kDmb, 2);
  ASSERT_TRUE(s2.ok());
  EXPECT_NE(s2->offset, s1->offset) << "reused while the child holds it";
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  const int status = testing::WaitChild(pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  auto s3 = (*a)->Allocate(kDmb, 3);
  ASSERT_TRUE(s3.ok());
  EXPECT_EQ(s3->offset, s1->offset);
  EXPECT_EQ((*a)->stats().lent_back, 1u);
  // The taken-back slot starts with both marks clear.
  uint64_t mark;
  std::memcpy(&mark, (*a)->Ctrl(*s3) + kCtrlHolderReleasedOff, 8);
  EXPECT_EQ(mark, 0u);
}

}  // namespace
}  // namespace usmc::dev

namespace usmc::dev {
namespace {

// A DMB in a slot behaves as a DMB of its own: the peer's writes arrive,
// bounds hold, the doorbell's words live in the slot's control page, and
// giving it up returns the slot without unmapping anything.
TEST(ShmArenaDmbTest, SlotDmbsTalkAndGiveTheSlotBack) {
  DmbBudget budget(kArena);
  auto a = ShmArena::Create(kArena, budget);
  ASSERT_TRUE(a.ok());
  auto as_peer =
      ShmArena::AttachPeer(Dup((*a)->memfd()), (*a)->file_size(), (*a)->id());
  ASSERT_TRUE(as_peer.ok());
  const int maps = CountMappings("usmc-");
  const int fds = CountOpenFds();
  {
    auto local = LocalDmb::InArena(*a, kDmb, 0x77);
    ASSERT_TRUE(local.ok()) << local.status();
    EXPECT_EQ(local->memfd(), (*a)->memfd());
    auto peer = PeerDmb::AttachSlot(*as_peer, local->slot_offset(), 0x77, kDmb);
    ASSERT_TRUE(peer.ok()) << peer.status();
    const std::byte msg[] = {std::byte{1}, std::byte{2}, std::byte{3}};
    ASSERT_TRUE(peer->Write(kDmb - 3, msg).ok());
    EXPECT_FALSE(peer->Write(kDmb - 2, msg).ok());
    std::byte got[3];
    ASSERT_TRUE(local->Read(kDmb - 3, got).ok());
    EXPECT_EQ(std::memcmp(got, msg, 3), 0);
    peer->StampPublish();
    EXPECT_NE(local->PeerPublishedNs(), 0u);
    // Wrong token, size or a slot that is not one: refused.
    EXPECT_EQ(PeerDmb::AttachSlot(*as_peer, local->slot_offset(), 0x78, kDmb)
                  .status()
                  .code(),
              StatusCode::kDataLoss);
    EXPECT_EQ(
        PeerDmb::AttachSlot(*as_peer, local->slot_offset(), 0x77, 2 * kDmb)
            .status()
            .code(),
        StatusCode::kDataLoss);
    EXPECT_EQ(PeerDmb::AttachSlot(*as_peer, (*a)->file_size(), 0x77, kDmb)
                  .status()
                  .code(),
              StatusCode::kDataLoss);
    EXPECT_EQ((*a)->stats().slots_in_use, 1u);
    EXPECT_EQ(CountMappings("usmc-"), maps);
    EXPECT_EQ(CountOpenFds(), fds);
    // Move-assigning over a slot DMB gives its slot back.
    LocalDmb other = std::move(*local);
    other = LocalDmb();
    EXPECT_EQ((*a)->stats().slots_in_use, 0u);
  }
  EXPECT_EQ((*a)->stats().slots_in_use, 0u);
  EXPECT_EQ(budget.used(), 0u);
  EXPECT_EQ(CountMappings("usmc-"), maps);
}

}  // namespace
}  // namespace usmc::dev
