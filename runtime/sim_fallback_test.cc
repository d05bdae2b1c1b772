// Fallback and hostile-peer tests over dev/sim: every decline reason, the
// CLC timeout, garbage and wrong-version CLC, app bytes after the last CLC
// message, and a peer that writes arbitrary CDC areas into our DMB.
#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "runtime/sim_pair.h"
#include "wire/cdc.h"
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

std::string Str(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::vector<std::byte> Encode(const wire::ClcMessage& m) {
  std::array<std::byte, wire::kClcMaxMessageLen> buf;
  wire::WireResult<size_t> n = wire::EncodeClc(m, buf);
  EXPECT_TRUE(n.ok());
  return std::vector<std::byte>(buf.begin(), buf.begin() + (n.ok() ? *n : 0));
}

// Pumps one event at a time until side s leaves the handshake.
void PumpUntilDecided(SimPair& sim, int s) {
  for (int i = 0; i < 1000 && sim.conn(s).mode() == Mode::kHandshake; ++i) {
    if (sim.Pump(1) == 0) break;
  }
}

struct DeclineCase {
  const char* name;
  std::function<void(SimOptions&)> configure;
  std::function<void(SimPair&)> before_start;
  uint32_t reason;
};

class ServerDeclines : public ::testing::TestWithParam<DeclineCase> {};

TEST_P(ServerDeclines, BothFallBackAndAppBytesSurvive) {
  const DeclineCase& c = GetParam();
  SimOptions o = SimPair::DefaultOptions();
  c.configure(o);
  SimPair sim(o);
  if (c.before_start) c.before_start(sim);
  sim.Start();
  PumpUntilDecided(sim, kServer);
  ASSERT_EQ(sim.conn(kServer).mode(), Mode::kTcp);
  // The server app writes at once: its bytes travel right behind the
  // Decline and must reach the client app, not the client's CLC parser.
  sim.TcpAppWrite(kServer, Bytes("server-first"));
  sim.Pump();
  ASSERT_EQ(sim.conn(kClient).mode(), Mode::kTcp);
  ASSERT_TRUE(sim.side(kServer).fallback.has_value());
  ASSERT_TRUE(sim.side(kClient).fallback.has_value());
  EXPECT_EQ(sim.side(kServer).fallback->local_reason, c.reason)
      << wire::FormatReason(sim.side(kServer).fallback->local_reason);
  EXPECT_EQ(sim.side(kServer).fallback->peer_reason, 0u);
  EXPECT_EQ(sim.side(kClient).fallback->local_reason, wire::kReasonPeerDecl);
  EXPECT_EQ(sim.side(kClient).fallback->peer_reason, c.reason);
  EXPECT_EQ(sim.side(kServer).clc_sent,
            std::vector<wire::ClcType>{wire::ClcType::kDecline});
  EXPECT_EQ(sim.side(kClient).clc_sent,
            std::vector<wire::ClcType>{wire::ClcType::kProposal});
  EXPECT_EQ(Str(sim.TcpAppRead(kClient)), "server-first");
  sim.TcpAppWrite(kClient, Bytes("client-next"));
  EXPECT_EQ(Str(sim.TcpAppRead(kServer)), "client-next");
  EXPECT_EQ(sim.conn(kServer).Stats().local_reason, c.reason);
  EXPECT_EQ(sim.conn(kClient).Stats().peer_reason, c.reason);
  EXPECT_EQ(sim.device().dmb_count(), 0u);  // nothing leaked
  EXPECT_FALSE(sim.side(kClient).deadline.has_value());
  EXPECT_FALSE(sim.side(kServer).deadline.has_value());
}

INSTANTIATE_TEST_SUITE_P(
    Reasons, ServerDeclines,
    ::testing::Values(
        DeclineCase{"OtherHostGid",
                    [](SimOptions& o) { o.server.device.gid ^= 1; }, nullptr,
                    wire::kReasonNoSmcd2Dev},
        DeclineCase{"OtherHostGidExt",
                    [](SimOptions& o) { o.server.device.gid_ext ^= 1; },
                    nullptr, wire::kReasonNoSmcd2Dev},
        DeclineCase{"OtherChid",
                    [](SimOptions& o) { o.server.device.chid = 0xFF01; },
                    nullptr, wire::kReasonNoSmcd2Dev},
        DeclineCase{"OtherUeid",
                    [](SimOptions& o) {
                      o.server.eid = wire::MakeClcEid("OTHER-UEID");
                    },
                    nullptr, wire::kReasonNoUeid},
        DeclineCase{"ServerSmcdOff",
                    [](SimOptions& o) { o.server.smcd_enabled = false; },
                    nullptr, wire::kReasonNoSmcdDev},
        DeclineCase{"NoMemoryForDmb", [](SimOptions&) {},
                    [](SimPair& sim) { sim.device().set_fail_register(true); },
                    wire::kReasonMem}),
    [](const ::testing::TestParamInfo<DeclineCase>& i) {
      return std::string(i.param.name);
    });

TEST(SimFallback, ClientWithoutDeviceDeclinesFirst) {
  SimOptions o = SimPair::DefaultOptions();
  o.client.smcd_enabled = false;
  SimPair sim(o);
  sim.Start();
  sim.Pump();
  ASSERT_TRUE(sim.side(kClient).fallback.has_value());
  ASSERT_TRUE(sim.side(kServer).fallback.has_value());
  EXPECT_EQ(sim.side(kClient).fallback->local_reason, wire::kReasonNoSmcdDev);
  EXPECT_EQ(sim.side(kServer).fallback->local_reason, wire::kReasonPeerDecl);
  EXPECT_EQ(sim.side(kServer).fallback->peer_reason, wire::kReasonNoSmcdDev);
  EXPECT_TRUE(sim.side(kServer).clc_sent.empty());  // no Decline back
}

TEST(SimFallback, ClientDeclinesAnAcceptFromAnotherHost) {
  SimPair sim(SimPair::DefaultOptions());
  sim.device().pipe(kServer).set_silent(true);  // the real server is mute
  sim.Start();
  sim.Pump();
  engine::EngineParams other = SimPair::DefaultOptions().server;
  other.device.gid = 42;
  wire::ClcSmcdAccept a =
      engine::BuildSmcdAccept(wire::ClcType::kAccept, other, 0x1234, 65536, 7);
  sim.device().pipe(kServer).set_silent(false);
  sim.InjectTcp(kServer, Encode(a));
  sim.Pump();
  ASSERT_TRUE(sim.side(kClient).fallback.has_value());
  EXPECT_EQ(sim.side(kClient).fallback->local_reason, wire::kReasonNoSmcd2Dev);
  EXPECT_EQ(sim.side(kClient).clc_sent.back(), wire::ClcType::kDecline);
  // The server (waiting for Confirm) gets the Decline and falls back too.
  ASSERT_TRUE(sim.side(kServer).fallback.has_value());
  EXPECT_EQ(sim.side(kServer).fallback->local_reason, wire::kReasonPeerDecl);
  EXPECT_EQ(sim.side(kServer).fallback->peer_reason, wire::kReasonNoSmcd2Dev);
  EXPECT_EQ(sim.device().dmb_count(), 0u);
}

TEST(SimFallback, SilentServerTimesOutAfterSixSeconds) {
  SimPair sim(SimPair::DefaultOptions());
  const engine::TimePoint t0 = sim.device().now();
  sim.Feed(kClient, engine::Start{});  // the server never starts: silent
  sim.Pump();
  ASSERT_TRUE(sim.side(kClient).deadline.has_value());
  EXPECT_EQ(*sim.side(kClient).deadline, t0 + std::chrono::seconds(6));
  // A timer that fires early is stale and changes nothing.
  sim.device().Advance(std::chrono::seconds(5));
  sim.Feed(kClient, engine::Timeout{});
  EXPECT_EQ(sim.conn(kClient).mode(), Mode::kHandshake);
  ASSERT_TRUE(sim.FireNextTimer());
  EXPECT_EQ(sim.device().now(), t0 + std::chrono::seconds(6));
  EXPECT_EQ(sim.conn(kClient).mode(), Mode::kTcp);
  EXPECT_EQ(sim.side(kClient).fallback->local_reason, wire::kReasonTimeoutCl);
  EXPECT_EQ(sim.side(kClient).clc_sent,
            (std::vector<wire::ClcType>{wire::ClcType::kProposal,
                                        wire::ClcType::kDecline}));
}

TEST(SimFallback, AcceptDelayedWithinTheTimeoutStillConnects) {
  SimPair sim(SimPair::DefaultOptions());
  sim.device().pipe(kServer).set_held(true);  // the Accept is delayed
  sim.Start();
  sim.Pump();
  EXPECT_EQ(sim.conn(kClient).handshake_state(), "AWAIT_ACCEPT");
  sim.device().Advance(std::chrono::milliseconds(5900));
  sim.Feed(kClient, engine::Timeout{});  // not due yet: ignored
  sim.device().pipe(kServer).set_held(false);
  sim.Pump();
  EXPECT_EQ(sim.conn(kClient).mode(), Mode::kSmc);
  EXPECT_EQ(sim.conn(kServer).mode(), Mode::kSmc);
  EXPECT_FALSE(sim.side(kClient).deadline.has_value());
}

TEST(SimFallback, SilentClientTimesOutOnTheServer) {
  SimPair sim(SimPair::DefaultOptions());
  sim.Feed(kServer, engine::Start{});
  sim.Pump();
  ASSERT_TRUE(sim.FireNextTimer());
  EXPECT_EQ(sim.conn(kServer).mode(), Mode::kTcp);
  EXPECT_EQ(sim.side(kServer).fallback->local_reason, wire::kReasonTimeoutCl);
  EXPECT_EQ(sim.side(kServer).clc_sent,
            std::vector<wire::ClcType>{wire::ClcType::kDecline});
}

TEST(SimFallback, LostConfirmTimesOutAndReleasesTheDmb) {
  SimPair sim(SimPair::DefaultOptions());
  sim.device().pipe(kClient).set_silent(true);  // nothing from the client
  sim.Feed(kServer, engine::Start{});
  sim.device().pipe(kClient).set_silent(false);
  // Hand-deliver the Proposal only.
  sim.InjectTcp(
      kClient, Encode(engine::BuildProposal(SimPair::DefaultOptions().client)));
  sim.Pump();
  EXPECT_EQ(sim.conn(kServer).handshake_state(), "AWAIT_CONFIRM");
  EXPECT_EQ(sim.device().dmb_count(), 1u);
  ASSERT_TRUE(sim.FireNextTimer());
  EXPECT_EQ(sim.side(kServer).fallback->local_reason, wire::kReasonTimeoutCl);
  EXPECT_EQ(sim.device().dmb_count(), 0u);
}

// A peer that is not speaking CLC: nothing is consumed and no Decline is
// written into its stream; the app gets every byte.
TEST(SimFallback, NonClcBytesInsteadOfProposalStayForTheApp) {
  SimPair sim(SimPair::DefaultOptions());
  sim.Feed(kServer, engine::Start{});
  const std::string req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  sim.InjectTcp(kClient, Bytes(req));
  sim.Pump();
  ASSERT_TRUE(sim.side(kServer).fallback.has_value());
  EXPECT_EQ(sim.side(kServer).fallback->local_reason, wire::kReasonCnfErr);
  EXPECT_TRUE(sim.side(kServer).clc_sent.empty());
  EXPECT_EQ(Str(sim.TcpAppRead(kServer)), req);
}

TEST(SimFallback, BrokenAcceptIsDeclined) {
  SimPair sim(SimPair::DefaultOptions());
  sim.Feed(kClient, engine::Start{});
  std::vector<std::byte> a = Encode(engine::BuildSmcdAccept(
      wire::ClcType::kAccept, SimPair::DefaultOptions().server, 1, 65536, 1));
  a.back() = std::byte{0};  // broken trailer
  sim.InjectTcp(kServer, a);
  sim.Pump();
  ASSERT_TRUE(sim.side(kClient).fallback.has_value());
  EXPECT_EQ(sim.side(kClient).fallback->local_reason, wire::kReasonCnfErr);
  EXPECT_EQ(sim.side(kClient).clc_sent.back(), wire::ClcType::kDecline);
}

TEST(SimFallback, VersionOneProposalIsAVersionMismatch) {
  SimPair sim(SimPair::DefaultOptions());
  sim.Feed(kServer, engine::Start{});
  wire::ClcProposal p;
  p.version = 1;
  p.typev1 = wire::SmcType::kD;
  sim.InjectTcp(kClient, Encode(p));
  sim.Pump();
  ASSERT_TRUE(sim.side(kServer).fallback.has_value());
  EXPECT_EQ(sim.side(kServer).fallback->local_reason, wire::kReasonVersMismat);
}

TEST(SimFallback, HandshakeSurvivesOneByteTrickleOfADecline) {
  SimOptions o = SimPair::DefaultOptions();
  o.trickle = true;
  o.server.eid = wire::MakeClcEid("NOT-THE-SAME");
  SimPair sim(o);
  sim.Start();
  PumpUntilDecided(sim, kServer);
  sim.TcpAppWrite(kServer, Bytes("after"));
  sim.Pump();
  ASSERT_TRUE(sim.side(kClient).fallback.has_value());
  EXPECT_EQ(sim.side(kClient).fallback->peer_reason, wire::kReasonNoUeid);
  EXPECT_EQ(Str(sim.TcpAppRead(kClient)), "after");
}

// ---- hostile peer ----

std::array<std::byte, 32> Area(const wire::CdcMessage& m) {
  std::array<std::byte, 32> a{};
  EXPECT_TRUE(wire::EncodeSmcdCdc(m, a).ok());
  return a;
}

void ExpectAborted(SimPair& sim, int victim) {
  EXPECT_EQ(sim.conn(victim).RecvState().error, ECONNABORTED);
  EXPECT_EQ(sim.conn(victim).SendError(), ECONNABORTED);
  EXPECT_EQ(sim.conn(victim).close_state(), CloseState::kPeerAbortWait);
  EXPECT_EQ(sim.conn(victim).Stats().counters.violations, 1u);
  EXPECT_TRUE(sim.side(victim).tcp_reset);
  // The honest peer learns of it (abort flag): ECONNRESET, after the bytes
  // it had not read yet (as TCP after an RST).
  EXPECT_EQ(sim.conn(1 - victim).PendingError(), ECONNRESET);
  EXPECT_EQ(sim.conn(1 - victim).SendError(), ECONNRESET);
}

TEST(SimHostile, ProducerOutsideTheRing) {
  SimPair sim(SimPair::DefaultOptions());
  sim.Start();
  sim.Pump();
  wire::CdcMessage m;
  m.producer = {0, 64 * 1024};  // ring is 64 KiB - 32
  sim.InjectCdc(kServer, Area(m));
  sim.Pump();
  ExpectAborted(sim, kServer);
}

TEST(SimHostile, ProducerTwoLapsAhead) {
  SimPair sim(SimPair::DefaultOptions());
  sim.Start();
  sim.Pump();
  wire::CdcMessage m;
  m.producer = {2, 10};
  sim.InjectCdc(kServer, Area(m));
  sim.Pump();
  ExpectAborted(sim, kServer);
}

TEST(SimHostile, ConsumerBeyondWhatWeWrote) {
  SimPair sim(SimPair::DefaultOptions());
  sim.Start();
  sim.Pump();
  sim.Send(kServer, Bytes("0123456789"));
  wire::CdcMessage m;
  m.consumer = {0, 11};
  sim.InjectCdc(kServer, Area(m));
  sim.Pump();
  ExpectAborted(sim, kServer);
}

TEST(SimHostile, ProducerMovesBackwards) {
  SimPair sim(SimPair::DefaultOptions());
  sim.Start();
  sim.Pump();
  sim.Send(kClient, Bytes("0123456789"));
  sim.Pump();
  wire::CdcMessage m;
  m.producer = {0, 5};
  sim.InjectCdc(kServer, Area(m));
  sim.Pump();
  ExpectAborted(sim, kServer);
}

TEST(SimHostile, ClearedCloseFlag) {
  SimPair sim(SimPair::DefaultOptions());
  sim.Start();
  sim.Pump();
  wire::CdcMessage m;
  m.conn_state.peer_done_writing = true;
  sim.InjectCdc(kServer, Area(m));
  sim.Pump();
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kAppCloseWait1);
  m.conn_state.peer_done_writing = false;
  sim.InjectCdc(kServer, Area(m));
  sim.Pump();
  ExpectAborted(sim, kServer);
}

