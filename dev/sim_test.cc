// End-to-end engine tests over dev/sim: handshake, data, close, fallback and
// a hostile peer, both engines driven by SimPair.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dev/sim_pair.h"
#include "wire/clc.h"
#include "wire/reason.h"

namespace usmc::dev {
namespace {

using engine::CloseState;
using engine::Mode;

std::vector<std::byte> Bytes(std::string_view s) {
  std::vector<std::byte> v(s.size());
  std::memcpy(v.data(), s.data(), s.size());
  return v;
}

std::string Str(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Runs the handshake to completion and checks both ends reached SMC-D.
void Connect(SimPair& sim) {
  sim.Start();
  sim.Pump();
  ASSERT_EQ(sim.conn(kClient).mode(), Mode::kSmcd);
  ASSERT_EQ(sim.conn(kServer).mode(), Mode::kSmcd);
}

TEST(SimHandshake, ReachesSmcdWithMirroredParameters) {
  SimPair sim(SimPair::DefaultOptions());
  Connect(sim);
  const SimSide& c = sim.side(kClient);
  const SimSide& s = sim.side(kServer);
  ASSERT_TRUE(c.link.has_value());
  ASSERT_TRUE(s.link.has_value());
  EXPECT_EQ(c.link->local_dmb_token, s.link->peer_dmb_token);
  EXPECT_EQ(c.link->peer_dmb_token, s.link->local_dmb_token);
  EXPECT_EQ(c.link->local_dmb_size, s.link->peer_dmb_size);
  EXPECT_EQ(c.link->peer_dmb_size, s.link->local_dmb_size);
  EXPECT_EQ(c.link->local_dmb_size, 64u * 1024);
  EXPECT_EQ(c.link->peer_device, s.link->local_device);
  EXPECT_EQ(c.link->local_device, s.link->peer_device);
  EXPECT_EQ(c.link->link_id, s.link->link_id);
  EXPECT_NE(c.link->local_dmb_token, c.link->peer_dmb_token);
  EXPECT_EQ(c.own_token, c.link->local_dmb_token);
  EXPECT_EQ(s.own_token, s.link->local_dmb_token);
  EXPECT_EQ(c.clc_sent, (std::vector<wire::ClcType>{wire::ClcType::kProposal,
                                                    wire::ClcType::kConfirm}));
  EXPECT_EQ(s.clc_sent, (std::vector<wire::ClcType>{wire::ClcType::kAccept}));
  EXPECT_FALSE(c.deadline.has_value());
  EXPECT_FALSE(s.deadline.has_value());
  EXPECT_TRUE(c.errors.empty());
  EXPECT_TRUE(s.errors.empty());
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kActive);
  EXPECT_EQ(sim.device().dmb_count(), 2u);
}

TEST(SimHandshake, OneByteTrickleGivesTheSameResult) {
  SimOptions o = SimPair::DefaultOptions();
  o.trickle = true;
  SimPair sim(o);
  Connect(sim);
  EXPECT_EQ(sim.side(kClient).link->peer_dmb_token,
            sim.side(kServer).link->local_dmb_token);
  EXPECT_EQ(sim.side(kServer).link->peer_dmb_token,
            sim.side(kClient).link->local_dmb_token);
}

TEST(SimData, SmallMessageBothWays) {
  SimPair sim(SimPair::DefaultOptions());
  Connect(sim);
  const auto hello = Bytes("hello server");
  EXPECT_EQ(sim.Send(kClient, hello), hello.size());
  sim.Pump();
  std::vector<std::byte> buf(100);
  ASSERT_EQ(sim.Recv(kServer, buf), hello.size());
  EXPECT_EQ(Str(std::span(buf).first(hello.size())), "hello server");
  const auto reply = Bytes("hi client");
  EXPECT_EQ(sim.Send(kServer, reply), reply.size());
  sim.Pump();
  ASSERT_EQ(sim.Recv(kClient, buf), reply.size());
  EXPECT_EQ(Str(std::span(buf).first(reply.size())), "hi client");
}

}  // namespace
}  // namespace usmc::dev
