#include "wire/reason.h"

#include <algorithm>
#include <array>
#include <cstdio>

namespace usmc::wire {
namespace {

constexpr std::array kReasons = {
    ReasonInfo{kReasonMem, "MEM", "insufficient memory for SMC buffers"},
    ReasonInfo{kReasonNoFd, "NOFD",
               "out of file descriptors (EMFILE/ENFILE) setting up SMC"},
    ReasonInfo{kReasonTimeoutCl, "TIMEOUT_CL",
               "timeout waiting for CONFIRM LINK"},
    ReasonInfo{kReasonTimeoutAl, "TIMEOUT_AL", "timeout waiting for ADD LINK"},
    ReasonInfo{kReasonCnfErr, "CNFERR", "configuration error"},
    ReasonInfo{kReasonNoNegotiation, "NONEGOTIATION",
               "the SMC negotiation program is not attached here (usmc setup)"},
    ReasonInfo{kReasonPeerNoSmc, "PEERNOSMC",
               "peer did not indicate SMC capability (no TCP option)"},
    ReasonInfo{kReasonIpsec, "IPSEC", "IPsec is in use on the connection"},
    ReasonInfo{kReasonNoSmcDev, "NOSMCDEV",
               "no SMC device (SMC-R or SMC-D) usable"},
    ReasonInfo{kReasonNoSmcdDev, "NOSMCDDEV", "no SMC-D device usable"},
    ReasonInfo{kReasonNoSmcrDev, "NOSMCRDEV", "no SMC-R device usable"},
    ReasonInfo{kReasonNoIsm2Supp, "NOISM2SUPP",
               "ISM device does not support SMC-Dv2"},
    ReasonInfo{kReasonNoV2Ext, "NOV2EXT", "peer sent no SMC v2 extension"},
    ReasonInfo{kReasonNoV2DExt, "NOV2DEXT", "peer sent no SMC-Dv2 extension"},
    ReasonInfo{kReasonNoSeid, "NOSEID", "peer sent no system EID"},
    ReasonInfo{kReasonNoSmcd2Dev, "NOSMCD2DEV", "no SMC-Dv2 device usable"},
    ReasonInfo{kReasonNoUeid, "NOUEID", "no matching user EID"},
    ReasonInfo{kReasonReleaseErr, "RELEASEERR",
               "SMC release negotiation failed"},
    ReasonInfo{kReasonMaxConnErr, "MAXCONNERR",
               "maximum connections negotiation failed"},
    ReasonInfo{kReasonMaxLinkErr, "MAXLINKERR",
               "maximum links negotiation failed"},
    ReasonInfo{kReasonModeUnsupp, "MODEUNSUPP",
               "SMC modes of the peers do not match"},
    ReasonInfo{kReasonRmbeEc, "RMBE_EC", "peer requires an RMBE eyecatcher"},
    ReasonInfo{kReasonOptUnsupp, "OPTUNSUPP",
               "socket option not supported with SMC (e.g. TCP Fast Open)"},
    ReasonInfo{kReasonDiffPrefix, "DIFFPREFIX",
               "peers are not in the same IP subnet"},
    ReasonInfo{kReasonGetVlanErr, "GETVLANERR", "cannot determine the VLAN ID"},
    ReasonInfo{kReasonIsmVlanErr, "ISMVLANERR",
               "cannot register the VLAN on the ISM device"},
    ReasonInfo{kReasonNoActLink, "NOACTLINK",
               "no active link in the link group"},
    ReasonInfo{kReasonNoSrvLink, "NOSRVLINK", "server link not found"},
    ReasonInfo{kReasonVersMismat, "VERSMISMAT", "SMC version mismatch"},
    ReasonInfo{kReasonMaxDmb, "MAX_DMB", "SMC-D DMB limit reached"},
    ReasonInfo{kReasonNoRoute, "NOROUTE", "SMC-Rv2: no route to the peer"},
    ReasonInfo{kReasonNoIndirect, "NOINDIRECT",
               "SMC-Rv2: direct/indirect mismatch"},
    ReasonInfo{kReasonSyncErr, "SYNCERR", "link group synchronisation error"},
    ReasonInfo{kReasonPeerDecl, "PEERDECL", "peer declined the SMC handshake"},
    ReasonInfo{kReasonIntErr, "INTERR", "internal error"},
    ReasonInfo{kReasonErrRtok, "ERR_RTOK", "rtoken handling failed"},
    ReasonInfo{kReasonErrRdyLnk, "ERR_RDYLNK", "link could not be made ready"},
    ReasonInfo{kReasonErrRegBuf, "ERR_REGBUF", "buffer registration failed"},
};

static_assert(std::is_sorted(kReasons.begin(), kReasons.end(),
                             [](const ReasonInfo& a, const ReasonInfo& b) {
                               return a.code < b.code;
                             }));

}  // namespace

std::span<const ReasonInfo> AllReasons() { return kReasons; }

const ReasonInfo* FindReason(uint32_t code) {
  auto it = std::lower_bound(
      kReasons.begin(), kReasons.end(), code,
      [](const ReasonInfo& r, uint32_t c) { return r.code < c; });
  return (it != kReasons.end() && it->code == code) ? &*it : nullptr;
}

std::string_view ReasonName(uint32_t code) {
  const ReasonInfo* r = FindReason(code);
  return r ? r->name : "UNKNOWN";
}

std::string_view ReasonMeaning(uint32_t code) {
  const ReasonInfo* r = FindReason(code);
  return r ? r->meaning : "unknown reason";
}

std::string FormatReason(uint32_t code) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08x ", code);
  return std::string(hex) + std::string(ReasonName(code));
}

}  // namespace usmc::wire
