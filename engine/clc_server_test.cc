// The CLC server machine, one state and one event at a time.
#include "engine/clc_server.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <functional>
#include <string>

#include "engine/test_util.h"
#include "wire/reason.h"

namespace usmc::engine {
namespace {

using namespace testing;  // NOLINT
using S = ClcServerState;

constexpr TimePoint kNow{std::chrono::seconds(50)};

class ClcServerTest : public ::testing::Test {
 protected:
  EngineParams params_ = TestParams(Role::kServer);
  EngineParams client_params_ = TestParams(Role::kClient);
  SeededEntropy entropy_{2};

  ClcServer AwaitingProposal() {
    ClcServer s(params_, &entropy_);
    Actions out;
    s.OnStart(kNow, out);
    ExpectActions<ArmTimer>(out);
    EXPECT_EQ(s.state(), S::kAwaitProposal);
    return s;
  }
  // Through Proposal and registration, Accept sent.
  ClcServer AwaitingConfirm(uint32_t* link_id) {
    ClcServer s = AwaitingProposal();
    Actions out;
    s.OnTcpBytes(EncodeClcBytes(BuildProposal(client_params_)), kNow, out);
    s.OnDmbRegistered(RecvBufferRegistered{0xAAAA, 64 * 1024}, kNow, out);
    EXPECT_EQ(s.state(), S::kAwaitConfirm);
    *link_id = s.core().link.link_id;
    return s;
  }
};

TEST_F(ClcServerTest, ProposalLeadsToRegisterDmb) {
  ClcServer s = AwaitingProposal();
  const std::vector<std::byte> p =
      EncodeClcBytes(BuildProposal(client_params_));
  Actions out;
  s.OnTcpBytes(p, kNow, out);
  ExpectActions<TcpConsumed, CancelTimer, RegisterRecvBuffer>(out);
  EXPECT_EQ(Nth<TcpConsumed>(out, 0).len, p.size());
  EXPECT_EQ(Nth<RegisterRecvBuffer>(out, 2).size, 64u * 1024);
  EXPECT_EQ(s.state(), S::kRegisteringDmb);
}

TEST_F(ClcServerTest, RegisteredSendsAcceptAndArmsTimer) {
  ClcServer s = AwaitingProposal();
  Actions ignored;
  s.OnTcpBytes(EncodeClcBytes(BuildProposal(client_params_)), kNow, ignored);
  Actions out;
  const TimePoint later = kNow + std::chrono::milliseconds(5);
  s.OnDmbRegistered(RecvBufferRegistered{0xAAAA, 64 * 1024}, later, out);
  ExpectActions<SendTcp, ArmTimer>(out);
  EXPECT_EQ(Nth<ArmTimer>(out, 1).deadline, later + std::chrono::seconds(6));
  const wire::ClcMessage m = DecodeSent(Nth<SendTcp>(out, 0));
  const auto* a = std::get_if<wire::ClcSmcdAccept>(&m);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->type, wire::ClcType::kAccept);
  EXPECT_EQ(a->eyecatcher, wire::ClcEyecatcher::kSmcd);
  EXPECT_EQ(a->dmb_token, 0xAAAAu);
  EXPECT_EQ(a->dmbe_size, 2);
  EXPECT_EQ(a->gid, params_.device.gid);
  EXPECT_EQ(a->gid_ext, params_.device.gid_ext);
  EXPECT_EQ(a->chid, params_.device.chid);
  EXPECT_EQ(a->eid, params_.eid);
  EXPECT_TRUE(a->first_contact);
  EXPECT_EQ(a->link_id, s.core().link.link_id);
  EXPECT_EQ(s.state(), S::kAwaitConfirm);
}

TEST_F(ClcServerTest, ConfirmLeadsToAttachThenActive) {
  uint32_t link_id = 0;
  ClcServer s = AwaitingConfirm(&link_id);
  wire::ClcSmcdAccept c = BuildSmcdAccept(
      wire::ClcType::kConfirm, client_params_, 0xCCCC, 16384, link_id);
  Actions out;
  s.OnTcpBytes(EncodeClcBytes(c), kNow, out);
  ExpectActions<TcpConsumed, CancelTimer, AttachPeerBuffer>(out);
  EXPECT_EQ(Nth<AttachPeerBuffer>(out, 2).token, 0xCCCCu);
  EXPECT_EQ(Nth<AttachPeerBuffer>(out, 2).size, 16384u);
  EXPECT_EQ(s.state(), S::kAttachingPeerDmb);
  Actions done;
  s.OnPeerDmbAttached({}, kNow, done);
  ExpectActions<HandshakeDone>(done);
  const SmcdLink& l = Nth<HandshakeDone>(done, 0).link;
  EXPECT_EQ(l.local_dmb_token, 0xAAAAu);
  EXPECT_EQ(l.peer_dmb_token, 0xCCCCu);
  EXPECT_EQ(l.peer_dmb_size, 16384u);
  EXPECT_EQ(s.state(), S::kActive);
}

// The usual order: the client runs the DMB handover before it confirms.
TEST_F(ClcServerTest, HandoverBeforeConfirmThenMatchingConfirmIsActive) {
  uint32_t link_id = 0;
  ClcServer s = AwaitingConfirm(&link_id);
  Actions early;
  s.OnPeerDmbAttached(PeerBufferAttached{0xCCCC, 16384}, kNow, early);
  ExpectActions<ArmTimer>(early);  // fresh: see the test below
  EXPECT_EQ(s.state(), S::kAwaitConfirm);
  wire::ClcSmcdAccept c = BuildSmcdAccept(
      wire::ClcType::kConfirm, client_params_, 0xCCCC, 16384, link_id);
  Actions out;
  s.OnTcpBytes(EncodeClcBytes(c), kNow, out);
  ExpectActions<TcpConsumed, CancelTimer, HandshakeDone>(out);
  const SmcdLink& l = Nth<HandshakeDone>(out, 2).link;
  EXPECT_EQ(l.peer_dmb_token, 0xCCCCu);
  EXPECT_EQ(l.peer_dmb_size, 16384u);
  EXPECT_EQ(s.state(), S::kActive);
}

// Issue 16: a server that runs late (hundreds of handshakes at once) serves
// the client's DMB handover after its Confirm deadline has passed. The
// client sends Confirm right after the handover and is SMC-D from then on:
// a Decline (and TCP) here left it writing into our DMB while we read TCP,
// and our Decline reached its app as payload. The deadline starts afresh
// at the handover, and when even that one passes the end is an abort.
TEST_F(ClcServerTest, NoDeclineOnceTheHandoverServedTheCommittedClient) {
  uint32_t link_id = 0;
  ClcServer s = AwaitingConfirm(&link_id);
  const TimePoint late = kNow + std::chrono::seconds(60);  // old one passed
  Actions early;
  s.OnPeerDmbAttached(PeerBufferAttached{0xCCCC, 16384}, late, early);
  ExpectActions<ArmTimer>(early);
  EXPECT_EQ(Nth<ArmTimer>(early, 0).deadline, late + std::chrono::seconds(6));
  Actions stale;
  s.OnTimeout(late, stale);  // the old deadline's event, handled late
  ExpectActions<>(stale);
  EXPECT_EQ(s.state(), S::kAwaitConfirm);
  wire::ClcSmcdAccept c = BuildSmcdAccept(
      wire::ClcType::kConfirm, client_params_, 0xCCCC, 16384, link_id);
  Actions out;
  s.OnTcpBytes(EncodeClcBytes(c), late, out);
  ExpectActions<TcpConsumed, CancelTimer, HandshakeDone>(out);
  EXPECT_EQ(s.state(), S::kActive);
}

TEST_F(ClcServerTest, NoConfirmLongAfterTheHandoverAbortsNeverDeclines) {
  uint32_t link_id = 0;
  ClcServer s = AwaitingConfirm(&link_id);
  Actions early;
  s.OnPeerDmbAttached(PeerBufferAttached{0xCCCC, 16384}, kNow, early);
  Actions out;
  s.OnTimeout(kNow + std::chrono::seconds(7), out);
  EXPECT_EQ(FindAction<SendTcp>(out), nullptr);  // no Decline
  EXPECT_EQ(FindAction<Fallback>(out), nullptr);
  ASSERT_NE(FindAction<AbortTcp>(out), nullptr);
  EXPECT_EQ(FindAction<ReportError>(out)->err, ETIMEDOUT);
  const ReleaseBuffers* r = FindAction<ReleaseBuffers>(out);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->peer_attached);
  EXPECT_EQ(s.state(), S::kFailed);
}

