// Rejection tests: every length, count and offset field, the eyecatchers,
// trailer, type and version, corrupted; truncation at every byte position.
// Each case asserts the exact WireErrc and field name. Also the
// reserved-bit policy: accepted, never interpreted, kept for re-encoding.
#include <gtest/gtest.h>

#include "wire/clc.h"
#include "wire/clc_testing.h"

namespace usmc::wire {
namespace {

WireError Err(WireErrc c, const char* field) { return WireError{c, field}; }

Bytes Sample(const std::string& name) {
  for (auto& [n, m] : ClcSamples()) {
    if (n == name) return EncodeToBytes(m);
  }
  ADD_FAILURE() << "no sample " << name;
  return {};
}

::testing::AssertionResult FailsWith(const Bytes& b, const WireError& want) {
  WireResult<ClcMessage> r = DecodeClc(b);
  if (r) return ::testing::AssertionFailure() << "decoded, want " << want;
  if (!(r.error() == want)) {
    return ::testing::AssertionFailure()
           << "got " << r.error() << ", want " << want;
  }
  return ::testing::AssertionSuccess();
}

void SetBe16(Bytes& b, size_t off, uint16_t v) {
  b[off] = std::byte(v >> 8);
  b[off + 1] = std::byte(v & 0xff);
}

class ClcRejectAllTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ClcRejectAllTest, TruncatedAtEveryPosition) {
  Bytes full = Sample(GetParam());
  ASSERT_FALSE(full.empty());
  for (size_t k = 0; k < full.size(); ++k) {
    Bytes cut(full.begin(), full.begin() + k);
    WireError want = k < kClcHeaderLen
                         ? Err(WireErrc::kTruncated, "clc.header")
                         : Err(WireErrc::kTruncated, "clc.length");
    EXPECT_TRUE(FailsWith(cut, want)) << "cut at " << k;
  }
}

TEST_P(ClcRejectAllTest, EveryWrongLengthValue) {
  Bytes full = Sample(GetParam());
  for (uint32_t len = 0; len <= 0xffff; ++len) {
    if (len == full.size()) continue;
    if (len > 800 && len % 251 != 0) continue;  // sample the large values
    Bytes b = full;
    SetBe16(b, 5, static_cast<uint16_t>(len));
    WireError want = len < kClcDeclineV1Len || len > kClcMaxMessageLen
                         ? Err(WireErrc::kBadLength, "clc.length")
                     : len > full.size()
                         ? Err(WireErrc::kTruncated, "clc.length")
                         : Err(WireErrc::kBadLength, "clc.length");
    ASSERT_TRUE(FailsWith(b, want)) << "length " << len;
  }
}

// The stated length matches the buffer, but the parts do not add up.
TEST_P(ClcRejectAllTest, SumOfPartsMismatch) {
  Bytes full = Sample(GetParam());
  for (int delta : {-5, -1, 1, 3, 17}) {
    Bytes b(full.begin(), full.end() - kClcTrailerLen);
    b.resize(b.size() + delta, std::byte{0});
    b.insert(b.end(), full.end() - kClcTrailerLen, full.end());
    SetBe16(b, 5, static_cast<uint16_t>(b.size()));
    EXPECT_TRUE(FailsWith(b, Err(WireErrc::kBadLength, "clc.length")))
        << "delta " << delta;
  }
}

TEST_P(ClcRejectAllTest, EyecatcherTrailerTypeVersion) {
  Bytes full = Sample(GetParam());
  for (size_t i = 0; i < 4; ++i) {
    Bytes b = full;
    b[i] ^= std::byte{0xff};
    EXPECT_TRUE(FailsWith(b, Err(WireErrc::kBadEyecatcher, "clc.eyecatcher")));
    b = full;
    b[b.size() - 4 + i] ^= std::byte{0xff};
    EXPECT_TRUE(FailsWith(b, Err(WireErrc::kBadTrailer, "clc.trailer")));
  }
  for (int type : {0, 5, 6, 0x80, 0xff}) {
    Bytes b = full;
    b[4] = std::byte(type);
    EXPECT_TRUE(FailsWith(b, Err(WireErrc::kBadType, "clc.type")));
  }
  Bytes b = full;
  b[7] &= std::byte{0x0f};  // version 0
  EXPECT_TRUE(FailsWith(b, Err(WireErrc::kBadVersion, "clc.version")));
}

// Any single-bit change either fails or decodes to a message that
// re-encodes to exactly the changed bytes (nothing is silently dropped).
TEST_P(ClcRejectAllTest, BitFlipsNeverLoseBytes) {
  Bytes full = Sample(GetParam());
  for (size_t i = 0; i < full.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes b = full;
      b[i] ^= std::byte(1 << bit);
      WireResult<ClcMessage> m = DecodeClc(b);
      if (m) {
        ASSERT_EQ(EncodeToBytes(*m), b) << "byte " << i << " bit " << bit;
      }
    }
  }
}

