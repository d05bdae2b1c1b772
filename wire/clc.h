// wire/clc.h: CLC (Connection Layer Control) messages, the SMC handshake that
// runs as the first bytes of the TCP connection (PROTOCOL.md §2).
//
// Proposal, Accept, Confirm and Decline, versions 1 and 2, SMC-R and SMC-D.
// Decoders take the bytes of exactly one message, validate every length,
// offset and count, and fill plain structs (fixed arrays + counts, no
// allocation). Encoders write into a buffer the caller owns, compute every
// length and offset themselves, and return the number of bytes written.
// ClcFrameDecoder cuts messages out of the TCP byte stream without ever
// consuming a byte past the end of the current message.
//
//   ClcDecline d;
//   d.peer_diagnosis = kReasonNoSmcDev;
//   std::array<std::byte, kClcMaxMessageLen> buf;
//   WireResult<size_t> n = EncodeClcDecline(d, buf);
//   WireResult<ClcMessage> m = DecodeClc(std::span(buf).first(*n));
//
// Reserved-bit policy: decoders accept nonzero reserved bits and bytes (be
// liberal), never interpret them, and keep them in each message's `reserved`
// member so that decode -> encode reproduces the input byte for byte.
// Senders leave `reserved` zero-initialised. Everything else that the layout
// fixes (lengths, offsets, counts, eyecatchers, types) is checked strictly.
// Fields of parts that the header says are absent (e.g. the V2 extension of
// a Proposal with typev2 N) are ignored by encoders and zero after decoding.
#ifndef USMC_WIRE_CLC_H_
#define USMC_WIRE_CLC_H_

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

// ---------------------------------------------------------------------------
// Sizes and limits (PROTOCOL.md §2).

inline constexpr size_t kClcHeaderLen = 8;
inline constexpr size_t kClcTrailerLen = 4;
inline constexpr size_t kClcDeclineV1Len = 28;
inline constexpr size_t kClcDeclineV2Len = 44;
inline constexpr size_t kClcSmcrAcceptV1Len = 68;       // Accept/Confirm R v1
inline constexpr size_t kClcSmcrAcceptV2BaseLen = 108;  // R v2 without FCE
inline constexpr size_t kClcSmcdAcceptV1Len = 48;       // Accept/Confirm D v1
inline constexpr size_t kClcSmcdAcceptV2BaseLen = 78;   // D v2 without FCE
inline constexpr size_t kClcFceShortLen = 36;    // First Contact Ext, v2.0 form
inline constexpr size_t kClcFceLongLen = 52;     // First Contact Ext, v2.1 form
inline constexpr size_t kClcSmcdAreaLen = 40;    // Proposal SMC-D area
inline constexpr size_t kClcV2ExtFixedLen = 40;  // Proposal V2 extension
inline constexpr size_t kClcSmcdV2ExtFixedLen = 48;  // SEID + reserved
inline constexpr size_t kClcIpv6PrefixLen = 17;
inline constexpr size_t kClcIsmGidEntryLen = 10;  // {GID BE64, CHID BE16}

inline constexpr size_t kClcMaxIpv6Prefixes = 8;   // SMC_CLC_MAX_V6_PREFIX
inline constexpr size_t kClcMaxEids = 8;           // SMC_CLC_MAX_UEID
inline constexpr size_t kClcMaxIsmGidEntries = 8;  // wire entries, not devices
// GIDs in a v2 SMC-R Confirm's GID list. Linux sends at most 2
// (GID_LIST_SIZE); usmc accepts up to 8.
inline constexpr size_t kClcMaxConfirmGids = 8;
inline constexpr size_t kClcMaxDeclineExtraDiagnoses = 4;

// The largest valid CLC message: a v2 Proposal with every list full
// (40 + 40 + 8 + 8*17 + 40 + 8*32 + 48 + 8*10 + 4). ClcFrameDecoder rejects
// any stated length above this.
inline constexpr size_t kClcMaxMessageLen = 652;

// SMC release in the V2 extension / FCE (bits 7-4 resp. 3-0).
inline constexpr uint8_t kSmcRelease20 = 0;
inline constexpr uint8_t kSmcRelease21 = 1;

// OS type nibble of the FCE and of a v2 Decline.
inline constexpr uint8_t kClcOsZos = 1;
inline constexpr uint8_t kClcOsLinux = 2;
inline constexpr uint8_t kClcOsAix = 3;

// feature_mask bit 0: Emulated-ISM devices supported (v2.1).
inline constexpr uint16_t kClcFeatureEmulatedIsm = 0x0001;

