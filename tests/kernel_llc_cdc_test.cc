// Golden vectors from Linux: every LLC and CDC message of the SMC-Rv2
// connection in /work/shared/data/kernel-smcr-v2-rxe.pcap (Linux 6.12,
// rdma_rxe; server 10.0.0.1, client 10.0.0.2), one SEND payload per file in
// tests/data/kernel/ (named <llc|cdc>_f<frame>_<s2c|c2s>[_<kind>].bin; see
// docs/wire-llc-cdc.md for how they were extracted). Each message is
// decoded, its fields are checked against what the capture shows and
// against the CLC Accept/Confirm of the same connection, and it is
// re-encoded to exactly the kernel's bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "base/endian.h"
#include "tests/kernel_fixtures.h"
#include "wire/cdc.h"
#include "wire/llc.h"

namespace usmc::wire {
namespace {

namespace fs = std::filesystem;

fs::path DataDir() { return usmc::testing::KernelDataDir(); }

std::vector<std::byte> Fixture(const std::string& name) {
  return usmc::testing::KernelFixture(name);
}

// All fixture files with the prefix, in frame order.
std::vector<std::string> Fixtures(const std::string& prefix) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(DataDir())) {
    const std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0 && n.size() > 4 &&
        n.substr(n.size() - 4) == ".bin") {
      names.push_back(n);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool ClientToServer(const std::string& name) {
  return name.find("_c2s") != std::string::npos;
}

Gid V4Gid(uint8_t last) {
  return Gid{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, last};
}
Mac LabMac(uint8_t last) { return Mac{0x52, 0x54, 0, 0, 0, last}; }

// SMC-R fields of a CLC Accept/Confirm (PROTOCOL.md §2.3), read from the
// CLC fixtures of the same connection by offset, independent of wire/clc.
struct ClcSmcr {
  uint32_t qpn, rkey, alert_token, psn;
  uint8_t rmbe_size_compressed, mtu;
  uint64_t rmb_vaddr;
};
ClcSmcr ReadClc(const std::string& name) {
  auto b = Fixture(name);
  EXPECT_GE(b.size(), 64u) << name;
  if (b.size() < 64) return {};
  const std::byte* p = b.data();
  return ClcSmcr{LoadBe24(p + 38),
                 LoadBe32(p + 41),
                 LoadBe32(p + 46),
                 LoadBe24(p + 61),
                 uint8_t(Load8(p + 50) >> 4),
                 uint8_t(Load8(p + 50) & 0x0F),
                 LoadBe64(p + 52)};
}

class KernelCapture : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = ReadClc("clc_accept_v2.bin");   // server -> client
    client_ = ReadClc("clc_confirm_v2.bin");  // client -> server
  }
  template <typename T>
  T Llc(const std::string& name) {
    auto bytes = Fixture(name);
    WireResult<LlcMessage> m = DecodeLlc(bytes);
    EXPECT_TRUE(m.ok()) << name << ": " << m.error();
    if (!m.ok() || !std::holds_alternative<T>(*m)) {
      ADD_FAILURE() << name << " is not the expected type";
      return T{};
    }
    return std::get<T>(*m);
  }
  ClcSmcr server_{}, client_{};
};

TEST_F(KernelCapture, FixturesArePresent) {
  EXPECT_EQ(Fixtures("llc_").size(), 10u);
  EXPECT_EQ(Fixtures("cdc_").size(), 7u);
  // What the CLC says about this connection (sanity of the CLC fixtures).
  EXPECT_EQ(server_.qpn, 0x11u);
  EXPECT_EQ(client_.qpn, 0x11u);
  EXPECT_EQ(server_.rmbe_size_compressed, 2);  // 64 KiB
  EXPECT_EQ(client_.rmbe_size_compressed, 2);
}

