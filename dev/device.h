// dev/device.h: the one interface every device implements, in the shape of
// the Linux kernel's smcd_ops (register_dmb, attach_dmb, move_data,
// signal_event, ...), seen from one connection.
//
// A Device object carries one connection's pair of receive buffers: ours
// (the peer writes into it: a DMB for SMC-D, an RMB for SMC-R) and the
// peer's (we write into it). The runtime's one action executor
// (runtime/executor.h) carries out the engine's actions on it, so the
// engine never learns which device runs underneath, and no device knows the
// engine. Implementations: dev/shm_device.h (SMC-D on one host: sealed
// memfds and doorbells), dev/sim.h (in-process, for tests), later dev/verbs
// (SMC-R over RDMA).
//
//   std::unique_ptr<Device> d = ShmDevice::Create(role, tcp_fd);
//   Result<BufferInfo> own = d->RegisterBuffer({.size = 65536});
//   // ... CLC names both buffers ...
//   Result<BufferInfo> peer = d->AttachPeerBuffer({.token = t, .size = s});
//   d->MoveData(ring_offset, bytes);   // into the peer's buffer
//   d->PostCdc(cdc);                   // then the cursors
//   d->Signal();                       // and wake it if it sleeps
//
// Everything the peer can write (our buffer, the CDC it posts) may change
// at any time: callers validate every value they read (the engine does).
#ifndef USMC_DEV_DEVICE_H_
#define USMC_DEV_DEVICE_H_

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <span>
#include <string_view>

#include "base/status.h"

namespace usmc::dev {

// A CDC as a device carries it: SMC-D's 32-byte area at offset 0 of a DMB,
// SMC-R's 44-byte SEND.
struct CdcBytes {
  static constexpr size_t kMaxLen = 44;
  std::array<std::byte, kMaxLen> data{};
  uint8_t len = 0;

  std::span<const std::byte> bytes() const { return {data.data(), len}; }
  bool operator==(const CdcBytes& o) const {
    return len == o.len && std::memcmp(data.data(), o.data.data(), len) == 0;
  }
};

// A receive buffer as CLC names it.
struct BufferInfo {
  uint64_t token = 0;
  uint32_t size = 0;  // whole buffer, the device's CDC slot included
};

struct RegisterRequest {
  uint32_t size = 0;
};

struct AttachRequest {
  // From CLC. 0/0: take what the verified peer offers (a server attaching
  // before the client's Confirm names it); the caller checks it later.
  uint64_t token = 0;
  uint32_t size = 0;
  // How long the attach may wait for the peer (shm: the fd handover).
  std::chrono::milliseconds timeout{2000};
};

// Why a wait ended.
enum class WaitResult {
  kReady,         // the predicate became true
  kTimedOut,      // timeout passed, predicate still false
  kPeerGone,      // the device lost the peer (its process exited, a QP died)
  kExtraFdReady,  // the caller's extra fd (e.g. the TCP socket) polled ready
  kInterrupted,   // a signal arrived and WaitOptions::return_on_signal is set
};
std::string_view ToString(WaitResult r);
std::ostream& operator<<(std::ostream& os, WaitResult r);

struct WaitOptions {
  int extra_fd = -1;              // also return when this fd polls readable
  bool return_on_signal = false;  // EINTR -> kInterrupted instead of retrying
};

// Counters of one side of a device's wait/wake protocol. Plain values.
struct DoorbellStats {
  // Waiter side.
  uint64_t waits = 0;
  uint64_t ready_at_once = 0;  // predicate true on entry
  uint64_t spins = 0;          // waits that spun before arming
  uint64_t spin_hits = 0;      // became true while spinning
  uint64_t sleeps = 0;         // poll(2) calls after arming
  uint64_t wakeups_received = 0;
  uint64_t timeouts = 0;
  // Waker side.
  uint64_t rings = 0;
  uint64_t wakeups_sent = 0;       // send(2) calls that succeeded
  uint64_t wakeups_skipped = 0;    // rings that found the peer not armed
  uint64_t wakeups_coalesced = 0;  // armed for a sleep already woken
};

// A borrowed predicate (no allocation, no copy): valid for the call only.
class ReadyFn {
 public:
  template <typename F>
  ReadyFn(F& f)  // NOLINT: implicit, like a function_ref
      : obj_(&f), call_([](void* o) { return (*static_cast<F*>(o))(); }) {}
  bool operator()() const { return call_(obj_); }

