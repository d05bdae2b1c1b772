// End-to-end engine tests over dev/sim: handshake, data, close, fallback and
// a hostile peer, both engines driven by SimPair. The data and close tests
// run over both transports (parameterised: SMC-D over dev/sim, SMC-R
// through the link-group registry over SimRdma), with the same assertions.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <random>
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

std::string Str(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

enum class Transport { kSmcd, kSmcr };

class SimTransport : public ::testing::TestWithParam<Transport> {
 protected:
  bool smcr() const { return GetParam() == Transport::kSmcr; }
  SimOptions Options() const {
    return smcr() ? SimPair::SmcrOptions() : SimPair::DefaultOptions();
  }
  // The ring a 64 KiB buffer gives: SMC-D keeps 32 bytes for the CDC area,
  // SMC-R's ring is the whole RMBE.
  uint32_t Ring() const { return smcr() ? 64 * 1024 : 64 * 1024 - 32; }
};
class SimHandshakeBoth : public SimTransport {};
class SimData : public SimTransport {};
class SimClose : public SimTransport {};

std::string TransportName(const ::testing::TestParamInfo<Transport>& i) {
  return i.param == Transport::kSmcr ? "Smcr" : "Smcd";
}
INSTANTIATE_TEST_SUITE_P(, SimHandshakeBoth,
                         ::testing::Values(Transport::kSmcd, Transport::kSmcr),
                         TransportName);
INSTANTIATE_TEST_SUITE_P(, SimData,
                         ::testing::Values(Transport::kSmcd, Transport::kSmcr),
                         TransportName);
INSTANTIATE_TEST_SUITE_P(, SimClose,
                         ::testing::Values(Transport::kSmcd, Transport::kSmcr),
                         TransportName);

// Runs the handshake to completion and checks both ends reached SMC-D.
void Connect(SimPair& sim) {
  sim.Start();
  sim.Pump();
  ASSERT_EQ(sim.conn(kClient).mode(), Mode::kSmc);
  ASSERT_EQ(sim.conn(kServer).mode(), Mode::kSmc);
  // And over the transport the pair was built for.
  ASSERT_EQ(sim.side(kClient).smcr_link.has_value(), sim.smcr());
  ASSERT_EQ(sim.side(kServer).smcr_link.has_value(), sim.smcr());
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
  EXPECT_EQ(sim.BuffersInUse(), 2u);
}

TEST_P(SimHandshakeBoth, OneByteTrickleGivesTheSameResult) {
  SimOptions o = Options();
  o.trickle = true;
  SimPair sim(o);
  Connect(sim);
  if (smcr()) {
    const engine::SmcrLink& c = *sim.side(kClient).smcr_link;
    const engine::SmcrLink& s = *sim.side(kServer).smcr_link;
    EXPECT_EQ(c.peer_rkey, s.local_rkey);
    EXPECT_EQ(c.peer_vaddr, s.local_iova);
    EXPECT_EQ(s.peer_rkey, c.local_rkey);
    EXPECT_EQ(s.peer_vaddr, c.local_iova);
    EXPECT_EQ(c.peer_qpn, s.local_qpn);
    EXPECT_EQ(s.peer_qpn, c.local_qpn);
    EXPECT_EQ(c.peer_token, s.local_token);
    EXPECT_EQ(s.peer_token, c.local_token);
    return;
  }
  EXPECT_EQ(sim.side(kClient).link->peer_dmb_token,
            sim.side(kServer).link->local_dmb_token);
  EXPECT_EQ(sim.side(kServer).link->peer_dmb_token,
            sim.side(kClient).link->local_dmb_token);
}

// The client is ACTIVE once it attached, before the server has even read
// the Confirm; data it sends at once must not be lost.
TEST_P(SimData, ClientSendsBeforeTheServerIsActive) {
  SimPair sim(Options());
  sim.Start();
  for (int i = 0; i < 100 && sim.conn(kClient).mode() != Mode::kSmc; ++i) {
    sim.Pump(1);
  }
  ASSERT_EQ(sim.conn(kClient).mode(), Mode::kSmc);
  ASSERT_EQ(sim.conn(kServer).mode(), Mode::kHandshake);
  EXPECT_EQ(sim.Send(kClient, Bytes("early")), 5u);
  sim.Pump();
  ASSERT_EQ(sim.conn(kServer).mode(), Mode::kSmc);
  std::vector<std::byte> buf(10);
  ASSERT_EQ(sim.Recv(kServer, buf), 5u);
  EXPECT_EQ(Str(std::span(buf).first(5)), "early");
}

TEST_P(SimData, SmallMessageBothWays) {
  SimPair sim(Options());
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

// Deterministic stream content: byte i of direction d.
std::byte StreamByte(int d, uint64_t i) {
  return std::byte(static_cast<uint8_t>((i * 131 + (i >> 9) + d * 17) & 0xff));
}

TEST_P(SimData, ManyMiBRandomChunksBothWaysAtOnce) {
  SimPair sim(Options());
  Connect(sim);
  constexpr uint64_t kTotal = 6 * 1024 * 1024;
  std::mt19937_64 rng(42);
  uint64_t sent[2] = {0, 0};
  uint64_t got[2] = {0, 0};  // got[d]: bytes received of direction d
  uint64_t mismatches = 0;
  std::vector<std::byte> buf(70000);
  int idle = 0;
  while ((got[0] < kTotal || got[1] < kTotal) && idle < 4) {
    bool moved = false;
    for (int s = 0; s < 2; ++s) {
      if (sent[s] < kTotal) {
        const size_t want =
            std::min<uint64_t>(kTotal - sent[s], 1 + rng() % 40000);
        for (size_t i = 0; i < want; ++i) buf[i] = StreamByte(s, sent[s] + i);
        const size_t n = sim.Send(s, std::span(buf).first(want));
        sent[s] += n;
        moved |= n > 0;
      }
      sim.Pump();
      const int r = 1 - s;  // the receiver of direction s
      const size_t max = 1 + rng() % 50000;
      const size_t n = sim.Recv(r, std::span(buf).first(max));
      for (size_t i = 0; i < n; ++i) {
        mismatches += buf[i] != StreamByte(s, got[s] + i);
      }
      got[s] += n;
      moved |= n > 0;
      sim.Pump();
    }
    idle = moved ? 0 : idle + 1;
  }
  EXPECT_EQ(got[0], kTotal);
  EXPECT_EQ(got[1], kTotal);
  EXPECT_EQ(mismatches, 0u);
  for (int s = 0; s < 2; ++s) {
    const engine::ConnectionStats st = sim.conn(s).Stats();
    EXPECT_EQ(st.counters.bytes_sent, kTotal);
    EXPECT_EQ(st.counters.bytes_received, kTotal);
    EXPECT_GT(st.tx_producer.wrap, 50);  // the ring wrapped many times
    EXPECT_GT(st.counters.buffer_full, 0u);
    EXPECT_GT(st.counters.consumer_updates, 0u);
    EXPECT_EQ(sim.side(s).plan_out_of_bounds, 0u);
    EXPECT_EQ(sim.side(s).dropped_actions, 0u);
    EXPECT_TRUE(sim.side(s).errors.empty());
  }
}

// One byte per send and per receive, both ways: every CDC carries one
// byte; nothing is lost, duplicated or reordered.
TEST_P(SimData, OneByteTrickleBothWays) {
  SimPair sim(Options());
  Connect(sim);
  constexpr uint64_t kCount = 3000;
  uint64_t mismatches = 0;
  for (uint64_t i = 0; i < kCount; ++i) {
    for (int s = 0; s < 2; ++s) {
      const std::byte b = StreamByte(s, i);
      ASSERT_EQ(sim.Send(s, {&b, 1}), 1u) << i;
      sim.Pump();
      std::byte got{0};
      ASSERT_EQ(sim.Recv(1 - s, {&got, 1}), 1u) << i;
      mismatches += got != b;
      sim.Pump();
    }
  }
  EXPECT_EQ(mismatches, 0u);
  for (int s = 0; s < 2; ++s) {
    EXPECT_EQ(sim.conn(s).Stats().counters.bytes_received, kCount);
    EXPECT_TRUE(sim.side(s).errors.empty());
  }
}

TEST_P(SimData, WriteBlockedThenConsumerUpdateFreesSpace) {
  SimPair sim(Options());
  Connect(sim);
  const uint32_t ring = Ring();
  std::vector<std::byte> big(ring + 1000, std::byte{7});
  EXPECT_EQ(sim.Send(kClient, big), ring);  // exactly one ring fits
  sim.Pump();
  EXPECT_EQ(sim.conn(kClient).SendSpace(), 0u);
  EXPECT_EQ(sim.conn(kClient).Stats().counters.buffer_full, 1u);
  EXPECT_EQ(sim.conn(kServer).RecvState().readable, ring);
  // A small read is not worth a consumer update (10 % rule)...
  std::vector<std::byte> out(ring);
  const uint64_t cdcs = sim.conn(kServer).Stats().counters.cdc_published;
  EXPECT_EQ(sim.Recv(kServer, std::span(out).first(100)), 100u);
  sim.Pump();
  EXPECT_EQ(sim.conn(kServer).Stats().counters.cdc_published, cdcs);
  EXPECT_EQ(sim.conn(kClient).SendSpace(), 0u);
  // ...reading more than 10 % while the writer is blocked is.
  EXPECT_EQ(sim.Recv(kServer, std::span(out).first(ring / 10 + 10)),
            ring / 10 + 10);
  sim.Pump();
  EXPECT_EQ(sim.conn(kServer).Stats().counters.cdc_published, cdcs + 1);
  EXPECT_EQ(sim.conn(kClient).SendSpace(), 100 + ring / 10 + 10);
}

TEST_P(SimData, PeekDoesNotConsume) {
  SimPair sim(Options());
  Connect(sim);
  sim.Send(kClient, Bytes("peekaboo"));
  sim.Pump();
  std::vector<std::byte> a(4), b(4), c(8);
  EXPECT_EQ(sim.Recv(kServer, a, /*peek=*/true), 4u);
  EXPECT_EQ(sim.Recv(kServer, b, /*peek=*/true), 4u);
  EXPECT_EQ(Str(a), "peek");
  EXPECT_EQ(Str(b), "peek");
  EXPECT_EQ(sim.conn(kServer).RecvState().readable, 8u);
  EXPECT_EQ(sim.Recv(kServer, c), 8u);
  EXPECT_EQ(Str(c), "peekaboo");
  EXPECT_EQ(sim.conn(kServer).RecvState().readable, 0u);
}

TEST_P(SimData, WaitAllReportsWhenEnoughArrived) {
  SimPair sim(Options());
  Connect(sim);
  EXPECT_FALSE(sim.conn(kServer).WaitAllSatisfied(10));
  sim.Send(kClient, Bytes("12345"));
  sim.Pump();
  EXPECT_FALSE(sim.conn(kServer).WaitAllSatisfied(10));
  sim.Send(kClient, Bytes("67890"));
  sim.Pump();
  EXPECT_TRUE(sim.conn(kServer).WaitAllSatisfied(10));
  sim.Shutdown(kClient);
  sim.Pump();
  EXPECT_TRUE(sim.conn(kServer).WaitAllSatisfied(1000));  // EOF: short read
}

TEST_P(SimData, UrgentByteAndAtMark) {
  SimPair sim(Options());
  Connect(sim);
  EXPECT_EQ(sim.Send(kClient, Bytes("abcX"), /*urgent=*/true), 4u);
  sim.Pump();
  engine::Connection& srv = sim.conn(kServer);
  EXPECT_EQ(srv.RecvState().readable, 3u);  // the urgent byte is not inline
  EXPECT_FALSE(srv.AtUrgentMark());
  std::byte oob{0};
  EXPECT_EQ(srv.ReadUrgent(/*peek=*/true, &oob), 0);
  EXPECT_EQ(oob, std::byte{'X'});
  // The sender takes no new data until everything is consumed.
  EXPECT_EQ(sim.conn(kClient).SendSpace(), 0u);
  std::vector<std::byte> buf(100);
  ASSERT_EQ(sim.Recv(kServer, buf), 3u);
  EXPECT_EQ(Str(std::span(buf).first(3)), "abc");
  EXPECT_TRUE(srv.AtUrgentMark());
  EXPECT_EQ(srv.ReadUrgent(false, &oob), 0);
  EXPECT_EQ(oob, std::byte{'X'});
  EXPECT_EQ(srv.ReadUrgent(false, &oob), EINVAL);  // read once only
  sim.Pump();
  EXPECT_EQ(sim.conn(kClient).SendSpace(), Ring());
  sim.Send(kClient, Bytes("def"));
  sim.Pump();
  ASSERT_EQ(sim.Recv(kServer, buf), 3u);
  EXPECT_EQ(Str(std::span(buf).first(3)), "def");
  EXPECT_FALSE(srv.AtUrgentMark());
  EXPECT_EQ(sim.conn(kServer).Stats().counters.urgent_received, 1u);
}

TEST_P(SimData, UrgentStopsReadBeforeTheMark) {
  SimPair sim(Options());
  Connect(sim);
  sim.Send(kClient, Bytes("12"));
  sim.Pump();
  sim.Send(kClient, Bytes("34!"), true);
  sim.Pump();
  std::vector<std::byte> buf(2);
  ASSERT_EQ(sim.Recv(kServer, buf), 2u);
  EXPECT_FALSE(sim.conn(kServer).AtUrgentMark());
  std::vector<std::byte> big(100);
  ASSERT_EQ(sim.Recv(kServer, big), 2u);
  EXPECT_EQ(Str(std::span(big).first(2)), "34");
  EXPECT_TRUE(sim.conn(kServer).AtUrgentMark());
  EXPECT_EQ(sim.conn(kServer).RecvState().readable, 0u);
}

// ---- close ----

TEST_P(SimClose, ClientShutdownWriteThenBothClose) {
  SimPair sim(Options());
  Connect(sim);
  sim.Send(kClient, Bytes("last words"));
  sim.Shutdown(kClient);
  sim.Pump();
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kPeerCloseWait1);
  EXPECT_EQ(sim.conn(kClient).SendError(), EPIPE);
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kAppCloseWait1);
  // Data before the shutdown still arrives, then EOF.
  EXPECT_FALSE(sim.conn(kServer).RecvState().eof);
  std::vector<std::byte> buf(100);
  ASSERT_EQ(sim.Recv(kServer, buf), 10u);
  EXPECT_TRUE(sim.conn(kServer).RecvState().eof);
  // The other direction still works.
  EXPECT_EQ(sim.Send(kServer, Bytes("reply")), 5u);
  sim.Pump();
  ASSERT_EQ(sim.Recv(kClient, buf), 5u);
  EXPECT_EQ(Str(std::span(buf).first(5)), "reply");
  sim.Close(kServer);
  sim.Pump();
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kPeerFinCloseWait);
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kAppFinCloseWait);
  EXPECT_TRUE(sim.conn(kClient).RecvState().eof);
  sim.Close(kClient);
  sim.Pump();
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kClosed);
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kClosed);
  EXPECT_EQ(sim.BuffersInUse(), 0u);
  EXPECT_TRUE(sim.side(kClient).tcp_closed);
  EXPECT_TRUE(sim.side(kServer).tcp_closed);
  EXPECT_TRUE(sim.side(kClient).errors.empty());
  EXPECT_TRUE(sim.side(kServer).errors.empty());
}

