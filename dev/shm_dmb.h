// dev/shm_dmb.h: DMBs (Direct Memory Buffers) of the shm device.
//
// A LocalDmb is our receive buffer: a sealed memfd (no name under /dev/shm,
// size fixed by F_SEAL_SHRINK|F_SEAL_GROW before anyone else sees it, so a
// peer can never SIGBUS us), mapped shared, with a random 64-bit token. One
// page after the DMB bytes, inside the same memfd, is the control page: a
// header (magic, token, size) and the doorbell's `armed` word. The doorbell's
// fd is the handover's connected socket: a LocalDmb has none until then
// (ConnectDoorbell). A PeerDmb is
// the peer's DMB mapped read-write: the sender writes straight into it (no
// send buffer, as loopback-ism's no-copy mode).
//
// Everything in a mapping may change under us at any time (the other process
// writes it): the device hands out std::span<std::byte> and the engine
// validates every value it reads there.
//
//   DmbBudget budget(64 << 20);
//   Result<LocalDmb> dmb = LocalDmb::Register(64 * 1024, budget);
//   // ... hand dmb->memfd() to the peer (shm_handover.h) ...
//   Result<PeerDmb> peer = PeerDmb::Attach(std::move(fd), token, 64 * 1024);
//   USMC_RETURN_IF_ERROR(peer->Write(32, payload));
#ifndef USMC_DEV_SHM_DMB_H_
#define USMC_DEV_SHM_DMB_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <utility>

#include "base/status.h"
#include "dev/shm_doorbell.h"
#include "dev/unique_fd.h"

namespace usmc::dev {

class ShmArena;  // dev/shm_arena.h

// Largest DMB we register or attach. SMC-D itself stops at 1 MiB (c <= 6);
// the shm device allows more for bulk transfers, within the budget.
inline constexpr uint64_t kMaxDmbSize = uint64_t{1} << 30;
// Default per-process cap on DMB bytes (the runtime sets the limit from
// USMC_DMB_BUDGET: SetProcessDmbBudget).
inline constexpr uint64_t kDefaultDmbBudget = uint64_t{256} << 20;

// Control page layout (offsets inside the page after the DMB bytes).
inline constexpr size_t kCtrlMagicOff = 0;  // u64 kDmbMagic
inline constexpr size_t kCtrlTokenOff = 8;  // u64 DMB token
inline constexpr size_t kCtrlSizeOff = 16;  // u64 DMB size in bytes
// u64, written by the peer: 1 once it detached from this DMB (an arena slot
// may be reused only then: late writes of the old connection would land in
// the new one's buffer).
inline constexpr size_t kCtrlPeerReleasedOff = 24;
// u64, written on our side: 1 once the last process holding the connection
// let go of this DMB when that process was not the arena's creator (a
// forking server's child, a worker the connection was passed to). The
// creator left the slot to it (ShmArena::Leak) and takes it back only then
// (and once the peer released it too).
inline constexpr size_t kCtrlHolderReleasedOff = 32;
inline constexpr size_t kCtrlArmedOff = 64;  // u32 armed, own cache line
// u64 on the armed word's line: the sleep token the owner armed with (0:
// none), so that a peer ringing many connections wakes one sleep once
// (dev/shm_doorbell.h, "Sleep tokens").
inline constexpr size_t kCtrlSleepTokenOff = 72;
// u32 for the runtime: processes sharing the connection (fork), own line.
inline constexpr size_t kCtrlProcessRefsOff = 128;
// u64, own line: when the peer last published into this DMB (CLOCK_MONOTONIC
// ns). Only orders readiness among connections (epoll reports the one whose
// bytes came first first, as the kernel's ready list does); a peer writing
// nonsense here only reorders its own reports.
inline constexpr size_t kCtrlPublishedOff = 192;
// The interposer's holder table: the pids of the processes (fork) that hold
// the connection, u32 each, 0 = free slot.
inline constexpr size_t kCtrlHoldersOff = 256;
inline constexpr size_t kCtrlHolderSlots = 32;
inline constexpr uint64_t kDmbMagic = 0x31424d44434d5355ULL;  // "USMCDMB1"

// Bytes of memfd behind a DMB of `size` bytes: size rounded up to pages plus
// the control page. 0 if size is 0 or above kMaxDmbSize.
uint64_t DmbFileSize(uint64_t size);

// A cap on the bytes of registered DMBs. Thread-safe.
class DmbBudget {
 public:
  explicit DmbBudget(uint64_t limit_bytes) : limit_(limit_bytes) {}
  // The process-wide budget: kDefaultDmbBudget until the runtime sets its
  // limit (SetProcessDmbBudget, from runtime::Config).
  static DmbBudget& Process();

