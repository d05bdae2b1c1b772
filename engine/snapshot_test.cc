// Connection::Snapshot / Restore: a restored connection is indistinguishable
// from the original (same snapshot, same answers to the same events), and
// impossible snapshots are refused before anything changes.
#include "engine/snapshot.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "engine/clc_common.h"
#include "engine/test_util.h"

namespace usmc::engine {
namespace {

using namespace testing;  // NOLINT

constexpr TimePoint kNow{std::chrono::seconds(1)};
constexpr uint32_t kDmb = 64 * 1024;  // both DMBs, CDC area included
constexpr uint32_t kRing = kDmb - 32;

// A client driven by hand through the handshake into SMC-D.
void MakeSmcd(Connection& c) {
  (void)c.OnEvent(Start{}, kNow);
  const wire::ClcSmcdAccept accept =
      BuildSmcdAccept(wire::ClcType::kAccept, TestParams(Role::kServer), 0xD00D,
                      kDmb, 0x11223344);
  (void)c.OnEvent(TcpBytes{EncodeClcBytes(accept)}, kNow);
  (void)c.OnEvent(RecvBufferRegistered{0xBEEF, kDmb}, kNow);
  (void)c.OnEvent(PeerBufferAttached{0xD00D, kDmb}, kNow);
  ASSERT_EQ(c.mode(), Mode::kSmc);
}

CdcArrived PeerCdc(wire::Cursor producer, wire::Cursor consumer,
                       bool urgent = false, bool done_writing = false) {
  wire::CdcMessage m;
  m.producer = producer;
  m.consumer = consumer;
  m.prod_flags.urg_data_present = urgent;
  m.conn_state.peer_done_writing = done_writing;
  CdcArrived e;
  EXPECT_TRUE(wire::EncodeSmcdCdc(m, e.area).ok());
  return e;
}

// Some traffic in both directions, the ring wrapped once, an urgent byte
// announced and not yet read.
void Traffic(Connection& c) {
  (void)c.OnEvent(AppSent{.len = 40000}, kNow);
  (void)c.OnEvent(PeerCdc({0, 50000}, {0, 40000}), kNow);
  (void)c.OnEvent(AppConsumed{50000}, kNow);
  (void)c.OnEvent(AppSent{.len = 30000, .wanted_more = true}, kNow);
  // 20000 more bytes, wrapping; the last one is urgent.
  const wire::Cursor prod = wire::CursorAdd({0, 50000}, 20000, kRing);
  Actions out = c.OnEvent(PeerCdc(prod, {0, 40000}, /*urgent=*/true), kNow);
  ASSERT_NE(FindAction<CaptureUrgentByte>(out), nullptr);
  (void)c.OnEvent(UrgentByteCaptured{std::byte{0x5A}}, kNow);
  (void)c.OnEvent(AppConsumed{7000}, kNow);
}

// Feeds the same events to both and expects the same answers.
void ExpectSameBehaviour(Connection& a, Connection& b) {
  auto both = [&](const Event& e) {
    EXPECT_EQ(Describe(a.OnEvent(e, kNow)), Describe(b.OnEvent(e, kNow)))
        << EventName(e);
  };
  EXPECT_EQ(a.RecvState().readable, b.RecvState().readable);
  EXPECT_EQ(a.SendSpace(), b.SendSpace());
  EXPECT_EQ(a.handshake_state(), b.handshake_state());
  std::byte ua{0}, ub{0};
  EXPECT_EQ(a.ReadUrgent(false, &ua), 0);
  EXPECT_EQ(b.ReadUrgent(false, &ub), 0);
  EXPECT_EQ(ua, std::byte{0x5A});
  EXPECT_EQ(ub, std::byte{0x5A});
  both(AppConsumed{a.RecvState().readable});
  EXPECT_TRUE(a.AtUrgentMark());
  EXPECT_TRUE(b.AtUrgentMark());
  const wire::Cursor prod = wire::CursorAdd({0, 50000}, 20000, kRing);
  both(PeerCdc(prod, wire::CursorAdd({0, 0}, 70000, kRing),
               /*urgent=*/true, /*done_writing=*/true));
  EXPECT_TRUE(a.RecvState().eof);
  EXPECT_TRUE(b.RecvState().eof);
  both(AppClose{});
  EXPECT_EQ(a.close_state(), b.close_state());
  const ConnectionStats sa = a.Stats(), sb = b.Stats();
  EXPECT_EQ(sa.tx_producer, sb.tx_producer);
  EXPECT_EQ(sa.rx_consumer, sb.rx_consumer);
  EXPECT_EQ(sa.counters, sb.counters);
  ASSERT_TRUE(a.Snapshot().ok());
  ASSERT_TRUE(b.Snapshot().ok());
  EXPECT_EQ(*a.Snapshot(), *b.Snapshot());
}

TEST(Snapshot, RestoredConnectionBehavesLikeTheOriginal) {
  SeededEntropy e1(1), e2(2);
  Connection orig(TestParams(Role::kClient), &e1);
  MakeSmcd(orig);
  Traffic(orig);
  Result<ConnectionSnapshot> s = orig.Snapshot();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->link.local_dmb_token, 0xBEEFu);
  EXPECT_EQ(s->link.peer_dmb_token, 0xD00Du);
  EXPECT_EQ(s->data.urgent_state, UrgentState::kValid);
  EXPECT_TRUE(s->data.write_blocked);
  EXPECT_EQ(s->counters.bytes_sent, 70000u);

