#include "engine/clc_smcr.h"

#include <algorithm>

#include "engine/clc_common.h"
#include "wire/bufsize.h"
#include "wire/reason.h"

namespace usmc::engine {
namespace {

bool EidListed(const wire::ClcProposal& p, const wire::ClcEid& eid) {
  for (size_t i = 0; i < p.eid_count && i < p.eids.size(); ++i) {
    if (p.eids[i] == eid) return true;
  }
  return false;
}

bool AllZero(const wire::ClcGid& g) {
  return std::all_of(g.begin(), g.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace

ProposalChoice ChooseForProposal(const wire::ClcProposal& p,
                                 const EngineParams& params) {
  // SMC-D first: the usmc checks (and their order) stay as they were.
  const uint32_t d_reason = CheckProposal(p, params);
  if (d_reason == 0) return {Technology::kSmcd, 0};
  if (p.version < 2 || !p.HasV2Extension())
    return {Technology::kSmcd, d_reason};
  // SMC-R not offered, or not served here: SMC-D's reason, as before
  // SMC-R existed.
  if (!wire::SmcrIndicated(p.typev2) || !params.smcr_enabled) {
    return {Technology::kSmcd, d_reason};
  }
  // smc_listen_v2_check: no UEID -> NOUEID; smc_find_rdma_v2_device_serv:
  // no UEID in common or no RoCEv2 GID -> the same path declines.
  if (p.eid_count == 0 || !EidListed(p, params.eid)) {
    return {Technology::kSmcr, wire::kReasonNoUeid};
  }
  if (AllZero(p.roce_v2_gid))
    return {Technology::kSmcr, wire::kReasonNoSmcrDev};
  const SmcrLimits l = NegotiateSmcrLimits(p, params);
  if (l.reason != 0) return {Technology::kSmcr, l.reason};
  return {Technology::kSmcr, 0};
}

SmcrLimits NegotiateSmcrLimits(const wire::ClcProposal& p,
                               const EngineParams& params) {
  // smc_clc_srv_v2x_features_validate: min(theirs, ours), then the bounds.
  SmcrLimits l;
  l.max_conns = std::min(p.max_conns, params.smcr_max_conns);
  l.max_links = std::min(p.max_links, params.smcr_max_links);
  if (l.max_conns < kSmcrMinConns) {
    l.reason = wire::kReasonMaxConnErr;
  } else if (l.max_links < 1) {
    l.reason = wire::kReasonMaxLinkErr;
  }
  return l;
}

uint32_t CheckSmcrAccept(const wire::ClcSmcrAccept& a,
                         const EngineParams& params) {
  if (a.version < 2) return wire::kReasonVersMismat;
  if (a.eid != params.eid) return wire::kReasonNoUeid;
  if (a.first_contact) {
    // smc_clc_clnt_v2x_features_validate.
    if (a.fce.release > wire::kSmcRelease21) return wire::kReasonVersMismat;
    if (a.fce.max_conns < kSmcrMinConns) return wire::kReasonMaxConnErr;
    if (a.fce.max_links < 1 || a.fce.max_links > kSmcrMaxLinks ||
        a.fce.max_links > params.smcr_max_links) {
      return wire::kReasonMaxLinkErr;
    }
  }
  if (wire::UncompressBufSize(a.rmbe_size) > kSmcrMaxPeerRmb) {
    return wire::kReasonMem;
  }
  if (a.rmbe_idx != 1) return wire::kReasonCnfErr;  // one RMBE per RMB
  return 0;
}

uint32_t CheckSmcrConfirm(const wire::ClcSmcrAccept& c,
                          const EngineParams& params, const SmcrLink& link) {
  if (c.version < 2) return wire::kReasonVersMismat;
  if (c.eid != params.eid) return wire::kReasonNoUeid;
  if (c.first_contact != link.first_contact) return wire::kReasonCnfErr;
  if (c.first_contact) {
    // smc_clc_v2x_features_confirm_check: the FCE repeats what we sent.
    if (c.fce.release != wire::kSmcRelease21) return wire::kReasonReleaseErr;
    if (c.fce.max_conns != link.max_conns) return wire::kReasonMaxConnErr;
    if (c.fce.max_links != link.max_links) return wire::kReasonMaxLinkErr;
  }
  if (wire::UncompressBufSize(c.rmbe_size) > kSmcrMaxPeerRmb) {
    return wire::kReasonMem;
  }
  if (c.rmbe_idx != 1) return wire::kReasonCnfErr;
  return 0;
}

wire::ClcSmcrAccept BuildSmcrAccept(wire::ClcType type,
                                    const EngineParams& params,
                                    const SmcrLink& link) {
  wire::ClcSmcrAccept a;
  a.type = type;
  a.version = 2;
  a.first_contact = link.first_contact;
  a.peer_id = link.local_system_id;
  a.gid = params.smcr.gid;
  a.mac = params.smcr.mac;
  a.qpn = link.local_qpn;
  a.rmb_rkey = link.local_rkey;
  a.rmbe_idx = 1;  // the peer writes at vaddr + size * (idx - 1)
  a.rmbe_alert_token = link.local_token;
  a.rmbe_size =
      wire::CompressBufSize(link.local_rmb_size, wire::kSmcrMaxCompressed);
  // smcr_clc_prep_confirm_accept: Accept = our MTU, Confirm = the minimum.
  a.qp_mtu = type == wire::ClcType::kConfirm ? link.mtu : params.smcr.mtu;
  a.rmb_vaddr = link.local_iova;
  a.psn = link.local_psn;
  a.eid = params.eid;
  if (link.first_contact) {
    a.fce.long_form = true;
    a.fce.v2_direct = params.smcr_v2_direct;
    a.fce.os_type = wire::kClcOsLinux;
    a.fce.release = wire::kSmcRelease21;
    a.fce.hostname = params.hostname;
    a.fce.max_conns = link.max_conns;
    a.fce.max_links = link.max_links;
    a.fce.feature_mask = wire::kClcFeatureEmulatedIsm;
    if (type == wire::ClcType::kConfirm) {
      a.gid_count = 1;
      a.gids[0] = params.smcr.gid;
    }
  }
  return a;
}

wire::ClcDecline BuildSmcrDecline(uint32_t reason, bool out_of_sync) {
  wire::ClcDecline d = BuildDecline(reason);
  d.out_of_sync = out_of_sync;
  return d;
}

void TakePeerAccept(const wire::ClcSmcrAccept& a, SmcrLink& link) {
  link.peer_system_id = a.peer_id;
  link.peer_gid = a.gid;
  link.peer_mac = a.mac;
  link.peer_qpn = a.qpn;
  link.peer_psn = a.psn;
  link.peer_rkey = a.rmb_rkey;
  link.peer_vaddr = a.rmb_vaddr;
  link.peer_token = a.rmbe_alert_token;
  link.peer_rmb_size =
      static_cast<uint32_t>(wire::UncompressBufSize(a.rmbe_size));
  link.eid = a.eid;
}

bool ValidSmcrRmbSize(uint32_t size) {
  return size >= wire::kMinBufSize &&
         wire::UncompressBufSize(
             wire::CompressBufSize(size, wire::kSmcrMaxCompressed)) == size;
}

}  // namespace usmc::engine