// A CHID whose high byte is 0xFF belongs to an Emulated-ISM device (Linux
// SMC_EMULATED_ISM_CHID_MASK); such a device has a 128-bit GID and takes two
// entries in the Proposal's ISM GID list.
constexpr bool IsEmulatedIsmChid(uint16_t chid) {
  return (chid & 0xFF00) == 0xFF00;
}

// ---------------------------------------------------------------------------
// Enums.

enum class ClcType : uint8_t {
  kProposal = 1,
  kAccept = 2,
  kConfirm = 3,
  kDecline = 4,
};

// The 4-byte EBCDIC eyecatcher at the head and in the trailer.
enum class ClcEyecatcher : uint8_t {
  kSmcr,  // E2 D4 C3 D9 "SMCR"
  kSmcd,  // E2 D4 C3 C4 "SMCD"
};

// The 2-bit SMC type of the header (typev1 / typev2).
enum class SmcType : uint8_t {
  kR = 0,     // SMC-R only
  kD = 1,     // SMC-D only
  kNone = 2,  // neither
  kBoth = 3,  // SMC-R and SMC-D
};

std::string_view ToString(ClcType t);
std::string_view ToString(ClcEyecatcher e);
std::string_view ToString(SmcType t);
std::ostream& operator<<(std::ostream& os, ClcType t);
std::ostream& operator<<(std::ostream& os, ClcEyecatcher e);
std::ostream& operator<<(std::ostream& os, SmcType t);

constexpr bool SmcrIndicated(SmcType t) {
  return t == SmcType::kR || t == SmcType::kBoth;
}
constexpr bool SmcdIndicated(SmcType t) {
  return t == SmcType::kD || t == SmcType::kBoth;
}

// ---------------------------------------------------------------------------
// Field types. Byte strings are kept exactly as on the wire.

using ClcPeerId = std::array<uint8_t, 8>;  // 2 random bytes + 6-byte MAC
using ClcGid = std::array<uint8_t, 16>;    // RoCE GID (IPv4-mapped for v2)
using ClcMac = std::array<uint8_t, 6>;
using ClcEid = std::array<uint8_t, 32>;       // ASCII, blank padded
using ClcHostname = std::array<uint8_t, 32>;  // ASCII, blank padded

// A blank-padded 32-byte field from text, copied as is (no case change);
// text longer than 32 bytes is cut. MakeClcEid("LAB-UEID").
ClcEid MakeClcEid(std::string_view text);
ClcHostname MakeClcHostname(std::string_view text);
// The text of a blank-padded field without the trailing blanks and NULs.
std::string_view ClcText(std::span<const uint8_t> padded);

// ---------------------------------------------------------------------------
// The 8-byte header, decodable on its own (the frame decoder uses it).

struct ClcHeader {
  ClcEyecatcher eyecatcher = ClcEyecatcher::kSmcr;
  ClcType type = ClcType::kDecline;
  uint16_t length = 0;  // whole message, header and trailer included
  uint8_t version = 0;  // bits 7-4 of byte 7
  uint8_t typev2 = 0;   // bits 3-2, raw
  uint8_t typev1 = 0;   // bits 1-0, raw
};

// Decodes and checks the eyecatcher, type (1..4), version (>= 1) and that
// the length lies in [kClcDeclineV1Len, kClcMaxMessageLen]. Needs >= 8
// bytes (kTruncated "clc.header" otherwise).
WireResult<ClcHeader> DecodeClcHeader(std::span<const std::byte> bytes);

// ---------------------------------------------------------------------------
// PROPOSAL (client -> server), PROTOCOL.md §2.2.

struct ClcIpv6Prefix {
  std::array<uint8_t, 16> prefix{};
  uint8_t prefix_len = 0;
  bool operator==(const ClcIpv6Prefix&) const = default;
};

// One ISMv2 device of the Proposal's GID list. An Emulated-ISM device
// (IsEmulatedIsmChid(chid)) is sent as two entries {gid, chid},
// {gid_ext, chid}; for other devices gid_ext is not sent and must be 0.
struct ClcIsmDevice {
  uint64_t gid = 0;
  uint16_t chid = 0;
  uint64_t gid_ext = 0;
  bool operator==(const ClcIsmDevice&) const = default;
};