 private:
  void* obj_;
  bool (*call_)(void*);
};

// Words in memory that every process holding the connection shares (fork),
// where a device has such memory (shm: our DMB's control page).
enum class SharedWord {
  kProcessRefs,  // u32: processes holding the connection
  kHolders,      // u32[kHolderSlots]: their pids, 0 = free
};
inline constexpr size_t kHolderSlots = 32;

class Device {
 public:
  virtual ~Device() = default;

  // ---- our receive buffer (register_dmb / unregister_dmb) ----
  // A zeroed buffer of `size` bytes (the device may refuse a size it cannot
  // serve: kResourceExhausted for memory, another code otherwise).
  virtual Result<BufferInfo> RegisterBuffer(const RegisterRequest& r) = 0;
  virtual bool registered() const = 0;
  virtual BufferInfo own() const = 0;
  // Idempotent. A peer that attached keeps its view until it detaches.
  virtual void UnregisterBuffer() = 0;
  // Bounds-checked copy out of our buffer (offsets come from the peer's
  // cursors): kInvalidArgument if it does not fit.
  virtual Status ReadOwn(uint64_t offset, std::span<std::byte> out) const = 0;

  // ---- the peer's buffer (attach_dmb / detach_dmb, move_data) ----
  // May wait for the peer, bounded by r.timeout.
  virtual Result<BufferInfo> AttachPeerBuffer(const AttachRequest& r) = 0;
  virtual bool attached() const = 0;
  virtual BufferInfo peer() const = 0;
  virtual void DetachPeerBuffer() = 0;
  // Drops this process's view of both buffers only, while another process
  // still holds the connection (fork, exec'd child, pass): neither buffer
  // may be reused on the strength of this process letting go.
  virtual void ForgetBuffers() {
    DetachPeerBuffer();
    UnregisterBuffer();
  }
  // Bounds-checked copy into the peer's buffer; visible to the peer no
  // later than the next PostCdc.
  virtual Status MoveData(uint64_t offset, std::span<const std::byte> data) = 0;

  // ---- the handshake ----
  // An fd that becomes readable when the peer starts its part of the
  // attach (shm: the server's handover listener), -1 if none.
  virtual int AttachFd() const = 0;
  // The handshake is over (decided either way): drop what only it needed.
  virtual void EndHandshake() = 0;

  // ---- CDCs ----
  // Delivers `cdc` to the peer after every MoveData before it.
  virtual void PostCdc(std::span<const std::byte> cdc) = 0;
  // The last CDC the peer delivered to us (all zero before the first).
  virtual CdcBytes LoadCdc() const = 0;
  // A CDC for this connection that another process of ours delivered to
  // the peer since our last PostCdc (fork shares the buffers), else false.
  virtual bool LoadForeignPost(CdcBytes& out) = 0;

  // ---- waking and waiting (arm, re-check, sleep; signal only an armed
  // peer) ----
  // signal_event: wakes the peer if it said it is about to sleep.
  virtual void Signal() = 0;
  // Sleeps until `ready` holds, the peer is lost, the timeout passes or
  // opts say so. One thread at a time.
  virtual WaitResult Wait(ReadyFn ready, std::chrono::nanoseconds timeout,
                          const WaitOptions& opts) = 0;
  // For event loops that sleep on many connections: says "about to sleep"
  // unless `ready` holds (false then). `sleep_token` as dev/shm_doorbell.h.
  virtual bool Arm(ReadyFn ready, uint64_t sleep_token) = 0;
  virtual void Disarm() = 0;
  // Readable when the peer signals (or is lost); -1 if the device has none.
  virtual int WaitFd() const = 0;
  // After WaitFd polled readable: consume the wakeups (`lazily`: an
  // edge-triggered poller need not read each time). false: the peer is lost.
  virtual bool Drain(bool lazily, bool hangup) = 0;
  // When the peer last posted a CDC to us (CLOCK_MONOTONIC ns; 0: unknown).
  virtual uint64_t PeerPostedNs() const = 0;
  virtual DoorbellStats wait_stats() const = 0;
  virtual DoorbellStats signal_stats() const = 0;

  // Shared words (see SharedWord), nullptr where the device has none.
  virtual uint32_t* Shared(SharedWord w) = 0;

  // ---- moving the connection to another process (exec, SCM_RIGHTS) ----
  // The fds that carry this connection's buffers, in a device-defined
  // order (unused slots -1); kFailedPrecondition if the device cannot move
  // them.
  virtual Status ExportFds(std::array<int, 4>& fds) const = 0;
};

}  // namespace usmc::dev

#endif  // USMC_DEV_DEVICE_H_
