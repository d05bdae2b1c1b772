// preload/signals.h: SA_RESTART for calls that block in usmc.
//
// The kernel restarts a blocking recv/send that a signal interrupted when
// the handler was installed with SA_RESTART. A recv that waits in usmc
// (SMC-D: on the doorbell) sees only EINTR and cannot tell which signal
// came. So the sigaction/signal wrappers put a small trampoline in front of
// the app's handlers that notes, per thread, the last signal delivered;
// after an EINTR the data path restarts the call if that signal's handler
// asked for SA_RESTART, and returns EINTR otherwise, as the kernel does.
#ifndef USMC_PRELOAD_SIGNALS_H_
#define USMC_PRELOAD_SIGNALS_H_

namespace usmc::preload {

// Call before a blocking call into usmc.
void ClearLastSignal();
// After it failed with EINTR: true if the kernel would have restarted it.
bool ShouldRestart();

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_SIGNALS_H_
