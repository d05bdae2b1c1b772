// runtime/wait.h: the few device facts an event loop above the runtime
// (preload's epoll, the fork-holder table) needs, without including dev/.
// Thin forwarders to dev/; see there for the why of each. (The spin budget
// is runtime::ProcessConfig().spin_us, runtime/config.h.)
#ifndef USMC_RUNTIME_WAIT_H_
#define USMC_RUNTIME_WAIT_H_

#include <cstddef>
#include <cstdint>

namespace usmc::runtime {

// A fresh sleep token for SmcSocket::PrepareWait: never 0, unique within
// the process (dev/shm_doorbell.h, "Sleep tokens").
uint64_t NewSleepToken();

// Slots in the table SmcSocket::ProcessHolders points to: one u32 pid each,
// 0 = free (dev::kHolderSlots; wait.cc asserts they agree).
inline constexpr size_t kProcessHolderSlots = 32;

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_WAIT_H_