  bool TryCharge(uint64_t bytes);
  void Release(uint64_t bytes);
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t limit() const { return limit_.load(std::memory_order_relaxed); }
  // A lower limit does not take back what is charged; it stops new charges.
  void set_limit(uint64_t bytes) {
    limit_.store(bytes, std::memory_order_relaxed);
  }

 private:
  std::atomic<uint64_t> limit_;
  std::atomic<uint64_t> used_{0};
};

// Sets DmbBudget::Process()'s limit (the runtime, at config load).
void SetProcessDmbBudget(uint64_t bytes);

// Parses a budget value ("268435456", "256M", "1G"); nullopt if malformed.
std::optional<uint64_t> ParseByteSize(const char* text);

// An mmap'ed region, unmapped on destruction unless borrowed (a slot of an
// arena: the arena owns the mapping).
class Mapping {
 public:
  Mapping() = default;
  Mapping(std::byte* p, size_t len, bool owned = true)
      : p_(p), len_(len), owned_(owned) {}
  Mapping(Mapping&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)),
        len_(std::exchange(o.len_, 0)),
        owned_(o.owned_) {}
  Mapping& operator=(Mapping&& o) noexcept;
  ~Mapping() { Reset(); }
  void Reset();
  std::byte* data() const { return p_; }
  size_t size() const { return len_; }

 private:
  std::byte* p_ = nullptr;
  size_t len_ = 0;
  bool owned_ = true;
};

// A charge against a DmbBudget, released on destruction.
class BudgetCharge {
 public:
  BudgetCharge() = default;
  BudgetCharge(DmbBudget* b, uint64_t bytes) : budget_(b), bytes_(bytes) {}
  BudgetCharge(BudgetCharge&& o) noexcept
      : budget_(std::exchange(o.budget_, nullptr)),
        bytes_(std::exchange(o.bytes_, 0)) {}
  BudgetCharge& operator=(BudgetCharge&& o) noexcept;
  ~BudgetCharge() { Reset(); }
  void Reset();

 private:
  DmbBudget* budget_ = nullptr;
  uint64_t bytes_ = 0;
};

// What LocalDmb and PeerDmb both hold: the DMB's mapping and memfd (or a
// slot of an arena), its token and size, and our end of its doorbell
// (`Bell`: Doorbell for ours, PeerDoorbell for the peer's).
template <typename Bell>
class DmbPlace {
 public:
  uint64_t token() const { return token_; }
  uint64_t size() const { return size_; }
  std::span<std::byte> bytes() const { return {map_.data(), size_}; }
  // The DMB's memfd, kept open (one fd per connection) so that exec(2) can
  // pass it on: a mapping alone does not survive exec, and an unprivileged
  // process cannot reopen it through /proc/self/map_files. In an arena: the
  // arena's (shared with the pair's other connections).
  int memfd() const;
  // The slot's offset in its arena; nullptr arena if a DMB of its own.
  const std::shared_ptr<ShmArena>& arena() const { return arena_; }
  uint64_t slot_offset() const { return slot_offset_; }

 protected:
  DmbPlace() = default;
  DmbPlace(DmbPlace&&) noexcept = default;
  ~DmbPlace() = default;
  // Takes what `o` holds and leaves it empty; the caller let go of what
  // this held first.
  void Take(DmbPlace& o);

  Mapping map_;
  uint64_t size_ = 0;
  uint64_t token_ = 0;
  UniqueFd memfd_;
  std::optional<Bell> doorbell_;
  std::shared_ptr<ShmArena> arena_;  // in an arena slot
  uint64_t slot_offset_ = 0;
};

