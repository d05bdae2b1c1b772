// SMC-R at the runtime level: engines through the production executor and
// the link-group registry (runtime/lgr_registry.h) over SimRdma. The data
// and close tests shared with SMC-D are in sim_test.cc (parameterised);
// here: what only SMC-R has (link groups, LLC deadlines with no app call,
// reuse, memory regions, a dead or hostile peer).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/sim_pair.h"
#include "wire/clc.h"
#include "wire/reason.h"

namespace usmc::runtime {
namespace {

using dev::rdma::LinkMode;
using engine::CloseState;
using engine::LgrState;
using engine::Mode;
using namespace std::chrono_literals;

std::vector<std::byte> Bytes(std::string_view s) {
  std::vector<std::byte> v(s.size());
  std::memcpy(v.data(), s.data(), s.size());
  return v;
}

std::string Str(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

void Connect(SimPair& sim) {
  sim.Start();
  sim.Pump();
  ASSERT_EQ(sim.conn(kClient).mode(), Mode::kSmc);
  ASSERT_EQ(sim.conn(kServer).mode(), Mode::kSmc);
  ASSERT_TRUE(sim.side(kClient).smcr_link.has_value());
  ASSERT_TRUE(sim.side(kServer).smcr_link.has_value());
}

// Pumps and fires timers (simulated time) until both sides left the
// handshake; bounded.
void RunUntilDecided(SimPair& sim) {
  for (int i = 0; i < 200; ++i) {
    sim.Pump();
    if (sim.conn(kClient).mode() != Mode::kHandshake &&
        sim.conn(kServer).mode() != Mode::kHandshake)
      return;
    if (!sim.FireNextTimer()) return;
  }
}

// One message each way, checked.
void PingPong(SimPair& sim, const std::string& tag) {
  std::vector<std::byte> buf(256);
  for (int s = 0; s < 2; ++s) {
    const std::string msg = tag + (s == kClient ? "-c" : "-s");
    ASSERT_EQ(sim.Send(s, Bytes(msg)), msg.size());
    sim.Pump();
    ASSERT_EQ(sim.Recv(1 - s, buf), msg.size());
    EXPECT_EQ(Str(std::span(buf).first(msg.size())), msg);
  }
}

void CloseBoth(SimPair& sim) {
  sim.Close(kClient);
  sim.Pump();
  sim.Close(kServer);
  sim.Pump();
  ASSERT_EQ(sim.conn(kClient).close_state(), CloseState::kClosed);
  ASSERT_EQ(sim.conn(kServer).close_state(), CloseState::kClosed);
}

// Pumps and fires timers until side s has an error; bounded.
void RunUntilError(SimPair& sim, int s) {
  for (int i = 0; i < 200; ++i) {
    sim.Pump();
    if (sim.conn(s).RecvState().error != 0) return;
    if (!sim.FireNextTimer()) return;
  }
}

// What the progress threads do while no application thread calls in: the
// fabric and every registry run, timers fire, the engines get nothing.
void RunWorldFor(SmcrWorld& w, engine::Duration d) {
  const engine::TimePoint end = w.now() + d;
  for (int i = 0; i < 200000; ++i) {
    while (w.Progress()) {
    }
    std::optional<engine::TimePoint> next = w.NextDeadline();
    if (!next || *next > end) {
      w.clock().Set(end);
      while (w.Progress()) {
      }
      return;
    }
    w.clock().Set(std::max(*next, w.now() + 1ns));
  }
  ADD_FAILURE() << "the world never got to the end";
}

const LgrInfo* GroupById(const std::vector<LgrInfo>& gs, uint32_t id) {
  for (const LgrInfo& g : gs) {
    if (g.id == id) return &g;
  }
  return nullptr;
}

// ---- LLC is answered by the registry, not by app calls (D5, §1.7) ----

TEST(SimSmcrLlc, TestLinkIsAnsweredWhileNoApplicationThreadCallsIn) {
  SimPair sim(SimPair::SmcrOptions());
  Connect(sim);
  const uint32_t cid = *sim.smcr_conn(kClient).lgr_id();
  const uint32_t sid = *sim.smcr_conn(kServer).lgr_id();
  // 95 s idle: each side's 30 s keepalive sends TEST_LINK and wants the
  // answer within 2 s; only the registries run.
  RunWorldFor(sim.world(), 95s);
  const std::vector<LgrInfo> cg = sim.registry(kClient).Groups();
  const std::vector<LgrInfo> sg = sim.registry(kServer).Groups();
  ASSERT_NE(GroupById(cg, cid), nullptr);
  ASSERT_NE(GroupById(sg, sid), nullptr);
  const LgrInfo& c = *GroupById(cg, cid);
  const LgrInfo& s = *GroupById(sg, sid);
  EXPECT_EQ(c.state, LgrState::kActive);
  EXPECT_EQ(s.state, LgrState::kActive);
  EXPECT_GE(c.counters.test_link_sent + s.counters.test_link_sent, 3u);
  EXPECT_FALSE(sim.smcr_conn(kClient).HasEvents());
  EXPECT_FALSE(sim.smcr_conn(kServer).HasEvents());
  // The connection still carries data.
  PingPong(sim, "after-idle");
}

// The control: when the answer cannot arrive, the group ends 2 s later
// and its connection aborts (so the test above would have seen it).
TEST(SimSmcrLlc, UnansweredTestLinkEndsTheGroupAndAbortsItsConnections) {
  SimPair sim(SimPair::SmcrOptions());
  Connect(sim);
  SmcrWorld& w = sim.world();
  w.fabric().SetLink(w.host(0), w.host(1), LinkMode::kDrop);
  RunWorldFor(w, 40s);
  sim.Pump();
  EXPECT_EQ(sim.conn(kServer).RecvState().error, ECONNABORTED);
  EXPECT_EQ(sim.conn(kClient).RecvState().error, ECONNABORTED);
}

// ---- first contact fails: TCP on both ends, app bytes intact ----

TEST(SimSmcrFirstContact, LostConfirmLinkDeclinesTimeoutClAndKeepsAppBytes) {
  SimPair sim(SimPair::SmcrOptions());
  SmcrWorld& w = sim.world();
  // The server's CONFIRM_LINK never reaches the client.
  w.fabric().SetLink(w.host(1), w.host(0), LinkMode::kDrop);
  sim.Start();
  RunUntilDecided(sim);
  ASSERT_EQ(sim.conn(kClient).mode(), Mode::kTcp);
  ASSERT_EQ(sim.conn(kServer).mode(), Mode::kTcp);
  ASSERT_TRUE(sim.side(kServer).fallback.has_value());
  ASSERT_TRUE(sim.side(kClient).fallback.has_value());
  EXPECT_EQ(sim.side(kServer).fallback->local_reason, wire::kReasonTimeoutCl)
      << wire::FormatReason(sim.side(kServer).fallback->local_reason);
  const engine::Fallback& cf = *sim.side(kClient).fallback;
  EXPECT_TRUE(cf.local_reason == wire::kReasonTimeoutCl ||
              cf.peer_reason == wire::kReasonTimeoutCl)
      << wire::FormatReason(cf.local_reason) << " / "
      << wire::FormatReason(cf.peer_reason);
  // Every app byte after the CLC is the app's, both ways.
  sim.TcpAppWrite(kServer, Bytes("server-first"));
  sim.Pump();
  EXPECT_EQ(Str(sim.TcpAppRead(kClient)), "server-first");
  sim.TcpAppWrite(kClient, Bytes("client-next"));
  sim.Pump();
  EXPECT_EQ(Str(sim.TcpAppRead(kServer)), "client-next");
  EXPECT_EQ(sim.BuffersInUse(), 0u);
  // Both groups are gone once their QPs drained.
  w.fabric().SetLink(w.host(1), w.host(0), LinkMode::kPass);
  RunWorldFor(w, 10s);
  EXPECT_TRUE(sim.registry(kClient).Groups().empty());
  EXPECT_TRUE(sim.registry(kServer).Groups().empty());
}

// A reuse Accept for a group the client does not have (another process
// proposed our group's ID: SMCR.md §3.3) -> Decline SYNCERR, out of sync.
TEST(SimSmcrReuse, ReuseAcceptForAnUnknownGroupDeclinesSyncErr) {
  SmcrWorld w(7);
  const int a = w.AddProcess(0), srv = w.AddProcess(1), b = w.AddProcess(0);
  SimOptions o = SimPair::SmcrOptions();
  o.world = &w;
  o.client_process = a;
  o.server_process = srv;
  SimPair first(o);
  Connect(first);
  SimOptions ob = o;
  ob.client_process = b;
  ob.client_system_id = first.side(kClient).smcr_link->local_system_id;
  SimPair second(ob);
  second.Start();
  RunUntilDecided(second);
  ASSERT_EQ(second.conn(kClient).mode(), Mode::kTcp);
  ASSERT_EQ(second.conn(kServer).mode(), Mode::kTcp);
  EXPECT_EQ(second.side(kClient).fallback->local_reason, wire::kReasonSyncErr);
  EXPECT_EQ(second.side(kServer).fallback->peer_reason, wire::kReasonSyncErr);
  // The Decline on the wire: reason 0x04000000 and the out-of-sync bit.
  ASSERT_FALSE(second.side(kClient).clc_bytes.empty());
  const std::vector<std::byte>& d = second.side(kClient).clc_bytes.back();
  ASSERT_GE(d.size(), 20u);
  EXPECT_EQ(uint8_t(d[4]), uint8_t(wire::ClcType::kDecline));
  EXPECT_EQ(uint8_t(d[7]) & 0x08, 0x08);
  EXPECT_EQ((uint32_t(d[16]) << 24) | (uint32_t(d[17]) << 16) |
                (uint32_t(d[18]) << 8) | uint32_t(d[19]),
            wire::kReasonSyncErr);
  second.TcpAppWrite(kClient, Bytes("tcp-after-syncerr"));
  second.Pump();
  EXPECT_EQ(Str(second.TcpAppRead(kServer)), "tcp-after-syncerr");
  second.TcpAppWrite(kServer, Bytes("and-back"));
  second.Pump();
  EXPECT_EQ(Str(second.TcpAppRead(kClient)), "and-back");
  EXPECT_TRUE(w.registry(b).Groups().empty());
}

// ---- link-group reuse ----

TEST(SimSmcrReuse, TenSequentialConnectionsShareOneGroupOneRkeyPairEach) {
  SmcrWorld w(3);
  SimOptions o = SimPair::SmcrOptions();
  o.world = &w;
  o.client_process = w.AddProcess(0);
  o.server_process = w.AddProcess(1);
  std::optional<uint32_t> cid, sid;
  for (int i = 0; i < 10; ++i) {
    SimPair sim(o);
    Connect(sim);
    EXPECT_EQ(sim.side(kClient).smcr_link->first_contact, i == 0) << i;
    EXPECT_EQ(sim.side(kServer).smcr_link->first_contact, i == 0) << i;
    if (i == 0) {
      cid = sim.smcr_conn(kClient).lgr_id();
      sid = sim.smcr_conn(kServer).lgr_id();
    }
    EXPECT_EQ(sim.smcr_conn(kClient).lgr_id(), cid) << i;
    EXPECT_EQ(sim.smcr_conn(kServer).lgr_id(), sid) << i;
    PingPong(sim, "conn" + std::to_string(i));
    CloseBoth(sim);
    EXPECT_EQ(sim.BuffersInUse(), 0u);
  }
  for (int p : {o.client_process, o.server_process}) {
    const std::vector<LgrInfo> g = w.registry(p).Groups();
    ASSERT_EQ(g.size(), 1u);
    EXPECT_EQ(g[0].state, LgrState::kActive);
    EXPECT_EQ(g[0].conns, 0u);
    // The first connection's RMB came with first contact; each of the 9
    // others was announced (CONFIRM_RKEY) and all 10 withdrawn
    // (DELETE_RKEY), one pair per connection, each way.
    EXPECT_EQ(g[0].confirm_rkey_sent, 9u);
    EXPECT_EQ(g[0].confirm_rkey_received, 9u);
    EXPECT_EQ(g[0].delete_rkey_sent, 10u);
    EXPECT_EQ(g[0].delete_rkey_received, 10u);
  }
  EXPECT_TRUE(w.fabric().misuse().empty());
}

TEST(SimSmcrReuse, TwoProcessesGetTwoGroupsAndNoSyncErr) {
  SmcrWorld w(4);
  const int a = w.AddProcess(0), b = w.AddProcess(0), srv = w.AddProcess(1);
  auto opts = [&](int client) {
    SimOptions o = SimPair::SmcrOptions();
    o.world = &w;
    o.client_process = client;
    o.server_process = srv;
    return o;
  };
  for (int round = 0; round < 3; ++round) {
    SimPair pa(opts(a)), pb(opts(b));
    pa.Start();
    pb.Start();
    pa.Pump();
    pb.Pump();
    pa.Pump();
    for (SimPair* p : {&pa, &pb}) {
      ASSERT_EQ(p->conn(kClient).mode(), Mode::kSmc) << round;
      ASSERT_EQ(p->conn(kServer).mode(), Mode::kSmc) << round;
      EXPECT_FALSE(p->side(kClient).fallback.has_value());
      EXPECT_EQ(p->side(kClient).smcr_link->first_contact, round == 0);
    }
    PingPong(pa, "a" + std::to_string(round));
    PingPong(pb, "b" + std::to_string(round));
    EXPECT_NE(pa.smcr_conn(kServer).lgr_id(), pb.smcr_conn(kServer).lgr_id());
    CloseBoth(pa);
    CloseBoth(pb);
  }
  const std::vector<LgrInfo> s = w.registry(srv).Groups();
  ASSERT_EQ(s.size(), 2u);
  const std::vector<LgrInfo> ga = w.registry(a).Groups();
  const std::vector<LgrInfo> gb = w.registry(b).Groups();
  ASSERT_EQ(ga.size(), 1u);
  ASSERT_EQ(gb.size(), 1u);
  EXPECT_NE(ga[0].system_id, gb[0].system_id);
  // Each server group is keyed by one process's system ID.
  std::set<engine::SystemId> peers{s[0].peer_system_id, s[1].peer_system_id};
  EXPECT_EQ(peers,
            (std::set<engine::SystemId>{ga[0].system_id, gb[0].system_id}));
  for (const LgrInfo& g : s) EXPECT_EQ(g.state, LgrState::kActive);
}

// ---- a dead peer: an error, never a hang ----

TEST(SimSmcrPeer, KilledQpAbortsBothEndsNotAHang) {
  SimPair sim(SimPair::SmcrOptions());
  Connect(sim);
  SmcrWorld& w = sim.world();
  dev::rdma::Qp* qp =
      sim.registry(kClient).QpForTest(*sim.smcr_conn(kClient).lgr_id());
  ASSERT_NE(qp, nullptr);
  w.fabric().Kill(*qp);  // the client's QP died, its process did not
  EXPECT_EQ(sim.Send(kServer, Bytes("into the void")), 13u);
  RunUntilError(sim, kServer);
  // The client's group ended under it: ECONNABORTED, and its abort
  // reaches the server (a reset), unless the server's own link failure
  // came first (ECONNABORTED).
  EXPECT_EQ(sim.conn(kClient).RecvState().error, ECONNABORTED);
  const int err = sim.conn(kServer).RecvState().error;
  EXPECT_TRUE(err == ECONNRESET || err == ECONNABORTED) << err;
  for (int s = 0; s < 2; ++s) {
    sim.Close(s);
    sim.Pump();
    EXPECT_EQ(sim.conn(s).close_state(), CloseState::kClosed);
  }
  EXPECT_EQ(sim.BuffersInUse(), 0u);
}

// The peer's process is gone (or hangs) and its TCP socket says nothing:
// the link tells. A sender learns from the RC retries (~1.1 s)...
TEST(SimSmcrPeer, GoneProcessAbortsTheSenderNotAHang) {
  SimPair sim(SimPair::SmcrOptions());
  Connect(sim);
  SmcrWorld& w = sim.world();
  sim.Freeze(kClient);
  w.fabric().KillDevice(w.host(0));
  const engine::TimePoint t0 = w.now();
  EXPECT_EQ(sim.Send(kServer, Bytes("into the void")), 13u);
  RunUntilError(sim, kServer);
  EXPECT_EQ(sim.conn(kServer).RecvState().error, ECONNABORTED);
  EXPECT_LT(w.now() - t0, engine::Duration(3s));
}

// ...an idle one from its TEST_LINK (30 s idle, 2 s for the answer).
TEST(SimSmcrPeer, GoneProcessIsFoundByTestLinkOnAnIdleConnection) {
  SimPair sim(SimPair::SmcrOptions());
  Connect(sim);
  SmcrWorld& w = sim.world();
  sim.Freeze(kClient);
  w.fabric().KillDevice(w.host(0));
  const engine::TimePoint t0 = w.now();
  RunUntilError(sim, kServer);
  EXPECT_EQ(sim.conn(kServer).RecvState().error, ECONNABORTED);
  EXPECT_LT(w.now() - t0, engine::Duration(35s));
  EXPECT_GE(w.now() - t0, engine::Duration(30s));
}

}  // namespace
}  // namespace usmc::runtime
