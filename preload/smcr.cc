#include "preload/smcr.h"

#include <dirent.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>

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

}  // namespace

runtime::LgrRegistry* SmcrRegistryFor(int fd) {
  if (!runtime::ProcessConfig().smcr) return nullptr;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return nullptr;
  }
  uint32_t ip = 0;
  if (ss.ss_family == AF_INET) {
    ip = ntohl(reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr.s_addr);
  } else if (const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
             ss.ss_family == AF_INET6 &&
             IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
    // An IPv4 peer on a dual-stack socket (a server on [::], iperf3's).
    std::memcpy(&ip, in6->sin6_addr.s6_addr + 12, 4);
    ip = ntohl(ip);
  } else {
    return nullptr;  // SMC-Rv2 over IPv4 GIDs (the kernel has no IPv6 v2)
  }
  if ((ip >> 24) == 127) return nullptr;  // loopback: SMC-D's, never RoCE
  SmcrState& s = State();
  std::lock_guard lock(s.mu);
  if (s.proc) {
    return s.ip == ip && !s.terminated ? &s.proc->registry() : nullptr;
  }
  if (!s.probed) {
    s.probed = true;
    s.no_device = !HostHasRdmaDevice();
  }
  if (s.no_device || s.unserved.contains(ip)) return nullptr;
  runtime::SmcrProcessOptions o;
  // The progress thread's own calls go to the kernel, not to the wrappers.
  o.on_thread_start = [] { static thread_local Inside in; };
  if (runtime::StatusPublisher* pub = runtime::StatusPublisher::Process()) {
    o.status = pub->AsSink();
  }
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

uint64_t SmcrDevicesOpened() { return g_devices.load(); }

void SmcrTerminate() {
  SmcrState* s = g_state.load(std::memory_order_acquire);
  if (s == nullptr) return;
  std::lock_guard lock(s->mu);
  if (!s->proc || s->terminated) return;
  s->terminated = true;
  s->proc->Terminate(std::chrono::milliseconds(500));
}

void SmcrAfterForkChild() {
  // The parent's state stays as it was (leaked here, never touched): its
  // mutex may be held by a thread the child does not have.
  g_state.store(nullptr, std::memory_order_release);
  g_devices.store(0, std::memory_order_relaxed);
}

}  // namespace usmc::preload
