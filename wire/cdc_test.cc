// CDC codec tests: hand-assembled known answers, rejections, round trips.
// Cursor arithmetic is tested against a reference model in
// cdc_cursor_test.cc.
#include "wire/cdc.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <vector>

namespace usmc::wire {
namespace {

template <typename... T>
std::vector<std::byte> Bytes(T... v) {
  return {std::byte(static_cast<uint8_t>(v))...};
}

// SMC-R CDC assembled from PROTOCOL.md §4.1, field by field.
std::vector<std::byte> HandSmcrCdc() {
  const std::vector<std::byte> head = Bytes(
      0xFE, 44,                                        // type, length
      0x12, 0x34,                                      // seqno
      0xDE, 0xAD, 0xBE, 0xEF,                          // alert token
      0x00, 0x00, 0x00, 0x07, 0x00, 0x01, 0x02, 0x03,  // prod: rsvd wrap count
      0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x10, 0x00,  // cons: rsvd wrap count
      0x88,                                            // write_blocked|failover
      0xA0);                                           // done_writing|abort
  // 18 reserved. (Not head.resize(): gcc 12 -O3 sees a false
  // -Warray-bounds in it.)
  std::vector<std::byte> b(kCdcMsgLen, std::byte{0});
  std::copy(head.begin(), head.end(), b.begin());
  return b;
}

// SMC-D CDC area assembled from PROTOCOL.md §5.2 (little-endian fields).
std::vector<std::byte> HandSmcdCdc() {
  const std::vector<std::byte> head = Bytes(
      0xFE, 0, 0, 0, 0, 0, 0, 0,           // type, 7 reserved
      0x02, 0x01, 0x0D, 0x0C, 0x0B, 0x0A,  // prod wrap 0x0102, count 0x0A0B0C0D
      0x00, 0x00,                          // prod's flag copies (ignored)
      0x04, 0x03, 0x44, 0x33, 0x22, 0x11,  // cons wrap 0x0304, count 0x11223344
      0x40,                                // urg_data_pending
      0x80);                               // peer_done_writing
  std::vector<std::byte> b(kSmcdCdcLen, std::byte{0});
  std::copy(head.begin(), head.end(), b.begin());
  return b;
}

TEST(CdcKnownAnswer, SmcrDecodesEveryField) {
  auto bytes = HandSmcrCdc();
  WireResult<CdcMessage> m = DecodeCdc(bytes);
  ASSERT_TRUE(m.ok()) << m.error();
  EXPECT_EQ(m->seqno, 0x1234);
  EXPECT_EQ(m->alert_token, 0xDEADBEEFu);
  EXPECT_EQ(m->producer, (Cursor{7, 0x00010203}));
  EXPECT_EQ(m->consumer, (Cursor{0xFFFF, 0x1000}));
  EXPECT_TRUE(m->prod_flags.write_blocked);
  EXPECT_FALSE(m->prod_flags.urg_data_pending);
  EXPECT_FALSE(m->prod_flags.urg_data_present);
  EXPECT_FALSE(m->prod_flags.cons_curs_upd_req);
  EXPECT_TRUE(m->prod_flags.failover_validation);
  EXPECT_TRUE(m->conn_state.peer_done_writing);
  EXPECT_FALSE(m->conn_state.peer_conn_closed);
  EXPECT_TRUE(m->conn_state.peer_conn_abort);
}

TEST(CdcKnownAnswer, SmcrEncodesTheSameBytes) {
  CdcMessage m;
  m.seqno = 0x1234;
  m.alert_token = 0xDEADBEEF;
  m.producer = {7, 0x00010203};
  m.consumer = {0xFFFF, 0x1000};
  m.prod_flags.write_blocked = true;
  m.prod_flags.failover_validation = true;
  m.conn_state.peer_done_writing = true;
  m.conn_state.peer_conn_abort = true;
  std::array<std::byte, 64> out{};
  out.fill(std::byte{0x5A});
  WireResult<size_t> n = EncodeCdc(m, out);
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(*n, kCdcMsgLen);
  EXPECT_EQ(std::vector<std::byte>(out.begin(), out.begin() + 44),
            HandSmcrCdc());
  EXPECT_EQ(out[44], std::byte{0x5A}) << "wrote past the message";
}

// Each flag bit maps to exactly one named flag.
TEST(CdcKnownAnswer, EachFlagBitIsItsOwnField) {
  const std::array<uint8_t, 5> prod = {0x80, 0x40, 0x20, 0x10, 0x08};
  for (size_t i = 0; i < prod.size(); ++i) {
    CdcProducerFlags f = DecodeCdcProducerFlags(prod[i]);
    const std::array<bool, 5> got = {f.write_blocked, f.urg_data_pending,
                                     f.urg_data_present, f.cons_curs_upd_req,
                                     f.failover_validation};
    for (size_t j = 0; j < got.size(); ++j) EXPECT_EQ(got[j], i == j) << i;
    EXPECT_EQ(EncodeCdcProducerFlags(f), prod[i]);
  }
  const std::array<uint8_t, 3> conn = {0x80, 0x40, 0x20};
  for (size_t i = 0; i < conn.size(); ++i) {
    CdcConnStateFlags f = DecodeCdcConnStateFlags(conn[i]);
    const std::array<bool, 3> got = {f.peer_done_writing, f.peer_conn_closed,
                                     f.peer_conn_abort};
    for (size_t j = 0; j < got.size(); ++j) EXPECT_EQ(got[j], i == j) << i;
    EXPECT_EQ(EncodeCdcConnStateFlags(f), conn[i]);
  }
  // Reserved bits decode to nothing.
  EXPECT_EQ(DecodeCdcProducerFlags(0x07), CdcProducerFlags{});
  EXPECT_EQ(DecodeCdcConnStateFlags(0x1F), CdcConnStateFlags{});
}

TEST(CdcKnownAnswer, SmcdDecodesLittleEndianFields) {
  auto bytes = HandSmcdCdc();
  WireResult<CdcMessage> m = DecodeSmcdCdc(bytes);
  ASSERT_TRUE(m.ok()) << m.error();
  EXPECT_EQ(m->producer, (Cursor{0x0102, 0x0A0B0C0D}));
  EXPECT_EQ(m->consumer, (Cursor{0x0304, 0x11223344}));
  EXPECT_TRUE(m->prod_flags.urg_data_pending);
  EXPECT_TRUE(m->conn_state.peer_done_writing);
  EXPECT_EQ(m->seqno, 0);
  EXPECT_EQ(m->alert_token, 0u);
  CdcProducerFlags expect_prod;
  expect_prod.urg_data_pending = true;
  EXPECT_EQ(m->prod_flags, expect_prod);
}

TEST(CdcKnownAnswer, SmcdEncodesTheSameBytes) {
  CdcMessage m;
  m.seqno = 99;          // not on the SMC-D wire
  m.alert_token = 1234;  // not on the SMC-D wire
  m.producer = {0x0102, 0x0A0B0C0D};
  m.consumer = {0x0304, 0x11223344};
  m.prod_flags.urg_data_pending = true;
  m.conn_state.peer_done_writing = true;
  std::array<std::byte, kSmcdCdcLen> out{};
  WireResult<size_t> n = EncodeSmcdCdc(m, out);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, kSmcdCdcLen);
  EXPECT_EQ(std::vector<std::byte>(out.begin(), out.end()), HandSmcdCdc());
}

// Linux writes the flags of the SMC-D producer cursor as 0 and reads the
// flags only from the consumer cursor's copy (bytes 22, 23).
TEST(CdcKnownAnswer, SmcdIgnoresTheFlagCopiesInTheProducerCursor) {
  auto bytes = HandSmcdCdc();
  bytes[14] = std::byte{0xFF};
  bytes[15] = std::byte{0xFF};
  WireResult<CdcMessage> m = DecodeSmcdCdc(bytes);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->prod_flags, DecodeCdcProducerFlags(0x40));
  EXPECT_EQ(m->conn_state, DecodeCdcConnStateFlags(0x80));
}

