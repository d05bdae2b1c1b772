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

namespace usmc::preload {
namespace {

// Everything SMC-R of this process; never destroyed (used at exit, and a
// fork child leaves its parent's alone).
struct SmcrState {
  std::mutex mu;
  bool probed = false;          // looked for a device
  bool no_device = false;       // none (or no module): SMC-R is off here
  std::set<uint32_t> unserved;  // local addresses no GID serves
  uint32_t ip = 0;              // the address the registry serves
  std::unique_ptr<runtime::SmcrProcess> proc;
  bool terminated = false;
  // Nothing more for a warm-up to do: one was started, or there is no
  // device (read without the lock on every connect until then).
  std::atomic<bool> warm_settled{false};
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

// The IPv4 address (host order) of `ss`: IPv4, or IPv4-mapped on a
// dual-stack socket (a server on [::], iperf3's). 0 for INADDR_ANY and
// in6addr_any; nullopt for anything SMC-R does not serve (IPv6: the kernel
// has no IPv6 SMC-Rv2).
std::optional<uint32_t> Ipv4Of(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    return ntohl(reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr.s_addr);
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  if (ss.ss_family != AF_INET6) return std::nullopt;
  if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) return 0;
  if (!IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return std::nullopt;
  uint32_t ip = 0;
  std::memcpy(&ip, in6->sin6_addr.s6_addr + 12, 4);
  return ntohl(ip);
}

bool IsLoopback(uint32_t ip) { return (ip >> 24) == 127; }

// Whether this process may open a device at all; probes /sys once. Under
// s.mu.
bool MayOpenLocked(SmcrState& s) {
  if (!s.probed) {
    s.probed = true;
    s.no_device = !HostHasRdmaDevice();
  }
  return !s.no_device;
}

// The registry serving `ip`, opening the device for it if none is open.
// Under s.mu.
runtime::LgrRegistry* RegistryForLocked(SmcrState& s, uint32_t ip) {
  if (s.terminated) return nullptr;
  if (s.proc) return s.ip == ip ? &s.proc->registry() : nullptr;
  if (!MayOpenLocked(s) || s.unserved.contains(ip)) return nullptr;
  runtime::SmcrProcessOptions o;
  // The progress thread's own calls go to the kernel, not to the wrappers.
  o.on_thread_start = [] { static thread_local Inside in; };
  if (runtime::StatusPublisher* pub = runtime::StatusPublisher::Process()) {
    o.status = pub->AsSink();
  }
  // Each connection's Conn publishes it with its link group's fields.
  o.publish_connections = false;
  Result<std::unique_ptr<runtime::SmcrProcess>> p =
      runtime::SmcrProcess::Open(ModulePath(), ip, std::move(o));
  if (!p.ok()) {
    // No module or no device at all: off for the process; else only this
    // address is not served.
    if (p.status().code() == StatusCode::kUnavailable) {
      s.no_device = true;
    } else {
      s.unserved.insert(ip);
    }
    return nullptr;
  }
  s.proc = std::move(*p);
  s.ip = ip;
  g_devices.fetch_add(1, std::memory_order_relaxed);
  return &s.proc->registry();
}

// The host's non-loopback IPv4 addresses (a wildcard listener's candidates).
std::vector<uint32_t> LocalIpv4Addresses() {
  std::vector<uint32_t> out;
  ifaddrs* all = nullptr;
  if (::getifaddrs(&all) != 0) return out;
  for (ifaddrs* i = all; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET ||
        !(i->ifa_flags & IFF_UP)) {
      continue;
    }
    const uint32_t ip = ntohl(
        reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr);
    if (!IsLoopback(ip)) out.push_back(ip);
  }
  ::freeifaddrs(all);
  return out;
}

// Opens the device in a thread of its own, once per process, so that a
// connection's handshake does not pay for it (dlopen of libibverbs, the
// device and its GID table: over a second in an emulated guest, the peer's
// whole CLC wait once). `ip` 0: the first local address a device serves.
// A connection arriving meanwhile waits for it on s.mu (RegistryForLocked).
void WarmUp(uint32_t ip) {
  if (!runtime::ProcessConfig().smcr) return;
  SmcrState& s = State();
  {
    std::lock_guard lock(s.mu);
    if (s.warm_settled.exchange(true) || s.proc || !MayOpenLocked(s)) return;
  }
  // None of the app's signals for this thread (they are for its threads).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  SmcrState* const sp = &s;
  std::thread([sp, ip] {
    Inside in;
    std::lock_guard lock(sp->mu);
    if (sp->proc || sp->terminated) return;
    if (ip != 0) {
      (void)RegistryForLocked(*sp, ip);
      return;
    }
    for (uint32_t a : LocalIpv4Addresses()) {
      if (RegistryForLocked(*sp, a) != nullptr || sp->no_device) return;
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
  const std::optional<uint32_t> ip = Ipv4Of(ss);
  if (ip && !IsLoopback(*ip)) WarmUp(*ip);
}

void SmcrWarmUpForConnect(const sockaddr* to, socklen_t len) {
  if (!runtime::ProcessConfig().smcr || len > sizeof(sockaddr_storage)) return;
  sockaddr_storage ss{};
  std::memcpy(&ss, to, len);
  const std::optional<uint32_t> dst = Ipv4Of(ss);
  if (!dst || *dst == 0 || IsLoopback(*dst)) return;
  SmcrState& s = State();
  // Once per process: one load on every later connect.
  if (s.warm_settled.load(std::memory_order_relaxed)) return;
  {
    std::lock_guard lock(s.mu);
    if (s.proc || !MayOpenLocked(s)) {  // no device: no route lookup either
      s.warm_settled.store(true, std::memory_order_relaxed);
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
  const std::optional<uint32_t> ip = Ipv4Of(local);
  if (ip && *ip != 0 && !IsLoopback(*ip)) WarmUp(*ip);
}

runtime::LgrRegistry* SmcrRegistryFor(int fd) {
  if (!runtime::ProcessConfig().smcr) return nullptr;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return nullptr;
  }
  const std::optional<uint32_t> ip = Ipv4Of(ss);
  // Loopback: SMC-D's, never RoCE.
  if (!ip || *ip == 0 || IsLoopback(*ip)) return nullptr;
  SmcrState& s = State();
  std::lock_guard lock(s.mu);
  return RegistryForLocked(s, *ip);
}

uint64_t SmcrDevicesOpened() { return g_devices.load(); }

void SmcrTerminate() {
  SmcrState* s = g_state.load(std::memory_order_acquire);
  if (s == nullptr) return;
  std::lock_guard lock(s->mu);
  if (s->terminated) return;
  s->terminated = true;  // a warm-up not yet run opens nothing now
  if (!s->proc) return;
  s->proc->Terminate(std::chrono::milliseconds(500));
}

void SmcrAfterForkChild() {
  // The parent's state stays as it was (leaked here, never touched): its
  // mutex may be held by a thread the child does not have.
  g_state.store(nullptr, std::memory_order_release);
  g_devices.store(0, std::memory_order_relaxed);
}

}  // namespace usmc::preload
