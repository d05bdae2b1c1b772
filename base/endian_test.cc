#include "base/endian.h"

#include <gtest/gtest.h>

#include <array>

namespace usmc {
namespace {

TEST(EndianTest, BigEndianRoundTrip) {
  std::array<std::byte, 8> b{};
  StoreBe64(b.data(), 0x0102030405060708ull);
  EXPECT_EQ(static_cast<int>(b[0]), 1);
  EXPECT_EQ(static_cast<int>(b[7]), 8);
  EXPECT_EQ(LoadBe64(b.data()), 0x0102030405060708ull);
  EXPECT_EQ(LoadBe32(b.data() + 4), 0x05060708u);
  EXPECT_EQ(LoadBe16(b.data() + 2), 0x0304);
  EXPECT_EQ(LoadBe24(b.data() + 1), 0x020304u);
}

TEST(EndianTest, Store24KeepsLowBitsOnly) {
  std::array<std::byte, 4> b{};
  StoreBe24(b.data(), 0xAABBCCDDu);
  EXPECT_EQ(LoadBe24(b.data()), 0xBBCCDDu);
  EXPECT_EQ(static_cast<int>(b[3]), 0);
}

TEST(EndianTest, LittleEndianRoundTrip) {
  std::array<std::byte, 4> b{};
  StoreLe32(b.data(), 0x11223344u);
  EXPECT_EQ(static_cast<int>(b[0]), 0x44);
  EXPECT_EQ(LoadLe32(b.data()), 0x11223344u);
  StoreLe16(b.data(), 0x5800);
  EXPECT_EQ(static_cast<int>(b[0]), 0x00);
  EXPECT_EQ(static_cast<int>(b[1]), 0x58);
  EXPECT_EQ(LoadLe16(b.data()), 0x5800);
}

}  // namespace
}  // namespace usmc
