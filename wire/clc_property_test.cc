// Round-trip property tests: many random valid CLC messages from a seeded
// PRNG (deterministic). encode -> decode gives the same struct; decode ->
// encode gives the same bytes; the stated length equals the buffer size.
#include <gtest/gtest.h>

#include <random>

#include "wire/clc.h"
#include "wire/clc_testing.h"

namespace usmc::wire {
namespace {

class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}

  uint64_t U(uint64_t max) {  // uniform in [0, max]
    return std::uniform_int_distribution<uint64_t>(0, max)(rng_);
  }
  bool Coin(int percent = 50) { return U(99) < static_cast<uint64_t>(percent); }
  template <size_t N>
  std::array<uint8_t, N> Arr() {
    std::array<uint8_t, N> a;
    for (auto& x : a) x = static_cast<uint8_t>(U(255));
    return a;
  }
  template <size_t N>
  std::array<uint8_t, N> Sparse() {  // mostly zero, as reserved bytes are
    return Coin(70) ? std::array<uint8_t, N>{} : Arr<N>();
  }
  ClcEyecatcher Eye() {
    return Coin() ? ClcEyecatcher::kSmcr : ClcEyecatcher::kSmcd;
  }
  SmcType Type() { return static_cast<SmcType>(U(3)); }
  uint8_t Version() { return Coin(10) ? static_cast<uint8_t>(3 + U(12)) : 2; }

  ClcFirstContactExt Fce() {
    ClcFirstContactExt f;
    f.long_form = Coin();
    f.v2_direct = Coin();
    f.os_type = static_cast<uint8_t>(U(15));
    f.release = static_cast<uint8_t>(U(15));
    f.hostname = Arr<32>();
    f.reserved.byte0_bits = Coin(70) ? 0 : static_cast<uint8_t>(U(0x7f));
    f.reserved.word2 = Sparse<2>();
    if (f.long_form) {
      f.max_conns = static_cast<uint8_t>(U(255));
      f.max_links = static_cast<uint8_t>(U(255));
      f.feature_mask = static_cast<uint16_t>(U(0xffff));
      f.vendor_exp_options = static_cast<uint32_t>(U(0xffffffff));
      f.reserved.tail = Sparse<8>();
    }
    return f;
  }

  ClcProposal Proposal() {
    ClcProposal m;
    m.eyecatcher = Eye();
    m.trailer = Eye();
    m.version = Coin(30) ? 1 : Version();
    const bool v1 = m.version == 1;
    m.typev1 = Type();
    if (v1) {
      while (m.typev1 == SmcType::kNone) m.typev1 = Type();
      m.reserved.v1_typev2_bits = Coin(70) ? 0 : static_cast<uint8_t>(U(3));
      m.has_smcd_area = Coin();
    } else {
      m.typev2 = Type();
    }
    m.peer_id = Arr<8>();
    m.gid = Arr<16>();
    m.mac = Arr<6>();
    if (m.has_smcd_area) {
      m.ism_gid = U(~0ull);
      m.ism_chid = static_cast<uint16_t>(U(0xffff));
      m.vendor_oui = Arr<3>();
      m.vendor_exp_options = Arr<5>();
      m.reserved.smcd_area = Sparse<20>();
      if (v1 && Coin(30)) {
        m.reserved.v1_smcd_area_word = static_cast<uint16_t>(U(0xffff));
      }
    }
    if (m.HasPrefixArea()) {
      m.ipv4_subnet = Arr<4>();
      m.ipv4_prefix_len = static_cast<uint8_t>(U(32));
      m.reserved.prefix_area = Sparse<2>();
      m.ipv6_prefix_count = static_cast<uint8_t>(U(kClcMaxIpv6Prefixes));
      for (size_t i = 0; i < m.ipv6_prefix_count; ++i) {
        m.ipv6_prefixes[i] = {Arr<16>(), static_cast<uint8_t>(U(128))};
      }
    } else {
      m.reserved.unused_iparea_offset = Coin() ? 0 : kClcSmcdAreaLen;
    }
    if (m.HasV2Extension()) {
      m.release = static_cast<uint8_t>(U(15));
      m.seid_indicator = Coin();
      m.roce_v2_gid = Arr<16>();
      m.max_conns = static_cast<uint8_t>(U(255));
      m.max_links = static_cast<uint8_t>(U(255));
      m.feature_mask = static_cast<uint16_t>(U(0xffff));
      m.eid_count = static_cast<uint8_t>(U(kClcMaxEids));
      for (size_t i = 0; i < m.eid_count; ++i) m.eids[i] = Arr<32>();
      m.reserved.v2_ext_byte2 = Coin(70) ? 0 : static_cast<uint8_t>(U(255));
      m.reserved.v2_ext_flag_bits =
          Coin(70) ? 0 : static_cast<uint8_t>(U(255) & 0x0E);
      m.reserved.v2_ext_word4 = Sparse<2>();
      m.reserved.v2_ext_tail = Sparse<12>();
    }
    if (m.HasSmcdV2Extension()) {
      m.seid = Arr<32>();
      m.reserved.smcd_v2_ext = Sparse<16>();
      size_t budget = U(kClcMaxIsmGidEntries);
      while (budget > 0) {
        ClcIsmDevice d;
        d.gid = U(~0ull);
        if (budget >= 2 && Coin(30)) {
          d.chid = static_cast<uint16_t>(0xFF00 | U(0xff));
          d.gid_ext = U(~0ull);
          budget -= 2;
        } else {
          d.chid = static_cast<uint16_t>(U(0xfeff));
          budget -= 1;
        }
        m.ism_devices[m.ism_device_count++] = d;
      }
    }
    return m;
  }

