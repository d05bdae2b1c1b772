// engine/params.h: what the runtime injects into a connection's engine.
//
// Identity (the emulated-ISM device's GID and CHID, the UEID, the host name)
// and randomness come from outside, so tests are deterministic and the
// engine never reads /proc, a clock or a random device.
//
//   EngineParams p;
//   p.role = Role::kClient;
//   p.device = {.gid = boot_id_hi, .gid_ext = boot_id_lo, .chid = 0xFFFF};
//   p.eid = wire::MakeClcEid("USMC-LOCAL");
//   Connection conn(p, &entropy);
#ifndef USMC_ENGINE_PARAMS_H_
#define USMC_ENGINE_PARAMS_H_

#include <cstdint>

#include "engine/common.h"
#include "wire/clc.h"
#include "wire/reason.h"

namespace usmc::engine {

// An emulated-ISM (SMC-Dv2) device: a 128-bit GID (gid, gid_ext) and a
// CHID in the virtual range 0xFF00-0xFFFF. Two processes match only when
// all three are equal (same kernel instance).
struct SmcdDevice {
  uint64_t gid = 0;
  uint64_t gid_ext = 0;
  uint16_t chid = 0xFFFF;
  bool operator==(const SmcdDevice&) const = default;
};

// The local RoCE side of SMC-Rv2 (SMCR.md §1.2, §1.3), as the runtime
// knows it: the port's IPv4-mapped RoCEv2 GID and its netdev's MAC, the
// port's active MTU (IB enum: 3 = 1024), and this connection's RMB: a
// memory region of its own (D3) at a random IOVA, never a process address.
// The link's QPN and PSN belong to the link group and come with
// SmcrLgrJoined.
struct SmcrDevice {
  wire::ClcGid gid{};
  wire::ClcMac mac{};
  uint8_t mtu = 3;
  uint32_t rmb_rkey = 0;
  uint64_t rmb_iova = 0;
  uint32_t rmb_size = 64 * 1024;  // 16 KiB .. 1 MiB (wire/bufsize.h)
  bool operator==(const SmcrDevice&) const = default;
};

struct EngineParams {
  Role role = Role::kClient;
  SmcdDevice device;
  bool smcd_enabled = true;   // false: offer/accept no SMC-D
  // Why smcd_enabled is false, for the Decline: no device (NOSMCDDEV), or
  // the process could not look for one (NOFD: out of file descriptors).
  uint32_t no_smcd_reason = wire::kReasonNoSmcdDev;
  bool smcr_enabled = false;  // true: offer/accept SMC-Rv2 too
  SmcrDevice smcr;
  // Client: the system ID of the link group a first contact would create
  // (SMCR.md D2), sent in the Proposal (bytes 8-15) and the Confirm.
  wire::ClcPeerId smcr_system_id{};
  uint8_t smcr_max_links = 1;  // D1; a kernel replay uses 2
  uint8_t smcr_max_conns = 255;
  bool smcr_v2_direct = true;     // server: the client's GID is on-link
  wire::ClcEid eid{};             // UEID; both ends must list the same
  wire::ClcHostname hostname{};   // First Contact Extension
  uint32_t dmb_size = 64 * 1024;  // wanted DMB size, CDC area included
  Duration clc_timeout = kClcTimeout;
};

// Randomness for link IDs and similar values (ngtcp2's rand callback).
class Entropy {
 public:
  virtual ~Entropy() = default;
  virtual uint64_t Random64() = 0;
};

// A deterministic Entropy for tests and fuzzers (splitmix64).
class SeededEntropy final : public Entropy {
 public:
  explicit SeededEntropy(uint64_t seed) : state_(seed) {}
  uint64_t Random64() override {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

// What both ends agreed on once the handshake reached SMC-D. The client's
// and the server's views are mirror images (local <-> peer).
struct SmcdLink {
  SmcdDevice local_device;
  SmcdDevice peer_device;
  uint64_t local_dmb_token = 0;
  uint32_t local_dmb_size = 0;  // CDC area included
  uint64_t peer_dmb_token = 0;
  uint32_t peer_dmb_size = 0;
  uint32_t link_id = 0;
  wire::ClcEid eid{};
  bool operator==(const SmcdLink&) const = default;
};

// What both ends agreed on for SMC-R (client and server views mirror each
// other). The peer's fields come from its Accept/Confirm (and Proposal).
struct SmcrLink {
  bool first_contact = false;
  wire::ClcPeerId local_system_id{};
  wire::ClcPeerId peer_system_id{};
  wire::ClcGid local_gid{};
  wire::ClcGid peer_gid{};
  wire::ClcMac local_mac{};
  wire::ClcMac peer_mac{};
  uint32_t local_qpn = 0;
  uint32_t peer_qpn = 0;
  uint32_t local_psn = 0;
  uint32_t peer_psn = 0;
  uint8_t mtu = 0;  // min(ours, peer's), IB enum
  // Alert tokens: ours is in every CDC the peer sends us, and vice versa.
  uint32_t local_token = 0;
  uint32_t peer_token = 0;
  uint32_t local_rkey = 0;
  uint64_t local_iova = 0;
  uint32_t local_rmb_size = 0;
  uint32_t peer_rkey = 0;
  uint64_t peer_vaddr = 0;
  uint32_t peer_rmb_size = 0;
  uint8_t max_links = 0;
  uint8_t max_conns = 0;
  wire::ClcEid eid{};
  bool operator==(const SmcrLink&) const = default;
};

}  // namespace usmc::engine

#endif  // USMC_ENGINE_PARAMS_H_
