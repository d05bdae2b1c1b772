// dev/sim_rdma_test.cc: SimRdma's RC rules, each asserted by its outcome:
// bytes in the remote MR, completion statuses and their order, queue
// states. Time is the fabric's SimClock only.
#include "dev/sim_rdma.h"

#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace usmc::dev::rdma {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

constexpr uint32_t kRmbSize = 65536;
constexpr uint32_t kSlot = 48;  // one receive slot, as SMC-Rv2's 44 B + pad
constexpr uint32_t kSlots = 16;

std::vector<std::byte> Pattern(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<std::byte>(seed + i * 7 + (i >> 8));
  return v;
}

uint64_t Addr(const void* p) { return reinterpret_cast<uint64_t>(p); }

// The value of a call that must succeed (objects are move-only).
template <typename T>
T Must(Result<T> r) {
  if (!r.ok()) ADD_FAILURE() << r.status();
  return std::move(r).value();
}

// One simulated host, set up as usmc's SMC-R link would be: an RMB the
// peer writes (LOCAL_WRITE|REMOTE_WRITE at a chosen IOVA), a local-only
// send buffer, a receive ring of 48-byte slots. Members are declared in
// the order verbs creates them, so they are destroyed in the order it
// requires (QP, MRs, CQs, channel, PD).
struct Host {
  Host(SimRdma& f, const char* name, uint32_t ip, uint64_t rmb_iova,
       QpCaps caps = {}) {
    ctx = &f.AddDevice({.name = name, .ipv4 = ip});
    pd = Must(ctx->AllocPd());
    ch = Must(ctx->CreateCompChannel());
    scq = Must(ctx->CreateCq(256, ch.get()));
    rcq = Must(ctx->CreateCq(256, ch.get()));
    rmb.assign(kRmbSize, std::byte{0});
    rmb_mr = Must(pd->RegisterMr(rmb.data(), rmb.size(),
                                 kLocalWrite | kRemoteWrite, rmb_iova));
    sndbuf = Pattern(kRmbSize, ip & 0xff);
    snd_mr = Must(
        pd->RegisterMr(sndbuf.data(), sndbuf.size(), 0, Addr(sndbuf.data())));
    rx.assign(kSlot * kSlots, std::byte{0});
    rx_mr = Must(
        pd->RegisterMr(rx.data(), rx.size(), kLocalWrite, Addr(rx.data())));
    qp = Must(pd->CreateRcQp(*scq, *rcq, caps));
  }

  // A receive WR for slot i.
  RecvWr Slot(uint32_t i) const {
    RecvWr r;
    r.wr_id = 1000 + i;
    r.sg[0] = {Addr(rx.data() + i * kSlot), kSlot, rx_mr->lkey()};
    r.num_sge = 1;
    return r;
  }
  void PostSlots(uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) {
      RecvWr r = Slot(i);
      ASSERT_TRUE(qp->PostRecv({&r, 1}).ok());
    }
  }

  Context* ctx = nullptr;
  std::unique_ptr<Pd> pd;
  std::unique_ptr<CompChannel> ch;
  std::unique_ptr<Cq> scq;
  std::unique_ptr<Cq> rcq;
  std::vector<std::byte> rmb;
  std::vector<std::byte> sndbuf;
  std::vector<std::byte> rx;
  std::unique_ptr<Mr> rmb_mr;
  std::unique_ptr<Mr> snd_mr;
  std::unique_ptr<Mr> rx_mr;
  std::unique_ptr<Qp> qp;
};

RtrAttr RtrTo(const Host& peer, uint32_t peer_psn) {
  return {.path_mtu = Mtu::k1024,
          .dest_qpn = peer.qp->qpn(),
          .rq_psn = peer_psn,
          .dgid = peer.ctx->attr().gid,
          .sgid_index = 1,
          .hop_limit = 1,
          .max_dest_rd_atomic = 0,
          .min_rnr_timer = 5};
}

// RESET -> INIT -> RTR -> RTS with the kernel's attributes (SMCR.md §1.5).
void Connect(Host& h, const Host& peer, uint32_t own_psn, uint32_t peer_psn,
             RtsAttr rts = {}) {
  ASSERT_TRUE(h.qp->ModifyToInit({.access = kRemoteWrite}).ok());
  ASSERT_TRUE(h.qp->ModifyToRtr(RtrTo(peer, peer_psn)).ok());
  rts.sq_psn = own_psn;
  ASSERT_TRUE(h.qp->ModifyToRts(rts).ok());
}

std::vector<WorkCompletion> Drain(Cq& cq) {
  std::vector<WorkCompletion> all;
  WorkCompletion wc[8];
  for (;;) {
    Result<size_t> n = cq.Poll(wc);
    EXPECT_TRUE(n.ok());
    if (!n.ok() || *n == 0) return all;
    all.insert(all.end(), wc, wc + *n);
  }
}

std::vector<WcStatus> Statuses(const std::vector<WorkCompletion>& wcs) {
  std::vector<WcStatus> s;
  for (const auto& wc : wcs) s.push_back(wc.status);
  return s;
}

bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

SendWr Write(const Host& from, uint32_t src_off, uint32_t len, const Host& to,
             uint64_t dst_iova, uint32_t flags = 0, uint64_t wr_id = 1) {
  SendWr w;
  w.wr_id = wr_id;
  w.opcode = WrOpcode::kRdmaWrite;
  w.flags = flags;
  w.sg[0] = {Addr(from.sndbuf.data() + src_off), len, from.snd_mr->lkey()};
  w.num_sge = 1;
  w.remote_addr = dst_iova;
  w.rkey = to.rmb_mr->rkey();
  return w;
}

