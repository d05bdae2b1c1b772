// Connection: routing by mode and the connection-level InvalidEvent path,
// driven by hand (the full client/server runs are in dev/sim_test.cc).
#include "engine/connection.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <optional>
#include <string>

#include "engine/clc_common.h"
#include "engine/clc_smcr.h"
#include "engine/snapshot.h"
#include "engine/test_util.h"
#include "wire/cdc.h"
#include "wire/reason.h"

namespace usmc::engine {
namespace {

using namespace testing;  // NOLINT

constexpr TimePoint kNow{std::chrono::seconds(1)};

TEST(Connection, StartsInHandshakeAndReportsDeadline) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  EXPECT_EQ(c.mode(), Mode::kHandshake);
  EXPECT_EQ(c.handshake_state(), "INIT");
  EXPECT_FALSE(c.NextDeadline().has_value());
  Actions out = c.OnEvent(Start{}, kNow);
  ExpectActions<SendTcp, ArmTimer>(out);
  EXPECT_EQ(c.NextDeadline(), kNow + kClcTimeout);
  EXPECT_EQ(c.SendError(), ENOTCONN);
  EXPECT_EQ(c.PlanSend(10).total, 0u);
  EXPECT_EQ(c.RecvState().error, ENOTCONN);
}

TEST(Connection, AppDataDuringHandshakeIsInvalidAndFallsBack) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  (void)c.OnEvent(Start{}, kNow);
  Actions out = c.OnEvent(AppSent{.len = 5}, kNow);
  ASSERT_GE(out.size(), 1u);
  EXPECT_EQ(Nth<ReportError>(out, 0).err, EINVAL);
  EXPECT_NE(Nth<ReportError>(out, 0).what.find("AppSent"), std::string::npos);
  const Fallback* f = FindAction<Fallback>(out);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->local_reason, wire::kReasonIntErr);
  EXPECT_EQ(c.mode(), Mode::kTcp);
  EXPECT_EQ(c.Stats().local_reason, wire::kReasonIntErr);
}

TEST(Connection, AfterFallbackOnlyReports) {
  SeededEntropy e(1);
  EngineParams p = TestParams(Role::kClient);
  p.smcd_enabled = false;
  Connection c(p, &e);
  (void)c.OnEvent(Start{}, kNow);
  ASSERT_EQ(c.mode(), Mode::kTcp);
  ExpectActions<>(c.OnEvent(Timeout{}, kNow));  // stale timer: harmless
  Actions out = c.OnEvent(AppClose{}, kNow);
  ExpectActions<ReportError>(out);
  EXPECT_EQ(c.mode(), Mode::kTcp);
}

TEST(Connection, CutShortTimeoutDeclinesBeforeTheDeadline) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  (void)c.OnEvent(Start{}, kNow);
  // A plain Timeout before the deadline is stale; a cut-short one is not.
  ExpectActions<>(c.OnEvent(Timeout{}, kNow));
  ASSERT_EQ(c.mode(), Mode::kHandshake);
  Actions out = c.OnEvent(Timeout{.cut_short = true}, kNow);
  const SendTcp* decline = FindAction<SendTcp>(out);
  ASSERT_NE(decline, nullptr);
  const Fallback* f = FindAction<Fallback>(out);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->local_reason, wire::kReasonTimeoutCl);
  EXPECT_EQ(c.mode(), Mode::kTcp);
  // No timer runs any more: nothing left to cut short.
  ExpectActions<>(c.OnEvent(Timeout{.cut_short = true}, kNow));
}

TEST(Connection, AppCloseDuringHandshakeClosesTcp) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kServer), &e);
  (void)c.OnEvent(Start{}, kNow);
  Actions out = c.OnEvent(AppClose{}, kNow);
  ExpectActions<CancelTimer, CloseTcp>(out);
  EXPECT_EQ(c.mode(), Mode::kFailed);
}

TEST(Connection, StatsNameTheRole) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kServer), &e);
  const ConnectionStats s = c.Stats();
  EXPECT_EQ(s.role, Role::kServer);
  EXPECT_EQ(s.mode, Mode::kHandshake);
  EXPECT_EQ(s.handshake_state, "INIT");
  EXPECT_EQ(s.counters.bytes_sent, 0u);
}

