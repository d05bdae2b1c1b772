// wire/reason.h: SMC decline and fallback reason codes (PROTOCOL.md §2.7).
//
// A reason code is the 32-bit "peer diagnosis" of a CLC Decline and the
// fallback reason usmc reports for a connection that stayed TCP. Codes are
// plain integers on the wire; a peer may send codes this table does not know,
// so lookups never fail: unknown codes print as hex.
//
//   std::cout << ReasonName(kReasonPeerNoSmc);   // "PEERNOSMC"
//   std::cout << FormatReason(0x03030000);       // "0x03030000 NOSMCDEV"
#ifndef USMC_WIRE_REASON_H_
#define USMC_WIRE_REASON_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace usmc::wire {

inline constexpr uint32_t kReasonMem = 0x01010000;
// usmc's own: the process (or the system) ran out of file descriptors
// setting up SMC-D (EMFILE/ENFILE), not out of memory. The kernel has no
// fds to run out of; a kernel peer prints the code as hex.
inline constexpr uint32_t kReasonNoFd = 0x01020000;
inline constexpr uint32_t kReasonTimeoutCl = 0x02010000;
inline constexpr uint32_t kReasonTimeoutAl = 0x02020000;
inline constexpr uint32_t kReasonCnfErr = 0x03000000;
// usmc's own, never sent: the eBPF program that writes the SMC TCP option
// (`usmc setup`) is not attached for this socket's cgroup, so no SMC
// was offered at all.
inline constexpr uint32_t kReasonNoNegotiation = 0x03000001;
inline constexpr uint32_t kReasonPeerNoSmc = 0x03010000;
inline constexpr uint32_t kReasonIpsec = 0x03020000;
inline constexpr uint32_t kReasonNoSmcDev = 0x03030000;
inline constexpr uint32_t kReasonNoSmcdDev = 0x03030001;
inline constexpr uint32_t kReasonNoSmcrDev = 0x03030002;
inline constexpr uint32_t kReasonNoIsm2Supp = 0x03030003;
inline constexpr uint32_t kReasonNoV2Ext = 0x03030004;
inline constexpr uint32_t kReasonNoV2DExt = 0x03030005;
inline constexpr uint32_t kReasonNoSeid = 0x03030006;
inline constexpr uint32_t kReasonNoSmcd2Dev = 0x03030007;
inline constexpr uint32_t kReasonNoUeid = 0x03030008;
inline constexpr uint32_t kReasonReleaseErr = 0x03030009;
inline constexpr uint32_t kReasonMaxConnErr = 0x0303000a;
inline constexpr uint32_t kReasonMaxLinkErr = 0x0303000b;
inline constexpr uint32_t kReasonModeUnsupp = 0x03040000;
inline constexpr uint32_t kReasonRmbeEc = 0x03050000;
inline constexpr uint32_t kReasonOptUnsupp = 0x03060000;
inline constexpr uint32_t kReasonDiffPrefix = 0x03070000;
inline constexpr uint32_t kReasonGetVlanErr = 0x03080000;
inline constexpr uint32_t kReasonIsmVlanErr = 0x03090000;
inline constexpr uint32_t kReasonNoActLink = 0x030a0000;
inline constexpr uint32_t kReasonNoSrvLink = 0x030b0000;
inline constexpr uint32_t kReasonVersMismat = 0x030c0000;
inline constexpr uint32_t kReasonMaxDmb = 0x030d0000;
inline constexpr uint32_t kReasonNoRoute = 0x030e0000;
inline constexpr uint32_t kReasonNoIndirect = 0x030f0000;
inline constexpr uint32_t kReasonSyncErr = 0x04000000;
inline constexpr uint32_t kReasonPeerDecl = 0x05000000;
inline constexpr uint32_t kReasonIntErr = 0x09990000;
inline constexpr uint32_t kReasonErrRtok = 0x09990001;
inline constexpr uint32_t kReasonErrRdyLnk = 0x09990002;
inline constexpr uint32_t kReasonErrRegBuf = 0x09990003;

struct ReasonInfo {
  uint32_t code;
  std::string_view name;  // the kernel's SMC_CLC_DECL_ suffix, e.g. "NOSMCDEV"
  std::string_view meaning;  // a sentence for humans (usmc chk, usmc ss)
};

// Every code usmc knows, in ascending order.
std::span<const ReasonInfo> AllReasons();

// The entry for code, or nullptr if the code is not in the table.
const ReasonInfo* FindReason(uint32_t code);

// "NOSMCDEV"; "UNKNOWN" for codes not in the table.
std::string_view ReasonName(uint32_t code);

// "no SMC device (R or D)"; "unknown reason" for codes not in the table.
std::string_view ReasonMeaning(uint32_t code);

// "0x03030000 NOSMCDEV" (or "0x12345678 UNKNOWN").
std::string FormatReason(uint32_t code);

}  // namespace usmc::wire

#endif  // USMC_WIRE_REASON_H_
