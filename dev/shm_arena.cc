#include "dev/shm_arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "base/owned_fd.h"
#include "dev/shm_identity.h"

namespace usmc::dev {
namespace {

uint64_t Page() {
  static const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return kPage;
}

// The peer maps the arena too: every shared word is accessed atomically.
uint64_t Load64(const std::byte* p) {
  return std::atomic_ref<uint64_t>(
             *reinterpret_cast<uint64_t*>(const_cast<std::byte*>(p)))
      .load(std::memory_order_relaxed);
}
void Store64(std::byte* p, uint64_t v) {
  std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(p))
      .store(v, std::memory_order_relaxed);
}

}  // namespace

Result<std::shared_ptr<ShmArena>> ShmArena::Create(uint64_t file_size,
                                                   DmbBudget& budget,
                                                   uint64_t warm_bytes) {
  const uint64_t page = Page();
  if (file_size < kMinArenaSize || file_size > kMaxArenaSize) {
    return Status(StatusCode::kInvalidArgument, "arena size out of range");
  }
  file_size = (file_size + page - 1) / page * page;
  std::shared_ptr<ShmArena> a(new ShmArena());
  a->own_ = true;
  a->creator_ = ::getpid();
  a->size_ = file_size;
  a->warm_limit_ = warm_bytes;
  a->budget_ = &budget;
  a->next_ = page;  // the header page
  a->stats_.high_water = page;
  a->memfd_ = UniqueFd(base::OwnFd(
      ::memfd_create("usmc-arena", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (!a->memfd_) return Status::FromErrno(errno, "memfd_create arena");
  int rc;
  do {
    rc = ::ftruncate(a->memfd_.get(), static_cast<off_t>(file_size));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return Status::FromErrno(errno, "ftruncate arena");
  // As for a DMB: the size is fixed before the fd can reach anyone, so no
  // page either side maps can vanish (no SIGBUS).
  if (::fcntl(a->memfd_.get(), F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return Status::FromErrno(errno, "F_ADD_SEALS arena");
  }
  void* p = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   a->memfd_.get(), 0);
  if (p == MAP_FAILED) return Status::FromErrno(errno, "mmap arena");
  a->base_ = static_cast<std::byte*>(p);
  Result<uint64_t> id = NewDmbToken();
  if (!id.ok()) return id.status();
  a->id_ = *id;
  Store64(a->base_ + kArenaMagicOff, kArenaMagic);
  Store64(a->base_ + kArenaIdOff, a->id_);
  Store64(a->base_ + kArenaSizeOff, file_size);
  return a;
}

Result<std::shared_ptr<ShmArena>> ShmArena::AttachPeer(UniqueFd memfd,
                                                       uint64_t expected_size,
                                                       uint64_t expected_id) {
  auto bad = [](std::string what) {
    return Status(StatusCode::kDataLoss, "peer arena: " + std::move(what));
  };
  if (expected_size < kMinArenaSize || expected_size > kMaxArenaSize ||
      expected_size % Page() != 0) {
    return bad("announced size out of range");
  }
  struct stat st {};
  if (::fstat(memfd.get(), &st) != 0) return Status::FromErrno(errno, "fstat");
  if (!S_ISREG(st.st_mode)) return bad("not a regular file");
  if (static_cast<uint64_t>(st.st_size) != expected_size) {
    return bad("size " + std::to_string(st.st_size) + ", expected " +
               std::to_string(expected_size));
  }
  const int seals = ::fcntl(memfd.get(), F_GET_SEALS);
  if (seals < 0) return bad("not sealable (not a memfd)");
  if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) !=
      (F_SEAL_SHRINK | F_SEAL_GROW)) {
    return bad("not sealed against shrink and grow");
  }
  if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) return bad("write-sealed");
  void* p = ::mmap(nullptr, expected_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   memfd.get(), 0);
  if (p == MAP_FAILED) return Status::FromErrno(errno, "mmap peer arena");
  std::shared_ptr<ShmArena> a(new ShmArena());
  a->base_ = static_cast<std::byte*>(p);
  a->size_ = expected_size;
  a->memfd_ = std::move(memfd);
  a->creator_ = 0;
  if (Load64(a->base_ + kArenaMagicOff) != kArenaMagic) return bad("magic");
  if (Load64(a->base_ + kArenaIdOff) != expected_id) return bad("id mismatch");
  if (Load64(a->base_ + kArenaSizeOff) != expected_size) {
    return bad("header size mismatch");
  }
  a->id_ = expected_id;
  return a;
}

Result<std::shared_ptr<ShmArena>> ShmArena::AdoptOwn(UniqueFd memfd,
                                                     uint64_t file_size,
                                                     uint64_t id,
                                                     DmbBudget& budget) {
  Result<std::shared_ptr<ShmArena>> a =
      AttachPeer(std::move(memfd), file_size, id);
  if (!a.ok()) return a.status();
  (*a)->own_ = true;
  (*a)->adopted_ = true;
  (*a)->creator_ = ::getpid();
  (*a)->budget_ = &budget;
  (*a)->next_ = (*a)->size_;  // nothing is ever carved
  return a;
}

Status ShmArena::AdoptSlot(ArenaSlot slot) {
  if (!adopted_) {
    return Status(StatusCode::kInvalidArgument, "not an adopted arena");
  }
  USMC_RETURN_IF_ERROR(CheckSlot(slot));
  const uint64_t span = DmbFileSize(slot.size);
  std::lock_guard lock(mu_);
  if (in_use_.contains(slot.offset) || quarantine_.contains(slot.offset)) {
    return Status(StatusCode::kInvalidArgument, "arena slot adopted twice");
  }
  if (!budget_->TryCharge(span)) {
    return Status(StatusCode::kResourceExhausted,
                  "DMB budget exhausted adopting an arena slot");
  }
  in_use_[slot.offset] = slot.size;
  ++stats_.slots_in_use;
  return OkStatus();
}

namespace {
std::mutex g_adopted_mu;
std::vector<std::weak_ptr<ShmArena>> g_adopted;

bool SameFile(int a, int b) {
  struct stat sa {
  }, sb{};
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 &&
         sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}
}  // namespace

Result<std::shared_ptr<ShmArena>> AdoptArena(int fd, uint64_t file_size,
                                             uint64_t id, bool own) {
  std::lock_guard lock(g_adopted_mu);
  std::erase_if(g_adopted,
                [](const std::weak_ptr<ShmArena>& w) { return w.expired(); });
  for (const std::weak_ptr<ShmArena>& w : g_adopted) {
    std::shared_ptr<ShmArena> a = w.lock();
    if (a == nullptr) continue;
    const bool same_fd = a->memfd() == fd;
    if (a->id() == id && a->own() == own) {
      if (!same_fd) {
        const bool dup = SameFile(fd, a->memfd());
        base::CloseOwnedFd(fd);
        if (!dup) {
          return Status(StatusCode::kDataLoss,
                        "adopted arena: another file under a known id");
        }
      }
      if (a->file_size() != file_size) {
        return Status(StatusCode::kDataLoss, "adopted arena: size mismatch");
      }
      return a;
    }
    if (same_fd) {  // a known arena's fd named under another id or side
      return Status(StatusCode::kDataLoss, "adopted arena: id mismatch");
    }
  }
  UniqueFd memfd(fd);  // not moved: other records may name this number
  Result<std::shared_ptr<ShmArena>> a =
      own ? ShmArena::AdoptOwn(std::move(memfd), file_size, id)
          : ShmArena::AttachPeer(std::move(memfd), file_size, id);
  if (!a.ok()) return a.status();
  g_adopted.push_back(*a);
  return a;
}

ShmArena::~ShmArena() {
  if (base_ != nullptr) ::munmap(base_, size_);
  if (budget_ != nullptr) {
    for (const auto& [off, size] : in_use_) budget_->Release(DmbFileSize(size));
  }
}

Status ShmArena::CheckSlot(ArenaSlot slot) const {
  const uint64_t span = DmbFileSize(slot.size);
  if (span == 0) {
    return Status(StatusCode::kDataLoss, "arena slot: bad DMB size");
  }
  if (slot.offset < Page() || slot.offset % Page() != 0) {
    return Status(StatusCode::kDataLoss, "arena slot: bad offset");
  }
  if (slot.offset > size_ || span > size_ - slot.offset) {
    return Status(StatusCode::kDataLoss, "arena slot: outside the arena");
  }
  return OkStatus();
}

std::span<std::byte> ShmArena::Bytes(ArenaSlot slot) const {
  return {base_ + slot.offset, slot.size};
}

std::byte* ShmArena::Ctrl(ArenaSlot slot) const {
  return base_ + slot.offset + DmbFileSize(slot.size) - Page();
}

Result<ArenaSlot> ShmArena::Allocate(uint64_t dmb_size, uint64_t token) {
  if (!own_ || adopted_) {
    return Status(StatusCode::kFailedPrecondition,
                  own_ ? "adopted arena (exec, pass): never allocated from"
                       : "not our arena");
  }
  if (::getpid() != creator_) {
    return Status(StatusCode::kFailedPrecondition,
                  "arena of another process (fork)");
  }
  const uint64_t span = DmbFileSize(dmb_size);
  if (span == 0) {
    return Status(StatusCode::kInvalidArgument, "DMB size out of range");
  }
  if (!budget_->TryCharge(span)) {
    return Status(StatusCode::kResourceExhausted,
                  "DMB budget exhausted: " + std::to_string(budget_->used()) +
                      " of " + std::to_string(budget_->limit()) +
                      " bytes in use, " + std::to_string(span) +
                      " more requested");
  }
  ArenaSlot slot{0, dmb_size};
  {
    std::lock_guard lock(mu_);
    if (!quarantine_.empty() || !lent_.empty()) SweepQuarantine();
    auto take = [&](std::map<uint64_t, std::vector<uint64_t>>& lists) {
      auto it = lists.find(span);
      if (it == lists.end() || it->second.empty()) return false;
      slot.offset = it->second.back();
      it->second.pop_back();
      return true;
    };
    if (take(warm_)) {
      stats_.warm_bytes -= span;
      --stats_.free_slots;
      ++stats_.slots_reused;
    } else if (take(cold_)) {
      --stats_.free_slots;
      ++stats_.slots_reused;
    } else if (next_ <= size_ && span <= size_ - next_) {
      slot.offset = next_;
      next_ += span;
      stats_.high_water = next_;
      ++stats_.slots_created;
    } else {
      budget_->Release(span);
      return Status(StatusCode::kResourceExhausted,
                    "arena full: " + std::to_string(size_) + " bytes");
    }
    in_use_[slot.offset] = dmb_size;
    ++stats_.slots_in_use;
  }
  // A fresh DMB as Register leaves it: CDC area zero (the engine starts
  // from it), control words zero, header naming this DMB.
  std::byte* ctrl = Ctrl(slot);
  std::memset(Bytes(slot).data(), 0, std::min<uint64_t>(dmb_size, 64));
  std::memset(ctrl, 0, static_cast<size_t>(Page()));
  Store64(ctrl + kCtrlMagicOff, kDmbMagic);
  Store64(ctrl + kCtrlTokenOff, token);
  Store64(ctrl + kCtrlSizeOff, dmb_size);
  return slot;
}

void ShmArena::Shelve(uint64_t offset, uint64_t size) {
  const uint64_t span = DmbFileSize(size);
  ++stats_.free_slots;
  if (stats_.warm_bytes + span > warm_limit_) {
    // Under the lock: nobody may take the slot (and write its header)
    // before its pages are gone. A failure leaves them in place, which
    // costs memory, never correctness.
    (void)::fallocate(memfd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      static_cast<off_t>(offset), static_cast<off_t>(span));
    cold_[span].push_back(offset);
    ++stats_.punched;
  } else {
    warm_[span].push_back(offset);
    stats_.warm_bytes += span;
  }
}

bool ShmArena::PeerReleased(uint64_t offset, uint64_t size) {
  ++stats_.quarantine_looks;
  if (Load64(Ctrl({offset, size}) + kCtrlPeerReleasedOff) == 0) return false;
  std::atomic_thread_fence(std::memory_order_acquire);
  return true;
}

bool ShmArena::HolderReleased(uint64_t offset, uint64_t size) {
  ++stats_.quarantine_looks;
  if (Load64(Ctrl({offset, size}) + kCtrlHolderReleasedOff) == 0) return false;
  std::atomic_thread_fence(std::memory_order_acquire);
  return true;
}

bool ShmArena::Creator() const {
  return own_ && !adopted_ && ::getpid() == creator_;
}

void ShmArena::SweepQuarantine() {
  // Lent slots first, a bounded look too (round robin: a child that died
  // holding its slot must not hide the others).
  auto lent = lent_.lower_bound(lent_from_);
  for (size_t n = 0; n < kQuarantineSweep && !lent_.empty(); ++n) {
    if (lent == lent_.end()) lent = lent_.begin();
    if (HolderReleased(lent->first, lent->second)) {
      ++stats_.lent_back;
      // Now ours again: reusable once the peer released it as well.
      quarantine_[lent->first] = lent->second;
      ++stats_.quarantined;
      lent = lent_.erase(lent);
    } else {
      ++lent;
    }
  }
  lent_from_ = lent == lent_.end() ? 0 : lent->first;
  if (quarantine_.empty()) return;
  auto it = quarantine_.lower_bound(sweep_from_);
  for (size_t n = 0; n < kQuarantineSweep && !quarantine_.empty(); ++n) {
    if (it == quarantine_.end()) it = quarantine_.begin();
    if (PeerReleased(it->first, it->second)) {
      Shelve(it->first, it->second);
      --stats_.quarantined;
      it = quarantine_.erase(it);
    } else {
      ++it;
    }
  }
  sweep_from_ = it == quarantine_.end() ? 0 : it->first;
}

void ShmArena::Leak(ArenaSlot slot) { LetGo(slot, /*last_holder=*/false); }

void ShmArena::LetGo(ArenaSlot slot, bool last_holder) {
  if (!own_) return;
  {
    std::lock_guard lock(mu_);
    auto it = in_use_.find(slot.offset);
    if (it == in_use_.end() || it->second != slot.size) return;
    in_use_.erase(it);
    --stats_.slots_in_use;
    ++stats_.leaked;
    if (Creator()) {
      lent_[slot.offset] = slot.size;
    } else if (last_holder) {
      // The creator may take the slot back now.
      std::atomic_ref<uint64_t>(
          *reinterpret_cast<uint64_t*>(Ctrl(slot) + kCtrlHolderReleasedOff))
          .store(1, std::memory_order_release);
    }
  }
  budget_->Release(DmbFileSize(slot.size));
}

void ShmArena::Free(ArenaSlot slot) {
  if (!own_) return;
  // A forked child's copy of the arena, or one adopted after exec or a
  // pass: the connection's last holder lets go (the creator takes the slot
  // back).
  if (!Creator()) return LetGo(slot, /*last_holder=*/true);
  const uint64_t span = DmbFileSize(slot.size);
  {
    std::lock_guard lock(mu_);
    auto it = in_use_.find(slot.offset);
    if (it == in_use_.end() || it->second != slot.size) return;
    in_use_.erase(it);
    --stats_.slots_in_use;
    // Only this slot's word: the others wait for the next Allocate's sweep.
    if (PeerReleased(slot.offset, slot.size)) {
      Shelve(slot.offset, slot.size);
    } else {
      quarantine_[slot.offset] = slot.size;
      ++stats_.quarantined;
    }
  }
  budget_->Release(span);
}

ArenaStats ShmArena::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace usmc::dev