// A Decline tells the runtime that the peer's crossing CLC message may come
// (Fallback::declined); a fallback that sent none says so too.
TEST_F(ClcServerTest, FallbackSaysWhetherWeDeclined) {
  ClcServer s = AwaitingProposal();
  Actions out;
  s.OnTimeout(kNow + std::chrono::seconds(7), out);
  ASSERT_NE(FindAction<SendTcp>(out), nullptr);
  EXPECT_TRUE(FindAction<Fallback>(out)->declined);
  ClcServer t = AwaitingProposal();
  wire::ClcDecline d;
  Actions peer;
  t.OnTcpBytes(EncodeClcBytes(d), kNow, peer);
  EXPECT_EQ(FindAction<SendTcp>(peer), nullptr);
  EXPECT_FALSE(FindAction<Fallback>(peer)->declined);
}

TEST_F(ClcServerTest, ConfirmNamingAnotherDmbThanTheHandoverAborts) {
  uint32_t link_id = 0;
  ClcServer s = AwaitingConfirm(&link_id);
  Actions early;
  s.OnPeerDmbAttached(PeerBufferAttached{0xCCCC, 16384}, kNow, early);
  wire::ClcSmcdAccept c = BuildSmcdAccept(
      wire::ClcType::kConfirm, client_params_, 0xDDDD, 16384, link_id);
  Actions out;
  s.OnTcpBytes(EncodeClcBytes(c), kNow, out);
  const ReportError* e = FindAction<ReportError>(out);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->err, ECONNABORTED);
  EXPECT_NE(FindAction<ReleaseBuffers>(out), nullptr);
  EXPECT_EQ(FindAction<HandshakeDone>(out), nullptr);
  EXPECT_EQ(s.state(), S::kFailed);
}

