#include "runtime/smcr_process.h"

#include <dlfcn.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "dev/gid_choice.h"
#include "dev/rdma.h"
#include "engine/params.h"
#include "runtime/lgr_registry.h"
#include "runtime/smcr_progress.h"

namespace usmc::runtime {
namespace {

// dev/verbs_module.cc: the 16-byte local address, and the StatusCode of a
// failure.
using VerbsOpenFn = dev::rdma::Context* (*)(const uint8_t*, int*);

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

}  // namespace

bool SmcrAddressIsIpv4(const wire::Gid& a) {
  return dev::rdma::IsIpv4Mapped(a);
}

std::optional<wire::Gid> SmcrLocalAddress(const sockaddr_storage& ss) {
  wire::Gid a{};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    a[10] = a[11] = 0xff;
    std::memcpy(a.data() + 12, &in->sin_addr, 4);
  } else if (ss.ss_family == AF_INET6) {
    std::memcpy(a.data(),
                &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, 16);
  } else {
    return std::nullopt;
  }
  const wire::Gid any{};
  if (a == any) return any;
  if (dev::rdma::IsIpv4Mapped(a)) {
    if (std::all_of(a.begin() + 12, a.end(),
                    [](uint8_t b) { return b == 0; })) {
      return any;  // ::ffff:0.0.0.0, as 0.0.0.0
    }
    if (a[12] == 127) return std::nullopt;  // 127/8: SMC-D's
    return a;
  }
  wire::Gid loopback{};
  loopback[15] = 1;
  if (a == loopback || dev::rdma::IsLinkLocal(a)) return std::nullopt;
  if (a[0] == 0xff) return std::nullopt;  // multicast
  return a;
}

struct SmcrProcess::Impl {
  std::unique_ptr<dev::rdma::Context> ctx;
  engine::SeededEntropy entropy{KernelSeed()};
  std::unique_ptr<LgrRegistry> reg;
  std::unique_ptr<SmcrProgress> progress;
};

SmcrProcess::SmcrProcess(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SmcrProcess::~SmcrProcess() {
  if (impl_->progress) impl_->progress->Stop();
}

Result<std::unique_ptr<SmcrProcess>> SmcrProcess::Open(
    const std::string& module_path, const wire::Gid& local_address,
    SmcrProcessOptions options) {
  void* h = ::dlopen(module_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    return Status(StatusCode::kUnavailable,
                  "cannot load " + module_path + ": " + ::dlerror());
  }
  auto open = reinterpret_cast<VerbsOpenFn>(::dlsym(h, "usmc_verbs_open_addr"));
  if (open == nullptr) {
    return Status(StatusCode::kUnavailable,
                  module_path + ": no usmc_verbs_open_addr");
  }
  int code = 0;
  std::unique_ptr<dev::rdma::Context> ctx(open(local_address.data(), &code));
  if (!ctx) {
    return Status(StatusCode(code), "no RDMA device serves this address");
  }
  auto impl = std::make_unique<Impl>();
  impl->ctx = std::move(ctx);
  impl->reg = std::make_unique<LgrRegistry>(
      *impl->ctx, impl->entropy,
      LgrRegistryOptions{
          .clock = Now,
          .publish_connections = options.publish_connections,
      });
  if (options.status) impl->reg->AttachStatus(*options.status);
  // The thread takes none of the app's signals (they are for the app's
  // threads).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  impl->progress = std::make_unique<SmcrProgress>(
      *impl->reg,
      SmcrProgressOptions{.on_start = std::move(options.on_thread_start)});
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  SmcrProgress* p = impl->progress.get();
  impl->reg->SetKick([p] { p->Kick(); });
  return std::unique_ptr<SmcrProcess>(new SmcrProcess(std::move(impl)));
}

LgrRegistry& SmcrProcess::registry() { return *impl_->reg; }

void SmcrProcess::Terminate(std::chrono::milliseconds wait) {
  impl_->reg->TerminateAll();
  // DELETE_LINK is a SEND: it must have left before the QP goes with the
  // process. Bounded: a peer that no longer answers costs at most `wait`.
  (void)impl_->reg->DrainTerminated(wait);
  impl_->progress->Stop();
}

}  // namespace usmc::runtime