struct ClcProposalReserved {
  // v1: header bits 3-2 (typev2 exists only from v2 on).
  uint8_t v1_typev2_bits = 0;
  // v1 only: bytes 50-51 (v2_ext_offset in v2) of the SMC-D area.
  uint16_t v1_smcd_area_word = 0;
  // v2 with typev1 == kNone: the unused iparea_offset (0 or 40).
  uint16_t unused_iparea_offset = 0;
  std::array<uint8_t, 20> smcd_area{};    // bytes 60-79
  std::array<uint8_t, 2> prefix_area{};   // IPv4 prefix area +5..+6
  uint8_t v2_ext_byte2 = 0;               // V2 extension +2
  uint8_t v2_ext_flag_bits = 0;           // V2 extension +3, bits 3-1
  std::array<uint8_t, 2> v2_ext_word4{};  // V2 extension +4..+5
  std::array<uint8_t, 12> v2_ext_tail{};  // V2 extension +28..+39
  std::array<uint8_t, 16> smcd_v2_ext{};  // SMC-Dv2 extension +32..+47
  bool operator==(const ClcProposalReserved&) const = default;
};

struct ClcProposal {
  ClcEyecatcher eyecatcher = ClcEyecatcher::kSmcr;  // Linux: always SMCR
  ClcEyecatcher trailer = ClcEyecatcher::kSmcr;
  uint8_t version = 2;              // 1, or >= 2 (v2 layout)
  SmcType typev1 = SmcType::kNone;  // V1 paths offered
  SmcType typev2 = SmcType::kNone;  // V2 paths offered (v2; kNone in v1)

  ClcPeerId peer_id{};
  ClcGid gid{};  // client preferred GID (SMC-Rv1)
  ClcMac mac{};

  // SMC-D area (bytes 40-79). Always present in v2; in v1 present iff
  // iparea_offset is 40 (an iparea_offset of 0 means prefix area at 40).
  bool has_smcd_area = true;
  uint64_t ism_gid = 0;  // native ISM GID (SMC-Dv1 device)
  uint16_t ism_chid = 0;
  std::array<uint8_t, 3> vendor_oui{};
  std::array<uint8_t, 5> vendor_exp_options{};

  // IP prefix area: present in v1 always, in v2 iff typev1 != kNone.
  std::array<uint8_t, 4> ipv4_subnet{};  // network byte order
  uint8_t ipv4_prefix_len = 0;
  uint8_t ipv6_prefix_count = 0;  // <= kClcMaxIpv6Prefixes
  std::array<ClcIpv6Prefix, kClcMaxIpv6Prefixes> ipv6_prefixes{};

  // V2 extension: present iff version >= 2 and typev2 != kNone.
  uint8_t release = kSmcRelease21;  // 4 bits
  bool seid_indicator = false;
  ClcGid roce_v2_gid{};   // SMC-Rv2
  uint8_t max_conns = 0;  // v2.1
  uint8_t max_links = 0;  // v2.1
  uint16_t feature_mask = 0;
  uint8_t eid_count = 0;  // UEIDs, <= kClcMaxEids
  std::array<ClcEid, kClcMaxEids> eids{};

  // SMC-Dv2 extension + GID list: present iff typev2 includes D.
  ClcEid seid{};                 // system EID
  uint8_t ism_device_count = 0;  // devices; wire entries <= 8
  std::array<ClcIsmDevice, kClcMaxIsmGidEntries> ism_devices{};

  ClcProposalReserved reserved;

  bool HasPrefixArea() const;
  bool HasV2Extension() const;
  bool HasSmcdV2Extension() const;
  bool operator==(const ClcProposal&) const = default;
};

// ---------------------------------------------------------------------------
// First Contact Extension of a v2 Accept/Confirm (PROTOCOL.md §2.5).

struct ClcFirstContactExt {
  // true: the 52-byte v2.1 form (Linux: always for SMC-R, and for SMC-D
  // with release >= 1); false: the 36-byte v2.0 form.
  bool long_form = true;
  bool v2_direct = false;           // SMC-R: peer on the same subnet
  uint8_t os_type = kClcOsLinux;    // 4 bits
  uint8_t release = kSmcRelease21;  // 4 bits
  ClcHostname hostname{};
  // Long form only (must stay 0 in the short form):
  uint8_t max_conns = 0;  // SMC-R (reserved for SMC-D)
  uint8_t max_links = 0;  // SMC-R (reserved for SMC-D)
  uint16_t feature_mask = 0;
  uint32_t vendor_exp_options = 0;

  struct Reserved {
    uint8_t byte0_bits = 0;  // bits 6-0 of byte 0
    std::array<uint8_t, 2> word2{};
    std::array<uint8_t, 8> tail{};  // long form +44..+51
    bool operator==(const Reserved&) const = default;
  } reserved;

  bool operator==(const ClcFirstContactExt&) const = default;
};

// ---------------------------------------------------------------------------
// ACCEPT (server -> client) and CONFIRM (client -> server) share a layout
// (PROTOCOL.md §2.3, §2.4). `type` says which one.

