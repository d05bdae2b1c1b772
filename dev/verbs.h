// dev/verbs.h: dev/rdma.h on libibverbs, for Soft-RoCE (rxe) and RoCE
// hardware. dev/verbs.cc is the only file of usmc that includes
// <infiniband/verbs.h> (../docs/dev-rdma.md).
//
//   auto ctx = *VerbsContext::Open(0x0a000001);   // the GID ::ffff:10.0.0.1
//   ... then exactly as with any dev/rdma.h Context.
//
// Open picks the device, port and GID SMC-Rv2 uses (SMCR.md §1.5) for the
// TCP connection's local address (dev/gid_choice.h): for IPv4 a RoCEv2 GID
// that is IPv4-mapped and in the subnet of that address, for IPv6 the
// RoCEv2 GID equal to the address (or of its prefix); the MAC is its
// netdev's. What the caller
// asks for is what verbs gets: no SMC policy lives here (QP attributes,
// access flags and the IOVA of each MR come from the caller).
#ifndef USMC_DEV_VERBS_H_
#define USMC_DEV_VERBS_H_

#include <cstdint>
#include <memory>

#include "base/status.h"
#include "dev/rdma.h"

namespace usmc::dev::rdma {

class VerbsContext {
 public:
  // Opens the RDMA device with an IPv4-mapped RoCEv2 GID in the subnet of
  // `ipv4_host_order` (an exact match preferred); 0: the first such GID of
  // any device. Errors: kUnavailable when the host has no RDMA device at
  // all (the message says so, for tests that skip), kNotFound when none
  // has a matching GID.
  static Result<std::unique_ptr<Context>> Open(uint32_t ipv4_host_order);
  // The same for a 16-byte address: IPv4-mapped (::ffff:a.b.c.d) as above,
  // else an IPv6 address (usmc ↔ usmc only: the Linux kernel has no
  // SMC-Rv2 over IPv6 GIDs); all zero as 0 above.
  static Result<std::unique_ptr<Context>> Open(const Gid& local_address);
};

}  // namespace usmc::dev::rdma

#endif  // USMC_DEV_VERBS_H_
