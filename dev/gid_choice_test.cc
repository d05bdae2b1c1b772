// dev/gid_choice_test.cc: the GID SMC-Rv2 picks for a local address, over
// fake GID tables shaped like rxe's (one GID per address of its netdev:
// fe80:: link-local, ::ffff:IPv4, each global IPv6 address).
#include "dev/gid_choice.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace usmc::dev::rdma {
namespace {

Gid G(const char* text) {
  Gid g{};
  if (std::strchr(text, ':') != nullptr) {
    EXPECT_EQ(::inet_pton(AF_INET6, text, g.data()), 1) << text;
  } else {
    in_addr a{};
    EXPECT_EQ(::inet_pton(AF_INET, text, &a), 1) << text;
    g = GidFromIpv4(ntohl(a.s_addr));
  }
  return g;
}

// rxe on eth0 (ifindex 2) with 10.0.0.1/24, fd00::1/64 and fe80::1/64; a
// second netdev (ifindex 3) with 10.0.1.1/24 and fd01::1/64.
const std::vector<GidEntry> kTable = {
    {G("fe80::5054:ff:fe00:1"), true, true, 2},  // 0
    {G("10.0.0.1"), true, true, 2},              // 1
    {G("fd00::1"), true, true, 2},               // 2
    {G("10.0.1.1"), true, true, 3},              // 3
    {G("fd01::1"), true, true, 3},               // 4
};
const std::vector<IfAddr> kAddrs = {
    {2, G("10.0.0.1"), 96 + 24},
    {2, G("fd00::1"), 64},
    {2, G("fe80::5054:ff:fe00:1"), 64},
    {3, G("10.0.1.1"), 96 + 24},
    {3, G("fd01::1"), 64},
};

TEST(GidChoiceTest, Ipv6AddressPicksTheGidEqualToIt) {
  EXPECT_EQ(ChooseGid(kTable, G("fd00::1"), kAddrs), 2u);
  EXPECT_EQ(ChooseGid(kTable, G("fd01::1"), kAddrs), 4u);
}

TEST(GidChoiceTest, Ipv6AddressWithoutItsOwnGidTakesOneOfItsPrefix) {
  // fd00::7 (e.g. an address rxe has not yet made a GID for) on eth0's
  // prefix: eth0's fd00::1, never the link-local or IPv4-mapped GID.
  EXPECT_EQ(ChooseGid(kTable, G("fd00::7"), kAddrs), 2u);
}

TEST(GidChoiceTest, Ipv6AddressOutsideEveryPrefixHasNoGid) {
  EXPECT_EQ(ChooseGid(kTable, G("fd99::1"), kAddrs), std::nullopt);
  // A table with only link-local and IPv4-mapped GIDs (rxe before the
  // global address came up): none for a global IPv6 address.
  const std::vector<GidEntry> early = {kTable[0], kTable[1]};
  EXPECT_EQ(ChooseGid(early, G("fd00::1"), kAddrs), std::nullopt);
}

TEST(GidChoiceTest, LinkLocalOnlyForItself) {
  EXPECT_EQ(ChooseGid(kTable, G("fe80::5054:ff:fe00:1"), kAddrs), 0u);
}

TEST(GidChoiceTest, Ipv4AddressPicksItsMappedGid) {
  EXPECT_EQ(ChooseGid(kTable, G("10.0.0.1"), kAddrs), 1u);
  EXPECT_EQ(ChooseGid(kTable, G("10.0.1.1"), kAddrs), 3u);
  // Same subnet, another host address: that netdev's GID.
  EXPECT_EQ(ChooseGid(kTable, G("10.0.1.9"), kAddrs), 3u);
  EXPECT_EQ(ChooseGid(kTable, G("192.168.0.1"), kAddrs), std::nullopt);
}

TEST(GidChoiceTest, ZeroPicksTheFirstIpv4MappedGid) {
  EXPECT_EQ(ChooseGid(kTable, Gid{}, kAddrs), 1u);
}

TEST(GidChoiceTest, OnlyActiveRoceV2GidsCount) {
  std::vector<GidEntry> t = kTable;
  t[2].roce_v2 = false;  // a RoCEv1 GID of the same address
  EXPECT_EQ(ChooseGid(t, G("fd00::1"), kAddrs), std::nullopt);
  t = kTable;
  t[2].port_active = false;
  EXPECT_EQ(ChooseGid(t, G("fd00::1"), kAddrs), std::nullopt);
  // A second, active copy later in the table is taken.
  t.push_back({G("fd00::1"), true, true, 2});
  EXPECT_EQ(ChooseGid(t, G("fd00::1"), kAddrs), 5u);
}

TEST(GidChoiceTest, PrefixMatchingIsBitExact) {
  EXPECT_TRUE(SamePrefix(G("fd00::1"), G("fd00::ffff"), 64));
  EXPECT_FALSE(SamePrefix(G("fd00::1"), G("fd00:0:0:1::1"), 64));
  EXPECT_TRUE(SamePrefix(G("fd00:0:0:1::1"), G("fd00::1"), 63));
  EXPECT_TRUE(SamePrefix(G("10.0.0.1"), G("10.0.0.200"), 96 + 24));
  EXPECT_FALSE(SamePrefix(G("10.0.0.1"), G("10.0.0.200"), 96 + 25));
  EXPECT_TRUE(IsIpv4Mapped(G("10.0.0.1")));
  EXPECT_FALSE(IsIpv4Mapped(G("fd00::1")));
  EXPECT_TRUE(IsLinkLocal(G("fe80::1")));
  EXPECT_TRUE(IsLinkLocal(G("febf::1")));
  EXPECT_FALSE(IsLinkLocal(G("fec0::1")));
}

}  // namespace
}  // namespace usmc::dev::rdma
