// PeekClcFrame: the one CLC framing rule, on every sample message, every
// prefix of it, and hostile headers (short, wrong eyecatcher, type,
// version, length below a header+trailer or above the maximum), v1 and v2.
#include <gtest/gtest.h>

#include "base/endian.h"
#include "wire/clc.h"
#include "wire/clc_frame.h"
#include "wire/clc_testing.h"
#include "wire/reason.h"

namespace usmc::wire {
namespace {

using St = ClcFramePeek::Status;

Bytes V1Decline() {
  ClcDecline d;
  d.version = 1;
  d.peer_diagnosis = kReasonNoSmcDev;
  return EncodeToBytes(d);
}

TEST(PeekClcFrame, EveryPrefixOfEverySampleNeedsExactlyTheRest) {
  for (auto& [name, m] : ClcSamples()) {
    SCOPED_TRACE(name);
    Bytes b = EncodeToBytes(m);
    for (size_t n = 0; n < b.size(); ++n) {
      ClcFramePeek p = PeekClcFrame(std::span(b).first(n));
      ASSERT_EQ(p.status, St::kNeedMore) << n;
      // Before the header is in, only the header's rest is known.
      EXPECT_EQ(p.need, n < kClcHeaderLen ? kClcHeaderLen - n : b.size() - n);
      EXPECT_EQ(p.header_ok, n >= kClcHeaderLen);
    }
    ClcFramePeek p = PeekClcFrame(b);
    ASSERT_EQ(p.status, St::kComplete);
    EXPECT_EQ(p.length, b.size());
    EXPECT_EQ(p.need, 0u);
    EXPECT_TRUE(p.trailer_ok);
    EXPECT_EQ(p.header.type, TypeOf(m));
  }
}

TEST(PeekClcFrame, BytesAfterTheMessageAreNotItsOwn) {
  Bytes b = V1Decline();
  const size_t len = b.size();
  Bytes more = b;
  for (char c : std::string_view("GET / HTTP/1.1\r\n")) {
    more.push_back(std::byte(c));
  }
  ClcFramePeek p = PeekClcFrame(more);
  ASSERT_EQ(p.status, St::kComplete);
  EXPECT_EQ(p.length, len);
  // A second message behind it: still only the first.
  Bytes two = b;
  two.insert(two.end(), b.begin(), b.end());
  EXPECT_EQ(PeekClcFrame(two).length, len);
}

TEST(PeekClcFrame, VersionOneAndTwo) {
  Bytes v1 = V1Decline();
  ASSERT_EQ(v1.size(), kClcDeclineV1Len);
  ClcFramePeek p1 = PeekClcFrame(v1);
  ASSERT_EQ(p1.status, St::kComplete);
  EXPECT_EQ(p1.header.version, 1);
  ClcDecline d2;
  d2.version = 2;
  Bytes v2 = EncodeToBytes(d2);
  ASSERT_EQ(v2.size(), kClcDeclineV2Len);
  ClcFramePeek p2 = PeekClcFrame(v2);
  ASSERT_EQ(p2.status, St::kComplete);
  EXPECT_EQ(p2.header.version, 2);
  EXPECT_EQ(p2.length, kClcDeclineV2Len);
  // Every version >= 2 frames like v2 (Linux reads them with the v2
  // layout); version 0 is not CLC.
  v2[7] = std::byte{0xF0};
  EXPECT_EQ(PeekClcFrame(v2).status, St::kComplete);
  v2[7] = std::byte{0x00};
  ClcFramePeek p0 = PeekClcFrame(v2);
  EXPECT_EQ(p0.status, St::kNotClc);
  EXPECT_EQ(p0.error.code, WireErrc::kBadVersion);
}

TEST(PeekClcFrame, ShortHeaderWaitsEvenIfItIsGarbage) {
  // Linux peeks the whole header before judging it; so does usmc.
  Bytes garbage = {std::byte{'G'}, std::byte{'E'}, std::byte{'T'}};
  ClcFramePeek p = PeekClcFrame(garbage);
  EXPECT_EQ(p.status, St::kNeedMore);
  EXPECT_EQ(p.need, 5u);
  EXPECT_EQ(PeekClcFrame({}).need, kClcHeaderLen);
}

TEST(PeekClcFrame, WrongEyecatcherTypeIsNotClc) {
  Bytes b = V1Decline();
  Bytes e = b;
  e[3] = std::byte{0xC5};
  EXPECT_EQ(PeekClcFrame(e).status, St::kNotClc);
  EXPECT_EQ(PeekClcFrame(e).error.code, WireErrc::kBadEyecatcher);
  EXPECT_FALSE(PeekClcFrame(e).header_ok);
  Bytes http(kClcHeaderLen, std::byte{'A'});
  EXPECT_EQ(PeekClcFrame(http).error.code, WireErrc::kBadEyecatcher);
  for (uint8_t t : {0, 5, 0xFF}) {
    Bytes bt = b;
    bt[4] = std::byte{t};
    ClcFramePeek p = PeekClcFrame(bt);
    EXPECT_EQ(p.status, St::kNotClc) << int(t);
    EXPECT_EQ(p.error.code, WireErrc::kBadType) << int(t);
  }
}

TEST(PeekClcFrame, LengthBelowHeaderOrAboveMaxIsNotClc) {
  Bytes b = V1Decline();
  for (uint16_t len : {0, 1, 7, 8, 12, 27, 653, 0xFFFF}) {
    Bytes h = b;
    StoreBe16(h.data() + 5, len);
    ClcFramePeek p = PeekClcFrame(h);
    EXPECT_EQ(p.status, St::kNotClc) << len;
    EXPECT_EQ(p.error.code, WireErrc::kBadLength) << len;
  }
  // The bounds themselves are framed: 28 complete, 652 waits for the rest.
  Bytes max = b;
  StoreBe16(max.data() + 5, kClcMaxMessageLen);
  ClcFramePeek p = PeekClcFrame(max);
  EXPECT_EQ(p.status, St::kNeedMore);
  EXPECT_EQ(p.need, kClcMaxMessageLen - b.size());
}

TEST(PeekClcFrame, BadTrailerIsFramedButFlagged) {
  // The length decides the frame; whether its trailer is an eyecatcher is
  // reported, so framing-only readers can refuse it.
  Bytes b = V1Decline();
  b.back() = std::byte{0};
  ClcFramePeek p = PeekClcFrame(b);
  ASSERT_EQ(p.status, St::kComplete);
  EXPECT_FALSE(p.trailer_ok);
  // An SMCD trailer behind an SMCR header is an eyecatcher all the same.
  b.back() = std::byte{0xC4};
  EXPECT_TRUE(PeekClcFrame(b).trailer_ok);
}

TEST(PeekClcFrame, StatusNames) {
  EXPECT_EQ(ToString(St::kComplete), "COMPLETE");
  EXPECT_EQ(ToString(St::kNeedMore), "NEED_MORE");
  EXPECT_EQ(ToString(St::kNotClc), "NOT_CLC");
}

}  // namespace
}  // namespace usmc::wire
