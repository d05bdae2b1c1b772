// SMC-R at the runtime level: two engines through the production executor
// and the link-group registry (runtime/lgr_registry.h) over SimRdma.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/sim_pair.h"
#include "wire/clc.h"
#include "wire/reason.h"

namespace usmc::runtime {
namespace {

using engine::CloseState;
using engine::Mode;

std::vector<std::byte> Bytes(std::string_view s) {
  std::vector<std::byte> v(s.size());
  std::memcpy(v.data(), s.data(), s.size());
  return v;
}

TEST(SimSmcr, FirstContactThenDataBothWays) {
  SimPair sim(SimPair::SmcrOptions());
  sim.Start();
  sim.Pump();
  ASSERT_EQ(sim.conn(kClient).mode(), Mode::kSmc);
  ASSERT_EQ(sim.conn(kServer).mode(), Mode::kSmc);
  ASSERT_TRUE(sim.side(kClient).smcr_link.has_value());
  EXPECT_TRUE(sim.side(kClient).smcr_link->first_contact);
  EXPECT_EQ(sim.Send(kClient, Bytes("hello")), 5u);
  sim.Pump();
  std::vector<std::byte> buf(16);
  ASSERT_EQ(sim.Recv(kServer, buf), 5u);
  EXPECT_EQ(std::memcmp(buf.data(), "hello", 5), 0);
  EXPECT_TRUE(sim.world().fabric().misuse().empty());
}

}  // namespace
}  // namespace usmc::runtime
