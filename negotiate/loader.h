// negotiate/loader.h: load, pin, attach and remove the negotiation program
// (what `usmc setup` does), and read what is attached plus its counters.
//
// Needs CAP_BPF + CAP_NET_ADMIN (or CAP_SYS_ADMIN). Pins live in one bpffs
// directory (default /sys/fs/bpf/usmc, all 0600); the three programs are
// attached through pinned bpf_links, so an attachment lives exactly as long
// as its pin and Setup() can tell what is already there.
//
//   usmc::negotiate::SetupOptions opts;            // cgroup2 root, default
//   pins usmc::Result<usmc::negotiate::SetupReport> r =
//   usmc::negotiate::Setup(opts); usmc::Result<usmc::negotiate::AttachStatus> s
//   =
//       usmc::negotiate::QueryStatus(opts.pin_dir);
//   usmc::Status gone = usmc::negotiate::Remove(opts.pin_dir);
#ifndef USMC_NEGOTIATE_LOADER_H_
#define USMC_NEGOTIATE_LOADER_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace usmc::negotiate {

inline constexpr std::string_view kDefaultPinDir = "/sys/fs/bpf/usmc";
inline constexpr int kCounterCount = 8;

// Counter names in map index order (negotiate_abi.h USMC_CTR_*).
const std::array<std::string_view, kCounterCount>& CounterNames();

struct SetupOptions {
  std::string cgroup;  // empty: the cgroup2 root found in /proc/self/mounts
  std::string pin_dir = std::string(kDefaultPinDir);
};

struct SetupReport {
  std::string cgroup;      // the cgroup the programs are attached to
  bool loaded = false;     // a new program was loaded and pinned
  int links_created = 0;   // attachments made now (0: already in place)
  int links_replaced = 0;  // attachments moved from another cgroup
};

struct ProgramAttachment {
  std::string name;  // "sock_ops", "setsockopt", "getsockopt"
  uint32_t prog_id = 0;
  uint32_t link_id = 0;  // 0: not attached
  uint64_t cgroup_id = 0;
};

struct AttachStatus {
  bool loaded = false;    // pinned programs found
  bool attached = false;  // all three attached to one live cgroup
  std::string pin_dir;
  std::string cgroup;  // path of the attached cgroup ("" if unknown)
  uint64_t cgroup_id = 0;
  std::vector<ProgramAttachment> programs;
  std::array<uint64_t, kCounterCount> counters{};
};

// The mount point of the cgroup2 hierarchy, from /proc/self/mounts.
Result<std::string> FindCgroup2Root();

// OK if the effective capabilities allow loading; else kPermissionDenied
// with a message naming the missing capabilities and the fixing command.
Status CheckPrivilege(std::string_view command);

// Loads (or reuses) the program and attaches it; idempotent.
Result<SetupReport> Setup(const SetupOptions& options);

// What is pinned in pin_dir and attached; loaded=false if nothing is.
Result<AttachStatus> QueryStatus(const std::string& pin_dir);

// Detaches and unpins everything in pin_dir; OK if nothing was there.
Status Remove(const std::string& pin_dir);

}  // namespace usmc::negotiate

#endif  // USMC_NEGOTIATE_LOADER_H_