// ---- close and errors as TCP reports them (SMC-D mode, driven by hand) ----

constexpr uint32_t kDmb = 64 * 1024;  // both DMBs, CDC area included

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

// The peer's CDC: `produced` bytes in our ring in all, with these flags.
CdcArrived PeerArea(uint32_t produced, bool done_writing, bool closed,
                    bool abort) {
  wire::CdcMessage m;
  m.producer = {0, produced};
  m.conn_state.peer_done_writing = done_writing;
  m.conn_state.peer_conn_closed = closed;
  m.conn_state.peer_conn_abort = abort;
  CdcArrived e;
  EXPECT_TRUE(wire::EncodeSmcdCdc(m, e.area).ok());
  return e;
}

wire::CdcMessage Published(const Actions& out) {
  const PostCdc* p = FindAction<PostCdc>(out);
  EXPECT_NE(p, nullptr);
  if (p == nullptr) return {};
  wire::WireResult<wire::CdcMessage> m = wire::DecodeSmcdCdc(p->area);
  EXPECT_TRUE(m.ok());
  return m.ok() ? *m : wire::CdcMessage{};
}

// A small read waits for the update rule; one the runtime asks to confirm
// (the connection is shared with a forked process) publishes the consumer
// cursor at once.

TEST(ConnectionClose, ReportedErrorSurvivesSnapshot) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  MakeSmcd(c);
  (void)c.OnEvent(PeerArea(0, false, false, true), kNow);
  (void)c.OnEvent(AppErrorReported{}, kNow);
  Result<ConnectionSnapshot> s = c.Snapshot();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->error, ECONNRESET);
  EXPECT_TRUE(s->error_seen);
  SeededEntropy e2(2);
  Connection r(TestParams(Role::kClient), &e2);
  ASSERT_TRUE(r.Restore(*s).ok());
  EXPECT_EQ(r.PendingError(), 0);
  EXPECT_EQ(r.SendError(), EPIPE);
  EXPECT_TRUE(r.RecvState().eof);
  ConnectionSnapshot bad = *s;
  bad.error = 0;  // seen, but which error?
  Connection fresh(TestParams(Role::kClient), &e2);
  EXPECT_EQ(fresh.Restore(bad).code(), StatusCode::kInvalidArgument);
}

// ---- fork: another process published for this connection (SiblingPublished)

constexpr uint32_t kRing = kDmb - wire::kSmcdCdcLen;

wire::CdcMessage Cdc(wire::Cursor producer, wire::Cursor consumer) {
  wire::CdcMessage m;
  m.producer = producer;
  m.consumer = consumer;
  return m;
}

std::array<std::byte, 32> Area(const wire::CdcMessage& m) {
  std::array<std::byte, 32> a{};
  EXPECT_TRUE(wire::EncodeSmcdCdc(m, a).ok());
  return a;
}

// `published`: what the sibling stored in the peer's DMB; `peer`: the
// peer's latest CDC in ours (none: all zero).
SiblingPublished Sibling(const wire::CdcMessage& published,
                         const wire::CdcMessage* peer = nullptr) {
  SiblingPublished e;
  e.published = Area(published);
  if (peer != nullptr) e.peer_area = Area(*peer);
  return e;
}

void SendBytes(Connection& c, uint32_t n) {
  ASSERT_EQ(c.PlanSend(n).total, n);
  (void)c.OnEvent(AppSent{.len = n}, kNow);
}

void ExpectAborted(Connection& c, const Actions& out) {
  const ReportError* r = FindAction<ReportError>(out);
  ASSERT_NE(r, nullptr) << Describe(out);
  EXPECT_EQ(r->err, ECONNABORTED);
  EXPECT_EQ(c.close_state(), CloseState::kPeerAbortWait);
  EXPECT_EQ(c.counters().violations, 1u);
  EXPECT_NE(FindAction<AbortTcp>(out), nullptr);
}