struct ClcSmcrAcceptReserved {
  uint8_t hdr_bit2 = 0;  // header bit 2 (0 or 1)
  uint8_t byte51 = 0;
  uint8_t byte60 = 0;
  std::array<uint8_t, 8> v2_tail{};   // bytes 96-103
  std::array<uint8_t, 3> gid_list{};  // GID list +1..+3
  bool operator==(const ClcSmcrAcceptReserved&) const = default;
};

// SMC-R Accept/Confirm (typev1 = R).
struct ClcSmcrAccept {
  ClcType type = ClcType::kAccept;  // kAccept or kConfirm
  ClcEyecatcher eyecatcher = ClcEyecatcher::kSmcr;
  ClcEyecatcher trailer = ClcEyecatcher::kSmcr;
  uint8_t version = 2;
  bool first_contact = false;  // header bit 3: new link group

  ClcPeerId peer_id{};
  ClcGid gid{};
  ClcMac mac{};
  uint32_t qpn = 0;  // 24 bits
  uint32_t rmb_rkey = 0;
  uint8_t rmbe_idx = 1;
  uint32_t rmbe_alert_token = 0;
  uint8_t rmbe_size = 0;  // compressed, 4 bits (wire/bufsize.h)
  uint8_t qp_mtu = 0;     // IB MTU enum, 4 bits
  uint64_t rmb_vaddr = 0;
  uint32_t psn = 0;  // 24 bits

  // v2:
  ClcEid eid{};  // negotiated EID
  // v2 and first_contact:
  ClcFirstContactExt fce;
  // v2, first_contact, Confirm only: the client's GIDs.
  uint8_t gid_count = 0;  // <= kClcMaxConfirmGids
  std::array<ClcGid, kClcMaxConfirmGids> gids{};

  ClcSmcrAcceptReserved reserved;
  bool operator==(const ClcSmcrAccept&) const = default;
};

struct ClcSmcdAcceptReserved {
  uint8_t hdr_bit2 = 0;     // header bit 2 (0 or 1)
  uint8_t byte25_bits = 0;  // bits 3-0 of byte 25
  std::array<uint8_t, 2> word26{};
  std::array<uint8_t, 12> v1_tail{};  // bytes 32-43 (v1 only)
  bool operator==(const ClcSmcdAcceptReserved&) const = default;
};

// SMC-D Accept/Confirm (typev1 = D, eyecatcher SMCD).
struct ClcSmcdAccept {
  ClcType type = ClcType::kAccept;  // kAccept or kConfirm
  ClcEyecatcher eyecatcher = ClcEyecatcher::kSmcd;
  ClcEyecatcher trailer = ClcEyecatcher::kSmcd;
  uint8_t version = 2;
  bool first_contact = false;  // header bit 3: new link group

  uint64_t gid = 0;        // sender ISM GID
  uint64_t dmb_token = 0;  // sender's DMB
  uint8_t dmbe_idx = 0;
  uint8_t dmbe_size = 0;  // compressed, 4 bits
  uint32_t link_id = 0;

  // v2:
  uint16_t chid = 0;
  ClcEid eid{};
  uint64_t gid_ext = 0;  // Emulated-ISM: second half of the 128-bit GID
  // v2 and first_contact:
  ClcFirstContactExt fce;

  ClcSmcdAcceptReserved reserved;
  bool operator==(const ClcSmcdAccept&) const = default;
};

// ---------------------------------------------------------------------------
// DECLINE (either direction), PROTOCOL.md §2.6.

struct ClcDecline {
  ClcEyecatcher eyecatcher = ClcEyecatcher::kSmcr;
  ClcEyecatcher trailer = ClcEyecatcher::kSmcr;
  uint8_t version = 1;       // 1: 28 bytes; >= 2: 44 bytes
  bool out_of_sync = false;  // header bit 3
  ClcPeerId peer_id{};
  uint32_t peer_diagnosis = 0;  // wire/reason.h
  uint8_t os_type = 0;          // 4 bits (v1 Linux 0, v2 Linux 2)
  // v2 only:
  std::array<uint32_t, kClcMaxDeclineExtraDiagnoses> extra_diagnoses{};

  struct Reserved {
    uint8_t hdr_bits = 0;     // header bits 2-0 (typev2 bit 2, typev1)
    uint8_t byte20_bits = 0;  // bits 3-0 of byte 20
    std::array<uint8_t, 3> bytes21{};
    bool operator==(const Reserved&) const = default;
  } reserved;
  bool operator==(const ClcDecline&) const = default;
};

