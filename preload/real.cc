#include "preload/real.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace usmc::preload {
namespace real_detail {
RealFunctions g_real{};
std::atomic<bool> g_real_ready{false};
std::atomic<bool> g_disabled{false};
__attribute__((tls_model("initial-exec"))) __thread bool t_inside = false;
}  // namespace real_detail

using real_detail::g_disabled;
using real_detail::t_inside;

namespace {

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

namespace real_detail {
const RealFunctions& LoadReal() {
  // Once, thread-safe (a function-local static); dlsym does not call back
  // into the wrappers. g_real is written before g_real_ready says so.
  static const bool loaded = [] {
    g_real = Load();
    g_real_ready.store(true, std::memory_order_release);
    return true;
  }();
  (void)loaded;
  return g_real;
}
}  // namespace real_detail

Inside::Inside() : was_(t_inside) { t_inside = true; }
Inside::~Inside() { t_inside = was_; }

void DisableInterposer() { g_disabled.store(true, std::memory_order_relaxed); }

}  // namespace usmc::preload
