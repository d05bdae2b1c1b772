// LLC encoding. Every encoder zeroes the whole message first, so reserved
// bytes and bits are always zero (the canonical form; Linux memsets too).
#include "base/endian.h"
#include "wire/llc.h"
#include "wire/llc_layout.h"

namespace usmc::wire {
namespace {

using namespace llc_internal;  // NOLINT(build/namespaces): offsets only

constexpr uint32_t kMax24 = 0xFFFFFF;

// Checks the buffer, zeroes the message and writes the common header.
// byte2 is the V1 ADD_LINK reject reason nibble (0 for everything else).
WireResult<std::byte*> StartMessage(std::span<std::byte> out, LlcType type,
                                    const LlcHeader& hdr, size_t len,
                                    uint8_t flags, uint8_t byte2 = 0) {
  if (out.size() < len) {
    return WireError{WireErrc::kBufferTooSmall, "llc.message"};
  }
  std::byte* p = out.data();
  for (size_t i = 0; i < len; ++i) p[i] = std::byte{0};
  const uint8_t t = static_cast<uint8_t>(type);
  if (hdr.v2) {
    Store8(p + kType, static_cast<uint8_t>((kLlcVersion2 << 4) | t));
    StoreLe16(p + kLength, static_cast<uint16_t>(len));  // host order
  } else {
    Store8(p + kType, t);
    Store8(p + kLength, static_cast<uint8_t>(kLlcMsgLen));
    Store8(p + kRejReason, byte2);
  }
  if (hdr.response) flags |= kLlcFlagResponse;
  Store8(p + kFlags, flags);
  return p;
}

template <size_t N>
void StoreBytes(std::byte* p, const std::array<uint8_t, N>& a) {
  for (size_t i = 0; i < N; ++i) Store8(p + i, a[i]);
}

void StoreRkeyPair(std::byte* p, const LlcRkeyPair& r) {
  StoreBe32(p, r.rkey);
  StoreBe32(p + 4, r.rkey_new);
  StoreBe64(p + 8, r.vaddr_new);
}

void StoreRtoken(std::byte* p, uint8_t first_byte, const LlcRtoken& r) {
  Store8(p, first_byte);
  StoreBe32(p + 1, r.rkey);
  StoreBe64(p + 5, r.vaddr);
}

WireError V1Only() { return WireError{WireErrc::kBadVersion, "llc.version"}; }

}  // namespace

WireResult<size_t> EncodeLlc(const LlcConfirmLink& m,
                             std::span<std::byte> out) {
  if (m.sender_qpn > kMax24) {
    return WireError{WireErrc::kBadValue, "llc.confirm_link.sender_qpn"};
  }
  const uint8_t flags = m.no_rmbe_eyecatcher ? kLlcFlagNoRmbeEyecatcher : 0;
  auto p = StartMessage(out, LlcType::kConfirmLink, m.hdr, kLlcMsgLen, flags);
  if (!p) return p.error();
  StoreBytes(*p + kClMac, m.sender_mac);
  StoreBytes(*p + kClGid, m.sender_gid);
  StoreBe24(*p + kClQpn, m.sender_qpn);
  Store8(*p + kClLinkNum, m.link_num);
  StoreBe32(*p + kClLinkUid, m.link_uid);
  Store8(*p + kClMaxLinks, m.max_links);
  Store8(*p + kClMaxConns, m.max_conns);
  return kLlcMsgLen;
}

WireResult<size_t> EncodeLlc(const LlcAddLink& m, std::span<std::byte> out) {
  if (m.sender_qpn > kMax24) {
    return WireError{WireErrc::kBadValue, "llc.add_link.sender_qpn"};
  }
  if (m.initial_psn > kMax24) {
    return WireError{WireErrc::kBadValue, "llc.add_link.initial_psn"};
  }
  if (m.qp_mtu > 0x0F) {
    return WireError{WireErrc::kBadValue, "llc.add_link.qp_mtu"};
  }
  if (m.reject_reason > 0x0F) {
    return WireError{WireErrc::kBadValue, "llc.add_link.reject_reason"};
  }
  if (m.has_v2_ext && !m.hdr.v2) return V1Only();
  if (m.num_rkeys > kLlcMaxRkeysV2 || (!m.has_v2_ext && m.num_rkeys != 0)) {
    return WireError{WireErrc::kBadCount, "llc.add_link.num_rkeys"};
  }
  const size_t len = m.has_v2_ext ? AddLinkV2Len(m.num_rkeys) : kLlcMsgLen;
  uint8_t flags = m.rejected ? kLlcFlagAddLinkRejected : 0;
  uint8_t byte2 = 0;
  if (m.hdr.v2) {
    flags |= m.reject_reason;  // byte 2 is part of length_v2 in V2
  } else {
    byte2 = m.reject_reason;
  }
  auto p = StartMessage(out, LlcType::kAddLink, m.hdr, len, flags, byte2);
  if (!p) return p.error();
  StoreBytes(*p + kAlMac, m.sender_mac);
  StoreBytes(*p + kAlGid, m.sender_gid);
  StoreBe24(*p + kAlQpn, m.sender_qpn);
  Store8(*p + kAlLinkNum, m.link_num);
  Store8(*p + kAlMtu, m.qp_mtu);
  StoreBe24(*p + kAlPsn, m.initial_psn);
  if (m.has_v2_ext) {
    Store8(*p + kAlExtFlags, m.v2_direct ? kAlV2Direct : 0);
    StoreBytes(*p + kAlExtTargetGid, m.client_target_gid);
    StoreLe16(*p + kAlExtNumRkeys, m.num_rkeys);  // host order, see llc.h
    for (size_t i = 0; i < m.num_rkeys; ++i) {
      StoreRkeyPair(*p + kAlExtRkeys + kRkeyPairLen * i, m.rkeys[i]);
    }
  }
  return len;
}

WireResult<size_t> EncodeLlc(const LlcAddLinkCont& m,
                             std::span<std::byte> out) {
  if (m.hdr.v2) return V1Only();
  auto p = StartMessage(out, LlcType::kAddLinkCont, m.hdr, kLlcMsgLen, 0);
  if (!p) return p.error();
  Store8(*p + kAlcLinkNum, m.link_num);
  Store8(*p + kAlcNumRkeys, m.num_rkeys);
  for (size_t i = 0; i < m.rkeys.size(); ++i) {
    StoreRkeyPair(*p + kAlcRkeys + kRkeyPairLen * i, m.rkeys[i]);
  }
  return kLlcMsgLen;
}

WireResult<size_t> EncodeLlc(const LlcDeleteLink& m, std::span<std::byte> out) {
  uint8_t flags = 0;
  if (m.all) flags |= kLlcFlagDeleteLinkAll;
  if (m.orderly) flags |= kLlcFlagDeleteLinkOrderly;
  auto p = StartMessage(out, LlcType::kDeleteLink, m.hdr, kLlcMsgLen, flags);
  if (!p) return p.error();
  Store8(*p + kDlLinkNum, m.link_num);
  StoreBe32(*p + kDlReason, m.reason);
  return kLlcMsgLen;
}

WireResult<size_t> EncodeLlc(const LlcReqAddLink& m, std::span<std::byte> out) {
  if (!m.hdr.v2) return WireError{WireErrc::kBadVersion, "llc.version"};
  if (m.reject_reason > 0x0F) {
    return WireError{WireErrc::kBadValue, "llc.req_add_link.reject_reason"};
  }
  const size_t len = ReqAddLinkLen(m.gid_cnt);
  uint8_t flags = m.reject_reason;
  if (m.rejected) flags |= kLlcFlagAddLinkRejected;
  auto p = StartMessage(out, LlcType::kReqAddLink, m.hdr, len, flags);
  if (!p) return p.error();
  Store8(*p + kRalGidCnt, m.gid_cnt);
  for (size_t i = 0; i < m.gid_cnt; ++i) {
    StoreBytes(*p + kRalGids + kLlcGidLen * i, m.gids[i]);
  }
  return len;
}

WireResult<size_t> EncodeLlc(const LlcConfirmRkey& m,
                             std::span<std::byte> out) {
  if (m.num_other_rtokens > kLlcMaxOtherLinks) {
    return WireError{WireErrc::kBadCount, "llc.confirm_rkey.num_rtokens"};
  }
  uint8_t flags = 0;
  if (m.negative) flags |= kLlcFlagRkeyNegative;
  if (m.retry) flags |= kLlcFlagRkeyRetry;
  auto p = StartMessage(out, LlcType::kConfirmRkey, m.hdr, kLlcMsgLen, flags);
  if (!p) return p.error();
  StoreRtoken(*p + kCrRtokens, m.num_other_rtokens, m.rtokens[0]);
  for (size_t i = 1; i < m.rtokens.size(); ++i) {
    StoreRtoken(*p + kCrRtokens + kRtokenLen * i, m.rtokens[i].link_id,
                m.rtokens[i]);
  }
  return kLlcMsgLen;
}

WireResult<size_t> EncodeLlc(const LlcConfirmRkeyCont& m,
                             std::span<std::byte> out) {
  if (m.hdr.v2) return V1Only();
  if (m.num_rkeys > kLlcMaxOtherLinks) {
    return WireError{WireErrc::kBadCount, "llc.confirm_rkey_cont.num_rkeys"};
  }
  uint8_t flags = 0;
  if (m.negative) flags |= kLlcFlagRkeyNegative;
  if (m.retry) flags |= kLlcFlagRkeyRetry;
  auto p =
      StartMessage(out, LlcType::kConfirmRkeyCont, m.hdr, kLlcMsgLen, flags);
  if (!p) return p.error();
  Store8(*p + kCrcNumRkeys, m.num_rkeys);
  for (size_t i = 0; i < m.rtokens.size(); ++i) {
    StoreRtoken(*p + kCrcRtokens + kRtokenLen * i, m.rtokens[i].link_id,
                m.rtokens[i]);
  }
  return kLlcMsgLen;
}

WireResult<size_t> EncodeLlc(const LlcTestLink& m, std::span<std::byte> out) {
  auto p = StartMessage(out, LlcType::kTestLink, m.hdr, kLlcMsgLen, 0);
  if (!p) return p.error();
  StoreBytes(*p + kTlUserData, m.user_data);
  return kLlcMsgLen;
}

WireResult<size_t> EncodeLlc(const LlcDeleteRkey& m, std::span<std::byte> out) {
  if (!m.hdr.v2 && m.num_rkeys > kLlcDeleteRkeyMaxV1) {
    return WireError{WireErrc::kBadCount, "llc.delete_rkey.num_rkeys"};
  }
  if (m.hdr.v2 && m.num_inval_rkeys > m.num_rkeys) {
    return WireError{WireErrc::kBadCount, "llc.delete_rkey.num_inval_rkeys"};
  }
  const size_t len = m.hdr.v2 ? DeleteRkeyV2Len(m.num_rkeys) : kLlcMsgLen;
  const uint8_t flags = m.negative ? kLlcFlagRkeyNegative : 0;
  auto p = StartMessage(out, LlcType::kDeleteRkey, m.hdr, len, flags);
  if (!p) return p.error();
  Store8(*p + kDrNumRkeys, m.num_rkeys);
  Store8(*p + kDrErrMask, m.hdr.v2 ? m.num_inval_rkeys : m.error_mask);
  for (size_t i = 0; i < m.num_rkeys; ++i) {
    StoreBe32(*p + kDrRkeys + 4 * i, m.rkeys[i]);
  }
  return len;
}

WireResult<size_t> EncodeLlc(const LlcMessage& m, std::span<std::byte> out) {
  return std::visit([out](const auto& msg) { return EncodeLlc(msg, out); }, m);
}

size_t LlcEncodedLength(const LlcMessage& m) {
  if (const auto* a = std::get_if<LlcAddLink>(&m); a && a->has_v2_ext) {
    return AddLinkV2Len(a->num_rkeys);
  }
  if (const auto* r = std::get_if<LlcReqAddLink>(&m)) {
    return ReqAddLinkLen(r->gid_cnt);
  }
  if (const auto* d = std::get_if<LlcDeleteRkey>(&m); d && d->hdr.v2) {
    return DeleteRkeyV2Len(d->num_rkeys);
  }
  return kLlcMsgLen;
}

}  // namespace usmc::wire
