// dev/shm_doorbell.h: wait/wake between the two processes of a shm
// connection: "arm, re-check, sleep; signal only an armed peer".
//
// Each DMB has one doorbell. Its owner waits on it (data arrived in its DMB,
// or the peer moved the consumer cursor it keeps there); the peer rings it
// after publishing. The shared state is one `armed` word in the DMB's control
// page plus a pollable fd: one connected AF_UNIX stream socket per
// connection (the handover's, shm_handover.h), of which each process holds
// one end. It waits on POLLIN of its end (its Doorbell) and rings the peer
// by sending a byte on the same end (its PeerDoorbell): a stream socket is
// two independent byte queues. Ringing an unarmed doorbell costs a fence
// and a load, no system call.
//
//   // waiter (owner of the DMB)
//   WaitResult r = doorbell.Wait([&] { return ProducerMoved(); }, 10ms);
//   // waker (peer), after release-storing the cursor into that DMB
//   peer_doorbell.Ring();
//
// Sleep tokens. An event loop that sleeps on many doorbells at once and,
// once woken by any of them, looks at all its connections (preload's epoll
// scan mode) arms each with the same token, fresh for that sleep. A thread
// that rings remembers the token of the last wakeup it sent; ringing another
// doorbell armed with that token sends nothing (kCoalesced), because that
// sleep is already being woken. A server answering 50 clients of one
// sleeping client process then sends one wakeup instead of up to 50. Token
// 0 (every other waiter) never coalesces. A peer writing tokens only loses
// its own wakeups: tokens are compared for the rings one thread sends.
#ifndef USMC_DEV_SHM_DOORBELL_H_
#define USMC_DEV_SHM_DOORBELL_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string_view>
#include <type_traits>

#include "base/status.h"
#include "dev/device.h"
#include "dev/unique_fd.h"

namespace usmc::dev {

enum class RingResult {
  kNotArmed,   // peer was not about to sleep: nothing sent
  kWoken,      // peer was armed: one wakeup sent
  kPending,    // peer armed but its doorbell already holds unread wakeups
  kCoalesced,  // peer armed for a sleep this thread has just woken
  kPeerGone,   // the peer's end is closed
};
std::string_view ToString(RingResult r);
std::ostream& operator<<(std::ostream& os, RingResult r);

// A fresh sleep token: never 0, unique within the process (a forked child
// draws from a new random start).
uint64_t NewSleepToken();

// The spin budget in microseconds a new Doorbell starts with: the runtime
// sets it from its Config (USMC_SPIN_US, runtime/config.h) before it makes
// doorbells; until then kDefaultSpinUs. dev/ reads no environment.
inline constexpr uint32_t kDefaultSpinUs = 20;
void SetDefaultSpinUs(uint32_t us);
uint32_t DefaultSpinUs();

// One end of the connection's doorbell socket, shared by the Doorbell we
// wait on and the PeerDoorbell we ring: closed when both are gone.
using SharedFd = std::shared_ptr<const UniqueFd>;
inline SharedFd ShareFd(UniqueFd fd) {
  return std::make_shared<const UniqueFd>(std::move(fd));
}
inline int RawFd(const SharedFd& fd) { return fd ? fd->get() : -1; }

// Longest wait honoured; longer timeouts are cut to this (about a year).
inline constexpr std::chrono::nanoseconds kMaxWait =
    std::chrono::hours(24 * 365);

// An fd inherited across exec(2) that should be a doorbell end: OK if it is
// an AF_UNIX stream socket, else kDataLoss (kSystem if fstat/getsockopt
// fail, e.g. EBADF). Both Doorbell and PeerDoorbell take such an fd.
Status CheckDoorbellFd(int fd);

// Waiter side. Not copyable; one thread waits at a time.
class Doorbell {
 public:
  // `armed` and `sleep_token` point into the DMB control page (shared with
  // the peer); a null `sleep_token` (tests) arms without tokens.
  Doorbell(SharedFd fd, uint32_t* armed, uint64_t* sleep_token = nullptr);
  Doorbell(UniqueFd fd, uint32_t* armed, uint64_t* sleep_token = nullptr)
      : Doorbell(ShareFd(std::move(fd)), armed, sleep_token) {}
  Doorbell(Doorbell&&) noexcept = default;
  Doorbell& operator=(Doorbell&&) noexcept = default;

