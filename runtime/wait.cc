#include "runtime/wait.h"

#include "dev/device.h"
#include "dev/shm_doorbell.h"

namespace usmc::runtime {

static_assert(kProcessHolderSlots == dev::kHolderSlots,
              "runtime/wait.h and the control-page layout disagree");

uint64_t NewSleepToken() { return dev::NewSleepToken(); }

}  // namespace usmc::runtime