TEST_P(SimClose, ServerShutdownWriteFirst) {
  SimPair sim(Options());
  Connect(sim);
  sim.Shutdown(kServer);
  sim.Pump();
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kPeerCloseWait1);
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kAppCloseWait1);
  EXPECT_TRUE(sim.conn(kClient).RecvState().eof);
  sim.Shutdown(kClient);
  sim.Pump();
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kAppCloseWait2);
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kPeerCloseWait2);
  sim.Close(kClient);
  sim.Pump();
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kPeerFinCloseWait);
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kAppFinCloseWait);
  sim.Close(kServer);
  sim.Pump();
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kClosed);
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kClosed);
  EXPECT_EQ(sim.BuffersInUse(), 0u);
}

TEST_P(SimClose, CloseAfterPeerClosedGoesStraightToClosed) {
  SimPair sim(Options());
  Connect(sim);
  sim.Close(kClient);
  sim.Pump();
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kPeerCloseWait1);
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kAppCloseWait1);
  EXPECT_TRUE(sim.conn(kServer).RecvState().eof);
  sim.Close(kServer);
  sim.Pump();
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kClosed);
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kClosed);
  EXPECT_EQ(sim.BuffersInUse(), 0u);
}

TEST_P(SimClose, CloseWithUnreadDataResetsThePeer) {
  SimPair sim(Options());
  Connect(sim);
  sim.Send(kClient, Bytes("never read"));
  sim.Pump();
  sim.Close(kServer);  // 10 unread bytes: abort, not closed
  sim.Pump();
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kProcessAbort);
  EXPECT_EQ(sim.conn(kClient).SendError(), ECONNRESET);
  EXPECT_EQ(sim.conn(kClient).RecvState().error, ECONNRESET);
  ASSERT_FALSE(sim.side(kClient).errors.empty());
  EXPECT_EQ(sim.side(kClient).errors.back().err, ECONNRESET);
  sim.Close(kClient);
  sim.Pump();
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kClosed);
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kClosed);
  EXPECT_EQ(sim.BuffersInUse(), 0u);
}

