// The CLC client machine, one state and one event at a time.
#include "engine/clc_client.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <functional>
#include <string>

#include "engine/test_util.h"
#include "wire/reason.h"

namespace usmc::engine {
namespace {

using namespace testing;  // NOLINT
using S = ClcClientState;

constexpr TimePoint kNow{std::chrono::seconds(100)};

class ClcClientTest : public ::testing::Test {
 protected:
  EngineParams params_ = TestParams(Role::kClient);
  EngineParams server_params_ = TestParams(Role::kServer);
  SeededEntropy entropy_{1};

  // A client that sent its Proposal and waits for the Accept.
  ClcClient AwaitingAccept() {
    ClcClient c(params_, &entropy_);
    Actions out;
    c.OnStart(kNow, out);
    EXPECT_EQ(c.state(), S::kAwaitAccept);
    return c;
  }
  wire::ClcSmcdAccept GoodAccept() {
    return BuildSmcdAccept(wire::ClcType::kAccept, server_params_, 0xD00D,
                           32 * 1024, 0x11223344);
  }
  SmcdLink AcceptedLink() {
    SmcdLink l;
    l.peer_dmb_token = 0xD00D;
    l.peer_dmb_size = 32 * 1024;
    l.link_id = 0x11223344;
    return l;
  }
};

TEST_F(ClcClientTest, StartSendsProposalAndArmsTimer) {
  ClcClient c(params_, &entropy_);
  Actions out;
  c.OnStart(kNow, out);
  ExpectActions<SendTcp, ArmTimer>(out);
  EXPECT_EQ(c.state(), S::kAwaitAccept);
  EXPECT_EQ(Nth<ArmTimer>(out, 1).deadline, kNow + std::chrono::seconds(6));
  const wire::ClcMessage m = DecodeSent(Nth<SendTcp>(out, 0));
  const auto* p = std::get_if<wire::ClcProposal>(&m);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->version, 2);
  EXPECT_EQ(p->typev2, wire::SmcType::kD);
  EXPECT_EQ(p->typev1, wire::SmcType::kNone);
  ASSERT_EQ(p->ism_device_count, 1);
  EXPECT_EQ(p->ism_devices[0].gid, params_.device.gid);
  EXPECT_EQ(p->ism_devices[0].gid_ext, params_.device.gid_ext);
  EXPECT_EQ(p->ism_devices[0].chid, 0xFFFF);
  ASSERT_EQ(p->eid_count, 1);
  EXPECT_EQ(p->eids[0], params_.eid);
  EXPECT_EQ(c.NextDeadline(), kNow + std::chrono::seconds(6));
}

TEST_F(ClcClientTest, StartWithoutDeviceDeclines) {
  params_.smcd_enabled = false;
  ClcClient c(params_, &entropy_);
  Actions out;
  c.OnStart(kNow, out);
  ExpectActions<SendTcp, Fallback>(out);
  const wire::ClcMessage m = DecodeSent(Nth<SendTcp>(out, 0));
  ASSERT_TRUE(std::holds_alternative<wire::ClcDecline>(m));
  EXPECT_EQ(std::get<wire::ClcDecline>(m).peer_diagnosis,
            wire::kReasonNoSmcdDev);
  EXPECT_EQ(Nth<Fallback>(out, 1).local_reason, wire::kReasonNoSmcdDev);
  EXPECT_EQ(c.state(), S::kFallback);
}

TEST_F(ClcClientTest, AcceptLeadsToRegisterDmb) {
  ClcClient c = AwaitingAccept();
  std::vector<std::byte> bytes = EncodeClcBytes(GoodAccept());
  const size_t accept_len = bytes.size();
  bytes.push_back(std::byte{'x'});  // app data after it is not ours
  Actions out;
  c.OnTcpBytes(bytes, kNow, out);
  ExpectActions<TcpConsumed, CancelTimer, RegisterRecvBuffer>(out);
  EXPECT_EQ(Nth<TcpConsumed>(out, 0).len, accept_len);
  EXPECT_EQ(Nth<RegisterRecvBuffer>(out, 2).size, 64u * 1024);
  EXPECT_EQ(c.state(), S::kRegisteringDmb);
  EXPECT_EQ(c.core().link.peer_dmb_token, 0xD00Du);
  EXPECT_EQ(c.core().link.peer_dmb_size, 32u * 1024);
  EXPECT_FALSE(c.NextDeadline().has_value());
}

// The runtime peeks: it feeds everything received so far, and the engine
// consumes nothing until a whole message is there.
TEST_F(ClcClientTest, AcceptArrivingOneByteAtATime) {
  ClcClient c = AwaitingAccept();
  const std::vector<std::byte> bytes = EncodeClcBytes(GoodAccept());
  for (size_t i = 1; i < bytes.size(); ++i) {
    Actions out;
    c.OnTcpBytes(std::span(bytes).first(i), kNow, out);
    ExpectActions<>(out);
    ASSERT_EQ(c.state(), S::kAwaitAccept);
  }
  Actions out;
  c.OnTcpBytes(bytes, kNow, out);
  ExpectActions<TcpConsumed, CancelTimer, RegisterRecvBuffer>(out);
  EXPECT_EQ(Nth<TcpConsumed>(out, 0).len, bytes.size());
  EXPECT_EQ(c.state(), S::kRegisteringDmb);
}

TEST_F(ClcClientTest, NonClcBytesAreLeftForTheApp) {
  ClcClient c = AwaitingAccept();
  const char text[] = "HTTP/1.1 200 OK\r\n\r\n";
  Actions out;
  c.OnTcpBytes(std::as_bytes(std::span(text)), kNow, out);
  EXPECT_EQ(FindAction<TcpConsumed>(out), nullptr) << Describe(out);
  ASSERT_NE(FindAction<Fallback>(out), nullptr);
  EXPECT_EQ(c.state(), S::kFallback);
}

TEST_F(ClcClientTest, PeerDeclineFallsBackWithoutDeclining) {
  ClcClient c = AwaitingAccept();
  Actions out;
  c.OnTcpBytes(EncodeClcBytes(BuildDecline(wire::kReasonNoUeid)), kNow, out);
  ExpectActions<TcpConsumed, CancelTimer, Fallback>(out);
  EXPECT_EQ(Nth<Fallback>(out, 2).local_reason, wire::kReasonPeerDecl);
  EXPECT_EQ(Nth<Fallback>(out, 2).peer_reason, wire::kReasonNoUeid);
  EXPECT_EQ(c.state(), S::kFallback);
}

struct BadAccept {
  const char* name;
  std::function<wire::ClcMessage(wire::ClcSmcdAccept)> make;
  uint32_t reason;
};

class ClcClientBadAccept : public ClcClientTest,
                           public ::testing::WithParamInterface<BadAccept> {};

TEST_P(ClcClientBadAccept, DeclinesWithReason) {
  ClcClient c = AwaitingAccept();
  Actions out;
  c.OnTcpBytes(EncodeClcBytes(GetParam().make(GoodAccept())), kNow, out);
  ExpectActions<TcpConsumed, CancelTimer, SendTcp, Fallback>(out);
  const wire::ClcMessage m = DecodeSent(Nth<SendTcp>(out, 2));
  ASSERT_TRUE(std::holds_alternative<wire::ClcDecline>(m));
  EXPECT_EQ(std::get<wire::ClcDecline>(m).peer_diagnosis, GetParam().reason);
  EXPECT_EQ(Nth<Fallback>(out, 3).local_reason, GetParam().reason);
  EXPECT_EQ(Nth<Fallback>(out, 3).peer_reason, 0u);
  EXPECT_EQ(c.state(), S::kFallback);
}

INSTANTIATE_TEST_SUITE_P(
    Reasons, ClcClientBadAccept,
    ::testing::Values(BadAccept{"OtherGid",
                                [](wire::ClcSmcdAccept a) -> wire::ClcMessage {
                                  a.gid ^= 1;
                                  return a;
                                },
                                wire::kReasonNoSmcd2Dev},
                      BadAccept{"OtherChid",
                                [](wire::ClcSmcdAccept a) -> wire::ClcMessage {
                                  a.chid = 0xFF00;
                                  return a;
                                },
                                wire::kReasonNoSmcd2Dev},
                      BadAccept{"OtherEid",
                                [](wire::ClcSmcdAccept a) -> wire::ClcMessage {
                                  a.eid = wire::MakeClcEid("ELSEWHERE");
                                  return a;
                                },
                                wire::kReasonNoUeid},
                      BadAccept{"VersionOne",
                                [](wire::ClcSmcdAccept a) -> wire::ClcMessage {
                                  a.version = 1;
                                  return a;
                                },
                                wire::kReasonVersMismat},
                      BadAccept{"HugeDmb",
                                [](wire::ClcSmcdAccept a) -> wire::ClcMessage {
                                  a.dmbe_size = 9;
                                  return a;
                                },
                                wire::kReasonCnfErr},
                      BadAccept{"ConfirmInsteadOfAccept",
                                [](wire::ClcSmcdAccept a) -> wire::ClcMessage {
                                  a.type = wire::ClcType::kConfirm;
                                  return a;
                                },
                                wire::kReasonCnfErr},
                      BadAccept{"SmcrAccept",
                                [](wire::ClcSmcdAccept) -> wire::ClcMessage {
                                  wire::ClcSmcrAccept r;
                                  r.fce.long_form = true;
                                  return r;
                                },
                                wire::kReasonModeUnsupp},
                      BadAccept{"Proposal",
                                [](wire::ClcSmcdAccept) -> wire::ClcMessage {
                                  return BuildProposal(
                                      TestParams(Role::kClient));
                                },
                                wire::kReasonCnfErr}),
    [](const ::testing::TestParamInfo<BadAccept>& i) {
      return std::string(i.param.name);
    });

// A CLC header with a broken body: the peer speaks CLC, so it gets a
// Decline, and the broken message is consumed.
TEST_F(ClcClientTest, BrokenClcMessageDeclines) {
  ClcClient c = AwaitingAccept();
  std::vector<std::byte> bytes = EncodeClcBytes(GoodAccept());
  bytes.back() = std::byte{0x00};  // trailer eyecatcher destroyed
  Actions out;
  c.OnTcpBytes(bytes, kNow, out);
  ExpectActions<TcpConsumed, CancelTimer, SendTcp, Fallback>(out);
  EXPECT_EQ(Nth<SendTcp>(out, 2).type, wire::ClcType::kDecline);
  EXPECT_EQ(Nth<Fallback>(out, 3).local_reason, wire::kReasonCnfErr);
  EXPECT_EQ(c.state(), S::kFallback);
}

TEST_F(ClcClientTest, TimeoutDeclines) {
  ClcClient c = AwaitingAccept();
  Actions early;
  c.OnTimeout(kNow + std::chrono::seconds(5), early);
  ExpectActions<>(early);
  EXPECT_EQ(c.state(), S::kAwaitAccept);
  Actions out;
  c.OnTimeout(kNow + std::chrono::seconds(6), out);
  ExpectActions<CancelTimer, SendTcp, Fallback>(out);
  EXPECT_EQ(Nth<Fallback>(out, 2).local_reason, wire::kReasonTimeoutCl);
  EXPECT_EQ(c.state(), S::kFallback);
}

TEST_F(ClcClientTest, TcpEofFallsBack) {
  ClcClient c = AwaitingAccept();
  Actions out;
  c.OnTcpEof(out);
  ExpectActions<CancelTimer, Fallback>(out);
  EXPECT_EQ(c.state(), S::kFallback);
}

// The handover comes before Confirm: a failure there is still a Decline.
TEST_F(ClcClientTest, RegisteredDmbAttachesBeforeConfirm) {
  ClcClient c(params_, &entropy_, S::kRegisteringDmb, AcceptedLink(), false);
  Actions out;
  c.OnDmbRegistered(RecvBufferRegistered{0xBEEF, 64 * 1024}, out);
  ExpectActions<AttachPeerBuffer>(out);
  EXPECT_EQ(Nth<AttachPeerBuffer>(out, 0).token, 0xD00Du);
  EXPECT_EQ(Nth<AttachPeerBuffer>(out, 0).size, 32u * 1024);
  EXPECT_EQ(c.state(), S::kAttachingPeerDmb);
}

TEST_F(ClcClientTest, OddDmbSizeDeclinesAndReleases) {
  ClcClient c(params_, &entropy_, S::kRegisteringDmb, AcceptedLink(), false);
  Actions out;
  c.OnDmbRegistered(RecvBufferRegistered{0xBEEF, 1000}, out);
  ExpectActions<SendTcp, ReleaseBuffers, Fallback>(out);
  EXPECT_EQ(Nth<ReleaseBuffers>(out, 1).own_token, 0xBEEFu);
  EXPECT_EQ(Nth<Fallback>(out, 2).local_reason, wire::kReasonErrRegBuf);
}

TEST_F(ClcClientTest, RegisterFailureDeclines) {
  ClcClient c(params_, &entropy_, S::kRegisteringDmb, AcceptedLink(), false);
  Actions out;
  c.OnDmbRegisterFailed(RecvBufferFailed{wire::kReasonMaxDmb}, out);
  ExpectActions<SendTcp, Fallback>(out);
  EXPECT_EQ(Nth<Fallback>(out, 1).local_reason, wire::kReasonMaxDmb);
}

// Attached: Confirm goes out and the client is committed, as in Linux.
TEST_F(ClcClientTest, AttachedSendsConfirmAndIsDone) {
  SmcdLink link = AcceptedLink();
  link.local_dmb_token = 0xBEEF;
  link.local_dmb_size = 64 * 1024;
  ClcClient c(params_, &entropy_, S::kAttachingPeerDmb, link, true);
  Actions out;
  c.OnPeerDmbAttached({}, out);
  ExpectActions<SendTcp, HandshakeDone>(out);
  const wire::ClcMessage m = DecodeSent(Nth<SendTcp>(out, 0));
  const auto* conf = std::get_if<wire::ClcSmcdAccept>(&m);
  ASSERT_NE(conf, nullptr);
  EXPECT_EQ(conf->type, wire::ClcType::kConfirm);
  EXPECT_EQ(conf->dmb_token, 0xBEEFu);
  EXPECT_EQ(conf->dmbe_size, 2);  // 64 KiB
  EXPECT_EQ(conf->link_id, 0x11223344u);
  EXPECT_EQ(conf->gid, params_.device.gid);
  EXPECT_EQ(conf->gid_ext, params_.device.gid_ext);
  EXPECT_EQ(Nth<HandshakeDone>(out, 1).link.peer_dmb_token, 0xD00Du);
  EXPECT_EQ(Nth<HandshakeDone>(out, 1).link.local_dmb_token, 0xBEEFu);
  EXPECT_EQ(c.state(), S::kActive);
  EXPECT_EQ(c.Outcome(), HandshakeOutcome::kSmcd);
}

TEST_F(ClcClientTest, AttachFailureDeclinesAndReleases) {
  SmcdLink link = AcceptedLink();
  link.local_dmb_token = 0xBEEF;
  ClcClient c(params_, &entropy_, S::kAttachingPeerDmb, link, true);
  Actions out;
  c.OnPeerDmbAttachFailed(PeerBufferAttachFailed{0}, out);
  ExpectActions<SendTcp, ReleaseBuffers, Fallback>(out);
  const wire::ClcMessage m = DecodeSent(Nth<SendTcp>(out, 0));
  const auto* d = std::get_if<wire::ClcDecline>(&m);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->peer_diagnosis, wire::kReasonErrRtok);
  EXPECT_EQ(Nth<ReleaseBuffers>(out, 1).own_token, 0xBEEFu);
  EXPECT_EQ(Nth<Fallback>(out, 2).local_reason, wire::kReasonErrRtok);
  EXPECT_EQ(c.state(), S::kFallback);
}

