// dev/shm_arena.h: one sealed memfd per (own process, peer process) pair,
// carved into DMB slots (docs/dev-shm.md, "Arenas").
//
// Today every SMC-D connection registers its own memfd DMB: memfd_create,
// ftruncate, seals, mmap, first-touch page faults, and at close munmap with
// its TLB-shootdown IPIs; and it keeps two memfds open per connection. An
// arena is created, sealed and mapped once per peer process and handed over
// once (under the same token-bound proof as a DMB today); later connections
// between the same two processes take a slot of it. A slot has exactly the
// layout of a DMB file today (DMB bytes, padding to a page, control page),
// so a slot is a DMB at an offset.
//
// Slots are reused only within the pair that owns the arena: everything in
// it was written by us or by that one peer, so a reused slot shows the peer
// nothing it had not written or could not read before. Freed slots are kept
// warm (LIFO per size) up to a watermark; above it the slot's pages are
// punched out (fallocate PUNCH_HOLE: the memory goes back, the file size
// and seals stay, a later touch reads zeros).
//
// The peer's arena is everything it can make us read: AttachPeer checks the
// file (regular, exact size, sealed against shrink and grow, not
// write-sealed) and the header page; Slot() checks every offset and size a
// peer names (page-aligned, inside the file, a valid DMB size) before any
// pointer is formed.
//
//   Result<std::shared_ptr<ShmArena>> a = ShmArena::Create(64 << 20);
//   Result<ArenaSlot> s = (*a)->Allocate(256 * 1024, token);
//   std::span<std::byte> dmb = (*a)->Bytes(*s);
//   (*a)->Free(*s);
#ifndef USMC_DEV_SHM_ARENA_H_
#define USMC_DEV_SHM_ARENA_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "base/status.h"
#include "dev/shm_dmb.h"
#include "dev/unique_fd.h"

namespace usmc::dev {

// Arena file sizes: at least one 1 MiB DMB plus the header page, at most
// 64 GiB (virtual: a memfd is sparse, pages exist once touched).
inline constexpr uint64_t kMinArenaSize = (uint64_t{1} << 20) + (2 << 12);
inline constexpr uint64_t kMaxArenaSize = uint64_t{64} << 30;
// Quarantined slots an Allocate looks at, at most (round robin): a peer
// that never releases its slots must not make every Allocate slower.
inline constexpr size_t kQuarantineSweep = 8;
// Free slot bytes an arena keeps warm (not punched), see docs/dev-shm.md.
inline constexpr uint64_t kDefaultArenaWarmBytes = uint64_t{4} << 20;
// Header page at offset 0 of the arena file.
inline constexpr uint64_t kArenaMagic = 0x31414e5241435355ULL;  // "USCARNA1"
inline constexpr size_t kArenaMagicOff = 0;  // u64 kArenaMagic
inline constexpr size_t kArenaIdOff = 8;     // u64 arena id (random)
inline constexpr size_t kArenaSizeOff = 16;  // u64 file size

// One DMB inside an arena: its file offset and DMB size (bytes usable; the
// slot spans DmbFileSize(size) bytes, control page last).
struct ArenaSlot {
  uint64_t offset = 0;
  uint64_t size = 0;
  bool operator==(const ArenaSlot&) const = default;
};

struct ArenaStats {
  uint64_t slots_in_use = 0;
  uint64_t slots_created = 0;  // carved from fresh file space
  uint64_t slots_reused = 0;   // taken from a free list
  uint64_t free_slots = 0;
  uint64_t warm_bytes = 0;   // free slot bytes not punched
  uint64_t punched = 0;      // slots punched on Free
  uint64_t leaked = 0;       // left to another holder (Leak)
  uint64_t lent_back = 0;    // of those, taken back once it let go
  uint64_t quarantined = 0;  // freed, the peer not detached yet
  // Control words of quarantined slots looked at (SweepQuarantine): a
  // bounded number per Allocate, whatever the quarantine holds.
  uint64_t quarantine_looks = 0;
  uint64_t high_water = 0;  // file bytes ever carved (header included)
};

class ShmArena {
 public:
  // Our arena: sealed memfd of `file_size` bytes (page-rounded, within
  // kMin/kMaxArenaSize), mapped once, header page written. Slot bytes are
  // charged to `budget` at Allocate (not the sparse file).
  static Result<std::shared_ptr<ShmArena>> Create(
      uint64_t file_size, DmbBudget& budget = DmbBudget::Process(),
      uint64_t warm_bytes = kDefaultArenaWarmBytes);
  // The peer's arena: checks the memfd (regular file of exactly
  // `expected_size` bytes, sealed against shrink and grow, not
  // write-sealed) and the header (magic, `expected_id`, size); maps it.
  // Violations: kDataLoss naming the field.
  static Result<std::shared_ptr<ShmArena>> AttachPeer(UniqueFd memfd,
                                                      uint64_t expected_size,
                                                      uint64_t expected_id);

  // Our arena again, after exec(2) or taken along with a passed connection:
  // the memfd is checked as AttachPeer checks it. Adopted arenas are never
  // allocated from (the peer may keep pairs keyed by our pid, and after a
  // pass another process made it); their slots come back with AdoptSlot
  // and go when freed.
  static Result<std::shared_ptr<ShmArena>> AdoptOwn(
      UniqueFd memfd, uint64_t file_size, uint64_t id,
      DmbBudget& budget = DmbBudget::Process());
  // An adopted arena's slot, in use from now on (charged to the budget).
  // kInvalidArgument: not an adopted arena, or the slot is in use already.
  Status AdoptSlot(ArenaSlot slot);