SendWr InlineSend(const void* data, uint32_t len, uint64_t wr_id,
                  uint32_t extra_flags = kSendSolicited) {
  SendWr s;
  s.wr_id = wr_id;
  s.opcode = WrOpcode::kSend;
  s.flags = kSendSignaled | kSendInline | extra_flags;
  s.sg[0] = {Addr(data), len, 0};
  s.num_sge = 1;
  return s;
}

class SimRdmaTest : public ::testing::Test {
 public:
  static constexpr uint64_t kIovaA = 0x7a3f'1200'0000ull;
  static constexpr uint64_t kIovaB = 0x51c0'0840'0000ull;
  static constexpr uint32_t kPsnA = 0x123456;
  static constexpr uint32_t kPsnB = 0xfffffe;  // wraps after two packets

 protected:
  SimRdmaTest()
      : fabric_(clock_, 42),
        a_(fabric_, "a", 0x0a000001, kIovaA),
        b_(fabric_, "b", 0x0a000002, kIovaB) {}

  void ConnectBoth(RtsAttr rts_a = {}, RtsAttr rts_b = {}) {
    Connect(a_, b_, kPsnA, kPsnB, rts_a);
    Connect(b_, a_, kPsnB, kPsnA, rts_b);
  }
  void TearDown() override { EXPECT_TRUE(fabric_.misuse().empty()); }

  SimClock clock_;
  SimRdma fabric_;
  Host a_;
  Host b_;
};

