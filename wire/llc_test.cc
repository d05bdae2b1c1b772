// LLC known-answer tests: every message assembled by hand from the layout
// tables of PROTOCOL.md §3.3 (one field per group of hex digits), decoded
// field by field and re-encoded from a hand-built struct to the same bytes.
#include "wire/llc.h"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "wire/llc_test_util.h"

namespace usmc::wire {
namespace {

using testing::HexBytes;
using testing::ToHex;

constexpr Gid kGidA = {0xfe, 0x80, 0, 0,    0,    0, 0, 0,
                       0x52, 0x54, 0, 0xff, 0xfe, 0, 0, 0xaa};
constexpr Gid kGidV4 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
constexpr Mac kMacA = {0x52, 0x54, 0x00, 0x00, 0x00, 0xaa};

template <typename T>
T DecodeAs(const std::vector<std::byte>& bytes) {
  WireResult<LlcMessage> m = DecodeLlc(bytes);
  EXPECT_TRUE(m.ok()) << m.error();
  if (!m.ok()) return T{};
  EXPECT_TRUE(std::holds_alternative<T>(*m)) << DescribeLlc(*m);
  if (!std::holds_alternative<T>(*m)) return T{};
  return std::get<T>(*m);
}

template <typename T>
void ExpectEncodes(const T& msg, const std::vector<std::byte>& want) {
  std::vector<std::byte> out(want.size() + 8, std::byte{0x5A});
  WireResult<size_t> n = EncodeLlc(msg, out);
  ASSERT_TRUE(n.ok()) << n.error();
  ASSERT_EQ(*n, want.size());
  out.resize(*n);
  EXPECT_EQ(ToHex(out), ToHex(want));
  EXPECT_EQ(LlcEncodedLength(LlcMessage{msg}), want.size());
}

// --- CONFIRM_LINK -----------------------------------------------------------

const char* kConfirmLinkV1Resp =
    "01 2c 00 83 | 525400 0000aa | fe80000000000000525400fffe0000aa |"
    "000123 | 05 | 11223344 | 02 | 00 | 0000000000000000";

TEST(LlcKnownAnswer, ConfirmLinkV1) {
  auto bytes = HexBytes(kConfirmLinkV1Resp);
  ASSERT_EQ(bytes.size(), kLlcMsgLen);
  auto m = DecodeAs<LlcConfirmLink>(bytes);
  EXPECT_FALSE(m.hdr.v2);
  EXPECT_TRUE(m.hdr.response);
  EXPECT_EQ(m.hdr.length, 44);
  EXPECT_TRUE(m.no_rmbe_eyecatcher);
  EXPECT_EQ(m.sender_mac, kMacA);
  EXPECT_EQ(m.sender_gid, kGidA);
  EXPECT_EQ(m.sender_qpn, 0x000123u);
  EXPECT_EQ(m.link_num, 5);
  EXPECT_EQ(m.link_uid, 0x11223344u);
  EXPECT_EQ(m.max_links, 2);
  EXPECT_EQ(m.max_conns, 0);

  LlcConfirmLink e;
  e.hdr.response = true;
  e.sender_mac = kMacA;
  e.sender_gid = kGidA;
  e.sender_qpn = 0x123;
  e.link_num = 5;
  e.link_uid = 0x11223344;
  e.max_links = 2;
  ExpectEncodes(e, bytes);
}

TEST(LlcKnownAnswer, ConfirmLinkV2CarriesMaxConnsAndLittleEndianLength) {
  auto bytes = HexBytes(
      "21 2c00 03 | 5254000000aa | 00000000000000000000ffff0a000001 |"
      "fedcba | 01 | 00000101 | 02 | 10 | 0000000000000000");
  auto m = DecodeAs<LlcConfirmLink>(bytes);
  EXPECT_TRUE(m.hdr.v2);
  EXPECT_FALSE(m.hdr.response);
  EXPECT_EQ(m.hdr.length, 44);
  EXPECT_EQ(m.sender_gid, kGidV4);
  EXPECT_EQ(m.sender_qpn, 0xfedcbau);
  EXPECT_EQ(m.max_conns, 16);

  LlcConfirmLink e;
  e.hdr.v2 = true;
  e.sender_mac = kMacA;
  e.sender_gid = kGidV4;
  e.sender_qpn = 0xfedcba;
  e.link_num = 1;
  e.link_uid = 0x101;
  e.max_links = 2;
  e.max_conns = 16;
  ExpectEncodes(e, bytes);
}

// Linux tests "flags & 0x03": either bit means "no eyecatcher"; the encoder
// writes both (canonical form).
TEST(LlcKnownAnswer, ConfirmLinkEyecatcherBits) {
  auto bytes = HexBytes(kConfirmLinkV1Resp);
  for (uint8_t bits : {0x00, 0x01, 0x02, 0x03}) {
    bytes[3] = std::byte(static_cast<uint8_t>(0x80 | bits));
    EXPECT_EQ(DecodeAs<LlcConfirmLink>(bytes).no_rmbe_eyecatcher, bits != 0);
  }
  LlcConfirmLink e;
  e.no_rmbe_eyecatcher = false;
  std::array<std::byte, 44> out{};
  ASSERT_TRUE(EncodeLlc(e, out).ok());
  EXPECT_EQ(out[3], std::byte{0x00});
}

// --- ADD_LINK ---------------------------------------------------------------

TEST(LlcKnownAnswer, AddLinkV1RejectKeepsTheReasonInByte2) {
  auto bytes = HexBytes(
      "02 2c 01 c0 | 5254000000aa | 0000 | fe80000000000000525400fffe0000aa |"
      "000042 | 02 | 05 | abcdef | 0000000000000000");
  auto m = DecodeAs<LlcAddLink>(bytes);
  EXPECT_TRUE(m.hdr.response);
  EXPECT_TRUE(m.rejected);
  EXPECT_EQ(m.reject_reason, kLlcRejectNoAltPath);
  EXPECT_EQ(m.sender_mac, kMacA);
  EXPECT_EQ(m.sender_gid, kGidA);
  EXPECT_EQ(m.sender_qpn, 0x42u);
  EXPECT_EQ(m.link_num, 2);
  EXPECT_EQ(m.qp_mtu, 5);
  EXPECT_EQ(m.initial_psn, 0xabcdefu);
  EXPECT_FALSE(m.has_v2_ext);

  LlcAddLink e;
  e.hdr.response = true;
  e.rejected = true;
  e.reject_reason = kLlcRejectNoAltPath;
  e.sender_mac = kMacA;
  e.sender_gid = kGidA;
  e.sender_qpn = 0x42;
  e.link_num = 2;
  e.qp_mtu = 5;
  e.initial_psn = 0xabcdef;
  ExpectEncodes(e, bytes);
}

// 72 + 2 * 16 = 104 = 0x0068 bytes, written 68 00; num_rkeys 2 written 02 00.
const char* kAddLinkV2TwoRkeys =
    "22 6800 00 | 5254000000aa | 0000 | 00000000000000000000ffff0a000001 |"
    "000012 | 02 | 03 | 4949b7 | 0000000000000000 |"
    "80 | 00 | 00000000000000000000ffff0a000002 | 0000000000000000 | 0200 |"
    "00000367 00000522 ffff8953c35c0000 |"
    "00000368 00000523 ffff8953c35d0000";

TEST(LlcKnownAnswer, AddLinkV2WithRkeyExtension) {
  auto bytes = HexBytes(kAddLinkV2TwoRkeys);
  ASSERT_EQ(bytes.size(), 104u);
  auto m = DecodeAs<LlcAddLink>(bytes);
  EXPECT_TRUE(m.hdr.v2);
  EXPECT_EQ(m.hdr.length, 104);
  EXPECT_FALSE(m.hdr.response);
  EXPECT_EQ(m.sender_qpn, 0x12u);
  EXPECT_EQ(m.qp_mtu, 3);
  EXPECT_EQ(m.initial_psn, 0x4949b7u);
  ASSERT_TRUE(m.has_v2_ext);
  EXPECT_TRUE(m.v2_direct);
  Gid target = kGidV4;
  target[15] = 2;
  EXPECT_EQ(m.client_target_gid, target);
  ASSERT_EQ(m.num_rkeys, 2);
  EXPECT_EQ(m.rkeys[0], (LlcRkeyPair{0x367, 0x522, 0xffff8953c35c0000}));
  EXPECT_EQ(m.rkeys[1], (LlcRkeyPair{0x368, 0x523, 0xffff8953c35d0000}));

  LlcAddLink e;
  e.hdr.v2 = true;
  e.sender_mac = kMacA;
  e.sender_gid = kGidV4;
  e.sender_qpn = 0x12;
  e.link_num = 2;
  e.qp_mtu = 3;
  e.initial_psn = 0x4949b7;
  e.has_v2_ext = true;
  e.v2_direct = true;
  e.client_target_gid = target;
  e.num_rkeys = 2;
  e.rkeys[0] = {0x367, 0x522, 0xffff8953c35c0000};
  e.rkeys[1] = {0x368, 0x523, 0xffff8953c35d0000};
  ExpectEncodes(e, bytes);
}

// In V2, byte 2 is the high byte of length_v2; a reject reason goes into the
// low nibble of the flags byte (Wireshark's reading of the IBM V2 layout).
TEST(LlcKnownAnswer, AddLinkV2RejectReasonLivesInTheFlagsByte) {
  auto bytes = HexBytes(
      "22 2c00 c1 | 5254000000aa | 0000 | 00000000000000000000ffff0a000001 |"
      "000012 | 02 | 03 | 4949b7 | 0000000000000000");
  auto m = DecodeAs<LlcAddLink>(bytes);
  EXPECT_TRUE(m.rejected);
  EXPECT_EQ(m.reject_reason, 1);
  EXPECT_FALSE(m.has_v2_ext);
  ExpectEncodes(m, bytes);
}

// --- ADD_LINK_CONT ----------------------------------------------------------

TEST(LlcKnownAnswer, AddLinkContV1) {
  auto bytes = HexBytes(
      "03 2c 00 80 | 02 | 03 | 0000 |"
      "00000011 00000021 0000000000001000 |"
      "00000012 00000022 0000000000002000 | 00000000");
  auto m = DecodeAs<LlcAddLinkCont>(bytes);
  EXPECT_TRUE(m.hdr.response);
  EXPECT_EQ(m.link_num, 2);
  EXPECT_EQ(m.num_rkeys, 3);
  EXPECT_EQ(m.rkeys[0], (LlcRkeyPair{0x11, 0x21, 0x1000}));
  EXPECT_EQ(m.rkeys[1], (LlcRkeyPair{0x12, 0x22, 0x2000}));

  LlcAddLinkCont e;
  e.hdr.response = true;
  e.link_num = 2;
  e.num_rkeys = 3;
  e.rkeys = {LlcRkeyPair{0x11, 0x21, 0x1000}, LlcRkeyPair{0x12, 0x22, 0x2000}};
  ExpectEncodes(e, bytes);
}

// --- DELETE_LINK ------------------------------------------------------------

TEST(LlcKnownAnswer, DeleteLinkV1AllOrderlyWithReason) {
  std::string hex = "04 2c 00 60 | 00 | 00040000";
  hex += std::string(35 * 2, '0');
  auto bytes = HexBytes(hex);
  auto m = DecodeAs<LlcDeleteLink>(bytes);
  EXPECT_FALSE(m.hdr.response);
  EXPECT_TRUE(m.all);
  EXPECT_TRUE(m.orderly);
  EXPECT_EQ(m.link_num, 0);
  EXPECT_EQ(m.reason, static_cast<uint32_t>(LlcDeleteLinkReason::kProtViol));
  EXPECT_EQ(LlcDeleteLinkReasonName(m.reason), "PROT_VIOL");

  LlcDeleteLink e;
  e.all = true;
  e.orderly = true;
  e.reason = 0x00040000;
  ExpectEncodes(e, bytes);
}

TEST(LlcKnownAnswer, DeleteLinkV2ResponseOneLink) {
  std::string hex = "24 2c00 80 | 02 | 00100000";
  hex += std::string(35 * 2, '0');
  auto bytes = HexBytes(hex);
  auto m = DecodeAs<LlcDeleteLink>(bytes);
  EXPECT_TRUE(m.hdr.v2);
  EXPECT_TRUE(m.hdr.response);
  EXPECT_FALSE(m.all);
  EXPECT_FALSE(m.orderly);
  EXPECT_EQ(m.link_num, 2);
  EXPECT_EQ(LlcDeleteLinkReasonName(m.reason), "NOLNK");
  LlcDeleteLink e;
  e.hdr.v2 = true;
  e.hdr.response = true;
  e.link_num = 2;
  e.reason = static_cast<uint32_t>(LlcDeleteLinkReason::kNoLnk);
  ExpectEncodes(e, bytes);
}

TEST(LlcKnownAnswer, DeleteLinkReasonNames) {
  EXPECT_EQ(LlcDeleteLinkReasonName(0x00010000), "LOST_PATH");
  EXPECT_EQ(LlcDeleteLinkReasonName(0x00020000), "OP_INIT_TERM");
  EXPECT_EQ(LlcDeleteLinkReasonName(0x00030000), "PROG_INIT_TERM");
  EXPECT_EQ(LlcDeleteLinkReasonName(0x00040000), "PROT_VIOL");
  EXPECT_EQ(LlcDeleteLinkReasonName(0x00050000), "NO_ASYM_NEEDED");
  EXPECT_EQ(LlcDeleteLinkReasonName(0x00100000), "NOLNK");
  EXPECT_EQ(LlcDeleteLinkReasonName(0x00200000), "NOLGR");
  EXPECT_EQ(LlcDeleteLinkReasonName(0x00060000), "UNKNOWN");
}

// --- REQ_ADD_LINK -----------------------------------------------------------

TEST(LlcKnownAnswer, ReqAddLinkV2WithTwoGids) {
  // 28 + 2 * 16 = 60 = 0x003c.
  std::string hex = "25 3c00 00 |";
  hex += std::string(20 * 2, '0');
  hex +=
      "| 02 | 000000 | 00000000000000000000ffff0a000002 |"
      "00000000000000000000ffff0a000102";
  auto bytes = HexBytes(hex);
  ASSERT_EQ(bytes.size(), 60u);
  auto m = DecodeAs<LlcReqAddLink>(bytes);
  EXPECT_TRUE(m.hdr.v2);
  EXPECT_EQ(m.hdr.length, 60);
  ASSERT_EQ(m.gid_cnt, 2);
  Gid g0 = kGidV4;
  g0[15] = 2;
  Gid g1 = g0;
  g1[14] = 1;
  EXPECT_EQ(m.gids[0], g0);
  EXPECT_EQ(m.gids[1], g1);

  LlcReqAddLink e;
  e.hdr.v2 = true;
  e.gid_cnt = 2;
  e.gids[0] = g0;
  e.gids[1] = g1;
  ExpectEncodes(e, bytes);
}

// The server's answer (flags RESP, data zeroed) is padded to 44 bytes.
TEST(LlcKnownAnswer, ReqAddLinkV2ResponseIs44Bytes) {
  std::string hex = "25 2c00 80";
  hex += std::string(40 * 2, '0');
  auto bytes = HexBytes(hex);
  auto m = DecodeAs<LlcReqAddLink>(bytes);
  EXPECT_TRUE(m.hdr.response);
  EXPECT_EQ(m.gid_cnt, 0);
  LlcReqAddLink e;
  e.hdr.v2 = true;
  e.hdr.response = true;
  ExpectEncodes(e, bytes);
}

// --- CONFIRM_RKEY(_CONT) ----------------------------------------------------

const char* kConfirmRkeyV1 =
    "06 2c 00 00 | 02 00000111 0000000012340000 |"
    "02 00000222 0000000056780000 | 03 00000333 000000009abc0000 | 00";

TEST(LlcKnownAnswer, ConfirmRkeyV1) {
  auto bytes = HexBytes(kConfirmRkeyV1);
  ASSERT_EQ(bytes.size(), 44u);
  auto m = DecodeAs<LlcConfirmRkey>(bytes);
  EXPECT_EQ(m.num_other_rtokens, 2);
  EXPECT_EQ(m.rtokens[0], (LlcRtoken{0, 0x111, 0x12340000}));
  EXPECT_EQ(m.rtokens[1], (LlcRtoken{2, 0x222, 0x56780000}));
  EXPECT_EQ(m.rtokens[2], (LlcRtoken{3, 0x333, 0x9abc0000}));

  LlcConfirmRkey e;
  e.num_other_rtokens = 2;
  e.rtokens = {LlcRtoken{0, 0x111, 0x12340000}, LlcRtoken{2, 0x222, 0x56780000},
               LlcRtoken{3, 0x333, 0x9abc0000}};
  ExpectEncodes(e, bytes);
}

TEST(LlcKnownAnswer, ConfirmRkeyV2NegativeRetryResponse) {
  std::string hex = "26 2c00 b0 | 00 00000111 0000000012340000";
  hex += std::string(27 * 2, '0');
  auto bytes = HexBytes(hex);
  auto m = DecodeAs<LlcConfirmRkey>(bytes);
  EXPECT_TRUE(m.hdr.v2);
  EXPECT_TRUE(m.hdr.response);
  EXPECT_TRUE(m.negative);
  EXPECT_TRUE(m.retry);
  EXPECT_EQ(m.num_other_rtokens, 0);
  ExpectEncodes(m, bytes);
}

TEST(LlcKnownAnswer, ConfirmRkeyContV1) {
  auto bytes = HexBytes(
      "08 2c 00 80 | 01 | 03 00000333 0000000000003000 |"
      "00 00000000 0000000000000000 | 00 00000000 0000000000000000");
  auto m = DecodeAs<LlcConfirmRkeyCont>(bytes);
  EXPECT_TRUE(m.hdr.response);
  EXPECT_EQ(m.num_rkeys, 1);
  EXPECT_EQ(m.rtokens[0], (LlcRtoken{3, 0x333, 0x3000}));
  LlcConfirmRkeyCont e;
  e.hdr.response = true;
  e.num_rkeys = 1;
  e.rtokens[0] = {3, 0x333, 0x3000};
  ExpectEncodes(e, bytes);
}

// --- TEST_LINK --------------------------------------------------------------

TEST(LlcKnownAnswer, TestLinkV2) {
  std::string hex = "27 2c00 00 | 000102030405060708090a0b0c0d0e0f";
  hex += std::string(24 * 2, '0');
  auto bytes = HexBytes(hex);
  auto m = DecodeAs<LlcTestLink>(bytes);
  EXPECT_TRUE(m.hdr.v2);
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(m.user_data[i], i);
  LlcTestLink e;
  e.hdr.v2 = true;
  for (size_t i = 0; i < 16; ++i) e.user_data[i] = static_cast<uint8_t>(i);
  ExpectEncodes(e, bytes);
}

TEST(LlcKnownAnswer, TestLinkV1Response) {
  std::string hex = "07 2c 00 80 | ffeeddccbbaa99887766554433221100";
  hex += std::string(24 * 2, '0');
  auto bytes = HexBytes(hex);
  auto m = DecodeAs<LlcTestLink>(bytes);
  EXPECT_FALSE(m.hdr.v2);
  EXPECT_TRUE(m.hdr.response);
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(m.user_data[i], 0xff - 0x11 * i);
  LlcTestLink e;
  e.hdr.response = true;
  for (size_t i = 0; i < 16; ++i) {
    e.user_data[i] = static_cast<uint8_t>(0xff - 0x11 * i);
  }
  ExpectEncodes(e, bytes);
}

// --- DELETE_RKEY ------------------------------------------------------------

TEST(LlcKnownAnswer, DeleteRkeyV1NegativeWithErrorMask) {
  std::string hex = "09 2c 00 a0 | 03 | 40 | 0000 | 00000101 00000102 00000103";
  hex += std::string((5 * 4 + 4) * 2, '0');
  auto bytes = HexBytes(hex);
  auto m = DecodeAs<LlcDeleteRkey>(bytes);
  EXPECT_TRUE(m.hdr.response);
  EXPECT_TRUE(m.negative);
  EXPECT_EQ(m.num_rkeys, 3);
  EXPECT_EQ(m.error_mask, 0x40);  // rkeys[1] was unknown
  EXPECT_EQ(m.rkeys[0], 0x101u);
  EXPECT_EQ(m.rkeys[1], 0x102u);
  EXPECT_EQ(m.rkeys[2], 0x103u);
  LlcDeleteRkey e;
  e.hdr.response = true;
  e.negative = true;
  e.num_rkeys = 3;
  e.error_mask = 0x40;
  e.rkeys[0] = 0x101;
  e.rkeys[1] = 0x102;
  e.rkeys[2] = 0x103;
  ExpectEncodes(e, bytes);
}

TEST(LlcKnownAnswer, DeleteRkeyV2TwelveRkeys) {
  // 8 + 12 * 4 = 56 = 0x0038.
  std::string hex = "29 3800 00 | 0c | 02 | 0000";
  for (int i = 1; i <= 12; ++i) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "| %08x ", 0x1000 + i);
    hex += buf;
  }
  auto bytes = HexBytes(hex);
  ASSERT_EQ(bytes.size(), 56u);
  auto m = DecodeAs<LlcDeleteRkey>(bytes);
  EXPECT_TRUE(m.hdr.v2);
  EXPECT_EQ(m.num_rkeys, 12);
  EXPECT_EQ(m.num_inval_rkeys, 2);
  EXPECT_EQ(m.error_mask, 0);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(m.rkeys[i], 0x1001u + i);
  LlcDeleteRkey e;
  e.hdr.v2 = true;
  e.num_rkeys = 12;
  e.num_inval_rkeys = 2;
  for (int i = 0; i < 12; ++i) e.rkeys[i] = 0x1001 + i;
  ExpectEncodes(e, bytes);
}

