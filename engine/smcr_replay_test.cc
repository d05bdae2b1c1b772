// Kernel replay, whole connection: the engine (Connection + its link group,
// wired as engine/smcr_test_util.h does) meets the Linux kernel's frames of
// the SMC-Rv2 capture (tests/data/kernel: CLC f107/f109/f111, LLC
// f112-f118 and f241-f260, CDC f184-f235) as its peer, and must answer with
// the kernel's counterpart frames byte for byte. Substituted: our QPN, PSN,
// rkey, RMB address, token and system ID are given the capture's values
// (SmcrSide knobs and EngineParams); in the client's Proposal the kernel
// sends zeros for the system ID (bytes 8-15) and the MAC (32-37) where usmc
// sends its own (SMCR.md §1.2), so those two fields of f107 are replaced by
// ours before comparing. The kernel proposes max_links 2: so does the
// replay (usmc's default is 1).
#include <gtest/gtest.h>

#include <cstring>

#include "engine/smcr_test_util.h"
#include "engine/test_util.h"
#include "tests/kernel_fixtures.h"
#include "wire/reason.h"

namespace usmc::engine {
namespace {

using testing::SmcrSide;
using testing::V4MappedGid;
using usmc::testing::KernelFixture;

constexpr TimePoint T(int ms) {
  return TimePoint(std::chrono::milliseconds(ms));
}

std::vector<std::byte> Bytes(const std::array<std::byte, 44>& a) {
  return std::vector<std::byte>(a.begin(), a.end());
}

EngineParams LabParams(Role role) {
  EngineParams p;
  p.role = role;
  p.smcd_enabled = false;
  p.smcr_enabled = true;
  p.eid = wire::MakeClcEid("LAB-UEID");
  p.hostname = wire::MakeClcHostname("(none)");
  p.smcr_max_links = 2;
  p.smcr_max_conns = 255;
  p.smcr.mtu = 3;  // 1024
  p.smcr.rmb_size = 64 * 1024;
  if (role == Role::kClient) {  // 10.0.0.2
    p.smcr.gid = V4MappedGid(10, 0, 0, 2);
    p.smcr.mac = {0x52, 0x54, 0, 0, 0, 2};
    p.smcr.rmb_rkey = 0x35c;
    p.smcr.rmb_iova = 0xffff898fc31c0000ULL;
    p.smcr_system_id = {0x62, 0x1e, 0x52, 0x54, 0, 0, 0, 2};
  } else {  // 10.0.0.1
    p.smcr.gid = V4MappedGid(10, 0, 0, 1);
    p.smcr.mac = {0x52, 0x54, 0, 0, 0, 1};
    p.smcr.rmb_rkey = 0x367;
    p.smcr.rmb_iova = 0xffff8953c35c0000ULL;
  }
  return p;
}

// The last CLC message the side sent.
std::vector<std::byte> LastTcp(SmcrSide& s) {
  EXPECT_FALSE(s.tcp_out.empty());
  if (s.tcp_out.empty()) return {};
  std::vector<std::byte> b = s.tcp_out.back();
  s.tcp_out.clear();
  return b;
}

std::vector<std::byte> LastSend(SmcrSide& s) {
  EXPECT_FALSE(s.send_out.empty());
  if (s.send_out.empty()) return {};
  std::vector<std::byte> b = Bytes(s.send_out.back());
  s.send_out.clear();
  return b;
}

void FeedCdc(SmcrSide& s, const std::string& name, TimePoint now) {
  const std::vector<std::byte> f = KernelFixture(name);
  ASSERT_EQ(f.size(), 44u);
  SmcrCdcReceived e;
  std::memcpy(e.bytes.data(), f.data(), 44);
  s.Feed(e, now);
}

void FeedTcp(SmcrSide& s, const std::string& name, TimePoint now) {
  const std::vector<std::byte> f = KernelFixture(name);
  const Actions a = s.conn.OnEvent(TcpBytes{f}, now);
  const TcpConsumed* c = testing::FindAction<TcpConsumed>(a);
  ASSERT_NE(c, nullptr) << testing::Describe(a);
  EXPECT_EQ(c->len, f.size());
  s.Execute(a, now);
}

TEST(SmcrKernelReplay, UsmcClientAnswersTheKernelServer) {
  SeededEntropy e(1);
  SmcrSide c(LabParams(Role::kClient), &e);
  c.qpn = 0x11;
  c.psn = 0xe1418a;
  // Proposal = f107 with our system ID and MAC in place of the kernel's
  // zeros.
  c.Feed(Start{}, T(0));
  std::vector<std::byte> want = KernelFixture("clc_proposal_v2.bin");
  ASSERT_EQ(want.size(), 156u);
  std::memcpy(want.data() + 8, c.params.smcr_system_id.data(), 8);
  std::memcpy(want.data() + 32, c.params.smcr.mac.data(), 6);
  EXPECT_EQ(LastTcp(c), want);
  // f109 first-contact Accept -> f111 Confirm.
  FeedTcp(c, "clc_accept_v2.bin", T(1));
  EXPECT_EQ(LastTcp(c), KernelFixture("clc_confirm_v2.bin"));
  EXPECT_EQ(c.conn.handshake_state(), "AWAIT_LINK");
  // f112 CONFIRM_LINK request -> f114 response; the link is up.
  c.FeedLlc(KernelFixture("llc_f0112_s2c_confirm_link_req.bin"), T(2));
  EXPECT_EQ(LastSend(c), KernelFixture("llc_f0114_c2s_confirm_link_resp.bin"));
  ASSERT_EQ(c.conn.mode(), Mode::kSmc);
  ASSERT_EQ(c.conn.technology(), Technology::kSmcr);
  // f116 ADD_LINK (max_links 2 on the kernel) -> f118 rejection.
  c.FeedLlc(KernelFixture("llc_f0116_s2c_add_link_req.bin"), T(3));
  EXPECT_EQ(LastSend(c), KernelFixture("llc_f0118_c2s_add_link_resp.bin"));
  // The app writes 64 KiB (one full RMBE) and wants to write more -> f184,
  // after one RDMA WRITE of the whole ring.
  c.actions.clear();
  c.Feed(AppSent{64 * 1024, true, false}, T(4));
  EXPECT_EQ(LastSend(c), KernelFixture("cdc_f0184_c2s.bin"));
  const RdmaWrite* w = nullptr;
  for (const Action& a : c.actions) {
    if (const auto* x = std::get_if<RdmaWrite>(&a)) w = x;
  }
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->offset, 0u);
  EXPECT_EQ(w->len, 64u * 1024);
  // f187: the kernel read it all; then 34464 more bytes -> f223.
  FeedCdc(c, "cdc_f0187_s2c.bin", T(5));
  c.send_out.clear();
  c.Feed(AppSent{34464, false, false}, T(5));
  EXPECT_EQ(LastSend(c), KernelFixture("cdc_f0223_c2s.bin"));
  // f226 (consumed), f230 (11 bytes for us): read them, close -> f233.
  FeedCdc(c, "cdc_f0226_s2c.bin", T(6));
  FeedCdc(c, "cdc_f0230_s2c.bin", T(6));
  EXPECT_EQ(c.conn.RecvState().readable, 11u);
  c.send_out.clear();
  c.Feed(AppConsumed{11}, T(7));
  EXPECT_TRUE(c.send_out.empty());  // below the consumer-update threshold
  c.Feed(AppClose{}, T(7));
  EXPECT_EQ(LastSend(c), KernelFixture("cdc_f0233_c2s.bin"));
  // f235: the kernel closed too; our RMB is withdrawn: DELETE_RKEY = f243.
  FeedCdc(c, "cdc_f0235_s2c.bin", T(8));
  EXPECT_EQ(c.conn.close_state(), CloseState::kClosed);
  EXPECT_TRUE(c.tcp_closed);
  EXPECT_EQ(LastSend(c), KernelFixture("llc_f0243_c2s_delete_rkey_req.bin"));
  // f241 (the kernel's DELETE_RKEY) -> f244; f246 answers ours.
  c.FeedLlc(KernelFixture("llc_f0241_s2c_delete_rkey_req.bin"), T(9));
  EXPECT_EQ(LastSend(c), KernelFixture("llc_f0244_c2s_delete_rkey_resp.bin"));
  c.FeedLlc(KernelFixture("llc_f0246_s2c_delete_rkey_resp.bin"), T(9));
  // f258 DELETE_LINK ALL -> f260.
  c.FeedLlc(KernelFixture("llc_f0258_s2c_delete_link_req.bin"), T(10));
  EXPECT_EQ(LastSend(c), KernelFixture("llc_f0260_c2s_delete_link_req.bin"));
  EXPECT_EQ(c.lgr->state(), LgrState::kEnded);
}

TEST(SmcrKernelReplay, UsmcServerAnswersTheKernelClient) {
  SeededEntropy e(2);
  SmcrSide s(LabParams(Role::kServer), &e);
  s.qpn = 0x11;
  s.psn = 0xd2e1c5;
  s.system_id = SystemId{0xf3, 0xa9, 0x52, 0x54, 0, 0, 0, 1};
  s.Feed(Start{}, T(0));
  // f107 Proposal -> f109 first-contact Accept.
  FeedTcp(s, "clc_proposal_v2.bin", T(1));
  EXPECT_EQ(LastTcp(s), KernelFixture("clc_accept_v2.bin"));
  // f111 Confirm -> our CONFIRM_LINK request = f112.
  FeedTcp(s, "clc_confirm_v2.bin", T(2));
  EXPECT_EQ(LastSend(s), KernelFixture("llc_f0112_s2c_confirm_link_req.bin"));
  EXPECT_EQ(s.conn.handshake_state(), "AWAIT_LINK");
  // f114 -> ACTIVE, SMC-R.
  s.FeedLlc(KernelFixture("llc_f0114_c2s_confirm_link_resp.bin"), T(3));
  ASSERT_EQ(s.conn.mode(), Mode::kSmc);
  ASSERT_EQ(s.conn.technology(), Technology::kSmcr);
  // f184: 64 KiB and the client is blocked; reading it all -> f187.
  FeedCdc(s, "cdc_f0184_c2s.bin", T(4));
  EXPECT_EQ(s.conn.RecvState().readable, 64u * 1024);
  s.send_out.clear();
  s.Feed(AppConsumed{64 * 1024}, T(4));
  EXPECT_EQ(LastSend(s), KernelFixture("cdc_f0187_s2c.bin"));
  // f223: 34464 bytes; reading them -> f226.
  FeedCdc(s, "cdc_f0223_c2s.bin", T(5));
  s.Feed(AppConsumed{34464}, T(5));
  EXPECT_EQ(LastSend(s), KernelFixture("cdc_f0226_s2c.bin"));
  // The app answers 11 bytes -> f230.
  s.Feed(AppSent{11, false, false}, T(6));
  EXPECT_EQ(LastSend(s), KernelFixture("cdc_f0230_s2c.bin"));
  // f233: the client read them and closed; we close -> f235.
  FeedCdc(s, "cdc_f0233_c2s.bin", T(7));
  s.Feed(AppClose{}, T(7));
  ASSERT_GE(s.send_out.size(), 2u);
  EXPECT_EQ(Bytes(s.send_out[0]), KernelFixture("cdc_f0235_s2c.bin"));
  // Our RMB withdrawn: DELETE_RKEY = f241.
  EXPECT_EQ(Bytes(s.send_out[1]),
            KernelFixture("llc_f0241_s2c_delete_rkey_req.bin"));
  s.send_out.clear();
  EXPECT_TRUE(s.tcp_closed);
  s.FeedLlc(KernelFixture("llc_f0244_c2s_delete_rkey_resp.bin"), T(8));
  s.FeedLlc(KernelFixture("llc_f0243_c2s_delete_rkey_req.bin"), T(8));
  EXPECT_EQ(LastSend(s), KernelFixture("llc_f0246_s2c_delete_rkey_resp.bin"));
  // The kernel server's end (f258) is what we send on OP_INIT_TERM.
  s.RunLgr(
      s.lgr->OnEvent(
          LgrTerminate{false, uint32_t(wire::LlcDeleteLinkReason::kOpInitTerm)},
          T(9)),
      T(9));
  EXPECT_EQ(LastSend(s), KernelFixture("llc_f0258_s2c_delete_link_req.bin"));
}

}  // namespace
}  // namespace usmc::engine
