// runtime/smcr_progress.h: the progress thread of one link-group registry
// (SMCR.md D5, §5.3). It sleeps in poll(2) on the registry's completion
// channel and a stop eventfd, with the registry's next LLC deadline as the
// timeout, and calls LgrRegistry::Progress() on every wake, so the peer's
// LLC requests (TEST_LINK, CONFIRM_RKEY, DELETE_RKEY, DELETE_LINK) are
// answered within the kernel's 2 s while no application thread calls in.
//
//   SmcrProgress progress(registry, {});
//   ...                                   // connections come and go
//   progress.Stop();                      // or the destructor
//
// Tests over SimRdma (single-threaded) pass `world_lock`: the thread holds
// it around each Progress() and the test around everything it does to the
// fabric, and `max_sleep` bounds a wait measured in simulated time.
#ifndef USMC_RUNTIME_SMCR_PROGRESS_H_
#define USMC_RUNTIME_SMCR_PROGRESS_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "dev/unique_fd.h"
#include "runtime/lgr_registry.h"

namespace usmc::runtime {

struct SmcrProgressOptions {
  // Upper bound of one sleep (also when no timer is armed).
  std::chrono::milliseconds max_sleep{1000};
  std::mutex* world_lock = nullptr;  // tests: see above
  // Runs first on the thread (the interposer marks it as its own).
  std::function<void()> on_start;
};

class SmcrProgress {
 public:
  SmcrProgress(LgrRegistry& registry, const SmcrProgressOptions& options);
  ~SmcrProgress();
  SmcrProgress(const SmcrProgress&) = delete;
  SmcrProgress& operator=(const SmcrProgress&) = delete;

  // Wakes the thread now (a new timer, a command).
  void Kick();
  // Ends the thread; idempotent.
  void Stop();
  // Progress() calls so far (tests wait on it).
  uint64_t rounds() const { return rounds_.load(std::memory_order_acquire); }
  // Progress() calls that found something to do.
  uint64_t busy() const { return busy_.load(std::memory_order_acquire); }

 private:
  void Run();

  LgrRegistry& reg_;
  const SmcrProgressOptions opts_;
  dev::UniqueFd wake_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> rounds_{0};
  std::atomic<uint64_t> busy_{0};
  std::thread thread_;
};

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_SMCR_PROGRESS_H_
