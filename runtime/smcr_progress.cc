#include "runtime/smcr_progress.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace usmc::runtime {

SmcrProgress::SmcrProgress(LgrRegistry& registry,
                           const SmcrProgressOptions& options)
    : reg_(registry),
      opts_(options),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  thread_ = std::thread([this] { Run(); });
}

SmcrProgress::~SmcrProgress() { Stop(); }

void SmcrProgress::Kick() {
  const uint64_t one = 1;
  if (wake_) (void)!::write(wake_.get(), &one, sizeof(one));
}

void SmcrProgress::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true, std::memory_order_release);
  Kick();
  thread_.join();
}

void SmcrProgress::Run() {
  if (opts_.on_start) opts_.on_start();
  while (!stop_.load(std::memory_order_acquire)) {
    std::chrono::milliseconds wait = opts_.max_sleep;
    {
      std::unique_lock<std::mutex> lock;
      if (opts_.world_lock != nullptr)
        lock = std::unique_lock<std::mutex>(*opts_.world_lock);
      for (int i = 0; i < 1000 && reg_.Progress(); ++i) {
        busy_.fetch_add(1, std::memory_order_acq_rel);
      }
      // Sleep until a completion event (Progress re-armed the CQs), the
      // next LLC deadline, or a kick.
      if (std::optional<engine::TimePoint> d = reg_.NextDeadline()) {
        const engine::TimePoint now = reg_.now();
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(
            *d > now ? *d - now : engine::Duration(0));
        wait = std::min(wait, left);
      }
    }
    rounds_.fetch_add(1, std::memory_order_acq_rel);
    pollfd fds[2] = {{reg_.fd(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    const int n = ::poll(fds, 2, int(wait.count()));
    if (n > 0 && (fds[1].revents & POLLIN)) {
      uint64_t v = 0;
      (void)!::read(wake_.get(), &v, sizeof(v));
    }
  }
}

}  // namespace usmc::runtime
