#include "dev/shm_dmb.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/owned_fd.h"
#include "dev/shm_arena.h"
#include "dev/shm_identity.h"

namespace usmc::dev {
namespace {

uint64_t PageSize() {
  static const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return kPage;
}

// The peer writes the control page concurrently: every access is atomic.
uint64_t LoadCtrl64(const std::byte* ctrl, size_t off) {
  return std::atomic_ref<uint64_t>(
             *reinterpret_cast<uint64_t*>(const_cast<std::byte*>(ctrl + off)))
      .load(std::memory_order_relaxed);
}
void StoreCtrl64(std::byte* ctrl, size_t off, uint64_t v) {
  std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(ctrl + off))
      .store(v, std::memory_order_relaxed);
}

bool Fits(uint64_t offset, uint64_t len, uint64_t size) {
  return offset <= size && len <= size - offset;
}

// What Attach and Adopt check on a memfd before mapping it: a sealed memfd
// of exactly `file_size` bytes that nobody can shrink (SIGBUS) or
// write-protect. `who` prefixes the error ("peer DMB", "inherited DMB").
Status CheckDmbFile(int fd, uint64_t file_size, int required_seals,
                    std::string_view who) {
  auto bad = [&](std::string what) {
    return Status(StatusCode::kDataLoss,
                  std::string(who) + ": " + std::move(what));
  };
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, "fstat");
  if (!S_ISREG(st.st_mode)) return bad("not a regular file");
  if (static_cast<uint64_t>(st.st_size) != file_size) {
    return bad("size " + std::to_string(st.st_size) + ", expected " +
               std::to_string(file_size));
  }
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) return bad("not sealable (not a memfd)");
  if ((seals & required_seals) != required_seals) {
    return bad("not sealed against shrink and grow");
  }
  if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) {
    return bad("write-sealed");
  }
  return OkStatus();
}

// The control page must name this DMB (read once, atomically: the peer
// maps it too).
Status CheckCtrl(const std::byte* ctrl, uint64_t token, uint64_t size,
                 std::string_view who) {
  auto bad = [&](const char* what) {
    return Status(StatusCode::kDataLoss, std::string(who) + ": " + what);
  };
  if (LoadCtrl64(ctrl, kCtrlMagicOff) != kDmbMagic) {
    return bad("control page magic");
  }
  if (LoadCtrl64(ctrl, kCtrlTokenOff) != token) return bad("token mismatch");
  if (LoadCtrl64(ctrl, kCtrlSizeOff) != size) {
    return bad("control page size mismatch");
  }
  return OkStatus();
}

}  // namespace

uint64_t DmbFileSize(uint64_t size) {
  if (size == 0 || size > kMaxDmbSize) return 0;
  const uint64_t page = PageSize();
  return (size + page - 1) / page * page + page;
}

DmbBudget& DmbBudget::Process() {
  static DmbBudget budget(kDefaultDmbBudget);
  return budget;
}

void SetProcessDmbBudget(uint64_t bytes) {
  DmbBudget::Process().set_limit(bytes);
}

bool DmbBudget::TryCharge(uint64_t bytes) {
  uint64_t used = used_.load(std::memory_order_relaxed);
  do {
    const uint64_t limit = limit_.load(std::memory_order_relaxed);
    if (bytes > limit || used > limit - bytes) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes,
                                        std::memory_order_relaxed));
  return true;
}

void DmbBudget::Release(uint64_t bytes) {
  used_.fetch_sub(bytes, std::memory_order_relaxed);
}

std::optional<uint64_t> ParseByteSize(const char* text) {
  if (text == nullptr || *text < '0' || *text > '9') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(text, &end, 10);
  if (errno != 0) return std::nullopt;
  unsigned shift = 0;
  switch (*end) {
    case '\0':
      break;
    case 'k':
    case 'K':
      shift = 10;
      ++end;
      break;
    case 'm':
    case 'M':
      shift = 20;
      ++end;
      break;
    case 'g':
    case 'G':
      shift = 30;
      ++end;
      break;
    default:
      return std::nullopt;
  }
  if (*end != '\0') return std::nullopt;
  if (shift != 0 && n > (~0ULL >> shift)) return std::nullopt;
  return static_cast<uint64_t>(n) << shift;
}

