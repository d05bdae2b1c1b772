// wire/llc.h: LLC (Link Layer Control) messages of SMC-R link groups.
//
// LLC messages travel as IB SENDs over the RC QP of a link (PROTOCOL.md §3).
// Byte 0 is (llc_version << 4) | type. V1 messages are exactly 44 bytes with
// the length in byte 1. V2 link groups (byte 0 = 0x2X) carry a 16-bit
// length_v2 in bytes 1-2 that Linux writes in HOST byte order, which is
// little-endian on x86-64 (the capture in tests/data/kernel shows 0x2c00 for
// 44); usmc matches it on the wire with LoadLe16/StoreLe16. Every other
// multi-byte field is big-endian, except the ADD_LINK v2 extension's
// num_rkeys, which Linux also writes in host order (little-endian here).
//
// Decoding never allocates: each message struct holds fixed arrays plus a
// count. Decoders validate every length and count and name the failing field;
// encoders write into a caller-owned buffer, zero every reserved byte and bit
// and compute the length themselves (LlcHeader::length is informational).
//
//   WireResult<LlcMessage> m = DecodeLlc(payload);
//   if (m && std::holds_alternative<LlcTestLink>(*m)) {
//     LlcTestLink reply = std::get<LlcTestLink>(*m);
//     reply.hdr.response = true;
//     std::array<std::byte, kLlcMsgLen> out;
//     WireResult<size_t> n = EncodeLlc(reply, out);   // 44
//   }
#ifndef USMC_WIRE_LLC_H_
#define USMC_WIRE_LLC_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "wire/error.h"

namespace usmc::wire {

inline constexpr size_t kLlcMsgLen = 44;      // V1 length, V2 minimum
inline constexpr size_t kLlcMaxLenV2 = 8192;  // SMC_WR_BUF_V2_SIZE
inline constexpr uint8_t kLlcVersion2 = 2;    // high nibble of byte 0
inline constexpr size_t kLlcGidLen = 16;
inline constexpr size_t kLlcMacLen = 6;

// Flag bits of byte 3. kLlcFlagResponse is common to all types; the others
// are per type as named.
inline constexpr uint8_t kLlcFlagResponse = 0x80;
inline constexpr uint8_t kLlcFlagNoRmbeEyecatcher = 0x03;  // CONFIRM_LINK
inline constexpr uint8_t kLlcFlagAddLinkRejected = 0x40;   // ADD_LINK(+REQ v2)
inline constexpr uint8_t kLlcFlagDeleteLinkAll = 0x40;     // DELETE_LINK
inline constexpr uint8_t kLlcFlagDeleteLinkOrderly = 0x20;
inline constexpr uint8_t kLlcFlagRkeyNegative = 0x20;  // (DELETE_/CONFIRM_)RKEY
inline constexpr uint8_t kLlcFlagRkeyRetry = 0x10;     // CONFIRM_RKEY

inline constexpr uint8_t kLlcRejectNoAltPath = 1;  // ADD_LINK reject reason

// Protocol limits (PROTOCOL.md §3.3).
inline constexpr size_t kLlcDeleteRkeyMaxV1 = 8;
inline constexpr size_t kLlcMaxRkeysV2 = 255;    // ADD_LINK v2 / DELETE_RKEY v2
inline constexpr size_t kLlcMaxGids = 255;       // REQ_ADD_LINK gid_cnt (u8)
inline constexpr uint8_t kLlcMaxOtherLinks = 7;  // links per group <= 8

// The low nibble of byte 0.
enum class LlcType : uint8_t {
  kConfirmLink = 0x01,
  kAddLink = 0x02,
  kAddLinkCont = 0x03,  // V1 only
  kDeleteLink = 0x04,
  kReqAddLink = 0x05,  // V2 only (0x25)
  kConfirmRkey = 0x06,
  kTestLink = 0x07,
  kConfirmRkeyCont = 0x08,  // V1 only
  kDeleteRkey = 0x09,
};
std::string_view ToString(LlcType t);  // "CONFIRM_LINK"
std::ostream& operator<<(std::ostream& os, LlcType t);

// DELETE_LINK reason codes (BE32 at offset 5).
enum class LlcDeleteLinkReason : uint32_t {
  kNone = 0x00000000,  // used in successful responses
  kLostPath = 0x00010000,
  kOpInitTerm = 0x00020000,    // operator initiated termination
  kProgInitTerm = 0x00030000,  // program initiated termination
  kProtViol = 0x00040000,      // LLC protocol violation
  kNoAsymNeeded = 0x00050000,  // asymmetric link no longer needed
  kNoLnk = 0x00100000,         // response: link id not found
  kNoLgr = 0x00200000,         // response: link group not found
};
// "LOST_PATH"; "UNKNOWN" for other codes.
std::string_view ToString(LlcDeleteLinkReason r);
std::ostream& operator<<(std::ostream& os, LlcDeleteLinkReason r);
// Name of a raw reason code as received ("UNKNOWN" if not in the table).
std::string_view LlcDeleteLinkReasonName(uint32_t code);

using Gid = std::array<uint8_t, kLlcGidLen>;
using Mac = std::array<uint8_t, kLlcMacLen>;

// Header fields every type shares.
struct LlcHeader {
  bool v2 = false;        // byte 0 high nibble 2 (and length_v2 in bytes 1-2)
  bool response = false;  // flag 0x80
  // Length on the wire as decoded (44 for V1; length_v2 for V2). Encoders
  // ignore it and write the canonical length of what they encode.
  uint16_t length = 0;

