#include "dev/shm_device.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <utility>

#include "dev/shm_identity.h"

namespace usmc::dev {

namespace {
std::atomic<bool> g_arenas{false};
}  // namespace

void SetShmArenas(bool on) { g_arenas.store(on, std::memory_order_relaxed); }
bool ShmArenasOn() { return g_arenas.load(std::memory_order_relaxed); }

std::unique_ptr<ShmDevice> ShmDevice::Create(bool server, ShmRoomy roomy) {
  return std::unique_ptr<ShmDevice>(new ShmDevice(server, roomy));
}

Result<std::unique_ptr<ShmDevice>> ShmDevice::Adopt(UniqueFd own_memfd,
                                                    BufferInfo own,
                                                    UniqueFd peer_memfd,
                                                    BufferInfo peer,
                                                    UniqueFd doorbell) {
  SharedFd bell = ShareFd(std::move(doorbell));
  Result<LocalDmb> local =
      LocalDmb::Adopt(std::move(own_memfd), bell, own.token, own.size);
  if (!local.ok()) return local.status();
  Result<PeerDmb> p =
      PeerDmb::Attach(std::move(peer_memfd), peer.token, peer.size, bell);
  if (!p.ok()) return p.status();
  std::unique_ptr<ShmDevice> d(new ShmDevice(false, {}));
  d->local_ = std::move(*local);
  d->peer_ = std::move(*p);
  // What the old image posted last is what the peer's DMB holds now.
  d->last_posted_ = LoadCdcArea(d->peer_.bytes().data());
  return d;
}

Result<std::unique_ptr<ShmDevice>> ShmDevice::AdoptArenas(const ArenaExport& a,
                                                          BufferInfo own,
                                                          BufferInfo peer) {
  SharedFd bell = ShareFd(UniqueFd(a.doorbell_fd));
  Result<std::shared_ptr<ShmArena>> own_arena =
      AdoptArena(a.own_fd, a.own_size, a.own_id, /*own=*/true);
  Result<std::shared_ptr<ShmArena>> peer_arena =
      AdoptArena(a.peer_fd, a.peer_size, a.peer_id, /*own=*/false);
  if (!own_arena.ok()) return own_arena.status();
  if (!peer_arena.ok()) return peer_arena.status();
  Result<LocalDmb> local = LocalDmb::AdoptSlot(
      std::move(*own_arena), a.own_slot, own.token, own.size, bell);
  if (!local.ok()) return local.status();
  Result<PeerDmb> p = PeerDmb::AttachSlot(std::move(*peer_arena), a.peer_slot,
                                          peer.token, peer.size, bell);
  if (!p.ok()) return p.status();
  std::unique_ptr<ShmDevice> d(new ShmDevice(false, {}));
  d->local_ = std::move(*local);
  d->peer_ = std::move(*p);
  d->last_posted_ = LoadCdcArea(d->peer_.bytes().data());
  return d;
}

Status ShmDevice::ExportArenas(ArenaExport& out, ArenaExportTo to) {
  const std::shared_ptr<ShmArena>& own = local_.arena();
  const std::shared_ptr<ShmArena>& peer = peer_.arena();
  if (own == nullptr || peer == nullptr || !local_.has_doorbell()) {
    return Status(StatusCode::kFailedPrecondition,
                  "not an arena connection, or buffers already released");
  }
  if (to == ArenaExportTo::kPassOtherUid) {
    // Every connection of the pair has one slot in each arena, so ours
    // tells for both: one slot ever carved, none reused, none adopted
    // (after exec we do not know the arena's past).
    const ArenaStats st = own->stats();
    if (st.slots_in_use != 1) {
      return Status(StatusCode::kFailedPrecondition,
                    "it shares its shared-memory arenas with other live "
                    "connections to the same peer process");
    }
    if (own->adopted() || st.slots_created != 1 || st.slots_reused != 0) {
      return Status(StatusCode::kFailedPrecondition,
                    "its shared-memory arenas held earlier connections to "
                    "the same peer process, whose bytes may still be there");
    }
  }
  out.own_fd = own->memfd();
  out.peer_fd = peer->memfd();
  out.doorbell_fd = local_.doorbell().fd();
  out.own_id = own->id();
  out.own_size = own->file_size();
  out.own_slot = local_.slot_offset();
  out.peer_id = peer->id();
  out.peer_size = peer->file_size();
  out.peer_slot = peer_.slot_offset();
  if (to != ArenaExportTo::kExec && use_.pair() != nullptr) {
    ArenaPairs::Process().Retire(use_.pair()->id);
  }
  return OkStatus();
}

Result<BufferInfo> ShmDevice::RegisterBuffer(const RegisterRequest& r) {
  DmbBudget& budget = DmbBudget::Process();
  uint64_t size = r.size;
  if (roomy_.size > r.size &&
      budget.used() + DmbFileSize(roomy_.size) <= roomy_.budget) {
    size = roomy_.size;  // CLC advertises what was registered
  }
  if (arena_) {
    // The slot is placed once the handover knows the peer process; CLC
    // needs the token and size now. The budget is charged by the slot.
    if (budget.used() + DmbFileSize(size) > budget.limit()) {
      return Status(StatusCode::kResourceExhausted, "DMB budget exhausted");
    }
    Result<uint64_t> token = NewDmbToken();
    if (!token.ok()) return token.status();
    if (server_) {
      Result<HandoverListener> l = HandoverListener::Listen(*token);
      if (!l.ok()) return l.status();
      listener_.emplace(std::move(*l));
    }
    reserved_token_ = *token;
    reserved_size_ = size;
    return own();
  }
  Result<LocalDmb> dmb = LocalDmb::Register(size, budget);
  if (!dmb.ok()) return dmb.status();
  local_ = std::move(*dmb);
  if (server_) {
    Result<HandoverListener> l = HandoverListener::Listen(local_);
    if (!l.ok()) {
      local_.Unregister();
      return l.status();
    }
    listener_.emplace(std::move(*l));
  }
  return own();
}

BufferInfo ShmDevice::own() const {
  if (!local_.registered() && reserved_token_ != 0) {
    return {reserved_token_, static_cast<uint32_t>(reserved_size_)};
  }
  if (!local_.registered()) return {};
  return {local_.token(), static_cast<uint32_t>(local_.size())};
}

void ShmDevice::UnregisterBuffer() {
  listener_.reset();
  local_.Unregister();
  reserved_token_ = 0;
  reserved_size_ = 0;
  if (!peer_.attached()) use_.Reset();
}

Result<BufferInfo> ShmDevice::AttachPeerBuffer(const AttachRequest& r) {
  if (peer_.attached()) {
    // The handover already ran (the server's, before Confirm): CLC must
    // name what it gave.
    if (r.token != 0 && (r.token != peer_.token() || r.size != peer_.size())) {
      return Status(StatusCode::kDataLoss, "CLC names another peer DMB");
    }
    return peer();
  }
  if (arena_) return AttachArena(r);
  HandoverParams p{
      .peer_token = r.token, .peer_dmb_size = r.size, .timeout = r.timeout};
  Result<Handover> got =
      listener_ ? listener_->Accept(local_, p) : ConnectHandover(local_, p);
  // A server's early attempt (token 0: before Confirm) that failed keeps
  // listening for the real peer; any other attempt is the last. Once the
  // peer is in, nobody else may even connect: the window closes.
  if (got.ok() || r.token != 0) listener_.reset();
  if (!got.ok()) return got.status();
  peer_ = std::move(got->peer);
  cred_ = got->cred;
  return peer();
}

Result<BufferInfo> ShmDevice::AttachArena(const AttachRequest& r) {
  if (reserved_token_ == 0) {
    return Status(StatusCode::kFailedPrecondition, "DMB not registered");
  }
  // Arenas sized to hold the process's whole budget: sparse, so only
  // touched pages cost memory.
  const uint64_t arena_size =
      std::clamp<uint64_t>(DmbBudget::Process().limit() + (uint64_t{2} << 20),
                           kMinArenaSize, kMaxArenaSize);
  ArenaParams p{.own_token = reserved_token_,
                .own_size = reserved_size_,
                .peer_token = r.token,
                .peer_size = r.size,
                .new_arena_size = arena_size,
                .timeout = r.timeout};
  Result<ArenaHandoverResult> got =
      listener_ ? ArenaAccept(*listener_, ArenaPairs::Process(), p)
                : ArenaConnect(ArenaPairs::Process(), p);
  if (got.ok() || r.token != 0) listener_.reset();
  if (!got.ok()) return got.status();
  use_ = std::move(got->use);
  local_ = std::move(got->local);
  peer_ = std::move(got->peer);
  cred_ = got->cred;
  reserved_token_ = 0;
  reserved_size_ = 0;
  return peer();
}

void ShmDevice::ForgetBuffers() {
  peer_.Abandon();
  listener_.reset();
  local_.Abandon();
  reserved_token_ = 0;
  reserved_size_ = 0;
  use_.Reset();
}

BufferInfo ShmDevice::peer() const {
  if (!peer_.attached()) return {};
  return {peer_.token(), static_cast<uint32_t>(peer_.size())};
}

Status ShmDevice::MoveData(uint64_t offset, std::span<const std::byte> data) {
  return peer_.Write(offset, data);
}

int ShmDevice::AttachFd() const {
  return listener_ && !peer_.attached() ? listener_->fd() : -1;
}

void ShmDevice::PostCdc(std::span<const std::byte> cdc) {
  if (!peer_.attached() || cdc.size() != kCdcAreaLen) return;
  CdcArea area;
  std::memcpy(area.data(), cdc.data(), kCdcAreaLen);
  // Stamped first: a peer that sees this CDC sees a stamp at least this new
  // (it orders its ready connections by it).
  peer_.StampPublish();
  StoreCdcArea(peer_.bytes().data(), area);
  last_posted_ = area;
}

CdcBytes ShmDevice::LoadCdc() const {
  CdcBytes c;
  if (!local_.registered()) return c;
  const CdcArea area = LoadCdcArea(local_.bytes().data());
  std::memcpy(c.data.data(), area.data(), kCdcAreaLen);
  c.len = kCdcAreaLen;
  return c;
}

bool ShmDevice::LoadForeignPost(CdcBytes& out) {
  if (!peer_.attached()) return false;
  const CdcArea now = LoadCdcArea(peer_.bytes().data());
  if (now == last_posted_) return false;
  last_posted_ = now;  // reported once
  std::memcpy(out.data.data(), now.data(), kCdcAreaLen);
  out.len = kCdcAreaLen;
  return true;
}

void ShmDevice::Signal() {
  if (peer_.attached()) peer_.doorbell().Ring();
}

WaitResult ShmDevice::Wait(ReadyFn ready, std::chrono::nanoseconds timeout,
                           const WaitOptions& opts) {
  // No doorbell before the handover: nothing could ever ring.
  if (!local_.has_doorbell()) return WaitResult::kPeerGone;
  return local_.doorbell().Wait(ready, timeout, opts);
}

bool ShmDevice::Arm(ReadyFn ready, uint64_t sleep_token) {
  if (!local_.has_doorbell()) return false;
  return local_.doorbell().Arm(ready, sleep_token);
}

void ShmDevice::Disarm() {
  if (local_.has_doorbell()) local_.doorbell().Disarm();
}

int ShmDevice::WaitFd() const {
  return local_.has_doorbell() ? const_cast<LocalDmb&>(local_).doorbell().fd()
                               : -1;
}

bool ShmDevice::Drain(bool lazily, bool hangup) {
  if (!local_.has_doorbell()) return false;
  Doorbell& bell = local_.doorbell();
  return lazily ? bell.DrainLazily(hangup) : bell.Drain();
}

DoorbellStats ShmDevice::wait_stats() const {
  if (!local_.has_doorbell()) return {};
  return const_cast<LocalDmb&>(local_).doorbell().stats();
}

DoorbellStats ShmDevice::signal_stats() const {
  if (!peer_.attached()) return {};
  return const_cast<PeerDmb&>(peer_).doorbell().stats();
}

uint32_t* ShmDevice::Shared(SharedWord w) {
  if (!local_.registered()) return nullptr;
  static_assert(kHolderSlots == kCtrlHolderSlots);
  // The control page follows the DMB bytes, rounded up to pages, in the
  // same mapping (dev/shm_dmb.h).
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t ctrl = DmbFileSize(local_.size()) - page;
  const size_t off =
      w == SharedWord::kProcessRefs ? kCtrlProcessRefsOff : kCtrlHoldersOff;
  return reinterpret_cast<uint32_t*>(local_.bytes().data() + ctrl + off);
}

Status ShmDevice::ExportFds(std::array<int, 4>& fds) const {
  if (local_.arena() != nullptr) {
    // Arena slots need their offsets and arena ids too: ExportArenas.
    return Status(StatusCode::kFailedPrecondition,
                  "arena DMBs are exported with ExportArenas");
  }
  if (!local_.registered() || !local_.has_doorbell() || !peer_.attached() ||
      peer_.memfd() < 0) {
    return Status(StatusCode::kFailedPrecondition, "buffers already released");
  }
  fds = {local_.memfd(), peer_.memfd(),
         const_cast<LocalDmb&>(local_).doorbell().fd(), -1};
  return OkStatus();
}

}  // namespace usmc::dev