  Connection copy(TestParams(Role::kClient), &e2);
  ASSERT_TRUE(copy.Restore(*s).ok());
  EXPECT_EQ(copy.mode(), Mode::kSmc);
  ASSERT_NE(copy.link(), nullptr);
  EXPECT_EQ(*copy.link(), *orig.link());
  ASSERT_TRUE(copy.Snapshot().ok());
  EXPECT_EQ(*copy.Snapshot(), *s);
  ExpectSameBehaviour(orig, copy);
}

TEST(Snapshot, EveryCloseStateRoundTrips) {
  // Shut down write, then the peer closes: APPFINCLOSEWAIT; then close().
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  MakeSmcd(c);
  (void)c.OnEvent(AppShutdown{.read = false, .write = true}, kNow);
  wire::CdcMessage m;
  m.conn_state.peer_conn_closed = true;
  CdcArrived closed;
  ASSERT_TRUE(wire::EncodeSmcdCdc(m, closed.area).ok());
  (void)c.OnEvent(closed, kNow);
  ASSERT_EQ(c.close_state(), CloseState::kAppFinCloseWait);
  Result<ConnectionSnapshot> s = c.Snapshot();
  ASSERT_TRUE(s.ok());
  SeededEntropy e2(2);
  Connection copy(TestParams(Role::kClient), &e2);
  ASSERT_TRUE(copy.Restore(*s).ok());
  EXPECT_EQ(copy.close_state(), CloseState::kAppFinCloseWait);
  EXPECT_EQ(copy.SendError(), EPIPE);
  EXPECT_TRUE(copy.RecvState().eof);
  // The last close finishes both the same way.
  EXPECT_EQ(Describe(c.OnEvent(AppClose{}, kNow)),
            Describe(copy.OnEvent(AppClose{}, kNow)));
  EXPECT_EQ(copy.close_state(), CloseState::kClosed);
  // A finished connection still has a snapshot (and it restores).
  Result<ConnectionSnapshot> done = copy.Snapshot();
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(done->finished);
  SeededEntropy e3(3);
  Connection again(TestParams(Role::kClient), &e3);
  EXPECT_TRUE(again.Restore(*done).ok());
}

TEST(Snapshot, NoSnapshotOutsideSmcd) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  EXPECT_EQ(c.Snapshot().status().code(), StatusCode::kFailedPrecondition);
  (void)c.OnEvent(Start{}, kNow);  // handshake running
  Result<ConnectionSnapshot> s = c.Snapshot();
  EXPECT_EQ(s.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("mode handshake"), std::string::npos)
      << s.status();

  EngineParams p = TestParams(Role::kClient);
  p.smcd_enabled = false;
  Connection tcp(p, &e);
  (void)tcp.OnEvent(Start{}, kNow);
  ASSERT_EQ(tcp.mode(), Mode::kTcp);
  EXPECT_EQ(tcp.Snapshot().status().code(), StatusCode::kFailedPrecondition);
}

