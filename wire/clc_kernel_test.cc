// Golden vectors: CLC messages produced by the Linux kernel (6.12, rdma_rxe)
// and captured in /work/shared/data/kernel-smcr-v2-rxe.pcap, extracted with
// `tshark -Y frame.number==N -T fields -e tcp.payload` into
// tests/data/kernel/clc_*.bin. Decode each, check the values the kernel
// really sent (server 10.0.0.1 / 52:54:00:00:00:01, client 10.0.0.2 /
// 52:54:00:00:00:02, UEID "LAB-UEID"), and re-encode to the same bytes.
#include <gtest/gtest.h>

#include "wire/bufsize.h"
#include "wire/clc.h"
#include "wire/clc_testing.h"
#include "wire/reason.h"

namespace usmc::wire {
namespace {

const ClcMac kServerMac = {0x52, 0x54, 0x00, 0x00, 0x00, 0x01};
const ClcMac kClientMac = {0x52, 0x54, 0x00, 0x00, 0x00, 0x02};

template <typename T>
T DecodeFixture(const std::string& name, Bytes* raw) {
  *raw = ReadFixture("tests/data/kernel/" + name);
  EXPECT_FALSE(raw->empty()) << "missing fixture " << name;
  WireResult<ClcMessage> m = DecodeClc(*raw);
  EXPECT_TRUE(m) << m.error();
  if (!m || !std::holds_alternative<T>(*m)) {
    ADD_FAILURE() << name << " did not decode to the expected type";
    return T{};
  }
  // Re-encoding gives exactly the kernel's bytes.
  EXPECT_EQ(EncodeToBytes(*m), *raw) << name;
  return std::get<T>(*m);
}

TEST(ClcKernelTest, DeclineV1NoSmcDev) {
  Bytes raw;
  ClcDecline d = DecodeFixture<ClcDecline>("clc_decline_v1.bin", &raw);
  EXPECT_EQ(raw.size(), kClcDeclineV1Len);
  EXPECT_EQ(d.version, 1);
  EXPECT_EQ(d.eyecatcher, ClcEyecatcher::kSmcr);
  EXPECT_FALSE(d.out_of_sync);
  EXPECT_EQ(d.peer_diagnosis, kReasonNoSmcDev);
  EXPECT_EQ(d.os_type, 0);  // Linux sends 0 in a v1 Decline
  // Peer ID: 2 random bytes, then the client's MAC.
  EXPECT_EQ(d.peer_id[0], 0x62);
  EXPECT_EQ(d.peer_id[1], 0x1e);
  EXPECT_TRUE(
      std::equal(kClientMac.begin(), kClientMac.end(), d.peer_id.begin() + 2));
}

TEST(ClcKernelTest, ProposalSmcrV2Only) {
  Bytes raw;
  ClcProposal p = DecodeFixture<ClcProposal>("clc_proposal_v2.bin", &raw);
  EXPECT_EQ(raw.size(), 156u);
  EXPECT_EQ(p.version, 2);
  EXPECT_EQ(p.typev1, SmcType::kNone);  // no V1 device: no prefix area
  EXPECT_EQ(p.typev2, SmcType::kR);
  EXPECT_FALSE(p.HasPrefixArea());
  EXPECT_TRUE(p.HasV2Extension());
  EXPECT_FALSE(p.HasSmcdV2Extension());
  EXPECT_EQ(p.peer_id, ClcPeerId{});  // filled only when V1 R is offered
  EXPECT_EQ(p.reserved.unused_iparea_offset, 0);
  EXPECT_EQ(p.release, kSmcRelease21);
  EXPECT_FALSE(p.seid_indicator);
  EXPECT_EQ(p.roce_v2_gid, MappedGid(10, 0, 0, 2));
  EXPECT_EQ(p.max_conns, 255);
  EXPECT_EQ(p.max_links, 2);
  EXPECT_EQ(p.feature_mask, kClcFeatureEmulatedIsm);
  ASSERT_EQ(p.eid_count, 1);
  EXPECT_EQ(p.eids[0], MakeClcEid("LAB-UEID"));
  EXPECT_EQ(ClcText(p.eids[0]), "LAB-UEID");
  EXPECT_EQ(p.ism_device_count, 0);
}

TEST(ClcKernelTest, AcceptSmcrV2FirstContact) {
  Bytes raw;
  ClcSmcrAccept a = DecodeFixture<ClcSmcrAccept>("clc_accept_v2.bin", &raw);
  EXPECT_EQ(raw.size(), 160u);
  EXPECT_EQ(a.type, ClcType::kAccept);
  EXPECT_EQ(a.version, 2);
  EXPECT_TRUE(a.first_contact);
  EXPECT_EQ(a.gid, MappedGid(10, 0, 0, 1));
  EXPECT_EQ(a.mac, kServerMac);
  EXPECT_TRUE(
      std::equal(kServerMac.begin(), kServerMac.end(), a.peer_id.begin() + 2));
  EXPECT_EQ(a.qpn, 0x11u);
  EXPECT_EQ(a.rmb_rkey, 0x367u);
  EXPECT_EQ(a.rmbe_idx, 1);
  EXPECT_EQ(a.rmbe_alert_token, 1u);
  EXPECT_EQ(a.rmbe_size, 2);  // 64 KiB
  EXPECT_EQ(UncompressBufSize(a.rmbe_size), 64u * 1024);
  EXPECT_EQ(a.qp_mtu, 3);  // 1024
  EXPECT_EQ(a.rmb_vaddr, 0xffff8953c35c0000u);
  EXPECT_EQ(a.psn, 0xd2e1c5u);
  EXPECT_EQ(a.eid, MakeClcEid("LAB-UEID"));
  EXPECT_TRUE(a.fce.long_form);
  EXPECT_TRUE(a.fce.v2_direct);
  EXPECT_EQ(a.fce.os_type, kClcOsLinux);
  EXPECT_EQ(a.fce.release, kSmcRelease21);
  EXPECT_EQ(ClcText(a.fce.hostname), "(none)");
  EXPECT_EQ(a.fce.max_conns, 255);
  EXPECT_EQ(a.fce.max_links, 2);
  EXPECT_EQ(a.fce.feature_mask, 1);
  EXPECT_EQ(a.gid_count, 0);  // only the Confirm has a GID list
}

TEST(ClcKernelTest, ConfirmSmcrV2FirstContact) {
  Bytes raw;
  ClcSmcrAccept c = DecodeFixture<ClcSmcrAccept>("clc_confirm_v2.bin", &raw);
  EXPECT_EQ(raw.size(), 180u);
  EXPECT_EQ(c.type, ClcType::kConfirm);
  EXPECT_EQ(c.version, 2);
  EXPECT_TRUE(c.first_contact);
  EXPECT_EQ(c.gid, MappedGid(10, 0, 0, 2));
  EXPECT_EQ(c.mac, kClientMac);
  EXPECT_EQ(c.qpn, 0x11u);
  EXPECT_EQ(c.rmb_rkey, 0x35cu);
  EXPECT_EQ(c.rmbe_idx, 1);
  EXPECT_EQ(c.rmbe_alert_token, 1u);
  EXPECT_EQ(c.rmbe_size, 2);
  EXPECT_EQ(c.qp_mtu, 3);  // min(local, peer)
  EXPECT_EQ(c.rmb_vaddr, 0xffff898fc31c0000u);
  EXPECT_EQ(c.psn, 0xe1418au);
  EXPECT_EQ(ClcText(c.eid), "LAB-UEID");
  EXPECT_TRUE(c.fce.long_form);
  EXPECT_EQ(c.fce.max_conns, 255);
  EXPECT_EQ(c.fce.max_links, 2);
  ASSERT_EQ(c.gid_count, 1);
  EXPECT_EQ(c.gids[0], MappedGid(10, 0, 0, 2));
}

TEST(ClcKernelTest, FrameDecoderSplitsTheClientStream) {
  // The client sends Proposal then Confirm; the frame decoder must stop at
  // each message boundary.
  Bytes stream = ReadFixture("tests/data/kernel/clc_proposal_v2.bin");
  Bytes confirm = ReadFixture("tests/data/kernel/clc_confirm_v2.bin");
  stream.insert(stream.end(), confirm.begin(), confirm.end());
  ClcFrameDecoder dec;
  std::span<const std::byte> in(stream);
  ClcFrameDecoder::Result r = dec.Feed(in);
  ASSERT_EQ(r.status, ClcFrameDecoder::Status::kFrame);
  EXPECT_EQ(r.consumed, 156u);
  EXPECT_EQ(TypeOf(dec.message()), ClcType::kProposal);
  in = in.subspan(r.consumed);
  r = dec.Feed(in);
  ASSERT_EQ(r.status, ClcFrameDecoder::Status::kFrame);
  EXPECT_EQ(r.consumed, 180u);
  EXPECT_EQ(TypeOf(dec.message()), ClcType::kConfirm);
}

}  // namespace
}  // namespace usmc::wire
