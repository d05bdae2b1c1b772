// base/sandbox.h: whether the process confined itself with a seccomp
// filter (sshd's pre-auth child: read, write, poll and a few more; anything
// else kills it). usmc then makes no call it can do without: no unlink of
// its status file, no exit report, at exit.
#ifndef USMC_BASE_SANDBOX_H_
#define USMC_BASE_SANDBOX_H_

#include <atomic>

namespace usmc::base {

inline std::atomic<bool>& SyscallFilterFlag() {
  static std::atomic<bool> on{false};
  return on;
}
// The app is installing a seccomp filter (preload's prctl wrapper).
inline void NoteSyscallFilter() {
  SyscallFilterFlag().store(true, std::memory_order_relaxed);
}
inline bool SyscallFilterActive() {
  return SyscallFilterFlag().load(std::memory_order_relaxed);
}

}  // namespace usmc::base

#endif  // USMC_BASE_SANDBOX_H_
