// wire/clc_testing.h: helpers for the CLC tests (test-only, not in the
// library): a field-by-field byte builder for hand-assembled messages,
// encode-to-vector, and gtest printers that show DescribeClc text.
//
//   Bytes want = ByteBuilder().Eye("SMCR").U8(4).U16(28).U8(0x10)...Take();
//   EXPECT_EQ(EncodeToBytes(msg), want);
#ifndef USMC_WIRE_CLC_TESTING_H_
#define USMC_WIRE_CLC_TESTING_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "wire/clc.h"

namespace usmc::wire {

using Bytes = std::vector<std::byte>;

// Appends big-endian fields in wire order. Independent of the codec.
class ByteBuilder {
 public:
  ByteBuilder& U8(uint64_t v) {
    b_.push_back(static_cast<std::byte>(v & 0xff));
    return *this;
  }
  ByteBuilder& Be(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) U8(v >> (8 * i));
    return *this;
  }
  ByteBuilder& U16(uint64_t v) { return Be(v, 2); }
  ByteBuilder& U24(uint64_t v) { return Be(v, 3); }
  ByteBuilder& U32(uint64_t v) { return Be(v, 4); }
  ByteBuilder& U64(uint64_t v) { return Be(v, 8); }
  ByteBuilder& Raw(std::initializer_list<int> v) {
    for (int x : v) U8(static_cast<uint64_t>(x));
    return *this;
  }
  ByteBuilder& Zeros(size_t n) {
    b_.insert(b_.end(), n, std::byte{0});
    return *this;
  }
  // "SMCR" / "SMCD" in EBCDIC.
  ByteBuilder& Eye(std::string_view which) {
    return Raw({0xE2, 0xD4, 0xC3, which == "SMCD" ? 0xC4 : 0xD9});
  }
  // ASCII text, blank padded to n bytes.
  ByteBuilder& Text(std::string_view s, size_t n) {
    for (size_t i = 0; i < n; ++i) U8(i < s.size() ? s[i] : ' ');
    return *this;
  }
  // An IPv4-mapped 16-byte GID ::ffff:a.b.c.d.
  ByteBuilder& MappedGid(int a, int b, int c, int d) {
    Zeros(10);
    return Raw({0xff, 0xff, a, b, c, d});
  }
  // Any 16-byte GID (e.g. an IPv6 address), byte for byte.
  ByteBuilder& Gid16(const std::array<uint8_t, 16>& g) {
    for (uint8_t x : g) U8(x);
    return *this;
  }
  size_t size() const { return b_.size(); }
  Bytes Take() { return std::move(b_); }

 private:
  Bytes b_;
};

inline ClcGid MappedGid(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return ClcGid{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d};
}