TEST_P(ClcRejectAllTest, TypedDecodersRejectOtherTypes) {
  Bytes b = Sample(GetParam());
  ClcType t = static_cast<ClcType>(b[4]);
  const WireError bad_type = Err(WireErrc::kBadType, "clc.type");
  if (t != ClcType::kProposal) {
    WireResult<ClcProposal> r = DecodeClcProposal(b);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), bad_type);
  }
  if (t != ClcType::kDecline) {
    WireResult<ClcDecline> r = DecodeClcDecline(b);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), bad_type);
  }
  if (t == ClcType::kProposal || t == ClcType::kDecline) {
    WireResult<ClcSmcrAccept> r = DecodeClcSmcrAccept(b);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), bad_type);
    WireResult<ClcSmcdAccept> d = DecodeClcSmcdAccept(b);
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error(), bad_type);
  }
}

std::vector<std::string> SampleNames() {
  std::vector<std::string> v;
  for (auto& [n, m] : ClcSamples()) v.push_back(n);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Samples, ClcRejectAllTest,
                         ::testing::ValuesIn(SampleNames()),
                         [](const auto& info) { return info.param; });

// ------------------------------------------------ field-specific cases

struct Corruption {
  std::string sample;
  size_t offset;
  int width;  // 1 or 2 bytes
  uint16_t value;
  WireErrc code;
  const char* field;
};

class ClcCorruptionTest : public ::testing::TestWithParam<Corruption> {};

TEST_P(ClcCorruptionTest, ExactError) {
  const Corruption& c = GetParam();
  Bytes b = Sample(c.sample);
  ASSERT_LT(c.offset + c.width, b.size());
  if (c.width == 2) {
    SetBe16(b, c.offset, c.value);
  } else {
    b[c.offset] = std::byte(c.value);
  }
  EXPECT_TRUE(FailsWith(b, Err(c.code, c.field)));
}

constexpr WireErrc kOff = WireErrc::kBadOffset;
constexpr WireErrc kCnt = WireErrc::kBadCount;
constexpr WireErrc kLen = WireErrc::kBadLength;
constexpr WireErrc kVal = WireErrc::kBadValue;
constexpr const char* kIparea = "clc.proposal.iparea_offset";
constexpr const char* kV2Off = "clc.proposal.v2_ext_offset";
constexpr const char* kSmcdOff = "clc.proposal.smcd_v2_ext_offset";
constexpr const char* kLength = "clc.length";

