// preload/epoll_scan.cc: scan mode (see preload/epoll.h): epoll_wait reads
// SMC-D readiness from shared memory and keeps doorbells armed only while
// the set sleeps.
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string_view>

#include "preload/epoll_internal.h"
#include "preload/real.h"
#include "runtime/config.h"
#include "runtime/wait.h"

namespace usmc::preload::epoll_detail {

namespace {

// Sets up to this size run in scan mode: each epoll_wait looks at every
// SMC-D socket in shared memory (tens of nanoseconds each) instead of
// keeping doorbells armed, which would cost the peer a system call per
// message while this process is busy anyway. Larger sets keep the doorbells
// armed between calls: a call then costs O(sockets that moved).
constexpr size_t kScanMaxSockets = 64;

// Scan mode: while the scan finds SMC-D sockets ready, the kernel's own
// list (the app's other fds) is read on every kKernelEvery-th call only;
// it still cannot wait longer than that.
constexpr uint32_t kKernelEvery = 4;

bool ScanEnabled() {
  static const bool on = runtime::ProcessConfig().epoll_scan;
  return on;
}
[[maybe_unused]] const bool g_scan_read = ScanEnabled();  // at load (nginx)

}  // namespace

bool ScanMode(const EpollSet& set) {
  return !set.nested && set.regs.size() <= kScanMaxSockets && ScanEnabled();
}

namespace {

// One registration's look for ScanReady: reports it if ready.
bool ScanOne(EpollSet& set, EpollReg* reg, epoll_event* events, int* out,
             Merged& merged) {
  if (!reg->active || reg->oneshot_fired) return false;
  if (Established(*reg) == nullptr) return false;
  const uint32_t bits = ReadyBits(*reg);
  if (bits == 0 || EdgeReported(*reg)) return false;
  Report(set, reg, nullptr, bits, events, out, merged);
  return true;
}

// Scan mode: appends the SMC-D sockets that are ready now, read from
// shared memory (no mirror, no system call). Starts where the last scan
// left off, so that a small maxevents cannot starve the set's tail.
void ScanReady(EpollSet& set, epoll_event* events, int maxevents, int* out,
               Merged& merged) {
  const size_t n = set.regs.size();
  const size_t start = set.scan_next;
  for (size_t k = 0; k < n && *out < maxevents; ++k) {
    const size_t i = (start + k) % n;
    if (ScanOne(set, set.regs[i].get(), events, out, merged)) {
      set.scan_next = i + 1;
    }
  }
}

// Scan mode, a batch about to go out: a socket looked at before another's
// bytes were seen may have received bytes sent before those. Looks again at
// the others, so that the batch holds every publish older than the newest
// one in it, as the kernel's ready list does for TCP (OrderByArrival then
// sorts it; Redis relies on this order across clients).
void CompleteBatch(EpollSet& set, epoll_event* events, int maxevents, int* out,
                   Merged& merged) {
  if (merged.empty()) return;
  const size_t n = set.regs.size();
  for (size_t k = 0; k < n && *out < maxevents; ++k) {
    EpollReg* reg = set.regs[k].get();
    const bool reported =
        std::any_of(merged.begin(), merged.end(),
                    [&](const auto& m) { return m.first == reg; });
    if (!reported) ScanOne(set, reg, events, out, merged);
  }
}

// Scan mode, after the set's last sleeper woke: disarms its doorbells, so
// that peers publish without ringing while this process is busy. Sockets
// another set or thread may sleep on keep theirs; if the sleep used a
// token, they are re-armed without it before the next one.
void DisarmAll(EpollSet& set) {
  RevokeSleepTokens(set);
  for (auto& r : set.regs) {
    runtime::SmcSocket* s = Established(*r);
    if (s == nullptr) continue;
    bool shared;
    {
      std::lock_guard lock(r->conn->mu);
      shared = r->conn->regs.size() > 1;
    }
    if (!shared && s->DisarmIdle()) MarkDirty(set, r.get());
  }
}

}  // namespace

// Before sleeping, look at the SMC-D sockets for a few microseconds: a
// reply that comes within the spin costs the peer no wakeup and us no
// sleep. Adaptive per epoll set, as the doorbell's spin: a spin that finds
// nothing halves the next one; one that hits restores the budget.
bool SpinForReady(EpollSet& set, size_t max_sockets) {
  static const uint32_t budget_us = runtime::ProcessConfig().spin_us;
  if (budget_us == 0) return false;
  uint32_t spin;
  std::vector<std::pair<std::shared_ptr<Conn>, short>> watch;
  {
    std::lock_guard lock(set.mu);
    if (set.spin_us < 0) set.spin_us = static_cast<int>(budget_us);
    if (set.spin_us == 0 && ++set.spin_probe % 16 != 0) return false;
    spin = set.spin_us > 0 ? static_cast<uint32_t>(set.spin_us) : budget_us;
    for (auto& r : set.regs) {
      if (r->active && !r->oneshot_fired && r->conn->smc() != nullptr &&
          !r->conn->smc()->handshaking()) {
        watch.emplace_back(r->conn, PollBitsOf(r->events));
      }
    }
  }
  // Many sockets: the scan itself costs what the spin would save.
  if (watch.empty() || watch.size() > max_sockets) return false;
  const auto end =
      std::chrono::steady_clock::now() + std::chrono::microseconds(spin);
  bool hit = false;
  do {
    for (auto& [c, interest] : watch) {
      runtime::SmcSocket* s = c->smc();
      if (s != nullptr && s->Poll(interest) != 0) hit = true;
    }
  } while (!hit && std::chrono::steady_clock::now() < end);
  std::lock_guard lock(set.mu);
  set.spin_us = hit ? static_cast<int>(budget_us) : set.spin_us / 2;
  return hit;
}

// Scan mode. Busy: a look at the SMC-D sockets in shared memory (and at
// the kernel's list for the app's other fds) returns what is ready with no
// system call for SMC-D. Idle: a short spin, then arm every doorbell, sleep
// in the kernel, and disarm them all once the last sleeper of the set is
// up, so the peers stop ringing while we work.
int ScanWait(EpollSet& set, epoll_event* events, int maxevents, int timeout_ms,
             const sigset_t* sigmask) {
  const Clock::time_point deadline =
      Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
  Merged merged;
  bool spun = false;
  for (;;) {
    merged.clear();
    int out = 0;
    bool look;
    {
      std::lock_guard lock(set.mu);
      Maintain(set, /*arm=*/false, nullptr);
      ScanReady(set, events, maxevents, &out, merged);
      // A sigmask must be applied by the kernel (pending signals).
      look = out == 0 || sigmask != nullptr ||
             ++set.kernel_looks % kKernelEvery == 0;
    }
    if (look && out < maxevents) {
      int n = real().epoll_pwait(set.epfd, events + out, maxevents - out, 0,
                                 sigmask);
      if (n < 0 && out == 0) return -1;
      if (n > 0) {
        std::lock_guard lock(set.mu);
        out = Translate(set, events, out, n, merged);
      }
    }
    if (out > 0) {
      {
        std::lock_guard lock(set.mu);
        CompleteBatch(set, events, maxevents, &out, merged);
      }
      if (merged.size() > 1) OrderByArrival(events, merged);
      return out;
    }
    if (timeout_ms == 0) return 0;
    if (!spun) {
      spun = true;
      if (SpinForReady(set, kScanMaxSockets)) continue;
    }
    int wait_ms = MsLeft(timeout_ms, deadline);
    {
      std::lock_guard lock(set.mu);
      // Alone, this thread looks at every socket once up: one ring may
      // wake it for all (sleep token). With another thread asleep in the
      // set, the kernel must see each ring, as it wakes one sleeper per
      // event and this one might report only some (maxevents).
      if (++set.sleepers == 1 && set.kernel_sleepers == 0) {
        set.sleep_token = runtime::NewSleepToken();
      } else {
        RevokeSleepTokens(set);
      }
      Maintain(set, /*arm=*/true, &wait_ms);
      set.sleep_token = 0;
    }
    int n = real().epoll_pwait(set.epfd, events, maxevents, wait_ms, sigmask);
    const int saved = errno;
    {
      std::lock_guard lock(set.mu);
      if (--set.sleepers == 0) DisarmAll(set);
      merged.clear();
      out = n > 0 ? Translate(set, events, 0, n, merged) : 0;
      if (out > 0) CompleteBatch(set, events, maxevents, &out, merged);
    }
    if (n < 0) {
      errno = saved;
      return -1;
    }
    if (out > 0) {
      if (merged.size() > 1) OrderByArrival(events, merged);
      return out;
    }
    if (timeout_ms > 0 && Clock::now() >= deadline) return 0;
    spun = true;  // woken for nothing of the app's: look, then sleep again
  }
}

}  // namespace usmc::preload::epoll_detail
