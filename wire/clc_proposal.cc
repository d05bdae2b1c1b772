// wire/clc_proposal.cc: CLC Proposal, v1 and v2 (PROTOCOL.md §2.2).
//
// Layout: header | peer ID, GID, MAC, iparea_offset | SMC-D area (40) |
// IP prefix area (8 + 17n) | V2 extension (40 + 32 per UEID) |
// SMC-Dv2 extension (48 + 10 per ISM GID entry) | trailer.
// Which parts are present depends on the version and typev1/typev2, exactly
// as in Linux smc_clc_msg_prop_valid(); the offsets must point exactly at
// the next part, and the parts must add up to the header length.
#include <algorithm>

#include "base/endian.h"
#include "wire/clc.h"
#include "wire/clc_internal.h"

namespace usmc::wire {

using clc_internal::CopyIn;
using clc_internal::CopyOut;

namespace {

constexpr size_t kIpareaOffsetPos = 38;
constexpr size_t kSmcdAreaPos = 40;
constexpr size_t kV2ExtOffsetPos = 50;
// v2_ext_offset counts from the end of its own field.
constexpr size_t kV2ExtOffsetBase = kV2ExtOffsetPos + 2;
constexpr size_t kPrefixAreaFixedLen = 8;
// smcd_v2_ext_offset counts from the end of its field at V2 ext +6.
constexpr size_t kSmcdV2ExtOffsetBase = 8;
constexpr uint8_t kFlagReservedMask = 0x0E;

// Wire entries a device list takes (an Emulated-ISM device takes two).
size_t IsmEntries(const ClcProposal& m) {
  size_t n = 0;
  for (size_t i = 0; i < m.ism_device_count && i < m.ism_devices.size(); ++i) {
    n += IsEmulatedIsmChid(m.ism_devices[i].chid) ? 2 : 1;
  }
  return n;
}

struct Layout {
  size_t prefix = 0;   // position of the IP prefix area (if present)
  size_t v2_ext = 0;   // position of the V2 extension (if present)
  size_t smcd_v2 = 0;  // position of the SMC-Dv2 extension (if present)
  size_t entries = 0;  // ISM GID list entries
  size_t total = 0;
};

WireResult<Layout> Plan(const ClcProposal& m) {
  Layout l;
  const bool v1 = m.version == 1;
  if (v1 && m.typev1 == SmcType::kNone) {
    return WireError{WireErrc::kBadValue, "clc.proposal.typev1"};
  }
  if (v1 && m.reserved.v1_typev2_bits > 3) {
    return WireError{WireErrc::kBadValue, "clc.proposal.reserved"};
  }
  if (!v1 && !m.has_smcd_area) {
    return WireError{WireErrc::kBadValue, "clc.proposal.has_smcd_area"};
  }
  size_t pos = kSmcdAreaPos + (m.has_smcd_area ? kClcSmcdAreaLen : 0);
  if (m.HasPrefixArea()) {
    if (m.ipv6_prefix_count > kClcMaxIpv6Prefixes) {
      return WireError{WireErrc::kBadCount, "clc.proposal.ipv6_prefix_count"};
    }
    l.prefix = pos;
    pos += kPrefixAreaFixedLen + kClcIpv6PrefixLen * m.ipv6_prefix_count;
  } else if (m.reserved.unused_iparea_offset != 0 &&
             m.reserved.unused_iparea_offset != kClcSmcdAreaLen) {
    return WireError{WireErrc::kBadOffset, "clc.proposal.iparea_offset"};
  }
  if (m.HasV2Extension()) {
    if (m.eid_count > kClcMaxEids) {
      return WireError{WireErrc::kBadCount, "clc.proposal.eid_count"};
    }
    if (m.release > 15) {
      return WireError{WireErrc::kBadValue, "clc.proposal.release"};
    }
    if ((m.reserved.v2_ext_flag_bits & ~kFlagReservedMask) != 0) {
      return WireError{WireErrc::kBadValue, "clc.proposal.reserved"};
    }
    l.v2_ext = pos;
    pos += kClcV2ExtFixedLen + sizeof(ClcEid) * m.eid_count;
  }
  if (m.HasSmcdV2Extension()) {
    if (m.ism_device_count > kClcMaxIsmGidEntries) {
      return WireError{WireErrc::kBadCount, "clc.proposal.ism_gid_count"};
    }
    for (size_t i = 0; i < m.ism_device_count; ++i) {
      const ClcIsmDevice& d = m.ism_devices[i];
      if (!IsEmulatedIsmChid(d.chid) && d.gid_ext != 0) {
        return WireError{WireErrc::kBadValue, "clc.proposal.ism_gid_list"};
      }
    }
    l.entries = IsmEntries(m);
    if (l.entries > kClcMaxIsmGidEntries) {
      return WireError{WireErrc::kBadCount, "clc.proposal.ism_gid_count"};
    }
    l.smcd_v2 = pos;
    pos += kClcSmcdV2ExtFixedLen + kClcIsmGidEntryLen * l.entries;
  }
  l.total = pos + kClcTrailerLen;
  return l;
}

}  // namespace

bool ClcProposal::HasPrefixArea() const {
  return version == 1 || typev1 != SmcType::kNone;
}
bool ClcProposal::HasV2Extension() const {
  return version >= 2 && typev2 != SmcType::kNone;
}
bool ClcProposal::HasSmcdV2Extension() const {
  return HasV2Extension() && SmcdIndicated(typev2);
}

WireResult<size_t> EncodeClcProposal(const ClcProposal& m,
                                     std::span<std::byte> out) {
  WireResult<Layout> plan = Plan(m);
  if (!plan) return plan.error();
  const Layout& l = *plan;
  WireResult<size_t> ok = clc_internal::CheckEncode(m.version, l.total, out);
  if (!ok) return ok.error();

  std::byte* p = out.data();
  std::fill(p, p + l.total, std::byte{0});
  const uint8_t typev2_bits = m.version == 1 ? m.reserved.v1_typev2_bits
                                             : static_cast<uint8_t>(m.typev2);
  clc_internal::WriteHeader(
      p, m.eyecatcher, ClcType::kProposal, l.total,
      static_cast<uint8_t>((m.version << 4) | (typev2_bits << 2) |
                           static_cast<uint8_t>(m.typev1)));
  CopyOut(p + 8, m.peer_id);
  CopyOut(p + 16, m.gid);
  CopyOut(p + 32, m.mac);
  uint16_t iparea = m.HasPrefixArea()
                        ? static_cast<uint16_t>(l.prefix - kSmcdAreaPos)
                        : m.reserved.unused_iparea_offset;
  StoreBe16(p + kIpareaOffsetPos, iparea);

  if (m.has_smcd_area) {
    std::byte* s = p + kSmcdAreaPos;
    StoreBe64(s, m.ism_gid);
    StoreBe16(s + 8, m.ism_chid);
    uint16_t v2_off = 0;
    if (m.version == 1) {
      v2_off = m.reserved.v1_smcd_area_word;
    } else if (m.HasV2Extension()) {
      v2_off = static_cast<uint16_t>(l.v2_ext - kV2ExtOffsetBase);
    }
    StoreBe16(s + 10, v2_off);
    CopyOut(s + 12, m.vendor_oui);
    CopyOut(s + 15, m.vendor_exp_options);
    CopyOut(s + 20, m.reserved.smcd_area);
  }

  if (m.HasPrefixArea()) {
    std::byte* a = p + l.prefix;
    CopyOut(a, m.ipv4_subnet);
    Store8(a + 4, m.ipv4_prefix_len);
    CopyOut(a + 5, m.reserved.prefix_area);
    Store8(a + 7, m.ipv6_prefix_count);
    for (size_t i = 0; i < m.ipv6_prefix_count; ++i) {
      std::byte* e = a + kPrefixAreaFixedLen + kClcIpv6PrefixLen * i;
      CopyOut(e, m.ipv6_prefixes[i].prefix);
      Store8(e + 16, m.ipv6_prefixes[i].prefix_len);
    }
  }

  if (m.HasV2Extension()) {
    std::byte* v = p + l.v2_ext;
    Store8(v, m.eid_count);
    Store8(v + 1, static_cast<uint8_t>(l.entries));
    Store8(v + 2, m.reserved.v2_ext_byte2);
    Store8(v + 3,
           static_cast<uint8_t>((m.release << 4) | m.reserved.v2_ext_flag_bits |
                                (m.seid_indicator ? 1 : 0)));
    CopyOut(v + 4, m.reserved.v2_ext_word4);
    uint16_t smcd_off = m.HasSmcdV2Extension()
                            ? static_cast<uint16_t>(
                                  l.smcd_v2 - (l.v2_ext + kSmcdV2ExtOffsetBase))
                            : 0;
    StoreBe16(v + 6, smcd_off);
    CopyOut(v + 8, m.roce_v2_gid);
    Store8(v + 24, m.max_conns);
    Store8(v + 25, m.max_links);
    StoreBe16(v + 26, m.feature_mask);
    CopyOut(v + 28, m.reserved.v2_ext_tail);
    for (size_t i = 0; i < m.eid_count; ++i) {
      CopyOut(v + kClcV2ExtFixedLen + sizeof(ClcEid) * i, m.eids[i]);
    }
  }

  if (m.HasSmcdV2Extension()) {
    std::byte* d = p + l.smcd_v2;
    CopyOut(d, m.seid);
    CopyOut(d + 32, m.reserved.smcd_v2_ext);
    std::byte* e = d + kClcSmcdV2ExtFixedLen;
    for (size_t i = 0; i < m.ism_device_count; ++i) {
      const ClcIsmDevice& dev = m.ism_devices[i];
      StoreBe64(e, dev.gid);
      StoreBe16(e + 8, dev.chid);
      e += kClcIsmGidEntryLen;
      if (IsEmulatedIsmChid(dev.chid)) {
        StoreBe64(e, dev.gid_ext);
        StoreBe16(e + 8, dev.chid);
        e += kClcIsmGidEntryLen;
      }
    }
  }
  clc_internal::WriteEyecatcher(p + l.total - kClcTrailerLen, m.trailer);
  return l.total;
}

WireResult<ClcProposal> DecodeClcProposal(std::span<const std::byte> bytes) {
  WireResult<clc_internal::MessageFrame> frame =
      clc_internal::CheckFrame(bytes, ClcType::kProposal);
  if (!frame) return frame.error();
  const ClcHeader& h = frame->header;
  const std::byte* p = bytes.data();
  const size_t len = bytes.size();
  const WireError bad_len{WireErrc::kBadLength, "clc.length"};
  // Every "need" below leaves room for the trailer.
  auto fits = [&](size_t end) { return end + kClcTrailerLen <= len; };

  // The fixed part up to the SMC-D area, plus the trailer.
  if (len < kSmcdAreaPos + kClcTrailerLen) return bad_len;

  ClcProposal m;
  m.eyecatcher = h.eyecatcher;
  m.trailer = frame->trailer;
  m.version = h.version;
  m.typev1 = static_cast<SmcType>(h.typev1);
  m.typev2 = static_cast<SmcType>(h.typev2);
  const bool v1 = m.version == 1;
  if (v1 && m.typev1 == SmcType::kNone) {
    return WireError{WireErrc::kBadValue, "clc.proposal.typev1"};
  }
  if (v1) {
    m.reserved.v1_typev2_bits = h.typev2;
    m.typev2 = SmcType::kNone;
  }
  CopyIn(p + 8, m.peer_id);
  CopyIn(p + 16, m.gid);
  CopyIn(p + 32, m.mac);
  const uint16_t iparea = LoadBe16(p + kIpareaOffsetPos);
  const WireError bad_iparea{WireErrc::kBadOffset,
                             "clc.proposal.iparea_offset"};
  if (iparea != 0 && iparea != kClcSmcdAreaLen) return bad_iparea;
  if (v1) {
    m.has_smcd_area = iparea == kClcSmcdAreaLen;
  } else {
    m.has_smcd_area = true;
    if (m.typev1 != SmcType::kNone && iparea != kClcSmcdAreaLen) {
      return bad_iparea;
    }
    if (m.typev1 == SmcType::kNone) m.reserved.unused_iparea_offset = iparea;
  }

  size_t pos = kSmcdAreaPos;
  uint16_t v2_off = 0;
  if (m.has_smcd_area) {
    if (!fits(pos + kClcSmcdAreaLen)) return bad_len;
    const std::byte* s = p + pos;
    m.ism_gid = LoadBe64(s);
    m.ism_chid = LoadBe16(s + 8);
    v2_off = LoadBe16(s + 10);
    CopyIn(s + 12, m.vendor_oui);
    CopyIn(s + 15, m.vendor_exp_options);
    CopyIn(s + 20, m.reserved.smcd_area);
    pos += kClcSmcdAreaLen;
    if (v1) {
      m.reserved.v1_smcd_area_word = v2_off;
      v2_off = 0;
    }
  }

  if (m.HasPrefixArea()) {
    if (!fits(pos + kPrefixAreaFixedLen)) return bad_len;
    const std::byte* a = p + pos;
    CopyIn(a, m.ipv4_subnet);
    m.ipv4_prefix_len = Load8(a + 4);
    CopyIn(a + 5, m.reserved.prefix_area);
    m.ipv6_prefix_count = Load8(a + 7);
    if (m.ipv6_prefix_count > kClcMaxIpv6Prefixes) {
      return WireError{WireErrc::kBadCount, "clc.proposal.ipv6_prefix_count"};
    }
    pos += kPrefixAreaFixedLen;
    if (!fits(pos + kClcIpv6PrefixLen * m.ipv6_prefix_count)) return bad_len;
    for (size_t i = 0; i < m.ipv6_prefix_count; ++i) {
      CopyIn(p + pos, m.ipv6_prefixes[i].prefix);
      m.ipv6_prefixes[i].prefix_len = Load8(p + pos + 16);
      pos += kClcIpv6PrefixLen;
    }
  }

  const WireError bad_v2_off{WireErrc::kBadOffset,
                             "clc.proposal.v2_ext_offset"};
  if (!m.HasV2Extension()) {
    if (v2_off != 0) return bad_v2_off;
  } else {
    if (v2_off != pos - kV2ExtOffsetBase) return bad_v2_off;
    if (!fits(pos + kClcV2ExtFixedLen)) return bad_len;
    const std::byte* v = p + pos;
    m.eid_count = Load8(v);
    const uint8_t entries = Load8(v + 1);
    m.reserved.v2_ext_byte2 = Load8(v + 2);
    const uint8_t flag = Load8(v + 3);
    m.release = flag >> 4;
    m.reserved.v2_ext_flag_bits = flag & kFlagReservedMask;
    m.seid_indicator = (flag & 0x01) != 0;
    m.reserved.v2_ext_word4 = {Load8(v + 4), Load8(v + 5)};
    const uint16_t smcd_off = LoadBe16(v + 6);
    CopyIn(v + 8, m.roce_v2_gid);
    m.max_conns = Load8(v + 24);
    m.max_links = Load8(v + 25);
    m.feature_mask = LoadBe16(v + 26);
    CopyIn(v + 28, m.reserved.v2_ext_tail);
    if (m.eid_count > kClcMaxEids) {
      return WireError{WireErrc::kBadCount, "clc.proposal.eid_count"};
    }
    if (entries > kClcMaxIsmGidEntries ||
        (!m.HasSmcdV2Extension() && entries != 0)) {
      return WireError{WireErrc::kBadCount, "clc.proposal.ism_gid_count"};
    }
    const size_t v2_pos = pos;
    pos += kClcV2ExtFixedLen;
    if (!fits(pos + sizeof(ClcEid) * m.eid_count)) return bad_len;
    for (size_t i = 0; i < m.eid_count; ++i) {
      CopyIn(p + pos, m.eids[i]);
      pos += sizeof(ClcEid);
    }
    const WireError bad_smcd_off{WireErrc::kBadOffset,
                                 "clc.proposal.smcd_v2_ext_offset"};
    if (!m.HasSmcdV2Extension()) {
      if (smcd_off != 0) return bad_smcd_off;
    } else {
      if (smcd_off != pos - (v2_pos + kSmcdV2ExtOffsetBase)) {
        return bad_smcd_off;
      }
      if (!fits(pos + kClcSmcdV2ExtFixedLen + kClcIsmGidEntryLen * entries)) {
        return bad_len;
      }
      CopyIn(p + pos, m.seid);
      CopyIn(p + pos + 32, m.reserved.smcd_v2_ext);
      pos += kClcSmcdV2ExtFixedLen;
      size_t i = 0;
      while (i < entries) {
        ClcIsmDevice& d = m.ism_devices[m.ism_device_count++];
        d.gid = LoadBe64(p + pos);
        d.chid = LoadBe16(p + pos + 8);
        pos += kClcIsmGidEntryLen;
        ++i;
        if (IsEmulatedIsmChid(d.chid)) {
          // The second entry of an Emulated-ISM device repeats the CHID.
          if (i == entries || LoadBe16(p + pos + 8) != d.chid) {
            return WireError{WireErrc::kBadValue, "clc.proposal.ism_gid_list"};
          }
          d.gid_ext = LoadBe64(p + pos);
          pos += kClcIsmGidEntryLen;
          ++i;
        }
      }
    }
  }
  if (pos + kClcTrailerLen != len) return bad_len;
  return m;
}

}  // namespace usmc::wire