  ShmArena(const ShmArena&) = delete;
  ShmArena& operator=(const ShmArena&) = delete;

  // Own arenas only. A slot for a DMB of `dmb_size` bytes: a warm free
  // slot of that size if any, else fresh file space. Writes the slot's
  // control page header (magic, token, size; armed, refs, holders and
  // stamp zero) and zeroes the CDC area at offset 0. kResourceExhausted:
  // budget or arena full; kFailedPrecondition: not ours, or allocated by
  // another process than the one that created it (a forked child must not
  // carve the parent's arena: the parent's peer could read its slots).
  Result<ArenaSlot> Allocate(uint64_t dmb_size, uint64_t token);
  // Returns a slot's budget charge and the slot: to the free list (kept
  // warm up to the watermark, punched above it) once the peer has released
  // it (kCtrlPeerReleasedOff), until then to a quarantine that Allocate
  // looks at again. Unknown slots are ignored.
  // In a process other than the creator (a forked child's copy) and in an
  // adopted arena, Free only marks the slot let go (kCtrlHolderReleasedOff)
  // for the creator, which left it to this process (Leak).
  void Free(ArenaSlot slot);
  // Returns the slot's budget charge; its connection lives on in another
  // process. The creator takes the slot back once that process freed it
  // and the peer released it (looked at as the quarantine is); other
  // processes never do.
  void Leak(ArenaSlot slot);

  // Whether `slot` names a DMB that fits this arena: page-aligned offset
  // past the header page, valid DMB size, inside the file. Peers name slots:
  // everything is checked with overflow-safe arithmetic.
  Status CheckSlot(ArenaSlot slot) const;
  // The slot's DMB bytes and its control page; only after CheckSlot.
  std::span<std::byte> Bytes(ArenaSlot slot) const;
  std::byte* Ctrl(ArenaSlot slot) const;

  bool own() const { return own_; }
  bool adopted() const { return adopted_; }
  uint64_t id() const { return id_; }
  uint64_t file_size() const { return size_; }
  int memfd() const { return memfd_.get(); }
  pid_t creator() const { return creator_; }
  ArenaStats stats() const;

  ~ShmArena();

 private:
  ShmArena() = default;

  bool own_ = false;
  bool adopted_ = false;
  pid_t creator_ = 0;
  uint64_t id_ = 0;
  uint64_t size_ = 0;
  uint64_t warm_limit_ = 0;
  std::byte* base_ = nullptr;
  UniqueFd memfd_;
  DmbBudget* budget_ = nullptr;

  mutable std::mutex mu_;
  uint64_t next_ = 0;  // first never-carved byte
  // Free slots by span (DmbFileSize), LIFO: the last freed is the warmest.
  // Cold ones were punched (their pages are gone): taken only when no warm
  // one is left.
  std::map<uint64_t, std::vector<uint64_t>> warm_;
  std::map<uint64_t, std::vector<uint64_t>> cold_;
  // Freed by us, not yet released by the peer (kCtrlPeerReleasedOff): not
  // reusable yet. offset -> DMB size.
  std::map<uint64_t, uint64_t> quarantine_;
  // Left by the creator to another process (Leak): reusable once that
  // process freed it (kCtrlHolderReleasedOff) and the peer released it.
  // offset -> DMB size. Swept with the quarantine.
  std::map<uint64_t, uint64_t> lent_;
  uint64_t lent_from_ = 0;   // offset the next look at lent_ starts at
  uint64_t sweep_from_ = 0;  // offset the next sweep starts at
  void Shelve(uint64_t offset, uint64_t size);  // under mu_
  // Looks at up to kQuarantineSweep lent slots (lent_from_ on, wrapping)
  // and quarantines those their holder freed, then at as many quarantined
  // slots from sweep_from_ on and shelves those the peer released.
  // Under mu_.
  void SweepQuarantine();
  bool PeerReleased(uint64_t offset, uint64_t size);    // under mu_
  bool HolderReleased(uint64_t offset, uint64_t size);  // under mu_
  bool Creator() const;  // this process made the arena (not adopted)
  // Leak, and for the last holder in a process other than the creator
  // (Free there) the kCtrlHolderReleasedOff mark, under one lookup.
  void LetGo(ArenaSlot slot, bool last_holder);
  std::map<uint64_t, uint64_t> in_use_;  // offset -> DMB size
  ArenaStats stats_;
};

// The arena behind `fd` for a connection taken over after exec(2) or by
// SCM_RIGHTS: each arena is attached once per process (several records of
// one pair name it), keyed by its id and side; `own` adopts (AdoptOwn),
// else AttachPeer. Always takes `fd`: kept if it is the arena's memfd,
// closed if a duplicate of a known arena or on failure (unless it is a
// known arena's memfd: then it stays with that arena).
Result<std::shared_ptr<ShmArena>> AdoptArena(int fd, uint64_t file_size,
                                             uint64_t id, bool own);

}  // namespace usmc::dev

#endif  // USMC_DEV_SHM_ARENA_H_