// A valid message of every type, version, path and optional part, built
// from fields (the known-answer tests pin the encodings of the same shapes).
inline std::vector<std::pair<std::string, ClcMessage>> ClcSamples() {
  std::vector<std::pair<std::string, ClcMessage>> v;
  const ClcPeerId peer = {0x12, 0x34, 0x52, 0x54, 0x00, 0x00, 0x00, 0x02};
  const ClcMac mac = {0x52, 0x54, 0x00, 0x00, 0x00, 0x02};
  const ClcGid ll = {0xfe, 0x80, 0,    0,    0,    0,    0,    0,
                     0x50, 0x54, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x02};
  {
    ClcDecline d;
    d.version = 1;
    d.peer_id = peer;
    d.peer_diagnosis = 0x03030002;
    v.emplace_back("decline_v1", d);
    d.version = 2;
    d.os_type = kClcOsLinux;
    d.out_of_sync = true;
    d.peer_diagnosis = 0x04000000;
    d.extra_diagnoses = {0x03030001, 0x03030007, 0, 0x09990000};
    v.emplace_back("decline_v2", d);
  }
  {
    ClcProposal p;
    p.version = 1;
    p.typev1 = SmcType::kR;
    p.peer_id = peer;
    p.gid = ll;
    p.mac = mac;
    p.has_smcd_area = false;
    p.ipv4_subnet = {10, 0, 0, 0};
    p.ipv4_prefix_len = 24;
    v.emplace_back("proposal_v1_r", p);
    p.typev1 = SmcType::kBoth;
    p.has_smcd_area = true;
    p.ism_gid = 0x0102030405060708;
    p.ism_chid = 0x1234;
    p.ipv4_subnet = {};
    p.ipv4_prefix_len = 0;
    p.ipv6_prefix_count = 2;
    p.ipv6_prefixes[0] = {{0x20, 0x01, 0x0d, 0xb8, 0, 1}, 64};
    p.ipv6_prefixes[1] = {{0xfd}, 8};
    v.emplace_back("proposal_v1_b_ipv6", p);
  }
  {
    ClcProposal p;
    p.version = 2;
    p.typev1 = SmcType::kBoth;
    p.typev2 = SmcType::kBoth;
    p.peer_id = peer;
    p.gid = ll;
    p.mac = mac;
    p.ism_gid = 0x0102030405060708;
    p.ism_chid = 0x1234;
    p.vendor_oui = {0x00, 0x11, 0x22};
    p.vendor_exp_options = {1, 2, 3, 4, 5};
    p.ipv4_subnet = {10, 0, 0, 0};
    p.ipv4_prefix_len = 24;
    p.seid_indicator = true;
    p.roce_v2_gid = MappedGid(10, 0, 0, 2);
    p.max_conns = 255;
    p.max_links = 2;
    p.feature_mask = kClcFeatureEmulatedIsm;
    p.eid_count = 1;
    p.eids[0] = MakeClcEid("LAB-UEID");
    p.seid = MakeClcEid("SEID-TEST");
    p.ism_device_count = 2;
    p.ism_devices[0] = {0x1111222233334444, 0x0010, 0};
    p.ism_devices[1] = {0xaaaabbbbccccdddd, 0xFF01, 0x0102030405060708};
    v.emplace_back("proposal_v2_full", p);
    ClcProposal r;
    r.version = 2;
    r.typev1 = SmcType::kNone;
    r.typev2 = SmcType::kR;
    r.roce_v2_gid = MappedGid(10, 0, 0, 2);
    r.max_conns = 255;
    r.max_links = 2;
    r.feature_mask = 1;
    r.eid_count = 1;
    r.eids[0] = MakeClcEid("LAB-UEID");
    v.emplace_back("proposal_v2_r", r);
    ClcProposal d;
    d.version = 2;
    d.typev1 = SmcType::kD;
    d.typev2 = SmcType::kD;
    d.ism_gid = 0x42;
    d.ism_chid = 0x0100;
    d.ipv4_subnet = {192, 168, 1, 0};
    d.ipv4_prefix_len = 24;
    d.ipv6_prefix_count = 1;
    d.ipv6_prefixes[0] = {{0x20, 0x01, 0x0d, 0xb8}, 32};
    d.seid = MakeClcEid("IBM-SYSZ-ISMSEID00000000AABBCCDD");
    d.seid_indicator = true;
    d.ism_device_count = 1;
    d.ism_devices[0] = {0x1234, 0xFFFF, 0x5678};
    v.emplace_back("proposal_v2_d", d);
  }
  {
    ClcSmcrAccept a;
    a.type = ClcType::kAccept;
    a.version = 1;
    a.first_contact = true;
    a.peer_id = peer;
    a.gid = ll;
    a.mac = mac;
    a.qpn = 0x123;
    a.rmb_rkey = 0x1234;
    a.rmbe_alert_token = 5;
    a.rmbe_size = 1;
    a.qp_mtu = 3;
    a.rmb_vaddr = 0x0000ffff12340000;
    a.psn = 0xabcdef;
    v.emplace_back("smcr_accept_v1", a);
    a.type = ClcType::kConfirm;
    a.first_contact = false;
    v.emplace_back("smcr_confirm_v1", a);
    a.version = 2;
    a.type = ClcType::kAccept;
    a.gid = MappedGid(10, 0, 0, 1);
    a.eid = MakeClcEid("LAB-UEID");
    v.emplace_back("smcr_accept_v2", a);
    a.first_contact = true;
    a.fce.v2_direct = true;
    a.fce.hostname = MakeClcHostname("server");
    a.fce.max_conns = 255;
    a.fce.max_links = 2;
    a.fce.feature_mask = 1;
    v.emplace_back("smcr_accept_v2_fce", a);
    a.fce.long_form = false;
    a.fce.release = 0;
    a.fce.max_conns = 0;  // the short form has no v2.1 fields
    a.fce.max_links = 0;
    a.fce.feature_mask = 0;
    v.emplace_back("smcr_accept_v2_fce20", a);
    a.type = ClcType::kConfirm;
    a.gid = MappedGid(10, 0, 0, 2);
    a.gid_count = 1;
    a.gids[0] = MappedGid(10, 0, 0, 2);
    v.emplace_back("smcr_confirm_v2_fce20", a);
    a.fce.long_form = true;
    a.fce.release = 1;
    a.fce.max_conns = 255;
    a.fce.max_links = 2;
    a.fce.feature_mask = 1;
    a.gid_count = 2;
    a.gids[1] = MappedGid(10, 0, 1, 2);
    v.emplace_back("smcr_confirm_v2_fce", a);
  }
  {
    ClcSmcdAccept a;
    a.type = ClcType::kAccept;
    a.version = 1;
    a.first_contact = true;
    a.gid = 0x0011223344556677;
    a.dmb_token = 0x8000000000000042;
    a.dmbe_size = 2;
    a.link_id = 0x00abcdef;
    v.emplace_back("smcd_accept_v1", a);
    a.type = ClcType::kConfirm;
    v.emplace_back("smcd_confirm_v1", a);
    a.version = 2;
    a.first_contact = false;
    a.chid = 0x0100;
    a.eid = MakeClcEid("LAB-UEID");
    v.emplace_back("smcd_confirm_v2", a);
    a.first_contact = true;
    a.fce.long_form = false;
    a.fce.release = 0;
    a.fce.hostname = MakeClcHostname("zhost");
    v.emplace_back("smcd_confirm_v2_fce20", a);
    a.type = ClcType::kAccept;
    a.chid = 0xFFFF;
    a.gid_ext = 0x0f0e0d0c0b0a0908;
    a.fce.long_form = true;
    a.fce.release = 1;
    a.fce.feature_mask = 1;
    v.emplace_back("smcd_accept_v2_fce", a);
  }
  return v;
}