// Every LLC and CDC payload re-encodes to exactly the kernel's bytes.
TEST_F(KernelCapture, EveryMessageReencodesToTheKernelBytes) {
  for (const std::string& name : Fixtures("llc_")) {
    auto bytes = Fixture(name);
    WireResult<LlcMessage> m = DecodeLlc(bytes);
    ASSERT_TRUE(m.ok()) << name << ": " << m.error();
    EXPECT_TRUE(HeaderOf(*m).v2) << name;
    EXPECT_EQ(HeaderOf(*m).length, bytes.size()) << name;
    std::vector<std::byte> out(bytes.size());
    WireResult<size_t> n = EncodeLlc(*m, out);
    ASSERT_TRUE(n.ok()) << name << ": " << n.error();
    EXPECT_EQ(*n, bytes.size()) << name;
    EXPECT_EQ(out, bytes) << name << "\n" << DescribeLlc(*m);
  }
  for (const std::string& name : Fixtures("cdc_")) {
    auto bytes = Fixture(name);
    WireResult<CdcMessage> m = DecodeCdc(bytes);
    ASSERT_TRUE(m.ok()) << name << ": " << m.error();
    std::vector<std::byte> out(kCdcMsgLen);
    ASSERT_TRUE(EncodeCdc(*m, out).ok());
    EXPECT_EQ(out, bytes) << name << "\n" << DescribeCdc(*m);
    // An LLC decoder must refuse a CDC (receivers demultiplex on byte 0).
    WireResult<LlcMessage> not_llc = DecodeLlc(bytes);
    ASSERT_FALSE(not_llc.ok());
    EXPECT_EQ(not_llc.error(), (WireError{WireErrc::kBadType, "llc.type"}));
  }
}

TEST_F(KernelCapture, ConfirmLinkRequestAndResponse) {
  auto req = Llc<LlcConfirmLink>("llc_f0112_s2c_confirm_link_req.bin");
  EXPECT_FALSE(req.hdr.response);
  EXPECT_TRUE(req.no_rmbe_eyecatcher);  // flags 0x03
  EXPECT_EQ(req.sender_mac, LabMac(1));
  EXPECT_EQ(req.sender_gid, V4Gid(1));
  EXPECT_EQ(req.sender_qpn, server_.qpn);
  EXPECT_EQ(req.link_num, 1);
  EXPECT_EQ(req.link_uid, 0x00000101u);
  EXPECT_EQ(req.max_links, 2);
  EXPECT_EQ(req.max_conns, 255);  // v2.1: both sides announced release 1

  auto resp = Llc<LlcConfirmLink>("llc_f0114_c2s_confirm_link_resp.bin");
  EXPECT_TRUE(resp.hdr.response);  // flags 0x83
  EXPECT_TRUE(resp.no_rmbe_eyecatcher);
  EXPECT_EQ(resp.sender_mac, LabMac(2));
  EXPECT_EQ(resp.sender_gid, V4Gid(2));
  EXPECT_EQ(resp.sender_qpn, client_.qpn);
  EXPECT_EQ(resp.link_num, req.link_num);  // the server assigns it
  EXPECT_EQ(resp.link_uid, req.link_uid);
  EXPECT_EQ(resp.max_links, 2);
  EXPECT_EQ(resp.max_conns, 255);
}

