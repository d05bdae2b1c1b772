// Known-answer tests for the CLC codec: every message type, version and path
// assembled by hand, field by field, from the layout tables in PROTOCOL.md
// §2; then bytes -> fields (decode) and fields -> bytes (encode).
#include "wire/clc.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "wire/clc_testing.h"
#include "wire/reason.h"

namespace usmc::wire {
namespace {

using ::testing::HasSubstr;

const ClcPeerId kPeerId = {0x12, 0x34, 0x52, 0x54, 0x00, 0x00, 0x00, 0x02};
const ClcMac kMac = {0x52, 0x54, 0x00, 0x00, 0x00, 0x02};
// fe80::5054:ff:fe00:2
const ClcGid kLinkLocalGid = {0xfe, 0x80, 0,    0,    0,    0,    0,    0,
                              0x50, 0x54, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x02};

ByteBuilder& PeerGidMac(ByteBuilder& b) {
  return b
      .Raw({0x12, 0x34, 0x52, 0x54, 0x00, 0x00, 0x00, 0x02})  // peer ID
      .Raw({0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0x00, 0xff, 0xfe, 0x00,
            0x00, 0x02})                           // GID
      .Raw({0x52, 0x54, 0x00, 0x00, 0x00, 0x02});  // MAC
}

// Encodes `msg`, expects `wire`; decodes `wire`, expects `msg`.
template <typename T>
void ExpectKnownAnswer(const T& msg, const Bytes& wire) {
  EXPECT_EQ(EncodeToBytes(msg), wire);
  WireResult<size_t> len = EncodedClcLength(msg);
  ASSERT_TRUE(len) << len.error();
  EXPECT_EQ(*len, wire.size());
  WireResult<ClcMessage> d = DecodeClc(wire);
  ASSERT_TRUE(d) << d.error();
  ASSERT_TRUE(std::holds_alternative<T>(*d));
  EXPECT_EQ(std::get<T>(*d), msg);
}

// ---------------------------------------------------------------- Decline

TEST(ClcDeclineTest, V1KnownAnswer) {
  Bytes wire = ByteBuilder()
                   .Eye("SMCR")
                   .U8(4)     // type DECLINE
                   .U16(28)   // length
                   .U8(0x10)  // version 1, no flags
                   .Raw({0x12, 0x34, 0x52, 0x54, 0x00, 0x00, 0x00, 0x02})
                   .U32(0x03030002)  // NOSMCRDEV
                   .U8(0x00)         // os type 0
                   .Zeros(3)
                   .Eye("SMCR")
                   .Take();
  ASSERT_EQ(wire.size(), kClcDeclineV1Len);
  ClcDecline d;
  d.version = 1;
  d.peer_id = kPeerId;
  d.peer_diagnosis = kReasonNoSmcrDev;
  ExpectKnownAnswer(d, wire);
}

TEST(ClcDeclineTest, V2OutOfSyncWithExtraDiagnoses) {
  Bytes wire = ByteBuilder()
                   .Eye("SMCR")
                   .U8(4)
                   .U16(44)
                   .U8(0x28)         // version 2, out of sync (bit 3)
                   .Zeros(8)         // no peer ID
                   .U32(0x04000000)  // SYNCERR
                   .U8(0x20)         // os type 2 (Linux)
                   .Zeros(3)
                   .U32(0x03030001)
                   .U32(0x03030007)
                   .U32(0)
                   .U32(0x09990000)
                   .Eye("SMCR")
                   .Take();
  ClcDecline d;
  d.version = 2;
  d.out_of_sync = true;
  d.peer_diagnosis = kReasonSyncErr;
  d.os_type = kClcOsLinux;
  d.extra_diagnoses = {kReasonNoSmcdDev, kReasonNoSmcd2Dev, 0, kReasonIntErr};
  ExpectKnownAnswer(d, wire);
}

// --------------------------------------------------------------- Proposal

TEST(ClcProposalTest, V1SmcrOnlyWithoutSmcdArea) {
  ByteBuilder b;
  b.Eye("SMCR").U8(1).U16(52).U8(0x10);  // v1, typev1 R
  PeerGidMac(b)
      .U16(0)              // iparea_offset 0: prefix area right at 40
      .Raw({10, 0, 0, 0})  // outgoing subnet
      .U8(24)              // prefix length
      .Zeros(2)
      .U8(0)  // no IPv6 prefixes
      .Eye("SMCR");
  Bytes wire = b.Take();
  ClcProposal p;
  p.version = 1;
  p.typev1 = SmcType::kR;
  p.peer_id = kPeerId;
  p.gid = kLinkLocalGid;
  p.mac = kMac;
  p.has_smcd_area = false;
  p.ipv4_subnet = {10, 0, 0, 0};
  p.ipv4_prefix_len = 24;
  ExpectKnownAnswer(p, wire);
}

TEST(ClcProposalTest, V1BothWithSmcdAreaAndIpv6Prefixes) {
  ByteBuilder b;
  b.Eye("SMCR").U8(1).U16(126).U8(0x13);  // v1, typev1 B
  PeerGidMac(b)
      .U16(40)                  // iparea_offset: behind the SMC-D area
      .U64(0x0102030405060708)  // ISM GID
      .U16(0x1234)              // CHID
      .U16(0)                   // (v2_ext_offset, reserved in v1)
      .Zeros(3)                 // vendor OUI
      .Zeros(5)                 // vendor options
      .Zeros(20)                // reserved
      .Zeros(4)                 // no IPv4 subnet
      .U8(0)
      .Zeros(2)
      .U8(2)  // two IPv6 prefixes
      .Raw({0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
      .U8(64)
      .Raw({0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
      .U8(8)
      .Eye("SMCR");
  Bytes wire = b.Take();
  ASSERT_EQ(wire.size(), 126u);
  ClcProposal p;
  p.version = 1;
  p.typev1 = SmcType::kBoth;
  p.peer_id = kPeerId;
  p.gid = kLinkLocalGid;
  p.mac = kMac;
  p.ism_gid = 0x0102030405060708;
  p.ism_chid = 0x1234;
  p.ipv6_prefix_count = 2;
  p.ipv6_prefixes[0] = {{0x20, 0x01, 0x0d, 0xb8, 0, 1}, 64};
  p.ipv6_prefixes[1] = {{0xfd}, 8};
  ExpectKnownAnswer(p, wire);
}

TEST(ClcProposalTest, V2BothWithEveryExtension) {
  ByteBuilder b;
  b.Eye("SMCR").U8(1).U16(242).U8(0x2F);  // v2, typev2 B, typev1 B
  PeerGidMac(b)
      .U16(40)                  // iparea_offset
      .U64(0x0102030405060708)  // native ISM GID
      .U16(0x1234)              // CHID
      .U16(36)                  // v2_ext_offset: 28 + 8 (IPv4 prefix area)
      .Raw({0x00, 0x11, 0x22})  // vendor OUI
      .Raw({1, 2, 3, 4, 5})     // vendor options
      .Zeros(20)
      .Raw({10, 0, 0, 0})
      .U8(24)
      .Zeros(2)
      .U8(0)
      // V2 extension at 88
      .U8(1)  // eid_cnt
      .U8(3)  // ism_gid_cnt: native + emulated (2 entries)
      .U8(0)
      .U8(0x11)  // release 1, SEID indicator
      .Zeros(2)
      .U16(64)                 // smcd_v2_ext_offset: 32 + 32 * 1
      .MappedGid(10, 0, 0, 2)  // RoCEv2 GID
      .U8(255)                 // max_conns
      .U8(2)                   // max_links
      .U16(1)                  // feature_mask
      .Zeros(12)
      .Text("LAB-UEID", 32)
      // SMC-Dv2 extension at 160
      .Text("SEID-TEST", 32)
      .Zeros(16)
      .U64(0x1111222233334444)
      .U16(0x0010)  // ISM device
      .U64(0xaaaabbbbccccdddd)
      .U16(0xFF01)  // Emulated-ISM: GID
      .U64(0x0102030405060708)
      .U16(0xFF01)  //   then gid_ext, same CHID
      .Eye("SMCR");
  Bytes wire = b.Take();
  ASSERT_EQ(wire.size(), 242u);
  ClcProposal p;
  p.version = 2;
  p.typev1 = SmcType::kBoth;
  p.typev2 = SmcType::kBoth;
  p.peer_id = kPeerId;
  p.gid = kLinkLocalGid;
  p.mac = kMac;
  p.ism_gid = 0x0102030405060708;
  p.ism_chid = 0x1234;
  p.vendor_oui = {0x00, 0x11, 0x22};
  p.vendor_exp_options = {1, 2, 3, 4, 5};
  p.ipv4_subnet = {10, 0, 0, 0};
  p.ipv4_prefix_len = 24;
  p.release = kSmcRelease21;
  p.seid_indicator = true;
  p.roce_v2_gid = MappedGid(10, 0, 0, 2);
  p.max_conns = 255;
  p.max_links = 2;
  p.feature_mask = kClcFeatureEmulatedIsm;
  p.eid_count = 1;
  p.eids[0] = MakeClcEid("LAB-UEID");
  p.seid = MakeClcEid("SEID-TEST");
  p.ism_device_count = 2;
  p.ism_devices[0] = {0x1111222233334444, 0x0010, 0};
  p.ism_devices[1] = {0xaaaabbbbccccdddd, 0xFF01, 0x0102030405060708};
  ExpectKnownAnswer(p, wire);
}

TEST(ClcProposalTest, V2SmcdOnlyWithoutPrefixArea) {
  Bytes wire = ByteBuilder()
                   .Eye("SMCR")
                   .U8(1)
                   .U16(192)
                   .U8(0x26)  // v2, typev2 D, typev1 N
                   .Zeros(8 + 16 + 6)
                   .U16(0)  // iparea_offset unused (typev1 N)
                   .U64(0)  // no native ISM device
                   .U16(0)
                   .U16(28)  // v2_ext_offset: right behind the SMC-D area
                   .Zeros(28)
                   // V2 extension at 80
                   .U8(0)  // no UEID
                   .U8(2)  // two ISM GID entries
                   .U8(0)
                   .U8(0x10)  // release 1
                   .Zeros(2)
                   .U16(32)  // smcd_v2_ext_offset
                   .Zeros(16)
                   .U8(0)
                   .U8(0)
                   .U16(1)
                   .Zeros(12)
                   // SMC-Dv2 extension at 120
                   .Zeros(32 + 16)
                   .U64(0x0000000000000a01)
                   .U16(0x0100)
                   .U64(0x0000000000000a02)
                   .U16(0x0200)
                   .Eye("SMCR")
                   .Take();
  ClcProposal p;
  p.version = 2;
  p.typev1 = SmcType::kNone;
  p.typev2 = SmcType::kD;
  p.feature_mask = 1;
  p.ism_device_count = 2;
  p.ism_devices[0] = {0xa01, 0x0100, 0};
  p.ism_devices[1] = {0xa02, 0x0200, 0};
  ExpectKnownAnswer(p, wire);
  EXPECT_FALSE(p.HasPrefixArea());
  EXPECT_TRUE(p.HasSmcdV2Extension());
}

// ---------------------------------------------------------- SMC-R Accept

TEST(ClcSmcrAcceptTest, V1FirstContactKnownAnswer) {
  ByteBuilder b;
  b.Eye("SMCR").U8(2).U16(68).U8(0x18);  // v1, first contact, R
  PeerGidMac(b)
      .U24(0x000123)    // QP number
      .U32(0x00001234)  // rkey
      .U8(1)            // RMBE index
      .U32(0x00000005)  // alert token
      .U8(0x13)         // RMBE size 1 (32 KiB), MTU 3 (1024)
      .U8(0)
      .U64(0x0000ffff12340000)  // RMB vaddr
      .U8(0)
      .U24(0xabcdef)  // PSN
      .Eye("SMCR");
  Bytes wire = b.Take();
  ASSERT_EQ(wire.size(), kClcSmcrAcceptV1Len);
  ClcSmcrAccept a;
  a.type = ClcType::kAccept;
  a.version = 1;
  a.first_contact = true;
  a.peer_id = kPeerId;
  a.gid = kLinkLocalGid;
  a.mac = kMac;
  a.qpn = 0x123;
  a.rmb_rkey = 0x1234;
  a.rmbe_idx = 1;
  a.rmbe_alert_token = 5;
  a.rmbe_size = 1;
  a.qp_mtu = 3;
  a.rmb_vaddr = 0x0000ffff12340000;
  a.psn = 0xabcdef;
  ExpectKnownAnswer(a, wire);
}

ClcSmcrAccept SmcrV2Base(ClcType type) {
  ClcSmcrAccept a;
  a.type = type;
  a.version = 2;
  a.peer_id = kPeerId;
  a.gid = MappedGid(10, 0, 0, 2);
  a.mac = kMac;
  a.qpn = 0xfedcba;
  a.rmb_rkey = 0x89abcdef;
  a.rmbe_idx = 1;
  a.rmbe_alert_token = 0x01020304;
  a.rmbe_size = 15;
  a.qp_mtu = 5;
  a.rmb_vaddr = 0xffff8953c35c0000;
  a.psn = 0x000001;
  a.eid = MakeClcEid("LAB-UEID");
  return a;
}

ByteBuilder& SmcrV2Fixed(ByteBuilder& b,
                         const ClcGid& gid = MappedGid(10, 0, 0, 2)) {
  return b.Raw({0x12, 0x34, 0x52, 0x54, 0x00, 0x00, 0x00, 0x02})
      .Gid16(gid)
      .Raw({0x52, 0x54, 0x00, 0x00, 0x00, 0x02})
      .U24(0xfedcba)
      .U32(0x89abcdef)
      .U8(1)
      .U32(0x01020304)
      .U8(0xF5)  // RMBE size 15, MTU 5
      .U8(0)
      .U64(0xffff8953c35c0000)
      .U8(0)
      .U24(1)
      .Text("LAB-UEID", 32)  // EID
      .Zeros(8);
}

TEST(ClcSmcrAcceptTest, V2NotFirstContact) {
  ByteBuilder b;
  b.Eye("SMCR").U8(2).U16(108).U8(0x20);
  SmcrV2Fixed(b).Eye("SMCR");
  ExpectKnownAnswer(SmcrV2Base(ClcType::kAccept), b.Take());
}

TEST(ClcSmcrAcceptTest, V2FirstContactShortFce) {
  ByteBuilder b;
  b.Eye("SMCR").U8(2).U16(144).U8(0x28);
  SmcrV2Fixed(b)
      .U8(0x00)  // not direct
      .U8(0x20)  // Linux, release 0
      .Zeros(2)
      .Text("server", 32)
      .Eye("SMCR");
  ClcSmcrAccept a = SmcrV2Base(ClcType::kAccept);
  a.first_contact = true;
  a.fce.long_form = false;
  a.fce.release = kSmcRelease20;
  a.fce.hostname = MakeClcHostname("server");
  ExpectKnownAnswer(a, b.Take());
}

TEST(ClcSmcrAcceptTest, V2ConfirmLongFceWithGidList) {
  ByteBuilder b;
  b.Eye("SMCR").U8(3).U16(196).U8(0x28);  // CONFIRM, v2, first contact
  SmcrV2Fixed(b)
      .U8(0x80)  // v2_direct
      .U8(0x21)  // Linux, release 1
      .Zeros(2)
      .Text("client-host", 32)
      .U8(255)  // max_conns
      .U8(2)    // max_links
      .U16(1)   // feature_mask
      .U32(0)   // vendor options
      .Zeros(8)
      .U8(2)  // GID list: 2 GIDs
      .Zeros(3)
      .MappedGid(10, 0, 0, 2)
      .MappedGid(10, 0, 1, 2)
      .Eye("SMCR");
  Bytes wire = b.Take();
  ASSERT_EQ(wire.size(), 196u);
  ClcSmcrAccept a = SmcrV2Base(ClcType::kConfirm);
  a.first_contact = true;
  a.fce.v2_direct = true;
  a.fce.hostname = MakeClcHostname("client-host");
  a.fce.max_conns = 255;
  a.fce.max_links = 2;
  a.fce.feature_mask = 1;
  a.gid_count = 2;
  a.gids[0] = MappedGid(10, 0, 0, 2);
  a.gids[1] = MappedGid(10, 0, 1, 2);
  ExpectKnownAnswer(a, wire);
}

TEST(ClcSmcrAcceptTest, V2ConfirmShortFceWithGidList) {
  ByteBuilder b;
  b.Eye("SMCR").U8(3).U16(164).U8(0x28);
  SmcrV2Fixed(b)
      .U8(0x80)
      .U8(0x20)  // release 0
      .Zeros(2)
      .Text("old-client", 32)
      .U8(1)
      .Zeros(3)
      .MappedGid(10, 0, 0, 2)
      .Eye("SMCR");
  ClcSmcrAccept a = SmcrV2Base(ClcType::kConfirm);
  a.first_contact = true;
  a.fce.long_form = false;
  a.fce.v2_direct = true;
  a.fce.release = 0;
  a.fce.hostname = MakeClcHostname("old-client");
  a.gid_count = 1;
  a.gids[0] = MappedGid(10, 0, 0, 2);
  ExpectKnownAnswer(a, b.Take());
}

// SMC-Rv2 between two usmc peers over IPv6 (the kernel sends only
// IPv4-mapped GIDs): the CLC carries any 16-byte GID as it is.
const ClcGid kIpv6Gid1 = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
const ClcGid kIpv6Gid2 = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};

TEST(ClcSmcrIpv6Test, ConfirmWithIpv6GidsKnownAnswer) {
  // The long (v2.1) FCE usmc always sends. fd00::1's byte 12 is 0: the same
  // bytes with a short FCE would be ambiguous (docs/wire-clc.md, "FCE
  // form"); the long form is tried first and is what they are.
  ByteBuilder b;
  b.Eye("SMCR").U8(3).U16(180).U8(0x28);
  SmcrV2Fixed(b, kIpv6Gid1)
      .U8(0x80)  // v2_direct
      .U8(0x21)  // Linux, release 1
      .Zeros(2)
      .Text("v6-client", 32)
      .U8(255)
      .U8(1)
      .U16(1)
      .U32(0)
      .Zeros(8)
      .U8(1)  // GID list: 1 GID
      .Zeros(3)
      .Gid16(kIpv6Gid1)
      .Eye("SMCR");
  ClcSmcrAccept a = SmcrV2Base(ClcType::kConfirm);
  a.gid = kIpv6Gid1;
  a.first_contact = true;
  a.fce.v2_direct = true;
  a.fce.hostname = MakeClcHostname("v6-client");
  a.fce.max_conns = 255;
  a.fce.max_links = 1;
  a.fce.feature_mask = 1;
  a.gid_count = 1;
  a.gids[0] = kIpv6Gid1;
  ExpectKnownAnswer(a, b.Take());
  EXPECT_THAT(DescribeClc(a), HasSubstr("gid: fd00::1\n"));
}

TEST(ClcSmcrIpv6Test, AcceptWithIpv6GidKnownAnswer) {
  ByteBuilder b;
  b.Eye("SMCR").U8(2).U16(108).U8(0x20);
  SmcrV2Fixed(b, kIpv6Gid2).Eye("SMCR");
  ClcSmcrAccept a = SmcrV2Base(ClcType::kAccept);
  a.gid = kIpv6Gid2;
  ExpectKnownAnswer(a, b.Take());
}

TEST(ClcSmcrIpv6Test, ProposalCarriesAnIpv6RoceV2Gid) {
  // The Proposal usmc sends for SMC-R only (engine BuildProposal's shape):
  // the GID sits at offset 8 of the v2 extension.
  ClcProposal p;
  p.version = 2;
  p.typev1 = SmcType::kNone;
  p.typev2 = SmcType::kR;
  p.has_smcd_area = true;
  p.release = kSmcRelease21;
  p.feature_mask = kClcFeatureEmulatedIsm;
  p.eid_count = 1;
  p.eids[0] = MakeClcEid("USMC-LAB");
  p.peer_id = kPeerId;
  p.mac = kMac;
  p.roce_v2_gid = kIpv6Gid1;
  p.max_conns = 255;
  p.max_links = 1;
  const Bytes wire = EncodeToBytes(p);
  WireResult<ClcMessage> d = DecodeClc(wire);
  ASSERT_TRUE(d) << d.error();
  ASSERT_TRUE(std::holds_alternative<ClcProposal>(*d));
  EXPECT_EQ(std::get<ClcProposal>(*d), p);
  EXPECT_EQ(std::get<ClcProposal>(*d).roce_v2_gid, kIpv6Gid1);
  // Header 8 + peer ID 8 + v1 GID 16 + MAC 6 + iparea offset 2, the
  // SMC-D area (40), no prefix area (typev1 none), then the v2 extension:
  // its GID at +8.
  const size_t v2 = 8 + 8 + 16 + 6 + 2 + 40;
  ASSERT_GT(wire.size(), v2 + 24);
  for (size_t i = 0; i < 16; ++i) {
    EXPECT_EQ(static_cast<uint8_t>(wire[v2 + 8 + i]), kIpv6Gid1[i]) << i;
  }
}

// ---------------------------------------------------------- SMC-D Accept

TEST(ClcSmcdAcceptTest, V1KnownAnswer) {
  Bytes wire = ByteBuilder()
                   .Eye("SMCD")
                   .U8(2)
                   .U16(48)
                   .U8(0x19)                 // v1, first contact, D
                   .U64(0x0011223344556677)  // GID
                   .U64(0x8000000000000042)  // DMB token
                   .U8(0)                    // DMBE index
                   .U8(0x20)                 // DMBE size 2 (64 KiB)
                   .Zeros(2)
                   .U32(0x00abcdef)  // link ID
                   .Zeros(12)
                   .Eye("SMCD")
                   .Take();
  ClcSmcdAccept a;
  a.type = ClcType::kAccept;
  a.version = 1;
  a.first_contact = true;
  a.gid = 0x0011223344556677;
  a.dmb_token = 0x8000000000000042;
  a.dmbe_size = 2;
  a.link_id = 0x00abcdef;
  ExpectKnownAnswer(a, wire);
}

ByteBuilder& SmcdV2Fixed(ByteBuilder& b, uint16_t chid, uint64_t gid_ext) {
  return b.U64(0x0011223344556677)
      .U64(0x8000000000000042)
      .U8(0)
      .U8(0x60)  // DMBE size 6 (1 MiB)
      .Zeros(2)
      .U32(0x00abcdef)
      .U16(chid)
      .Text("LAB-UEID", 32)
      .U64(gid_ext);
}

ClcSmcdAccept SmcdV2Base(ClcType type, uint16_t chid, uint64_t gid_ext) {
  ClcSmcdAccept a;
  a.type = type;
  a.version = 2;
  a.gid = 0x0011223344556677;
  a.dmb_token = 0x8000000000000042;
  a.dmbe_size = 6;
  a.link_id = 0x00abcdef;
  a.chid = chid;
  a.eid = MakeClcEid("LAB-UEID");
  a.gid_ext = gid_ext;
  return a;
}

TEST(ClcSmcdAcceptTest, V2NotFirstContact) {
  ByteBuilder b;
  b.Eye("SMCD").U8(3).U16(78).U8(0x21);  // CONFIRM v2, D
  SmcdV2Fixed(b, 0x0100, 0).Eye("SMCD");
  ExpectKnownAnswer(SmcdV2Base(ClcType::kConfirm, 0x0100, 0), b.Take());
}

TEST(ClcSmcdAcceptTest, V2ConfirmShortFce) {
  ByteBuilder b;
  b.Eye("SMCD").U8(3).U16(114).U8(0x29);
  SmcdV2Fixed(b, 0x0100, 0)
      .U8(0)
      .U8(0x20)  // Linux, release 0: the 36-byte v2.0 FCE
      .Zeros(2)
      .Text("zhost", 32)
      .Eye("SMCD");
  ClcSmcdAccept a = SmcdV2Base(ClcType::kConfirm, 0x0100, 0);
  a.first_contact = true;
  a.fce.long_form = false;
  a.fce.release = 0;
  a.fce.hostname = MakeClcHostname("zhost");
  ExpectKnownAnswer(a, b.Take());
}

TEST(ClcSmcdAcceptTest, V2AcceptLongFceEmulatedIsm) {
  ByteBuilder b;
  b.Eye("SMCD").U8(2).U16(130).U8(0x29);
  SmcdV2Fixed(b, 0xFFFF, 0x0f0e0d0c0b0a0908)
      .U8(0)
      .U8(0x21)  // Linux, release 1
      .Zeros(2)
      .Text("lo-host", 32)
      .U8(0)
      .U8(0)   // max_conns/max_links: SMC-R only
      .U16(1)  // Emulated-ISM feature
      .U32(0)
      .Zeros(8)
      .Eye("SMCD");
  ClcSmcdAccept a = SmcdV2Base(ClcType::kAccept, 0xFFFF, 0x0f0e0d0c0b0a0908);
  a.first_contact = true;
  a.fce.hostname = MakeClcHostname("lo-host");
  a.fce.feature_mask = kClcFeatureEmulatedIsm;
  ExpectKnownAnswer(a, b.Take());
  EXPECT_TRUE(IsEmulatedIsmChid(a.chid));
}

// ------------------------------------------------------------- Utilities

TEST(ClcHeaderTest, DecodesFields) {
  Bytes wire = ByteBuilder().Eye("SMCD").U8(3).U16(0x0072).U8(0x29).Take();
  WireResult<ClcHeader> h = DecodeClcHeader(wire);
  ASSERT_TRUE(h) << h.error();
  EXPECT_EQ(h->eyecatcher, ClcEyecatcher::kSmcd);
  EXPECT_EQ(h->type, ClcType::kConfirm);
  EXPECT_EQ(h->length, 0x72);
  EXPECT_EQ(h->version, 2);
  EXPECT_EQ(h->typev2, 2);
  EXPECT_EQ(h->typev1, 1);
}

TEST(ClcTextTest, EidPaddingAndText) {
  ClcEid e = MakeClcEid("LAB-UEID");
  EXPECT_EQ(e[7], 'D');
  EXPECT_EQ(e[8], ' ');
  EXPECT_EQ(e[31], ' ');
  EXPECT_EQ(ClcText(e), "LAB-UEID");
  ClcEid long_eid = MakeClcEid(std::string(40, 'X'));
  EXPECT_EQ(ClcText(long_eid), std::string(32, 'X'));
}

TEST(ClcEnumTest, ToStringNamesEveryValue) {
  EXPECT_EQ(ToString(ClcType::kProposal), "PROPOSAL");
  EXPECT_EQ(ToString(ClcType::kAccept), "ACCEPT");
  EXPECT_EQ(ToString(ClcType::kConfirm), "CONFIRM");
  EXPECT_EQ(ToString(ClcType::kDecline), "DECLINE");
  EXPECT_EQ(ToString(ClcEyecatcher::kSmcd), "SMCD");
  EXPECT_EQ(ToString(SmcType::kBoth), "B");
  EXPECT_EQ(ToString(ClcFrameDecoder::Status::kFrame), "FRAME");
  std::ostringstream os;
  os << ClcType::kConfirm << " " << SmcType::kNone << " "
     << ClcEyecatcher::kSmcr;
  EXPECT_EQ(os.str(), "CONFIRM N SMCR");
}

TEST(ClcDescribeTest, ShowsTheFields) {
  ClcSmcrAccept a = SmcrV2Base(ClcType::kConfirm);
  std::string s = DescribeClc(a);
  EXPECT_THAT(s, HasSubstr("type: CONFIRM\n"));
  EXPECT_THAT(s, HasSubstr("path: SMC-R\n"));
  EXPECT_THAT(s, HasSubstr("gid: ::ffff:10.0.0.2\n"));
  EXPECT_THAT(s, HasSubstr("qpn: 0xfedcba\n"));
  EXPECT_THAT(s, HasSubstr("rmbe_size: 15 (524288 KiB)\n"));
  EXPECT_THAT(s, HasSubstr("qp_mtu: 5 (4096)\n"));
  EXPECT_THAT(s, HasSubstr("eid: \"LAB-UEID\"\n"));

  ClcDecline d;
  d.peer_diagnosis = kReasonNoSmcDev;
  EXPECT_THAT(DescribeClc(d), HasSubstr("peer_diagnosis: 0x03030000 NOSMCDEV"));

  ClcProposal p;
  p.version = 1;
  p.typev1 = SmcType::kR;
  p.gid = kLinkLocalGid;
  EXPECT_THAT(DescribeClc(p), HasSubstr("gid: fe80::5054:ff:fe00:2\n"));
}

TEST(ClcTypeOfTest, ReportsAcceptAndConfirm) {
  EXPECT_EQ(TypeOf(ClcProposal{}), ClcType::kProposal);
  EXPECT_EQ(TypeOf(SmcrV2Base(ClcType::kConfirm)), ClcType::kConfirm);
  EXPECT_EQ(TypeOf(SmcdV2Base(ClcType::kAccept, 1, 0)), ClcType::kAccept);
  EXPECT_EQ(TypeOf(ClcDecline{}), ClcType::kDecline);
}

}  // namespace
}  // namespace usmc::wire