BudgetCharge& BudgetCharge::operator=(BudgetCharge&& o) noexcept {
  if (this != &o) {
    Reset();
    budget_ = std::exchange(o.budget_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void BudgetCharge::Reset() {
  if (budget_ != nullptr) budget_->Release(bytes_);
  budget_ = nullptr;
  bytes_ = 0;
}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    Reset();
    p_ = std::exchange(o.p_, nullptr);
    len_ = std::exchange(o.len_, 0);
    owned_ = o.owned_;
  }
  return *this;
}

void Mapping::Reset() {
  if (p_ != nullptr && owned_) ::munmap(p_, len_);
  p_ = nullptr;
  len_ = 0;
}

Result<LocalDmb> LocalDmb::Register(uint64_t size, DmbBudget& budget) {
  const uint64_t file_size = DmbFileSize(size);
  if (file_size == 0) {
    return Status(StatusCode::kInvalidArgument,
                  "DMB size must be 1.." + std::to_string(kMaxDmbSize));
  }
  if (!budget.TryCharge(file_size)) {
    return Status(StatusCode::kResourceExhausted,
                  "DMB budget exhausted: " + std::to_string(budget.used()) +
                      " of " + std::to_string(budget.limit()) +
                      " bytes in use, " + std::to_string(file_size) +
                      " more requested");
  }
  LocalDmb dmb;
  dmb.charge_ = BudgetCharge(&budget, file_size);
  dmb.size_ = size;

  // Anonymous: the name only shows in /proc/<pid>/maps, nothing under
  // /dev/shm can be opened by guessing.
  dmb.memfd_ = UniqueFd(
      base::OwnFd(::memfd_create("usmc-dmb", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (!dmb.memfd_) return Status::FromErrno(errno, "memfd_create");
  int rc;
  do {
    rc = ::ftruncate(dmb.memfd_.get(), static_cast<off_t>(file_size));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return Status::FromErrno(errno, "ftruncate DMB");
  // Fix the size before the fd can reach anyone: with SHRINK sealed, no
  // page we map can vanish (no SIGBUS); SEAL stops anyone removing seals.
  if (::fcntl(dmb.memfd_.get(), F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return Status::FromErrno(errno, "F_ADD_SEALS");
  }
  void* p = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   dmb.memfd_.get(), 0);
  if (p == MAP_FAILED) return Status::FromErrno(errno, "mmap DMB");
  dmb.map_ = Mapping(static_cast<std::byte*>(p), file_size);

  Result<uint64_t> token = NewDmbToken();
  if (!token.ok()) return token.status();
  dmb.token_ = *token;

  std::byte* ctrl = dmb.map_.data() + (file_size - PageSize());
  StoreCtrl64(ctrl, kCtrlMagicOff, kDmbMagic);
  StoreCtrl64(ctrl, kCtrlTokenOff, dmb.token_);
  StoreCtrl64(ctrl, kCtrlSizeOff, size);
  return dmb;
}

void LocalDmb::ConnectDoorbell(SharedFd fd) {
  if (!registered()) return;
  std::byte* ctrl = map_.data() + (DmbFileSize(size_) - PageSize());
  doorbell_.emplace(std::move(fd),
                    reinterpret_cast<uint32_t*>(ctrl + kCtrlArmedOff),
                    reinterpret_cast<uint64_t*>(ctrl + kCtrlSleepTokenOff));
}

Result<LocalDmb> LocalDmb::Adopt(UniqueFd memfd, SharedFd doorbell,
                                 uint64_t token, uint64_t size,
                                 DmbBudget& budget) {
  const uint64_t file_size = DmbFileSize(size);
  if (file_size == 0) {
    return Status(StatusCode::kInvalidArgument, "inherited DMB size invalid");
  }
  // Register sealed all three: anything less is not our DMB.
  USMC_RETURN_IF_ERROR(CheckDmbFile(memfd.get(), file_size,
                                    F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL,
                                    "inherited DMB"));
  USMC_RETURN_IF_ERROR(CheckDoorbellFd(RawFd(doorbell)));
  if (!budget.TryCharge(file_size)) {
    return Status(StatusCode::kResourceExhausted,
                  "DMB budget exhausted adopting " + std::to_string(file_size) +
                      " bytes");
  }
  LocalDmb dmb;
  dmb.charge_ = BudgetCharge(&budget, file_size);
  void* p = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   memfd.get(), 0);
  if (p == MAP_FAILED) return Status::FromErrno(errno, "mmap DMB");
  dmb.map_ = Mapping(static_cast<std::byte*>(p), file_size);
  std::byte* ctrl = dmb.map_.data() + (file_size - PageSize());
  USMC_RETURN_IF_ERROR(CheckCtrl(ctrl, token, size, "inherited DMB"));
  dmb.size_ = size;
  dmb.token_ = token;
  dmb.memfd_ = std::move(memfd);
  dmb.ConnectDoorbell(std::move(doorbell));
  return dmb;
}

Result<LocalDmb> LocalDmb::InArena(std::shared_ptr<ShmArena> arena,
                                   uint64_t size, uint64_t token) {
  if (arena == nullptr || token == 0) {
    return Status(StatusCode::kInvalidArgument, "arena DMB parameters");
  }
  Result<ArenaSlot> slot = arena->Allocate(size, token);
  if (!slot.ok()) return slot.status();
  LocalDmb dmb;
  dmb.map_ = Mapping(arena->Bytes(*slot).data(), DmbFileSize(size),
                     /*owned=*/false);
  dmb.size_ = size;
  dmb.token_ = token;
  dmb.slot_offset_ = slot->offset;
  dmb.arena_ = std::move(arena);
  return dmb;
}

template <typename Bell>
void DmbPlace<Bell>::Take(DmbPlace& o) {
  map_ = std::move(o.map_);
  size_ = std::exchange(o.size_, 0);
  token_ = std::exchange(o.token_, 0);
  memfd_ = std::move(o.memfd_);
  doorbell_ = std::move(o.doorbell_);
  o.doorbell_.reset();
  arena_ = std::move(o.arena_);
  slot_offset_ = std::exchange(o.slot_offset_, 0);
}

template <typename Bell>
int DmbPlace<Bell>::memfd() const {
  return arena_ ? arena_->memfd() : memfd_.get();
}

template class DmbPlace<Doorbell>;
template class DmbPlace<PeerDoorbell>;

LocalDmb& LocalDmb::operator=(LocalDmb&& o) noexcept {
  if (this != &o) {
    Unregister();
    Take(o);
    charge_ = std::move(o.charge_);
  }
  return *this;
}

PeerDmb& PeerDmb::operator=(PeerDmb&& o) noexcept {
  if (this != &o) {
    Detach();
    Take(o);
  }
  return *this;
}

void LocalDmb::Unregister() {
  doorbell_.reset();
  map_.Reset();
  memfd_.Reset();
  charge_.Reset();
  if (arena_) arena_->Free({slot_offset_, size_});
  arena_.reset();
  slot_offset_ = 0;
  size_ = 0;
  token_ = 0;
}

Status LocalDmb::Read(uint64_t offset, std::span<std::byte> out) const {
  if (!registered()) {
    return Status(StatusCode::kFailedPrecondition, "DMB not registered");
  }
  if (!Fits(offset, out.size(), size_)) {
    return Status(StatusCode::kInvalidArgument, "read outside the DMB");
  }
  if (!out.empty()) {
    std::memcpy(out.data(), map_.data() + offset, out.size());
  }
  return OkStatus();
}

uint64_t LocalDmb::PeerPublishedNs() const {
  if (!registered()) return 0;
  const std::byte* ctrl =
      map_.data() + (DmbFileSize(size_) - PageSize()) + kCtrlPublishedOff;
  return LoadCtrl64(ctrl, 0);
}

void PeerDmb::StampPublish() const {
  if (!attached()) return;
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000u +
                      static_cast<uint64_t>(ts.tv_nsec);
  std::byte* ctrl =
      map_.data() + (DmbFileSize(size_) - PageSize()) + kCtrlPublishedOff;
  StoreCtrl64(ctrl, 0, ns);
}

Result<PeerDmb> PeerDmb::Attach(UniqueFd memfd, uint64_t expected_token,
                                uint64_t expected_size, SharedFd doorbell) {
  const uint64_t file_size = DmbFileSize(expected_size);
  if (file_size == 0) {
    return Status(StatusCode::kInvalidArgument, "expected DMB size invalid");
  }
  USMC_RETURN_IF_ERROR(CheckDmbFile(memfd.get(), file_size,
                                    F_SEAL_SHRINK | F_SEAL_GROW, "peer DMB"));
  void* p = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   memfd.get(), 0);
  if (p == MAP_FAILED) return Status::FromErrno(errno, "mmap peer DMB");
  PeerDmb dmb;
  dmb.map_ = Mapping(static_cast<std::byte*>(p), file_size);
  dmb.memfd_ = std::move(memfd);  // for the exec handover

  const std::byte* ctrl = dmb.map_.data() + (file_size - PageSize());
  USMC_RETURN_IF_ERROR(
      CheckCtrl(ctrl, expected_token, expected_size, "peer DMB"));
  dmb.size_ = expected_size;
  dmb.token_ = expected_token;
  std::byte* peer_ctrl = const_cast<std::byte*>(ctrl);
  dmb.doorbell_.emplace(
      std::move(doorbell),
      reinterpret_cast<uint32_t*>(peer_ctrl + kCtrlArmedOff),
      reinterpret_cast<uint64_t*>(peer_ctrl + kCtrlSleepTokenOff));
  return dmb;
}

Result<PeerDmb> PeerDmb::AttachSlot(std::shared_ptr<ShmArena> arena,
                                    uint64_t offset, uint64_t expected_token,
                                    uint64_t expected_size, SharedFd doorbell) {
  if (arena == nullptr) {
    return Status(StatusCode::kInvalidArgument, "no peer arena");
  }
  USMC_RETURN_IF_ERROR(arena->CheckSlot({offset, expected_size}));
  const ArenaSlot slot{offset, expected_size};
  std::byte* ctrl = arena->Ctrl(slot);
  USMC_RETURN_IF_ERROR(
      CheckCtrl(ctrl, expected_token, expected_size, "peer DMB slot"));
  PeerDmb dmb;
  dmb.map_ = Mapping(arena->Bytes(slot).data(), DmbFileSize(expected_size),
                     /*owned=*/false);
  dmb.size_ = expected_size;
  dmb.token_ = expected_token;
  dmb.slot_offset_ = offset;
  dmb.arena_ = std::move(arena);
  dmb.doorbell_.emplace(std::move(doorbell),
                        reinterpret_cast<uint32_t*>(ctrl + kCtrlArmedOff),
                        reinterpret_cast<uint64_t*>(ctrl + kCtrlSleepTokenOff));
  return dmb;
}

void PeerDmb::Detach() {
  doorbell_.reset();
  if (arena_ && attached()) {
    // Our last access to the slot: its owner may reuse it from now on.
    std::byte* ctrl = map_.data() + (DmbFileSize(size_) - PageSize());
    std::atomic_ref<uint64_t>(
        *reinterpret_cast<uint64_t*>(ctrl + kCtrlPeerReleasedOff))
        .store(1, std::memory_order_release);
  }
  map_.Reset();
  memfd_.Reset();
  arena_.reset();
  slot_offset_ = 0;
  size_ = 0;
  token_ = 0;
}

Status PeerDmb::Write(uint64_t offset, std::span<const std::byte> data) const {
  if (!attached()) {
    return Status(StatusCode::kFailedPrecondition, "peer DMB not attached");
  }
  if (!Fits(offset, data.size(), size_)) {
    return Status(StatusCode::kInvalidArgument, "write outside the peer DMB");
  }
  if (!data.empty()) {  // an empty span may carry a null pointer
    std::memcpy(map_.data() + offset, data.data(), data.size());
  }
  return OkStatus();
}

}  // namespace usmc::dev
