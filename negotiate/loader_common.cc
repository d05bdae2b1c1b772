// negotiate/loader_common.cc: the parts of the loader that need no libbpf
// (built with and without USMC_BPF): counter names, the cgroup2 mount,
// the capability check.
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "negotiate/loader.h"
#include "negotiate/negotiate_abi.h"

namespace usmc::negotiate {

const std::array<std::string_view, kCounterCount>& CounterNames() {
  static_assert(USMC_CTR_COUNT == kCounterCount);
  static const std::array<std::string_view, kCounterCount> kNames = {
      "options_written",  "offers_seen", "echoes",     "reserve_failures",
      "cookie_fallbacks", "tfo_skipped", "smc_active", "smc_passive"};
  return kNames;
}

Result<std::string> FindCgroup2Root() {
  std::ifstream mounts("/proc/self/mounts");
  if (!mounts) return Status::FromErrno(errno, "open /proc/self/mounts");
  std::string line;
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string source, target, type;
    if (!(fields >> source >> target >> type)) continue;
    if (type == "cgroup2") return target;
  }
  return Status(StatusCode::kUnavailable,
                "no cgroup2 mount in /proc/self/mounts (mount one: "
                "mount -t cgroup2 none /sys/fs/cgroup/unified)");
}

Status CheckPrivilege(std::string_view command) {
  // These numbers are ABI; CAP_BPF may be missing from old libc headers.
  constexpr int kCapNetAdmin = 12;
  constexpr int kCapSysAdmin = 21;
  constexpr int kCapBpf = 39;
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0)
    return Status::FromErrno(errno, "capget");
  auto has = [&](int cap) {
    return (data[cap / 32].effective >> (cap % 32)) & 1u;
  };
  if (has(kCapSysAdmin) || (has(kCapBpf) && has(kCapNetAdmin)))
    return OkStatus();
  std::vector<std::string> missing;
  if (!has(kCapBpf)) missing.push_back("CAP_BPF");
  if (!has(kCapNetAdmin)) missing.push_back("CAP_NET_ADMIN");
  std::string list;
  for (const std::string& m : missing) list += (list.empty() ? "" : ", ") + m;
  return Status(
      StatusCode::kPermissionDenied,
      "missing capability " + list +
          " (loading and attaching the negotiation program needs "
          "CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN); run as root: "
          "sudo " +
          std::string(command));
}

}  // namespace usmc::negotiate