  // Returns kReady as soon as `ready()` is true: checks, spins (see the
  // spin policy below), then arms and sleeps until rung, timeout, peer
  // hangup or extra_fd. `ready` must read what the peer publishes with
  // acquire loads.
  //
  // Spin policy (adaptive by default): spin up to the current spin, which
  // starts at the budget. A spin that sees the data restores the full
  // budget; a wasted spin halves it. Once at zero, a wait now and then
  // (every kProbeEvery-th, doubling up to kMaxProbeEvery while probes keep
  // failing) spins the full budget to notice a peer that became fast. When
  // the two sides compete for one busy CPU, spinning only delays the peer;
  // this backs off instead.
  template <typename Pred>
  WaitResult Wait(Pred&& ready, std::chrono::nanoseconds timeout,
                  const WaitOptions& opts = {});

  // The pollable fd (readable when rung, HUP when the peer is gone).
  // A moved-from Doorbell may only be destroyed or assigned to.
  int fd() const { return RawFd(fd_); }
  void set_spin_us(uint32_t us) {
    spin_us_ = cur_spin_us_ = us;
    probe_interval_ = kProbeEvery;
  }
  uint32_t spin_us() const { return spin_us_; }
  // false: always spin the full budget (for measurements).
  void set_adaptive(bool on) { adaptive_ = on; }
  uint32_t current_spin_us() const { return cur_spin_us_; }
  static constexpr uint32_t kProbeEvery = 16;
  static constexpr uint32_t kMaxProbeEvery = 1024;
  DoorbellStats stats() const;

  // Drains pending wakeups without waiting; returns false if the peer is
  // gone. For event loops that poll fd() themselves.
  bool Drain();
  // For a sleeper that gets an edge per ring (epoll with EPOLLET on fd()):
  // unread bytes do not hide the next ring, so they are read only every
  // kLazyDrainEvery wakeups or on a hang-up, saving a recv per wakeup.
  // Returns false if the peer is gone.
  bool DrainLazily(bool hangup);
  static constexpr uint32_t kLazyDrainEvery = 32;

