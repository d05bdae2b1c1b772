// runtime/wait.h: the few device facts an event loop above the runtime
// (preload's epoll, the fork-holder table) needs, without including dev/.
// Thin forwarders to dev/shm_doorbell.h and dev/shm_dmb.h; see there for
// the why of each.
#ifndef USMC_RUNTIME_WAIT_H_
#define USMC_RUNTIME_WAIT_H_

#include <cstddef>
#include <cstdint>

namespace usmc::runtime {

// A fresh sleep token for SmcSocket::PrepareWait: never 0, unique within
// the process (dev/shm_doorbell.h, "Sleep tokens").
uint64_t NewSleepToken();

// The doorbell spin budget in microseconds (USMC_SPIN_US, read once per
// process; dev::SpinBudgetUsFromEnv).
uint32_t SpinBudgetUs();

// Slots in the table SmcSocket::ProcessHolders points to: one u32 pid each,
// 0 = free (dev::kCtrlHolderSlots; wait.cc asserts they agree).
inline constexpr size_t kProcessHolderSlots = 32;

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_WAIT_H_