// ---------------------------------------------------------------------------
// Any CLC message.

using ClcMessage =
    std::variant<ClcProposal, ClcSmcrAccept, ClcSmcdAccept, ClcDecline>;

ClcType TypeOf(const ClcMessage& m);

// Decoders: `bytes` must be exactly one message (header length == size).
WireResult<ClcMessage> DecodeClc(std::span<const std::byte> bytes);
WireResult<ClcProposal> DecodeClcProposal(std::span<const std::byte> bytes);
// Accept or Confirm; the header's typev1 chooses SMC-R or SMC-D.
WireResult<ClcMessage> DecodeClcAcceptConfirm(std::span<const std::byte> bytes);
WireResult<ClcSmcrAccept> DecodeClcSmcrAccept(std::span<const std::byte> bytes);
WireResult<ClcSmcdAccept> DecodeClcSmcdAccept(std::span<const std::byte> bytes);
WireResult<ClcDecline> DecodeClcDecline(std::span<const std::byte> bytes);

// Encoders: write the message at the start of `out`, return its length.
// kBufferTooSmall if `out` is shorter; kBadCount / kBadValue if a field
// cannot be represented (count above the limit, 24-bit field overflow...).
WireResult<size_t> EncodeClcProposal(const ClcProposal& m,
                                     std::span<std::byte> out);
WireResult<size_t> EncodeClcSmcrAccept(const ClcSmcrAccept& m,
                                       std::span<std::byte> out);
WireResult<size_t> EncodeClcSmcdAccept(const ClcSmcdAccept& m,
                                       std::span<std::byte> out);
WireResult<size_t> EncodeClcDecline(const ClcDecline& m,
                                    std::span<std::byte> out);
WireResult<size_t> EncodeClc(const ClcMessage& m, std::span<std::byte> out);

// The encoded length without encoding (same checks as the encoder).
WireResult<size_t> EncodedClcLength(const ClcMessage& m);

// Multi-line "field: value" text of a decoded message (usmc demo, tests).
std::string DescribeClc(const ClcMessage& m);

// ---------------------------------------------------------------------------
// ClcFrameDecoder: CLC framing over the TCP byte stream (STYLE.md #13),
// a buffering reader around PeekClcFrame (wire/clc_frame.h).
//
// Feed() looks at `bytes` (everything received and not yet consumed) and
// consumes only bytes of the current message: the header first, then the
// body up to the stated length, never more. Bytes after a message belong to
// the next message or, after a fallback, to the application.
//
//   ClcFrameDecoder dec;
//   ClcFrameDecoder::Result r = dec.Feed(chunk);
//   chunk = chunk.subspan(r.consumed);    // leftover stays for the app
//   if (r.status == ClcFrameDecoder::Status::kFrame) Use(dec.frame());
//
// After kFrame, frame() holds the message bytes until the next Feed();
// the decoder then starts on the next message. After kError it stays in
// the error state (every Feed returns the same error, consuming nothing).
class ClcFrameDecoder {
 public:
  enum class Status : uint8_t {
    kNeedMore,  // every given byte was consumed; message not complete
    kFrame,     // a complete message is in frame() and message()
    kError,     // the stream is not CLC (or the message is invalid)
  };

  struct Result {
    Status status = Status::kNeedMore;
    size_t consumed = 0;  // bytes of the input that belong to this message
  };

  // Decodes the message body too (kError if it is invalid) unless
  // `decode_body` is false (then only header + trailer are checked).
  explicit ClcFrameDecoder(bool decode_body = true)
      : decode_body_(decode_body) {}

  Result Feed(std::span<const std::byte> bytes);

  // Valid after kFrame until the next Feed().
  std::span<const std::byte> frame() const {
    return std::span<const std::byte>(buf_.data(), have_);
  }
  // Valid after kFrame when decode_body is true.
  const ClcMessage& message() const { return message_; }
  const WireError& error() const { return error_; }
  // Bytes buffered of the current, incomplete message.
  size_t buffered() const { return done_ ? 0 : have_; }

 private:
  bool decode_body_;
  bool done_ = false;  // last Feed returned kFrame
  bool failed_ = false;
  size_t have_ = 0;  // bytes of the current message in buf_
  WireError error_{WireErrc::kTruncated, "clc"};
  ClcMessage message_;
  std::array<std::byte, kClcMaxMessageLen> buf_{};
};

std::string_view ToString(ClcFrameDecoder::Status s);
std::ostream& operator<<(std::ostream& os, ClcFrameDecoder::Status s);

}  // namespace usmc::wire

#endif  // USMC_WIRE_CLC_H_