// --- Common header ----------------------------------------------------------

// A V2 message longer than its content (length_v2 padding) decodes; the
// encoder writes the canonical length.
TEST(LlcHeader, V2PaddingIsAcceptedAndDroppedOnEncode) {
  auto bytes = HexBytes(
      "21 3000 03 | 5254000000aa | 00000000000000000000ffff0a000001 |"
      "fedcba | 01 | 00000101 | 02 | 10 | 0000000000000000 | 00000000");
  ASSERT_EQ(bytes.size(), 48u);
  auto m = DecodeAs<LlcConfirmLink>(bytes);
  EXPECT_EQ(m.hdr.length, 48);
  std::array<std::byte, 64> out{};
  WireResult<size_t> n = EncodeLlc(m, out);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 44u);
  EXPECT_EQ(out[1], std::byte{0x2c});
  EXPECT_EQ(out[2], std::byte{0x00});
}

// Reading length_v2 big-endian (as Wireshark 4.0 does) would give 0x2c00.
TEST(LlcHeader, LengthV2IsLittleEndian) {
  auto bytes = HexBytes(kAddLinkV2TwoRkeys);
  std::swap(bytes[1], bytes[2]);  // 00 68: 0x6800 little-endian, too long
  WireResult<LlcMessage> m = DecodeLlc(bytes);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error(), (WireError{WireErrc::kBadLength, "llc.length_v2"}));
}

TEST(LlcDescribe, PrintsTypeAndFields) {
  auto m = DecodeLlc(HexBytes(kAddLinkV2TwoRkeys));
  ASSERT_TRUE(m.ok());
  const std::string d = DescribeLlc(*m);
  EXPECT_NE(d.find("type: ADD_LINK v2\n"), std::string::npos) << d;
  EXPECT_NE(d.find("length: 104\n"), std::string::npos) << d;
  EXPECT_NE(d.find("sender_qpn: 0x000012\n"), std::string::npos) << d;
  EXPECT_NE(d.find("num_rkeys: 2\n"), std::string::npos) << d;
  EXPECT_NE(d.find("rkey: 0x00000367 new 0x00000522 vaddr 0xffff8953c35c0000"),
            std::string::npos)
      << d;
  EXPECT_EQ(ToString(LlcType::kDeleteRkey), "DELETE_RKEY");
  EXPECT_EQ(ToString(LlcDeleteLinkReason::kNoLgr), "NOLGR");
}

}  // namespace
}  // namespace usmc::wire