TEST_P(SimClose, PeerAbortGivesEconnreset) {
  SimPair sim(Options());
  Connect(sim);
  sim.Abort(kClient);
  sim.Pump();
  EXPECT_EQ(sim.conn(kClient).close_state(), CloseState::kClosed);
  EXPECT_TRUE(sim.side(kClient).tcp_reset);
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kProcessAbort);
  EXPECT_EQ(sim.conn(kServer).RecvState().error, ECONNRESET);
  sim.Close(kServer);
  sim.Pump();
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kClosed);
  EXPECT_EQ(sim.BuffersInUse(), 0u);
}

TEST_P(SimClose, PeerTcpGoneWithoutSmcCloseIsAReset) {
  SimPair sim(Options());
  Connect(sim);
  sim.device().pipe(kClient).Close();  // the client process died
  sim.Pump();
  if (smcr()) {
    // SMC-R: only once the close CDC had its time to come
    // (engine::kSmcrPeerCloseWait; runtime/sim_smcr_test.cc SimSmcrClose).
    EXPECT_EQ(sim.conn(kServer).RecvState().error, 0);
    const engine::TimePoint t0 = sim.now();
    ASSERT_TRUE(sim.FireNextTimer());
    sim.Pump();
    EXPECT_EQ(sim.now() - t0, engine::kSmcrPeerCloseWait);
  }
  EXPECT_EQ(sim.conn(kServer).RecvState().error, ECONNRESET);
  EXPECT_EQ(sim.conn(kServer).close_state(), CloseState::kProcessAbort);
}

}  // namespace
}  // namespace usmc::runtime
