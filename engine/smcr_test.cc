// SMC-R in the engine: two Connections (usmc client and server) with the
// link-group machine of each process (engine/lgr) wired in by
// engine/smcr_test_util.h as the runtime will wire it: CLC v2 SMC-R paths,
// first contact and reuse, the kernel's deadlines in simulated time, and the
// data path over RDMA WRITE + 44-byte SEND.
#include <gtest/gtest.h>

#include <cerrno>
#include <numeric>
#include <random>

#include "engine/clc_smcr.h"
#include "engine/smcr_test_util.h"
#include "engine/smcr_transport.h"
#include "engine/test_util.h"
#include "wire/cdc.h"
#include "wire/llc.h"
#include "wire/reason.h"

namespace usmc::engine {
namespace {

using namespace std::chrono_literals;
using testing::SmcrParams;
using testing::SmcrSide;
using testing::SmcrWire;

constexpr TimePoint T(int ms) {
  return TimePoint(std::chrono::milliseconds(ms));
}

// The app's send: copy into the sndbuf mirror per PlanSend, then AppSent.
size_t AppSend(SmcrSide& s, std::span<const std::byte> data, TimePoint now) {
  const CopyPlan p = s.conn.PlanSend(data.size());
  size_t done = 0;
  for (uint8_t i = 0; i < p.count; ++i) {
    std::memcpy(s.sndbuf.data() + p.chunks[i].offset, data.data() + done,
                p.chunks[i].len);
    done += p.chunks[i].len;
  }
  s.Feed(AppSent{p.total, p.total < data.size(), false}, now);
  return p.total;
}

std::vector<std::byte> AppRecv(SmcrSide& s, size_t max, TimePoint now) {
  const CopyPlan p = s.conn.PlanRecv(max);
  std::vector<std::byte> out;
  for (uint8_t i = 0; i < p.count; ++i) {
    const std::byte* src = s.rmb.data() + p.chunks[i].offset;
    out.insert(out.end(), src, src + p.chunks[i].len);
  }
  if (p.total > 0) s.Feed(AppConsumed{p.total}, now);
  return out;
}

std::vector<std::byte> Pattern(size_t n, uint32_t seed) {
  std::vector<std::byte> v(n);
  std::mt19937 g(seed);
  for (auto& b : v) b = std::byte(g());
  return v;
}

class SmcrPair : public ::testing::Test {
 protected:
  SeededEntropy ec_{1}, es_{2};
  SmcrSide c_{SmcrParams(Role::kClient, 2), &ec_};
  SmcrSide s_{SmcrParams(Role::kServer, 1), &es_};
  SmcrWire w_{c_, s_};