TEST(ConnectionSibling, ProducerIsTakenExactly) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  MakeSmcd(c);
  SendBytes(c, 100);
  // The sibling sent 200 more after ours.
  ExpectActions<>(c.OnEvent(Sibling(Cdc({0, 300}, {0, 0})), kNow));
  EXPECT_EQ(c.Stats().tx_producer, (wire::Cursor{0, 300}));
  EXPECT_EQ(c.SendSpace(), kRing - 300);
  // Our next bytes follow the sibling's.
  EXPECT_EQ(c.PlanSend(10).chunks[0].offset, wire::kSmcdCdcLen + 300);
  EXPECT_EQ(Published(c.OnEvent(AppSent{.len = 10}, kNow)).producer,
            (wire::Cursor{0, 310}));
}

TEST(ConnectionSibling, ConsumerIsWhatTheSiblingConfirmed) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  MakeSmcd(c);
  (void)c.OnEvent(PeerArea(100, false, false, false), kNow);
  // The sibling read 40 bytes (maybe more: what it read without
  // confirming is read again here).
  ExpectActions<>(c.OnEvent(Sibling(Cdc({0, 0}, {0, 40})), kNow));
  EXPECT_EQ(c.Stats().rx_consumer, (wire::Cursor{0, 40}));
  EXPECT_EQ(c.RecvState().readable, 60u);
  EXPECT_EQ(c.PlanRecv(100).chunks[0].offset, wire::kSmcdCdcLen + 40);
  const wire::CdcMessage m =
      Published(c.OnEvent(AppConsumed{.len = 10, .confirm = true}, kNow));
  EXPECT_EQ(m.consumer, (wire::Cursor{0, 50}));
}

TEST(ConnectionSibling, OurReadsAreNotTakenBackButConfirmedAgain) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  MakeSmcd(c);
  (void)c.OnEvent(PeerArea(100, false, false, false), kNow);
  (void)c.OnEvent(AppConsumed{.len = 50, .confirm = true}, kNow);
  // A sibling published after us with an older consumer.
  ExpectActions<>(c.OnEvent(Sibling(Cdc({0, 0}, {0, 20})), kNow));
  EXPECT_EQ(c.Stats().rx_consumer, (wire::Cursor{0, 50}));
  EXPECT_EQ(c.RecvState().readable, 50u);
  // The peer only knows 20: the next confirmation says 50 + 1.
  const wire::CdcMessage m =
      Published(c.OnEvent(AppConsumed{.len = 1, .confirm = true}, kNow));
  EXPECT_EQ(m.consumer, (wire::Cursor{0, 51}));
}

TEST(ConnectionSibling, PeerProducerMovesOnlyForward) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  MakeSmcd(c);
  (void)c.OnEvent(PeerArea(100, false, false, false), kNow);
  // The sibling read bytes we have not seen arrive yet.
  (void)c.OnEvent(Sibling(Cdc({0, 0}, {0, 150})), kNow);
  EXPECT_EQ(c.Stats().peer_producer, (wire::Cursor{0, 150}));
  EXPECT_EQ(c.RecvState().readable, 0u);
  // The peer's CDC then shows the rest, validated from there.
  (void)c.OnEvent(PeerArea(200, false, false, false), kNow);
  EXPECT_EQ(c.RecvState().readable, 50u);
  EXPECT_EQ(c.counters().violations, 0u);
}

TEST(ConnectionSibling, PeerConsumerFromItsLatestCdcMovesOnlyForward) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  MakeSmcd(c);
  SendBytes(c, 100);
  (void)c.OnEvent(PeerArea(0, false, false, false), kNow);  // consumer 0
  const wire::CdcMessage peer = Cdc({0, 0}, {0, 60});
  (void)c.OnEvent(Sibling(Cdc({0, 100}, {0, 0}), &peer), kNow);
  EXPECT_EQ(c.Stats().peer_consumer, (wire::Cursor{0, 60}));
  EXPECT_EQ(c.SendSpace(), kRing - 40);
  const wire::CdcMessage older = Cdc({0, 0}, {0, 10});
  ExpectActions<>(c.OnEvent(Sibling(Cdc({0, 110}, {0, 0}), &older), kNow));
  EXPECT_EQ(c.Stats().peer_consumer, (wire::Cursor{0, 60}));
  EXPECT_EQ(c.Stats().tx_producer, (wire::Cursor{0, 110}));
  EXPECT_EQ(c.counters().violations, 0u);
}

