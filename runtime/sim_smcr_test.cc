// SMC-R at the runtime level: engines through the production executor and
// the link-group registry (runtime/lgr_registry.h) over SimRdma. The data
// and close tests shared with SMC-D are in sim_test.cc (parameterised);
// here: what only SMC-R has (link groups, LLC deadlines with no app call,
// reuse, memory regions, a dead or hostile peer).
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "runtime/sim_pair.h"
#include "runtime/smcr_progress.h"
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

// A pair over SMC-R in world `w`, its client in process `client`, its
// server in `server` (SmcrWorld::AddProcess).
SimOptions InWorld(SmcrWorld& w, int client, int server) {
  SimOptions o = SimPair::SmcrOptions();
  o.world = &w;
  o.client_process = client;
  o.server_process = server;
  return o;
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

// ---- without a registry (no RDMA device): a loud refusal ----

class RecordingTcp final : public TcpSide {
 public:
  void SendClc(std::span<const std::byte>) override {}
  void ConsumeClc(size_t) override {}
  void ResetTcp() override { reset = true; }
  void CloseTcp() override {}
  bool reset = false;
};

TEST(SmcrExecutor, WithoutARegistrySmcrActionsFailTheConnectionLoudly) {
  dev::SimDevice device(1);
  RecordingTcp tcp;
  Executor x(device.endpoint(0), tcp, ExecutorOptions{});
  engine::Actions a;
  a.push_back(engine::SmcrJoinLgr{});
  std::vector<engine::Event> answers;
  x.Execute(a, answers);
  EXPECT_EQ(x.error(), EPROTONOSUPPORT);
  EXPECT_TRUE(x.aborted());
  EXPECT_TRUE(tcp.reset);
  EXPECT_TRUE(answers.empty());  // nobody pretends to answer
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

// The same with the production progress thread driving the client's
// registry: the test thread only plays the fabric and the peer, the
// client's engine gets nothing.
TEST(SimSmcrLlc, ProgressThreadAnswersTestLinkWhileTheAppSleeps) {
  SimPair sim(SimPair::SmcrOptions());
  Connect(sim);
  SmcrWorld& w = sim.world();
  const uint32_t sid = *sim.smcr_conn(kServer).lgr_id();
  w.Freeze(0);  // the client's registry: the thread's from now on
  std::mutex world_lock;
  SmcrProgressOptions po;
  po.max_sleep = std::chrono::milliseconds(2);
  po.world_lock = &world_lock;
  SmcrProgress progress(sim.registry(kClient), po);
  // Simulated time moves only once the fabric, the peer and the thread
  // are all idle at this instant.
  auto thread_round = [&] {
    const uint64_t r0 = progress.rounds();
    progress.Kick();
    for (int k = 0; k < 5000 && progress.rounds() < r0 + 2; ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return progress.rounds() >= r0 + 2;
  };
  const engine::TimePoint end = w.now() + 95s;
  for (int i = 0; i < 20000; ++i) {
    bool moved = true;
    for (int k = 0; k < 100 && moved; ++k) {
      const uint64_t busy0 = progress.busy();
      {
        std::lock_guard<std::mutex> l(world_lock);
        moved = false;
        for (int j = 0; j < 10000 && w.Progress(); ++j) moved = true;
      }
      ASSERT_TRUE(thread_round()) << "the progress thread stopped";
      moved = moved || progress.busy() != busy0;
    }
    std::lock_guard<std::mutex> l(world_lock);
    if (w.now() >= end) break;
    std::optional<engine::TimePoint> next = w.NextDeadline();
    std::optional<engine::TimePoint> c = sim.registry(kClient).NextDeadline();
    if (c && (!next || *c < *next)) next = c;
    w.clock().Set(next ? std::min(std::max(*next, w.now() + 1ns), end) : end);
  }
  progress.Stop();
  const std::vector<LgrInfo> sg = sim.registry(kServer).Groups();
  const LgrInfo* s = GroupById(sg, sid);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->state, LgrState::kActive);
  EXPECT_GE(s->counters.test_link_sent, 1u);
  const std::vector<LgrInfo> cg = sim.registry(kClient).Groups();
  ASSERT_EQ(cg.size(), 1u);
  EXPECT_EQ(cg[0].state, LgrState::kActive);
  EXPECT_FALSE(sim.smcr_conn(kServer).HasEvents());
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
// proposed our group's ID: SMCR.md §3.3) -> Decline SYNCERR, out of sync,
// and the server ends that group.
TEST(SimSmcrReuse, ReuseAcceptForAnUnknownGroupDeclinesSyncErr) {
  SmcrWorld w(7);
  const int a = w.AddProcess(0), srv = w.AddProcess(1), b = w.AddProcess(0);
  SimOptions o = InWorld(w, a, srv);
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
  // The server ends the group it offered for reuse, with its connections,
  // as the kernel does on an out-of-sync Decline (sync_err): the first
  // connection learns it at both ends, never a hang.
  RunUntilError(first, kServer);
  EXPECT_EQ(first.conn(kServer).RecvState().error, ECONNABORTED);
  RunUntilError(first, kClient);
  const int err = first.conn(kClient).RecvState().error;
  EXPECT_TRUE(err == ECONNRESET || err == ECONNABORTED) << err;
  for (const LgrInfo& g : w.registry(srv).Groups()) {
    EXPECT_EQ(g.state, LgrState::kEnded) << g.id;
  }
}

// ---- link-group reuse ----

TEST(SimSmcrReuse, TenSequentialConnectionsShareOneGroupOneRkeyPairEach) {
  SmcrWorld w(3);
  const int c = w.AddProcess(0), srv = w.AddProcess(1);
  const SimOptions o = InWorld(w, c, srv);
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

// SMC-Rv2 between two usmc peers over IPv6 GIDs (fd00::1, fd00::2; the
// kernel has none): the handshake, the LLC first contact, data both ways,
// and a second connection that finds the group by the peer's IPv6 GID.
TEST(SimSmcrIpv6, TwoUsmcPeersRunSmcrOverIpv6Gids) {
  SmcrWorld w(5, {}, /*ipv6_gids=*/true);
  const wire::ClcGid g1 = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const wire::ClcGid g2 = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  ASSERT_EQ(w.host(0).attr().gid, g1);
  const int c = w.AddProcess(0), srv = w.AddProcess(1);
  const SimOptions o = InWorld(w, c, srv);
  std::optional<uint32_t> cid;
  for (int i = 0; i < 2; ++i) {
    SimPair sim(o);
    Connect(sim);
    const engine::SmcrLink& cl = *sim.side(kClient).smcr_link;
    const engine::SmcrLink& sl = *sim.side(kServer).smcr_link;
    EXPECT_EQ(cl.first_contact, i == 0);
    EXPECT_EQ(cl.local_gid, g1);
    EXPECT_EQ(cl.peer_gid, g2);
    EXPECT_EQ(sl.local_gid, g2);
    EXPECT_EQ(sl.peer_gid, g1);
    if (i == 0) cid = sim.smcr_conn(kClient).lgr_id();
    EXPECT_EQ(sim.smcr_conn(kClient).lgr_id(), cid);
    PingPong(sim, "v6-" + std::to_string(i));
    CloseBoth(sim);
  }
  const std::vector<LgrInfo> cg = w.registry(c).Groups();
  ASSERT_EQ(cg.size(), 1u);
  EXPECT_EQ(cg[0].peer_gid, g2);
  EXPECT_TRUE(w.fabric().misuse().empty());
}

TEST(SimSmcrReuse, TwoProcessesGetTwoGroupsAndNoSyncErr) {
  SmcrWorld w(4);
  const int a = w.AddProcess(0), b = w.AddProcess(0), srv = w.AddProcess(1);
  for (int round = 0; round < 3; ++round) {
    SimPair pa(InWorld(w, a, srv)), pb(InWorld(w, b, srv));
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
    // Appended, not "a" + to_string(): gcc 12 at -O3 warns a false
    // -Wrestrict on the insert that operator+ inlines to.
    std::string ta = "a", tb = "b";
    ta += std::to_string(round);
    tb += std::to_string(round);
    PingPong(pa, ta);
    PingPong(pb, tb);
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

// ---- first contact: CONFIRM_LINK before our StartLink ----

// The client writes its CLC Confirm and only then starts its link
// (SmcrStartLink -> LgrQpReady). In a process the progress thread runs
// meanwhile: a fast server (the kernel) answers the Confirm with
// CONFIRM_LINK, and that SEND may be polled while the client's group still
// waits for its QP. Seen in the lab (usmc-kernel-client, usmc-kernel-many
// under load): the group ignored it, the link never came up and both ends
// fell back with TIMEOUT_CL 4 s later (the kernel reading usmc's Decline
// as data). The registry keeps what arrives before LgrQpReady and feeds it
// after.
TEST(SimSmcrFirstContact, ConfirmLinkPolledBeforeTheClientStartsItsLink) {
  SimOptions o = SimPair::SmcrOptions();
  SimPair* self = nullptr;
  int confirms = 0;
  o.on_clc_sent = [&](int side) {
    if (side != kClient || self == nullptr) return;
    const auto& sent = self->side(kClient).clc_bytes;
    // The client's second CLC message is its Confirm (after the
    // Proposal): let the server and the progress threads run now.
    if (sent.size() == 2 && ++confirms == 1) self->PumpOthers(kClient);
  };
  SimPair sim(o);
  self = &sim;
  sim.Start();
  RunUntilDecided(sim);
  ASSERT_EQ(confirms, 1) << "the hook never ran at the Confirm";
  ASSERT_EQ(sim.conn(kClient).mode(), Mode::kSmc)
      << "client fell back: "
      << (sim.side(kClient).fallback ? sim.side(kClient).fallback->local_reason
                                     : 0);
  ASSERT_EQ(sim.conn(kServer).mode(), Mode::kSmc);
  PingPong(sim, "early");
}

// ---- process exit: DELETE_LINK ALL, then the peer's own ----

// The kernel answers a DELETE_LINK ALL with its own DELETE_LINK ALL and
// waits (SMC_LLC_WAIT_TIME, 2 s) for that send to complete before it frees
// the group. Seen in the lab (usmc-kernel-client): usmc destroyed its QP as
// soon as its own DELETE_LINK completed, the kernel's reply then found no
// QP, rxe retried it and the kernel's link group stayed 2 s instead of
// ~0.2 s. The group that terminates keeps its QP, receiving, until the
// peer's DELETE_LINK arrived (or llc_timeout passed).
TEST(SimSmcrPeer, TerminateAllKeepsTheQpUntilThePeersDeleteLinkArrived) {
  for (int ender = 0; ender < 2; ++ender) {
    SimPair sim(SimPair::SmcrOptions());
    Connect(sim);
    PingPong(sim, "x");
    CloseBoth(sim);
    const dev::rdma::SimRdmaStats before = sim.world().fabric().stats();
    sim.registry(ender).TerminateAll();
    RunWorldFor(sim.world(), 10s);
    const dev::rdma::SimRdmaStats& after = sim.world().fabric().stats();
    EXPECT_EQ(after.discarded, before.discarded) << "ender " << ender;
    EXPECT_EQ(after.ack_timeouts, before.ack_timeouts) << "ender " << ender;
    EXPECT_EQ(after.retransmits, before.retransmits) << "ender " << ender;
    EXPECT_TRUE(sim.registry(kClient).Groups().empty()) << "ender " << ender;
    EXPECT_TRUE(sim.registry(kServer).Groups().empty()) << "ender " << ender;
  }
}

// A peer that never answers costs the ending group llc_timeout at most.
TEST(SimSmcrPeer, TerminateAllFreesTheGroupWhenThePeerNeverAnswers) {
  SimPair sim(SimPair::SmcrOptions());
  Connect(sim);
  CloseBoth(sim);
  sim.world().Freeze(1);  // the server's process hangs
  sim.registry(kClient).TerminateAll();
  RunWorldFor(sim.world(), engine::kLlcWaitTime + 1s);
  EXPECT_TRUE(sim.registry(kClient).Groups().empty());
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

// ---- memory exposure (D3, SMCR.md §4) ----

struct Range {
  uint64_t lo = 0, hi = 0;  // [lo, hi)
};

// Every mapping of this process (/proc/self/maps).
// The readable mappings of this process above 4 GiB. Unreadable ones
// (guard pages, reservations) hold nothing a message could point at;
// mappings of a terabyte or more are only ever a sanitizer's shadow (ASan's
// covers most of the address space, so shifted bytes of any pointer land in
// it); and below 4 GiB lies only ASan's low shadow in these PIE test
// binaries, where any 32-bit field with zeros beside it (a length, an
// rkey) would look like an address.
std::vector<Range> ProcessMappings() {
  constexpr uint64_t kShadowSize = uint64_t{1} << 40;
  constexpr uint64_t kLow = uint64_t{1} << 32;
  std::vector<Range> out;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    Range r;
    char dash = 0;
    std::string perms;
    std::istringstream in(line);
    in >> std::hex >> r.lo >> dash >> r.hi >> perms;
    if (dash == '-' && r.hi > r.lo && r.lo >= kLow &&
        r.hi - r.lo < kShadowSize && !perms.empty() && perms[0] == 'r')
      out.push_back(r);
  }
  return out;
}

// Offsets where any 8 bytes of `msg`, read big- or little-endian, are an
// address inside one of `ranges`.
std::vector<size_t> PointersIn(std::span<const std::byte> msg,
                               const std::vector<Range>& ranges) {
  std::vector<size_t> hits;
  for (size_t i = 0; i + 8 <= msg.size(); ++i) {
    uint64_t be = 0, le = 0;
    for (size_t k = 0; k < 8; ++k) {
      be = (be << 8) | uint8_t(msg[i + k]);
      le |= uint64_t(uint8_t(msg[i + k])) << (8 * k);
    }
    for (const Range& r : ranges) {
      if ((be >= r.lo && be < r.hi) || (le >= r.lo && le < r.hi)) {
        hits.push_back(i);
        break;
      }
    }
  }
  return hits;
}

// For a failure message: each hit's offset, value and the mapping it is in.
std::string DescribeHits(std::span<const std::byte> msg,
                         const std::vector<Range>& ranges) {
  std::ostringstream out;
  for (size_t i : PointersIn(msg, ranges)) {
    uint64_t be = 0, le = 0;
    for (size_t k = 0; k < 8; ++k) {
      be = (be << 8) | uint8_t(msg[i + k]);
      le |= uint64_t(uint8_t(msg[i + k])) << (8 * k);
    }
    for (const Range& r : ranges) {
      for (uint64_t v : {be, le}) {
        if (v >= r.lo && v < r.hi)
          out << " @" << std::dec << i << ": 0x" << std::hex << v << " in [0x"
              << r.lo << ",0x" << r.hi << ")";
      }
    }
  }
  return out.str();
}

TEST(SimSmcrMemory, PointerScanFindsAPlantedAddress) {
  // The scanner itself: a heap address planted in a message is found.
  auto heap = std::make_unique<int>(1);
  const uint64_t p = reinterpret_cast<uint64_t>(heap.get());
  std::vector<std::byte> msg(44, std::byte{0});
  for (int k = 0; k < 8; ++k)
    msg[13 + k] = std::byte(uint8_t(p >> (56 - 8 * k)));
  EXPECT_EQ(PointersIn(msg, ProcessMappings()), std::vector<size_t>{13});
}

TEST(SimSmcrMemory, EachRmbIsItsOwnRegionAndNoProcessAddressLeaves) {
  LgrRegistryOptions ro;
  ro.record_sends = true;
  SmcrWorld w(5, ro);
  const int c = w.AddProcess(0), srv = w.AddProcess(1);
  const SimOptions o = InWorld(w, c, srv);
  auto p1 = std::make_unique<SimPair>(o);
  Connect(*p1);
  auto p2 = std::make_unique<SimPair>(o);
  Connect(*p2);  // reuse: CONFIRM_RKEY both ways
  ASSERT_FALSE(p2->side(kClient).smcr_link->first_contact);
  PingPong(*p1, "one");
  PingPong(*p2, "two");
  std::set<uint64_t> iovas;
  std::set<uint32_t> rkeys;
  std::vector<Range> own;  // every region's process memory
  for (SimPair* p : {p1.get(), p2.get()}) {
    for (int s = 0; s < 2; ++s) {
      const std::vector<MrRecord> regions = p->smcr_conn(s).Regions();
      ASSERT_EQ(regions.size(), 2u);
      for (const MrRecord& r : regions) {
        // The RMB: remote write, nothing else; the sndbuf: local only.
        EXPECT_EQ(r.access,
                  r.rmb ? dev::rdma::kLocalWrite | dev::rdma::kRemoteWrite
                        : dev::rdma::kLocalWrite);
        EXPECT_EQ(r.iova % 4096, 0u);
        EXPECT_NE(r.iova, r.addr);
        EXPECT_TRUE(iovas.insert(r.iova).second) << "IOVA reused";
        own.push_back({r.addr, r.addr + r.length});
        if (r.rmb) {
          EXPECT_TRUE(rkeys.insert(r.rkey).second) << "rkey reused";
          EXPECT_EQ(r.length, 64u * 1024);
          // What the peer was told is the region's IOVA and rkey.
          const engine::SmcrLink& peer = *p->side(1 - s).smcr_link;
          EXPECT_EQ(peer.peer_vaddr, r.iova);
          EXPECT_EQ(peer.peer_rkey, r.rkey);
        }
      }
    }
  }
  // The device agrees (what a peer can reach), per host.
  for (int h = 0; h < 2; ++h) {
    for (const dev::rdma::SimMrInfo& mr : w.fabric().RegisteredMrs(w.host(h))) {
      if (mr.access & dev::rdma::kRemoteWrite) {
        EXPECT_TRUE(rkeys.count(mr.rkey)) << "a remote-writable region that "
                                             "is no connection's RMB";
        EXPECT_EQ(mr.access, dev::rdma::kLocalWrite | dev::rdma::kRemoteWrite);
      }
      EXPECT_EQ(mr.access & dev::rdma::kRemoteRead, 0u);
    }
  }
  // Deregistered at connection end: p1's RMB keys are gone from the device.
  const std::vector<MrRecord> gone = [&] {
    std::vector<MrRecord> v = p1->smcr_conn(kClient).Regions();
    std::vector<MrRecord> s = p1->smcr_conn(kServer).Regions();
    v.insert(v.end(), s.begin(), s.end());
    return v;
  }();
  CloseBoth(*p1);
  EXPECT_TRUE(p1->smcr_conn(kClient).Regions().empty());
  EXPECT_TRUE(p1->smcr_conn(kServer).Regions().empty());
  for (int h = 0; h < 2; ++h) {
    for (const dev::rdma::SimMrInfo& mr : w.fabric().RegisteredMrs(w.host(h)))
      for (const MrRecord& r : gone) EXPECT_NE(mr.rkey, r.rkey);
  }
  // No process address in any CLC or LLC (or CDC) message we sent: not the
  // RMBs', the sndbufs', the heap's, the stack's, any mapping's.
  std::vector<Range> ranges = ProcessMappings();
  ranges.insert(ranges.end(), own.begin(), own.end());
  int stack_var = 0;
  const uint64_t stack = reinterpret_cast<uint64_t>(&stack_var);
  ranges.push_back({stack & ~uint64_t{0xfff}, (stack | 0xfff) + 1});
  size_t clc = 0, sends = 0, llc = 0;
  for (SimPair* p : {p1.get(), p2.get()}) {
    for (int s = 0; s < 2; ++s) {
      for (const std::vector<std::byte>& m : p->side(s).clc_bytes) {
        ++clc;
        EXPECT_TRUE(PointersIn(m, ranges).empty())
            << "CLC type " << int(m[4])
            << " carries a process address:" << DescribeHits(m, ranges);
      }
    }
  }
  for (int proc : {o.client_process, o.server_process}) {
    for (const std::vector<std::byte>& m : w.registry(proc).RecordedSends()) {
      ++sends;
      llc += uint8_t(m[0]) != 0xFE;
      EXPECT_TRUE(PointersIn(m, ranges).empty())
          << "SEND type " << int(m[0])
          << " carries a process address:" << DescribeHits(m, ranges);
    }
  }
  // CLC: 2 x (Proposal, Accept, Confirm); LLC: CONFIRM_LINK pair,
  // CONFIRM_RKEY pairs, DELETE_RKEY pairs.
  EXPECT_EQ(clc, 6u);
  EXPECT_GE(llc, 2u + 4u + 4u);
  EXPECT_GT(sends, llc);
}

// A write outside a registered RMB fails at the device and ends only the
// group it came over: the process and its other groups carry on.
TEST(SimSmcrMemory, RemoteWriteOutsideAnRmbEndsOnlyThatGroup) {
  SmcrWorld w(6);
  const int a = w.AddProcess(0), b = w.AddProcess(0), srv = w.AddProcess(1);
  SimOptions o = InWorld(w, a, srv);
  SimPair pa(o);
  o.client_process = b;
  SimPair pb(o);
  Connect(pa);
  Connect(pb);
  // Process a turns hostile: 8 bytes just past the server RMB it knows,
  // with that RMB's rkey.
  const engine::SmcrLink& l = *pa.side(kClient).smcr_link;
  dev::rdma::Qp* qp = w.registry(a).QpForTest(*pa.smcr_conn(kClient).lgr_id());
  ASSERT_NE(qp, nullptr);
  const uint64_t payload = 0x4141414141414141ULL;
  dev::rdma::SendWr wr;
  wr.wr_id = 0xbad;
  wr.opcode = dev::rdma::WrOpcode::kRdmaWrite;
  wr.flags = dev::rdma::kSendSignaled | dev::rdma::kSendInline;
  wr.sg[0] = {reinterpret_cast<uint64_t>(&payload), 8, 0};
  wr.num_sge = 1;
  wr.remote_addr = l.peer_vaddr + l.peer_rmb_size;
  wr.rkey = l.peer_rkey;
  ASSERT_TRUE(qp->PostSend({&wr, 1}).ok());
  RunUntilError(pa, kServer);
  EXPECT_GE(w.fabric().stats().access_naks, 1u);
  EXPECT_EQ(pa.conn(kServer).RecvState().error, ECONNABORTED);
  const std::vector<LgrInfo> gs = w.registry(srv).Groups();
  const LgrInfo* bad = GroupById(gs, *pa.smcr_conn(kServer).lgr_id());
  if (bad != nullptr) {
    EXPECT_EQ(bad->state, LgrState::kEnded);
  }
  // b's connection and group on the same server process carry on.
  const LgrInfo* good = GroupById(gs, *pb.smcr_conn(kServer).lgr_id());
  ASSERT_NE(good, nullptr);
  EXPECT_EQ(good->state, LgrState::kActive);
  EXPECT_EQ(pb.conn(kServer).RecvState().error, 0);
  PingPong(pb, "still-alive");
  // And the server takes new connections from a.
  pa.Close(kServer);
  pa.Pump();
  o.client_process = a;
  SimPair again(o);
  Connect(again);
  PingPong(again, "new-group");
}

// ---- the connection's wakeup (SmcrConn::Wait, WaitFd) ----

bool Readable(int fd) {
  pollfd p = {fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

void DrainWake(SmcrConn& c) {
  (void)c.TakeEvents();
  (void)c.Drain(false, false);
}

// poll/epoll see SMC-R readiness as SMC-D's: the connection's fd is
// readable exactly when the link queued something for it.
TEST(SimSmcrWait, WaitFdIsReadableOnceTheLinkQueuedACdc) {
  SimPair sim(SimPair::SmcrOptions());
  Connect(sim);
  SmcrConn& srv = sim.smcr_conn(kServer);
  ASSERT_GE(srv.WaitFd(), 0);
  DrainWake(srv);
  EXPECT_FALSE(Readable(srv.WaitFd()));
  ASSERT_EQ(sim.Send(kClient, Bytes("ring")), 4u);
  while (sim.world().Progress()) {
  }
  EXPECT_TRUE(Readable(srv.WaitFd()));
  std::vector<engine::Event> ev = srv.TakeEvents();
  ASSERT_FALSE(ev.empty());
  EXPECT_TRUE(std::holds_alternative<engine::SmcrCdcReceived>(ev.back()));
  (void)srv.Drain(false, false);
  EXPECT_FALSE(Readable(srv.WaitFd()));
}

// A blocked Recv sleeps in Wait until the CDC the progress side queues:
// the caller is asleep (it asked once) before the peer sends.
TEST(SimSmcrWait, WaitSleepsUntilTheCdcArrivesFromAnotherThread) {
  SimPair sim(SimPair::SmcrOptions());
  Connect(sim);
  SmcrConn& srv = sim.smcr_conn(kServer);
  DrainWake(srv);
  std::atomic<int> asked{0};
  std::thread peer([&] {
    for (int i = 0; i < 20000 && asked.load() == 0; ++i)
      std::this_thread::sleep_for(100us);
    // The waiter has looked once and found nothing: now the CDC.
    std::this_thread::sleep_for(5ms);
    ASSERT_EQ(sim.Send(kClient, Bytes("wake")), 4u);
    for (int i = 0; i < 1000 && sim.world().Progress(); ++i) {
    }
  });
  auto ready = [&] {
    asked.fetch_add(1);
    return srv.HasEvents();
  };
  const dev::WaitResult r = srv.Wait(ready, 10s, {});
  peer.join();
  EXPECT_EQ(r, dev::WaitResult::kReady);
  EXPECT_GE(asked.load(), 2);  // it slept between two looks
  bool cdc = false;
  for (const engine::Event& e : srv.TakeEvents())
    cdc = cdc || std::holds_alternative<engine::SmcrCdcReceived>(e);
  EXPECT_TRUE(cdc);
}

// ---- the peer's TCP ends before its close CDC (issue 19) ----

// The kernel closes its CLC socket right behind posting its close CDC
// (SO_LINGER 0: a reset), and so does a usmc peer: the TCP end can
// overtake the CDC and the data still in the RDMA queue. It only starts
// the wait for them: every byte, then EOF (before: ECONNRESET at once,
// the held bytes lost).
TEST(SimSmcrClose, TcpResetBeforeTheCloseCdcReadsEveryByteThenEof) {
  SimPair sim(SimPair::SmcrOptions());
  Connect(sim);
  SmcrWorld& w = sim.world();
  ASSERT_EQ(sim.Send(kClient, Bytes("in the RMB; ")), 12u);
  sim.Pump();
  // The client's direction is slow: its last bytes and its close stay on
  // the way while its TCP reset arrives.
  w.fabric().SetLink(w.host(0), w.host(1), LinkMode::kHold);
  ASSERT_EQ(sim.Send(kClient, Bytes("still on the wire")), 17u);
  sim.Close(kClient);
  sim.device().pipe(kClient).Close();
  sim.Pump();
  ASSERT_TRUE(sim.side(kServer).eof_delivered);  // the TCP end came first
  EXPECT_EQ(sim.conn(kServer).RecvState().error, 0);
  EXPECT_FALSE(sim.conn(kServer).RecvState().eof);
  EXPECT_TRUE(sim.side(kServer).deadline.has_value());  // bounded
  w.fabric().SetLink(w.host(0), w.host(1), LinkMode::kPass);
  sim.Pump();
  std::vector<std::byte> buf(100);
  ASSERT_EQ(sim.Recv(kServer, buf), 29u);
  EXPECT_EQ(Str(std::span(buf).first(29)), "in the RMB; still on the wire");
  EXPECT_TRUE(sim.conn(kServer).RecvState().eof);
  EXPECT_EQ(sim.conn(kServer).RecvState().error, 0);
  // The close CDC decided: no timer is left to turn it into a reset.
  EXPECT_FALSE(sim.side(kServer).deadline.has_value());
  RunWorldFor(w, 2 * engine::kSmcrPeerCloseWait);
  sim.Pump();
  EXPECT_TRUE(sim.conn(kServer).RecvState().eof);
  EXPECT_EQ(sim.conn(kServer).RecvState().error, 0);
  sim.Close(kServer);
  sim.Pump();
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kClosed);
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kClosed);
  EXPECT_TRUE(sim.side(kServer).errors.empty());
  EXPECT_EQ(sim.BuffersInUse(), 0u);
}

// An abort's CDC behind the reset is still ECONNRESET (after the bytes
// that came before it).
TEST(SimSmcrClose, TcpResetBeforeTheAbortCdcIsEconnreset) {
  SimPair sim(SimPair::SmcrOptions());
  Connect(sim);
  SmcrWorld& w = sim.world();
  ASSERT_EQ(sim.Send(kClient, Bytes("before")), 6u);
  sim.Pump();
  w.fabric().SetLink(w.host(0), w.host(1), LinkMode::kHold);
  sim.Abort(kClient);
  sim.Pump();
  EXPECT_EQ(sim.conn(kServer).RecvState().error, 0);
  w.fabric().SetLink(w.host(0), w.host(1), LinkMode::kPass);
  sim.Pump();
  std::vector<std::byte> buf(100);
  ASSERT_EQ(sim.Recv(kServer, buf), 6u);
  EXPECT_EQ(sim.conn(kServer).RecvState().error, ECONNRESET);
  EXPECT_FALSE(sim.side(kServer).deadline.has_value());
}

// No close CDC ever (the peer's process died with its QP, the link stays
// silent): the bytes already in the RMB, then ECONNRESET once the bound
// passed, woken by the registry's timer alone (no application call: what
// a sleeper in poll/epoll on the connection's fd relies on).
TEST(SimSmcrClose, TcpEndWithoutACloseCdcIsAResetAfterTheBound) {
  SimPair sim(SimPair::SmcrOptions());
  Connect(sim);
  SmcrWorld& w = sim.world();
  ASSERT_EQ(sim.Send(kClient, Bytes("last words")), 10u);
  sim.Pump();
  sim.Freeze(kClient);
  w.fabric().SetLink(w.host(0), w.host(1), LinkMode::kDrop);
  sim.device().pipe(kClient).Close();
  sim.Pump();
  const engine::TimePoint t0 = w.now();
  EXPECT_EQ(sim.conn(kServer).RecvState().error, 0);
  SmcrConn& srv = sim.smcr_conn(kServer);
  DrainWake(srv);
  RunWorldFor(w, engine::kSmcrPeerCloseWait - 1ms);
  EXPECT_FALSE(Readable(srv.WaitFd()));  // not before the bound
  RunWorldFor(w, 1ms);
  EXPECT_TRUE(Readable(srv.WaitFd()));
  sim.Pump();
  EXPECT_EQ(w.now() - t0, engine::Duration(engine::kSmcrPeerCloseWait));
  std::vector<std::byte> buf(100);
  ASSERT_EQ(sim.Recv(kServer, buf), 10u);
  EXPECT_EQ(Str(std::span(buf).first(10)), "last words");
  EXPECT_EQ(sim.conn(kServer).RecvState().error, ECONNRESET);
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kProcessAbort);
  sim.Close(kServer);
  sim.Pump();
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kClosed);
}

// ---- TerminateAll (process exit) ----

// DELETE_LINK orderly: the peer's group ends at once (no timer fires),
// its connections are aborted and woken, and our QP goes once the
// DELETE_LINK left (DrainTerminated, as at process exit).
TEST(SimSmcrTerminate, TerminateAllEndsThePeersGroupAtOnceAndWakesItsConns) {
  SimPair sim(SimPair::SmcrOptions());
  Connect(sim);
  SmcrConn& srv = sim.smcr_conn(kServer);
  DrainWake(srv);
  const engine::TimePoint t0 = sim.world().now();
  sim.registry(kClient).TerminateAll();
  for (int i = 0; i < 1000 && sim.world().Progress(); ++i) {
  }
  EXPECT_EQ(sim.world().now(), t0);  // no timeout was needed
  EXPECT_TRUE(Readable(srv.WaitFd()));
  bool failed = false;
  for (const engine::Event& e : srv.TakeEvents())
    failed = failed || std::holds_alternative<engine::DeviceFailed>(e);
  EXPECT_TRUE(failed);
  for (const LgrInfo& g : sim.registry(kServer).Groups()) {
    EXPECT_EQ(g.state, LgrState::kEnded) << g.id;
  }
  EXPECT_TRUE(sim.registry(kClient).DrainTerminated(0ms));
}

// ---- first contact serialised per peer (SMCR.md §3) ----

// Two connections to one peer started together, their handshakes
// interleaved one event at a time: one link group on each side, the
// second connection joins the first's (before: two groups).
TEST(SimSmcrFirstContact, ConcurrentFirstContactsToOnePeerMakeOneGroup) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    SCOPED_TRACE(seed);
    SmcrWorld w(seed);
    const int cli = w.AddProcess(0), srv = w.AddProcess(1);
    SimOptions o = SimPair::SmcrOptions();
    o.world = &w;
    o.client_process = cli;
    o.server_process = srv;
    SimPair pa(o), pb(o);
    pa.Start();
    pb.Start();
    for (int i = 0; i < 5000; ++i) {
      const size_t n = pa.Pump(seed) + pb.Pump(1);
      if (n == 0 && !w.Progress()) break;
    }
    for (SimPair* p : {&pa, &pb}) {
      ASSERT_EQ(p->conn(kClient).mode(), Mode::kSmc);
      ASSERT_EQ(p->conn(kServer).mode(), Mode::kSmc);
      EXPECT_FALSE(p->side(kClient).fallback.has_value());
    }
    EXPECT_NE(pa.side(kClient).smcr_link->first_contact,
              pb.side(kClient).smcr_link->first_contact);
    EXPECT_EQ(w.registry(cli).Groups().size(), 1u);
    EXPECT_EQ(w.registry(srv).Groups().size(), 1u);
    EXPECT_EQ(pa.smcr_conn(kClient).lgr_id(), pb.smcr_conn(kClient).lgr_id());
    PingPong(pa, "a");
    PingPong(pb, "b");
    CloseBoth(pa);
    CloseBoth(pb);
  }
}

}  // namespace
}  // namespace usmc::runtime