  friend bool operator==(const LlcHeader&, const LlcHeader&) = default;
};

// An rkey triple as ADD_LINK v2 and ADD_LINK_CONT carry it: the RMB's rkey
// on the existing link, its rkey on the new link, its address on the new link.
struct LlcRkeyPair {
  uint32_t rkey = 0;
  uint32_t rkey_new = 0;
  uint64_t vaddr_new = 0;

  friend bool operator==(const LlcRkeyPair&, const LlcRkeyPair&) = default;
};

// A 13-byte packed rtoken of CONFIRM_RKEY(_CONT): {link id or count, rkey,
// vaddr}.
struct LlcRtoken {
  uint8_t link_id = 0;  // rtoken[0] of CONFIRM_RKEY: unused (count is there)
  uint32_t rkey = 0;
  uint64_t vaddr = 0;

  friend bool operator==(const LlcRtoken&, const LlcRtoken&) = default;
};

// CONFIRM_LINK (0x01 / 0x21): activates a new link; sent over that link.
struct LlcConfirmLink {
  LlcHeader hdr;
  // Flag bits 0x03. Linux sends both and accepts either bit as "set"; usmc
  // decodes like Linux and encodes 0x03.
  bool no_rmbe_eyecatcher = true;
  Mac sender_mac{};
  Gid sender_gid{};
  uint32_t sender_qpn = 0;  // 24 bits
  uint8_t link_num = 0;     // assigned by the server
  uint32_t link_uid = 0;
  uint8_t max_links = 0;
  uint8_t max_conns = 0;  // byte 35, SMC v2.1 (release 1); else 0

  friend bool operator==(const LlcConfirmLink&,
                         const LlcConfirmLink&) = default;
};

// ADD_LINK (0x02 / 0x22).
struct LlcAddLink {
  LlcHeader hdr;
  bool rejected = false;  // flag 0x40
  // V1: low nibble of byte 2. V2: byte 2 belongs to length_v2, so the reason
  // sits in the low nibble of the flags byte (Wireshark, IBM SMCv2 spec;
  // Linux never sends a v2 reason, see docs/wire-llc-cdc.md).
  uint8_t reject_reason = 0;
  Mac sender_mac{};
  Gid sender_gid{};
  uint32_t sender_qpn = 0;  // of the new link, 24 bits
  uint8_t link_num = 0;
  uint8_t qp_mtu = 0;        // IB MTU enum, 4 bits
  uint32_t initial_psn = 0;  // 24 bits
  // V2 extension at offset 44 (present iff length_v2 > 44).
  bool has_v2_ext = false;
  bool v2_direct = false;
  Gid client_target_gid{};
  uint16_t num_rkeys = 0;  // host (little-endian) order on the wire, <= 255
  std::array<LlcRkeyPair, kLlcMaxRkeysV2> rkeys{};

  friend bool operator==(const LlcAddLink&, const LlcAddLink&) = default;
};

// ADD_LINK_CONT (0x03, V1 only): two rkey triples per message.
struct LlcAddLinkCont {
  LlcHeader hdr;
  uint8_t link_num = 0;
  // Rkeys still to be sent including this message's, so it may exceed 2;
  // both entries are always decoded and encoded.
  uint8_t num_rkeys = 0;
  std::array<LlcRkeyPair, 2> rkeys{};

  friend bool operator==(const LlcAddLinkCont&,
                         const LlcAddLinkCont&) = default;
};

// DELETE_LINK (0x04 / 0x24).
struct LlcDeleteLink {
  LlcHeader hdr;
  bool all = false;      // flag 0x40: terminate the whole link group
  bool orderly = false;  // flag 0x20
  uint8_t link_num = 0;
  uint32_t reason = 0;  // LlcDeleteLinkReason values; unknown codes kept

  friend bool operator==(const LlcDeleteLink&, const LlcDeleteLink&) = default;
};

// REQ_ADD_LINK (0x25, V2 only): the client's GID list; variable length
// max(44, 28 + 16 * gid_cnt).
struct LlcReqAddLink {
  LlcHeader hdr;
  bool rejected = false;      // flag 0x40 (Wireshark; unused by Linux)
  uint8_t reject_reason = 0;  // flags low nibble (Wireshark; unused by Linux)
  uint8_t gid_cnt = 0;
  std::array<Gid, kLlcMaxGids> gids{};