// Offsets: proposal_v2_full is 242 bytes: iparea_offset 38, v2_ext_offset
// 50, IPv6 count 87, V2 extension 88 (eid_cnt 88, ism_gid_cnt 89,
// smcd_v2_ext_offset 94), UEID 128, SMC-Dv2 extension 160, GID entries 208
// (the Emulated-ISM pair at 218 and 228, CHIDs at 226 and 236).
// proposal_v2_r is 156 bytes: V2 extension at 80 (smcd offset at 86).
// proposal_v1_r is 52 bytes: IPv6 count at 47.
// smcr_confirm_v2_fce is 196 bytes: GID count at 156.
INSTANTIATE_TEST_SUITE_P(
    Fields, ClcCorruptionTest,
    ::testing::Values(
        Corruption{"proposal_v2_full", 38, 2, 0, kOff, kIparea},
        Corruption{"proposal_v2_full", 38, 2, 20, kOff, kIparea},
        Corruption{"proposal_v2_full", 38, 2, 41, kOff, kIparea},
        Corruption{"proposal_v2_full", 50, 2, 35, kOff, kV2Off},
        Corruption{"proposal_v2_full", 50, 2, 37, kOff, kV2Off},
        Corruption{"proposal_v2_full", 50, 2, 0, kOff, kV2Off},
        Corruption{"proposal_v2_full", 87, 1, 9, kCnt,
                   "clc.proposal.ipv6_prefix_count"},
        Corruption{"proposal_v2_full", 87, 1, 255, kCnt,
                   "clc.proposal.ipv6_prefix_count"},
        Corruption{"proposal_v2_full", 87, 1, 1, kOff, kV2Off},
        Corruption{"proposal_v2_full", 88, 1, 9, kCnt,
                   "clc.proposal.eid_count"},
        Corruption{"proposal_v2_full", 88, 1, 2, kOff, kSmcdOff},
        Corruption{"proposal_v2_full", 88, 1, 0, kOff, kSmcdOff},
        Corruption{"proposal_v2_full", 89, 1, 9, kCnt,
                   "clc.proposal.ism_gid_count"},
        Corruption{"proposal_v2_full", 89, 1, 4, kLen, kLength},
        Corruption{"proposal_v2_full", 89, 1, 1, kLen, kLength},
        Corruption{"proposal_v2_full", 89, 1, 2, kVal,
                   "clc.proposal.ism_gid_list"},
        Corruption{"proposal_v2_full", 94, 2, 63, kOff, kSmcdOff},
        Corruption{"proposal_v2_full", 94, 2, 0, kOff, kSmcdOff},
        Corruption{"proposal_v2_full", 236, 2, 0xFF02, kVal,
                   "clc.proposal.ism_gid_list"},
        Corruption{"proposal_v2_r", 38, 2, 8, kOff, kIparea},
        Corruption{"proposal_v2_r", 50, 2, 0, kOff, kV2Off},
        Corruption{"proposal_v2_r", 50, 2, 29, kOff, kV2Off},
        Corruption{"proposal_v2_r", 80, 1, 9, kCnt, "clc.proposal.eid_count"},
        Corruption{"proposal_v2_r", 80, 1, 2, kLen, kLength},
        Corruption{"proposal_v2_r", 81, 1, 1, kCnt,
                   "clc.proposal.ism_gid_count"},
        Corruption{"proposal_v2_r", 86, 2, 64, kOff, kSmcdOff},
        Corruption{"proposal_v2_r", 7, 1, 0x2A, kOff, kV2Off},    // typev2 N
        Corruption{"proposal_v2_r", 7, 1, 0x20, kOff, kIparea},   // typev1 R
        Corruption{"proposal_v2_r", 7, 1, 0x26, kOff, kSmcdOff},  // typev2 D
        Corruption{"proposal_v1_r", 47, 1, 9, kCnt,
                   "clc.proposal.ipv6_prefix_count"},
        Corruption{"proposal_v1_r", 47, 1, 1, kLen, kLength},
        Corruption{"proposal_v1_r", 38, 2, 40, kLen, kLength},
        Corruption{"proposal_v1_r", 38, 2, 39, kOff, kIparea},
        Corruption{"proposal_v1_r", 7, 1, 0x12, kVal, "clc.proposal.typev1"},
        Corruption{"proposal_v2_full", 7, 1, 0x1F, kLen, kLength},  // v1
        Corruption{"smcr_confirm_v2_fce", 156, 1, 3, kLen, kLength},
        Corruption{"smcr_confirm_v2_fce", 156, 1, 0, kLen, kLength},
        Corruption{"smcr_confirm_v2_fce", 156, 1, 255, kLen, kLength},
        Corruption{"smcr_confirm_v2_fce", 7, 1, 0x20, kLen, kLength},  // !fc
        Corruption{"smcr_confirm_v2_fce", 7, 1, 0x29, kLen, kLength},  // D
        Corruption{"smcr_confirm_v2_fce", 7, 1, 0x2A, kVal, "clc.typev1"},
        Corruption{"smcr_confirm_v2_fce", 7, 1, 0x2B, kVal, "clc.typev1"},
        Corruption{"smcr_accept_v2", 7, 1, 0x28, kLen, kLength},  // fc: no FCE
        Corruption{"smcr_accept_v1", 7, 1, 0x20, kLen, kLength},  // v2 < 108
        Corruption{"smcd_accept_v2_fce", 7, 1, 0x21, kLen, kLength},
        Corruption{"smcd_accept_v1", 7, 1, 0x21, kLen, kLength},
        Corruption{"smcd_confirm_v2", 7, 1, 0x29, kLen, kLength},
        Corruption{"decline_v1", 7, 1, 0x20, kLen, kLength},
        Corruption{"decline_v2", 7, 1, 0x18, kLen, kLength},
        Corruption{"decline_v1", 4, 1, 1, kLen, kLength},  // as a Proposal
        // As a Proposal, the QPN's first two bytes are the iparea_offset.
        Corruption{"smcr_accept_v1", 4, 1, 1, kOff, kIparea},
        Corruption{"proposal_v2_full", 4, 1, 2, kVal, "clc.typev1"}));

