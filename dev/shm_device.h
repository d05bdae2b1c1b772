// dev/shm_device.h: SMC-D on one host behind dev/device.h: our DMB and the
// peer's (sealed memfds, dev/shm_dmb.h), the fd handover that swaps them
// (dev/shm_handover.h), the doorbells (dev/shm_doorbell.h) and the CDC area
// at offset 0 of each DMB (dev/shm_cdc_area.h).
//
//   std::unique_ptr<ShmDevice> d = ShmDevice::Create(/*server=*/true);
//   d->RegisterBuffer({.size = 65536});   // a server also starts listening
//   d->AttachPeerBuffer({.token = t, .size = s});  // the fd handover
#ifndef USMC_DEV_SHM_DEVICE_H_
#define USMC_DEV_SHM_DEVICE_H_

#include <memory>
#include <optional>

#include "dev/device.h"
#include "dev/shm_cdc_area.h"
#include "dev/shm_dmb.h"
#include "dev/shm_handover.h"
#include "dev/unique_fd.h"

namespace usmc::dev {

// The runtime sets it from USMC_SHM_ARENA: DMBs are slots of
// per-peer-process arenas (dev/shm_arena.h, the arena handover of
// dev/shm_handover.h). Such connections move across exec and SCM_RIGHTS
// with their arenas' fds and slot offsets (ExportArenas, AdoptArenas).
void SetShmArenas(bool on);
bool ShmArenasOn();

// Register's roomy option: a larger DMB for this connection while the
// process's DMBs stay within `roomy_budget` bytes with it.
struct ShmRoomy {
  uint32_t size = 0;  // 0: off
  uint64_t budget = 0;
};

// A connection whose DMBs are arena slots, as exec and pass records carry
// it. Fds: the arenas' memfds (shared by the pair's other connections) and
// the connection's doorbell socket.
struct ArenaExport {
  int own_fd = -1;
  int peer_fd = -1;
  int doorbell_fd = -1;
  uint64_t own_id = 0, own_size = 0, own_slot = 0;
  uint64_t peer_id = 0, peer_size = 0, peer_slot = 0;
};

// Where a connection in arena slots goes (ShmDevice::ExportArenas). An
// arena fd maps the whole arena: its receiver can read every slot in it.
enum class ArenaExportTo {
  kExec,  // this process's next image
  // SCM_RIGHTS to a process of our uid: it may have the whole pair (it
  // could ptrace us anyway, docs/dev-shm.md "Threat model").
  kPassSameUid,
  // SCM_RIGHTS to another uid, or to a process whose uid we cannot tell:
  // only a pair that never held another connection goes.
  kPassOtherUid,
};

class ShmDevice final : public Device {
 public:
  // `server`: RegisterBuffer also opens the handover listener (before the
  // Accept goes out, so the client can connect as soon as it has read it).
  static std::unique_ptr<ShmDevice> Create(bool server, ShmRoomy roomy = {});
  // Rebuilds a connection's device from the fds ExportFds gave (exec,
  // SCM_RIGHTS), checked as dev/shm_dmb.h's Adopt and Attach check them.
  static Result<std::unique_ptr<ShmDevice>> Adopt(UniqueFd own_memfd,
                                                  BufferInfo own,
                                                  UniqueFd peer_memfd,
                                                  BufferInfo peer,
                                                  UniqueFd doorbell);
  // The same for a connection in arena slots: each arena is attached once
  // per process (AdoptArena), own ones adopted (never allocated from).
  // Takes the three fds of `a` whatever happens.
  static Result<std::unique_ptr<ShmDevice>> AdoptArenas(const ArenaExport& a,
                                                        BufferInfo own,
                                                        BufferInfo peer);
  // Whether an inherited fd can be a doorbell end (dev/shm_doorbell.h).
  static Status CheckDoorbell(int fd) { return CheckDoorbellFd(fd); }

  Result<BufferInfo> RegisterBuffer(const RegisterRequest& r) override;
  bool registered() const override {
    return local_.registered() || reserved_token_ != 0;
  }
  BufferInfo own() const override;
  void UnregisterBuffer() override;
  Status ReadOwn(uint64_t offset, std::span<std::byte> out) const override {
    return local_.Read(offset, out);
  }

  Result<BufferInfo> AttachPeerBuffer(const AttachRequest& r) override;
  bool attached() const override { return peer_.attached(); }
  BufferInfo peer() const override;
  void DetachPeerBuffer() override { peer_.Detach(); }
  // Arena slots: the peer's stays unreleased and ours is never reused
  // (docs/dev-shm.md, "Slot reuse needs the peer's release").
  void ForgetBuffers() override;
  Status MoveData(uint64_t offset, std::span<const std::byte> data) override;

  int AttachFd() const override;
  void EndHandshake() override { listener_.reset(); }

  void PostCdc(std::span<const std::byte> cdc) override;
  CdcBytes LoadCdc() const override;
  bool LoadForeignPost(CdcBytes& out) override;

  void Signal() override;
  WaitResult Wait(ReadyFn ready, std::chrono::nanoseconds timeout,
                  const WaitOptions& opts) override;
  bool Arm(ReadyFn ready, uint64_t sleep_token) override;
  void Disarm() override;
  int WaitFd() const override;
  bool Drain(bool lazily, bool hangup) override;
  uint64_t PeerPostedNs() const override { return local_.PeerPublishedNs(); }
  DoorbellStats wait_stats() const override;
  DoorbellStats signal_stats() const override;

  uint32_t* Shared(SharedWord w) override;
  // {own memfd, peer memfd, doorbell socket (both directions), -1}.
  Status ExportFds(std::array<int, 4>& fds) const override;

  // Whether this connection's DMBs are arena slots.
  bool in_arena() const { return local_.arena() != nullptr; }
  // The connection's arenas and slots. A pass (SCM_RIGHTS to another
  // process) retires the pair here (never allocated from again; the peer's
  // later claims get "unknown pair"; its live connections stay). To
  // another uid only the pair's first and only connection goes: any other
  // slot, live or freed (warm slots keep their bytes), would show the
  // receiver a connection it does not hold (kFailedPrecondition naming why).
  Status ExportArenas(ArenaExport& out, ArenaExportTo to);

  // SO_PEERCRED of the handover's Unix peer (zeros if adopted or not yet
  // attached): for the record, nothing depends on it.
  PeerCred peer_cred() const { return cred_; }

 private:
  Result<BufferInfo> AttachArena(const AttachRequest& r);
  ShmDevice(bool server, ShmRoomy roomy)
      : server_(server), roomy_(roomy), arena_(ShmArenasOn()) {}

  const bool server_;
  const ShmRoomy roomy_;
  const bool arena_;  // this connection's DMBs go into pair arenas
  // Arena mode: what CLC announced before the slot is placed.
  uint64_t reserved_token_ = 0;
  uint64_t reserved_size_ = 0;
  PeerCred cred_;
  PairUse use_;  // declared before the DMBs: released after them
  LocalDmb local_;
  PeerDmb peer_;
  std::optional<HandoverListener> listener_;
  CdcArea last_posted_{};  // what this process last stored in the peer
};

}  // namespace usmc::dev

#endif  // USMC_DEV_SHM_DEVICE_H_
