// LLC decoding (llc_encode.cc encodes, llc_describe.cc prints).
#include "wire/llc.h"

#include <algorithm>

#include "base/endian.h"
#include "wire/llc_layout.h"

namespace usmc::wire {
namespace {

using namespace llc_internal;  // NOLINT(build/namespaces): offsets only

constexpr uint8_t kCdcTypeByte = 0xFE;

bool TypeExists(uint8_t type, bool v2) {
  switch (static_cast<LlcType>(type)) {
    case LlcType::kConfirmLink:
    case LlcType::kAddLink:
    case LlcType::kDeleteLink:
    case LlcType::kConfirmRkey:
    case LlcType::kTestLink:
    case LlcType::kDeleteRkey:
      return true;
    case LlcType::kAddLinkCont:
    case LlcType::kConfirmRkeyCont:
      return !v2;  // V2 sends all rkeys in one ADD_LINK / CONFIRM_RKEY
    case LlcType::kReqAddLink:
      return v2;
  }
  return false;
}

template <size_t N>
std::array<uint8_t, N> LoadBytes(const std::byte* p) {
  std::array<uint8_t, N> a;
  for (size_t i = 0; i < N; ++i) a[i] = Load8(p + i);
  return a;
}

LlcRkeyPair LoadRkeyPair(const std::byte* p) {
  return LlcRkeyPair{LoadBe32(p), LoadBe32(p + 4), LoadBe64(p + 8)};
}

LlcRtoken LoadRtoken(const std::byte* p) {
  return LlcRtoken{Load8(p), LoadBe32(p + 1), LoadBe64(p + 5)};
}

LlcConfirmLink DecodeConfirmLink(const std::byte* p, LlcHeader hdr,
                                 uint8_t flags) {
  LlcConfirmLink m;
  m.hdr = hdr;
  // Linux tests "flags & 0x03" (any of the two bits), so do we.
  m.no_rmbe_eyecatcher = (flags & kLlcFlagNoRmbeEyecatcher) != 0;
  m.sender_mac = LoadBytes<kLlcMacLen>(p + kClMac);
  m.sender_gid = LoadBytes<kLlcGidLen>(p + kClGid);
  m.sender_qpn = LoadBe24(p + kClQpn);
  m.link_num = Load8(p + kClLinkNum);
  m.link_uid = LoadBe32(p + kClLinkUid);
  m.max_links = Load8(p + kClMaxLinks);
  m.max_conns = Load8(p + kClMaxConns);
  return m;
}

WireResult<LlcMessage> DecodeAddLink(const std::byte* p, LlcHeader hdr,
                                     uint8_t flags) {
  LlcAddLink m;
  m.hdr = hdr;
  m.rejected = (flags & kLlcFlagAddLinkRejected) != 0;
  m.reject_reason = hdr.v2 ? (flags & 0x0F) : (Load8(p + kRejReason) & 0x0F);
  m.sender_mac = LoadBytes<kLlcMacLen>(p + kAlMac);
  m.sender_gid = LoadBytes<kLlcGidLen>(p + kAlGid);
  m.sender_qpn = LoadBe24(p + kAlQpn);
  m.link_num = Load8(p + kAlLinkNum);
  m.qp_mtu = Load8(p + kAlMtu) & 0x0F;
  m.initial_psn = LoadBe24(p + kAlPsn);
  if (!hdr.v2 || hdr.length == kLlcMsgLen) return LlcMessage{m};
  // A V2 ADD_LINK longer than 44 bytes carries the extension; Linux sends
  // it with every request and accepting response, not with a reject.
  if (hdr.length < kAlExtRkeys) {
    return WireError{WireErrc::kBadLength, "llc.add_link.length_v2"};
  }
  m.has_v2_ext = true;
  m.v2_direct = (Load8(p + kAlExtFlags) & kAlV2Direct) != 0;
  m.client_target_gid = LoadBytes<kLlcGidLen>(p + kAlExtTargetGid);
  // Host order, as Linux writes it (PROTOCOL.md §3.1); LE on x86-64.
  m.num_rkeys = LoadLe16(p + kAlExtNumRkeys);
  if (m.num_rkeys > kLlcMaxRkeysV2 || AddLinkV2Len(m.num_rkeys) > hdr.length) {
    return WireError{WireErrc::kBadCount, "llc.add_link.num_rkeys"};
  }
  for (size_t i = 0; i < m.num_rkeys; ++i) {
    m.rkeys[i] = LoadRkeyPair(p + kAlExtRkeys + kRkeyPairLen * i);
  }
  return LlcMessage{m};
}

LlcAddLinkCont DecodeAddLinkCont(const std::byte* p, LlcHeader hdr) {
  LlcAddLinkCont m;
  m.hdr = hdr;
  m.link_num = Load8(p + kAlcLinkNum);
  m.num_rkeys = Load8(p + kAlcNumRkeys);
  for (size_t i = 0; i < m.rkeys.size(); ++i) {
    m.rkeys[i] = LoadRkeyPair(p + kAlcRkeys + kRkeyPairLen * i);
  }
  return m;
}

LlcDeleteLink DecodeDeleteLink(const std::byte* p, LlcHeader hdr,
                               uint8_t flags) {
  LlcDeleteLink m;
  m.hdr = hdr;
  m.all = (flags & kLlcFlagDeleteLinkAll) != 0;
  m.orderly = (flags & kLlcFlagDeleteLinkOrderly) != 0;
  m.link_num = Load8(p + kDlLinkNum);
  m.reason = LoadBe32(p + kDlReason);
  return m;
}

WireResult<LlcMessage> DecodeReqAddLink(const std::byte* p, LlcHeader hdr,
                                        uint8_t flags) {
  LlcReqAddLink m;
  m.hdr = hdr;
  m.rejected = (flags & kLlcFlagAddLinkRejected) != 0;
  m.reject_reason = flags & 0x0F;
  m.gid_cnt = Load8(p + kRalGidCnt);
  if (kRalGids + kLlcGidLen * m.gid_cnt > hdr.length) {
    return WireError{WireErrc::kBadCount, "llc.req_add_link.gid_cnt"};
  }
  for (size_t i = 0; i < m.gid_cnt; ++i) {
    m.gids[i] = LoadBytes<kLlcGidLen>(p + kRalGids + kLlcGidLen * i);
  }
  return LlcMessage{m};
}

WireResult<LlcMessage> DecodeConfirmRkey(const std::byte* p, LlcHeader hdr,
                                         uint8_t flags) {
  LlcConfirmRkey m;
  m.hdr = hdr;
  m.negative = (flags & kLlcFlagRkeyNegative) != 0;
  m.retry = (flags & kLlcFlagRkeyRetry) != 0;
  m.num_other_rtokens = Load8(p + kCrRtokens);
  if (m.num_other_rtokens > kLlcMaxOtherLinks) {
    return WireError{WireErrc::kBadCount, "llc.confirm_rkey.num_rtokens"};
  }
  for (size_t i = 0; i < m.rtokens.size(); ++i) {
    m.rtokens[i] = LoadRtoken(p + kCrRtokens + kRtokenLen * i);
  }
  m.rtokens[0].link_id = 0;  // that byte is the count
  return LlcMessage{m};
}

WireResult<LlcMessage> DecodeConfirmRkeyCont(const std::byte* p, LlcHeader hdr,
                                             uint8_t flags) {
  LlcConfirmRkeyCont m;
  m.hdr = hdr;
  m.negative = (flags & kLlcFlagRkeyNegative) != 0;
  m.retry = (flags & kLlcFlagRkeyRetry) != 0;
  m.num_rkeys = Load8(p + kCrcNumRkeys);
  if (m.num_rkeys > kLlcMaxOtherLinks) {
    return WireError{WireErrc::kBadCount, "llc.confirm_rkey_cont.num_rkeys"};
  }
  for (size_t i = 0; i < m.rtokens.size(); ++i) {
    m.rtokens[i] = LoadRtoken(p + kCrcRtokens + kRtokenLen * i);
  }
  return LlcMessage{m};
}

LlcTestLink DecodeTestLink(const std::byte* p, LlcHeader hdr) {
  LlcTestLink m;
  m.hdr = hdr;
  m.user_data = LoadBytes<16>(p + kTlUserData);
  return m;
}

WireResult<LlcMessage> DecodeDeleteRkey(const std::byte* p, LlcHeader hdr,
                                        uint8_t flags) {
  LlcDeleteRkey m;
  m.hdr = hdr;
  m.negative = (flags & kLlcFlagRkeyNegative) != 0;
  m.num_rkeys = Load8(p + kDrNumRkeys);
  if (hdr.v2) {
    if (kDrRkeys + 4 * size_t{m.num_rkeys} > hdr.length) {
      return WireError{WireErrc::kBadCount, "llc.delete_rkey.num_rkeys"};
    }
    m.num_inval_rkeys = Load8(p + kDrErrMask);
    if (m.num_inval_rkeys > m.num_rkeys) {
      return WireError{WireErrc::kBadCount, "llc.delete_rkey.num_inval_rkeys"};
    }
  } else {
    if (m.num_rkeys > kLlcDeleteRkeyMaxV1) {
      return WireError{WireErrc::kBadCount, "llc.delete_rkey.num_rkeys"};
    }
    m.error_mask = Load8(p + kDrErrMask);
  }
  for (size_t i = 0; i < m.num_rkeys; ++i) {
    m.rkeys[i] = LoadBe32(p + kDrRkeys + 4 * i);
  }
  return LlcMessage{m};
}

}  // namespace

WireResult<LlcMessage> DecodeLlc(std::span<const std::byte> bytes) {
  if (bytes.size() < kHeaderLen) {
    return WireError{WireErrc::kTruncated, "llc.header"};
  }
  const std::byte* p = bytes.data();
  const uint8_t b0 = Load8(p + kType);
  if (b0 == kCdcTypeByte) return WireError{WireErrc::kBadType, "llc.type"};
  const uint8_t version = b0 >> 4;
  if (version != 0 && version != kLlcVersion2) {
    return WireError{WireErrc::kBadVersion, "llc.version"};
  }
  LlcHeader hdr;
  hdr.v2 = version == kLlcVersion2;
  const uint8_t type = b0 & 0x0F;
  if (!TypeExists(type, hdr.v2)) {
    return WireError{WireErrc::kBadType, "llc.type"};
  }
  if (hdr.v2) {
    hdr.length = LoadLe16(p + kLength);  // host order, see llc.h
    if (hdr.length < kLlcMsgLen || hdr.length > kLlcMaxLenV2) {
      return WireError{WireErrc::kBadLength, "llc.length_v2"};
    }
    if (bytes.size() < hdr.length) {
      return WireError{WireErrc::kTruncated, "llc.message"};
    }
  } else {
    if (bytes.size() < kLlcMsgLen) {
      return WireError{WireErrc::kTruncated, "llc.message"};
    }
    if (Load8(p + kLength) != kLlcMsgLen) {
      return WireError{WireErrc::kBadLength, "llc.length"};
    }
    hdr.length = kLlcMsgLen;
  }
  const uint8_t flags = Load8(p + kFlags);
  hdr.response = (flags & kLlcFlagResponse) != 0;

  switch (static_cast<LlcType>(type)) {
    case LlcType::kConfirmLink:
      return LlcMessage{DecodeConfirmLink(p, hdr, flags)};
    case LlcType::kAddLink:
      return DecodeAddLink(p, hdr, flags);
    case LlcType::kAddLinkCont:
      return LlcMessage{DecodeAddLinkCont(p, hdr)};
    case LlcType::kDeleteLink:
      return LlcMessage{DecodeDeleteLink(p, hdr, flags)};
    case LlcType::kReqAddLink:
      return DecodeReqAddLink(p, hdr, flags);
    case LlcType::kConfirmRkey:
      return DecodeConfirmRkey(p, hdr, flags);
    case LlcType::kConfirmRkeyCont:
      return DecodeConfirmRkeyCont(p, hdr, flags);
    case LlcType::kTestLink:
      return LlcMessage{DecodeTestLink(p, hdr)};
    case LlcType::kDeleteRkey:
      return DecodeDeleteRkey(p, hdr, flags);
  }
  return WireError{WireErrc::kBadType, "llc.type"};
}

LlcType TypeOf(const LlcMessage& m) {
  struct Visitor {
    LlcType operator()(const LlcConfirmLink&) { return LlcType::kConfirmLink; }
    LlcType operator()(const LlcAddLink&) { return LlcType::kAddLink; }
    LlcType operator()(const LlcAddLinkCont&) { return LlcType::kAddLinkCont; }
    LlcType operator()(const LlcDeleteLink&) { return LlcType::kDeleteLink; }
    LlcType operator()(const LlcReqAddLink&) { return LlcType::kReqAddLink; }
    LlcType operator()(const LlcConfirmRkey&) { return LlcType::kConfirmRkey; }
    LlcType operator()(const LlcConfirmRkeyCont&) {
      return LlcType::kConfirmRkeyCont;
    }
    LlcType operator()(const LlcTestLink&) { return LlcType::kTestLink; }
    LlcType operator()(const LlcDeleteRkey&) { return LlcType::kDeleteRkey; }
  };
  return std::visit(Visitor{}, m);
}

const LlcHeader& HeaderOf(const LlcMessage& m) {
  return std::visit([](const auto& msg) -> const LlcHeader& { return msg.hdr; },
                    m);
}

}  // namespace usmc::wire
