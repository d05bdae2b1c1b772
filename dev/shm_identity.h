// dev/shm_identity.h: who the shm device is (SMC-Dv2 GID and CHID) and the
// random DMB tokens it hands out.
//
// The 128-bit GID (gid + gid_ext, as for Emulated-ISM) is derived from the
// kernel instance (boot_id) and the network namespace, so two usmc processes
// that can actually reach each other's abstract Unix sockets share a GID and
// nothing else does. The boot_id itself never leaves the host: it is hashed.
//
//   usmc::Result<usmc::dev::ShmGid> gid = usmc::dev::LocalShmGid();
//   bool same_host = gid.ok() && *gid == peer_gid;
//   usmc::Result<uint64_t> token = usmc::dev::NewDmbToken();
#ifndef USMC_DEV_SHM_IDENTITY_H_
#define USMC_DEV_SHM_IDENTITY_H_

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string_view>

#include "base/status.h"

namespace usmc::dev {

// CHID of the usmc shm device. 0xFF00-0xFFFF is the virtual/emulated ISM
// range; 0xFFFF is Linux loopback-ism, so we take the highest free value,
// 0xFFFE, to be told apart from the kernel's device in CLC and in tools.
inline constexpr uint16_t kShmChid = 0xFFFE;
inline constexpr uint16_t kVirtualChidMask = 0xFF00;

struct ShmGid {
  uint64_t gid = 0;
  uint64_t gid_ext = 0;
  friend bool operator==(const ShmGid&, const ShmGid&) = default;
};
std::ostream& operator<<(std::ostream& os, const ShmGid& g);

// Pure derivation, for tests: boot_id is the text of
// /proc/sys/kernel/random/boot_id (a UUID, trailing newline allowed);
// netns_id identifies the network namespace (inode of /proc/self/ns/net).
Result<ShmGid> DeriveShmGid(std::string_view boot_id, uint64_t netns_id);

// The GID of this process's device; computed once, then cached.
Result<ShmGid> LocalShmGid();

// A fresh non-zero 64-bit DMB token, every bit from getrandom(2). The two
// tokens of a connection are its secret: they travel only in its TCP stream
// (CLC Accept, Confirm), and the handover proves knowledge of them
// (shm_handover.h), so nothing of a token may be guessable.
Result<uint64_t> NewDmbToken();

// SipHash-2-4 (Aumasson, Bernstein) of `data` under the 128-bit key
// (k0, k1): a pseudo-random function, cheap for the handful of bytes the
// handover hashes. Keyed with the tokens it yields proofs of knowing them
// that reveal nothing about them, and the listener name (one-way: the name
// is public, the token is not).
uint64_t SipHash24(uint64_t k0, uint64_t k1, const void* data, size_t len);

// A 64-bit mixing function (bijective, avalanching). Not cryptographic and
// invertible: it keeps the boot_id's text off the wire, nothing secret.
uint64_t Mix64(uint64_t x);

}  // namespace usmc::dev

#endif  // USMC_DEV_SHM_IDENTITY_H_