TEST_F(SimRdmaTest, DevicesAndObjectsLookLikeVerbs) {
  EXPECT_EQ(ToString(a_.ctx->attr().gid), "::ffff:10.0.0.1");
  EXPECT_NE(a_.ctx->attr().gid, b_.ctx->attr().gid);
  EXPECT_EQ(a_.qp->state(), QpState::kReset);
  EXPECT_NE(a_.qp->qpn(), b_.qp->qpn());
  EXPECT_NE(a_.qp->qpn(), 0u);
  EXPECT_LE(a_.qp->qpn(), kQpnMask);
  // The MR answers with the IOVA it was registered at, not an address,
  // and an lkey that is not its rkey.
  EXPECT_EQ(a_.rmb_mr->iova(), kIovaA);
  EXPECT_EQ(a_.rmb_mr->access(), kLocalWrite | kRemoteWrite);
  EXPECT_NE(a_.rmb_mr->lkey(), a_.rmb_mr->rkey());
  // REMOTE_WRITE without LOCAL_WRITE is refused, as verbs does.
  std::byte buf[64];
  EXPECT_EQ(a_.pd->RegisterMr(buf, sizeof buf, kRemoteWrite, 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(a_.pd->RegisterMr(buf, 0, kLocalWrite, 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(a_.pd->RegisterMr(buf, sizeof buf, kLocalWrite, ~0ull - 8).ok());
}

TEST_F(SimRdmaTest, RegisteredMrsShowWhatADeviceExposes) {
  auto mrs = fabric_.RegisteredMrs(*b_.ctx);
  ASSERT_EQ(mrs.size(), 3u);
  int remote = 0;
  for (const SimMrInfo& m : mrs) {
    if (m.access & kRemoteWrite) {
      ++remote;
      EXPECT_EQ(m.access, kLocalWrite | kRemoteWrite);
      EXPECT_EQ(m.iova, kIovaB);
      EXPECT_EQ(m.addr, Addr(b_.rmb.data()));
      EXPECT_EQ(m.rkey, b_.rmb_mr->rkey());
    }
  }
  EXPECT_EQ(remote, 1);
  b_.rmb_mr.reset();
  EXPECT_EQ(fabric_.RegisteredMrs(*b_.ctx).size(), 2u);
}

TEST_F(SimRdmaTest, RdmaWriteLandsInTheRemoteMr) {
  ConnectBoth();
  const uint32_t off = 1000, len = 3000;  // three packets at MTU 1024
  SendWr w = Write(a_, 5, len, b_, kIovaB + off, kSendSignaled, 77);
  ASSERT_TRUE(a_.qp->PostSend({&w, 1}).ok());
  fabric_.RunUntilIdle();

  EXPECT_TRUE(std::equal(b_.rmb.begin() + off, b_.rmb.begin() + off + len,
                         a_.sndbuf.begin() + 5));
  EXPECT_TRUE(std::all_of(b_.rmb.begin(), b_.rmb.begin() + off,
                          [](std::byte x) { return x == std::byte{0}; }));
  EXPECT_TRUE(std::all_of(b_.rmb.begin() + off + len, b_.rmb.end(),
                          [](std::byte x) { return x == std::byte{0}; }));
  auto wcs = Drain(*a_.scq);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wr_id, 77u);
  EXPECT_EQ(wcs[0].status, WcStatus::kSuccess);
  EXPECT_EQ(wcs[0].opcode, WcOpcode::kRdmaWrite);
  EXPECT_EQ(wcs[0].qp_num, a_.qp->qpn());
  // A WRITE consumes no receive and completes nothing at the target.
  EXPECT_TRUE(Drain(*b_.rcq).empty());
  EXPECT_EQ(fabric_.stats().retransmits, 0u);
}

TEST_F(SimRdmaTest, UnsignaledWritesCompleteSilentlySendsInOrder) {
  ConnectBoth();
  b_.PostSlots(kSlots);
  std::vector<SendWr> wrs;
  for (uint32_t i = 0; i < 10; ++i) {
    wrs.push_back(Write(a_, i * 100, 100, b_, kIovaB + i * 100));
    wrs.push_back(InlineSend(a_.sndbuf.data() + i, 44, 500 + i, 0));
  }
  size_t posted = 0;
  ASSERT_TRUE(a_.qp->PostSend(wrs, &posted).ok());
  EXPECT_EQ(posted, wrs.size());
  fabric_.RunUntilIdle();

  auto sent = Drain(*a_.scq);
  ASSERT_EQ(sent.size(), 10u);  // the SENDs only
  auto got = Drain(*b_.rcq);
  ASSERT_EQ(got.size(), 10u);
  for (uint32_t i = 0; i < 10; ++i) {
    EXPECT_EQ(sent[i].wr_id, 500 + i);
    EXPECT_EQ(sent[i].opcode, WcOpcode::kSend);
    EXPECT_EQ(got[i].wr_id, 1000 + i);  // receives consumed in post order
    EXPECT_EQ(got[i].opcode, WcOpcode::kRecv);
    EXPECT_EQ(got[i].byte_len, 44u);
    EXPECT_FALSE(got[i].solicited);
    EXPECT_EQ(std::memcmp(b_.rx.data() + i * kSlot, a_.sndbuf.data() + i, 44),
              0);
  }
  EXPECT_TRUE(
      std::equal(b_.rmb.begin(), b_.rmb.begin() + 1000, a_.sndbuf.begin()));
}

// SMC-R's CDC rule (SMCR.md §2.1): up to two RDMA WRITEs into the peer's
// RMB (here a ring wrap: its tail and its head), then the 44-byte inline,
// solicited, signaled SEND. The receiver, woken by its solicited-only
// completion channel, finds every written byte in place when it polls the
// SEND's completion, at whatever step that happens.
TEST_F(SimRdmaTest, TwoHostsExchangeTheSmcrPattern) {
  ConnectBoth();
  b_.PostSlots(4);
  ASSERT_TRUE(b_.rcq->RequestNotify(/*solicited_only=*/true).ok());

  const uint32_t tail_off = kRmbSize - 300, tail_len = 300, head_len = 700;
  SendWr wrs[3] = {Write(a_, 0, tail_len, b_, kIovaB + tail_off),
                   Write(a_, tail_len, head_len, b_, kIovaB),
                   {}};
  std::array<std::byte, 44> cdc{};
  cdc[0] = std::byte{0xfe};
  cdc[1] = std::byte{0x2c};
  wrs[2] = InlineSend(cdc.data(), cdc.size(), 9);
  ASSERT_TRUE(a_.qp->PostSend(wrs).ok());
  cdc.fill(std::byte{0});  // inline: copied at post, the buffer is free

  bool seen = false;
  for (int steps = 0; steps < 100 && !seen; ++steps) {
    const bool did = fabric_.Step();
    WorkCompletion wc[4];
    const size_t n = *b_.rcq->Poll(wc);
    if (n == 0) {
      ASSERT_TRUE(did) << "idle before the SEND arrived";
      continue;
    }
    seen = true;
    ASSERT_EQ(n, 1u);
    EXPECT_EQ(wc[0].status, WcStatus::kSuccess);
    EXPECT_EQ(wc[0].byte_len, 44u);
    EXPECT_TRUE(wc[0].solicited);
    // Both chunks are there when the CDC is seen.
    EXPECT_TRUE(
        std::equal(b_.rmb.begin() + tail_off, b_.rmb.end(), a_.sndbuf.begin()));
    EXPECT_TRUE(std::equal(b_.rmb.begin(), b_.rmb.begin() + head_len,
                           a_.sndbuf.begin() + tail_len));
    EXPECT_EQ(b_.rx[0], std::byte{0xfe});
    EXPECT_EQ(b_.rx[1], std::byte{0x2c});
  }
  ASSERT_TRUE(seen);
  // The channel fd woke B for the solicited receive; exactly one event.
  EXPECT_TRUE(Readable(b_.ch->fd()));
  Result<Cq*> ev = b_.ch->GetEvent();
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(*ev, b_.rcq.get());
  b_.rcq->AckEvents(1);
  EXPECT_EQ(*b_.ch->GetEvent(), nullptr);
  EXPECT_FALSE(Readable(b_.ch->fd()));

  fabric_.RunUntilIdle();
  auto sent = Drain(*a_.scq);
  ASSERT_EQ(sent.size(), 1u);  // the unsignaled WRITEs stay silent
  EXPECT_EQ(sent[0].wr_id, 9u);
  EXPECT_EQ(sent[0].status, WcStatus::kSuccess);
}

TEST_F(SimRdmaTest, SolicitedOnlyNotifyIgnoresUnsolicitedSends) {
  ConnectBoth();
  b_.PostSlots(2);
  ASSERT_TRUE(b_.rcq->RequestNotify(true).ok());
  std::byte msg[44] = {};
  SendWr plain = InlineSend(msg, 44, 1, 0);
  ASSERT_TRUE(a_.qp->PostSend({&plain, 1}).ok());
  fabric_.RunUntilIdle();
  EXPECT_EQ(Drain(*b_.rcq).size(), 1u);
  EXPECT_FALSE(Readable(b_.ch->fd()));  // noticed late, as the kernel says

  SendWr sol = InlineSend(msg, 44, 2, kSendSolicited);
  ASSERT_TRUE(a_.qp->PostSend({&sol, 1}).ok());
  fabric_.RunUntilIdle();
  EXPECT_TRUE(Readable(b_.ch->fd()));
  EXPECT_EQ(*b_.ch->GetEvent(), b_.rcq.get());
  b_.rcq->AckEvents(1);
  EXPECT_EQ(Drain(*b_.rcq).size(), 1u);

  // One shot: not re-armed, no second event.
  SendWr again = InlineSend(msg, 44, 3, kSendSolicited);
  b_.PostSlots(1);
  ASSERT_TRUE(a_.qp->PostSend({&again, 1}).ok());
  fabric_.RunUntilIdle();
  EXPECT_FALSE(Readable(b_.ch->fd()));
  // Armed for everything, a send completion raises one on A's channel.
  ASSERT_TRUE(a_.scq->RequestNotify(false).ok());
  EXPECT_EQ(Drain(*a_.scq).size(), 3u);
  SendWr w = Write(a_, 0, 8, b_, kIovaB, kSendSignaled);
  ASSERT_TRUE(a_.qp->PostSend({&w, 1}).ok());
  fabric_.RunUntilIdle();
  EXPECT_TRUE(Readable(a_.ch->fd()));
  EXPECT_EQ(*a_.ch->GetEvent(), a_.scq.get());
  a_.scq->AckEvents(1);
}

// ---- remote checks: each fails at the writer with a remote access error,
// moves both QPs to error and flushes what follows; the target's memory is
// untouched. ----

struct BadWrite {
  const char* name;
  // Adjusts a valid WRITE of `len` bytes into b's RMB.
  void (*spoil)(SendWr& w, const Host& a, const Host& b, SimRdma& f);
  WcStatus expect;
  bool remote;  // detected by the target (which then errors too)
};

class SimRdmaBadWriteTest : public SimRdmaTest,
                            public ::testing::WithParamInterface<BadWrite> {};

TEST_P(SimRdmaBadWriteTest, FailsAtTheWriterAndFlushesTheRest) {
  const BadWrite& p = GetParam();
  ConnectBoth();
  b_.PostSlots(3);
  const std::vector<std::byte> before = b_.rmb;

  SendWr bad = Write(a_, 0, 512, b_, kIovaB + 100, /*flags=*/0, 1);
  p.spoil(bad, a_, b_, fabric_);
  std::byte msg[44] = {};
  SendWr wrs[3] = {bad, InlineSend(msg, 44, 2), InlineSend(msg, 44, 3)};
  ASSERT_TRUE(a_.qp->PostSend(wrs).ok());
  fabric_.RunUntilIdle();

  // The unsignaled WRITE reports: errors always complete.
  auto wcs = Drain(*a_.scq);
  ASSERT_EQ(wcs.size(), 3u);
  EXPECT_EQ(wcs[0].wr_id, 1u);
  EXPECT_EQ(Statuses(wcs),
            (std::vector<WcStatus>{p.expect, WcStatus::kWrFlushErr,
                                   WcStatus::kWrFlushErr}));
  EXPECT_EQ(a_.qp->state(), QpState::kError);
  EXPECT_EQ(b_.rmb, before);
  if (!p.remote) {
    // A local error: the target saw nothing and goes on.
    EXPECT_EQ(b_.qp->state(), QpState::kRts);
    EXPECT_TRUE(Drain(*b_.rcq).empty());
    return;
  }
  // RC class C: the target QP is in error too, its receives flushed.
  EXPECT_EQ(b_.qp->state(), QpState::kError);
  EXPECT_EQ(Statuses(Drain(*b_.rcq)),
            std::vector<WcStatus>(3, WcStatus::kWrFlushErr));

  // Later posts are accepted and flushed, on both sides.
  ASSERT_TRUE(a_.qp->PostSend({&wrs[1], 1}).ok());
  EXPECT_EQ(Statuses(Drain(*a_.scq)),
            std::vector<WcStatus>{WcStatus::kWrFlushErr});
  RecvWr r = b_.Slot(0);
  ASSERT_TRUE(b_.qp->PostRecv({&r, 1}).ok());
  EXPECT_EQ(Statuses(Drain(*b_.rcq)),
            std::vector<WcStatus>{WcStatus::kWrFlushErr});
}

INSTANTIATE_TEST_SUITE_P(
    Rules, SimRdmaBadWriteTest,
    ::testing::Values(
        BadWrite{"UnknownRkey",
                 [](SendWr& w, const Host&, const Host& b, SimRdma&) {
                   w.rkey = b.rmb_mr->rkey() ^ 0x5a5a;
                 },
                 WcStatus::kRemAccessErr, true},
        BadWrite{"LkeyUsedAsRkey",
                 [](SendWr& w, const Host&, const Host& b, SimRdma&) {
                   w.rkey = b.rmb_mr->lkey();
                 },
                 WcStatus::kRemAccessErr, true},
        BadWrite{"StartsBeforeTheMr",
                 [](SendWr& w, const Host&, const Host&, SimRdma&) {
                   w.remote_addr = SimRdmaTest::kIovaB - 1;
                 },
                 WcStatus::kRemAccessErr, true},
        BadWrite{"EndsPastTheMr",
                 [](SendWr& w, const Host&, const Host&, SimRdma&) {
                   w.remote_addr = SimRdmaTest::kIovaB + kRmbSize - 511;
                 },
                 WcStatus::kRemAccessErr, true},
        BadWrite{"RangeWrapsAround",
                 [](SendWr& w, const Host&, const Host&, SimRdma&) {
                   w.remote_addr = ~0ull - 100;
                 },
                 WcStatus::kRemAccessErr, true},
        BadWrite{"ProcessAddressInsteadOfIova",
                 [](SendWr& w, const Host&, const Host& b, SimRdma&) {
                   w.remote_addr = Addr(b.rmb.data()) + 100;
                 },
                 WcStatus::kRemAccessErr, true},
        BadWrite{"MrWithoutRemoteWrite",  // b's local-only send buffer
                 [](SendWr& w, const Host&, const Host& b, SimRdma&) {
                   w.rkey = b.snd_mr->rkey();
                   w.remote_addr = b.snd_mr->iova();
                 },
                 WcStatus::kRemAccessErr, true},
        BadWrite{"RecvBufferMr",  // LOCAL_WRITE only
                 [](SendWr& w, const Host&, const Host& b, SimRdma&) {
                   w.rkey = b.rx_mr->rkey();
                   w.remote_addr = b.rx_mr->iova();
                 },
                 WcStatus::kRemAccessErr, true},
        BadWrite{"WriterLkeyInvalid",
                 [](SendWr& w, const Host& a, const Host&, SimRdma&) {
                   w.sg[0].lkey = a.snd_mr->rkey();
                 },
                 WcStatus::kLocProtErr, false},
        BadWrite{"WriterSourceOutsideItsMr",
                 [](SendWr& w, const Host& a, const Host&, SimRdma&) {
                   w.sg[0].addr = Addr(a.sndbuf.data()) + kRmbSize - 100;
                 },
                 WcStatus::kLocProtErr, false}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(SimRdmaTest, RkeyOfAnotherPdIsRefused) {
  ConnectBoth();
  // B registers a region in a second PD: its rkey is valid on B's device
  // but not on QPs of the link's PD.
  std::unique_ptr<Pd> other = Must(b_.ctx->AllocPd());
  std::vector<std::byte> mem(4096);
  {
    std::unique_ptr<Mr> mr = Must(other->RegisterMr(
        mem.data(), mem.size(), kLocalWrite | kRemoteWrite, 0x9000'0000));
    SendWr w = Write(a_, 0, 64, b_, mr->iova(), kSendSignaled);
    w.rkey = mr->rkey();
    ASSERT_TRUE(a_.qp->PostSend({&w, 1}).ok());
    fabric_.RunUntilIdle();
    EXPECT_EQ(Statuses(Drain(*a_.scq)),
              std::vector<WcStatus>{WcStatus::kRemAccessErr});
    EXPECT_TRUE(std::all_of(mem.begin(), mem.end(),
                            [](std::byte x) { return x == std::byte{0}; }));
  }
}

TEST_F(SimRdmaTest, DeregisteredMrIsRefused) {
  ConnectBoth();
  SendWr w = Write(a_, 0, 64, b_, kIovaB, kSendSignaled);
  b_.rmb_mr.reset();  // the connection ended; the peer still has the key
  ASSERT_TRUE(a_.qp->PostSend({&w, 1}).ok());
  fabric_.RunUntilIdle();
  EXPECT_EQ(Statuses(Drain(*a_.scq)),
            std::vector<WcStatus>{WcStatus::kRemAccessErr});
  EXPECT_EQ(b_.rmb[0], std::byte{0});
}

TEST_F(SimRdmaTest, QpWithoutRemoteWriteRefusesWrites) {
  ASSERT_TRUE(a_.qp->ModifyToInit({.access = kRemoteWrite}).ok());
  ASSERT_TRUE(a_.qp->ModifyToRtr(RtrTo(b_, kPsnB)).ok());
  ASSERT_TRUE(a_.qp->ModifyToRts({.sq_psn = kPsnA}).ok());
  ASSERT_TRUE(b_.qp->ModifyToInit({.access = 0}).ok());
  ASSERT_TRUE(b_.qp->ModifyToRtr(RtrTo(a_, kPsnA)).ok());
  ASSERT_TRUE(b_.qp->ModifyToRts({.sq_psn = kPsnB}).ok());
  SendWr w = Write(a_, 0, 64, b_, kIovaB, kSendSignaled);
  ASSERT_TRUE(a_.qp->PostSend({&w, 1}).ok());
  fabric_.RunUntilIdle();
  EXPECT_EQ(Statuses(Drain(*a_.scq)),
            std::vector<WcStatus>{WcStatus::kRemInvReqErr});
  EXPECT_EQ(b_.qp->state(), QpState::kError);
  EXPECT_EQ(b_.rmb[0], std::byte{0});
}

TEST_F(SimRdmaTest, ReceiveBufferTooSmall) {
  ConnectBoth();
  RecvWr r = b_.Slot(0);
  r.sg[0].length = 40;
  ASSERT_TRUE(b_.qp->PostRecv({&r, 1}).ok());
  std::byte msg[44] = {};
  SendWr s = InlineSend(msg, 44, 5);
  ASSERT_TRUE(a_.qp->PostSend({&s, 1}).ok());
  fabric_.RunUntilIdle();
  EXPECT_EQ(Statuses(Drain(*b_.rcq)),
            std::vector<WcStatus>{WcStatus::kLocLenErr});
  EXPECT_EQ(Statuses(Drain(*a_.scq)),
            std::vector<WcStatus>{WcStatus::kRemInvReqErr});
}

// ---- receive-queue depth and RNR ----

TEST_F(SimRdmaTest, SendWithoutReceiveIsHeldUntilOneIsPosted) {
  ConnectBoth();  // rnr_retry 7: retried forever
  std::byte msg[44];
  std::memset(msg, 0xab, sizeof msg);
  SendWr s[2] = {InlineSend(msg, 44, 1), InlineSend(msg, 20, 2)};
  ASSERT_TRUE(a_.qp->PostSend(s).ok());
  fabric_.RunFor(seconds(3));  // far beyond 8 ACK timeouts
  EXPECT_TRUE(Drain(*a_.scq).empty());
  EXPECT_GT(fabric_.stats().rnr_naks, 100u);
  EXPECT_EQ(a_.qp->state(), QpState::kRts);

  b_.PostSlots(1);  // room for the first only
  fabric_.RunFor(milliseconds(1));
  auto got = Drain(*b_.rcq);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].byte_len, 44u);
  EXPECT_EQ(b_.rx[0], std::byte{0xab});
  auto sent = Drain(*a_.scq);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].wr_id, 1u);

  RecvWr r = b_.Slot(5);
  ASSERT_TRUE(b_.qp->PostRecv({&r, 1}).ok());
  fabric_.RunFor(milliseconds(1));
  got = Drain(*b_.rcq);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].wr_id, 1005u);
  EXPECT_EQ(got[0].byte_len, 20u);
  EXPECT_EQ(Statuses(Drain(*a_.scq)),
            std::vector<WcStatus>{WcStatus::kSuccess});
}

TEST_F(SimRdmaTest, RnrRetryCountRunsOut) {
  ConnectBoth({.rnr_retry = 2});
  std::byte msg[44] = {};
  SendWr s[2] = {InlineSend(msg, 44, 1), InlineSend(msg, 44, 2)};
  ASSERT_TRUE(a_.qp->PostSend(s).ok());
  fabric_.RunFor(seconds(1));
  EXPECT_EQ(Statuses(Drain(*a_.scq)),
            (std::vector<WcStatus>{WcStatus::kRnrRetryExcErr,
                                   WcStatus::kWrFlushErr}));
  EXPECT_EQ(fabric_.stats().rnr_naks, 3u);  // the try and two retries
  EXPECT_EQ(a_.qp->state(), QpState::kError);
}

TEST_F(SimRdmaTest, ReceiveQueueDepthIsEnforced) {
  ConnectBoth();
  Host c(fabric_, "c", 0x0a000003, 0x1000, {.max_recv_wr = 2});
  ASSERT_TRUE(c.qp->ModifyToInit({}).ok());
  RecvWr r[3] = {c.Slot(0), c.Slot(1), c.Slot(2)};
  size_t posted = 0;
  Status st = c.qp->PostRecv(r, &posted);
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(posted, 2u);
}

// ---- send-queue slots ----

TEST_F(SimRdmaTest, SendSlotsAreFreedOnlyByAPolledSignaledCompletion) {
  Host c(fabric_, "c", 0x0a000003, 0x1000, {.max_send_wr = 4});
  Connect(c, b_, 1, 2);
  Connect(b_, c, 2, 1);
  SendWr w[4];
  for (int i = 0; i < 4; ++i) w[i] = Write(c, 0, 16, b_, kIovaB, 0, i);
  ASSERT_TRUE(c.qp->PostSend({w, 3}).ok());
  fabric_.RunUntilIdle();  // acknowledged, but nothing completed
  SendWr extra = Write(c, 0, 16, b_, kIovaB, kSendSignaled, 9);
  ASSERT_TRUE(c.qp->PostSend({&extra, 1}).ok());  // the 4th slot
  fabric_.RunUntilIdle();
  EXPECT_EQ(c.qp->PostSend({&w[3], 1}).code(), StatusCode::kResourceExhausted);
  // Polling the signaled completion retires it and the three before it.
  EXPECT_EQ(Drain(*c.scq).size(), 1u);
  size_t posted = 0;
  EXPECT_TRUE(c.qp->PostSend({w, 4}, &posted).ok());
  EXPECT_EQ(posted, 4u);
  fabric_.RunUntilIdle();
}

// ---- refusals at post and modify ----

TEST_F(SimRdmaTest, InlineAboveMaxInlineIsRefused) {
  ConnectBoth();
  const uint32_t max = a_.qp->caps().max_inline_data;
  std::vector<std::byte> big(max + 1);
  SendWr ok = InlineSend(big.data(), max, 1);
  SendWr too_big = InlineSend(big.data(), max + 1, 2);
  SendWr wrs[2] = {ok, too_big};
  size_t posted = 0;
  Status st = a_.qp->PostSend(wrs, &posted);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(posted, 1u);  // stopped at the bad one
  // A QP cannot be created with more inline than the device offers.
  QpCaps caps;
  caps.max_inline_data = a_.ctx->attr().max_inline + 1;
  EXPECT_FALSE(a_.pd->CreateRcQp(*a_.scq, *a_.rcq, caps).ok());
  b_.PostSlots(1);
  fabric_.RunUntilIdle();
  EXPECT_EQ(Drain(*b_.rcq).size(), 1u);
}

TEST_F(SimRdmaTest, WrongQpStateIsRefused) {
  std::byte msg[44] = {};
  SendWr s = InlineSend(msg, 44, 1);
  RecvWr r = b_.Slot(0);
  EXPECT_EQ(a_.qp->PostSend({&s, 1}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(a_.qp->PostRecv({&r, 1}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(a_.qp->ModifyToRtr(RtrTo(b_, 1)).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(a_.qp->ModifyToRts({}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(a_.qp->state(), QpState::kReset);

  ASSERT_TRUE(a_.qp->ModifyToInit({}).ok());
  EXPECT_TRUE(a_.qp->PostRecv({&r, 1}).ok());  // receives go in from INIT
  EXPECT_EQ(a_.qp->PostSend({&s, 1}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(a_.qp->ModifyToInit({}).code(), StatusCode::kFailedPrecondition);
  // Bad attributes change nothing.
  RtrAttr rtr = RtrTo(b_, 1);
  rtr.path_mtu = Mtu::k4096;  // above the port's active 1024
  EXPECT_EQ(a_.qp->ModifyToRtr(rtr).code(), StatusCode::kInvalidArgument);
  rtr = RtrTo(b_, 1);
  rtr.sgid_index = 0;
  EXPECT_EQ(a_.qp->ModifyToRtr(rtr).code(), StatusCode::kInvalidArgument);
  rtr = RtrTo(b_, 1);
  rtr.dest_qpn = 1u << 24;
  EXPECT_EQ(a_.qp->ModifyToRtr(rtr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(a_.qp->state(), QpState::kInit);

  ASSERT_TRUE(a_.qp->ModifyToRtr(RtrTo(b_, 1)).ok());
  EXPECT_EQ(a_.qp->PostSend({&s, 1}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(a_.qp->ModifyToRts({.sq_psn = 1, .retry_cnt = 8}).code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(a_.qp->ModifyToRts({.sq_psn = 1}).ok());
  EXPECT_TRUE(a_.qp->PostSend({&s, 1}).ok());

  // RESET drops everything without completions.
  ASSERT_TRUE(a_.qp->ModifyToReset().ok());
  EXPECT_TRUE(Drain(*a_.scq).empty());
  EXPECT_TRUE(Drain(*a_.rcq).empty());
  EXPECT_EQ(a_.qp->state(), QpState::kReset);
}

// The responder drops requests until it is in RTR; the requester's ACK
// timeout resends them (the order SMC-R's first contact relies on).
TEST_F(SimRdmaTest, RequestsBeforeThePeerIsReadyAreResent) {
  Connect(a_, b_, kPsnA, kPsnB);
  ASSERT_TRUE(b_.qp->ModifyToInit({}).ok());
  b_.PostSlots(1);
  std::byte msg[44] = {std::byte{1}};
  SendWr s = InlineSend(msg, 44, 1);
  ASSERT_TRUE(a_.qp->PostSend({&s, 1}).ok());
  fabric_.RunUntilIdle();
  EXPECT_EQ(fabric_.stats().discarded, 1u);
  ASSERT_TRUE(b_.qp->ModifyToRtr(RtrTo(a_, kPsnA)).ok());
  fabric_.RunFor(milliseconds(200));  // one 134 ms timeout
  EXPECT_EQ(fabric_.stats().retransmits, 1u);
  EXPECT_EQ(Drain(*b_.rcq).size(), 1u);
  EXPECT_EQ(Statuses(Drain(*a_.scq)),
            std::vector<WcStatus>{WcStatus::kSuccess});
}

// A wrong PSN on either side is not an error verbs can report at once:
// the responder NAKs or ignores, the requester retries, then gives up.
TEST_F(SimRdmaTest, MismatchedPsnEndsInRetryExceeded) {
  Connect(a_, b_, kPsnA + 5, kPsnB);  // A sends from a PSN B does not expect
  Connect(b_, a_, kPsnB, kPsnA);
  b_.PostSlots(1);
  std::byte msg[44] = {};
  SendWr s = InlineSend(msg, 44, 1);
  ASSERT_TRUE(a_.qp->PostSend({&s, 1}).ok());
  fabric_.RunFor(seconds(2));
  EXPECT_EQ(Statuses(Drain(*a_.scq)),
            std::vector<WcStatus>{WcStatus::kRetryExcErr});
  EXPECT_TRUE(Drain(*b_.rcq).empty());
  EXPECT_EQ(b_.qp->state(), QpState::kRts);  // B never noticed
}

TEST_F(SimRdmaTest, MultiPacketMessagesAdvanceThePsn) {
  ConnectBoth();
  b_.PostSlots(2);
  // 5000 bytes = 5 packets at MTU 1024; B's expected PSN crosses 2^24.
  SendWr w = Write(b_, 0, 5000, a_, kIovaA);
  std::byte msg[44] = {std::byte{7}};
  SendWr s = InlineSend(msg, 44, 1);
  SendWr wrs[2] = {w, s};
  ASSERT_TRUE(b_.qp->PostSend(wrs).ok());
  a_.PostSlots(1);
  fabric_.RunUntilIdle();
  EXPECT_TRUE(
      std::equal(a_.rmb.begin(), a_.rmb.begin() + 5000, b_.sndbuf.begin()));
  EXPECT_EQ(Drain(*a_.rcq).size(), 1u);
  EXPECT_EQ(Statuses(Drain(*b_.scq)),
            std::vector<WcStatus>{WcStatus::kSuccess});
  EXPECT_EQ(fabric_.stats().retransmits, 0u);
}

// ---- a QP or device that dies ----

TEST_F(SimRdmaTest, KilledQpFlushesAndItsPeerTimesOut) {
  ConnectBoth();
  a_.PostSlots(2);
  b_.PostSlots(2);
  std::byte msg[44] = {};
  SendWr s = InlineSend(msg, 44, 1);
  fabric_.SetLink(*a_.ctx, *b_.ctx, LinkMode::kHold);
  ASSERT_TRUE(a_.qp->PostSend({&s, 1}).ok());
  fabric_.RunUntilIdle();
  fabric_.Kill(*a_.qp);
  EXPECT_EQ(a_.qp->state(), QpState::kError);
  EXPECT_EQ(Statuses(Drain(*a_.scq)),
            std::vector<WcStatus>{WcStatus::kWrFlushErr});
  EXPECT_EQ(Statuses(Drain(*a_.rcq)),
            std::vector<WcStatus>(2, WcStatus::kWrFlushErr));
  EXPECT_FALSE(a_.qp->ModifyToReset().ok());  // dead for good

  // B learns only when it sends: no ACK ever comes back.
  SendWr t = InlineSend(msg, 44, 2);
  SendWr t2 = InlineSend(msg, 44, 3);
  SendWr ts[2] = {t, t2};
  ASSERT_TRUE(b_.qp->PostSend(ts).ok());
  fabric_.RunFor(seconds(2));
  EXPECT_EQ(
      Statuses(Drain(*b_.scq)),
      (std::vector<WcStatus>{WcStatus::kRetryExcErr, WcStatus::kWrFlushErr}));
  EXPECT_EQ(Statuses(Drain(*b_.rcq)),
            std::vector<WcStatus>(2, WcStatus::kWrFlushErr));
  EXPECT_EQ(b_.qp->state(), QpState::kError);
}

TEST_F(SimRdmaTest, KilledDeviceReceivesNothingMore) {
  ConnectBoth();
  fabric_.KillDevice(*b_.ctx);
  EXPECT_EQ(b_.qp->state(), QpState::kError);
  SendWr w = Write(a_, 0, 64, b_, kIovaB, kSendSignaled);
  ASSERT_TRUE(a_.qp->PostSend({&w, 1}).ok());
  fabric_.RunFor(seconds(2));
  EXPECT_EQ(Statuses(Drain(*a_.scq)),
            std::vector<WcStatus>{WcStatus::kRetryExcErr});
  EXPECT_EQ(b_.rmb[0], std::byte{0});
}

// ---- one direction held or dropped ----

TEST_F(SimRdmaTest, HeldDirectionDeliversOnRelease) {
  ConnectBoth();
  b_.PostSlots(1);
  fabric_.SetLink(*a_.ctx, *b_.ctx, LinkMode::kHold);
  SendWr w = Write(a_, 0, 100, b_, kIovaB);
  std::byte msg[44] = {std::byte{3}};
  SendWr s = InlineSend(msg, 44, 1);
  SendWr wrs[2] = {w, s};
  ASSERT_TRUE(a_.qp->PostSend(wrs).ok());
  fabric_.RunUntilIdle();
  EXPECT_EQ(fabric_.InFlight(*a_.ctx, *b_.ctx), 2u);
  EXPECT_EQ(b_.rmb[0], std::byte{0});
  EXPECT_TRUE(Drain(*b_.rcq).empty());

  fabric_.SetLink(*a_.ctx, *b_.ctx, LinkMode::kPass);
  fabric_.RunUntilIdle();
  EXPECT_TRUE(
      std::equal(b_.rmb.begin(), b_.rmb.begin() + 100, a_.sndbuf.begin()));
  EXPECT_EQ(Drain(*b_.rcq).size(), 1u);
  EXPECT_EQ(Statuses(Drain(*a_.scq)),
            std::vector<WcStatus>{WcStatus::kSuccess});
  EXPECT_EQ(fabric_.stats().retransmits, 0u);
}

// Held past retry_cnt ACK timeouts: the writer gives up, yet the request
// it resent eight times lands once when the path comes back (RC answers a
// duplicate without executing it again). The two ends disagree, as they
// would on a real fabric.
TEST_F(SimRdmaTest, HeldTooLongRetryExceededButDeliveredOnce) {
  ConnectBoth();
  b_.PostSlots(4);
  fabric_.SetLink(*a_.ctx, *b_.ctx, LinkMode::kHold);
  std::byte msg[44] = {std::byte{9}};
  SendWr s = InlineSend(msg, 44, 1);
  ASSERT_TRUE(a_.qp->PostSend({&s, 1}).ok());
  fabric_.RunFor(seconds(2));
  EXPECT_EQ(Statuses(Drain(*a_.scq)),
            std::vector<WcStatus>{WcStatus::kRetryExcErr});
  EXPECT_EQ(fabric_.stats().ack_timeouts, 8u);  // retry_cnt 7 + the try
  EXPECT_EQ(fabric_.InFlight(*a_.ctx, *b_.ctx), 8u);

  fabric_.SetLink(*a_.ctx, *b_.ctx, LinkMode::kPass);
  fabric_.RunUntilIdle();
  EXPECT_EQ(Drain(*b_.rcq).size(), 1u);
  EXPECT_EQ(b_.qp->state(), QpState::kRts);
}

TEST_F(SimRdmaTest, DroppedRequestsEndInRetryExceeded) {
  ConnectBoth({.timeout = 14, .retry_cnt = 3});
  b_.PostSlots(1);
  fabric_.SetLink(*a_.ctx, *b_.ctx, LinkMode::kDrop);
  std::byte msg[44] = {};
  SendWr s[2] = {InlineSend(msg, 44, 1), InlineSend(msg, 44, 2)};
  ASSERT_TRUE(a_.qp->PostSend(s).ok());
  fabric_.RunUntilIdle();  // sent (into the void); the ACK timer runs
  // Three timeouts: still retrying.
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(nanoseconds(AckTimeoutNs(14)));
    fabric_.RunUntilIdle();
  }
  EXPECT_EQ(fabric_.stats().ack_timeouts, 3u);
  EXPECT_TRUE(Drain(*a_.scq).empty());
  // The fourth: retry_cnt 3 is spent.
  clock_.Advance(nanoseconds(AckTimeoutNs(14)));
  fabric_.RunUntilIdle();
  EXPECT_EQ(
      Statuses(Drain(*a_.scq)),
      (std::vector<WcStatus>{WcStatus::kRetryExcErr, WcStatus::kWrFlushErr}));
  EXPECT_EQ(fabric_.InFlight(*a_.ctx, *b_.ctx), 0u);
  EXPECT_TRUE(Drain(*b_.rcq).empty());
}

TEST_F(SimRdmaTest, DroppedAcksOnly) {
  ConnectBoth();
  b_.PostSlots(1);
  fabric_.SetLink(*b_.ctx, *a_.ctx, LinkMode::kDrop);
  std::byte msg[44] = {std::byte{5}};
  SendWr s = InlineSend(msg, 44, 1);
  ASSERT_TRUE(a_.qp->PostSend({&s, 1}).ok());
  fabric_.RunFor(seconds(2));
  auto got = Drain(*b_.rcq);
  ASSERT_EQ(got.size(), 1u);  // executed once, the resends only re-ACKed
  EXPECT_EQ(got[0].status, WcStatus::kSuccess);
  EXPECT_EQ(Statuses(Drain(*a_.scq)),
            std::vector<WcStatus>{WcStatus::kRetryExcErr});
  EXPECT_EQ(fabric_.stats().retransmits, 7u);
}

TEST(SimRdmaMisuseTest, DestroyingAPdWithLiveObjectsIsRecorded) {
  SimClock clock;
  SimRdma fabric(clock);
  Context& c = fabric.AddDevice({.name = "x", .ipv4 = 0x0a000009});
  std::unique_ptr<Pd> pd = Must(c.AllocPd());
  std::vector<std::byte> mem(64);
  std::unique_ptr<Mr> mr = Must(pd->RegisterMr(mem.data(), mem.size(), 0, 0));
  pd.reset();
  ASSERT_EQ(fabric.misuse().size(), 1u);
  mr.reset();  // still safe
}

}  // namespace
}  // namespace usmc::dev::rdma
