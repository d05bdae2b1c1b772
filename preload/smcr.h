// preload/smcr.h: SMC-R in the interposer. One link-group registry per
// process (runtime/lgr_registry.h) with its progress thread
// (runtime/smcr_progress.h), on the RDMA device whose RoCEv2 GID is in the
// subnet of a connection's local IPv4 address, opened ahead of the first
// handshake (SmcrWarmUp*), else at the first connection that could use it. A
// host without an RDMA device opens nothing (one stat of /sys/class/infiniband
// per process) and offers no SMC-R; USMC_SMCR=0 turns it off (docs/config.md).
//
// fork: the child never touches the parent's registry (its QPs and
// regions are the parent's); its new connections get a registry of their
// own. exec: QPs do not survive it; SMC-R connections are not handed over
// (the exec wrapper resets them) and the groups end orderly first.
#ifndef USMC_PRELOAD_SMCR_H_
#define USMC_PRELOAD_SMCR_H_

#include <sys/socket.h>

#include <cstdint>

namespace usmc::runtime {
class LgrRegistry;
}

namespace usmc::preload {

// Opens the device ahead of the first handshake, in a thread of its own
// (once per process, nothing on a host without an RDMA device): at listen()
// of a listener offering SMC (its bound address; a wildcard: the first local
// address a device serves), and at the first connect() offering SMC to a
// non-loopback IPv4 address (the local address routing there).
void SmcrWarmUpForListener(int fd);
void SmcrWarmUpForConnect(const sockaddr* to, socklen_t len);

// The registry for the connected TCP socket `fd` (its local address must
// be IPv4, or IPv4-mapped on a dual-stack socket, and served by the
// device), or null: no SMC-R for it.
runtime::LgrRegistry* SmcrRegistryFor(int fd);

// Verbs contexts this process opened (0 or 1; the exit report's
// "smcr_devices").
uint64_t SmcrDevicesOpened();

// Process exit and exec: every link group ends orderly (DELETE_LINK), so
// the peers' groups end at once; bounded wait for the sends to complete.
void SmcrTerminate();

// In a fork child: forget the parent's registry (never freed, never
// used here); the next connection opens a new one.
void SmcrAfterForkChild();

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_SMCR_H_