TEST_F(ClcServerTest, DeclineAfterHandoverReleasesThePeerDmbToo) {
  uint32_t link_id = 0;
  ClcServer s = AwaitingConfirm(&link_id);
  Actions early;
  s.OnPeerDmbAttached(PeerBufferAttached{0xCCCC, 16384}, kNow, early);
  wire::ClcDecline d;
  d.peer_diagnosis = wire::kReasonErrRtok;
  Actions out;
  s.OnTcpBytes(EncodeClcBytes(d), kNow, out);
  const ReleaseBuffers* r = FindAction<ReleaseBuffers>(out);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->peer_attached);
  EXPECT_EQ(r->peer_dmb_token, 0xCCCCu);
  const Fallback* f = FindAction<Fallback>(out);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->local_reason, wire::kReasonPeerDecl);
  EXPECT_EQ(f->peer_reason, wire::kReasonErrRtok);
}

TEST_F(ClcServerTest, ConfirmWithOtherLinkIdDeclines) {
  uint32_t link_id = 0;
  ClcServer s = AwaitingConfirm(&link_id);
  wire::ClcSmcdAccept c = BuildSmcdAccept(
      wire::ClcType::kConfirm, client_params_, 0xCCCC, 16384, link_id + 1);
  Actions out;
  s.OnTcpBytes(EncodeClcBytes(c), kNow, out);
  ExpectActions<TcpConsumed, CancelTimer, SendTcp, ReleaseBuffers, Fallback>(
      out);
  EXPECT_EQ(Nth<Fallback>(out, 4).local_reason, wire::kReasonCnfErr);
  EXPECT_EQ(Nth<ReleaseBuffers>(out, 3).own_token, 0xAAAAu);
}

TEST_F(ClcServerTest, DeclineInsteadOfConfirmReleasesAndFallsBack) {
  uint32_t link_id = 0;
  ClcServer s = AwaitingConfirm(&link_id);
  Actions out;
  s.OnTcpBytes(EncodeClcBytes(BuildDecline(wire::kReasonNoSmcd2Dev)), kNow,
               out);
  ExpectActions<TcpConsumed, CancelTimer, ReleaseBuffers, Fallback>(out);
  EXPECT_EQ(Nth<Fallback>(out, 3).local_reason, wire::kReasonPeerDecl);
  EXPECT_EQ(Nth<Fallback>(out, 3).peer_reason, wire::kReasonNoSmcd2Dev);
}

TEST_F(ClcServerTest, ConfirmTimeoutDeclinesAndReleases) {
  uint32_t link_id = 0;
  ClcServer s = AwaitingConfirm(&link_id);
  Actions out;
  s.OnTimeout(kNow + std::chrono::seconds(6), out);
  ExpectActions<CancelTimer, SendTcp, ReleaseBuffers, Fallback>(out);
  EXPECT_EQ(Nth<Fallback>(out, 3).local_reason, wire::kReasonTimeoutCl);
}