inline Bytes EncodeToBytes(const ClcMessage& m) {
  Bytes out(kClcMaxMessageLen);
  WireResult<size_t> n = EncodeClc(m, out);
  if (!n) return {};
  out.resize(*n);
  return out;
}

inline Bytes HexToBytes(std::string_view hex) {
  Bytes b;
  auto nib = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    b.push_back(static_cast<std::byte>(nib(hex[i]) << 4 | nib(hex[i + 1])));
  }
  return b;
}

// Reads a fixture relative to the repo root (USMC_SOURCE_DIR).
inline Bytes ReadFixture(const std::string& rel) {
  const char* root = std::getenv("USMC_SOURCE_DIR");
  std::string path = std::string(root ? root : ".") + "/" + rel;
  std::ifstream f(path, std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(f)),
                        std::istreambuf_iterator<char>());
  Bytes b(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) b[i] = std::byte(raw[i]);
  return b;
}

inline void PrintTo(const ClcProposal& m, std::ostream* os) {
  *os << "\n" << DescribeClc(m);
}
inline void PrintTo(const ClcSmcrAccept& m, std::ostream* os) {
  *os << "\n" << DescribeClc(m);
}
inline void PrintTo(const ClcSmcdAccept& m, std::ostream* os) {
  *os << "\n" << DescribeClc(m);
}
inline void PrintTo(const ClcDecline& m, std::ostream* os) {
  *os << "\n" << DescribeClc(m);
}

}  // namespace usmc::wire

#endif  // USMC_WIRE_CLC_TESTING_H_
