// wire/clc_describe.cc: DescribeClc, a "field: value" text of a CLC message
// for `usmc demo` and test failure output.
#include <cstdio>
#include <string>

#include "wire/bufsize.h"
#include "wire/clc.h"
#include "wire/reason.h"

namespace usmc::wire {

namespace {

std::string Hex(uint64_t v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%0*llx", digits,
                static_cast<unsigned long long>(v));
  return buf;
}

std::string HexBytes(std::span<const uint8_t> b, char sep) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < b.size(); ++i) {
    if (i > 0 && sep != 0) s += sep;
    std::snprintf(buf, sizeof(buf), "%02x", b[i]);
    s += buf;
  }
  return s;
}

// RFC 5952 text of a 16-byte GID; IPv4-mapped GIDs print as ::ffff:a.b.c.d.
std::string GidText(const ClcGid& g) {
  bool mapped = true;
  for (int i = 0; i < 10; ++i) mapped = mapped && g[i] == 0;
  if (mapped && g[10] == 0xff && g[11] == 0xff) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "::ffff:%u.%u.%u.%u", g[12], g[13], g[14],
                  g[15]);
    return buf;
  }
  uint16_t w[8];
  for (int i = 0; i < 8; ++i)
    w[i] = static_cast<uint16_t>(g[2 * i] << 8 | g[2 * i + 1]);
  int best = -1, best_len = 1;  // only runs of >= 2 zero groups are elided
  for (int i = 0; i < 8;) {
    if (w[i] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < 8 && w[j] == 0) ++j;
    if (j - i > best_len) {
      best = i;
      best_len = j - i;
    }
    i = j;
  }
  std::string s;
  char buf[8];
  for (int i = 0; i < 8; ++i) {
    if (i == best) {
      s += "::";
      i += best_len - 1;
      continue;
    }
    if (!s.empty() && s.back() != ':') s += ':';
    std::snprintf(buf, sizeof(buf), "%x", w[i]);
    s += buf;
  }
  return s;
}

std::string Quoted(std::span<const uint8_t> padded) {
  // Appended piece by piece: gcc 12 -O3 reports a false -Wrestrict in
  // operator+ on a temporary here.
  std::string s = "\"";
  s += ClcText(padded);
  s += '"';
  return s;
}

class Lines {
 public:
  void Add(std::string_view field, const std::string& value) {
    s_ += field;
    s_ += ": ";
    s_ += value;
    s_ += '\n';
  }
  void Add(std::string_view field, uint64_t value) {
    Add(field, std::to_string(value));
  }
  std::string Take() { return std::move(s_); }

 private:
  std::string s_;
};

std::string Buf(uint8_t compressed) {
  return std::to_string(compressed) + " (" +
         std::to_string(UncompressBufSize(compressed) / 1024) + " KiB)";
}

void AddFce(Lines& l, const ClcFirstContactExt& f, bool smcr) {
  l.Add("fce.form", f.long_form ? "v2.1 (52 bytes)" : "v2.0 (36 bytes)");
  if (smcr) l.Add("fce.v2_direct", f.v2_direct ? "yes" : "no");
  l.Add("fce.os_type", f.os_type);
  l.Add("fce.release", f.release);
  l.Add("fce.hostname", Quoted(f.hostname));
  if (f.long_form) {
    if (smcr) {
      l.Add("fce.max_conns", f.max_conns);
      l.Add("fce.max_links", f.max_links);
    }
    l.Add("fce.feature_mask", Hex(f.feature_mask, 4));
  }
}

void AddHeader(Lines& l, ClcType type, ClcEyecatcher eye, uint8_t version,
               std::string_view path) {
  l.Add("type", std::string(ToString(type)));
  l.Add("eyecatcher", std::string(ToString(eye)));
  l.Add("version", version);
  if (!path.empty()) l.Add("path", std::string(path));
}