TEST_F(ClcClientTest, AppCloseAbandonsTheHandshake) {
  ClcClient c(params_, &entropy_, S::kRegisteringDmb, AcceptedLink(), false);
  Actions out;
  c.OnAppClose(out);
  ExpectActions<CloseTcp>(out);
  EXPECT_EQ(c.state(), S::kFailed);
}

// In each state, an event the table does not declare takes the one
// InvalidEvent path: report it; a running handshake declines (INTERR).
TEST_F(ClcClientTest, InvalidEventInEveryState) {
  const S states[] = {S::kInit,           S::kAwaitAccept,
                      S::kRegisteringDmb, S::kAttachingPeerDmb,
                      S::kJoiningLgr,     S::kConfirmingRkey,
                      S::kAwaitLink,      S::kActive,
                      S::kFallback,       S::kFailed};
  for (S s : states) {
    ClcClient c(params_, &entropy_, s, AcceptedLink(), false);
    Actions out;
    if (s == S::kAttachingPeerDmb) {
      c.OnDmbRegistered(RecvBufferRegistered{1, 65536}, out);
    } else {
      c.OnPeerDmbAttached({}, out);
    }
    ASSERT_GE(out.size(), 1u) << s;
    const ReportError& r = Nth<ReportError>(out, 0);
    EXPECT_EQ(r.err, EINVAL);
    EXPECT_NE(r.what.find(std::string(ToString(s))), std::string::npos)
        << r.what;
    if (s == S::kActive || s == S::kFallback || s == S::kFailed) {
      EXPECT_EQ(out.size(), 1u) << s;
      EXPECT_EQ(c.state(), s);
    } else {
      const Fallback* f = FindAction<Fallback>(out);
      ASSERT_NE(f, nullptr) << s;
      EXPECT_EQ(f->local_reason, wire::kReasonIntErr);
      EXPECT_EQ(c.state(), S::kFallback);
    }
    // The error path is idempotent: a second invalid event only reports.
    Actions again;
    c.OnStart(kNow, again);
    ExpectActions<ReportError>(again);
  }
}

TEST(ClcClientTable, EveryDeclaredTargetIsAState) {
  for (const ClcClientTransition& t : ClcClientTransitions()) {
    EXPECT_NE(ToString(t.from), "UNKNOWN");
    for (uint8_t i = 0; i < t.to_count; ++i) {
      EXPECT_NE(ToString(t.to[i]), "UNKNOWN");
    }
  }
}

}  // namespace
}  // namespace usmc::engine