  friend bool operator==(const LlcReqAddLink&, const LlcReqAddLink&) = default;
};

// CONFIRM_RKEY (0x06 / 0x26): a new RMB's rtokens for all links.
struct LlcConfirmRkey {
  LlcHeader hdr;
  bool negative = false;  // flag 0x20
  bool retry = false;     // flag 0x10
  // Byte 4: how many rtokens for OTHER links follow (rtokens[1..]); at most
  // 7 (a group has at most 8 links; more than 2 need CONFIRM_RKEY_CONT).
  uint8_t num_other_rtokens = 0;
  // rtokens[0] is for the link the message is sent on (its link_id byte is
  // the count above and is ignored); [1], [2] carry a link id.
  std::array<LlcRtoken, 3> rtokens{};

  friend bool operator==(const LlcConfirmRkey&,
                         const LlcConfirmRkey&) = default;
};

// CONFIRM_RKEY_CONT (0x08, V1 only; Linux never sends it).
struct LlcConfirmRkeyCont {
  LlcHeader hdr;
  bool negative = false;
  bool retry = false;
  uint8_t num_rkeys = 0;  // rtokens remaining, <= 7
  std::array<LlcRtoken, 3> rtokens{};

  friend bool operator==(const LlcConfirmRkeyCont&,
                         const LlcConfirmRkeyCont&) = default;
};

// TEST_LINK (0x07 / 0x27): keepalive, echoed with RESPONSE.
struct LlcTestLink {
  LlcHeader hdr;
  std::array<uint8_t, 16> user_data{};

  friend bool operator==(const LlcTestLink&, const LlcTestLink&) = default;
};

// DELETE_RKEY (0x09 / 0x29).
struct LlcDeleteRkey {
  LlcHeader hdr;
  bool negative = false;  // flag 0x20
  uint8_t num_rkeys = 0;  // V1 <= 8; V2 <= 255 and 8 + 4n <= length_v2
  // Byte 5. V1: error mask, bit (7 - i) set if rkeys[i] was unknown.
  // V2: number of rkeys that were unknown (<= num_rkeys).
  uint8_t error_mask = 0;                        // V1 only
  uint8_t num_inval_rkeys = 0;                   // V2 only
  std::array<uint32_t, kLlcMaxRkeysV2> rkeys{};  // first num_rkeys used

  friend bool operator==(const LlcDeleteRkey&, const LlcDeleteRkey&) = default;
};

using LlcMessage = std::variant<LlcConfirmLink, LlcAddLink, LlcAddLinkCont,
                                LlcDeleteLink, LlcReqAddLink, LlcConfirmRkey,
                                LlcConfirmRkeyCont, LlcTestLink, LlcDeleteRkey>;

LlcType TypeOf(const LlcMessage& m);
const LlcHeader& HeaderOf(const LlcMessage& m);

// Decodes one LLC message from a SEND payload (bytes after the message, up
// to the span's end, are ignored). Errors:
//   kTruncated "llc.header" (< 4 bytes) / "llc.message" (< 44, < length_v2);
//   kBadVersion "llc.version" (high nibble neither 0 nor 2);
//   kBadType "llc.type" (unknown type, CDC 0xFE, or a type that does not
//     exist in that version: 0x05, 0x23, 0x28);
//   kBadLength "llc.length" (V1 != 44) / "llc.length_v2" (< 44 or > 8192) /
//     "llc.add_link.length_v2" (45..71: extension cut);
//   kBadCount with the count's field name (see each struct).
WireResult<LlcMessage> DecodeLlc(std::span<const std::byte> bytes);

// Canonical encoded length of m (what EncodeLlc returns on success).
size_t LlcEncodedLength(const LlcMessage& m);

// Encoders: write the message into out and return its length. Errors:
// kBufferTooSmall "llc.message"; kBadVersion "llc.version" (a V1-only type
// with hdr.v2, REQ_ADD_LINK without it); kBadCount / kBadValue for counts
// and fields out of range (24-bit QPN/PSN, 4-bit MTU/reason).
WireResult<size_t> EncodeLlc(const LlcConfirmLink& m, std::span<std::byte> out);
WireResult<size_t> EncodeLlc(const LlcAddLink& m, std::span<std::byte> out);
WireResult<size_t> EncodeLlc(const LlcAddLinkCont& m, std::span<std::byte> out);
WireResult<size_t> EncodeLlc(const LlcDeleteLink& m, std::span<std::byte> out);
WireResult<size_t> EncodeLlc(const LlcReqAddLink& m, std::span<std::byte> out);
WireResult<size_t> EncodeLlc(const LlcConfirmRkey& m, std::span<std::byte> out);
WireResult<size_t> EncodeLlc(const LlcConfirmRkeyCont& m,
                             std::span<std::byte> out);
WireResult<size_t> EncodeLlc(const LlcTestLink& m, std::span<std::byte> out);
WireResult<size_t> EncodeLlc(const LlcDeleteRkey& m, std::span<std::byte> out);
WireResult<size_t> EncodeLlc(const LlcMessage& m, std::span<std::byte> out);

// "field: value" lines for humans, starting with "type: ADD_LINK v2".
std::string DescribeLlc(const LlcMessage& m);

}  // namespace usmc::wire

#endif  // USMC_WIRE_LLC_H_
