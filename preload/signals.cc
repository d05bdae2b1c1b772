#include "preload/signals.h"

#include <dlfcn.h>
#include <signal.h>

#include <atomic>
#include <cstring>

#include "preload/real.h"

namespace usmc::preload {
namespace {

using SigactionFn = int (*)(int, const struct sigaction*, struct sigaction*);

SigactionFn RealSigaction() {
  static SigactionFn fn =
      reinterpret_cast<SigactionFn>(::dlsym(RTLD_NEXT, "sigaction"));
  return fn;
}

// The app's view of each signal's action (what sigaction returns to it).
struct AppAction {
  std::atomic<void*> handler{nullptr};  // sa_handler or sa_sigaction
  std::atomic<int> flags{0};
};
AppAction g_actions[NSIG];

__attribute__((tls_model("initial-exec"))) thread_local int t_last_signal = 0;

void Trampoline(int sig, siginfo_t* info, void* uctx) {
  t_last_signal = sig;
  if (sig <= 0 || sig >= NSIG) return;
  const AppAction& a = g_actions[sig];
  void* h = a.handler.load(std::memory_order_acquire);
  if (a.flags.load(std::memory_order_relaxed) & SA_SIGINFO) {
    reinterpret_cast<void (*)(int, siginfo_t*, void*)>(h)(sig, info, uctx);
  } else {
    reinterpret_cast<void (*)(int)>(h)(sig);
  }
}

bool IsRealHandler(void* h) {
  return h != reinterpret_cast<void*>(SIG_DFL) &&
         h != reinterpret_cast<void*>(SIG_IGN);
}

}  // namespace

void ClearLastSignal() { t_last_signal = 0; }

bool ShouldRestart() {
  const int sig = t_last_signal;
  return sig > 0 && sig < NSIG &&
         (g_actions[sig].flags.load(std::memory_order_relaxed) & SA_RESTART);
}

}  // namespace usmc::preload

using usmc::preload::g_actions;
using usmc::preload::IsRealHandler;
using usmc::preload::RealSigaction;
using usmc::preload::Trampoline;

extern "C" {

int sigaction(int sig, const struct sigaction* act, struct sigaction* old) {
  if (RealSigaction() == nullptr) return -1;
  if (sig <= 0 || sig >= NSIG || sig == SIGKILL || sig == SIGSTOP) {
    return RealSigaction()(sig, act, old);
  }
  struct sigaction prev {};
  struct sigaction mine {};
  const struct sigaction* use = act;
  void* handler = nullptr;
  if (act != nullptr) {
    handler = (act->sa_flags & SA_SIGINFO)
                  ? reinterpret_cast<void*>(act->sa_sigaction)
                  : reinterpret_cast<void*>(act->sa_handler);
    if (IsRealHandler(handler)) {
      mine = *act;
      mine.sa_flags |= SA_SIGINFO;
      mine.sa_sigaction = Trampoline;
      use = &mine;
    }
  }
  // Publish the app's handler before the trampoline can run for it.
  const void* prev_app = g_actions[sig].handler.load();
  const int prev_flags = g_actions[sig].flags.load();
  if (act != nullptr && IsRealHandler(handler)) {
    g_actions[sig].handler.store(handler, std::memory_order_release);
    g_actions[sig].flags.store(act->sa_flags, std::memory_order_relaxed);
  }
  int r = RealSigaction()(sig, use, &prev);
  if (r != 0) {
    g_actions[sig].handler.store(const_cast<void*>(prev_app));
    g_actions[sig].flags.store(prev_flags);
    return r;
  }
  if (act != nullptr && !IsRealHandler(handler)) {
    g_actions[sig].flags.store(act->sa_flags, std::memory_order_relaxed);
  }
  if (old != nullptr) {
    *old = prev;
    if (prev.sa_sigaction == Trampoline && (prev.sa_flags & SA_SIGINFO)) {
      // Show the app its own handler and flags, not ours.
      old->sa_flags = prev_flags;
      if (prev_flags & SA_SIGINFO) {
        old->sa_sigaction = reinterpret_cast<void (*)(int, siginfo_t*, void*)>(
            const_cast<void*>(prev_app));
      } else {
        old->sa_handler =
            reinterpret_cast<void (*)(int)>(const_cast<void*>(prev_app));
      }
    }
  }
  return 0;
}

// signal(3) as glibc defines it: BSD semantics, SA_RESTART.
sighandler_t signal(int sig, sighandler_t handler) {
  struct sigaction act {
  }, old{};
  act.sa_handler = handler;
  sigemptyset(&act.sa_mask);
  if (sig > 0 && sig < NSIG) sigaddset(&act.sa_mask, sig);
  act.sa_flags = SA_RESTART;
  if (sigaction(sig, &act, &old) != 0) return SIG_ERR;
  return old.sa_handler;
}

}  // extern "C"