  ClcSmcrAccept SmcrAccept() {
    ClcSmcrAccept m;
    m.type = Coin() ? ClcType::kAccept : ClcType::kConfirm;
    m.eyecatcher = Eye();
    m.trailer = Eye();
    m.version = Coin(30) ? 1 : Version();
    m.first_contact = Coin();
    m.reserved.hdr_bit2 = Coin(80) ? 0 : 1;
    m.peer_id = Arr<8>();
    m.gid = Arr<16>();
    m.mac = Arr<6>();
    m.qpn = static_cast<uint32_t>(U(0xffffff));
    m.rmb_rkey = static_cast<uint32_t>(U(0xffffffff));
    m.rmbe_idx = static_cast<uint8_t>(U(255));
    m.rmbe_alert_token = static_cast<uint32_t>(U(0xffffffff));
    m.rmbe_size = static_cast<uint8_t>(U(15));
    m.qp_mtu = static_cast<uint8_t>(U(15));
    m.rmb_vaddr = U(~0ull);
    m.psn = static_cast<uint32_t>(U(0xffffff));
    m.reserved.byte51 = Coin(80) ? 0 : static_cast<uint8_t>(U(255));
    m.reserved.byte60 = Coin(80) ? 0 : static_cast<uint8_t>(U(255));
    if (m.version == 1) return m;
    m.eid = Arr<32>();
    m.reserved.v2_tail = Sparse<8>();
    if (!m.first_contact) return m;
    m.fce = Fce();
    if (m.type == ClcType::kConfirm) {
      m.gid_count = static_cast<uint8_t>(U(kClcMaxConfirmGids));
      for (size_t i = 0; i < m.gid_count; ++i) m.gids[i] = Arr<16>();
      m.reserved.gid_list = Sparse<3>();
      // A short-form FCE whose first GID's byte 12 equals gid_count - 1
      // also parses as a long-form FCE with one GID less (docs/wire-clc.md);
      // keep generated messages unambiguous.
      if (!m.fce.long_form && m.gid_count > 0 &&
          m.gids[0][12] == m.gid_count - 1) {
        m.gids[0][12] ^= 0x80;
      }
    }
    return m;
  }