// Our DMB. Move-only; the destructor unregisters.
class LocalDmb : public DmbPlace<Doorbell> {
 public:
  static Result<LocalDmb> Register(uint64_t size,
                                   DmbBudget& budget = DmbBudget::Process());
  // Rebuilds a DMB this process registered before exec(2) from the
  // inherited memfd and our end of the doorbell socket. Checks what Attach
  // checks (file type and size, seals incl. F_SEAL_SEAL, no write seal,
  // magic, token and size in the control page) plus the doorbell fd's type,
  // and charges the budget. Violations: kDataLoss; size out of range:
  // kInvalidArgument.
  static Result<LocalDmb> Adopt(UniqueFd memfd, SharedFd doorbell,
                                uint64_t token, uint64_t size,
                                DmbBudget& budget = DmbBudget::Process());
  // Our DMB in a slot of our pair's arena (dev/shm_arena.h): no memfd, no
  // mapping of its own; `token` was drawn when CLC needed it. Unregister
  // returns the slot. kResourceExhausted: budget or arena full.
  static Result<LocalDmb> InArena(std::shared_ptr<ShmArena> arena,
                                  uint64_t size, uint64_t token);
  // Our DMB in a slot of an adopted arena (exec, pass): the slot's control
  // page must name `token` and `size`. Violations: kDataLoss.
  static Result<LocalDmb> AdoptSlot(std::shared_ptr<ShmArena> arena,
                                    uint64_t offset, uint64_t token,
                                    uint64_t size, SharedFd doorbell);
  LocalDmb() = default;  // not registered
  LocalDmb(LocalDmb&&) noexcept = default;
  // Unregisters what this held first (an arena slot goes back to it).
  LocalDmb& operator=(LocalDmb&& o) noexcept;
  ~LocalDmb() { Unregister(); }

  // Unmaps, closes the memfd (and drops our share of the doorbell socket),
  // returns the budget.
  // Idempotent. A peer that attached keeps its own mapping until it detaches.
  void Unregister();
  // Unregister for a process that lets go while another one still holds
  // the connection (fork, exec, pass): an arena slot is left out of use for
  // good (ShmArena::Leak), never reused under the other holder.
  void Abandon();
  bool registered() const { return map_.data() != nullptr; }

  // Our doorbell waits on POLLIN of `fd` (our end of the connected
  // handover socket; the peer rings by writing its end).
  void ConnectDoorbell(SharedFd fd);
  bool has_doorbell() const { return doorbell_.has_value(); }
  Doorbell& doorbell() { return *doorbell_; }  // only if has_doorbell()

  // Bounds-checked copy out of our DMB (offset and length may come from
  // hostile cursors): kInvalidArgument if [offset, offset+out.size()) does
  // not fit.
  Status Read(uint64_t offset, std::span<std::byte> out) const;

  // When the peer last published (its StampPublish); 0 if never or not
  // registered.
  uint64_t PeerPublishedNs() const;

 private:
  BudgetCharge charge_;  // none in an arena slot (the arena charges)
};

// The peer's DMB, attached read-write. Move-only; the destructor detaches.
class PeerDmb : public DmbPlace<PeerDoorbell> {
 public:
  // Checks that `memfd` is a regular file of exactly DmbFileSize(expected_
  // size) bytes, sealed against shrink and grow, not write-sealed, and that
  // its control page names `expected_token` and the size; then keeps the
  // mapping and the memfd (exec handover: memfd()). `doorbell` is our end
  // of the connection's doorbell socket, which the peer waits on (may be
  // null in tests: Ring() then reports kPeerGone). Violations: kDataLoss. After
  // exec(2) the same call rebuilds the attachment from the inherited fds.
  static Result<PeerDmb> Attach(UniqueFd memfd, uint64_t expected_token,
                                uint64_t expected_size,
                                SharedFd doorbell = nullptr);
  // The peer's DMB in a slot of the peer's arena (attached once per pair):
  // the slot must fit the arena (ShmArena::CheckSlot) and its control page
  // name `expected_token` and size. Violations: kDataLoss.
  static Result<PeerDmb> AttachSlot(std::shared_ptr<ShmArena> arena,
                                    uint64_t offset, uint64_t expected_token,
                                    uint64_t expected_size,
                                    SharedFd doorbell = nullptr);
  PeerDmb() = default;  // not attached
  PeerDmb(PeerDmb&&) noexcept = default;
  // Detaches what this held first (an arena slot is released to its owner).
  PeerDmb& operator=(PeerDmb&& o) noexcept;
  ~PeerDmb() { Detach(); }

  // Unmaps, closes the memfd, drops our share of the doorbell socket.
  // Idempotent.
  void Detach();
  // Detach without telling the owner that we let go of an arena slot: for
  // a process that drops its view while another process still holds the
  // connection (fork). The last holder's Detach releases the slot.
  void Abandon();
  bool attached() const { return map_.data() != nullptr; }
  PeerDoorbell& doorbell() { return *doorbell_; }  // only while attached()

  // smcd_ops move_data without the signal: bounds-checked copy into the
  // peer DMB (kInvalidArgument if it does not fit). Ring the doorbell after
  // publishing the cursor.
  Status Write(uint64_t offset, std::span<const std::byte> data) const;

  // Records in the peer's control page that we publish now (before the
  // CDC): the peer orders its ready connections by it.
  void StampPublish() const;
};

}  // namespace usmc::dev

#endif  // USMC_DEV_SHM_DMB_H_