TEST_F(KernelCapture, AddLinkV2AndItsRejection) {
  auto req = Llc<LlcAddLink>("llc_f0116_s2c_add_link_req.bin");
  EXPECT_EQ(req.hdr.length, 88);  // bytes 1-2: 58 00
  EXPECT_FALSE(req.hdr.response);
  EXPECT_EQ(req.sender_mac, LabMac(1));
  EXPECT_EQ(req.sender_gid, V4Gid(1));
  EXPECT_EQ(req.sender_qpn, server_.qpn + 1);  // a second QP for link 2
  EXPECT_EQ(req.link_num, 2);
  EXPECT_EQ(req.qp_mtu, server_.mtu);  // 3 = 1024
  EXPECT_EQ(req.initial_psn, 0x4949b7u);
  ASSERT_TRUE(req.has_v2_ext);
  EXPECT_TRUE(req.v2_direct);
  EXPECT_EQ(req.client_target_gid, V4Gid(1));
  ASSERT_EQ(req.num_rkeys, 1);  // one RMB in use: the connection's
  EXPECT_EQ(req.rkeys[0].rkey, server_.rkey);            // 0x367, from CLC
  EXPECT_EQ(req.rkeys[0].vaddr_new, server_.rmb_vaddr);  // same RMB
  EXPECT_EQ(req.rkeys[0].rkey_new, 0x522u);

  // The client has no second device: it echoes the request with RESP and
  // REJECTED set. Linux puts reason 1 in the V1 nibble of byte 2, then
  // rewrites bytes 1-2 as length_v2 = 44, so no reason survives in V2.
  auto resp = Llc<LlcAddLink>("llc_f0118_c2s_add_link_resp.bin");
  EXPECT_EQ(resp.hdr.length, 44);
  EXPECT_TRUE(resp.hdr.response);
  EXPECT_TRUE(resp.rejected);
  EXPECT_EQ(resp.reject_reason, 0);
  EXPECT_FALSE(resp.has_v2_ext);
  EXPECT_EQ(resp.sender_mac, req.sender_mac);
  EXPECT_EQ(resp.sender_qpn, req.sender_qpn);
  EXPECT_EQ(resp.initial_psn, req.initial_psn);
}

TEST_F(KernelCapture, DeleteRkeyV2RequestsAndResponses) {
  // Each side withdraws its own RMB's rkey, the one its CLC announced.
  auto srv = Llc<LlcDeleteRkey>("llc_f0241_s2c_delete_rkey_req.bin");
  EXPECT_FALSE(srv.hdr.response);
  ASSERT_EQ(srv.num_rkeys, 1);
  EXPECT_EQ(srv.rkeys[0], server_.rkey);
  auto cli = Llc<LlcDeleteRkey>("llc_f0243_c2s_delete_rkey_req.bin");
  ASSERT_EQ(cli.num_rkeys, 1);
  EXPECT_EQ(cli.rkeys[0], client_.rkey);
  // Linux answers with RESP, the count kept, the rkey list zeroed and the
  // number of unknown rkeys (0) in byte 5.
  for (const char* name : {"llc_f0244_c2s_delete_rkey_resp.bin",
                           "llc_f0246_s2c_delete_rkey_resp.bin"}) {
    auto resp = Llc<LlcDeleteRkey>(name);
    EXPECT_TRUE(resp.hdr.response) << name;
    EXPECT_FALSE(resp.negative) << name;
    EXPECT_EQ(resp.num_rkeys, 1) << name;
    EXPECT_EQ(resp.num_inval_rkeys, 0) << name;
    EXPECT_EQ(resp.rkeys[0], 0u) << name;
  }
}

TEST_F(KernelCapture, DeleteLinkV2AtTheEnd) {
  auto srv = Llc<LlcDeleteLink>("llc_f0258_s2c_delete_link_req.bin");
  EXPECT_FALSE(srv.hdr.response);
  EXPECT_TRUE(srv.all);
  EXPECT_FALSE(srv.orderly);
  EXPECT_EQ(srv.link_num, 0);  // "all" carries no link number
  EXPECT_EQ(LlcDeleteLinkReasonName(srv.reason), "OP_INIT_TERM");
  auto cli = Llc<LlcDeleteLink>("llc_f0260_c2s_delete_link_req.bin");
  EXPECT_FALSE(cli.hdr.response);
  EXPECT_TRUE(cli.all);
  EXPECT_EQ(cli.link_num, 0);
  EXPECT_EQ(LlcDeleteLinkReasonName(cli.reason), "PROG_INIT_TERM");
}

// Both RMBs are 64 KiB (compressed size 2 in both CLCs).
constexpr uint32_t kRmbeSize = 16384u << 2;

