// wire/clc.cc: CLC header, framing checks, dispatch and small helpers.
// Message bodies live in clc_proposal.cc, clc_accept.cc and clc_decline.cc.
#include "wire/clc.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "base/endian.h"
#include "wire/clc_internal.h"

namespace usmc::wire {

namespace {

constexpr std::array<uint8_t, 4> kSmcrBytes = {0xE2, 0xD4, 0xC3, 0xD9};
constexpr std::array<uint8_t, 4> kSmcdBytes = {0xE2, 0xD4, 0xC3, 0xC4};

// The eyecatcher at p, or false if it is neither SMCR nor SMCD.
bool ReadEyecatcher(const std::byte* p, ClcEyecatcher& e) {
  if (std::memcmp(p, kSmcrBytes.data(), 4) == 0) {
    e = ClcEyecatcher::kSmcr;
    return true;
  }
  if (std::memcmp(p, kSmcdBytes.data(), 4) == 0) {
    e = ClcEyecatcher::kSmcd;
    return true;
  }
  return false;
}

}  // namespace

std::string_view ToString(ClcType t) {
  switch (t) {
    case ClcType::kProposal:
      return "PROPOSAL";
    case ClcType::kAccept:
      return "ACCEPT";
    case ClcType::kConfirm:
      return "CONFIRM";
    case ClcType::kDecline:
      return "DECLINE";
  }
  return "UNKNOWN";
}

std::string_view ToString(ClcEyecatcher e) {
  switch (e) {
    case ClcEyecatcher::kSmcr:
      return "SMCR";
    case ClcEyecatcher::kSmcd:
      return "SMCD";
  }
  return "UNKNOWN";
}

std::string_view ToString(SmcType t) {
  switch (t) {
    case SmcType::kR:
      return "R";
    case SmcType::kD:
      return "D";
    case SmcType::kNone:
      return "N";
    case SmcType::kBoth:
      return "B";
  }
  return "UNKNOWN";
}

std::ostream& operator<<(std::ostream& os, ClcType t) {
  return os << ToString(t);
}
std::ostream& operator<<(std::ostream& os, ClcEyecatcher e) {
  return os << ToString(e);
}
std::ostream& operator<<(std::ostream& os, SmcType t) {
  return os << ToString(t);
}

ClcEid MakeClcEid(std::string_view text) {
  ClcEid e;
  e.fill(' ');
  std::copy_n(text.begin(), std::min(text.size(), e.size()), e.begin());
  return e;
}

ClcHostname MakeClcHostname(std::string_view text) { return MakeClcEid(text); }

std::string_view ClcText(std::span<const uint8_t> padded) {
  size_t n = padded.size();
  while (n > 0 && (padded[n - 1] == ' ' || padded[n - 1] == 0)) --n;
  return std::string_view(reinterpret_cast<const char*>(padded.data()), n);
}

WireResult<ClcHeader> DecodeClcHeader(std::span<const std::byte> bytes) {
  if (bytes.size() < kClcHeaderLen) {
    return WireError{WireErrc::kTruncated, "clc.header"};
  }
  ClcHeader h;
  if (!ReadEyecatcher(bytes.data(), h.eyecatcher)) {
    return WireError{WireErrc::kBadEyecatcher, "clc.eyecatcher"};
  }
  uint8_t type = Load8(bytes.data() + 4);
  if (type < 1 || type > 4) return WireError{WireErrc::kBadType, "clc.type"};
  h.type = static_cast<ClcType>(type);
  h.length = LoadBe16(bytes.data() + 5);
  uint8_t b7 = Load8(bytes.data() + 7);
  h.version = b7 >> 4;
  h.typev2 = (b7 >> 2) & 0x3;
  h.typev1 = b7 & 0x3;
  // Linux rejects version 0 (smc_clc_wait_msg); every version >= 2 is read
  // with the v2 layout, as Linux does.
  if (h.version == 0) return WireError{WireErrc::kBadVersion, "clc.version"};
  if (h.length < kClcDeclineV1Len || h.length > kClcMaxMessageLen) {
    return WireError{WireErrc::kBadLength, "clc.length"};
  }
  return h;
}

ClcType TypeOf(const ClcMessage& m) {
  if (std::holds_alternative<ClcProposal>(m)) return ClcType::kProposal;
  if (const auto* r = std::get_if<ClcSmcrAccept>(&m)) return r->type;
  if (const auto* d = std::get_if<ClcSmcdAccept>(&m)) return d->type;
  return ClcType::kDecline;
}

WireResult<ClcMessage> DecodeClc(std::span<const std::byte> bytes) {
  WireResult<ClcHeader> h = DecodeClcHeader(bytes);
  if (!h) return h.error();
  switch (h->type) {
    case ClcType::kProposal: {
      WireResult<ClcProposal> p = DecodeClcProposal(bytes);
      if (!p) return p.error();
      return ClcMessage(std::move(*p));
    }
    case ClcType::kAccept:
    case ClcType::kConfirm:
      return DecodeClcAcceptConfirm(bytes);
    case ClcType::kDecline: {
      WireResult<ClcDecline> d = DecodeClcDecline(bytes);
      if (!d) return d.error();
      return ClcMessage(*d);
    }
  }
  return WireError{WireErrc::kBadType, "clc.type"};
}

WireResult<ClcMessage> DecodeClcAcceptConfirm(
    std::span<const std::byte> bytes) {
  WireResult<ClcHeader> h = DecodeClcHeader(bytes);
  if (!h) return h.error();
  if (h->typev1 == static_cast<uint8_t>(SmcType::kR)) {
    WireResult<ClcSmcrAccept> r = DecodeClcSmcrAccept(bytes);
    if (!r) return r.error();
    return ClcMessage(*r);
  }
  if (h->typev1 == static_cast<uint8_t>(SmcType::kD)) {
    WireResult<ClcSmcdAccept> d = DecodeClcSmcdAccept(bytes);
    if (!d) return d.error();
    return ClcMessage(*d);
  }
  // Check the frame first so that a wrong type is reported as such.
  WireResult<clc_internal::MessageFrame> f =
      clc_internal::CheckFrame(bytes, ClcType::kAccept, true);
  if (!f) return f.error();
  return WireError{WireErrc::kBadValue, "clc.typev1"};
}

WireResult<size_t> EncodeClc(const ClcMessage& m, std::span<std::byte> out) {
  return std::visit(
      [&](const auto& msg) -> WireResult<size_t> {
        using T = std::decay_t<decltype(msg)>;
        if constexpr (std::is_same_v<T, ClcProposal>) {
          return EncodeClcProposal(msg, out);
        } else if constexpr (std::is_same_v<T, ClcSmcrAccept>) {
          return EncodeClcSmcrAccept(msg, out);
        } else if constexpr (std::is_same_v<T, ClcSmcdAccept>) {
          return EncodeClcSmcdAccept(msg, out);
        } else {
          return EncodeClcDecline(msg, out);
        }
      },
      m);
}

WireResult<size_t> EncodedClcLength(const ClcMessage& m) {
  std::array<std::byte, kClcMaxMessageLen> scratch;
  return EncodeClc(m, scratch);
}

namespace clc_internal {

void WriteEyecatcher(std::byte* p, ClcEyecatcher e) {
  const auto& src = e == ClcEyecatcher::kSmcd ? kSmcdBytes : kSmcrBytes;
  std::memcpy(p, src.data(), 4);
}

void WriteHeader(std::byte* out, ClcEyecatcher eyecatcher, ClcType type,
                 size_t length, uint8_t byte7) {
  WriteEyecatcher(out, eyecatcher);
  Store8(out + 4, static_cast<uint8_t>(type));
  StoreBe16(out + 5, static_cast<uint16_t>(length));
  Store8(out + 7, byte7);
}

WireResult<MessageFrame> CheckFrame(std::span<const std::byte> bytes,
                                    ClcType expected, bool accept_or_confirm) {
  WireResult<ClcHeader> h = DecodeClcHeader(bytes);
  if (!h) return h.error();
  bool type_ok = h->type == expected ||
                 (accept_or_confirm && (h->type == ClcType::kAccept ||
                                        h->type == ClcType::kConfirm));
  if (!type_ok) return WireError{WireErrc::kBadType, "clc.type"};
  if (bytes.size() < h->length) {
    return WireError{WireErrc::kTruncated, "clc.length"};
  }
  if (bytes.size() > h->length) {
    return WireError{WireErrc::kBadLength, "clc.length"};
  }
  MessageFrame f;
  f.header = *h;
  f.byte7 = Load8(bytes.data() + 7);
  // Linux skips the trailer check for Declines; usmc checks it for every
  // type (docs/wire-clc.md).
  if (!ReadEyecatcher(bytes.data() + bytes.size() - kClcTrailerLen,
                      f.trailer)) {
    return WireError{WireErrc::kBadTrailer, "clc.trailer"};
  }
  return f;
}

WireResult<size_t> CheckEncode(uint8_t version, size_t length,
                               std::span<std::byte> out) {
  if (version == 0 || version > 15) {
    return WireError{WireErrc::kBadVersion, "clc.version"};
  }
  if (out.size() < length) {
    return WireError{WireErrc::kBufferTooSmall, "clc"};
  }
  return length;
}

size_t FceLen(const ClcFirstContactExt& f) {
  return f.long_form ? kClcFceLongLen : kClcFceShortLen;
}

void DecodeFce(const std::byte* p, bool long_form, ClcFirstContactExt& f) {
  f.long_form = long_form;
  uint8_t b0 = Load8(p);
  f.v2_direct = (b0 & 0x80) != 0;
  f.reserved.byte0_bits = b0 & 0x7F;
  uint8_t b1 = Load8(p + 1);
  f.os_type = b1 >> 4;
  f.release = b1 & 0x0F;
  f.reserved.word2 = {Load8(p + 2), Load8(p + 3)};
  CopyIn(p + 4, f.hostname);
  if (long_form) {
    f.max_conns = Load8(p + 36);
    f.max_links = Load8(p + 37);
    f.feature_mask = LoadBe16(p + 38);
    f.vendor_exp_options = LoadBe32(p + 40);
    CopyIn(p + 44, f.reserved.tail);
  } else {
    f.max_conns = 0;
    f.max_links = 0;
    f.feature_mask = 0;
    f.vendor_exp_options = 0;
    f.reserved.tail = {};
  }
}

WireResult<size_t> CheckFce(const ClcFirstContactExt& f) {
  if (f.os_type > 15) return WireError{WireErrc::kBadValue, "clc.fce.os_type"};
  if (f.release > 15) return WireError{WireErrc::kBadValue, "clc.fce.release"};
  if (f.reserved.byte0_bits > 0x7F) {
    return WireError{WireErrc::kBadValue, "clc.fce.reserved"};
  }
  // The 36-byte v2.0 form has no room for the v2.1 fields.
  if (!f.long_form && (f.max_conns != 0 || f.max_links != 0 ||
                       f.feature_mask != 0 || f.vendor_exp_options != 0 ||
                       f.reserved.tail != decltype(f.reserved.tail){})) {
    return WireError{WireErrc::kBadValue, "clc.fce.long_form"};
  }
  return FceLen(f);
}

void EncodeFce(const ClcFirstContactExt& f, std::byte* p) {
  Store8(p, static_cast<uint8_t>((f.v2_direct ? 0x80 : 0) |
                                 f.reserved.byte0_bits));
  Store8(p + 1, static_cast<uint8_t>((f.os_type << 4) | f.release));
  Store8(p + 2, f.reserved.word2[0]);
  Store8(p + 3, f.reserved.word2[1]);
  CopyOut(p + 4, f.hostname);
  if (f.long_form) {
    Store8(p + 36, f.max_conns);
    Store8(p + 37, f.max_links);
    StoreBe16(p + 38, f.feature_mask);
    StoreBe32(p + 40, f.vendor_exp_options);
    CopyOut(p + 44, f.reserved.tail);
  }
}

}  // namespace clc_internal

}  // namespace usmc::wire