TEST(ConnectionSibling, SiblingReadPastTheUrgentByte) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  MakeSmcd(c);
  wire::CdcMessage m = Cdc({0, 10}, {0, 0});
  m.prod_flags.urg_data_present = true;  // byte 9 is urgent
  CdcArrived urgent;
  urgent.area = Area(m);
  (void)c.OnEvent(urgent, kNow);
  ASSERT_EQ(c.RecvState().readable, 9u);
  const Actions out = c.OnEvent(Sibling(Cdc({0, 0}, {0, 10})), kNow);
  EXPECT_EQ(c.counters().violations, 0u) << Describe(out);
  EXPECT_EQ(c.RecvState().readable, 0u);
  EXPECT_TRUE(c.AtUrgentMark());
}

TEST(ConnectionSibling, NothingPublishedOrDeadChangesNothing) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  MakeSmcd(c);
  SendBytes(c, 100);
  ExpectActions<>(c.OnEvent(SiblingPublished{}, kNow));
  EXPECT_EQ(c.Stats().tx_producer, (wire::Cursor{0, 100}));
  (void)c.OnEvent(DeviceFailed{}, kNow);
  ExpectActions<>(c.OnEvent(Sibling(Cdc({9, 9}, {9, 9})), kNow));
  EXPECT_EQ(c.Stats().tx_producer, (wire::Cursor{0, 100}));
}

// The peer can write both areas: an impossible value is a hostile CDC.
TEST(ConnectionSibling, ImpossibleValuesAbort) {
  const wire::CdcMessage too_far = Cdc({0, 0}, {0, 200});
  const wire::CdcMessage outside = Cdc({0, 0}, {0, kRing});
  struct Case {
    const char* what;
    SiblingPublished event;
  } cases[] = {
      {"producer outside the peer ring", Sibling(Cdc({0, kRing}, {0, 0}))},
      {"consumer outside our ring", Sibling(Cdc({0, 100}, {0, kRing + 5}))},
      {"producer more than a ring ahead", Sibling(Cdc({2, 100}, {0, 0}))},
      {"producer behind the peer's consumer",
       Sibling(Cdc({0, 100}, {0, 0}), &too_far)},
      {"peer consumer outside the peer ring",
       Sibling(Cdc({0, 100}, {0, 0}), &outside)},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    SeededEntropy e(1);
    Connection c(TestParams(Role::kClient), &e);
    MakeSmcd(c);
    SendBytes(c, 100);
    ExpectAborted(c, c.OnEvent(k.event, kNow));
    EXPECT_EQ(c.PendingError(), ECONNABORTED);
    // Nothing was taken over.
    EXPECT_EQ(c.Stats().tx_producer, (wire::Cursor{0, 100}));
  }
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  MakeSmcd(c);
  SiblingPublished garbage = Sibling(Cdc({0, 0}, {0, 0}));
  garbage.published[0] = std::byte{0x01};  // not a CDC
  ExpectAborted(c, c.OnEvent(garbage, kNow));
  Connection c2(TestParams(Role::kClient), &e);
  MakeSmcd(c2);
  garbage = Sibling(Cdc({0, 0}, {0, 0}));
  garbage.peer_area[0] = std::byte{0x01};
  ExpectAborted(c2, c2.OnEvent(garbage, kNow));
}

// ---- the peer's process died (PeerVanished) ----

