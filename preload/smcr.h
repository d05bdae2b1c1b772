// preload/smcr.h: SMC-R in the interposer. One link-group registry per
// process and address family (runtime/lgr_registry.h) with its progress
// thread (runtime/smcr_progress.h), on the RDMA device with the RoCEv2 GID
// for a connection's local address (runtime::SmcrLocalAddress: IPv4 as
// ::ffff:a.b.c.d, a GID in its subnet; IPv6, usmc <-> usmc only, the GID
// equal to it), opened ahead of the first handshake (SmcrWarmUp*), else at
// the first connection that could use it. Within a family only the first
// address opened is served (a second one: no SMC-R, plain TCP). A
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
// of a listener offering SMC (its bound address; a wildcard: per family it
// takes clients of, the first local address a device serves), and at the
// first connect() per family offering SMC to a non-loopback address (the
// local address routing there).
void SmcrWarmUpForListener(int fd);
void SmcrWarmUpForConnect(const sockaddr* to, socklen_t len);

// The registry for the connected TCP socket `fd` (its local address must
// be served by the device: not loopback nor link-local), or null: no
// SMC-R for it.
runtime::LgrRegistry* SmcrRegistryFor(int fd);

// Verbs contexts this process opened (0, 1, or 2 for IPv4 and IPv6; the exit
// report's "smcr_devices").
uint64_t SmcrDevicesOpened();

// Process exit and exec: every link group ends orderly (DELETE_LINK), so
// the peers' groups end at once; bounded wait for the sends to complete.
void SmcrTerminate();

// In a fork child: forget the parent's registry (never freed, never
// used here); the next connection opens a new one.
void SmcrAfterForkChild();

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_SMCR_H_