TEST_F(ClcServerTest, AttachFailureAfterConfirmAborts) {
  SmcdLink link;
  link.local_dmb_token = 0xAAAA;
  ClcServer s(params_, &entropy_, S::kAttachingPeerDmb, link, true);
  Actions out;
  s.OnPeerDmbAttachFailed(PeerBufferAttachFailed{0}, out);
  ExpectActions<ReleaseBuffers, AbortTcp, ReportError>(out);
  EXPECT_EQ(Nth<ReportError>(out, 2).err, ECONNABORTED);
  EXPECT_EQ(s.state(), S::kFailed);
  EXPECT_EQ(s.Outcome(), HandshakeOutcome::kFailed);
}

TEST_F(ClcServerTest, RegisterFailureDeclines) {
  ClcServer s(params_, &entropy_, S::kRegisteringDmb, SmcdLink{}, false);
  Actions out;
  s.OnDmbRegisterFailed(RecvBufferFailed{wire::kReasonMem}, out);
  ExpectActions<SendTcp, Fallback>(out);
  EXPECT_EQ(Nth<Fallback>(out, 1).local_reason, wire::kReasonMem);
}

struct BadProposal {
  const char* name;
  std::function<void(wire::ClcProposal&, EngineParams&)> change;
  uint32_t reason;
};

class ClcServerBadProposal : public ClcServerTest,
                             public ::testing::WithParamInterface<BadProposal> {
};

TEST_P(ClcServerBadProposal, DeclinesWithReason) {
  wire::ClcProposal p = BuildProposal(client_params_);
  GetParam().change(p, params_);
  ClcServer s = AwaitingProposal();
  Actions out;
  s.OnTcpBytes(EncodeClcBytes(p), kNow, out);
  ExpectActions<TcpConsumed, CancelTimer, SendTcp, Fallback>(out);
  const wire::ClcMessage m = DecodeSent(Nth<SendTcp>(out, 2));
  ASSERT_TRUE(std::holds_alternative<wire::ClcDecline>(m));
  EXPECT_EQ(std::get<wire::ClcDecline>(m).peer_diagnosis, GetParam().reason);
  EXPECT_EQ(Nth<Fallback>(out, 3).local_reason, GetParam().reason);
  EXPECT_EQ(s.state(), S::kFallback);
}

INSTANTIATE_TEST_SUITE_P(
    Reasons, ClcServerBadProposal,
    ::testing::Values(BadProposal{"OtherGid",
                                  [](wire::ClcProposal& p, EngineParams&) {
                                    p.ism_devices[0].gid ^= 1;
                                  },
                                  wire::kReasonNoSmcd2Dev},
                      BadProposal{"OtherChid",
                                  [](wire::ClcProposal& p, EngineParams&) {
                                    p.ism_devices[0].chid = 0xFF10;
                                  },
                                  wire::kReasonNoSmcd2Dev},
                      BadProposal{"NoUeid",
                                  [](wire::ClcProposal& p, EngineParams&) {
                                    p.eid_count = 0;
                                  },
                                  wire::kReasonNoUeid},
                      BadProposal{"OtherUeid",
                                  [](wire::ClcProposal& p, EngineParams&) {
                                    p.eids[0] = wire::MakeClcEid("X");
                                  },
                                  wire::kReasonNoUeid},
                      BadProposal{"NoSmcdV2",
                                  [](wire::ClcProposal& p, EngineParams&) {
                                    p.typev2 = wire::SmcType::kR;
                                  },
                                  wire::kReasonNoV2DExt},
                      BadProposal{"NoV2Extension",
                                  [](wire::ClcProposal& p, EngineParams&) {
                                    p.typev2 = wire::SmcType::kNone;
                                    p.typev1 = wire::SmcType::kD;
                                  },
                                  wire::kReasonNoV2Ext},
                      BadProposal{"VersionOne",
                                  [](wire::ClcProposal& p, EngineParams&) {
                                    p.version = 1;
                                    p.typev1 = wire::SmcType::kD;
                                    p.typev2 = wire::SmcType::kNone;
                                  },
                                  wire::kReasonVersMismat},
                      BadProposal{"ServerHasNoSmcd",
                                  [](wire::ClcProposal&, EngineParams& params) {
                                    params.smcd_enabled = false;
                                  },
                                  wire::kReasonNoSmcdDev}),
    [](const ::testing::TestParamInfo<BadProposal>& i) {
      return std::string(i.param.name);
    });

TEST_F(ClcServerTest, PeerDeclineInsteadOfProposal) {
  ClcServer s = AwaitingProposal();
  Actions out;
  s.OnTcpBytes(EncodeClcBytes(BuildDecline(wire::kReasonNoSmcdDev)), kNow, out);
  ExpectActions<TcpConsumed, CancelTimer, Fallback>(out);
  EXPECT_EQ(Nth<Fallback>(out, 2).peer_reason, wire::kReasonNoSmcdDev);
}