TEST(CdcCanonical, ReservedBytesAndBitsAreIgnoredAndWrittenAsZero) {
  auto bytes = HandSmcrCdc();
  auto dirty = bytes;
  for (size_t i : {8, 9, 16, 17}) dirty[i] = std::byte{0xEE};  // cursor rsvd
  for (size_t i = 26; i < 44; ++i) dirty[i] = std::byte{0xEE};
  dirty[24] |= std::byte{0x07};
  dirty[25] |= std::byte{0x1F};
  WireResult<CdcMessage> clean = DecodeCdc(bytes);
  WireResult<CdcMessage> m = DecodeCdc(dirty);
  ASSERT_TRUE(m.ok() && clean.ok());
  EXPECT_EQ(*m, *clean);
  std::array<std::byte, kCdcMsgLen> out{};
  ASSERT_TRUE(EncodeCdc(*m, out).ok());
  EXPECT_EQ(std::vector<std::byte>(out.begin(), out.end()), bytes);
}

TEST(CdcReject, SmcrTruncatedAtEveryLength) {
  auto bytes = HandSmcrCdc();
  for (size_t n = 0; n < kCdcMsgLen; ++n) {
    WireResult<CdcMessage> m = DecodeCdc(std::span(bytes).first(n));
    ASSERT_FALSE(m.ok()) << n;
    EXPECT_EQ(m.error(), (WireError{WireErrc::kTruncated, "cdc.message"})) << n;
  }
}

TEST(CdcReject, SmcrEveryWrongTypeByte) {
  auto bytes = HandSmcrCdc();
  for (int t = 0; t < 256; ++t) {
    if (t == kCdcType) continue;
    bytes[0] = std::byte(t);
    WireResult<CdcMessage> m = DecodeCdc(bytes);
    ASSERT_FALSE(m.ok()) << t;
    EXPECT_EQ(m.error(), (WireError{WireErrc::kBadType, "cdc.type"})) << t;
  }
}