  ClcSmcdAccept SmcdAccept() {
    ClcSmcdAccept m;
    m.type = Coin() ? ClcType::kAccept : ClcType::kConfirm;
    m.eyecatcher = Eye();
    m.trailer = Eye();
    m.version = Coin(30) ? 1 : Version();
    m.first_contact = Coin();
    m.reserved.hdr_bit2 = Coin(80) ? 0 : 1;
    m.gid = U(~0ull);
    m.dmb_token = U(~0ull);
    m.dmbe_idx = static_cast<uint8_t>(U(255));
    m.dmbe_size = static_cast<uint8_t>(U(15));
    m.link_id = static_cast<uint32_t>(U(0xffffffff));
    m.reserved.byte25_bits = Coin(80) ? 0 : static_cast<uint8_t>(U(15));
    m.reserved.word26 = Sparse<2>();
    if (m.version == 1) {
      m.reserved.v1_tail = Sparse<12>();
      return m;
    }
    m.chid = static_cast<uint16_t>(U(0xffff));
    m.eid = Arr<32>();
    m.gid_ext = U(~0ull);
    if (m.first_contact) m.fce = Fce();
    return m;
  }

  ClcDecline Decline() {
    ClcDecline m;
    m.eyecatcher = Eye();
    m.trailer = Eye();
    m.version = Coin() ? 1 : Version();
    m.out_of_sync = Coin(20);
    m.peer_id = Arr<8>();
    m.peer_diagnosis = static_cast<uint32_t>(U(0xffffffff));
    m.os_type = static_cast<uint8_t>(U(15));
    if (m.version >= 2) {
      for (auto& d : m.extra_diagnoses)
        d = static_cast<uint32_t>(U(0xffffffff));
    }
    m.reserved.hdr_bits = Coin(80) ? 0 : static_cast<uint8_t>(U(7));
    m.reserved.byte20_bits = Coin(80) ? 0 : static_cast<uint8_t>(U(15));
    m.reserved.bytes21 = Sparse<3>();
    return m;
  }

  ClcMessage Any() {
    switch (U(3)) {
      case 0:
        return Proposal();
      case 1:
        return SmcrAccept();
      case 2:
        return SmcdAccept();
      default:
        return Decline();
    }
  }

 private:
  std::mt19937_64 rng_;
};

constexpr int kIterations = 5000;

TEST(ClcPropertyTest, RandomMessagesRoundTrip) {
  Gen gen(0x5eed'c1c0);
  int per_type[4] = {};
  for (int i = 0; i < kIterations; ++i) {
    ClcMessage m = gen.Any();
    Bytes wire = EncodeToBytes(m);
    ASSERT_FALSE(wire.empty()) << "iteration " << i << "\n" << DescribeClc(m);
    ASSERT_LE(wire.size(), kClcMaxMessageLen);
    // The header states the real length.
    ASSERT_EQ((size_t{uint8_t(wire[5])} << 8) | uint8_t(wire[6]), wire.size());
    WireResult<size_t> len = EncodedClcLength(m);
    ASSERT_TRUE(len);
    ASSERT_EQ(*len, wire.size());

    WireResult<ClcMessage> d = DecodeClc(wire);
    ASSERT_TRUE(d) << "iteration " << i << ": " << d.error() << "\n"
                   << DescribeClc(m);
    ASSERT_EQ(*d, m) << "iteration " << i;
    ASSERT_EQ(EncodeToBytes(*d), wire);
    ASSERT_FALSE(DescribeClc(*d).empty());
    ++per_type[static_cast<int>(TypeOf(m)) - 1];
  }
  // Every type was exercised.
  for (int n : per_type) EXPECT_GT(n, kIterations / 10);
}

TEST(ClcPropertyTest, LargestProposalHasTheMaximumLength) {
  Gen gen(1);
  ClcProposal p = gen.Proposal();
  p.version = 2;
  p.typev1 = SmcType::kBoth;
  p.typev2 = SmcType::kBoth;
  p.has_smcd_area = true;
  p.ipv6_prefix_count = kClcMaxIpv6Prefixes;
  p.eid_count = kClcMaxEids;
  p.ism_device_count = kClcMaxIsmGidEntries;
  for (auto& d : p.ism_devices) d = {1, 2, 0};
  Bytes wire = EncodeToBytes(p);
  EXPECT_EQ(wire.size(), kClcMaxMessageLen);
  WireResult<ClcMessage> d = DecodeClc(wire);
  ASSERT_TRUE(d) << d.error();
  EXPECT_EQ(std::get<ClcProposal>(*d), p);
}

}  // namespace
}  // namespace usmc::wire