  // For event loops that sleep on fd() themselves (poll/epoll for many
  // connections): arms, fences, re-checks `ready`. false: ready() holds,
  // not armed, do not sleep. true: armed; the peer's next Ring() makes fd()
  // readable, so sleeping on fd() cannot miss a publish. After the sleep:
  // Disarm() (harmless if the ring already did) and Drain(). A non-zero
  // `sleep_token` lets the peer skip this ring if it woke that sleep through
  // another doorbell: only for sleepers that then look at every connection.
  template <typename Pred>
  bool Arm(Pred&& ready, uint64_t sleep_token = 0);
  void Disarm() {
    std::atomic_ref<uint32_t>(*armed_).store(0, std::memory_order_relaxed);
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct PredRef {
    void* obj;
    bool (*call)(void*);
    bool operator()() const { return call(obj); }
  };
  WaitResult SleepUntil(PredRef ready, Clock::time_point deadline,
                        const WaitOptions& opts);
  bool DrainUpTo(bool to_end);
  // The token first: a waker that sees armed (acquire) sees this token.
  void StoreArmed(uint64_t sleep_token) {
    if (sleep_token_ != nullptr) {
      std::atomic_ref<uint64_t>(*sleep_token_)
          .store(sleep_token, std::memory_order_relaxed);
    }
    std::atomic_ref<uint32_t>(*armed_).store(1, std::memory_order_release);
  }
  uint32_t SpinForThisWait();
  void Learn(bool spin_hit, uint32_t spun_us);
  static void Bump(std::atomic<uint64_t>& c) {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  SharedFd fd_;
  uint32_t* armed_;
  uint64_t* sleep_token_;   // may be null
  uint32_t spin_us_;        // the budget (USMC_SPIN_US)
  uint32_t cur_spin_us_;    // what the adaptive policy spins now
  uint32_t undrained_ = 0;  // wakeups since the last read (DrainLazily)
  uint32_t probe_count_ = 0;
  uint32_t probe_interval_ = kProbeEvery;
  bool probing_ = false;
  bool adaptive_ = true;
  // Counters readable from other threads (stats); updated by the waiter
  // only, so a relaxed load+store is enough and costs no locked RMW.
  struct Counters {
    std::atomic<uint64_t> waits{0}, ready_at_once{0}, spins{0}, spin_hits{0},
        sleeps{0}, wakeups_received{0}, timeouts{0};
  };
  std::unique_ptr<Counters> c_ = std::make_unique<Counters>();
};

// Waker side (held by the peer of the DMB owner).
class PeerDoorbell {
 public:
  PeerDoorbell(SharedFd fd, uint32_t* armed, uint64_t* sleep_token = nullptr);
  PeerDoorbell(UniqueFd fd, uint32_t* armed, uint64_t* sleep_token = nullptr)
      : PeerDoorbell(ShareFd(std::move(fd)), armed, sleep_token) {}
  PeerDoorbell(PeerDoorbell&&) noexcept = default;
  PeerDoorbell& operator=(PeerDoorbell&&) noexcept = default;

  // Call after publishing (release stores) into the peer's DMB. Sends a
  // wakeup only if the owner armed, and not for a sleep token this thread
  // has just sent a wakeup for; never blocks, whatever the peer did to the
  // shared words or its socket.
  RingResult Ring();
  int fd() const { return RawFd(fd_); }
  DoorbellStats stats() const;

 private:
  SharedFd fd_;
  uint32_t* armed_;
  uint64_t* sleep_token_;  // may be null
  struct Counters {
    std::atomic<uint64_t> rings{0}, wakeups_sent{0}, wakeups_skipped{0},
        wakeups_coalesced{0};
  };
  std::unique_ptr<Counters> c_ = std::make_unique<Counters>();
};

// Spin-loop hint: lets the sibling hyperthread run and saves power.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

template <typename Pred>
WaitResult Doorbell::Wait(Pred&& ready, std::chrono::nanoseconds timeout,
                          const WaitOptions& opts) {
  Bump(c_->waits);
  if (ready()) {
    Bump(c_->ready_at_once);
    return WaitResult::kReady;
  }
  const Clock::time_point start = Clock::now();
  // Clamp so that start + timeout cannot overflow (nanoseconds::max()).
  const Clock::time_point deadline =
      start + std::clamp(timeout, std::chrono::nanoseconds(0), kMaxWait);
  const uint32_t spin = SpinForThisWait();
  if (spin > 0) {
    Bump(c_->spins);
    const Clock::time_point spin_end =
        std::min(deadline, start + std::chrono::microseconds(spin));
    // Reading the clock costs ~20 ns; check it every few pauses only.
    for (;;) {
      for (int i = 0; i < 16; ++i) {
        CpuRelax();
        if (ready()) {
          Bump(c_->spin_hits);
          Learn(true, spin);
          return WaitResult::kReady;
        }
      }
      if (Clock::now() >= spin_end) break;
    }
  }
  using P = std::remove_reference_t<Pred>;
  PredRef ref{const_cast<void*>(static_cast<const void*>(&ready)), [](void* o) {
                return static_cast<bool>((*static_cast<P*>(o))());
              }};
  WaitResult r = SleepUntil(ref, deadline, opts);
  if (r == WaitResult::kReady) Learn(false, spin);
  return r;
}

template <typename Pred>
bool Doorbell::Arm(Pred&& ready, uint64_t sleep_token) {
  Bump(c_->waits);
  // The same handshake as SleepUntil: with the waker's "publish; fence;
  // load armed", either ready() sees the publish or the waker sees armed.
  StoreArmed(sleep_token);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (ready()) {
    Disarm();
    Bump(c_->ready_at_once);
    return false;
  }
  Bump(c_->sleeps);
  return true;
}

}  // namespace usmc::dev

#endif  // USMC_DEV_SHM_DOORBELL_H_