class SnapshotReject : public ::testing::Test {
 protected:
  void SetUp() override {
    Connection c(TestParams(Role::kClient), &e_);
    MakeSmcd(c);
    Traffic(c);
    Result<ConnectionSnapshot> s = c.Snapshot();
    ASSERT_TRUE(s.ok());
    good_ = *s;
  }
  // Restore must refuse `s` with kInvalidArgument naming `what`, and leave
  // the connection fresh (a good snapshot still restores afterwards).
  void ExpectRejected(const ConnectionSnapshot& s, std::string_view what,
                      Role role = Role::kClient) {
    Connection c(TestParams(role), &e_);
    Status st = c.Restore(s);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
    EXPECT_NE(st.message().find(what), std::string::npos) << st;
    EXPECT_EQ(c.mode(), Mode::kHandshake);
    if (role == Role::kClient) {
      EXPECT_TRUE(c.Restore(good_).ok());
    }
  }
  SeededEntropy e_{1};
  ConnectionSnapshot good_;
};

TEST_F(SnapshotReject, GoodSnapshotPasses) {
  EXPECT_EQ(CheckSnapshot(good_), "");
}

TEST_F(SnapshotReject, CursorOutsideItsRing) {
  ConnectionSnapshot s = good_;
  s.data.peer_producer.count = kRing;
  ExpectRejected(s, "cursor outside its ring");
}

TEST_F(SnapshotReject, ConsumerAheadOfProducer) {
  ConnectionSnapshot s = good_;
  s.data.rx_consumer = wire::CursorAdd(s.data.peer_producer, 1, kRing);
  s.data.urgent_byte_skipped = true;  // not the urgent check
  ExpectRejected(s, "rx cursors out of order");
}

TEST_F(SnapshotReject, ProducerMoreThanOneRingAhead) {
  ConnectionSnapshot s = good_;
  s.data.tx_producer.wrap =
      static_cast<uint16_t>(s.data.peer_consumer.wrap + 2);
  ExpectRejected(s, "tx producer");
}

TEST_F(SnapshotReject, UrgentMarkOutsideReadableBytes) {
  ConnectionSnapshot s = good_;
  ASSERT_FALSE(s.data.urgent_byte_skipped);
  s.data.urgent_mark = wire::CursorAdd(s.data.rx_consumer, 1, kRing);
  ExpectRejected(s, "urgent mark");
  s.data.urgent_mark = wire::CursorAdd(s.data.peer_producer, 1, kRing);
  ExpectRejected(s, "urgent mark");
}

TEST_F(SnapshotReject, EnumsOutOfRange) {
  ConnectionSnapshot s = good_;
  s.data.urgent_state = static_cast<UrgentState>(9);
  ExpectRejected(s, "urgent state");
  s = good_;
  s.close.state = static_cast<CloseState>(200);
  ExpectRejected(s, "close state");
}

TEST_F(SnapshotReject, SizesTokensFlagsAndErrors) {
  ConnectionSnapshot s = good_;
  s.link.peer_dmb_size = 100;
  ExpectRejected(s, "DMB size");
  s = good_;
  s.link.local_dmb_token = 0;
  ExpectRejected(s, "token");
  s = good_;
  s.close.abort_sent = true;  // ACTIVE with a flag
  ExpectRejected(s, "ACTIVE");
  s = good_;
  s.error = EINVAL;
  ExpectRejected(s, "error");
  s = good_;
  s.finished = true;
  ExpectRejected(s, "finished");
}

TEST_F(SnapshotReject, OtherRoleOrDevice) {
  ExpectRejected(good_, "other role", Role::kServer);
  ConnectionSnapshot s = good_;
  s.link.local_device.gid ^= 1;
  ExpectRejected(s, "device");
}

TEST_F(SnapshotReject, OnlyIntoAFreshConnection) {
  Connection c(TestParams(Role::kClient), &e_);
  (void)c.OnEvent(Start{}, kNow);
  EXPECT_EQ(c.Restore(good_).code(), StatusCode::kFailedPrecondition);
  Connection d(TestParams(Role::kClient), &e_);
  ASSERT_TRUE(d.Restore(good_).ok());
  EXPECT_EQ(d.Restore(good_).code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace usmc::engine
