// wire/llc_layout.h: byte offsets of the LLC layouts (PROTOCOL.md §3.3),
// private to llc*.cc. Offsets are from the start of the message.
#ifndef USMC_WIRE_LLC_LAYOUT_H_
#define USMC_WIRE_LLC_LAYOUT_H_

#include <cstddef>
#include <cstdint>

namespace usmc::wire::llc_internal {

// Common header.
inline constexpr size_t kType = 0;
inline constexpr size_t kLength = 1;     // V1: u8; V2: u16 LE at 1-2
inline constexpr size_t kRejReason = 2;  // V1 ADD_LINK: low nibble
inline constexpr size_t kFlags = 3;
inline constexpr size_t kHeaderLen = 4;

// CONFIRM_LINK.
inline constexpr size_t kClMac = 4;
inline constexpr size_t kClGid = 10;
inline constexpr size_t kClQpn = 26;
inline constexpr size_t kClLinkNum = 29;
inline constexpr size_t kClLinkUid = 30;
inline constexpr size_t kClMaxLinks = 34;
inline constexpr size_t kClMaxConns = 35;

// ADD_LINK and its V2 extension.
inline constexpr size_t kAlMac = 4;
inline constexpr size_t kAlGid = 12;
inline constexpr size_t kAlQpn = 28;
inline constexpr size_t kAlLinkNum = 31;
inline constexpr size_t kAlMtu = 32;
inline constexpr size_t kAlPsn = 33;
inline constexpr size_t kAlExt = 44;
inline constexpr size_t kAlExtFlags = 44;  // 0x80 v2_direct
inline constexpr size_t kAlExtTargetGid = 46;
inline constexpr size_t kAlExtNumRkeys = 70;  // u16 host (LE) order
inline constexpr size_t kAlExtRkeys = 72;
inline constexpr size_t kRkeyPairLen = 16;
inline constexpr uint8_t kAlV2Direct = 0x80;

// ADD_LINK_CONT.
inline constexpr size_t kAlcLinkNum = 4;
inline constexpr size_t kAlcNumRkeys = 5;
inline constexpr size_t kAlcRkeys = 8;

// DELETE_LINK.
inline constexpr size_t kDlLinkNum = 4;
inline constexpr size_t kDlReason = 5;

// REQ_ADD_LINK.
inline constexpr size_t kRalGidCnt = 24;
inline constexpr size_t kRalGids = 28;

// CONFIRM_RKEY: three packed 13-byte rtokens {u8, rkey BE32, vaddr BE64}.
inline constexpr size_t kCrRtokens = 4;
inline constexpr size_t kRtokenLen = 13;
// CONFIRM_RKEY_CONT: count byte, then three rtokens.
inline constexpr size_t kCrcNumRkeys = 4;
inline constexpr size_t kCrcRtokens = 5;

// TEST_LINK.
inline constexpr size_t kTlUserData = 4;

// DELETE_RKEY.
inline constexpr size_t kDrNumRkeys = 4;
inline constexpr size_t kDrErrMask = 5;  // V2: num_inval_rkeys
inline constexpr size_t kDrRkeys = 8;

// Canonical V2 lengths.
constexpr size_t AddLinkV2Len(size_t num_rkeys) {
  return kAlExtRkeys + kRkeyPairLen * num_rkeys;
}
constexpr size_t AtLeast44(size_t n) { return n < 44 ? 44 : n; }
constexpr size_t ReqAddLinkLen(size_t gid_cnt) {
  return AtLeast44(kRalGids + 16 * gid_cnt);
}
constexpr size_t DeleteRkeyV2Len(size_t num_rkeys) {
  return AtLeast44(kDrRkeys + 4 * num_rkeys);
}

static_assert(kAlExtRkeys == kAlExt + 28, "V2 extension fixed part is 28");
static_assert(kCrRtokens + 3 * kRtokenLen + 1 == 44, "CONFIRM_RKEY layout");
static_assert(kCrcRtokens + 3 * kRtokenLen == 44, "CONFIRM_RKEY_CONT layout");
static_assert(kDrRkeys + 4 * 8 + 4 == 44, "DELETE_RKEY v1 layout");
static_assert(kAlcRkeys + 2 * kRkeyPairLen + 4 == 44, "ADD_LINK_CONT layout");
static_assert(ReqAddLinkLen(1) == 44 && ReqAddLinkLen(2) == 60);
static_assert(DeleteRkeyV2Len(9) == 44 && DeleteRkeyV2Len(255) == 1028);
static_assert(AddLinkV2Len(255) <= 8192);

}  // namespace usmc::wire::llc_internal

#endif  // USMC_WIRE_LLC_LAYOUT_H_
