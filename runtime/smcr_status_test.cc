// SMC-R in the status files: link-group registries (runtime/lgr_registry.h)
// over SimRdma publish their groups and connections through a real
// StatusPublisher, and the reader `usmc ss` uses (runtime/publish_read.cc)
// gives back exactly what the registries report.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "runtime/publish.h"
#include "runtime/sim_pair.h"
#include "runtime/smc_socket.h"

namespace usmc::runtime {
namespace {

namespace fs = std::filesystem;
using engine::Mode;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/usmc-smcr-status-XXXXXX";
    const char* d = mkdtemp(tmpl);
    if (d != nullptr) path_ = d;
  }
  ~TempDir() {
    if (!path_.empty()) fs::remove_all(path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<std::byte> Bytes(std::string_view s) {
  std::vector<std::byte> v(s.size());
  std::memcpy(v.data(), s.data(), s.size());
  return v;
}

void Connect(SimPair& sim) {
  sim.Start();
  sim.Pump();
  ASSERT_EQ(sim.conn(kClient).mode(), Mode::kSmc);
  ASSERT_EQ(sim.conn(kServer).mode(), Mode::kSmc);
}

// Simulated time passes with only the registries running (their TEST_LINK
// keepalives); bounded.
void RunWorldFor(SmcrWorld& w, engine::Duration d) {
  const engine::TimePoint end = w.now() + d;
  for (int i = 0; i < 100000; ++i) {
    while (w.Progress()) {
    }
    const std::optional<engine::TimePoint> next = w.NextDeadline();
    if (!next || *next > end) {
      w.clock().Set(end);
      while (w.Progress()) {
      }
      return;
    }
    w.clock().Set(std::max(*next, w.now() + engine::Duration(1)));
  }
  ADD_FAILURE() << "the world never got to the end";
}

void PingPong(SimPair& sim) {
  std::vector<std::byte> buf(64);
  for (int s = 0; s < 2; ++s) {
    ASSERT_EQ(sim.Send(s, Bytes("ping")), 4u);
    sim.Pump();
    ASSERT_EQ(sim.Recv(1 - s, buf), 4u);
  }
}

std::string State(const ConnRecord& r) {
  return std::string(r.state, strnlen(r.state, sizeof(r.state)));
}

ProcessStatus Read(const StatusPublisher& pub) {
  Result<ProcessStatus> r = ReadStatusFile(pub.path());
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? std::move(r).value() : ProcessStatus{};
}

// The published link group matches the registry's LgrInfo field by field.
void ExpectGroup(const ConnRecord& r, const LgrInfo& g) {
  EXPECT_EQ(r.kind, RecordKind::kLinkGroup);
  EXPECT_EQ(r.mode, ConnMode::kSmcr);
  EXPECT_EQ(r.role, g.role);
  EXPECT_EQ(State(r), engine::ToString(g.state));
  EXPECT_EQ(r.smcr.lgr_id, g.id);
  EXPECT_EQ(r.smcr.qpn, g.qpn);
  EXPECT_EQ(r.smcr.peer_qpn, g.peer_qpn);
  EXPECT_EQ(std::memcmp(r.smcr.peer_gid, g.peer_gid.data(), 16), 0);
  EXPECT_EQ(std::memcmp(r.smcr.system_id, g.system_id.data(), 8), 0);
  EXPECT_EQ(std::memcmp(r.smcr.peer_system_id, g.peer_system_id.data(), 8), 0);
  EXPECT_EQ(r.smcr.conns, g.conns);
  EXPECT_EQ(r.smcr.confirm_rkey_sent, g.confirm_rkey_sent);
  EXPECT_EQ(r.smcr.confirm_rkey_received, g.confirm_rkey_received);
  EXPECT_EQ(r.smcr.delete_rkey_sent, g.delete_rkey_sent);
  EXPECT_EQ(r.smcr.delete_rkey_received, g.delete_rkey_received);
  EXPECT_EQ(r.smcr.llc_sent, g.counters.llc_tx);
  EXPECT_EQ(r.smcr.llc_received, g.counters.llc_rx);
  EXPECT_EQ(r.smcr.test_link_sent, g.counters.test_link_sent);
  EXPECT_EQ(r.smcr.test_link_received, g.counters.test_link_received);
  EXPECT_EQ(r.pid, getpid());
}

// No 8-byte process address or IOVA of a registered region appears in
// the bytes of any published record (the file is readable by `usmc ss`).
void ExpectNoRegionAddress(const ProcessStatus& ps,
                           const std::vector<MrRecord>& regions) {
  std::vector<ConnRecord> all = ps.connections;
  all.insert(all.end(), ps.link_groups.begin(), ps.link_groups.end());
  for (const ConnRecord& r : all) {
    const auto* b = reinterpret_cast<const std::byte*>(&r);
    for (const MrRecord& m : regions) {
      for (uint64_t v : {m.addr, m.iova}) {
        for (size_t i = 0; i + 8 <= sizeof(r); ++i) {
          uint64_t w;
          std::memcpy(&w, b + i, 8);
          EXPECT_NE(w, v) << "record offset " << i;
        }
      }
    }
  }
}

TEST(SmcrStatus, ConnectionsAndGroupsReadBackAsTheRegistryReportsThem) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  Result<StatusPublisher*> pc = StatusPublisher::Create(dir.path());
  Result<StatusPublisher*> ps = StatusPublisher::Create(dir.path());
  ASSERT_TRUE(pc.ok()) << pc.status();
  ASSERT_TRUE(ps.ok()) << ps.status();
  std::unique_ptr<StatusPublisher> client_pub(*pc), server_pub(*ps);

  SmcrWorld w(7);
  SimOptions o = SimPair::SmcrOptions();
  o.world = &w;
  o.client_process = w.AddProcess(0);
  o.server_process = w.AddProcess(1);
  LgrRegistry& creg = w.registry(o.client_process);
  LgrRegistry& sreg = w.registry(o.server_process);
  creg.AttachStatus(client_pub->AsSink());
  sreg.AttachStatus(server_pub->AsSink());

  auto first = std::make_unique<SimPair>(o);
  Connect(*first);
  PingPong(*first);
  auto second = std::make_unique<SimPair>(o);
  Connect(*second);
  PingPong(*second);
  // 95 s idle: each side's 30 s keepalive sends TEST_LINK, the other
  // answers (LLC counters that moved, not zeroes).
  RunWorldFor(w, std::chrono::seconds(95));
  PingPong(*first);

  for (int side : {kClient, kServer}) {
    SCOPED_TRACE(side == kClient ? "client" : "server");
    LgrRegistry& reg = side == kClient ? creg : sreg;
    const ProcessStatus st = Read(side == kClient ? *client_pub : *server_pub);
    const std::vector<LgrInfo> groups = reg.Groups();
    ASSERT_EQ(groups.size(), 1u);
    ASSERT_EQ(st.link_groups.size(), 1u);
    ExpectGroup(st.link_groups[0], groups[0]);
    EXPECT_EQ(State(st.link_groups[0]), "ACTIVE");
    EXPECT_EQ(st.link_groups[0].smcr.conns, 2u);
    // The second connection's RMB was announced over the group's LLC.
    EXPECT_EQ(st.link_groups[0].smcr.confirm_rkey_sent, 1u);
    EXPECT_EQ(st.link_groups[0].smcr.confirm_rkey_received, 1u);

    ASSERT_EQ(st.connections.size(), 2u);
    std::set<uint32_t> want_tokens{first->smcr_conn(side).token(),
                                   second->smcr_conn(side).token()};
    std::set<uint32_t> got_tokens;
    for (const ConnRecord& r : st.connections) {
      EXPECT_EQ(r.kind, RecordKind::kConnection);
      EXPECT_EQ(r.mode, ConnMode::kSmcr);
      EXPECT_EQ(r.role, side == kClient ? engine::Role::kClient
                                        : engine::Role::kServer);
      EXPECT_EQ(State(r), "ACTIVE");
      EXPECT_EQ(r.smcr.lgr_id, groups[0].id);
      EXPECT_EQ(r.smcr.lgr_id, *first->smcr_conn(side).lgr_id());
      EXPECT_EQ(r.smcr.qpn, groups[0].qpn);
      EXPECT_EQ(r.smcr.peer_qpn, groups[0].peer_qpn);
      EXPECT_EQ(std::memcmp(r.smcr.peer_gid, groups[0].peer_gid.data(), 16), 0);
      EXPECT_EQ(r.dmb_size, o.client.smcr.rmb_size);
      EXPECT_EQ(r.peer_dmb_size, o.server.smcr.rmb_size);
      // Only the link group counts LLC.
      EXPECT_EQ(r.smcr.llc_sent, 0u);
      got_tokens.insert(r.smcr.token);
    }
    EXPECT_EQ(got_tokens, want_tokens);
    EXPECT_EQ(got_tokens.count(0), 0u);
    ExpectNoRegionAddress(st, reg.Regions());
  }
  // The peer GID each side shows is the other side's device GID; each
  // TEST_LINK one side sent, the other received and answered.
  {
    const ProcessStatus c = Read(*client_pub);
    const ProcessStatus s = Read(*server_pub);
    const SmcrRecord& cm = c.link_groups[0].smcr;
    const SmcrRecord& sm = s.link_groups[0].smcr;
    EXPECT_GE(cm.test_link_sent + sm.test_link_sent, 3u);
    EXPECT_EQ(cm.test_link_sent, sm.test_link_received);
    EXPECT_EQ(sm.test_link_sent, cm.test_link_received);
    EXPECT_EQ(cm.llc_sent, sm.llc_received);
    EXPECT_EQ(sm.llc_sent, cm.llc_received);
    EXPECT_EQ(c.link_groups[0].smcr.peer_qpn, s.link_groups[0].smcr.qpn);
    EXPECT_EQ(s.link_groups[0].smcr.peer_qpn, c.link_groups[0].smcr.qpn);
    EXPECT_EQ(
        std::memcmp(c.link_groups[0].smcr.peer_gid, sreg.attr().gid.data(), 16),
        0);
    EXPECT_EQ(
        std::memcmp(s.link_groups[0].smcr.peer_gid, creg.attr().gid.data(), 16),
        0);
  }
  // Both files are found by the directory scan `usmc ss` runs.
  EXPECT_EQ(ReadAllStatus(dir.path()).size(), 2u);

  // One connection closes and goes: its records leave, the group stays
  // with one connection; then the other.
  first->Close(kClient);
  first->Pump();
  first->Close(kServer);
  first->Pump();
  first.reset();
  w.Progress();
  for (StatusPublisher* pub : {client_pub.get(), server_pub.get()}) {
    const ProcessStatus st = Read(*pub);
    ASSERT_EQ(st.connections.size(), 1u);
    ASSERT_EQ(st.link_groups.size(), 1u);
    EXPECT_EQ(st.link_groups[0].smcr.conns, 1u);
    EXPECT_EQ(st.link_groups[0].smcr.delete_rkey_sent +
                  st.link_groups[0].smcr.delete_rkey_received,
              2u);
  }
  second.reset();
  w.Progress();
  for (StatusPublisher* pub : {client_pub.get(), server_pub.get()}) {
    const ProcessStatus st = Read(*pub);
    EXPECT_TRUE(st.connections.empty());
    ASSERT_EQ(st.link_groups.size(), 1u);
    EXPECT_EQ(st.link_groups[0].smcr.conns, 0u);
  }
  // The groups end (as at exit) and leave the file once freed.
  creg.TerminateAll();
  sreg.TerminateAll();
  for (int i = 0;
       i < 1000 && (!creg.Groups().empty() || !sreg.Groups().empty()); ++i) {
    if (w.Progress()) continue;
    const std::optional<engine::TimePoint> t = w.NextDeadline();
    if (!t) break;
    w.clock().Set(std::max(*t, w.now() + engine::Duration(1)));
  }
  EXPECT_TRUE(creg.Groups().empty());
  EXPECT_TRUE(Read(*client_pub).link_groups.empty());
  EXPECT_TRUE(Read(*server_pub).link_groups.empty());
}

// The interposer publishes each connection itself (its addresses, pid,
// bytes): its registry must publish only the groups, and the connection's
// own record carries the link-group fields (SmcrConn::StatusFields through
// SocketStatus into RecordFrom), or `usmc ss` lists every SMC-R
// connection twice, once with address `*`.
TEST(SmcrStatus, OwnerPublishedConnectionsAppearOnceWithTheirGroup) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  Result<StatusPublisher*> pc = StatusPublisher::Create(dir.path());
  ASSERT_TRUE(pc.ok()) << pc.status();
  std::unique_ptr<StatusPublisher> client_pub(*pc);

  LgrRegistryOptions ro;
  ro.publish_connections = false;
  SmcrWorld w(11, ro);
  SimOptions o = SimPair::SmcrOptions();
  o.world = &w;
  o.client_process = w.AddProcess(0);
  o.server_process = w.AddProcess(1);
  LgrRegistry& creg = w.registry(o.client_process);
  creg.AttachStatus(client_pub->AsSink());
  SimPair sim(o);
  Connect(sim);
  PingPong(sim);

  // The owner's record, as the interposer builds it.
  SocketStatus ss;
  ss.engine = sim.conn(kClient).Stats();
  ss.smcr = sim.smcr_conn(kClient).StatusFields();
  const ConnRecord own = RecordFrom(ss, -1);
  const SlotId slot = client_pub->Acquire();
  client_pub->Update(slot, own);

  const ProcessStatus st = Read(*client_pub);
  const std::vector<LgrInfo> groups = creg.Groups();
  ASSERT_EQ(groups.size(), 1u);
  ASSERT_EQ(st.link_groups.size(), 1u);
  ExpectGroup(st.link_groups[0], groups[0]);
  ASSERT_EQ(st.connections.size(), 1u);  // the owner's only
  const ConnRecord& r = st.connections[0];
  EXPECT_EQ(r.mode, ConnMode::kSmcr);
  EXPECT_EQ(r.smcr.lgr_id, groups[0].id);
  EXPECT_EQ(r.smcr.qpn, groups[0].qpn);
  EXPECT_EQ(r.smcr.peer_qpn, groups[0].peer_qpn);
  EXPECT_NE(r.smcr.peer_qpn, 0u);
  EXPECT_EQ(std::memcmp(r.smcr.peer_gid, groups[0].peer_gid.data(), 16), 0);
  EXPECT_EQ(r.smcr.token, sim.smcr_conn(kClient).token());
  EXPECT_NE(r.smcr.token, 0u);
  ExpectNoRegionAddress(st, creg.Regions());
  client_pub->Release(slot);
}

}  // namespace
}  // namespace usmc::runtime
