#include "wire/reason.h"

#include <gtest/gtest.h>

#include <set>

#include "wire/bufsize.h"

namespace usmc::wire {
namespace {

TEST(ReasonTest, KnownCodesHaveKernelNames) {
  EXPECT_EQ(ReasonName(kReasonPeerNoSmc), "PEERNOSMC");
  EXPECT_EQ(ReasonName(0x03030000), "NOSMCDEV");
  EXPECT_EQ(ReasonName(0x0303000a), "MAXCONNERR");
  EXPECT_EQ(ReasonName(0x05000000), "PEERDECL");
  EXPECT_EQ(FormatReason(0x03030000), "0x03030000 NOSMCDEV");
}

TEST(ReasonTest, UnknownCodesStillPrint) {
  EXPECT_EQ(FindReason(0x12345678), nullptr);
  EXPECT_EQ(ReasonName(0x12345678), "UNKNOWN");
  EXPECT_EQ(FormatReason(0x12345678), "0x12345678 UNKNOWN");
}

TEST(ReasonTest, NamesAndCodesAreUnique) {
  std::set<uint32_t> codes;
  std::set<std::string_view> names;
  for (const ReasonInfo& r : AllReasons()) {
    EXPECT_TRUE(codes.insert(r.code).second) << r.name;
    EXPECT_TRUE(names.insert(r.name).second) << r.name;
    EXPECT_EQ(FindReason(r.code), &r);
  }
  EXPECT_EQ(codes.size(), 38u);
}

TEST(BufSizeTest, CompressionMatchesLinux) {
  EXPECT_EQ(UncompressBufSize(0), 16u * 1024);
  EXPECT_EQ(UncompressBufSize(6), 1024u * 1024);
  EXPECT_EQ(UncompressBufSize(15), 512u * 1024 * 1024);
  EXPECT_EQ(CompressBufSize(1, kSmcrMaxCompressed), 0);
  EXPECT_EQ(CompressBufSize(16 * 1024, kSmcrMaxCompressed), 0);
  EXPECT_EQ(CompressBufSize(16 * 1024 + 1, kSmcrMaxCompressed), 1);
  EXPECT_EQ(CompressBufSize(100 * 1024, kSmcdMaxCompressed), 3);
  EXPECT_EQ(CompressBufSize(size_t{1} << 30, kSmcdMaxCompressed), 6);
  EXPECT_EQ(CompressBufSize(size_t{1} << 30, kSmcrMaxCompressed), 15);
  for (uint8_t c = 0; c <= kSmcrMaxCompressed; ++c)
    EXPECT_EQ(CompressBufSize(UncompressBufSize(c), kSmcrMaxCompressed), c);
}

}  // namespace
}  // namespace usmc::wire
