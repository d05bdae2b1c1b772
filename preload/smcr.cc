#include "preload/smcr.h"

#include <dirent.h>
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "preload/real.h"
#include "runtime/config.h"
#include "runtime/publish.h"
#include "runtime/smcr_process.h"
#include "wire/llc.h"

namespace usmc::preload {
namespace {

// One family's device: IPv4 addresses (as ::ffff:a.b.c.d) or IPv6 ones.
// A dual-stack server (iperf3's [::]) may serve both, each on its own
// verbs context and registry; within a family the first address opened is
// the only one served, as before IPv6 existed.
struct SmcrSlot {
  std::set<wire::Gid> unserved;  // local addresses no GID serves
  wire::Gid addr{};              // the address the registry serves
  std::unique_ptr<runtime::SmcrProcess> proc;
  // Nothing more for a warm-up to do: one was started, or there is no
  // device (read without the lock on every connect until then).
  std::atomic<bool> warm_settled{false};
};

// Everything SMC-R of this process; never destroyed (used at exit, and a
// fork child leaves its parent's alone).
struct SmcrState {
  std::mutex mu;
  bool probed = false;     // looked for a device
  bool no_device = false;  // none (or no module): SMC-R is off here
  SmcrSlot slots[2];       // [0] IPv4, [1] IPv6 (SlotOf)
  bool terminated = false;
};

std::atomic<SmcrState*> g_state{nullptr};
std::atomic<uint64_t> g_devices{0};

SmcrState& State() {
  SmcrState* s = g_state.load(std::memory_order_acquire);
  if (s != nullptr) return *s;
  auto* fresh = new SmcrState();
  if (!g_state.compare_exchange_strong(s, fresh)) {
    delete fresh;
    return *s;
  }
  return *fresh;
}

// An RDMA device exists (rxe, RoCE hardware): one directory read, so a host
// without one loads no library and opens nothing.
bool HostHasRdmaDevice() {
  DIR* d = ::opendir("/sys/class/infiniband");
  if (d == nullptr) return false;
  bool any = false;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') {
      any = true;
      break;
    }
  }
  ::closedir(d);
  return any;
}

// libusmc-verbs.so lies next to this library (build tree and install).
std::string ModulePath() {
  Dl_info info{};
  std::string path = "libusmc-verbs.so";
  if (::dladdr(reinterpret_cast<void*>(&SmcrRegistryFor), &info) != 0 &&
      info.dli_fname != nullptr) {
    std::string self = info.dli_fname;
    const size_t slash = self.rfind('/');
    if (slash != std::string::npos) path = self.substr(0, slash + 1) + path;
  }
  return path;
}

// IPv4 addresses (and the wildcard, which warm-ups resolve) in slot 0.
SmcrSlot& SlotOf(SmcrState& s, const wire::Gid& a) {
  return s.slots[a == wire::Gid{} || runtime::SmcrAddressIsIpv4(a) ? 0 : 1];
}

// Whether this process may open a device at all; probes /sys once. Under
// s.mu.
bool MayOpenLocked(SmcrState& s) {
  if (!s.probed) {
    s.probed = true;
    s.no_device = !HostHasRdmaDevice();
  }
  return !s.no_device;
}

// The registry serving local address `a` (SmcrLocalAddress, not the
// wildcard), opening the device for it if its family has none open.
// Under s.mu.
runtime::LgrRegistry* RegistryForLocked(SmcrState& s, const wire::Gid& a) {
  if (s.terminated) return nullptr;
  SmcrSlot& slot = SlotOf(s, a);
  if (slot.proc) return slot.addr == a ? &slot.proc->registry() : nullptr;
  if (!MayOpenLocked(s) || slot.unserved.contains(a)) return nullptr;
  runtime::SmcrProcessOptions o;
  // The progress thread's own calls go to the kernel, not to the wrappers.
  o.on_thread_start = [] { static thread_local Inside in; };
  if (runtime::StatusPublisher* pub = runtime::StatusPublisher::Process()) {
    o.status = pub->AsSink();
  }
  // Each connection's Conn publishes it with its link group's fields.
  o.publish_connections = false;
  Result<std::unique_ptr<runtime::SmcrProcess>> p =
      runtime::SmcrProcess::Open(ModulePath(), a, std::move(o));
  if (!p.ok()) {
    // No module or no device at all: off for the process; else only this
    // address is not served.
    if (p.status().code() == StatusCode::kUnavailable) {
      s.no_device = true;
    } else {
      slot.unserved.insert(a);
    }
    return nullptr;
  }
  slot.proc = std::move(*p);
  slot.addr = a;
  g_devices.fetch_add(1, std::memory_order_relaxed);
  return &slot.proc->registry();
}

// The host's addresses SMC-R could serve (a wildcard listener's
// candidates), as SmcrLocalAddress makes them: IPv4 ones if `v4`, then
// IPv6 ones if `v6`, in getifaddrs order.
std::vector<wire::Gid> LocalAddresses(bool v4, bool v6) {
  std::vector<wire::Gid> out;
  ifaddrs* all = nullptr;
  if (::getifaddrs(&all) != 0) return out;
  for (const int family : {AF_INET, AF_INET6}) {
    if ((family == AF_INET && !v4) || (family == AF_INET6 && !v6)) continue;
    for (ifaddrs* i = all; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != family ||
          !(i->ifa_flags & IFF_UP)) {
        continue;
      }
      sockaddr_storage ss{};
      std::memcpy(
          &ss, i->ifa_addr,
          family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
      const std::optional<wire::Gid> a = runtime::SmcrLocalAddress(ss);
      if (a && *a != wire::Gid{}) out.push_back(*a);
    }
  }
  ::freeifaddrs(all);
  return out;
}