TEST(ClcCountTest, ConfirmGidListAboveTheLimit) {
  // A consistent message (length matches) with 9 GIDs: the count is what
  // is wrong.
  Bytes b = Sample("smcr_confirm_v2_fce");  // 2 GIDs, count at 156
  b[156] = std::byte{9};
  b.insert(b.end() - kClcTrailerLen, 7 * sizeof(ClcGid), std::byte{0});
  SetBe16(b, 5, static_cast<uint16_t>(b.size()));
  EXPECT_TRUE(FailsWith(b, Err(kCnt, "clc.smcr.gid_count")));
  b[156] = std::byte{8};  // 8 GIDs in a buffer for 9: sum of parts is off
  EXPECT_TRUE(FailsWith(b, Err(kLen, kLength)));
}

// --------------------------------------------- liberal acceptance cases

TEST(ClcLiberalTest, UnusedIpareaOffsetFortyIsKept) {
  Bytes b = Sample("proposal_v2_r");
  SetBe16(b, 38, 40);
  WireResult<ClcProposal> p = DecodeClcProposal(b);
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->reserved.unused_iparea_offset, 40);
  EXPECT_EQ(EncodeToBytes(*p), b);
}

TEST(ClcLiberalTest, LaterVersionsUseTheV2Layout) {
  Bytes b = Sample("smcr_confirm_v2_fce");
  b[7] = std::byte{0x38};  // version 3, first contact, R
  WireResult<ClcMessage> m = DecodeClc(b);
  ASSERT_TRUE(m) << m.error();
  EXPECT_EQ(std::get<ClcSmcrAccept>(*m).version, 3);
  EXPECT_EQ(std::get<ClcSmcrAccept>(*m).gid_count, 2);
  EXPECT_EQ(EncodeToBytes(*m), b);
}

TEST(ClcLiberalTest, MixedEyecatchersAreAccepted) {
  // Linux accepts SMCR or SMCD in either place, independently.
  Bytes b = Sample("smcd_accept_v1");
  b[3] = std::byte{0xD9};  // header SMCR, trailer stays SMCD
  WireResult<ClcMessage> m = DecodeClc(b);
  ASSERT_TRUE(m) << m.error();
  EXPECT_EQ(std::get<ClcSmcdAccept>(*m).eyecatcher, ClcEyecatcher::kSmcr);
  EXPECT_EQ(std::get<ClcSmcdAccept>(*m).trailer, ClcEyecatcher::kSmcd);
  EXPECT_EQ(EncodeToBytes(*m), b);
}

// Sets every reserved byte/bit listed, decodes, and checks that only the
// `reserved` member changed and that re-encoding restores the bytes.
template <typename T>
void ExpectReservedIgnored(const std::string& sample,
                           std::vector<std::pair<size_t, uint8_t>> bits) {
  Bytes base = Sample(sample);
  WireResult<ClcMessage> orig = DecodeClc(base);
  ASSERT_TRUE(orig) << orig.error();
  Bytes b = base;
  for (auto [off, mask] : bits) b[off] |= std::byte(mask);
  ASSERT_NE(b, base);
  WireResult<ClcMessage> m = DecodeClc(b);
  ASSERT_TRUE(m) << sample << ": " << m.error();
  T got = std::get<T>(*m);
  T want = std::get<T>(*orig);
  EXPECT_NE(got.reserved, want.reserved);
  got.reserved = want.reserved;
  if constexpr (requires { got.fce; }) got.fce.reserved = want.fce.reserved;
  EXPECT_EQ(got, want) << sample;
  EXPECT_EQ(EncodeToBytes(*m), b);
}

TEST(ClcLiberalTest, ReservedBitsDoNotChangeInterpretation) {
  ExpectReservedIgnored<ClcDecline>(
      "decline_v1", {{7, 0x07}, {20, 0x0f}, {21, 0xff}, {23, 0x80}});
  ExpectReservedIgnored<ClcProposal>("proposal_v2_full", {{60, 0xff},
                                                          {79, 0x01},
                                                          {85, 0xff},
                                                          {86, 0x01},
                                                          {90, 0xff},
                                                          {91, 0x0e},
                                                          {92, 0xff},
                                                          {93, 0x01},
                                                          {116, 0xff},
                                                          {127, 0x01},
                                                          {192, 0xff},
                                                          {207, 0x01}});
  ExpectReservedIgnored<ClcProposal>("proposal_v1_b_ipv6",
                                     {{7, 0x0c}, {50, 0xff}, {51, 0x01}});
  ExpectReservedIgnored<ClcSmcrAccept>("smcr_confirm_v2_fce", {{7, 0x04},
                                                               {51, 0xff},
                                                               {60, 0xff},
                                                               {96, 0xff},
                                                               {103, 0x01},
                                                               {104, 0x7f},
                                                               {106, 0xff},
                                                               {107, 0x01},
                                                               {148, 0xff},
                                                               {155, 0x01},
                                                               {157, 0xff},
                                                               {159, 0x01}});
  ExpectReservedIgnored<ClcSmcdAccept>(
      "smcd_accept_v1",
      {{7, 0x04}, {25, 0x0f}, {26, 0xff}, {32, 0xff}, {43, 0x01}});
}

