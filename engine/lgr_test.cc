// engine/lgr_test.cc: the SMC-R link group machine, fizz style: a state,
// one event, the exact action list and the next state. The last tests feed
// the kernel's own LLC frames (tests/data/kernel, Linux 6.12 over rdma_rxe)
// to a usmc machine of the opposite role and compare usmc's answers with
// the kernel's counterpart frames byte for byte.
#include "engine/lgr.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "tests/kernel_fixtures.h"
#include "wire/reason.h"

namespace usmc::engine {
namespace {

using std::chrono::seconds;
using wire::LlcDeleteLinkReason;

constexpr uint32_t Code(LlcDeleteLinkReason r) { return uint32_t(r); }
TimePoint T(int s) { return TimePoint{seconds(s)}; }

wire::Gid V4Gid(uint8_t last) {
  return wire::Gid{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, last};
}
wire::Mac LabMac(uint8_t last) { return wire::Mac{0x52, 0x54, 0, 0, 0, last}; }

// The lab of the capture: server 10.0.0.1, client 10.0.0.2, QPN 0x11 both.
LgrParams Params(Role role) {
  LgrParams p;
  p.role = role;
  const bool server = role == Role::kServer;
  p.local_mac = LabMac(server ? 1 : 2);
  p.local_gid = V4Gid(server ? 1 : 2);
  p.local_qpn = 0x11;
  p.peer_mac = LabMac(server ? 2 : 1);
  p.peer_gid = V4Gid(server ? 2 : 1);
  p.peer_qpn = 0x11;
  p.lgr_id = 0x100;
  return p;
}

template <typename M>
std::array<std::byte, wire::kLlcMsgLen> Bytes44(const M& m) {
  std::array<std::byte, wire::kLlcMsgLen> out{};
  auto n = wire::EncodeLlc(m, out);
  EXPECT_TRUE(n.ok() && *n == wire::kLlcMsgLen);
  return out;
}
template <typename M>
std::vector<std::byte> Bytes(const M& m) {
  std::vector<std::byte> out(wire::LlcEncodedLength(wire::LlcMessage{m}));
  EXPECT_TRUE(wire::EncodeLlc(m, out).ok());
  return out;
}
template <typename M>
LgrSendLlc Sent(const M& m) {
  return LgrSendLlc{Bytes44(m), wire::TypeOf(wire::LlcMessage{m}),
                    m.hdr.response};
}

wire::LlcConfirmLink ConfirmLink(Role sender, bool response) {
  wire::LlcConfirmLink m;
  m.hdr.v2 = true;
  m.hdr.response = response;
  const bool server = sender == Role::kServer;
  m.sender_mac = LabMac(server ? 1 : 2);
  m.sender_gid = V4Gid(server ? 1 : 2);
  m.sender_qpn = 0x11;
  m.link_num = 1;
  m.link_uid = 0x101;
  m.max_links = 1;
  m.max_conns = 255;
  return m;
}
wire::LlcTestLink TestLink(bool response) {
  wire::LlcTestLink m;
  m.hdr.v2 = true;
  m.hdr.response = response;
  return m;
}
wire::LlcDeleteLink DeleteLink(bool all, bool orderly, uint8_t link,
                               LlcDeleteLinkReason r) {
  wire::LlcDeleteLink m;
  m.hdr.v2 = true;
  m.all = all;
  m.orderly = orderly;
  m.link_num = link;
  m.reason = Code(r);
  return m;
}
wire::LlcConfirmRkey ConfirmRkey(uint32_t rkey, uint64_t vaddr, bool resp) {
  wire::LlcConfirmRkey m;
  m.hdr.v2 = true;
  m.hdr.response = resp;
  m.rtokens[0].rkey = rkey;
  m.rtokens[0].vaddr = vaddr;
  return m;
}
wire::LlcDeleteRkey DeleteRkey(std::vector<uint32_t> rkeys, bool resp) {
  wire::LlcDeleteRkey m;
  m.hdr.v2 = true;
  m.hdr.response = resp;
  m.num_rkeys = uint8_t(rkeys.size());
  std::copy(rkeys.begin(), rkeys.end(), m.rkeys.begin());
  return m;
}

template <typename M>
LgrActions Feed(Lgr& lgr, const M& m, TimePoint now) {
  std::vector<std::byte> b = Bytes(m);
  return lgr.OnEvent(LgrLlcReceived{b}, now);
}

// An ACTIVE group at T(0): link 1 up, `conns` connections (tokens 1..n).
Lgr Active(Role role, int conns = 1, LgrParams p = {}) {
  if (p.local_qpn == 0) p = Params(role);
  SeededEntropy entropy(7);
  Lgr lgr(p, &entropy);
  for (int i = 0; i < conns; ++i) lgr.OnEvent(LgrConnOpen{}, T(0));
  lgr.OnEvent(LgrQpReady{}, T(0));
  const bool server = role == Role::kServer;
  Feed(lgr, ConfirmLink(server ? Role::kClient : Role::kServer, server), T(0));
  EXPECT_EQ(lgr.state(), LgrState::kActive);
  return lgr;
}

// ---- identity, tokens, table --------------------------------------------

TEST(LgrIdentity, FreshSystemIdPerGroupWithTheMulticastBit) {
  SeededEntropy entropy(1);
  std::set<SystemId> seen;
  for (int i = 0; i < 100; ++i) {
    Lgr lgr(Params(Role::kClient), &entropy);
    EXPECT_EQ(lgr.system_id()[2] & 0x01, 0x01);
    seen.insert(lgr.system_id());
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(LgrTable, EveryStateEventPairIsDeclared) {
  for (auto s : {LgrState::kAwaitQp, LgrState::kConfirmingLink,
                 LgrState::kActive, LgrState::kEnded}) {
    for (int k = 0; k <= int(LgrEventKind::kTerminate); ++k) {
      EXPECT_TRUE(Declared(LgrTransitions(), s, LgrEventKind(k)))
          << ToString(s) << " " << ToString(LgrEventKind(k));
    }
  }
}

TEST(LgrTokens, NonzeroUniqueCountingUpAndFreed) {
  SeededEntropy entropy(1);
  Lgr lgr(Params(Role::kServer), &entropy);
  EXPECT_EQ(lgr.OnEvent(LgrConnOpen{}, T(0)),
            (LgrActions{LgrConnAdded{1}}));  // [cap] first token is 1
  EXPECT_EQ(lgr.OnEvent(LgrConnOpen{}, T(0)), (LgrActions{LgrConnAdded{2}}));
  EXPECT_TRUE(lgr.OnEvent(LgrConnClosed{1}, T(0)).empty());
  EXPECT_FALSE(lgr.HasToken(1));
  EXPECT_EQ(lgr.OnEvent(LgrConnOpen{}, T(0)), (LgrActions{LgrConnAdded{3}}));
}

TEST(LgrTokens, SkipsZeroAndTokensInUseWhenTheCounterWraps) {
  LgrData d;
  d.tokens[0] = 1;
  d.tokens[1] = 2;
  d.num_tokens = 2;
  d.last_token = 0xFFFFFFFF;
  Lgr lgr(Params(Role::kClient), d);
  EXPECT_EQ(lgr.OnEvent(LgrConnOpen{}, T(0)), (LgrActions{LgrConnAdded{3}}));
}

TEST(LgrTokens, RefusedAtMaxConns) {
  LgrParams p = Params(Role::kServer);
  p.max_conns = 16;
  SeededEntropy entropy(1);
  Lgr lgr(p, &entropy);
  for (int i = 0; i < 16; ++i) lgr.OnEvent(LgrConnOpen{}, T(0));
  EXPECT_EQ(lgr.OnEvent(LgrConnOpen{}, T(0)), (LgrActions{LgrConnRefused{}}));
}

TEST(LgrRtokens, AddDedupesAndRefusesWhenFull) {
  SeededEntropy entropy(1);
  Lgr lgr(Params(Role::kClient), &entropy);
  EXPECT_EQ(lgr.OnEvent(LgrAddPeerRtoken{0x367, 0x1000}, T(0)),
            (LgrActions{LgrPeerRtokenAdded{0x367, true}}));
  EXPECT_EQ(lgr.OnEvent(LgrAddPeerRtoken{0x367, 0x1000}, T(0)),
            (LgrActions{LgrPeerRtokenAdded{0x367, true}}));
  EXPECT_EQ(lgr.data().num_rtokens, 1);
  for (uint32_t i = 1; i < kLgrMaxRtokens; ++i) {
    lgr.OnEvent(LgrAddPeerRtoken{0x1000 + i, i}, T(0));
  }
  EXPECT_EQ(lgr.data().num_rtokens, kLgrMaxRtokens);
  EXPECT_EQ(lgr.OnEvent(LgrAddPeerRtoken{0x9999, 1}, T(0)),
            (LgrActions{LgrPeerRtokenAdded{0x9999, false}}));
}

// ---- first contact, server ------------------------------------------------

TEST(LgrServer, QpReadySendsConfirmLinkAndWaitsTwoSeconds) {
  SeededEntropy entropy(1);
  Lgr lgr(Params(Role::kServer), &entropy);
  lgr.OnEvent(LgrConnOpen{}, T(0));
  wire::LlcConfirmLink req = ConfirmLink(Role::kServer, false);
  req.max_links = 1;
  EXPECT_EQ(lgr.OnEvent(LgrQpReady{}, T(10)),
            (LgrActions{Sent(req), LgrArmTimer{T(12)}}));
  EXPECT_EQ(lgr.state(), LgrState::kConfirmingLink);
  EXPECT_EQ(lgr.data().link_num, 1);
  EXPECT_EQ(lgr.data().link_uid, 0x101u);
}

TEST(LgrServer, ResponseActivatesTheLink) {
  SeededEntropy entropy(1);
  Lgr lgr(Params(Role::kServer), &entropy);
  lgr.OnEvent(LgrConnOpen{}, T(0));
  lgr.OnEvent(LgrQpReady{}, T(0));
  wire::LlcConfirmLink resp = ConfirmLink(Role::kClient, true);
  resp.link_uid = 0x4242;
  EXPECT_EQ(Feed(lgr, resp, T(1)),
            (LgrActions{LgrLinkUp{1, 0x101, 0x4242}, LgrArmTimer{T(31)}}));
  EXPECT_EQ(lgr.state(), LgrState::kActive);
  EXPECT_EQ(lgr.data().test_deadline, T(31));
  EXPECT_EQ(lgr.data().idle_deadline, TimePoint{});  // one connection
}

TEST(LgrServer, ResponseWithoutEyecatcherBitsFailsFirstContact) {
  SeededEntropy entropy(1);
  Lgr lgr(Params(Role::kServer), &entropy);
  lgr.OnEvent(LgrConnOpen{}, T(0));
  lgr.OnEvent(LgrQpReady{}, T(0));
  std::vector<std::byte> b = Bytes(ConfirmLink(Role::kClient, true));
  b[3] = std::byte{0x80};  // RESP, no 0x03
  EXPECT_EQ(lgr.OnEvent(LgrLlcReceived{b}, T(1)),
            (LgrActions{LgrFirstContactFailed{wire::kReasonRmbeEc},
                        LgrEnded{Code(LlcDeleteLinkReason::kProtViol), {1}},
                        LgrCancelTimer{}}));
  EXPECT_EQ(lgr.state(), LgrState::kEnded);
}

TEST(LgrServer, NoResponseInTwoSecondsIsTimeoutCl) {
  SeededEntropy entropy(1);
  Lgr lgr(Params(Role::kServer), &entropy);
  lgr.OnEvent(LgrConnOpen{}, T(0));
  lgr.OnEvent(LgrQpReady{}, T(0));
  EXPECT_TRUE(lgr.OnEvent(LgrTimeout{}, T(1)).empty());  // early: nothing
  EXPECT_EQ(lgr.OnEvent(LgrTimeout{}, T(2)),
            (LgrActions{LgrFirstContactFailed{wire::kReasonTimeoutCl},
                        LgrEnded{Code(LlcDeleteLinkReason::kLostPath), {1}},
                        LgrCancelTimer{}}));
}

TEST(LgrServer, AnswersTestLinkWhileConfirming) {
  SeededEntropy entropy(1);
  Lgr lgr(Params(Role::kServer), &entropy);
  lgr.OnEvent(LgrQpReady{}, T(0));
  EXPECT_EQ(Feed(lgr, TestLink(false), T(1)),
            (LgrActions{Sent(TestLink(true))}));
  EXPECT_EQ(lgr.state(), LgrState::kConfirmingLink);
}

// ---- first contact, client ------------------------------------------------

TEST(LgrClient, WaitsFourSecondsForTheRequest) {
  SeededEntropy entropy(1);
  Lgr lgr(Params(Role::kClient), &entropy);
  EXPECT_EQ(lgr.OnEvent(LgrQpReady{}, T(0)), (LgrActions{LgrArmTimer{T(4)}}));
  EXPECT_TRUE(lgr.OnEvent(LgrTimeout{}, T(3)).empty());
  EXPECT_EQ(lgr.OnEvent(LgrTimeout{}, T(4)),
            (LgrActions{LgrFirstContactFailed{wire::kReasonTimeoutCl},
                        LgrEnded{Code(LlcDeleteLinkReason::kLostPath), {}},
                        LgrCancelTimer{}}));
}

TEST(LgrClient, RequestGoesRtsThenAnswersWithTheServersLinkNum) {
  SeededEntropy entropy(1);
  Lgr lgr(Params(Role::kClient), &entropy);
  lgr.OnEvent(LgrConnOpen{}, T(0));
  lgr.OnEvent(LgrQpReady{}, T(0));
  wire::LlcConfirmLink req = ConfirmLink(Role::kServer, false);
  req.link_num = 3;
  req.link_uid = 0x77;
  wire::LlcConfirmLink resp = ConfirmLink(Role::kClient, true);
  resp.link_num = 3;
  resp.link_uid = 0x103;  // our own lgr_id + link_num
  EXPECT_EQ(Feed(lgr, req, T(1)),
            (LgrActions{LgrQpToRts{}, Sent(resp), LgrLinkUp{3, 0x103, 0x77},
                        LgrArmTimer{T(31)}}));
  EXPECT_EQ(lgr.state(), LgrState::kActive);
}

TEST(LgrClient, IgnoresEverythingButTheRequestWhileItsQpIsRtr) {
  SeededEntropy entropy(1);
  Lgr lgr(Params(Role::kClient), &entropy);
  lgr.OnEvent(LgrQpReady{}, T(0));
  EXPECT_TRUE(Feed(lgr, TestLink(false), T(1)).empty());
  EXPECT_TRUE(Feed(lgr, ConfirmLink(Role::kServer, true), T(1)).empty());
  EXPECT_EQ(lgr.state(), LgrState::kConfirmingLink);
  EXPECT_EQ(lgr.data().counters.llc_ignored, 2u);
}

TEST(LgrClient, RequestWithoutEyecatcherDeclinesRmbeEc) {
  SeededEntropy entropy(1);
  Lgr lgr(Params(Role::kClient), &entropy);
  lgr.OnEvent(LgrQpReady{}, T(0));
  std::vector<std::byte> b = Bytes(ConfirmLink(Role::kServer, false));
  b[3] = std::byte{0};
  EXPECT_EQ(lgr.OnEvent(LgrLlcReceived{b}, T(1)),
            (LgrActions{LgrFirstContactFailed{wire::kReasonRmbeEc},
                        LgrEnded{Code(LlcDeleteLinkReason::kProtViol), {}},
                        LgrCancelTimer{}}));
}

// ---- TEST_LINK ------------------------------------------------------------

TEST(LgrTestLink, EveryRequestIsEchoedAtOnce) {
  Lgr lgr = Active(Role::kClient);
  wire::LlcTestLink req = TestLink(false);
  req.user_data[0] = 0xAB;
  wire::LlcTestLink resp = req;
  resp.hdr.response = true;
  EXPECT_EQ(Feed(lgr, req, T(5)), (LgrActions{Sent(resp)}));
  EXPECT_EQ(lgr.data().last_rx, T(5));
}

TEST(LgrTestLink, KeepaliveAfterIdleTimeThenAnswered) {
  Lgr lgr = Active(Role::kServer);
  EXPECT_EQ(lgr.OnEvent(LgrTimeout{}, T(30)),
            (LgrActions{Sent(TestLink(false)), LgrArmTimer{T(32)}}));
  EXPECT_TRUE(lgr.data().test_outstanding);
  EXPECT_EQ(Feed(lgr, TestLink(true), T(31)), (LgrActions{LgrArmTimer{T(61)}}));
  EXPECT_FALSE(lgr.data().test_outstanding);
}

TEST(LgrTestLink, NoAnswerInTwoSecondsEndsTheGroupWithoutSending) {
  Lgr lgr = Active(Role::kServer, 2);
  lgr.OnEvent(LgrTimeout{}, T(30));
  EXPECT_EQ(lgr.OnEvent(LgrTimeout{}, T(32)),
            (LgrActions{LgrEnded{Code(LlcDeleteLinkReason::kLostPath), {1, 2}},
                        LgrCancelTimer{}}));
  EXPECT_EQ(lgr.state(), LgrState::kEnded);
}

TEST(LgrTestLink, TrafficPostponesTheKeepalive) {
  Lgr lgr = Active(Role::kClient);
  EXPECT_TRUE(lgr.OnEvent(LgrRxActivity{}, T(20)).empty());
  EXPECT_EQ(lgr.OnEvent(LgrTimeout{}, T(30)), (LgrActions{LgrArmTimer{T(50)}}));
  EXPECT_EQ(lgr.data().counters.test_link_sent, 0u);
}

TEST(LgrTestLink, UnsolicitedResponseIsIgnored) {
  Lgr lgr = Active(Role::kClient);
  EXPECT_TRUE(Feed(lgr, TestLink(true), T(3)).empty());
  EXPECT_EQ(lgr.data().counters.llc_ignored, 1u);
}

// ---- ADD_LINK / REQ_ADD_LINK (max_links 1) -------------------------------

wire::LlcAddLink AddLinkV2() {
  wire::LlcAddLink m;
  m.hdr.v2 = true;
  m.sender_mac = LabMac(1);
  m.sender_gid = V4Gid(1);
  m.sender_qpn = 0x12;
  m.link_num = 2;
  m.qp_mtu = 3;
  m.initial_psn = 0x4949b7;
  m.has_v2_ext = true;
  m.v2_direct = true;
  m.client_target_gid = V4Gid(1);
  m.num_rkeys = 1;
  m.rkeys[0] = {0x367, 0x522, 0xffff8953c35c0000};
  return m;
}

TEST(LgrAddLink, ClientRejectsWithTheFirst44BytesEchoed) {
  Lgr lgr = Active(Role::kClient);
  wire::LlcAddLink reply = AddLinkV2();
  reply.hdr.response = true;
  reply.rejected = true;
  reply.has_v2_ext = false;
  reply.v2_direct = false;
  reply.client_target_gid = {};
  reply.num_rkeys = 0;
  reply.rkeys = {};
  EXPECT_EQ(Feed(lgr, AddLinkV2(), T(1)), (LgrActions{Sent(reply)}));
  EXPECT_EQ(lgr.state(), LgrState::kActive);
}

TEST(LgrAddLink, ServerIgnoresTheClientsSuggestion) {
  Lgr lgr = Active(Role::kServer);
  EXPECT_TRUE(Feed(lgr, AddLinkV2(), T(1)).empty());
}

TEST(LgrAddLink, ServerAnswersReqAddLinkWithZeroedData) {
  Lgr lgr = Active(Role::kServer);
  wire::LlcReqAddLink req;
  req.hdr.v2 = true;
  req.gid_cnt = 2;
  req.gids[0] = V4Gid(2);
  req.gids[1] = V4Gid(3);
  wire::LlcReqAddLink resp;
  resp.hdr.v2 = true;
  resp.hdr.response = true;
  EXPECT_EQ(Feed(lgr, req, T(1)), (LgrActions{Sent(resp)}));
  Lgr client = Active(Role::kClient);
  EXPECT_TRUE(Feed(client, req, T(1)).empty());
}

// ---- the peer's RKEY flows ------------------------------------------------

TEST(LgrPeerRkey, ConfirmRkeyIsStoredAndEchoed) {
  Lgr lgr = Active(Role::kClient);
  wire::LlcConfirmRkey req = ConfirmRkey(0x400, 0xA000, false);
  wire::LlcConfirmRkey resp = req;
  resp.hdr.response = true;
  EXPECT_EQ(Feed(lgr, req, T(1)), (LgrActions{Sent(resp)}));
  EXPECT_EQ(lgr.FindRtoken(0x400), 0);
}

TEST(LgrPeerRkey, TooManyEntriesOrAFullTableIsNegRetry) {
  Lgr lgr = Active(Role::kClient);
  wire::LlcConfirmRkey req = ConfirmRkey(0x400, 0xA000, false);
  req.num_other_rtokens = 4;
  wire::LlcConfirmRkey resp = req;
  resp.hdr.response = resp.negative = resp.retry = true;
  EXPECT_EQ(Feed(lgr, req, T(1)), (LgrActions{Sent(resp)}));
  EXPECT_EQ(lgr.FindRtoken(0x400), -1);

  LgrData d = lgr.data();
  for (size_t i = 0; i < kLgrMaxRtokens; ++i)
    d.rtokens[i] = {1000u + uint32_t(i), i, true};
  d.num_rtokens = kLgrMaxRtokens;
  Lgr full(Params(Role::kClient), d);
  req.num_other_rtokens = 0;
  resp.num_other_rtokens = 0;
  EXPECT_EQ(Feed(full, req, T(1)), (LgrActions{Sent(resp)}));
}

TEST(LgrPeerRkey, DeleteRkeyCountsUnknownKeys) {
  Lgr lgr = Active(Role::kServer);
  lgr.OnEvent(LgrAddPeerRtoken{0x35c, 0x1000}, T(0));
  wire::LlcDeleteRkey resp = DeleteRkey({}, true);
  std::array<std::byte, 44> want = Bytes44(resp);
  want[4] = std::byte{1};
  EXPECT_EQ(Feed(lgr, DeleteRkey({0x35c}, false), T(1)),
            (LgrActions{LgrSendLlc{want, wire::LlcType::kDeleteRkey, true}}));
  EXPECT_EQ(lgr.FindRtoken(0x35c), -1);
  // Again: now unknown -> NEG, byte 5 = 1.
  want[3] = std::byte{0xA0};
  want[5] = std::byte{1};
  EXPECT_EQ(Feed(lgr, DeleteRkey({0x35c}, false), T(2)),
            (LgrActions{LgrSendLlc{want, wire::LlcType::kDeleteRkey, true}}));
}

TEST(LgrPeerRkey, LongDeleteRkeyV2IsAnsweredIn44Bytes) {
  Lgr lgr = Active(Role::kServer);
  std::vector<uint32_t> keys;
  for (uint32_t i = 0; i < 12; ++i) {
    keys.push_back(0x500 + i);
    if (i % 2 == 0) lgr.OnEvent(LgrAddPeerRtoken{0x500 + i, i}, T(0));
  }
  LgrActions a = Feed(lgr, DeleteRkey(keys, false), T(1));
  ASSERT_EQ(a.size(), 1u);
  const auto& s = std::get<LgrSendLlc>(a[0]);
  EXPECT_EQ(s.bytes[1], std::byte{44});
  EXPECT_EQ(s.bytes[3], std::byte{0xA0});
  EXPECT_EQ(s.bytes[4], std::byte{12});
  EXPECT_EQ(s.bytes[5], std::byte{6});
  EXPECT_EQ(lgr.data().num_rtokens, 0);
}

// ---- our RKEY flows ---------------------------------------------------------

TEST(LgrLocalFlow, OneAtATimeQueuedInOrder) {
  Lgr lgr = Active(Role::kClient);  // timer armed at T(30)
  EXPECT_EQ(
      lgr.OnEvent(LgrConfirmRkey{0x10, 0x2000}, T(1)),
      (LgrActions{Sent(ConfirmRkey(0x10, 0x2000, false)), LgrArmTimer{T(3)}}));
  EXPECT_TRUE(lgr.OnEvent(LgrDeleteRkey{0x9}, T(1)).empty());  // queued
  EXPECT_EQ(lgr.data().queue_len, 1);
  // A response of the other kind is not ours: dropped.
  EXPECT_TRUE(Feed(lgr, DeleteRkey({0x9}, true), T(2)).empty());
  EXPECT_EQ(Feed(lgr, ConfirmRkey(0x10, 0x2000, true), T(2)),
            (LgrActions{LgrRkeyConfirmed{0x10, true},
                        Sent(DeleteRkey({0x9}, false)), LgrArmTimer{T(4)}}));
  wire::LlcDeleteRkey neg = DeleteRkey({0}, true);
  neg.negative = true;
  EXPECT_EQ(Feed(lgr, neg, T(3)),
            (LgrActions{LgrRkeyDeleted{0x9, false}, LgrArmTimer{T(30)}}));
  EXPECT_EQ(lgr.data().flow.flow, LgrLocalFlow::kNone);
}

TEST(LgrLocalFlow, NoAnswerInTwoSecondsFailsTheFlowOnly) {
  Lgr lgr = Active(Role::kServer);
  lgr.OnEvent(LgrConfirmRkey{0x10, 0x2000}, T(1));
  EXPECT_EQ(lgr.OnEvent(LgrTimeout{}, T(3)),
            (LgrActions{LgrRkeyConfirmed{0x10, false}, LgrArmTimer{T(30)}}));
  EXPECT_EQ(lgr.state(), LgrState::kActive);
  // The late answer is out of flow.
  EXPECT_TRUE(Feed(lgr, ConfirmRkey(0x10, 0x2000, true), T(4)).empty());
}

TEST(LgrLocalFlow, QueuedUntilTheLinkIsUp) {
  SeededEntropy entropy(1);
  Lgr lgr(Params(Role::kServer), &entropy);
  lgr.OnEvent(LgrConnOpen{}, T(0));
  EXPECT_TRUE(lgr.OnEvent(LgrConfirmRkey{0x10, 0x2000}, T(0)).empty());
  lgr.OnEvent(LgrQpReady{}, T(0));
  EXPECT_EQ(
      Feed(lgr, ConfirmLink(Role::kClient, true), T(1)),
      (LgrActions{LgrLinkUp{1, 0x101, 0x101},
                  Sent(ConfirmRkey(0x10, 0x2000, false)), LgrArmTimer{T(3)}}));
}

// ---- DELETE_LINK, termination, idle ---------------------------------------

TEST(LgrDeleteLink, ClientTerminatesOnAllAndSendsItsOwn) {
  Lgr lgr = Active(Role::kClient, 2);
  lgr.OnEvent(LgrConfirmRkey{0x10, 0x2000}, T(1));
  EXPECT_EQ(
      Feed(lgr, DeleteLink(true, false, 0, LlcDeleteLinkReason::kOpInitTerm),
           T(2)),
      (LgrActions{
          Sent(DeleteLink(true, false, 0, LlcDeleteLinkReason::kProgInitTerm)),
          LgrRkeyConfirmed{0x10, false},
          LgrEnded{Code(LlcDeleteLinkReason::kOpInitTerm), {1, 2}},
          LgrCancelTimer{}}));
  EXPECT_EQ(lgr.state(), LgrState::kEnded);
  EXPECT_EQ(lgr.data().num_tokens, 0);
}

TEST(LgrDeleteLink, ServerEchoesAllOrderlyWithThePeersReason) {
  Lgr lgr = Active(Role::kServer);
  EXPECT_EQ(
      Feed(lgr, DeleteLink(true, true, 0, LlcDeleteLinkReason::kProgInitTerm),
           T(2)),
      (LgrActions{
          Sent(DeleteLink(true, true, 0, LlcDeleteLinkReason::kProgInitTerm)),
          LgrEnded{Code(LlcDeleteLinkReason::kProgInitTerm), {1}},
          LgrCancelTimer{}}));
}

TEST(LgrDeleteLink, ClientAnswersForAnotherLinkNoLnkAndForOursEnds) {
  Lgr lgr = Active(Role::kClient);
  wire::LlcDeleteLink other =
      DeleteLink(false, true, 2, LlcDeleteLinkReason::kLostPath);
  wire::LlcDeleteLink nolnk = other;
  nolnk.hdr.response = true;
  nolnk.reason = Code(LlcDeleteLinkReason::kNoLnk);
  EXPECT_EQ(Feed(lgr, other, T(1)), (LgrActions{Sent(nolnk)}));
  wire::LlcDeleteLink ours =
      DeleteLink(false, true, 1, LlcDeleteLinkReason::kLostPath);
  wire::LlcDeleteLink ack = ours;
  ack.hdr.response = true;
  ack.reason = 0;
  EXPECT_EQ(Feed(lgr, ours, T(2)),
            (LgrActions{Sent(ack),
                        LgrEnded{Code(LlcDeleteLinkReason::kLostPath), {1}},
                        LgrCancelTimer{}}));
}

TEST(LgrDeleteLink, ResponsesAreIgnored) {
  Lgr lgr = Active(Role::kClient);
  wire::LlcDeleteLink m =
      DeleteLink(true, true, 0, LlcDeleteLinkReason::kProgInitTerm);
  m.hdr.response = true;
  EXPECT_TRUE(Feed(lgr, m, T(1)).empty());
  EXPECT_EQ(lgr.state(), LgrState::kActive);
}

TEST(LgrEnd, TerminateSendsDeleteLinkAllAndAbortsEveryConnection) {
  Lgr lgr = Active(Role::kServer, 3);
  EXPECT_EQ(
      lgr.OnEvent(LgrTerminate{false, Code(LlcDeleteLinkReason::kOpInitTerm)},
                  T(1)),
      (LgrActions{
          Sent(DeleteLink(true, false, 0, LlcDeleteLinkReason::kOpInitTerm)),
          LgrEnded{Code(LlcDeleteLinkReason::kOpInitTerm), {1, 2, 3}},
          LgrCancelTimer{}}));
}

TEST(LgrEnd, LinkFailureSendsNothing) {
  Lgr lgr = Active(Role::kClient);
  EXPECT_EQ(lgr.OnEvent(LgrLinkFailed{}, T(1)),
            (LgrActions{LgrEnded{Code(LlcDeleteLinkReason::kLostPath), {1}},
                        LgrCancelTimer{}}));
}

TEST(LgrEnd, AfterTheEndEverythingIsRefusedOrIgnored) {
  Lgr lgr = Active(Role::kClient);
  lgr.OnEvent(LgrLinkFailed{}, T(1));
  EXPECT_EQ(lgr.OnEvent(LgrConnOpen{}, T(2)), (LgrActions{LgrConnRefused{}}));
  EXPECT_EQ(lgr.OnEvent(LgrConfirmRkey{5, 6}, T(2)),
            (LgrActions{LgrRkeyConfirmed{5, false}}));
  EXPECT_EQ(lgr.OnEvent(LgrDeleteRkey{5}, T(2)),
            (LgrActions{LgrRkeyDeleted{5, false}}));
  EXPECT_EQ(lgr.OnEvent(LgrAddPeerRtoken{5, 6}, T(2)),
            (LgrActions{LgrPeerRtokenAdded{5, false}}));
  EXPECT_TRUE(Feed(lgr, TestLink(false), T(2)).empty());
  EXPECT_TRUE(lgr.OnEvent(LgrTimeout{}, T(100)).empty());
  EXPECT_TRUE(lgr.OnEvent(LgrTerminate{}, T(100)).empty());
}

TEST(LgrIdle, NoConnectionsForTheIdleTimeEndsOrderly) {
  Lgr lgr = Active(Role::kClient, 1);
  EXPECT_EQ(lgr.OnEvent(LgrConnClosed{1}, T(10)),
            (LgrActions{}));  // idle deadline 40 > armed 30
  EXPECT_EQ(lgr.data().idle_deadline, T(40));
  lgr.OnEvent(LgrRxActivity{}, T(25));  // keepalive not due before 55
  EXPECT_EQ(lgr.OnEvent(LgrTimeout{}, T(30)), (LgrActions{LgrArmTimer{T(40)}}));
  EXPECT_EQ(lgr.OnEvent(LgrTimeout{}, T(40)),
            (LgrActions{Sent(DeleteLink(true, true, 0,
                                        LlcDeleteLinkReason::kProgInitTerm)),
                        LgrEnded{Code(LlcDeleteLinkReason::kProgInitTerm), {}},
                        LgrCancelTimer{}}));
}

TEST(LgrIdle, ANewConnectionCancelsIt) {
  Lgr lgr = Active(Role::kServer, 0);
  EXPECT_EQ(lgr.data().idle_deadline, T(30));
  EXPECT_EQ(lgr.OnEvent(LgrConnOpen{}, T(5)), (LgrActions{LgrConnAdded{1}}));
  EXPECT_EQ(lgr.data().idle_deadline, TimePoint{});
}

TEST(LgrIdle, WaitsForTheLocalFlowToEnd) {
  LgrParams p = Params(Role::kServer);
  p.testlink_time = Duration::zero();
  Lgr lgr = Active(Role::kServer, 0, p);
  lgr.OnEvent(LgrDeleteRkey{0x9}, T(29));  // answer due at 31
  EXPECT_EQ(lgr.OnEvent(LgrTimeout{}, T(30)), (LgrActions{LgrArmTimer{T(31)}}));
  EXPECT_EQ(lgr.state(), LgrState::kActive);
  LgrActions a = lgr.OnEvent(LgrTimeout{}, T(31));
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a[0], LgrAction(LgrRkeyDeleted{0x9, false}));
  EXPECT_EQ(a[1], LgrAction(Sent(DeleteLink(
                      true, true, 0, LlcDeleteLinkReason::kProgInitTerm))));
  EXPECT_EQ(lgr.state(), LgrState::kEnded);
}

// ---- hostile input ----------------------------------------------------------

TEST(LgrHostile, ShortOrUnknownMessagesAreIgnored) {
  Lgr lgr = Active(Role::kClient);
  std::vector<std::byte> b = Bytes(TestLink(false));
  EXPECT_TRUE(
      lgr.OnEvent(LgrLlcReceived{std::span(b).first(43)}, T(1)).empty());
  b[0] = std::byte{0x2A};  // no such type
  EXPECT_TRUE(lgr.OnEvent(LgrLlcReceived{b}, T(1)).empty());
  b[0] = std::byte{0x37};  // version 3
  EXPECT_TRUE(lgr.OnEvent(LgrLlcReceived{b}, T(1)).empty());
  EXPECT_TRUE(lgr.OnEvent(LgrLlcReceived{{}}, T(1)).empty());
  EXPECT_EQ(lgr.data().counters.llc_ignored, 4u);
  EXPECT_EQ(lgr.state(), LgrState::kActive);
}

TEST(LgrHostile, AV1MessageInAV2GroupIsAProtocolViolation) {
  Lgr lgr = Active(Role::kServer, 1);
  wire::LlcTestLink v1 = TestLink(false);
  v1.hdr.v2 = false;
  EXPECT_EQ(Feed(lgr, v1, T(1)),
            (LgrActions{Sent(DeleteLink(true, false, 0,
                                        LlcDeleteLinkReason::kProtViol)),
                        LgrEnded{Code(LlcDeleteLinkReason::kProtViol), {1}},
                        LgrCancelTimer{}}));
}

TEST(LgrHostile, OutOfStateConfirmLinkIsIgnored) {
  Lgr lgr = Active(Role::kClient);
  EXPECT_TRUE(Feed(lgr, ConfirmLink(Role::kServer, false), T(1)).empty());
  EXPECT_EQ(lgr.state(), LgrState::kActive);
}

// ---- kernel replay (tests/data/kernel) -------------------------------------

std::vector<std::byte> Fixture(const std::string& name) {
  return usmc::testing::KernelFixture(name);
}

std::string Hex(const std::vector<std::byte>& b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  for (std::byte x : b) {
    s += kDigits[uint8_t(x) >> 4];
    s += kDigits[uint8_t(x) & 15];
  }
  return s;
}

std::string HexFixture(const std::string& name) { return Hex(Fixture(name)); }

// The only LLC message in `a`, as hex.
std::string OnlySent(const LgrActions& a) {
  std::vector<std::byte> out;
  for (const LgrAction& x : a) {
    if (const auto* s = std::get_if<LgrSendLlc>(&x)) {
      EXPECT_TRUE(out.empty()) << "more than one LLC message";
      out.assign(s->bytes.begin(), s->bytes.end());
    }
  }
  return Hex(out);
}

// The capture negotiated max_links 2 (kernel <-> kernel); usmc's machine is
// told the same so the fields it copies compare. QPN 0x11, MACs, GIDs and
// link_uid 0x101 (LGR id 0x100) are the capture's values (from its CLC
// Accept/Confirm, engine params here); rkeys 0x367 (server) and 0x35c
// (client) come from the CLC too.
LgrParams ReplayParams(Role role) {
  LgrParams p = Params(role);
  p.max_links = 2;
  p.max_conns = 255;
  return p;
}

class KernelReplay : public ::testing::Test {};

TEST_F(KernelReplay, UsmcClientAnswersTheKernelServer) {
  SeededEntropy entropy(3);
  Lgr lgr(ReplayParams(Role::kClient), &entropy);
  lgr.OnEvent(LgrConnOpen{}, T(0));
  lgr.OnEvent(LgrAddPeerRtoken{0x367, 0xffff8953c35c0000}, T(0));
  lgr.OnEvent(LgrQpReady{}, T(0));
  // f112 CONFIRM_LINK req -> f114 resp.
  LgrActions a = lgr.OnEvent(
      LgrLlcReceived{Fixture("llc_f0112_s2c_confirm_link_req.bin")}, T(1));
  EXPECT_EQ(OnlySent(a), HexFixture("llc_f0114_c2s_confirm_link_resp.bin"));
  ASSERT_EQ(lgr.state(), LgrState::kActive);
  // f116 ADD_LINK v2 (88 B) -> f118 rejection (44 B).
  a = lgr.OnEvent(LgrLlcReceived{Fixture("llc_f0116_s2c_add_link_req.bin")},
                  T(2));
  EXPECT_EQ(OnlySent(a), HexFixture("llc_f0118_c2s_add_link_resp.bin"));
  // f241 DELETE_RKEY of the server's RMB -> f244.
  a = lgr.OnEvent(LgrLlcReceived{Fixture("llc_f0241_s2c_delete_rkey_req.bin")},
                  T(3));
  EXPECT_EQ(OnlySent(a), HexFixture("llc_f0244_c2s_delete_rkey_resp.bin"));
  EXPECT_EQ(lgr.FindRtoken(0x367), -1);
  // Our own DELETE_RKEY for the client's RMB equals f243.
  a = lgr.OnEvent(LgrDeleteRkey{0x35c}, T(3));
  EXPECT_EQ(OnlySent(a), HexFixture("llc_f0243_c2s_delete_rkey_req.bin"));
  a = lgr.OnEvent(LgrLlcReceived{Fixture("llc_f0246_s2c_delete_rkey_resp.bin")},
                  T(3));
  EXPECT_EQ(a.front(), LgrAction(LgrRkeyDeleted{0x35c, true}));
  // f258 DELETE_LINK ALL OP_INIT_TERM -> f260 DELETE_LINK ALL PROG_INIT_TERM.
  a = lgr.OnEvent(LgrLlcReceived{Fixture("llc_f0258_s2c_delete_link_req.bin")},
                  T(4));
  EXPECT_EQ(OnlySent(a), HexFixture("llc_f0260_c2s_delete_link_req.bin"));
  EXPECT_EQ(lgr.state(), LgrState::kEnded);
}

TEST_F(KernelReplay, UsmcServerSpeaksLikeTheKernelServer) {
  SeededEntropy entropy(4);
  Lgr lgr(ReplayParams(Role::kServer), &entropy);
  lgr.OnEvent(LgrConnOpen{}, T(0));
  lgr.OnEvent(LgrAddPeerRtoken{0x35c, 0x1000}, T(0));
  // Our CONFIRM_LINK request equals f112.
  LgrActions a = lgr.OnEvent(LgrQpReady{}, T(0));
  EXPECT_EQ(OnlySent(a), HexFixture("llc_f0112_s2c_confirm_link_req.bin"));
  // The kernel client's f114 activates the link.
  a = lgr.OnEvent(
      LgrLlcReceived{Fixture("llc_f0114_c2s_confirm_link_resp.bin")}, T(1));
  EXPECT_EQ(a.front(), LgrAction(LgrLinkUp{1, 0x101, 0x101}));
  // Our DELETE_RKEY for the server's RMB equals f241; f244 answers it.
  a = lgr.OnEvent(LgrDeleteRkey{0x367}, T(2));
  EXPECT_EQ(OnlySent(a), HexFixture("llc_f0241_s2c_delete_rkey_req.bin"));
  a = lgr.OnEvent(LgrLlcReceived{Fixture("llc_f0244_c2s_delete_rkey_resp.bin")},
                  T(2));
  EXPECT_EQ(a.front(), LgrAction(LgrRkeyDeleted{0x367, true}));
  // f243 (the kernel client's DELETE_RKEY) -> f246.
  a = lgr.OnEvent(LgrLlcReceived{Fixture("llc_f0243_c2s_delete_rkey_req.bin")},
                  T(3));
  EXPECT_EQ(OnlySent(a), HexFixture("llc_f0246_s2c_delete_rkey_resp.bin"));
  // The kernel server's end (OP_INIT_TERM, not orderly) equals f258.
  a = lgr.OnEvent(LgrTerminate{false, Code(LlcDeleteLinkReason::kOpInitTerm)},
                  T(4));
  EXPECT_EQ(OnlySent(a), HexFixture("llc_f0258_s2c_delete_link_req.bin"));
}

}  // namespace
}  // namespace usmc::engine