TEST(CdcReject, SmcrEveryWrongLengthByte) {
  auto bytes = HandSmcrCdc();
  for (int len = 0; len < 256; ++len) {
    if (len == static_cast<int>(kCdcMsgLen)) continue;
    bytes[1] = std::byte(len);
    WireResult<CdcMessage> m = DecodeCdc(bytes);
    ASSERT_FALSE(m.ok()) << len;
    EXPECT_EQ(m.error(), (WireError{WireErrc::kBadLength, "cdc.length"}))
        << len;
  }
}

TEST(CdcReject, SmcdTruncatedAtEveryLengthAndEveryWrongType) {
  auto bytes = HandSmcdCdc();
  for (size_t n = 0; n < kSmcdCdcLen; ++n) {
    WireResult<CdcMessage> m = DecodeSmcdCdc(std::span(bytes).first(n));
    ASSERT_FALSE(m.ok()) << n;
    EXPECT_EQ(m.error(), (WireError{WireErrc::kTruncated, "smcd_cdc.message"}));
  }
  for (int t = 0; t < 256; ++t) {
    if (t == kCdcType) continue;
    bytes[0] = std::byte(t);
    WireResult<CdcMessage> m = DecodeSmcdCdc(bytes);
    ASSERT_FALSE(m.ok()) << t;
    EXPECT_EQ(m.error(), (WireError{WireErrc::kBadType, "smcd_cdc.type"}));
  }
}

TEST(CdcReject, EncodersNeedRoomForTheWholeMessage) {
  CdcMessage m;
  std::array<std::byte, kCdcMsgLen - 1> small{};
  WireResult<size_t> r = EncodeCdc(m, small);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), (WireError{WireErrc::kBufferTooSmall, "cdc.message"}));
  std::array<std::byte, kSmcdCdcLen - 1> small_d{};
  WireResult<size_t> d = EncodeSmcdCdc(m, small_d);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error(),
            (WireError{WireErrc::kBufferTooSmall, "smcd_cdc.message"}));
}

TEST(CdcDecode, ExtraBytesAfterTheMessageAreIgnored) {
  auto bytes = HandSmcrCdc();
  bytes.resize(48, std::byte{0x77});  // a 48-byte receive buffer
  WireResult<CdcMessage> m = DecodeCdc(bytes);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->seqno, 0x1234);
}

CdcMessage RandomCdc(std::mt19937_64& rng) {
  CdcMessage m;
  m.seqno = static_cast<uint16_t>(rng());
  m.alert_token = static_cast<uint32_t>(rng());
  m.producer = {static_cast<uint16_t>(rng()), static_cast<uint32_t>(rng())};
  m.consumer = {static_cast<uint16_t>(rng()), static_cast<uint32_t>(rng())};
  m.prod_flags = DecodeCdcProducerFlags(static_cast<uint8_t>(rng()));
  m.conn_state = DecodeCdcConnStateFlags(static_cast<uint8_t>(rng()));
  return m;
}

TEST(CdcRoundTrip, RandomMessagesSurviveBothEncodings) {
  std::mt19937_64 rng(0xCDC);
  for (int i = 0; i < 20000; ++i) {
    CdcMessage m = RandomCdc(rng);
    std::array<std::byte, kCdcMsgLen> r{};
    ASSERT_TRUE(EncodeCdc(m, r).ok());
    WireResult<CdcMessage> back = DecodeCdc(r);
    ASSERT_TRUE(back.ok());
    ASSERT_EQ(*back, m) << DescribeCdc(m);

    std::array<std::byte, kSmcdCdcLen> d{};
    ASSERT_TRUE(EncodeSmcdCdc(m, d).ok());
    WireResult<CdcMessage> back_d = DecodeSmcdCdc(d);
    ASSERT_TRUE(back_d.ok());
    CdcMessage want = m;
    want.seqno = 0;
    want.alert_token = 0;
    ASSERT_EQ(*back_d, want) << DescribeCdc(m);
  }
}

TEST(CdcDescribe, PrintsEveryFieldAsALine) {
  WireResult<CdcMessage> m = DecodeCdc(HandSmcrCdc());
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(DescribeCdc(*m),
            "seqno: 4660\n"
            "alert_token: 0xdeadbeef\n"
            "producer: 0007:00010203\n"
            "consumer: ffff:00001000\n"
            "write_blocked: 1\n"
            "urg_data_pending: 0\n"
            "urg_data_present: 0\n"
            "cons_curs_upd_req: 0\n"
            "failover_validation: 1\n"
            "peer_done_writing: 1\n"
            "peer_conn_closed: 0\n"
            "peer_conn_abort: 1\n");
}

}  // namespace
}  // namespace usmc::wire