  void Handshake(TimePoint now = T(0)) {
    s_.Feed(Start{}, now);
    c_.Feed(Start{}, now);
    w_.Pump(now);
  }
  size_t CountLlc(const SmcrSide& side, wire::LlcType type) const {
    size_t n = 0;
    for (const LgrAction& a : side.lgr_actions) {
      if (const auto* s = std::get_if<LgrSendLlc>(&a)) n += s->type == type;
    }
    return n;
  }
};

TEST_F(SmcrPair, FirstContactConfirmsTheLinkThenBothAreSmcr) {
  Handshake();
  ASSERT_EQ(c_.conn.mode(), Mode::kSmc);
  ASSERT_EQ(s_.conn.mode(), Mode::kSmc);
  EXPECT_EQ(c_.conn.technology(), Technology::kSmcr);
  EXPECT_EQ(s_.conn.technology(), Technology::kSmcr);
  ASSERT_NE(c_.conn.smcr_link(), nullptr);
  const SmcrLink& cl = *c_.conn.smcr_link();
  const SmcrLink& sl = *s_.conn.smcr_link();
  EXPECT_TRUE(cl.first_contact);
  // Mirror images: each side's token is what the other puts in its CDCs.
  EXPECT_EQ(cl.local_token, sl.peer_token);
  EXPECT_EQ(cl.peer_token, sl.local_token);
  EXPECT_EQ(cl.peer_rkey, s_.params.smcr.rmb_rkey);
  EXPECT_EQ(sl.peer_vaddr, c_.params.smcr.rmb_iova);
  EXPECT_EQ(cl.max_links, 1);
  EXPECT_EQ(cl.local_system_id, c_.params.smcr_system_id);
  EXPECT_EQ(c_.lgr->state(), LgrState::kActive);
  EXPECT_EQ(s_.lgr->state(), LgrState::kActive);
  EXPECT_EQ(CountLlc(s_, wire::LlcType::kConfirmLink), 1u);
  EXPECT_EQ(CountLlc(c_, wire::LlcType::kConfirmLink), 1u);
}

TEST_F(SmcrPair, OneMiBEachWayIntactThenOrderlyClose) {
  Handshake();
  ASSERT_EQ(c_.conn.mode(), Mode::kSmc);
  const std::vector<std::byte> up = Pattern(1 << 20, 7),
                               down = Pattern(1 << 20, 8);
  std::vector<std::byte> got_up, got_down;
  size_t sent_up = 0, sent_down = 0;
  std::mt19937 g(3);
  for (int round = 0; round < 100000 && (got_up.size() < up.size() ||
                                         got_down.size() < down.size());
       ++round) {
    const size_t chunk = 1 + g() % 40000;
    if (sent_up < up.size()) {
      sent_up += AppSend(
          c_,
          std::span(up).subspan(sent_up, std::min(chunk, up.size() - sent_up)),
          T(1));
    }
    if (sent_down < down.size()) {
      sent_down +=
          AppSend(s_,
                  std::span(down).subspan(
                      sent_down, std::min(chunk, down.size() - sent_down)),
                  T(1));
    }
    w_.Pump(T(1));
    auto a = AppRecv(s_, 1 + g() % 70000, T(1));
    got_up.insert(got_up.end(), a.begin(), a.end());
    auto b = AppRecv(c_, 1 + g() % 70000, T(1));
    got_down.insert(got_down.end(), b.begin(), b.end());
    w_.Pump(T(1));
  }
  EXPECT_TRUE(got_up == up);
  EXPECT_TRUE(got_down == down);
  // Never more than two WRITEs before a SEND, never outside the ring.
  size_t writes_in_a_row = 0;
  for (const Action& a : c_.actions) {
    if (const auto* w = std::get_if<RdmaWrite>(&a)) {
      ++writes_in_a_row;
      EXPECT_LE(w->offset + w->len, s_.params.smcr.rmb_size);
    } else if (std::holds_alternative<PostSend>(a)) {
      EXPECT_LE(writes_in_a_row, 2u);
      writes_in_a_row = 0;
    }
  }
  c_.Feed(AppClose{}, T(2));
  w_.Pump(T(2));
  s_.Feed(AppClose{}, T(2));
  w_.Pump(T(2));
  EXPECT_EQ(c_.conn.close_state(), CloseState::kClosed);
  EXPECT_EQ(s_.conn.close_state(), CloseState::kClosed);
  EXPECT_TRUE(c_.tcp_closed);
  EXPECT_TRUE(s_.tcp_closed);
  // Each side withdrew its RMB (DELETE_RKEY) and the group stays.
  EXPECT_EQ(CountLlc(c_, wire::LlcType::kDeleteRkey), 2u);  // req + resp
  EXPECT_EQ(c_.lgr->state(), LgrState::kActive);
  EXPECT_EQ(c_.lgr->data().num_tokens, 0);
}

// The engine runs only when the app calls in (or the handshake's driver):
// a CDC corked while another was in flight would wait for a completion that
// only the app's next call feeds. An idle sender (socat blocked on its
// input) then held its last bytes unsent, and they raced its close (the
// lab's usmc-pair: the last 8 KiB lost). Every send goes out at once.
TEST_F(SmcrPair, ASendWhileACdcIsInFlightGoesOutWithoutAnotherCall) {
  Handshake();
  ASSERT_EQ(c_.conn.mode(), Mode::kSmc);
  c_.auto_send_completions = false;  // no completion reaches the engine
  const std::vector<std::byte> data = Pattern(300, 5);
  const size_t sends_before = c_.sends_total;
  ASSERT_EQ(AppSend(c_, std::span(data).first(100), T(1)), 100u);
  ASSERT_EQ(AppSend(c_, std::span(data).subspan(100), T(1)), 200u);
  EXPECT_EQ(c_.sends_total - sends_before, 2u);  // a CDC per send
  w_.Pump(T(1));
  EXPECT_TRUE(AppRecv(s_, 1000, T(1)) == data);
}

TEST_F(SmcrPair, OneByteTrickleAndUrgentByte) {
  Handshake();
  const std::vector<std::byte> msg = Pattern(300, 9);
  std::vector<std::byte> got;
  for (size_t i = 0; i < msg.size(); ++i) {
    ASSERT_EQ(AppSend(c_, std::span(msg).subspan(i, 1), T(1)), 1u);
    w_.Pump(T(1));
    auto r = AppRecv(s_, 1, T(1));
    got.insert(got.end(), r.begin(), r.end());
  }
  EXPECT_TRUE(got == msg);
  // An urgent byte: the engine asks for it to be captured from our RMB.
  const CopyPlan p = c_.conn.PlanSend(1);
  c_.sndbuf[p.chunks[0].offset] = std::byte{'!'};
  c_.Feed(AppSent{1, false, true}, T(2));
  w_.Pump(T(2));
  const CaptureUrgentByte* cap = nullptr;
  for (const Action& a : s_.actions) {
    if (const auto* x = std::get_if<CaptureUrgentByte>(&a)) cap = x;
  }
  ASSERT_NE(cap, nullptr);
  EXPECT_EQ(s_.rmb[cap->buffer_offset], std::byte{'!'});
}

TEST_F(SmcrPair, LostConfirmLinkDeclinesTimeoutClAndBothStayTcpWithAppBytes) {
  // The server's CONFIRM_LINK request never reaches the client.
  w_.drop_llc_b_to_a = true;
  Handshake(T(0));
  ASSERT_EQ(s_.conn.handshake_state(), "AWAIT_LINK");
  ASSERT_EQ(c_.conn.handshake_state(), "AWAIT_LINK");
  ASSERT_TRUE(s_.lgr_deadline.has_value());
  EXPECT_EQ(*s_.lgr_deadline, T(0) + kLlcWaitTime);      // server: 2 s
  EXPECT_EQ(*c_.lgr_deadline, T(0) + 2 * kLlcWaitTime);  // client: 4 s
  // The server's app already wrote bytes to TCP? No: it is still in
  // accept(). The client's app bytes after the handshake follow on TCP.
  s_.LgrTick(T(2000));
  ASSERT_TRUE(s_.fallback.has_value());
  EXPECT_EQ(s_.fallback->local_reason, wire::kReasonTimeoutCl);
  EXPECT_TRUE(s_.fallback->declined);
  // The Decline reaches the client (still waiting for its link), with the
  // server app's first bytes right behind it on the same stream.
  const std::vector<std::byte> app = Pattern(100, 4);
  s_.tcp_out.push_back(app);
  w_.Pump(T(2000));
  ASSERT_TRUE(c_.fallback.has_value());
  EXPECT_EQ(c_.fallback->local_reason, wire::kReasonPeerDecl);
  EXPECT_EQ(c_.fallback->peer_reason, wire::kReasonTimeoutCl);
  EXPECT_EQ(c_.conn.mode(), Mode::kTcp);
  EXPECT_EQ(s_.conn.mode(), Mode::kTcp);
  EXPECT_TRUE(w_.TcpTo(c_) == app);  // every app byte still there
  // Each left the group it joined.
  EXPECT_EQ(c_.lgr->data().num_tokens, 0);
}

TEST_F(SmcrPair, ClientLinkTimeoutDeclinesTimeoutCl) {
  // Neither CONFIRM_LINK arrives and the server never answers (its side of
  // the TCP stream is held): the client's 4 s run out first on its side.
  w_.drop_llc_b_to_a = true;
  Handshake(T(0));
  c_.LgrTick(T(4000));
  ASSERT_TRUE(c_.fallback.has_value());
  EXPECT_EQ(c_.fallback->local_reason, wire::kReasonTimeoutCl);
  ASSERT_FALSE(c_.tcp_out.empty());
  wire::WireResult<wire::ClcMessage> d = wire::DecodeClc(c_.tcp_out.back());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(std::get<wire::ClcDecline>(*d).peer_diagnosis,
            wire::kReasonTimeoutCl);
  EXPECT_EQ(c_.lgr->state(), LgrState::kEnded);
}

TEST_F(SmcrPair, SecondConnectionReusesTheGroupWithConfirmRkey) {
  Handshake();
  ASSERT_EQ(c_.conn.mode(), Mode::kSmc);
  c_.Feed(AppClose{}, T(1));
  w_.Pump(T(1));
  s_.Feed(AppClose{}, T(1));
  w_.Pump(T(1));
  // A second connection of the same two processes.
  SeededEntropy e3(3), e4(4);
  SmcrSide c2(c_.params, &e3), s2(s_.params, &e4);
  c2.lgr.swap(c_.lgr);
  s2.lgr.swap(s_.lgr);
  // Same QPs: the groups are the processes'.
  SmcrWire w2(c2, s2);
  s2.Feed(Start{}, T(2));
  c2.Feed(Start{}, T(2));
  // The LLC of the group (CONFIRM_RKEY) runs on the same link.
  w2.Pump(T(2));
  ASSERT_EQ(c2.conn.mode(), Mode::kSmc);
  ASSERT_EQ(s2.conn.mode(), Mode::kSmc);
  EXPECT_FALSE(c2.conn.smcr_link()->first_contact);
  EXPECT_EQ(s2.conn.smcr_link()->local_token, 2u);           // the next token
  EXPECT_EQ(CountLlc(s2, wire::LlcType::kConfirmRkey), 2u);  // ours + answer
  EXPECT_EQ(CountLlc(c2, wire::LlcType::kConfirmRkey), 2u);
  EXPECT_EQ(CountLlc(c2, wire::LlcType::kConfirmLink), 0u);
  // The reuse Accept has no First Contact Extension: 108 bytes, 0x20.
  bool saw_reuse_accept = false;
  for (const Action& a : s2.actions) {
    if (const auto* t = std::get_if<SendTcp>(&a)) {
      if (t->type == wire::ClcType::kAccept) {
        EXPECT_EQ(t->bytes.size(), wire::kClcSmcrAcceptV2BaseLen);
        EXPECT_EQ(t->bytes[7], std::byte{0x20});
        saw_reuse_accept = true;
      }
    }
  }
  EXPECT_TRUE(saw_reuse_accept);
}

TEST_F(SmcrPair, TenSequentialConnectionsShareOneGroup) {
  // Ten connections, one after the other, between the same two processes:
  // one first contact, then nine reuses; each connection announces its RMB
  // once (the first by CLC, the others by CONFIRM_RKEY) and withdraws it
  // once (DELETE_RKEY) at its end.
  std::optional<Lgr> client_group, server_group;
  size_t rkey_confirms = 0, rkey_deletes = 0, link_confirms = 0;
  for (int i = 0; i < 10; ++i) {
    SeededEntropy e1(10 + i), e2(20 + i);
    SmcrSide c(c_.params, &e1), s(s_.params, &e2);
    c.lgr.swap(client_group);
    s.lgr.swap(server_group);
    SmcrWire w(c, s);
    s.Feed(Start{}, T(i));
    c.Feed(Start{}, T(i));
    w.Pump(T(i));
    ASSERT_EQ(c.conn.mode(), Mode::kSmc) << i;
    ASSERT_EQ(s.conn.technology(), Technology::kSmcr) << i;
    EXPECT_EQ(c.conn.smcr_link()->first_contact, i == 0);
    const std::vector<std::byte> msg = Pattern(1000, i);
    AppSend(c, msg, T(i));
    w.Pump(T(i));
    EXPECT_TRUE(AppRecv(s, 1000, T(i)) == msg);
    c.Feed(AppClose{}, T(i));
    w.Pump(T(i));
    s.Feed(AppClose{}, T(i));
    w.Pump(T(i));
    ASSERT_TRUE(c.tcp_closed && s.tcp_closed) << i;
    for (const LgrAction& a : c.lgr_actions) {
      if (const auto* x = std::get_if<LgrSendLlc>(&a)) {
        if (x->response) continue;
        rkey_confirms += x->type == wire::LlcType::kConfirmRkey;
        rkey_deletes += x->type == wire::LlcType::kDeleteRkey;
        link_confirms += x->type == wire::LlcType::kConfirmLink;
      }
    }
    c.lgr.swap(client_group);
    s.lgr.swap(server_group);
  }
  EXPECT_EQ(rkey_confirms, 9u);
  EXPECT_EQ(rkey_deletes, 10u);
  EXPECT_EQ(link_confirms, 0u);  // the client only answers CONFIRM_LINK
  EXPECT_EQ(client_group->state(), LgrState::kActive);
  EXPECT_EQ(client_group->data().num_tokens, 0);
  EXPECT_EQ(client_group->data().num_rtokens, 0);  // every peer RMB withdrawn
}

TEST_F(SmcrPair, ReuseAcceptForAnUnknownGroupDeclinesSyncErrOutOfSync) {
  // The server believes it shares a group with this client (in the kernel:
  // another process with the same system ID, SMCR.md §3.3) and sends a
  // reuse Accept; this client knows no such group.
  c_.Feed(Start{}, T(0));
  SmcrLink l;
  l.first_contact = false;
  l.local_system_id = {0x20, 0x22, 0x01, 0, 0, 0, 0, 0x01};
  l.local_qpn = 0x42;
  l.local_token = 7;
  l.local_rmb_size = 64 * 1024;
  const wire::ClcSmcrAccept a =
      BuildSmcrAccept(wire::ClcType::kAccept, s_.params, l);
  const std::vector<std::byte> bytes = testing::EncodeClcBytes(a);
  ASSERT_EQ(bytes.size(), wire::kClcSmcrAcceptV2BaseLen);
  s_.tcp_out.push_back(bytes);
  w_.Pump(T(0));
  ASSERT_TRUE(c_.fallback.has_value());
  EXPECT_EQ(c_.fallback->local_reason, wire::kReasonSyncErr);
  EXPECT_FALSE(c_.lgr.has_value());  // no group was created or joined
  // The Decline: v2 (0x20) with the out-of-sync bit (0x08), 0x04000000.
  std::vector<std::byte> decline;
  for (const Action& x : c_.actions) {
    if (const auto* t = std::get_if<SendTcp>(&x)) {
      if (t->type == wire::ClcType::kDecline) decline = t->bytes;
    }
  }
  ASSERT_EQ(decline.size(), wire::kClcDeclineV2Len);
  EXPECT_EQ(decline[7], std::byte{0x28});
  EXPECT_EQ(decline[16], std::byte{0x04});
  EXPECT_EQ(decline[17], std::byte{0x00});
  wire::WireResult<wire::ClcMessage> d = wire::DecodeClc(decline);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(std::get<wire::ClcDecline>(*d).out_of_sync);
}

TEST_F(SmcrPair, TestLinkIsAnsweredWhileTheConnectionSeesNoEvent) {
  Handshake();
  ASSERT_EQ(c_.conn.mode(), Mode::kSmc);
  const size_t conn_actions = c_.actions.size();
  // The peer's keepalive after 30 s of silence: the group answers it at
  // once, whatever the app does (the runtime's progress thread feeds it).
  wire::LlcTestLink t;
  t.hdr.v2 = true;
  t.user_data[0] = 0x5A;
  std::array<std::byte, 44> req{};
  ASSERT_TRUE(wire::EncodeLlc(t, req).ok());
  c_.FeedLlc(req, T(30000));
  ASSERT_FALSE(c_.send_out.empty());
  const std::array<std::byte, 44> resp = c_.send_out.back();
  wire::WireResult<wire::LlcMessage> m = wire::DecodeLlc(resp);
  ASSERT_TRUE(m.ok());
  const auto& r = std::get<wire::LlcTestLink>(*m);
  EXPECT_TRUE(r.hdr.response);
  EXPECT_EQ(r.user_data[0], 0x5A);
  EXPECT_EQ(c_.actions.size(), conn_actions);  // the connection was not asked
}

TEST_F(SmcrPair, GroupEndAbortsTheConnection) {
  Handshake();
  ASSERT_EQ(c_.conn.mode(), Mode::kSmc);
  c_.RunLgr(c_.lgr->OnEvent(LgrLinkFailed{}, T(5)), T(5));
  EXPECT_EQ(c_.conn.PendingError(), ECONNABORTED);
}

TEST_F(SmcrPair, CdcWithAnotherTokenOrOldSeqnoIsDropped) {
  Handshake();
  const std::vector<std::byte> msg = Pattern(10, 1);
  AppSend(c_, msg, T(1));
  ASSERT_FALSE(c_.send_out.empty());
  std::array<std::byte, 44> cdc = c_.send_out.back();
  w_.Pump(T(1));
  EXPECT_EQ(s_.conn.RecvState().readable, 10u);
  // Replayed (old seqno) and foreign-token copies change nothing.
  wire::CdcMessage m = *wire::DecodeCdc(cdc);
  m.producer = {0, 20};
  std::array<std::byte, 44> old{};
  ASSERT_TRUE(wire::EncodeCdc(m, old).ok());
  s_.Feed(SmcrCdcReceived{old}, T(1));
  m.seqno = 50;
  m.alert_token = 777;
  std::array<std::byte, 44> foreign{};
  ASSERT_TRUE(wire::EncodeCdc(m, foreign).ok());
  s_.Feed(SmcrCdcReceived{foreign}, T(1));
  // seqno equal to the last one is taken (the kernel drops only older).
  EXPECT_EQ(s_.conn.RecvState().readable, 20u);
}

// ---- CLC choices and reason codes ----

TEST(SmcrClc, ProposalOffersSmcrOrBoth) {
  SeededEntropy e(1);
  EngineParams p = SmcrParams(Role::kClient, 2);
  wire::ClcProposal r = BuildProposal(p);
  EXPECT_EQ(r.typev2, wire::SmcType::kR);
  EXPECT_EQ(r.typev1, wire::SmcType::kNone);
  EXPECT_EQ(r.peer_id, p.smcr_system_id);
  EXPECT_EQ(r.roce_v2_gid, p.smcr.gid);
  EXPECT_EQ(r.max_links, 1);
  EXPECT_EQ(r.max_conns, 255);
  EXPECT_EQ(r.ism_device_count, 0);
  p.smcd_enabled = true;
  p.device = SmcdDevice{1, 2, 0xFFFF};
  wire::ClcProposal b = BuildProposal(p);
  EXPECT_EQ(b.typev2, wire::SmcType::kBoth);
  EXPECT_EQ(b.ism_device_count, 1);
  EXPECT_TRUE(testing::EncodeClcBytes(b).size() > 0);
}

TEST(SmcrClc, ServerPrefersSmcdOnOneHostElseSmcr) {
  EngineParams client = SmcrParams(Role::kClient, 2);
  client.smcd_enabled = true;
  client.device = SmcdDevice{1, 2, 0xFFFF};
  EngineParams server = SmcrParams(Role::kServer, 1);
  server.smcd_enabled = true;
  server.device = client.device;
  const wire::ClcProposal p = BuildProposal(client);
  EXPECT_EQ(ChooseForProposal(p, server).technology, Technology::kSmcd);
  EXPECT_EQ(ChooseForProposal(p, server).reason, 0u);
  server.device.gid = 99;  // another host
  EXPECT_EQ(ChooseForProposal(p, server).technology, Technology::kSmcr);
  EXPECT_EQ(ChooseForProposal(p, server).reason, 0u);
  server.smcr_enabled = false;
  EXPECT_EQ(ChooseForProposal(p, server).reason, wire::kReasonNoSmcd2Dev);
}

struct BadSmcr {
  const char* name;
  void (*mutate)(wire::ClcProposal&);
  uint32_t reason;
};
class SmcrClcServerReasons : public ::testing::TestWithParam<BadSmcr> {};

TEST_P(SmcrClcServerReasons, DeclinesWithTheKernelsCode) {
  wire::ClcProposal p = BuildProposal(SmcrParams(Role::kClient, 2));
  GetParam().mutate(p);
  const ProposalChoice c = ChooseForProposal(p, SmcrParams(Role::kServer, 1));
  EXPECT_EQ(c.reason, GetParam().reason);
}

INSTANTIATE_TEST_SUITE_P(
    Reasons, SmcrClcServerReasons,
    ::testing::Values(
        BadSmcr{"NoUeid",
                [](wire::ClcProposal& p) { p.eids[0] = wire::MakeClcEid("X"); },
                wire::kReasonNoUeid},
        BadSmcr{"FewConns", [](wire::ClcProposal& p) { p.max_conns = 15; },
                wire::kReasonMaxConnErr},
        BadSmcr{"NoLinks", [](wire::ClcProposal& p) { p.max_links = 0; },
                wire::kReasonMaxLinkErr},
        BadSmcr{"NoGid", [](wire::ClcProposal& p) { p.roce_v2_gid = {}; },
                wire::kReasonNoSmcrDev},
        BadSmcr{"VersionOne",
                [](wire::ClcProposal& p) {
                  p.version = 1;
                  p.typev2 = wire::SmcType::kNone;
                  p.typev1 = wire::SmcType::kR;
                },
                wire::kReasonVersMismat}),
    [](const auto& info) { return std::string(info.param.name); });

struct BadAccept {
  const char* name;
  void (*mutate)(wire::ClcSmcrAccept&);
  uint32_t reason;
};
class SmcrClcClientReasons : public ::testing::TestWithParam<BadAccept> {};

TEST_P(SmcrClcClientReasons, DeclinesTheAcceptWithTheKernelsCode) {
  SmcrLink l;
  l.first_contact = true;
  l.local_rmb_size = 64 * 1024;
  l.max_conns = 255;
  l.max_links = 1;
  const EngineParams server = SmcrParams(Role::kServer, 1);
  wire::ClcSmcrAccept a = BuildSmcrAccept(wire::ClcType::kAccept, server, l);
  EXPECT_EQ(CheckSmcrAccept(a, SmcrParams(Role::kClient, 2)), 0u);
  GetParam().mutate(a);
  EXPECT_EQ(CheckSmcrAccept(a, SmcrParams(Role::kClient, 2)),
            GetParam().reason);
  // And the whole machine sends that reason in its Decline.
  SeededEntropy e(1);
  Connection c(SmcrParams(Role::kClient, 2), &e);
  (void)c.OnEvent(Start{}, T(0));
  const Actions out = c.OnEvent(TcpBytes{testing::EncodeClcBytes(a)}, T(0));
  const Fallback* f = testing::FindAction<Fallback>(out);
  ASSERT_NE(f, nullptr) << testing::Describe(out);
  EXPECT_EQ(f->local_reason, GetParam().reason);
}

INSTANTIATE_TEST_SUITE_P(
    Reasons, SmcrClcClientReasons,
    ::testing::Values(
        BadAccept{"OtherUeid",
                  [](wire::ClcSmcrAccept& a) { a.eid = wire::MakeClcEid("Y"); },
                  wire::kReasonNoUeid},
        BadAccept{"FewConns",
                  [](wire::ClcSmcrAccept& a) { a.fce.max_conns = 8; },
                  wire::kReasonMaxConnErr},
        BadAccept{"ThreeLinks",
                  [](wire::ClcSmcrAccept& a) { a.fce.max_links = 3; },
                  wire::kReasonMaxLinkErr},
        BadAccept{"HugeRmb", [](wire::ClcSmcrAccept& a) { a.rmbe_size = 11; },
                  wire::kReasonMem}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(SmcrClc, SmcrAcceptToAnSmcdOnlyClientIsModeUnsupp) {
  SeededEntropy e(1);
  EngineParams p = testing::TestParams(Role::kClient);
  Connection c(p, &e);
  (void)c.OnEvent(Start{}, T(0));
  SmcrLink l;
  l.first_contact = true;
  l.local_rmb_size = 64 * 1024;
  l.max_conns = 255;
  l.max_links = 1;
  const wire::ClcSmcrAccept a =
      BuildSmcrAccept(wire::ClcType::kAccept, SmcrParams(Role::kServer, 1), l);
  const Actions out = c.OnEvent(TcpBytes{testing::EncodeClcBytes(a)}, T(0));
  const Fallback* f = testing::FindAction<Fallback>(out);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->local_reason, wire::kReasonModeUnsupp);
}

// ---- the transport alone ----

TEST(SmcrTransport, WrapIsTwoWritesThenOneSendWithSeqnoAndToken) {
  SmcrTransport t(/*local_token=*/5, /*peer_token=*/9, /*peer_rmb=*/1000,
                  /*autocork=*/false);
  EXPECT_EQ(t.ring_offset(), 0u);
  wire::CdcMessage m;
  m.producer = {0, 900};
  Actions out;
  t.Publish(m, out);
  m.producer = {1, 100};
  t.Publish(m, out);
  ASSERT_EQ(out.size(), 5u) << testing::Describe(out);
  EXPECT_EQ(std::get<RdmaWrite>(out[0]).offset, 0u);
  EXPECT_EQ(std::get<RdmaWrite>(out[0]).len, 900u);
  EXPECT_EQ(std::get<RdmaWrite>(out[2]).offset, 900u);
  EXPECT_EQ(std::get<RdmaWrite>(out[2]).len, 100u);
  EXPECT_EQ(std::get<RdmaWrite>(out[3]).offset, 0u);
  EXPECT_EQ(std::get<RdmaWrite>(out[3]).len, 100u);
  const wire::CdcMessage sent =
      *wire::DecodeCdc(std::get<PostSend>(out[4]).bytes);
  EXPECT_EQ(sent.seqno, 2);
  EXPECT_EQ(sent.alert_token, 9u);
}

TEST(SmcrTransport, CorksSmallDataWhileASendIsInFlight) {
  SmcrTransport t(1, 1, 64 * 1024);
  wire::CdcMessage m;
  m.producer = {0, 10};
  Actions out;
  t.Publish(m, out);
  ASSERT_EQ(out.size(), 2u);  // the first goes at once
  m.producer = {0, 20};
  Actions corked;
  t.Publish(m, corked);
  EXPECT_TRUE(corked.empty());
  EXPECT_TRUE(t.corked());
  m.producer = {0, 30};
  t.Publish(m, corked);
  EXPECT_TRUE(corked.empty());
  Actions flushed;
  t.OnSendCompleted(flushed);  // one WRITE of 20 bytes and the latest CDC
  ASSERT_EQ(flushed.size(), 2u) << testing::Describe(flushed);
  EXPECT_EQ(std::get<RdmaWrite>(flushed[0]).offset, 10u);
  EXPECT_EQ(std::get<RdmaWrite>(flushed[0]).len, 20u);
  EXPECT_EQ(wire::DecodeCdc(std::get<PostSend>(flushed[1]).bytes)->producer,
            (wire::Cursor{0, 30}));
  // A flag change is never corked.
  m.conn_state.peer_done_writing = true;
  Actions now;
  t.Publish(m, now);
  EXPECT_EQ(now.size(), 1u);
}

}  // namespace
}  // namespace usmc::engine
