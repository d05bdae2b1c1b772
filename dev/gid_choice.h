// dev/gid_choice.h: which RoCEv2 GID SMC-Rv2 uses for a TCP connection's
// local address (SMCR.md §1.5), as a pure function over a GID table, so the
// choice is tested without a device (dev/verbs.cc feeds it the real table).
//
//   IPv4 address a.b.c.d (passed IPv4-mapped, ::ffff:a.b.c.d): an
//     IPv4-mapped GID, the address itself first, else one in its subnet on
//     the netdev that holds that address.
//   IPv6 address: a GID equal to it first, else a GID of the same prefix
//     on the netdev that holds that GID as an address. Never an
//     IPv4-mapped GID, never a link-local one for a global address (rxe
//     makes GIDs from every address of its netdev, fe80:: included).
//   All zero: any IPv4-mapped GID (the first one), as before IPv6 existed.
//
// Only active Ethernet ports' RoCEv2 GIDs count.
#ifndef USMC_DEV_GID_CHOICE_H_
#define USMC_DEV_GID_CHOICE_H_

#include <cstdint>
#include <optional>
#include <span>

#include "dev/rdma.h"

namespace usmc::dev::rdma {

struct GidEntry {
  Gid gid{};
  bool roce_v2 = true;
  bool port_active = true;  // an active port with an Ethernet link layer
  int ifindex = 0;          // the netdev the GID comes from
};

// A local interface address, IPv4 as ::ffff:a.b.c.d with prefix_len + 96.
struct IfAddr {
  int ifindex = 0;
  Gid addr{};
  int prefix_len = 0;  // 0..128
};

bool IsIpv4Mapped(const Gid& g);
bool IsLinkLocal(const Gid& g);  // fe80::/10
// The first `bits` bits of a and b are equal.
bool SamePrefix(const Gid& a, const Gid& b, int bits);

// The index into `table` of the GID for local address `want`, or nullopt.
std::optional<size_t> ChooseGid(std::span<const GidEntry> table,
                                const Gid& want, std::span<const IfAddr> addrs);

}  // namespace usmc::dev::rdma

#endif  // USMC_DEV_GID_CHOICE_H_