// Opens the device in a thread of its own, once per process and family,
// so that a connection's handshake does not pay for it (dlopen of
// libibverbs, the device and its GID table: over a second in an emulated
// guest, the peer's whole CLC wait once). `a` all zero: a wildcard
// listener; each family in `v4`/`v6` opens for the first local address of
// it a device serves. A connection arriving meanwhile waits for it on s.mu
// (RegistryForLocked).
void WarmUp(const wire::Gid& a, bool v4 = false, bool v6 = false) {
  if (!runtime::ProcessConfig().smcr) return;
  SmcrState& s = State();
  const bool wild = a == wire::Gid{};
  if (!wild) v4 = runtime::SmcrAddressIsIpv4(a), v6 = !v4;
  {
    std::lock_guard lock(s.mu);
    if (!MayOpenLocked(s)) return;
    // Only the families no warm-up was started for, with nothing open.
    if (v4 && (s.slots[0].warm_settled.exchange(true) || s.slots[0].proc)) {
      v4 = false;
    }
    if (v6 && (s.slots[1].warm_settled.exchange(true) || s.slots[1].proc)) {
      v6 = false;
    }
    if (!v4 && !v6) return;
  }
  // None of the app's signals for this thread (they are for its threads).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  SmcrState* const sp = &s;
  std::thread([sp, a, wild, v4, v6] {
    Inside in;
    std::lock_guard lock(sp->mu);
    if (sp->terminated) return;
    if (!wild) {
      if (!SlotOf(*sp, a).proc) (void)RegistryForLocked(*sp, a);
      return;
    }
    for (const bool family_v4 : {true, false}) {
      if (!(family_v4 ? v4 : v6)) continue;
      for (const wire::Gid& c : LocalAddresses(family_v4, !family_v4)) {
        if (SlotOf(*sp, c).proc || RegistryForLocked(*sp, c) != nullptr ||
            sp->no_device) {
          break;
        }
      }
    }
  }).detach();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

}  // namespace

void SmcrWarmUpForListener(int fd) {
  if (!runtime::ProcessConfig().smcr) return;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
  const std::optional<wire::Gid> a = runtime::SmcrLocalAddress(ss);
  if (!a) return;
  if (*a != wire::Gid{}) {
    WarmUp(*a);
    return;
  }
  // A wildcard: 0.0.0.0 takes IPv4 clients, :: IPv6 ones and, unless
  // IPV6_V6ONLY, IPv4 ones too.
  int v6only = 0;
  socklen_t olen = sizeof v6only;
  const bool is6 = ss.ss_family == AF_INET6;
  if (is6 && ::getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &olen) != 0) {
    v6only = 0;
  }
  WarmUp(*a, !is6 || v6only == 0, is6);
}

void SmcrWarmUpForConnect(const sockaddr* to, socklen_t len) {
  if (!runtime::ProcessConfig().smcr || len > sizeof(sockaddr_storage)) return;
  sockaddr_storage ss{};
  std::memcpy(&ss, to, len);
  const std::optional<wire::Gid> dst = runtime::SmcrLocalAddress(ss);
  if (!dst || *dst == wire::Gid{}) return;
  SmcrState& s = State();
  SmcrSlot& slot = SlotOf(s, *dst);
  // Once per process and family: one load on every later connect.
  if (slot.warm_settled.load(std::memory_order_relaxed)) return;
  {
    std::lock_guard lock(s.mu);
    if (slot.proc || !MayOpenLocked(s)) {  // no device: no route lookup either
      slot.warm_settled.store(true, std::memory_order_relaxed);
      return;
    }
  }
  // The local address the route to `to` takes: a UDP connect is a route
  // lookup and sends nothing.
  const int u = real().socket(to->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (u < 0) return;
  sockaddr_storage local{};
  socklen_t llen = sizeof local;
  const bool ok =
      real().connect(u, to, len) == 0 &&
      ::getsockname(u, reinterpret_cast<sockaddr*>(&local), &llen) == 0;
  real().close(u);
  if (!ok) return;
  const std::optional<wire::Gid> a = runtime::SmcrLocalAddress(local);
  if (a && *a != wire::Gid{}) WarmUp(*a);
}

runtime::LgrRegistry* SmcrRegistryFor(int fd) {
  if (!runtime::ProcessConfig().smcr) return nullptr;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return nullptr;
  }
  const std::optional<wire::Gid> a = runtime::SmcrLocalAddress(ss);
  // Loopback: SMC-D's, never RoCE.
  if (!a || *a == wire::Gid{}) return nullptr;
  SmcrState& s = State();
  std::lock_guard lock(s.mu);
  return RegistryForLocked(s, *a);
}

uint64_t SmcrDevicesOpened() { return g_devices.load(); }

void SmcrTerminate() {
  SmcrState* s = g_state.load(std::memory_order_acquire);
  if (s == nullptr) return;
  std::lock_guard lock(s->mu);
  if (s->terminated) return;
  s->terminated = true;  // a warm-up not yet run opens nothing now
  // A bounded wait per family's device (a process rarely has two).
  for (SmcrSlot& slot : s->slots) {
    if (slot.proc) slot.proc->Terminate(std::chrono::milliseconds(500));
  }
}

void SmcrAfterForkChild() {
  // The parent's state stays as it was (leaked here, never touched): its
  // mutex may be held by a thread the child does not have.
  g_state.store(nullptr, std::memory_order_release);
  g_devices.store(0, std::memory_order_relaxed);
}

}  // namespace usmc::preload