// ------------------------------------------------------ encode errors

TEST(ClcEncodeRejectTest, FieldsThatDoNotFit) {
  std::array<std::byte, kClcMaxMessageLen> buf;
  auto samples = ClcSamples();
  auto get = [&](const std::string& n) {
    for (auto& [name, m] : samples) {
      if (name == n) return m;
    }
    return ClcMessage{};
  };
  auto fails = [&](const ClcMessage& m, WireErrc c, const char* f) {
    WireResult<size_t> r = EncodeClc(m, buf);
    if (r) return ::testing::AssertionFailure() << "encoded";
    if (!(r.error() == Err(c, f))) {
      return ::testing::AssertionFailure() << "got " << r.error();
    }
    return ::testing::AssertionSuccess();
  };

  ClcSmcrAccept r = std::get<ClcSmcrAccept>(get("smcr_confirm_v2_fce"));
  ClcSmcrAccept r2 = r;
  r2.gid_count = kClcMaxConfirmGids + 1;
  EXPECT_TRUE(fails(r2, kCnt, "clc.smcr.gid_count"));
  r2 = r;
  r2.qpn = 0x1000000;
  EXPECT_TRUE(fails(r2, kVal, "clc.smcr.qpn"));
  r2 = r;
  r2.psn = 0x1000000;
  EXPECT_TRUE(fails(r2, kVal, "clc.smcr.psn"));
  r2 = r;
  r2.rmbe_size = 16;
  EXPECT_TRUE(fails(r2, kVal, "clc.smcr.rmbe_size"));
  r2 = r;
  r2.type = ClcType::kDecline;
  EXPECT_TRUE(fails(r2, WireErrc::kBadType, "clc.type"));
  r2 = r;
  r2.fce.release = 16;
  EXPECT_TRUE(fails(r2, kVal, "clc.fce.release"));
  r2 = r;
  r2.fce.long_form = false;  // max_conns etc. need the long form
  EXPECT_TRUE(fails(r2, kVal, "clc.fce.long_form"));
  r2 = r;
  r2.version = 0;
  EXPECT_TRUE(fails(r2, WireErrc::kBadVersion, "clc.version"));
  r2 = r;
  r2.version = 16;
  EXPECT_TRUE(fails(r2, WireErrc::kBadVersion, "clc.version"));

  ClcProposal p = std::get<ClcProposal>(get("proposal_v2_full"));
  ClcProposal p2 = p;
  p2.ipv6_prefix_count = 9;
  EXPECT_TRUE(fails(p2, kCnt, "clc.proposal.ipv6_prefix_count"));
  p2 = p;
  p2.eid_count = 9;
  EXPECT_TRUE(fails(p2, kCnt, "clc.proposal.eid_count"));
  p2 = p;
  p2.ism_device_count = 5;  // 2 + 4 emulated (8 entries) + 1 = 9 entries
  for (int i = 2; i < 5; ++i) p2.ism_devices[i] = {1, 0xFF10, 2};
  EXPECT_TRUE(fails(p2, kCnt, "clc.proposal.ism_gid_count"));
  p2 = p;
  p2.ism_devices[0].gid_ext = 7;  // not an Emulated-ISM CHID
  EXPECT_TRUE(fails(p2, kVal, "clc.proposal.ism_gid_list"));
  p2 = p;
  p2.version = 1;
  p2.typev1 = SmcType::kNone;
  EXPECT_TRUE(fails(p2, kVal, "clc.proposal.typev1"));
  p2 = p;
  p2.has_smcd_area = false;
  EXPECT_TRUE(fails(p2, kVal, "clc.proposal.has_smcd_area"));

  ClcSmcdAccept d = std::get<ClcSmcdAccept>(get("smcd_accept_v2_fce"));
  d.dmbe_size = 16;
  EXPECT_TRUE(fails(d, kVal, "clc.smcd.dmbe_size"));

  ClcDecline dec;
  dec.os_type = 16;
  EXPECT_TRUE(fails(dec, kVal, "clc.decline.os_type"));

  // A buffer one byte short.
  Bytes full = EncodeToBytes(p);
  std::vector<std::byte> small(full.size() - 1);
  WireResult<size_t> n = EncodeClc(p, small);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error(), Err(WireErrc::kBufferTooSmall, "clc"));
}

}  // namespace
}  // namespace usmc::wire
