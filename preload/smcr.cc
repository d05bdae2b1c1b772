#include "preload/smcr.h"

#include <dirent.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "dev/rdma.h"
#include "engine/params.h"
#include "preload/real.h"
#include "runtime/config.h"
#include "runtime/lgr_registry.h"
#include "runtime/publish.h"
#include "runtime/smcr_progress.h"

extern "C" {
using VerbsOpenFn = usmc::dev::rdma::Context* (*)(uint32_t, int*);
}

namespace usmc::preload {
namespace {

// Everything SMC-R of this process; never destroyed (used at exit, and a
// fork child leaves its parent's alone).
struct SmcrState {
  std::mutex mu;
  bool probed = false;     // looked for a device (and the module)
  bool no_device = false;  // none: SMC-R is off for this process
  VerbsOpenFn open = nullptr;
  std::set<uint32_t> unserved;  // local addresses no GID serves
  uint32_t ip = 0;              // the address the registry serves
  std::unique_ptr<dev::rdma::Context> ctx;
  std::unique_ptr<engine::SeededEntropy> entropy;
  std::unique_ptr<runtime::LgrRegistry> reg;
  std::unique_ptr<runtime::SmcrProgress> progress;
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
VerbsOpenFn LoadModule() {
  Dl_info info{};
  std::string path = "libusmc-verbs.so";
  if (::dladdr(reinterpret_cast<void*>(&SmcrRegistryFor), &info) != 0 &&
      info.dli_fname != nullptr) {
    std::string self = info.dli_fname;
    const size_t slash = self.rfind('/');
    if (slash != std::string::npos) path = self.substr(0, slash + 1) + path;
  }
  void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) return nullptr;
  return reinterpret_cast<VerbsOpenFn>(::dlsym(h, "usmc_verbs_open"));
}

engine::TimePoint Now() {
  return std::chrono::duration_cast<engine::TimePoint>(
      std::chrono::steady_clock::now().time_since_epoch());
}

// System IDs, PSNs and the IOVAs of memory regions (SMCR.md D3) come from
// it: the kernel's randomness.
uint64_t KernelSeed() {
  uint64_t seed = 0;
  if (::getrandom(&seed, sizeof seed, 0) != sizeof seed) {
    seed = static_cast<uint64_t>(Now().count()) ^ uint64_t(::getpid()) << 32;
  }
  return seed;
}

// With s.mu held: the registry and its thread, on a context just opened.
void StartRegistry(SmcrState& s, std::unique_ptr<dev::rdma::Context> ctx,
                   uint32_t ip) {
  s.ctx = std::move(ctx);
  s.ip = ip;
  s.entropy = std::make_unique<engine::SeededEntropy>(KernelSeed());
  s.reg = std::make_unique<runtime::LgrRegistry>(
      *s.ctx, *s.entropy, runtime::LgrRegistryOptions{.clock = Now});
  if (runtime::StatusPublisher* pub = runtime::StatusPublisher::Process()) {
    s.reg->AttachStatus(pub->AsSink());
  }
  // The thread takes none of the app's signals (they are the app's
  // threads'), and its own calls go to the kernel, not to the wrappers.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  s.progress = std::make_unique<runtime::SmcrProgress>(
      *s.reg, runtime::SmcrProgressOptions{
                  .on_start = [] { static thread_local Inside in; }});
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  runtime::SmcrProgress* p = s.progress.get();
  s.reg->SetKick([p] { p->Kick(); });
  g_devices.fetch_add(1, std::memory_order_relaxed);
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
  if (s.reg) return s.ip == ip && !s.terminated ? s.reg.get() : nullptr;
  if (!s.probed) {
    s.probed = true;
    s.no_device = !HostHasRdmaDevice();
    if (!s.no_device) s.open = LoadModule();
    if (s.open == nullptr) s.no_device = true;
  }
  if (s.no_device || s.unserved.contains(ip)) return nullptr;
  int code = 0;
  std::unique_ptr<dev::rdma::Context> ctx(s.open(ip, &code));
  if (!ctx) {
    s.unserved.insert(ip);
    return nullptr;
  }
  StartRegistry(s, std::move(ctx), ip);
  return s.reg.get();
}

uint64_t SmcrDevicesOpened() { return g_devices.load(); }

void SmcrTerminate() {
  SmcrState* s = g_state.load(std::memory_order_acquire);
  if (s == nullptr) return;
  std::lock_guard lock(s->mu);
  if (!s->reg || s->terminated) return;
  s->terminated = true;
  s->reg->TerminateAll();
  // DELETE_LINK is a SEND: it must have left before the QP goes with the
  // process. Bounded: a peer that no longer answers costs at most this.
  (void)s->reg->DrainTerminated(std::chrono::milliseconds(500));
  s->progress->Stop();
}

void SmcrAfterForkChild() {
  // The parent's state stays as it was (leaked here, never touched): its
  // mutex may be held by a thread the child does not have.
  g_state.store(nullptr, std::memory_order_release);
  g_devices.store(0, std::memory_order_relaxed);
}

}  // namespace usmc::preload