TEST(SimHostile, DataAfterDoneWriting) {
  SimPair sim(SimPair::DefaultOptions());
  sim.Start();
  sim.Pump();
  wire::CdcMessage m;
  m.conn_state.peer_done_writing = true;
  sim.InjectCdc(kServer, Area(m));
  sim.Pump();
  m.producer = {0, 100};
  sim.InjectCdc(kServer, Area(m));
  sim.Pump();
  ExpectAborted(sim, kServer);
}

TEST(SimHostile, UndecodableArea) {
  SimPair sim(SimPair::DefaultOptions());
  sim.Start();
  sim.Pump();
  std::array<std::byte, 32> junk{};
  junk[0] = std::byte{0x12};
  sim.InjectCdc(kServer, junk);
  sim.Pump();
  ExpectAborted(sim, kServer);
}

TEST(SimHostile, RandomAreasNeverEscapeTheConnection) {
  std::mt19937_64 rng(7);
  int aborted = 0;
  for (int round = 0; round < 300; ++round) {
    SimPair sim(SimPair::DefaultOptions());
    sim.Start();
    sim.Pump();
    sim.Send(kServer, Bytes("outbound"));
    sim.Send(kClient, Bytes("inbound data"));
    sim.Pump();
    for (int k = 0; k < 4; ++k) {
      std::array<std::byte, 32> a;
      for (auto& b : a) b = std::byte(static_cast<uint8_t>(rng()));
      a[0] = std::byte{0xFE};
      if (round % 2) {
        // Small cursors, so some areas pass validation.
        a[8] = std::byte(rng() % 2);
        a[9] = std::byte{0};
        for (int i = 11; i < 14; ++i) a[i] = std::byte{0};
        a[16] = std::byte{0};
        a[17] = std::byte{0};
        for (int i = 19; i < 22; ++i) a[i] = std::byte{0};
      }
      sim.InjectCdc(kServer, a);
      sim.Pump();
      std::vector<std::byte> buf(70000);
      sim.Recv(kServer, buf);
      sim.Send(kServer, Bytes("more"));
      sim.Pump();
    }
    const int err = sim.conn(kServer).RecvState().error;
    EXPECT_TRUE(err == 0 || err == ECONNABORTED || err == ECONNRESET) << err;
    aborted += err == ECONNABORTED;
    EXPECT_EQ(sim.side(kServer).plan_out_of_bounds, 0u);
    EXPECT_EQ(sim.side(kServer).dropped_actions, 0u);
  }
  EXPECT_GT(aborted, 100);
}

}  // namespace
}  // namespace usmc::runtime
