#include "preload/real.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace usmc::preload {
namespace {

// initial-exec: the library is preloaded, so its TLS is in the static block
// and the guard costs one %fs-relative load.
__attribute__((tls_model("initial-exec"))) thread_local bool t_inside = false;
std::atomic<bool> g_disabled{false};

template <typename F>
void Resolve(F& slot, const char* name) {
  slot = reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

RealFunctions Load() {
  RealFunctions r{};
#define USMC_RESOLVE(name) Resolve(r.name, #name)
  USMC_RESOLVE(connect);
  USMC_RESOLVE(listen);
  USMC_RESOLVE(accept);
  USMC_RESOLVE(accept4);
  USMC_RESOLVE(close);
  USMC_RESOLVE(shutdown);
  USMC_RESOLVE(read);
  USMC_RESOLVE(readv);
  USMC_RESOLVE(write);
  USMC_RESOLVE(writev);
  USMC_RESOLVE(recv);
  USMC_RESOLVE(recvfrom);
  USMC_RESOLVE(recvmsg);
  USMC_RESOLVE(recvmmsg);
  USMC_RESOLVE(send);
  USMC_RESOLVE(sendto);
  USMC_RESOLVE(sendmsg);
  USMC_RESOLVE(sendmmsg);
  USMC_RESOLVE(sendfile);
  USMC_RESOLVE(splice);
  USMC_RESOLVE(getsockopt);
  USMC_RESOLVE(setsockopt);
  USMC_RESOLVE(fcntl);
  USMC_RESOLVE(ioctl);
  USMC_RESOLVE(dup);
  USMC_RESOLVE(dup2);
  USMC_RESOLVE(dup3);
  USMC_RESOLVE(poll);
  USMC_RESOLVE(ppoll);
  USMC_RESOLVE(select);
  USMC_RESOLVE(pselect);
  USMC_RESOLVE(epoll_create);
  USMC_RESOLVE(epoll_create1);
  USMC_RESOLVE(epoll_ctl);
  USMC_RESOLVE(epoll_wait);
  USMC_RESOLVE(epoll_pwait);
  USMC_RESOLVE(epoll_pwait2);
  USMC_RESOLVE(fork);
  USMC_RESOLVE(execve);
  USMC_RESOLVE(execveat);
  USMC_RESOLVE(fexecve);
  USMC_RESOLVE(close_range);
  USMC_RESOLVE(socket);
#undef USMC_RESOLVE
  if (!r.connect || !r.recv || !r.send || !r.close || !r.poll ||
      !r.epoll_wait || !r.fork || !r.execve) {
    std::fputs("usmc: the C library lacks functions usmc wraps; off\n", stderr);
    g_disabled.store(true, std::memory_order_relaxed);
  }
  return r;
}

}  // namespace

const RealFunctions& real() {
  // A function-local static: thread-safe, and dlsym does not call back
  // into the wrappers.
  static const RealFunctions r = Load();
  return r;
}

bool Bypass() { return t_inside || g_disabled.load(std::memory_order_relaxed); }

Inside::Inside() : was_(t_inside) { t_inside = true; }
Inside::~Inside() { t_inside = was_; }

void DisableInterposer() { g_disabled.store(true, std::memory_order_relaxed); }

}  // namespace usmc::preload