std::string Describe(const ClcProposal& m) {
  Lines l;
  AddHeader(l, ClcType::kProposal, m.eyecatcher, m.version, "");
  l.Add("typev1", std::string(ToString(m.typev1)));
  if (m.version >= 2) l.Add("typev2", std::string(ToString(m.typev2)));
  l.Add("peer_id", HexBytes(m.peer_id, 0));
  l.Add("gid", GidText(m.gid));
  l.Add("mac", HexBytes(m.mac, ':'));
  if (m.has_smcd_area) {
    l.Add("ism_gid", Hex(m.ism_gid, 16));
    l.Add("ism_chid", Hex(m.ism_chid, 4));
  }
  if (m.HasPrefixArea()) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%u.%u.%u.%u/%u", m.ipv4_subnet[0],
                  m.ipv4_subnet[1], m.ipv4_subnet[2], m.ipv4_subnet[3],
                  m.ipv4_prefix_len);
    l.Add("ipv4_prefix", buf);
    l.Add("ipv6_prefix_count", m.ipv6_prefix_count);
    for (size_t i = 0; i < m.ipv6_prefix_count; ++i) {
      ClcGid g = m.ipv6_prefixes[i].prefix;
      l.Add("ipv6_prefix",
            GidText(g) + "/" + std::to_string(m.ipv6_prefixes[i].prefix_len));
    }
  }
  if (m.HasV2Extension()) {
    l.Add("release", m.release);
    l.Add("seid_indicator", m.seid_indicator ? "yes" : "no");
    l.Add("roce_v2_gid", GidText(m.roce_v2_gid));
    l.Add("max_conns", m.max_conns);
    l.Add("max_links", m.max_links);
    l.Add("feature_mask", Hex(m.feature_mask, 4));
    l.Add("eid_count", m.eid_count);
    for (size_t i = 0; i < m.eid_count; ++i) l.Add("ueid", Quoted(m.eids[i]));
  }
  if (m.HasSmcdV2Extension()) {
    l.Add("seid", Quoted(m.seid));
    l.Add("ism_device_count", m.ism_device_count);
    for (size_t i = 0; i < m.ism_device_count; ++i) {
      const ClcIsmDevice& d = m.ism_devices[i];
      std::string v = "gid " + Hex(d.gid, 16) + " chid " + Hex(d.chid, 4);
      if (IsEmulatedIsmChid(d.chid)) v += " gid_ext " + Hex(d.gid_ext, 16);
      l.Add("ism_device", v);
    }
  }
  return l.Take();
}

std::string Describe(const ClcSmcrAccept& m) {
  Lines l;
  AddHeader(l, m.type, m.eyecatcher, m.version, "SMC-R");
  l.Add("first_contact", m.first_contact ? "yes" : "no");
  l.Add("peer_id", HexBytes(m.peer_id, 0));
  l.Add("gid", GidText(m.gid));
  l.Add("mac", HexBytes(m.mac, ':'));
  l.Add("qpn", Hex(m.qpn, 6));
  l.Add("rmb_rkey", Hex(m.rmb_rkey, 8));
  l.Add("rmbe_idx", m.rmbe_idx);
  l.Add("rmbe_alert_token", Hex(m.rmbe_alert_token, 8));
  l.Add("rmbe_size", Buf(m.rmbe_size));
  l.Add("qp_mtu", m.qp_mtu >= 1 && m.qp_mtu <= 5
                      ? std::to_string(m.qp_mtu) + " (" +
                            std::to_string(128 << m.qp_mtu) + ")"
                      : std::to_string(m.qp_mtu));
  l.Add("rmb_vaddr", Hex(m.rmb_vaddr, 16));
  l.Add("psn", Hex(m.psn, 6));
  if (m.version >= 2) {
    l.Add("eid", Quoted(m.eid));
    if (m.first_contact) AddFce(l, m.fce, true);
    if (m.version >= 2 && m.first_contact && m.type == ClcType::kConfirm) {
      l.Add("gid_count", m.gid_count);
      for (size_t i = 0; i < m.gid_count; ++i) {
        l.Add("gid_list", GidText(m.gids[i]));
      }
    }
  }
  return l.Take();
}

std::string Describe(const ClcSmcdAccept& m) {
  Lines l;
  AddHeader(l, m.type, m.eyecatcher, m.version, "SMC-D");
  l.Add("first_contact", m.first_contact ? "yes" : "no");
  l.Add("gid", Hex(m.gid, 16));
  l.Add("dmb_token", Hex(m.dmb_token, 16));
  l.Add("dmbe_idx", m.dmbe_idx);
  l.Add("dmbe_size", Buf(m.dmbe_size));
  l.Add("link_id", Hex(m.link_id, 8));
  if (m.version >= 2) {
    l.Add("chid", Hex(m.chid, 4));
    l.Add("eid", Quoted(m.eid));
    l.Add("gid_ext", Hex(m.gid_ext, 16));
    if (m.first_contact) AddFce(l, m.fce, false);
  }
  return l.Take();
}

std::string Describe(const ClcDecline& m) {
  Lines l;
  AddHeader(l, ClcType::kDecline, m.eyecatcher, m.version, "");
  l.Add("out_of_sync", m.out_of_sync ? "yes" : "no");
  l.Add("peer_id", HexBytes(m.peer_id, 0));
  l.Add("peer_diagnosis", FormatReason(m.peer_diagnosis));
  l.Add("os_type", m.os_type);
  if (m.version >= 2) {
    for (uint32_t d : m.extra_diagnoses) {
      if (d != 0) l.Add("extra_diagnosis", FormatReason(d));
    }
  }
  return l.Take();
}

}  // namespace

std::string DescribeClc(const ClcMessage& m) {
  return std::visit([](const auto& msg) { return Describe(msg); }, m);
}

}  // namespace usmc::wire
