// LLC rejection tests: every type byte, every length, every count field and
// truncation at every position, each with the exact WireErrc and field.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "wire/llc.h"
#include "wire/llc_test_util.h"

namespace usmc::wire {
namespace {

using testing::HexBytes;

std::vector<std::byte> Encoded(const LlcMessage& m) {
  std::vector<std::byte> out(LlcEncodedLength(m));
  WireResult<size_t> n = EncodeLlc(m, out);
  EXPECT_TRUE(n.ok()) << n.error();
  return out;
}

// One valid message of every (type, version) pair.
std::vector<std::vector<std::byte>> AllKinds() {
  std::vector<std::vector<std::byte>> all;
  for (bool v2 : {false, true}) {
    LlcConfirmLink cl;
    cl.hdr.v2 = v2;
    all.push_back(Encoded(cl));
    LlcAddLink al;
    al.hdr.v2 = v2;
    all.push_back(Encoded(al));
    LlcDeleteLink dl;
    dl.hdr.v2 = v2;
    all.push_back(Encoded(dl));
    LlcConfirmRkey cr;
    cr.hdr.v2 = v2;
    all.push_back(Encoded(cr));
    LlcTestLink tl;
    tl.hdr.v2 = v2;
    all.push_back(Encoded(tl));
    LlcDeleteRkey dr;
    dr.hdr.v2 = v2;
    dr.num_rkeys = 1;
    all.push_back(Encoded(dr));
  }
  all.push_back(Encoded(LlcAddLinkCont{}));
  all.push_back(Encoded(LlcConfirmRkeyCont{}));
  LlcAddLink alx;
  alx.hdr.v2 = true;
  alx.has_v2_ext = true;
  alx.num_rkeys = 3;
  all.push_back(Encoded(alx));
  LlcReqAddLink ral;
  ral.hdr.v2 = true;
  ral.gid_cnt = 2;
  all.push_back(Encoded(ral));
  LlcDeleteRkey drx;
  drx.hdr.v2 = true;
  drx.num_rkeys = 20;
  all.push_back(Encoded(drx));
  return all;
}

void ExpectError(const std::vector<std::byte>& bytes, WireErrc code,
                 const char* field) {
  WireResult<LlcMessage> m = DecodeLlc(bytes);
  ASSERT_FALSE(m.ok()) << DescribeLlc(*m);
  EXPECT_EQ(m.error(), (WireError{code, field}));
}

TEST(LlcReject, TruncatedAtEveryPosition) {
  for (const auto& msg : AllKinds()) {
    ASSERT_TRUE(DecodeLlc(msg).ok());
    for (size_t n = 0; n < msg.size(); ++n) {
      std::vector<std::byte> cut(msg.begin(), msg.begin() + n);
      SCOPED_TRACE(testing::ToHex(msg) + " cut at " + std::to_string(n));
      ExpectError(cut, WireErrc::kTruncated,
                  n < 4 ? "llc.header" : "llc.message");
    }
  }
}

TEST(LlcReject, EveryTypeByte) {
  const auto base = Encoded(LlcTestLink{});  // V1, 44 bytes, length byte 44
  for (int b0 = 0; b0 < 256; ++b0) {
    auto bytes = base;
    bytes[0] = std::byte(b0);
    const int version = b0 >> 4;
    const int type = b0 & 0x0F;
    SCOPED_TRACE(b0);
    if (b0 == 0xFE) {
      ExpectError(bytes, WireErrc::kBadType, "llc.type");  // a CDC
    } else if (version != 0 && version != 2) {
      ExpectError(bytes, WireErrc::kBadVersion, "llc.version");
    } else if (type == 0 || type > 9 || (version == 0 && type == 5) ||
               (version == 2 && (type == 3 || type == 8))) {
      ExpectError(bytes, WireErrc::kBadType, "llc.type");
    } else {
      // Valid type: 0x2c 0x00 reads as 44 in both versions.
      WireResult<LlcMessage> m = DecodeLlc(bytes);
      ASSERT_TRUE(m.ok()) << m.error();
      EXPECT_EQ(static_cast<int>(TypeOf(*m)), type);
      EXPECT_EQ(HeaderOf(*m).v2, version == 2);
    }
  }
}

TEST(LlcReject, EveryV1LengthByte) {
  auto bytes = Encoded(LlcDeleteLink{});
  for (int len = 0; len < 256; ++len) {
    if (len == 44) continue;
    bytes[1] = std::byte(len);
    SCOPED_TRACE(len);
    ExpectError(bytes, WireErrc::kBadLength, "llc.length");
  }
}

TEST(LlcReject, EveryV2Length) {
  LlcTestLink tl;
  tl.hdr.v2 = true;
  auto bytes = Encoded(tl);
  bytes.resize(kLlcMaxLenV2 + 1, std::byte{0});
  for (uint32_t len = 0; len <= 0xFFFF; ++len) {
    bytes[1] = std::byte(static_cast<uint8_t>(len));
    bytes[2] = std::byte(static_cast<uint8_t>(len >> 8));
    WireResult<LlcMessage> m = DecodeLlc(bytes);
    if (len < 44 || len > kLlcMaxLenV2) {
      ASSERT_FALSE(m.ok()) << len;
      ASSERT_EQ(m.error(), (WireError{WireErrc::kBadLength, "llc.length_v2"}));
    } else {
      ASSERT_TRUE(m.ok()) << len << " " << m.error();
      ASSERT_EQ(HeaderOf(*m).length, len);
    }
  }
}

TEST(LlcReject, AddLinkV2ExtensionCutShort) {
  LlcAddLink al;
  al.hdr.v2 = true;
  al.has_v2_ext = true;
  auto bytes = Encoded(al);  // 72 bytes
  for (uint16_t len = 45; len < 72; ++len) {
    bytes[1] = std::byte(static_cast<uint8_t>(len));
    bytes[2] = std::byte(0);
    SCOPED_TRACE(len);
    ExpectError(bytes, WireErrc::kBadLength, "llc.add_link.length_v2");
  }
}

TEST(LlcReject, AddLinkV2EveryNumRkeys) {
  LlcAddLink al;
  al.hdr.v2 = true;
  al.has_v2_ext = true;
  al.num_rkeys = 3;
  auto bytes = Encoded(al);  // room for exactly 3
  bytes.resize(kLlcMaxLenV2, std::byte{0});
  for (uint32_t n = 0; n <= 0xFFFF; ++n) {
    bytes[70] = std::byte(static_cast<uint8_t>(n));
    bytes[71] = std::byte(static_cast<uint8_t>(n >> 8));
    WireResult<LlcMessage> m = DecodeLlc(bytes);
    if (n <= 3) {
      ASSERT_TRUE(m.ok()) << n;
      ASSERT_EQ(std::get<LlcAddLink>(*m).num_rkeys, n);
    } else {
      ASSERT_FALSE(m.ok()) << n;
      ASSERT_EQ(m.error(),
                (WireError{WireErrc::kBadCount, "llc.add_link.num_rkeys"}));
    }
  }
  // Even with room for them, more than 255 rkeys is refused.
  const uint16_t len = 72 + 16 * 256;
  bytes[1] = std::byte(static_cast<uint8_t>(len));
  bytes[2] = std::byte(static_cast<uint8_t>(len >> 8));
  bytes[70] = std::byte{0x00};
  bytes[71] = std::byte{0x01};  // 256
  ExpectError(bytes, WireErrc::kBadCount, "llc.add_link.num_rkeys");
  bytes[70] = std::byte{0xFF};
  bytes[71] = std::byte{0x00};  // 255
  ASSERT_TRUE(DecodeLlc(bytes).ok());
}

TEST(LlcReject, ReqAddLinkEveryGidCnt) {
  LlcReqAddLink r;
  r.hdr.v2 = true;
  r.gid_cnt = 2;
  auto bytes = Encoded(r);  // 60 bytes
  for (int n = 0; n < 256; ++n) {
    bytes[24] = std::byte(n);
    WireResult<LlcMessage> m = DecodeLlc(bytes);
    if (n <= 2) {
      ASSERT_TRUE(m.ok()) << n;
    } else {
      ASSERT_FALSE(m.ok()) << n;
      ASSERT_EQ(m.error(),
                (WireError{WireErrc::kBadCount, "llc.req_add_link.gid_cnt"}));
    }
  }
}

TEST(LlcReject, DeleteRkeyEveryCount) {
  auto v1 = Encoded(LlcDeleteRkey{});
  LlcDeleteRkey d2;
  d2.hdr.v2 = true;
  d2.num_rkeys = 9;
  auto v2 = Encoded(d2);  // 44 bytes: room for 9 rkeys
  for (int n = 0; n < 256; ++n) {
    v1[4] = std::byte(n);
    v2[4] = std::byte(n);
    WireResult<LlcMessage> m1 = DecodeLlc(v1);
    WireResult<LlcMessage> m2 = DecodeLlc(v2);
    ASSERT_EQ(m1.ok(), n <= 8) << n;
    ASSERT_EQ(m2.ok(), n <= 9) << n;
    if (!m1.ok()) {
      ASSERT_EQ(m1.error(),
                (WireError{WireErrc::kBadCount, "llc.delete_rkey.num_rkeys"}));
    }
    if (!m2.ok()) {
      ASSERT_EQ(m2.error(),
                (WireError{WireErrc::kBadCount, "llc.delete_rkey.num_rkeys"}));
    }
  }
  // V2: more invalid rkeys than rkeys.
  v2[4] = std::byte{3};
  for (int inval = 0; inval < 256; ++inval) {
    v2[5] = std::byte(inval);
    WireResult<LlcMessage> m = DecodeLlc(v2);
    ASSERT_EQ(m.ok(), inval <= 3) << inval;
    if (!m.ok()) {
      ASSERT_EQ(m.error(), (WireError{WireErrc::kBadCount,
                                      "llc.delete_rkey.num_inval_rkeys"}));
    }
  }
}

TEST(LlcReject, ConfirmRkeyEveryCount) {
  auto cr = Encoded(LlcConfirmRkey{});
  auto crc = Encoded(LlcConfirmRkeyCont{});
  for (int n = 0; n < 256; ++n) {
    cr[4] = std::byte(n);
    crc[4] = std::byte(n);
    WireResult<LlcMessage> a = DecodeLlc(cr);
    WireResult<LlcMessage> b = DecodeLlc(crc);
    ASSERT_EQ(a.ok(), n <= kLlcMaxOtherLinks) << n;
    ASSERT_EQ(b.ok(), n <= kLlcMaxOtherLinks) << n;
    if (!a.ok()) {
      ASSERT_EQ(a.error(), (WireError{WireErrc::kBadCount,
                                      "llc.confirm_rkey.num_rtokens"}));
      ASSERT_EQ(b.error(), (WireError{WireErrc::kBadCount,
                                      "llc.confirm_rkey_cont.num_rkeys"}));
    }
  }
}

// --- Encoder rejections -----------------------------------------------------

TEST(LlcEncodeReject, BufferTooSmallForEveryKind) {
  for (const auto& bytes : AllKinds()) {
    WireResult<LlcMessage> m = DecodeLlc(bytes);
    ASSERT_TRUE(m.ok());
    for (size_t n = 0; n < bytes.size(); ++n) {
      std::vector<std::byte> out(n);
      WireResult<size_t> r = EncodeLlc(*m, out);
      ASSERT_FALSE(r.ok()) << n;
      ASSERT_EQ(r.error(),
                (WireError{WireErrc::kBufferTooSmall, "llc.message"}));
    }
  }
}

TEST(LlcEncodeReject, VersionOnlyTypes) {
  std::array<std::byte, 128> out{};
  const WireError bad_version{WireErrc::kBadVersion, "llc.version"};
  LlcAddLinkCont c;
  c.hdr.v2 = true;
  EXPECT_EQ(EncodeLlc(c, out).error(), bad_version);
  LlcConfirmRkeyCont rc;
  rc.hdr.v2 = true;
  EXPECT_EQ(EncodeLlc(rc, out).error(), bad_version);
  LlcReqAddLink r;  // V1
  EXPECT_EQ(EncodeLlc(r, out).error(), bad_version);
  LlcAddLink a;  // V1 with a V2 extension
  a.has_v2_ext = true;
  EXPECT_EQ(EncodeLlc(a, out).error(), bad_version);
}

TEST(LlcEncodeReject, FieldsOutOfRange) {
  std::array<std::byte, 8192> out{};
  LlcConfirmLink cl;
  cl.sender_qpn = 0x1000000;
  EXPECT_EQ(EncodeLlc(cl, out).error(),
            (WireError{WireErrc::kBadValue, "llc.confirm_link.sender_qpn"}));
  LlcAddLink al;
  al.sender_qpn = 0x1000000;
  EXPECT_EQ(EncodeLlc(al, out).error(),
            (WireError{WireErrc::kBadValue, "llc.add_link.sender_qpn"}));
  al = LlcAddLink{};
  al.initial_psn = 0x1000000;
  EXPECT_EQ(EncodeLlc(al, out).error(),
            (WireError{WireErrc::kBadValue, "llc.add_link.initial_psn"}));
  al = LlcAddLink{};
  al.qp_mtu = 16;
  EXPECT_EQ(EncodeLlc(al, out).error(),
            (WireError{WireErrc::kBadValue, "llc.add_link.qp_mtu"}));
  al = LlcAddLink{};
  al.reject_reason = 16;
  EXPECT_EQ(EncodeLlc(al, out).error(),
            (WireError{WireErrc::kBadValue, "llc.add_link.reject_reason"}));
  al = LlcAddLink{};
  al.hdr.v2 = true;
  al.has_v2_ext = true;
  al.num_rkeys = 256;
  EXPECT_EQ(EncodeLlc(al, out).error(),
            (WireError{WireErrc::kBadCount, "llc.add_link.num_rkeys"}));
  al.has_v2_ext = false;
  al.num_rkeys = 1;  // rkeys need the extension
  EXPECT_EQ(EncodeLlc(al, out).error(),
            (WireError{WireErrc::kBadCount, "llc.add_link.num_rkeys"}));
  LlcDeleteRkey dr;
  dr.num_rkeys = 9;
  EXPECT_EQ(EncodeLlc(dr, out).error(),
            (WireError{WireErrc::kBadCount, "llc.delete_rkey.num_rkeys"}));
  dr = LlcDeleteRkey{};
  dr.hdr.v2 = true;
  dr.num_rkeys = 1;
  dr.num_inval_rkeys = 2;
  EXPECT_EQ(
      EncodeLlc(dr, out).error(),
      (WireError{WireErrc::kBadCount, "llc.delete_rkey.num_inval_rkeys"}));
  LlcConfirmRkey cr;
  cr.num_other_rtokens = 8;
  EXPECT_EQ(EncodeLlc(cr, out).error(),
            (WireError{WireErrc::kBadCount, "llc.confirm_rkey.num_rtokens"}));
}

}  // namespace
}  // namespace usmc::wire
