// engine/clc_smcr.h: the SMC-Rv2 parts of CLC (SMCR.md §1.2, §1.3): the
// Accept/Confirm builder with the First Contact Extension, the checks that
// turn a Proposal, Accept or Confirm into "go on" or the kernel's reason
// code, and the server's choice between SMC-D and SMC-R.
//
//   ProposalChoice c = ChooseForProposal(p, params);  // kSmcd, kSmcr or reason
//   wire::ClcSmcrAccept a = BuildSmcrAccept(wire::ClcType::kAccept, params,
//   link);
#ifndef USMC_ENGINE_CLC_SMCR_H_
#define USMC_ENGINE_CLC_SMCR_H_

#include <cstdint>

#include "engine/common.h"
#include "engine/params.h"
#include "wire/clc.h"

namespace usmc::engine {

// The kernel's limits for the v2.1 First Contact Extension
// (smc_clc_*_v2x_features_validate): max_conns >= 16, max_links 1..2.
inline constexpr uint8_t kSmcrMinConns = 16;
inline constexpr uint8_t kSmcrMaxLinks = 2;
// The largest peer RMB usmc mirrors with a sndbuf (SMCR.md §2.4, D4).
inline constexpr uint32_t kSmcrMaxPeerRmb = 16 * 1024 * 1024;

// What the server picks for a Proposal: SMC-D when the client lists our
// shm device (same host, preferred), else SMC-R when both offer it, else
// the Decline reason.
struct ProposalChoice {
  Technology technology = Technology::kSmcd;
  uint32_t reason = 0;  // nonzero: decline
};
ProposalChoice ChooseForProposal(const wire::ClcProposal& p,
                                 const EngineParams& params);

// Server: the negotiated max_conns/max_links for an SMC-R Proposal, or the
// reason (MAXCONNERR, MAXLINKERR) in `reason`.
struct SmcrLimits {
  uint8_t max_conns = 0;
  uint8_t max_links = 0;
  uint32_t reason = 0;
};
SmcrLimits NegotiateSmcrLimits(const wire::ClcProposal& p,
                               const EngineParams& params);

// Client: 0 if the SMC-R Accept can be taken, else the reason (VERSMISMAT,
// NOUEID, MAXCONNERR, MAXLINKERR, MEM for a peer RMB above 16 MiB).
uint32_t CheckSmcrAccept(const wire::ClcSmcrAccept& a,
                         const EngineParams& params);
// Server: 0 if the Confirm answers our Accept (same first-contact kind,
// UEID; its FCE repeats release, max_conns, max_links), else the reason.
uint32_t CheckSmcrConfirm(const wire::ClcSmcrAccept& c,
                          const EngineParams& params, const SmcrLink& link);

// An SMC-Rv2 Accept (server) or Confirm (client) from the link as
// negotiated so far: first contact -> FCE (and, in a Confirm, our GID).
wire::ClcSmcrAccept BuildSmcrAccept(wire::ClcType type,
                                    const EngineParams& params,
                                    const SmcrLink& link);

// A Decline; `out_of_sync` sets header bit 0x08 (SYNCERR).
wire::ClcDecline BuildSmcrDecline(uint32_t reason, bool out_of_sync);

// The peer's fields of an Accept (client) or Confirm (server) into `link`.
void TakePeerAccept(const wire::ClcSmcrAccept& a, SmcrLink& link);

// The RMB size the runtime registered, as CLC can announce it.
bool ValidSmcrRmbSize(uint32_t size);

}  // namespace usmc::engine

#endif  // USMC_ENGINE_CLC_SMCR_H_
