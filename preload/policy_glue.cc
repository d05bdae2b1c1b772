#include "preload/policy_glue.h"

#include <memory>
#include <string>

#include "preload/policy.h"
#include "runtime/config.h"

namespace usmc::preload {
namespace {

struct ProcessPolicy {
  Policy policy;
  ProgramNames names;
  bool smc_off = false;
};

ProcessPolicy*& Current() {
  static ProcessPolicy* p = nullptr;
  return p;
}

std::optional<Endpoint> LocalOf(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return std::nullopt;
  }
  return EndpointFromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

}  // namespace

void LoadProcessPolicy() {
  if (Current() != nullptr) return;
  auto* p = new ProcessPolicy();  // lives as long as the process
  Result<Policy> loaded = LoadPolicy(PolicyEnv::FromProcess());
  if (loaded.ok()) {
    p->policy = std::move(*loaded);
  } else {
    runtime::SayOnce(std::string(loaded.status().message()) +
                     "; SMC is off for this process");
    p->smc_off = true;
  }
  p->names = ReadProgramNames();
  Current() = p;
}

bool PolicyAllowsConnect(int /*fd*/, const sockaddr* remote, socklen_t len) {
  LoadProcessPolicy();
  const ProcessPolicy& p = *Current();
  if (p.smc_off) return false;
  Query q{.role = Role::kClient,
          .exe_name = p.names.exe,
          .argv0_name = p.names.argv0,
          .local = std::nullopt,  // client rules match the remote end
          .remote = EndpointFromSockaddr(remote, len)};
  return p.policy.Allows(q).allow;
}

bool PolicyAllowsListen(int fd) {
  LoadProcessPolicy();
  const ProcessPolicy& p = *Current();
  if (p.smc_off) return false;
  Query q{.role = Role::kServer,
          .exe_name = p.names.exe,
          .argv0_name = p.names.argv0,
          .local = LocalOf(fd),
          .remote = std::nullopt};
  return p.policy.Allows(q).allow;
}

}  // namespace usmc::preload
