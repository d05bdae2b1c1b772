// wire/clc_accept.cc: CLC Accept and Confirm, SMC-R and SMC-D, v1 and v2
// (PROTOCOL.md §2.3-2.5), and the Decline (§2.6).
//
// Accept and Confirm share one layout per path; a v2 first-contact message
// carries the First Contact Extension (36-byte v2.0 or 52-byte v2.1 form),
// and a v2 first-contact SMC-R Confirm also carries the client's GID list.
#include <algorithm>

#include "base/endian.h"
#include "wire/clc.h"
#include "wire/clc_internal.h"

namespace usmc::wire {

using clc_internal::CopyIn;
using clc_internal::CopyOut;
using clc_internal::kFirstContactBit;
using clc_internal::kHeaderBit2;

namespace {

constexpr size_t kSmcrEidPos = 64;
constexpr size_t kSmcrFcePos = 104;
constexpr size_t kSmcdFcePos = 74;
constexpr size_t kGidListFixedLen = 4;

uint8_t AcceptByte7(uint8_t version, bool first_contact, uint8_t hdr_bit2,
                    SmcType path) {
  return static_cast<uint8_t>(
      (version << 4) | (first_contact ? kFirstContactBit : 0) |
      (hdr_bit2 ? kHeaderBit2 : 0) | static_cast<uint8_t>(path));
}

// The part of decoding an Accept/Confirm both paths share: frame, path
// (typev1), the header fields every message keeps, and the base length of
// its version. Returns the length on success.
template <typename M>
WireResult<size_t> DecodeAcceptCommon(std::span<const std::byte> bytes,
                                      SmcType path, size_t v1_len,
                                      size_t v2_base_len, M& m) {
  WireResult<clc_internal::MessageFrame> frame =
      clc_internal::CheckFrame(bytes, ClcType::kAccept, true);
  if (!frame) return frame.error();
  const ClcHeader& h = frame->header;
  if (h.typev1 != static_cast<uint8_t>(path)) {
    return WireError{WireErrc::kBadValue, "clc.typev1"};
  }
  m.type = h.type;
  m.eyecatcher = h.eyecatcher;
  m.trailer = frame->trailer;
  m.version = h.version;
  m.first_contact = (frame->byte7 & kFirstContactBit) != 0;
  m.reserved.hdr_bit2 = (frame->byte7 & kHeaderBit2) ? 1 : 0;
  const size_t len = bytes.size();
  if (m.version == 1 ? len != v1_len : len < v2_base_len) {
    return WireError{WireErrc::kBadLength, "clc.length"};
  }
  return len;
}

bool IsAcceptOrConfirm(ClcType t) {
  return t == ClcType::kAccept || t == ClcType::kConfirm;
}

bool HasGidList(const ClcSmcrAccept& m) {
  return m.version >= 2 && m.first_contact && m.type == ClcType::kConfirm;
}

WireResult<size_t> SmcrLength(const ClcSmcrAccept& m) {
  if (!IsAcceptOrConfirm(m.type))
    return WireError{WireErrc::kBadType, "clc.type"};
  if (m.qpn > 0xFFFFFF) return WireError{WireErrc::kBadValue, "clc.smcr.qpn"};
  if (m.psn > 0xFFFFFF) return WireError{WireErrc::kBadValue, "clc.smcr.psn"};
  if (m.rmbe_size > 15) {
    return WireError{WireErrc::kBadValue, "clc.smcr.rmbe_size"};
  }
  if (m.qp_mtu > 15) return WireError{WireErrc::kBadValue, "clc.smcr.qp_mtu"};
  if (m.reserved.hdr_bit2 > 1) {
    return WireError{WireErrc::kBadValue, "clc.smcr.reserved"};
  }
  if (m.version == 1) return kClcSmcrAcceptV1Len;
  size_t len = kClcSmcrAcceptV2BaseLen;
  if (m.first_contact) {
    WireResult<size_t> fce = clc_internal::CheckFce(m.fce);
    if (!fce) return fce.error();
    len += *fce;
  }
  if (HasGidList(m)) {
    if (m.gid_count > kClcMaxConfirmGids) {
      return WireError{WireErrc::kBadCount, "clc.smcr.gid_count"};
    }
    len += kGidListFixedLen + sizeof(ClcGid) * m.gid_count;
  }
  return len;
}

WireResult<size_t> SmcdLength(const ClcSmcdAccept& m) {
  if (!IsAcceptOrConfirm(m.type))
    return WireError{WireErrc::kBadType, "clc.type"};
  if (m.dmbe_size > 15) {
    return WireError{WireErrc::kBadValue, "clc.smcd.dmbe_size"};
  }
  if (m.reserved.hdr_bit2 > 1 || m.reserved.byte25_bits > 15) {
    return WireError{WireErrc::kBadValue, "clc.smcd.reserved"};
  }
  if (m.version == 1) return kClcSmcdAcceptV1Len;
  size_t len = kClcSmcdAcceptV2BaseLen;
  if (m.first_contact) {
    WireResult<size_t> fce = clc_internal::CheckFce(m.fce);
    if (!fce) return fce.error();
    len += *fce;
  }
  return len;
}

// The FCE form of a v2 first-contact SMC-R Confirm, found from the GID
// list: `rest` bytes follow the fixed part (FCE + GID list). The long form
// is tried first (Linux >= 6.5 always sends it for SMC-R).
WireResult<bool> ConfirmFceForm(const std::byte* fce, size_t rest) {
  for (bool long_form : {true, false}) {
    size_t fce_len = long_form ? kClcFceLongLen : kClcFceShortLen;
    if (rest < fce_len + kGidListFixedLen) continue;
    uint8_t count = Load8(fce + fce_len);
    if (rest != fce_len + kGidListFixedLen + sizeof(ClcGid) * count) continue;
    if (count > kClcMaxConfirmGids) {
      return WireError{WireErrc::kBadCount, "clc.smcr.gid_count"};
    }
    return long_form;
  }
  return WireError{WireErrc::kBadLength, "clc.length"};
}

// The FCE form of a message whose FCE runs up to the trailer.
WireResult<bool> PlainFceForm(size_t rest) {
  if (rest == kClcFceLongLen) return true;
  if (rest == kClcFceShortLen) return false;
  return WireError{WireErrc::kBadLength, "clc.length"};
}

}  // namespace

WireResult<size_t> EncodeClcSmcrAccept(const ClcSmcrAccept& m,
                                       std::span<std::byte> out) {
  WireResult<size_t> len = SmcrLength(m);
  if (!len) return len.error();
  WireResult<size_t> ok = clc_internal::CheckEncode(m.version, *len, out);
  if (!ok) return ok.error();
  std::byte* p = out.data();
  std::fill(p, p + *len, std::byte{0});
  clc_internal::WriteHeader(p, m.eyecatcher, m.type, *len,
                            AcceptByte7(m.version, m.first_contact,
                                        m.reserved.hdr_bit2, SmcType::kR));
  CopyOut(p + 8, m.peer_id);
  CopyOut(p + 16, m.gid);
  CopyOut(p + 32, m.mac);
  StoreBe24(p + 38, m.qpn);
  StoreBe32(p + 41, m.rmb_rkey);
  Store8(p + 45, m.rmbe_idx);
  StoreBe32(p + 46, m.rmbe_alert_token);
  Store8(p + 50, static_cast<uint8_t>((m.rmbe_size << 4) | m.qp_mtu));
  Store8(p + 51, m.reserved.byte51);
  StoreBe64(p + 52, m.rmb_vaddr);
  Store8(p + 60, m.reserved.byte60);
  StoreBe24(p + 61, m.psn);
  if (m.version >= 2) {
    CopyOut(p + kSmcrEidPos, m.eid);
    CopyOut(p + 96, m.reserved.v2_tail);
    if (m.first_contact) {
      clc_internal::EncodeFce(m.fce, p + kSmcrFcePos);
      if (HasGidList(m)) {
        std::byte* g = p + kSmcrFcePos + clc_internal::FceLen(m.fce);
        Store8(g, m.gid_count);
        CopyOut(g + 1, m.reserved.gid_list);
        for (size_t i = 0; i < m.gid_count; ++i) {
          CopyOut(g + kGidListFixedLen + sizeof(ClcGid) * i, m.gids[i]);
        }
      }
    }
  }
  clc_internal::WriteEyecatcher(p + *len - kClcTrailerLen, m.trailer);
  return *len;
}

WireResult<ClcSmcrAccept> DecodeClcSmcrAccept(
    std::span<const std::byte> bytes) {
  ClcSmcrAccept m;
  WireResult<size_t> checked = DecodeAcceptCommon(
      bytes, SmcType::kR, kClcSmcrAcceptV1Len, kClcSmcrAcceptV2BaseLen, m);
  if (!checked) return checked.error();
  const std::byte* p = bytes.data();
  const size_t len = bytes.size();
  const WireError bad_len{WireErrc::kBadLength, "clc.length"};
  CopyIn(p + 8, m.peer_id);
  CopyIn(p + 16, m.gid);
  CopyIn(p + 32, m.mac);
  m.qpn = LoadBe24(p + 38);
  m.rmb_rkey = LoadBe32(p + 41);
  m.rmbe_idx = Load8(p + 45);
  m.rmbe_alert_token = LoadBe32(p + 46);
  m.rmbe_size = Load8(p + 50) >> 4;
  m.qp_mtu = Load8(p + 50) & 0x0F;
  m.reserved.byte51 = Load8(p + 51);
  m.rmb_vaddr = LoadBe64(p + 52);
  m.reserved.byte60 = Load8(p + 60);
  m.psn = LoadBe24(p + 61);
  if (m.version == 1) return m;

  CopyIn(p + kSmcrEidPos, m.eid);
  CopyIn(p + 96, m.reserved.v2_tail);
  const size_t rest = len - kClcSmcrAcceptV2BaseLen;
  if (!m.first_contact) {
    if (rest != 0) return bad_len;
    return m;
  }
  const std::byte* fce = p + kSmcrFcePos;
  WireResult<bool> form = m.type == ClcType::kConfirm
                              ? ConfirmFceForm(fce, rest)
                              : PlainFceForm(rest);
  if (!form) return form.error();
  clc_internal::DecodeFce(fce, *form, m.fce);
  if (HasGidList(m)) {
    const std::byte* g = fce + clc_internal::FceLen(m.fce);
    m.gid_count = Load8(g);
    m.reserved.gid_list = {Load8(g + 1), Load8(g + 2), Load8(g + 3)};
    for (size_t i = 0; i < m.gid_count; ++i) {
      CopyIn(g + kGidListFixedLen + sizeof(ClcGid) * i, m.gids[i]);
    }
  }
  return m;
}

WireResult<size_t> EncodeClcSmcdAccept(const ClcSmcdAccept& m,
                                       std::span<std::byte> out) {
  WireResult<size_t> len = SmcdLength(m);
  if (!len) return len.error();
  WireResult<size_t> ok = clc_internal::CheckEncode(m.version, *len, out);
  if (!ok) return ok.error();
  std::byte* p = out.data();
  std::fill(p, p + *len, std::byte{0});
  clc_internal::WriteHeader(p, m.eyecatcher, m.type, *len,
                            AcceptByte7(m.version, m.first_contact,
                                        m.reserved.hdr_bit2, SmcType::kD));
  StoreBe64(p + 8, m.gid);
  StoreBe64(p + 16, m.dmb_token);
  Store8(p + 24, m.dmbe_idx);
  Store8(p + 25,
         static_cast<uint8_t>((m.dmbe_size << 4) | m.reserved.byte25_bits));
  CopyOut(p + 26, m.reserved.word26);
  StoreBe32(p + 28, m.link_id);
  if (m.version == 1) {
    CopyOut(p + 32, m.reserved.v1_tail);
  } else {
    StoreBe16(p + 32, m.chid);
    CopyOut(p + 34, m.eid);
    StoreBe64(p + 66, m.gid_ext);
    if (m.first_contact) clc_internal::EncodeFce(m.fce, p + kSmcdFcePos);
  }
  clc_internal::WriteEyecatcher(p + *len - kClcTrailerLen, m.trailer);
  return *len;
}

WireResult<ClcSmcdAccept> DecodeClcSmcdAccept(
    std::span<const std::byte> bytes) {
  ClcSmcdAccept m;
  WireResult<size_t> checked = DecodeAcceptCommon(
      bytes, SmcType::kD, kClcSmcdAcceptV1Len, kClcSmcdAcceptV2BaseLen, m);
  if (!checked) return checked.error();
  const std::byte* p = bytes.data();
  const size_t len = bytes.size();
  const WireError bad_len{WireErrc::kBadLength, "clc.length"};
  m.gid = LoadBe64(p + 8);
  m.dmb_token = LoadBe64(p + 16);
  m.dmbe_idx = Load8(p + 24);
  m.dmbe_size = Load8(p + 25) >> 4;
  m.reserved.byte25_bits = Load8(p + 25) & 0x0F;
  m.reserved.word26 = {Load8(p + 26), Load8(p + 27)};
  m.link_id = LoadBe32(p + 28);
  if (m.version == 1) {
    CopyIn(p + 32, m.reserved.v1_tail);
    return m;
  }
  m.chid = LoadBe16(p + 32);
  CopyIn(p + 34, m.eid);
  m.gid_ext = LoadBe64(p + 66);
  const size_t rest = len - kClcSmcdAcceptV2BaseLen;
  if (!m.first_contact) {
    if (rest != 0) return bad_len;
    return m;
  }
  WireResult<bool> form = PlainFceForm(rest);
  if (!form) return form.error();
  clc_internal::DecodeFce(p + kSmcdFcePos, *form, m.fce);
  return m;
}

WireResult<size_t> EncodeClcDecline(const ClcDecline& m,
                                    std::span<std::byte> out) {
  if (m.os_type > 15) {
    return WireError{WireErrc::kBadValue, "clc.decline.os_type"};
  }
  if (m.reserved.hdr_bits > 0x07 || m.reserved.byte20_bits > 0x0F) {
    return WireError{WireErrc::kBadValue, "clc.decline.reserved"};
  }
  const size_t len = m.version == 1 ? kClcDeclineV1Len : kClcDeclineV2Len;
  WireResult<size_t> ok = clc_internal::CheckEncode(m.version, len, out);
  if (!ok) return ok.error();
  std::byte* p = out.data();
  std::fill(p, p + len, std::byte{0});
  clc_internal::WriteHeader(
      p, m.eyecatcher, ClcType::kDecline, len,
      static_cast<uint8_t>((m.version << 4) |
                           (m.out_of_sync ? kFirstContactBit : 0) |
                           m.reserved.hdr_bits));
  CopyOut(p + 8, m.peer_id);
  StoreBe32(p + 16, m.peer_diagnosis);
  Store8(p + 20,
         static_cast<uint8_t>((m.os_type << 4) | m.reserved.byte20_bits));
  CopyOut(p + 21, m.reserved.bytes21);
  if (m.version >= 2) {
    for (size_t i = 0; i < m.extra_diagnoses.size(); ++i) {
      StoreBe32(p + 24 + 4 * i, m.extra_diagnoses[i]);
    }
  }
  clc_internal::WriteEyecatcher(p + len - kClcTrailerLen, m.trailer);
  return len;
}

WireResult<ClcDecline> DecodeClcDecline(std::span<const std::byte> bytes) {
  WireResult<clc_internal::MessageFrame> frame =
      clc_internal::CheckFrame(bytes, ClcType::kDecline);
  if (!frame) return frame.error();
  const ClcHeader& h = frame->header;
  const std::byte* p = bytes.data();
  ClcDecline m;
  m.eyecatcher = h.eyecatcher;
  m.trailer = frame->trailer;
  m.version = h.version;
  if (bytes.size() != (m.version == 1 ? kClcDeclineV1Len : kClcDeclineV2Len)) {
    return WireError{WireErrc::kBadLength, "clc.length"};
  }
  m.out_of_sync = (frame->byte7 & kFirstContactBit) != 0;
  m.reserved.hdr_bits = frame->byte7 & 0x07;
  CopyIn(p + 8, m.peer_id);
  m.peer_diagnosis = LoadBe32(p + 16);
  m.os_type = Load8(p + 20) >> 4;
  m.reserved.byte20_bits = Load8(p + 20) & 0x0F;
  CopyIn(p + 21, m.reserved.bytes21);
  if (m.version >= 2) {
    for (size_t i = 0; i < m.extra_diagnoses.size(); ++i) {
      m.extra_diagnoses[i] = LoadBe32(p + 24 + 4 * i);
    }
  }
  return m;
}

}  // namespace usmc::wire
