#include "runtime/wait.h"

#include "dev/shm_dmb.h"
#include "dev/shm_doorbell.h"

namespace usmc::runtime {

static_assert(kProcessHolderSlots == dev::kCtrlHolderSlots,
              "runtime/wait.h and the control-page layout disagree");

uint64_t NewSleepToken() { return dev::NewSleepToken(); }

uint32_t SpinBudgetUs() { return dev::SpinBudgetUsFromEnv(); }

}  // namespace usmc::runtime
