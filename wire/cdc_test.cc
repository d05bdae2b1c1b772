#include "wire/cdc.h"

#include <gtest/gtest.h>

#include <array>

namespace usmc::wire {
namespace {

TEST(CdcSmoke, EncodeDecodeRoundTrip) {
  CdcMessage m;
  m.seqno = 7;
  m.alert_token = 0x01020304;
  m.producer = {1, 100};
  std::array<std::byte, kCdcMsgLen> buf{};
  ASSERT_TRUE(EncodeCdc(m, buf).ok());
  WireResult<CdcMessage> back = DecodeCdc(buf);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, m);
}

}  // namespace
}  // namespace usmc::wire