// The client writes 100000 bytes into the server's 64 KiB RMB; the server
// answers with 11 bytes; both close.
TEST_F(KernelCapture, CdcStreamsOfBothDirections) {
  struct Direction {
    bool seen = false;
    uint16_t last_seqno = 0;
    uint64_t produced = 0;  // absolute producer position
    uint64_t consumed = 0;  // absolute consumer position
    Cursor prod, cons;
    bool closed = false;
  } dir[2];  // [0] server->client, [1] client->server

  auto abs_pos = [](Cursor c) {
    return uint64_t{c.wrap} * kRmbeSize + c.count;
  };
  for (const std::string& name : Fixtures("cdc_")) {
    WireResult<CdcMessage> m = DecodeCdc(Fixture(name));
    ASSERT_TRUE(m.ok()) << name;
    const bool c2s = ClientToServer(name);
    Direction& d = dir[c2s ? 1 : 0];
    // The token names the receiver's RMBE, announced in the receiver's CLC.
    EXPECT_EQ(m->alert_token, c2s ? server_.alert_token : client_.alert_token)
        << name;
    if (d.seen) {
      EXPECT_TRUE(SeqnoBefore(d.last_seqno, m->seqno)) << name;
      EXPECT_EQ(SeqnoDistance(d.last_seqno, m->seqno), 1) << name;
      EXPECT_TRUE(CursorUpdateAccepted(d.prod, m->producer)) << name;
      EXPECT_TRUE(CursorUpdateAccepted(d.cons, m->consumer)) << name;
      EXPECT_EQ(abs_pos(m->producer) - d.produced,
                CursorDiff(kRmbeSize, d.prod, m->producer))
          << name;
    } else {
      EXPECT_EQ(m->seqno, 1) << name;
    }
    EXPECT_TRUE(CursorValid(m->producer, kRmbeSize)) << name;
    EXPECT_TRUE(CursorValid(m->consumer, kRmbeSize)) << name;
    EXPECT_FALSE(d.closed) << name << ": a CDC after the close";
    EXPECT_FALSE(m->conn_state.peer_conn_abort) << name;
    EXPECT_FALSE(m->conn_state.peer_done_writing) << name;
    d.seen = true;
    d.last_seqno = m->seqno;
    d.produced = abs_pos(m->producer);
    d.consumed = abs_pos(m->consumer);
    d.prod = m->producer;
    d.cons = m->consumer;
    d.closed = m->conn_state.peer_conn_closed;
  }
  const Direction& s2c = dir[0];
  const Direction& c2s = dir[1];
  EXPECT_EQ(c2s.last_seqno, 3);
  EXPECT_EQ(s2c.last_seqno, 4);
  EXPECT_EQ(c2s.produced, 100000u);  // 0001:000186a0 is 1 * 65536 + 34464
  EXPECT_EQ(c2s.prod, (Cursor{1, 0x86a0}));
  EXPECT_EQ(s2c.consumed, 100000u);  // the server consumed all of it
  EXPECT_EQ(s2c.produced, 11u);
  EXPECT_EQ(c2s.consumed, 11u);
  EXPECT_TRUE(c2s.closed);
  EXPECT_TRUE(s2c.closed);
}

TEST_F(KernelCapture, FirstClientCdcFillsTheRmbAndBlocks) {
  WireResult<CdcMessage> m = DecodeCdc(Fixture("cdc_f0184_c2s.bin"));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->producer, (Cursor{1, 0}));  // exactly one full RMBE
  EXPECT_TRUE(m->prod_flags.write_blocked);
  EXPECT_EQ(CursorDiff(65536, Cursor{0, 0}, m->producer), 65536u);
  WireResult<CdcMessage> ack = DecodeCdc(Fixture("cdc_f0187_s2c.bin"));
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(ack->consumer, (Cursor{1, 0}));  // the server read it all
  EXPECT_FALSE(ack->prod_flags.write_blocked);
}

}  // namespace
}  // namespace usmc::wire