// ---- the same connection tests over both transports ----
//
// Close, errors and data over SMC-D (32-byte CDC area in the DMB) and SMC-R
// (ring = whole RMBE, CDC as a 44-byte SEND with seqno and token): the data
// path and close machine are shared, so every assertion holds for both.
class SmcBoth : public ::testing::TestWithParam<Technology> {
 protected:
  bool Smcr() const { return GetParam() == Technology::kSmcr; }
  EngineParams Params() const {
    EngineParams p = TestParams(Role::kClient);
    if (Smcr()) {
      p.smcd_enabled = false;
      p.smcr_enabled = true;
      p.smcr.rmb_size = kDmb;
    }
    return p;
  }
  // A client driven by hand through the handshake into SMC.
  void MakeSmcd(Connection& c) {
    if (!Smcr()) {
      engine::MakeSmcd(c);
      return;
    }
    (void)c.OnEvent(Start{}, kNow);
    SmcrLink l;
    l.first_contact = true;
    l.local_token = 9;
    l.local_qpn = 0x22;
    l.local_rmb_size = kDmb;
    l.max_conns = 255;
    l.max_links = 1;
    EngineParams server = Params();
    server.role = Role::kServer;
    const wire::ClcSmcrAccept a =
        BuildSmcrAccept(wire::ClcType::kAccept, server, l);
    (void)c.OnEvent(TcpBytes{EncodeClcBytes(a)}, kNow);
    (void)c.OnEvent(SmcrLgrJoined{true, kToken, {}, 0x11, 0x123}, kNow);
    (void)c.OnEvent(SmcrLinkUp{}, kNow);
    ASSERT_EQ(c.mode(), Mode::kSmc);
    ASSERT_EQ(c.technology(), Technology::kSmcr);
  }
  Event PeerCdc(wire::CdcMessage m) {
    if (!Smcr()) {
      CdcArrived e;
      EXPECT_TRUE(wire::EncodeSmcdCdc(m, e.area).ok());
      return e;
    }
    m.seqno = ++seqno_;
    m.alert_token = kToken;
    SmcrCdcReceived e;
    EXPECT_TRUE(wire::EncodeCdc(m, e.bytes).ok());
    return e;
  }
  Event PeerArea(uint32_t produced, bool done_writing, bool closed,
                 bool abort) {
    wire::CdcMessage m;
    m.producer = {0, produced};
    m.conn_state.peer_done_writing = done_writing;
    m.conn_state.peer_conn_closed = closed;
    m.conn_state.peer_conn_abort = abort;
    return PeerCdc(m);
  }
  // The CDC published in `out`, if any.
  std::optional<wire::CdcMessage> FindPublished(const Actions& out) const {
    if (const PostCdc* p = FindAction<PostCdc>(out)) {
      wire::WireResult<wire::CdcMessage> m = wire::DecodeSmcdCdc(p->area);
      if (m.ok()) return *m;
    }
    if (const PostSend* p = FindAction<PostSend>(out)) {
      wire::WireResult<wire::CdcMessage> m = wire::DecodeCdc(p->bytes);
      if (m.ok()) return *m;
    }
    return std::nullopt;
  }
  wire::CdcMessage Published(const Actions& out) const {
    std::optional<wire::CdcMessage> m = FindPublished(out);
    EXPECT_TRUE(m.has_value()) << Describe(out);
    return m.value_or(wire::CdcMessage{});
  }

  static constexpr uint32_t kToken = 1;
  uint16_t seqno_ = 0;
};

class ConnectionClose : public SmcBoth {};
class ConnectionData : public SmcBoth {};
class ConnectionPeerVanished : public SmcBoth {};

std::string TechName(const ::testing::TestParamInfo<Technology>& info) {
  return info.param == Technology::kSmcd ? "Smcd" : "Smcr";
}
INSTANTIATE_TEST_SUITE_P(Transports, ConnectionClose,
                         ::testing::Values(Technology::kSmcd,
                                           Technology::kSmcr),
                         TechName);
INSTANTIATE_TEST_SUITE_P(Transports, ConnectionData,
                         ::testing::Values(Technology::kSmcd,
                                           Technology::kSmcr),
                         TechName);
INSTANTIATE_TEST_SUITE_P(Transports, ConnectionPeerVanished,
                         ::testing::Values(Technology::kSmcd,
                                           Technology::kSmcr),
                         TechName);