// The client timed out before the app accepted and declined: its Proposal
// and Decline arrive together. No Accept may follow (the client is TCP now);
// both messages are consumed, nothing else.
TEST_F(ClcServerTest, DeclineBehindTheProposalMeansNoAccept) {
  ClcServer s = AwaitingProposal();
  std::vector<std::byte> bytes = EncodeClcBytes(BuildProposal(client_params_));
  const size_t proposal_len = bytes.size();
  const std::vector<std::byte> d =
      EncodeClcBytes(BuildDecline(wire::kReasonTimeoutCl));
  bytes.insert(bytes.end(), d.begin(), d.end());
  bytes.push_back(std::byte{'x'});  // the client's first app byte stays
  Actions out;
  s.OnTcpBytes(bytes, kNow, out);
  ExpectActions<TcpConsumed, TcpConsumed, CancelTimer, Fallback>(out);
  EXPECT_EQ(Nth<TcpConsumed>(out, 0).len, proposal_len);
  EXPECT_EQ(Nth<TcpConsumed>(out, 1).len, d.size());
  EXPECT_EQ(Nth<Fallback>(out, 3).local_reason, wire::kReasonPeerDecl);
  EXPECT_EQ(Nth<Fallback>(out, 3).peer_reason, wire::kReasonTimeoutCl);
  EXPECT_EQ(s.state(), S::kFallback);
}

// Anything but a whole Decline behind the Proposal is left for later.
TEST_F(ClcServerTest, PartialDeclineBehindTheProposalIsNotRead) {
  ClcServer s = AwaitingProposal();
  std::vector<std::byte> bytes = EncodeClcBytes(BuildProposal(client_params_));
  const size_t proposal_len = bytes.size();
  std::vector<std::byte> d =
      EncodeClcBytes(BuildDecline(wire::kReasonTimeoutCl));
  bytes.insert(bytes.end(), d.begin(), d.end() - 1);
  Actions out;
  s.OnTcpBytes(bytes, kNow, out);
  ExpectActions<TcpConsumed, CancelTimer, RegisterRecvBuffer>(out);
  EXPECT_EQ(Nth<TcpConsumed>(out, 0).len, proposal_len);
  EXPECT_EQ(s.state(), S::kRegisteringDmb);
}

TEST_F(ClcServerTest, AcceptInsteadOfProposalIsAProtocolError) {
  ClcServer s = AwaitingProposal();
  Actions out;
  s.OnTcpBytes(EncodeClcBytes(BuildSmcdAccept(wire::ClcType::kAccept,
                                              client_params_, 1, 16384, 1)),
               kNow, out);
  EXPECT_EQ(FindAction<Fallback>(out)->local_reason, wire::kReasonCnfErr);
}

TEST_F(ClcServerTest, InvalidEventInEveryState) {
  const S states[] = {
      S::kInit,           S::kAwaitProposal,    S::kRegisteringDmb,
      S::kAwaitConfirm,   S::kAttachingPeerDmb, S::kJoiningLgr,
      S::kConfirmingRkey, S::kAwaitSmcrConfirm, S::kAwaitLink,
      S::kActive,         S::kFallback,         S::kFailed};
  for (S st : states) {
    ClcServer s(params_, &entropy_, st, SmcdLink{}, false);
    Actions out;
    if (st == S::kInit) {
      s.OnPeerDmbAttached({}, kNow, out);
    } else {
      s.OnStart(kNow, out);
    }
    ASSERT_GE(out.size(), 1u) << st;
    EXPECT_EQ(Nth<ReportError>(out, 0).err, EINVAL);
    EXPECT_NE(Nth<ReportError>(out, 0).what.find(std::string(ToString(st))),
              std::string::npos);
    switch (st) {
      case S::kActive:
      case S::kFallback:
      case S::kFailed:
        EXPECT_EQ(out.size(), 1u);
        EXPECT_EQ(s.state(), st);
        break;
      case S::kAttachingPeerDmb:
        EXPECT_EQ(s.state(), S::kFailed);  // too late to decline
        break;
      default:
        EXPECT_EQ(FindAction<Fallback>(out)->local_reason, wire::kReasonIntErr);
        EXPECT_EQ(s.state(), S::kFallback);
    }
    Actions again;
    s.OnStart(kNow, again);
    ExpectActions<ReportError>(again);
  }
}

}  // namespace
}  // namespace usmc::engine