TEST_P(ConnectionClose, CloseWithUnreadDataSendsAbortNotClosed) {
  SeededEntropy e(1);
  Connection c(Params(), &e);
  MakeSmcd(c);
  (void)c.OnEvent(PeerArea(100, false, false, false), kNow);
  ASSERT_EQ(c.RecvState().readable, 100u);
  const wire::CdcMessage m = Published(c.OnEvent(AppClose{}, kNow));
  EXPECT_TRUE(m.conn_state.peer_conn_abort);  // the peer sees ECONNRESET
  EXPECT_FALSE(m.conn_state.peer_conn_closed);
}
TEST_P(ConnectionData, ConfirmedReadPublishesTheConsumerAtOnce) {
  SeededEntropy e(1);
  Connection c(Params(), &e);
  MakeSmcd(c);
  (void)c.OnEvent(PeerArea(100, false, false, false), kNow);
  EXPECT_FALSE(FindPublished(c.OnEvent(AppConsumed{10}, kNow)).has_value());
  const wire::CdcMessage m =
      Published(c.OnEvent(AppConsumed{.len = 20, .confirm = true}, kNow));
  EXPECT_EQ(m.consumer.count, 30u);
  EXPECT_FALSE(
      FindPublished(c.OnEvent(AppConsumed{.len = 0, .confirm = true}, kNow))
          .has_value());
}
TEST_P(ConnectionClose, CloseWithEverythingReadSendsClosed) {
  SeededEntropy e(1);
  Connection c(Params(), &e);
  MakeSmcd(c);
  (void)c.OnEvent(PeerArea(100, false, false, false), kNow);
  (void)c.OnEvent(AppConsumed{100}, kNow);
  const wire::CdcMessage m = Published(c.OnEvent(AppClose{}, kNow));
  EXPECT_TRUE(m.conn_state.peer_conn_closed);
  EXPECT_FALSE(m.conn_state.peer_conn_abort);
}
TEST_P(ConnectionClose, PeerAbortKeepsEarlierBytesThenResetOnceThenEof) {
  SeededEntropy e(1);
  Connection c(Params(), &e);
  MakeSmcd(c);
  // The peer's reply and its abort (it closed with our bytes unread).
  Actions out = c.OnEvent(PeerArea(30, false, false, true), kNow);
  ASSERT_NE(FindAction<ReportError>(out), nullptr);
  EXPECT_EQ(FindAction<ReportError>(out)->err, ECONNRESET);
  EXPECT_EQ(c.PendingError(), ECONNRESET);
  EXPECT_TRUE(c.HungUp());
  EXPECT_EQ(c.SendError(), ECONNRESET);
  EXPECT_FALSE(c.SendDiscards());
  // TCP reads what came before the RST first.
  RecvStatus st = c.RecvState();
  EXPECT_EQ(st.readable, 30u);
  EXPECT_EQ(st.error, 0);
  EXPECT_TRUE(st.read_closed);
  EXPECT_EQ(c.PlanRecv(100).total, 30u);
  (void)c.OnEvent(AppConsumed{30}, kNow);
  st = c.RecvState();
  EXPECT_EQ(st.error, ECONNRESET);
  EXPECT_FALSE(st.eof);
  // Reported once (a send or a recv got it): then EPIPE and EOF.
  ExpectActions<>(c.OnEvent(AppErrorReported{}, kNow));
  EXPECT_EQ(c.PendingError(), 0);
  EXPECT_EQ(c.SendError(), EPIPE);
  st = c.RecvState();
  EXPECT_EQ(st.error, 0);
  EXPECT_TRUE(st.eof);
  EXPECT_TRUE(c.HungUp());
}
TEST_P(ConnectionClose, SendAfterPeerClosedIsTakenOnceThenEpipe) {
  SeededEntropy e(1);
  Connection c(Params(), &e);
  MakeSmcd(c);
  (void)c.OnEvent(PeerArea(5, true, true, false), kNow);
  EXPECT_EQ(c.close_state(), CloseState::kAppCloseWait1);
  EXPECT_EQ(c.PendingError(), 0);
  EXPECT_FALSE(c.HungUp());  // TCP after a FIN: only RDHUP
  EXPECT_TRUE(c.RecvState().read_closed);
  // TCP accepts one more send; the closed peer answers it with a reset.
  EXPECT_EQ(c.SendError(), 0);
  EXPECT_TRUE(c.SendDiscards());
  EXPECT_EQ(c.SendSpace(), 0u);
  EXPECT_EQ(c.PlanSend(10).total, 0u);
  Actions out = c.OnEvent(AppSentToClosedPeer{}, kNow);
  EXPECT_FALSE(FindPublished(out).has_value());  // nothing reaches it
  ASSERT_NE(FindAction<NotifyApp>(out), nullptr);
  EXPECT_FALSE(c.SendDiscards());
  EXPECT_EQ(c.SendError(), EPIPE);
  EXPECT_EQ(c.PendingError(), EPIPE);  // POLLERR
  EXPECT_TRUE(c.HungUp());
  // The reset came after the FIN: recv still sees the bytes, then EOF.
  RecvStatus st = c.RecvState();
  EXPECT_EQ(st.readable, 5u);
  (void)c.OnEvent(AppConsumed{5}, kNow);
  st = c.RecvState();
  EXPECT_EQ(st.error, 0);
  EXPECT_TRUE(st.eof);
  (void)c.OnEvent(AppErrorReported{}, kNow);
  EXPECT_EQ(c.PendingError(), 0);
  EXPECT_EQ(c.SendError(), EPIPE);
  // A second discard is not possible.
  out = c.OnEvent(AppSentToClosedPeer{}, kNow);
  ASSERT_NE(FindAction<ReportError>(out), nullptr);
  EXPECT_EQ(FindAction<ReportError>(out)->err, EINVAL);
}
TEST_P(ConnectionClose, PeerShutdownWriteOnlyStillTakesData) {
  SeededEntropy e(1);
  Connection c(Params(), &e);
  MakeSmcd(c);
  (void)c.OnEvent(PeerArea(0, true, false, false), kNow);
  EXPECT_FALSE(c.SendDiscards());
  EXPECT_EQ(c.SendError(), 0);
  EXPECT_GT(c.SendSpace(), 0u);
  EXPECT_TRUE(c.RecvState().eof);
  EXPECT_FALSE(c.HungUp());
}
TEST_P(ConnectionClose, AbortAfterPeerShutdownIsEpipeAndEof) {
  SeededEntropy e(1);
  Connection c(Params(), &e);
  MakeSmcd(c);
  (void)c.OnEvent(PeerArea(0, true, false, false), kNow);
  Actions out = c.OnEvent(PeerArea(0, true, false, true), kNow);
  ASSERT_NE(FindAction<ReportError>(out), nullptr);
  EXPECT_EQ(FindAction<ReportError>(out)->err, EPIPE);
  EXPECT_EQ(c.PendingError(), EPIPE);
  EXPECT_EQ(c.SendError(), EPIPE);
  EXPECT_EQ(c.RecvState().error, 0);  // TCP: the FIN came first
  EXPECT_TRUE(c.RecvState().eof);
}
TEST_P(ConnectionPeerVanished, AfterItsCloseNothingHappens) {
  SeededEntropy e(1);
  Connection c(Params(), &e);
  MakeSmcd(c);
  SendBytes(c, 100);  // unread by the peer, yet it closed first
  (void)c.OnEvent(PeerArea(5, true, true, false), kNow);
  ASSERT_TRUE(c.PeerClosed());
  ExpectActions<>(c.OnEvent(PeerVanished{}, kNow));
  EXPECT_EQ(c.close_state(), CloseState::kAppCloseWait1);
  EXPECT_EQ(c.PendingError(), 0);
  // And after its abort.
  Connection a(Params(), &e);
  MakeSmcd(a);
  (void)a.OnEvent(PeerArea(0, false, false, true), kNow);
  ExpectActions<>(a.OnEvent(PeerVanished{}, kNow));
  EXPECT_EQ(a.close_state(), CloseState::kProcessAbort);
}
TEST_P(ConnectionPeerVanished, DataOfOursUnreadIsAReset) {
  SeededEntropy e(1);
  Connection c(Params(), &e);
  MakeSmcd(c);
  (void)c.OnEvent(PeerArea(30, false, false, false), kNow);
  SendBytes(c, 100);
  EXPECT_FALSE(c.PeerClosed());
  Actions out = c.OnEvent(PeerVanished{}, kNow);
  ASSERT_NE(FindAction<ReportError>(out), nullptr) << Describe(out);
  EXPECT_EQ(FindAction<ReportError>(out)->err, ECONNRESET);
  EXPECT_NE(FindAction<NotifyApp>(out), nullptr);
  EXPECT_EQ(c.close_state(), CloseState::kProcessAbort);
  EXPECT_EQ(c.counters().violations, 0u);
  // TCP reads what came before the RST first.
  EXPECT_EQ(c.RecvState().readable, 30u);
  EXPECT_EQ(c.SendError(), ECONNRESET);
}
TEST_P(ConnectionPeerVanished, EverythingReadIsAnOrderlyClose) {
  SeededEntropy e(1);
  Connection c(Params(), &e);
  MakeSmcd(c);
  SendBytes(c, 100);
  (void)c.OnEvent(PeerArea(30, false, false, false), kNow);
  // The peer consumed everything we sent.
  wire::CdcMessage m = Cdc({0, 30}, {0, 100});
  (void)c.OnEvent(PeerCdc(m), kNow);
  Actions out = c.OnEvent(PeerVanished{}, kNow);
  EXPECT_EQ(FindAction<ReportError>(out), nullptr) << Describe(out);
  EXPECT_NE(FindAction<NotifyApp>(out), nullptr);
  EXPECT_EQ(c.close_state(), CloseState::kAppCloseWait1);
  EXPECT_TRUE(c.PeerClosed());
  EXPECT_EQ(c.PendingError(), 0);
  // Its FIN: the data here first, then EOF.
  EXPECT_EQ(c.RecvState().readable, 30u);
  (void)c.OnEvent(AppConsumed{30}, kNow);
  EXPECT_TRUE(c.RecvState().eof);
  // A closed peer: TCP takes one more send, then resets.
  EXPECT_TRUE(c.SendDiscards());
  // And our close finishes the connection.
  out = c.OnEvent(AppClose{}, kNow);
  EXPECT_NE(FindAction<CloseTcp>(out), nullptr);
}
TEST_P(ConnectionPeerVanished, ResetAfterItsShutdownIsEpipe) {
  SeededEntropy e(1);
  Connection c(Params(), &e);
  MakeSmcd(c);
  (void)c.OnEvent(PeerArea(0, true, false, false), kNow);  // its FIN
  SendBytes(c, 10);
  Actions out = c.OnEvent(PeerVanished{}, kNow);
  ASSERT_NE(FindAction<ReportError>(out), nullptr);
  EXPECT_EQ(FindAction<ReportError>(out)->err, EPIPE);
  EXPECT_TRUE(c.RecvState().eof);
}
TEST_P(ConnectionPeerVanished, AfterOurCloseItFinishes) {
  SeededEntropy e(1);
  Connection c(Params(), &e);
  MakeSmcd(c);
  (void)c.OnEvent(AppClose{}, kNow);
  ASSERT_EQ(c.close_state(), CloseState::kPeerCloseWait1);
  Actions out = c.OnEvent(PeerVanished{}, kNow);
  EXPECT_EQ(c.close_state(), CloseState::kClosed);
  EXPECT_NE(FindAction<CloseTcp>(out), nullptr);
  // Finished: later news of the peer or a sibling is no error.
  ExpectActions<>(c.OnEvent(PeerVanished{}, kNow));
  ExpectActions<>(c.OnEvent(Sibling(Cdc({0, 0}, {0, 0})), kNow));
}
TEST_P(ConnectionPeerVanished, AfterOurAbortNothingHappens) {
  SeededEntropy e(1);
  Connection c(Params(), &e);
  MakeSmcd(c);
  SendBytes(c, 10);
  (void)c.OnEvent(DeviceFailed{}, kNow);
  ExpectActions<>(c.OnEvent(PeerVanished{}, kNow));
  EXPECT_EQ(c.PendingError(), ECONNABORTED);
}

}  // namespace
}  // namespace usmc::engine
