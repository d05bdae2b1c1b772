// dev/rdma_contract_test.cc: RdmaContract, the RC rules of dev/rdma.h that
// SimRdma and a real device (rxe) must both keep, asserted by outcome:
// bytes in the remote MR, completion statuses and their order, queue
// states. Instantiated by dev/sim_rdma_test.cc and dev/verbs_test.cc.
// Sim-only detail (packet counters) is checked when the bed is the sim.
#include "dev/rdma_contract_test.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

#include "dev/sim_rdma.h"

namespace usmc::dev::rdma {

std::vector<std::byte> Pattern(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<std::byte>(seed + i * 7 + (i >> 8));
  return v;
}

RdmaHost::RdmaHost(Context& c, uint64_t rmb_iova, uint8_t seed, QpCaps caps)
    : ctx(&c) {
  pd = Must(ctx->AllocPd());
  ch = Must(ctx->CreateCompChannel());
  scq = Must(ctx->CreateCq(256, ch.get()));
  rcq = Must(ctx->CreateCq(256, ch.get()));
  rmb.assign(kRmbSize, std::byte{0});
  rmb_mr = Must(pd->RegisterMr(rmb.data(), rmb.size(),
                               kLocalWrite | kRemoteWrite, rmb_iova));
  sndbuf = Pattern(kRmbSize, seed);
  snd_mr = Must(
      pd->RegisterMr(sndbuf.data(), sndbuf.size(), 0, Addr(sndbuf.data())));
  rx.assign(kSlot * kSlots, std::byte{0});
  rx_mr =
      Must(pd->RegisterMr(rx.data(), rx.size(), kLocalWrite, Addr(rx.data())));
  qp = Must(pd->CreateRcQp(*scq, *rcq, caps));
}

RecvWr RdmaHost::Slot(uint32_t i) const {
  RecvWr r;
  r.wr_id = 1000 + i;
  r.sg[0] = {Addr(rx.data() + i * kSlot), kSlot, rx_mr->lkey()};
  r.num_sge = 1;
  return r;
}

void RdmaHost::PostSlots(uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) {
    RecvWr r = Slot(i);
    ASSERT_TRUE(qp->PostRecv({&r, 1}).ok());
  }
}

RtrAttr RtrTo(const RdmaHost& self, const RdmaHost& peer, uint32_t peer_psn) {
  return {.path_mtu = Mtu::k1024,
          .dest_qpn = peer.qp->qpn(),
          .rq_psn = peer_psn,
          .dgid = peer.ctx->attr().gid,
          .sgid_index = self.ctx->attr().gid_index,
          .hop_limit = 1,
          .max_dest_rd_atomic = 0,
          .min_rnr_timer = 5};
}

void Connect(RdmaHost& h, const RdmaHost& peer, uint32_t own_psn,
             uint32_t peer_psn, RtsAttr rts) {
  ASSERT_TRUE(h.qp->ModifyToInit({.access = kRemoteWrite}).ok());
  ASSERT_TRUE(h.qp->ModifyToRtr(RtrTo(h, peer, peer_psn)).ok());
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

SendWr Write(const RdmaHost& from, uint32_t src_off, uint32_t len,
             const RdmaHost& to, uint64_t dst_iova, uint32_t flags,
             uint64_t wr_id) {
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
                  uint32_t extra_flags) {
  SendWr s;
  s.wr_id = wr_id;
  s.opcode = WrOpcode::kSend;
  s.flags = kSendSignaled | kSendInline | extra_flags;
  s.sg[0] = {Addr(data), len, 0};
  s.num_sge = 1;
  return s;
}

std::string BedName(const ::testing::TestParamInfo<RdmaBedFactory>& info) {
  return info.param.name;
}

void RdmaContract::TearDown() {
  b_.reset();
  a_.reset();
  if (bed_ && bed_->sim()) {
    EXPECT_TRUE(bed_->sim()->misuse().empty());
  }
}

namespace {

TEST_P(RdmaContract, DevicesAndObjectsLookLikeVerbs) {
  EXPECT_EQ(ToString(a_->ctx->attr().gid).rfind("::ffff:", 0), 0u)
      << "SMC-Rv2's GID is IPv4-mapped";
  EXPECT_GE(a_->ctx->attr().max_inline, 44u);
  EXPECT_EQ(a_->qp->state(), QpState::kReset);
  EXPECT_NE(a_->qp->qpn(), b_->qp->qpn());
  EXPECT_NE(a_->qp->qpn(), 0u);
  EXPECT_LE(a_->qp->qpn(), kQpnMask);
  // The MR answers with the IOVA it was registered at, not an address.
  EXPECT_EQ(a_->rmb_mr->iova(), kIovaA);
  EXPECT_EQ(a_->rmb_mr->access(), kLocalWrite | kRemoteWrite);
  if (bed_->DistinctKeys()) {
    EXPECT_NE(a_->rmb_mr->lkey(), a_->rmb_mr->rkey());
  }
  // REMOTE_WRITE without LOCAL_WRITE is refused, as verbs does.
  std::byte buf[64];
  EXPECT_EQ(
      a_->pd->RegisterMr(buf, sizeof buf, kRemoteWrite, 0).status().code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(a_->pd->RegisterMr(buf, 0, kLocalWrite, 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(
      a_->pd->RegisterMr(buf, sizeof buf, kLocalWrite, ~0ull - 8).ok());
}

TEST_P(RdmaContract, RdmaWriteLandsInTheRemoteMr) {
  ConnectBoth();
  const uint32_t off = 1000, len = 3000;  // three packets at MTU 1024
  SendWr w = Write(*a_, 5, len, *b_, kIovaB + off, kSendSignaled, 77);
  ASSERT_TRUE(a_->qp->PostSend({&w, 1}).ok());
  auto wcs = Await(*a_->scq, 1);

  EXPECT_TRUE(std::equal(b_->rmb.begin() + off, b_->rmb.begin() + off + len,
                         a_->sndbuf.begin() + 5));
  EXPECT_TRUE(std::all_of(b_->rmb.begin(), b_->rmb.begin() + off,
                          [](std::byte x) { return x == std::byte{0}; }));
  EXPECT_TRUE(std::all_of(b_->rmb.begin() + off + len, b_->rmb.end(),
                          [](std::byte x) { return x == std::byte{0}; }));
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wr_id, 77u);
  EXPECT_EQ(wcs[0].status, WcStatus::kSuccess);
  EXPECT_EQ(wcs[0].opcode, WcOpcode::kRdmaWrite);
  EXPECT_EQ(wcs[0].qp_num, a_->qp->qpn());
  // A WRITE consumes no receive and completes nothing at the target.
  EXPECT_TRUE(Drain(*b_->rcq).empty());
  if (bed_->sim()) {
    EXPECT_EQ(bed_->sim()->stats().retransmits, 0u);
  }
}

TEST_P(RdmaContract, UnsignaledWritesCompleteSilentlySendsInOrder) {
  ConnectBoth();
  b_->PostSlots(kSlots);
  std::vector<SendWr> wrs;
  for (uint32_t i = 0; i < 10; ++i) {
    wrs.push_back(Write(*a_, i * 100, 100, *b_, kIovaB + i * 100));
    wrs.push_back(InlineSend(a_->sndbuf.data() + i, 44, 500 + i, 0));
  }
  size_t posted = 0;
  ASSERT_TRUE(a_->qp->PostSend(wrs, &posted).ok());
  EXPECT_EQ(posted, wrs.size());

  auto sent = Await(*a_->scq, 10);
  ASSERT_EQ(sent.size(), 10u);  // the SENDs only
  auto got = Await(*b_->rcq, 10);
  ASSERT_EQ(got.size(), 10u);
  for (uint32_t i = 0; i < 10; ++i) {
    EXPECT_EQ(sent[i].wr_id, 500 + i);
    EXPECT_EQ(sent[i].opcode, WcOpcode::kSend);
    EXPECT_EQ(got[i].wr_id, 1000 + i);  // receives consumed in post order
    EXPECT_EQ(got[i].opcode, WcOpcode::kRecv);
    EXPECT_EQ(got[i].byte_len, 44u);
    EXPECT_FALSE(got[i].solicited);
    EXPECT_EQ(std::memcmp(b_->rx.data() + i * kSlot, a_->sndbuf.data() + i, 44),
              0);
  }
  EXPECT_TRUE(
      std::equal(b_->rmb.begin(), b_->rmb.begin() + 1000, a_->sndbuf.begin()));
}

// SMC-R's CDC rule (SMCR.md §2.1): up to two RDMA WRITEs into the peer's
// RMB (here a ring wrap: its tail and its head), then the 44-byte inline,
// solicited, signaled SEND. The receiver, woken by its solicited-only
// completion channel, finds every written byte in place when it polls the
// SEND's completion, whenever that happens.
TEST_P(RdmaContract, WritesAreInPlaceWhenTheSendIsSeen) {
  ConnectBoth();
  b_->PostSlots(4);
  ASSERT_TRUE(b_->rcq->RequestNotify(/*solicited_only=*/true).ok());

  const uint32_t tail_off = kRmbSize - 300, tail_len = 300, head_len = 700;
  SendWr wrs[3] = {Write(*a_, 0, tail_len, *b_, kIovaB + tail_off),
                   Write(*a_, tail_len, head_len, *b_, kIovaB),
                   {}};
  std::array<std::byte, 44> cdc{};
  cdc[0] = std::byte{0xfe};
  cdc[1] = std::byte{0x2c};
  wrs[2] = InlineSend(cdc.data(), cdc.size(), 9);
  ASSERT_TRUE(a_->qp->PostSend(wrs).ok());
  cdc.fill(std::byte{0});  // inline: copied at post, the buffer is free

  bool seen = false;
  for (int steps = 0; steps < 10000 && !seen; ++steps) {
    WorkCompletion wc[4];
    const size_t n = *b_->rcq->Poll(wc);
    if (n == 0) {
      ASSERT_TRUE(bed_->Step()) << "idle before the SEND arrived";
      continue;
    }
    seen = true;
    ASSERT_EQ(n, 1u);
    EXPECT_EQ(wc[0].status, WcStatus::kSuccess);
    EXPECT_EQ(wc[0].byte_len, 44u);
    if (bed_->ReportsSolicited()) {
      EXPECT_TRUE(wc[0].solicited);
    }
    // Both chunks are there when the CDC is seen.
    EXPECT_TRUE(std::equal(b_->rmb.begin() + tail_off, b_->rmb.end(),
                           a_->sndbuf.begin()));
    EXPECT_TRUE(std::equal(b_->rmb.begin(), b_->rmb.begin() + head_len,
                           a_->sndbuf.begin() + tail_len));
    EXPECT_EQ(b_->rx[0], std::byte{0xfe});
    EXPECT_EQ(b_->rx[1], std::byte{0x2c});
  }
  ASSERT_TRUE(seen);
  // The channel fd woke B for the solicited receive; exactly one event.
  EXPECT_TRUE(Readable(b_->ch->fd()));
  Result<Cq*> ev = b_->ch->GetEvent();
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(*ev, b_->rcq.get());
  b_->rcq->AckEvents(1);
  EXPECT_EQ(*b_->ch->GetEvent(), nullptr);
  EXPECT_FALSE(Readable(b_->ch->fd()));

  auto sent = Await(*a_->scq, 1);
  ASSERT_EQ(sent.size(), 1u);  // the unsignaled WRITEs stay silent
  EXPECT_EQ(sent[0].wr_id, 9u);
  EXPECT_EQ(sent[0].status, WcStatus::kSuccess);
}

TEST_P(RdmaContract, SolicitedOnlyNotifyIgnoresUnsolicitedSends) {
  ConnectBoth();
  b_->PostSlots(2);
  ASSERT_TRUE(b_->rcq->RequestNotify(true).ok());
  std::byte msg[44] = {};
  SendWr plain = InlineSend(msg, 44, 1, 0);
  ASSERT_TRUE(a_->qp->PostSend({&plain, 1}).ok());
  EXPECT_EQ(Await(*b_->rcq, 1).size(), 1u);
  EXPECT_FALSE(Readable(b_->ch->fd()));  // noticed late, as the kernel says

  SendWr sol = InlineSend(msg, 44, 2, kSendSolicited);
  ASSERT_TRUE(a_->qp->PostSend({&sol, 1}).ok());
  EXPECT_EQ(Await(*b_->rcq, 1).size(), 1u);
  EXPECT_TRUE(Readable(b_->ch->fd()));
  EXPECT_EQ(*b_->ch->GetEvent(), b_->rcq.get());
  b_->rcq->AckEvents(1);

  // One shot: not re-armed, no second event.
  SendWr again = InlineSend(msg, 44, 3, kSendSolicited);
  b_->PostSlots(1);
  ASSERT_TRUE(a_->qp->PostSend({&again, 1}).ok());
  EXPECT_EQ(Await(*b_->rcq, 1).size(), 1u);
  EXPECT_FALSE(Readable(b_->ch->fd()));
  // Armed for everything, a send completion raises one on A's channel.
  EXPECT_EQ(Await(*a_->scq, 3).size(), 3u);
  ASSERT_TRUE(a_->scq->RequestNotify(false).ok());
  SendWr w = Write(*a_, 0, 8, *b_, kIovaB, kSendSignaled);
  ASSERT_TRUE(a_->qp->PostSend({&w, 1}).ok());
  EXPECT_EQ(Await(*a_->scq, 1).size(), 1u);
  EXPECT_TRUE(Readable(a_->ch->fd()));
  EXPECT_EQ(*a_->ch->GetEvent(), a_->scq.get());
  a_->scq->AckEvents(1);
}

// ---- remote checks: each fails at the writer, moves both QPs to error and
// flushes what follows; the target's memory is untouched. ----

struct BadWrite {
  const char* name;
  // Adjusts a valid WRITE of 512 bytes into b's RMB.
  void (*spoil)(SendWr& w, const RdmaHost& a, const RdmaHost& b);
  WcStatus expect;
  bool remote;  // detected by the target (which then errors too)
  bool needs_distinct_keys;
};

constexpr BadWrite kBadWrites[] = {
    {"UnknownRkey",
     [](SendWr& w, const RdmaHost&, const RdmaHost& b) {
       w.rkey = b.rmb_mr->rkey() ^ 0x5a5a00;
     },
     WcStatus::kRemAccessErr, true, false},
    {"LkeyUsedAsRkey",
     [](SendWr& w, const RdmaHost&, const RdmaHost& b) {
       w.rkey = b.rmb_mr->lkey();
     },
     WcStatus::kRemAccessErr, true, true},
    {"StartsBeforeTheMr",
     [](SendWr& w, const RdmaHost&, const RdmaHost&) {
       w.remote_addr = RdmaContract::kIovaB - 1;
     },
     WcStatus::kRemAccessErr, true, false},
    {"EndsPastTheMr",
     [](SendWr& w, const RdmaHost&, const RdmaHost&) {
       w.remote_addr = RdmaContract::kIovaB + kRmbSize - 511;
     },
     WcStatus::kRemAccessErr, true, false},
    {"RangeWrapsAround",
     [](SendWr& w, const RdmaHost&, const RdmaHost&) {
       w.remote_addr = ~0ull - 100;
     },
     WcStatus::kRemAccessErr, true, false},
    {"ProcessAddressInsteadOfIova",
     [](SendWr& w, const RdmaHost&, const RdmaHost& b) {
       w.remote_addr = Addr(b.rmb.data()) + 100;
     },
     WcStatus::kRemAccessErr, true, false},
    {"MrWithoutRemoteWrite",  // b's local-only send buffer
     [](SendWr& w, const RdmaHost&, const RdmaHost& b) {
       w.rkey = b.snd_mr->rkey();
       w.remote_addr = b.snd_mr->iova();
     },
     WcStatus::kRemAccessErr, true, false},
    {"RecvBufferMr",  // LOCAL_WRITE only
     [](SendWr& w, const RdmaHost&, const RdmaHost& b) {
       w.rkey = b.rx_mr->rkey();
       w.remote_addr = b.rx_mr->iova();
     },
     WcStatus::kRemAccessErr, true, false},
    {"WriterLkeyInvalid",
     [](SendWr& w, const RdmaHost& a, const RdmaHost&) {
       w.sg[0].lkey = a.snd_mr->rkey();
     },
     WcStatus::kLocProtErr, false, true},
    {"WriterSourceOutsideItsMr",
     [](SendWr& w, const RdmaHost& a, const RdmaHost&) {
       w.sg[0].addr = Addr(a.sndbuf.data()) + kRmbSize - 100;
     },
     WcStatus::kLocProtErr, false, false},
};

TEST_P(RdmaContract, BadWritesFailAtTheWriterAndFlushTheRest) {
  for (const BadWrite& p : kBadWrites) {
    if (p.needs_distinct_keys && !bed_->DistinctKeys()) continue;
    SCOPED_TRACE(p.name);
    // A fresh pair of hosts per case: the error ends the QPs.
    std::optional<RdmaHost> a, b;
    a.emplace(bed_->host(0), kIovaA, 1);
    b.emplace(bed_->host(1), kIovaB, 2);
    Connect(*a, *b, kPsnA, kPsnB);
    Connect(*b, *a, kPsnB, kPsnA);
    b->PostSlots(3);
    const PageBuffer before = b->rmb;

    SendWr bad = Write(*a, 0, 512, *b, kIovaB + 100, /*flags=*/0, 1);
    p.spoil(bad, *a, *b);
    std::byte msg[44] = {};
    SendWr wrs[3] = {bad, InlineSend(msg, 44, 2), InlineSend(msg, 44, 3)};
    ASSERT_TRUE(a->qp->PostSend(wrs).ok());

    // The unsignaled WRITE reports: errors always complete.
    auto wcs = Await(*a->scq, 3);
    ASSERT_EQ(wcs.size(), 3u);
    EXPECT_EQ(wcs[0].wr_id, 1u);
    // The lab: rxe (6.12) completes a WR that failed its local checks with
    // WR_FLUSH_ERR, not LOC_PROT_ERR (it moves the QP to ERROR first).
    const WcStatus first =
        !p.remote && !bed_->sim() ? WcStatus::kWrFlushErr : p.expect;
    EXPECT_EQ(Statuses(wcs),
              (std::vector<WcStatus>{first, WcStatus::kWrFlushErr,
                                     WcStatus::kWrFlushErr}));
    EXPECT_EQ(a->qp->state(), QpState::kError);
    EXPECT_EQ(b->rmb, before);
    if (!p.remote) {
      // A local error: the target saw nothing and goes on.
      EXPECT_EQ(b->qp->state(), QpState::kRts);
      EXPECT_TRUE(Drain(*b->rcq).empty());
      continue;
    }
    // RC class C: the target QP is in error too, its receives flushed.
    EXPECT_EQ(Statuses(Await(*b->rcq, 3)),
              std::vector<WcStatus>(3, WcStatus::kWrFlushErr));
    EXPECT_EQ(b->qp->state(), QpState::kError);

    // Later posts are accepted and flushed, on both sides.
    ASSERT_TRUE(a->qp->PostSend({&wrs[1], 1}).ok());
    EXPECT_EQ(Statuses(Await(*a->scq, 1)),
              std::vector<WcStatus>{WcStatus::kWrFlushErr});
    RecvWr r = b->Slot(0);
    ASSERT_TRUE(b->qp->PostRecv({&r, 1}).ok());
    if (bed_->sim()) {
      EXPECT_EQ(Statuses(Await(*b->rcq, 1)),
                std::vector<WcStatus>{WcStatus::kWrFlushErr});
    } else {
      // The lab: rxe (6.12) accepts a receive on a QP in ERROR and never
      // completes it (the send side is flushed at once, above).
      bed_->Settle();
      EXPECT_TRUE(Drain(*b->rcq).empty());
    }
  }
}

TEST_P(RdmaContract, RkeyOfAnotherPdIsRefused) {
  ConnectBoth();
  // B registers a region in a second PD: its rkey is valid on B's device
  // but not on QPs of the link's PD.
  std::unique_ptr<Pd> other = Must(b_->ctx->AllocPd());
  PageBuffer mem(4096);
  {
    std::unique_ptr<Mr> mr = Must(other->RegisterMr(
        mem.data(), mem.size(), kLocalWrite | kRemoteWrite, 0x9000'0000));
    SendWr w = Write(*a_, 0, 64, *b_, mr->iova(), kSendSignaled);
    w.rkey = mr->rkey();
    ASSERT_TRUE(a_->qp->PostSend({&w, 1}).ok());
    EXPECT_EQ(Statuses(Await(*a_->scq, 1)),
              std::vector<WcStatus>{WcStatus::kRemAccessErr});
    EXPECT_TRUE(std::all_of(mem.begin(), mem.end(),
                            [](std::byte x) { return x == std::byte{0}; }));
  }
}

TEST_P(RdmaContract, DeregisteredMrIsRefused) {
  ConnectBoth();
  SendWr w = Write(*a_, 0, 64, *b_, kIovaB, kSendSignaled);
  b_->rmb_mr.reset();  // the connection ended; the peer still has the key
  ASSERT_TRUE(a_->qp->PostSend({&w, 1}).ok());
  EXPECT_EQ(Statuses(Await(*a_->scq, 1)),
            std::vector<WcStatus>{WcStatus::kRemAccessErr});
  EXPECT_EQ(b_->rmb[0], std::byte{0});
}

TEST_P(RdmaContract, QpWithoutRemoteWriteRefusesWrites) {
  ASSERT_TRUE(a_->qp->ModifyToInit({.access = kRemoteWrite}).ok());
  ASSERT_TRUE(a_->qp->ModifyToRtr(RtrTo(*a_, *b_, kPsnB)).ok());
  ASSERT_TRUE(a_->qp->ModifyToRts({.sq_psn = kPsnA}).ok());
  ASSERT_TRUE(b_->qp->ModifyToInit({.access = 0}).ok());
  ASSERT_TRUE(b_->qp->ModifyToRtr(RtrTo(*b_, *a_, kPsnA)).ok());
  ASSERT_TRUE(b_->qp->ModifyToRts({.sq_psn = kPsnB}).ok());
  SendWr w = Write(*a_, 0, 64, *b_, kIovaB, kSendSignaled);
  ASSERT_TRUE(a_->qp->PostSend({&w, 1}).ok());
  EXPECT_EQ(Statuses(Await(*a_->scq, 1)),
            std::vector<WcStatus>{WcStatus::kRemInvReqErr});
  EXPECT_EQ(b_->qp->state(), QpState::kError);
  EXPECT_EQ(b_->rmb[0], std::byte{0});
}

TEST_P(RdmaContract, ReceiveBufferTooSmall) {
  ConnectBoth();
  RecvWr r = b_->Slot(0);
  r.sg[0].length = 40;
  ASSERT_TRUE(b_->qp->PostRecv({&r, 1}).ok());
  std::byte msg[44] = {};
  SendWr s = InlineSend(msg, 44, 5);
  ASSERT_TRUE(a_->qp->PostSend({&s, 1}).ok());
  // Both ends fail; how they say it differs. The sim follows the IBA
  // (invalid request NAK: REM_INV_REQ_ERR / LOC_LEN_ERR); the lab's rxe
  // (6.12) answers a remote operational error: REM_OP_ERR at the sender,
  // LOC_QP_OP_ERR at the receiver. SMC-R treats every one as link down.
  const bool sim = bed_->sim() != nullptr;
  EXPECT_EQ(Statuses(Await(*a_->scq, 1)),
            std::vector<WcStatus>{sim ? WcStatus::kRemInvReqErr
                                      : WcStatus::kRemOpErr});
  EXPECT_EQ(Statuses(Await(*b_->rcq, 1)),
            std::vector<WcStatus>{sim ? WcStatus::kLocLenErr
                                      : WcStatus::kLocQpOpErr});
}

// ---- receive-queue depth and RNR ----

TEST_P(RdmaContract, SendWithoutReceiveIsHeldUntilOneIsPosted) {
  ConnectBoth();  // rnr_retry 7: retried forever
  std::byte msg[44];
  std::memset(msg, 0xab, sizeof msg);
  SendWr s[2] = {InlineSend(msg, 44, 1), InlineSend(msg, 20, 2)};
  ASSERT_TRUE(a_->qp->PostSend(s).ok());
  bed_->Pass(3000);  // far beyond 8 ACK timeouts
  EXPECT_TRUE(Drain(*a_->scq).empty());
  if (bed_->sim()) {
    EXPECT_GT(bed_->sim()->stats().rnr_naks, 100u);
  }
  EXPECT_EQ(a_->qp->state(), QpState::kRts);

  b_->PostSlots(1);  // room for the first only
  auto got = Await(*b_->rcq, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].byte_len, 44u);
  EXPECT_EQ(b_->rx[0], std::byte{0xab});
  auto sent = Await(*a_->scq, 1);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].wr_id, 1u);

  RecvWr r = b_->Slot(5);
  ASSERT_TRUE(b_->qp->PostRecv({&r, 1}).ok());
  got = Await(*b_->rcq, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].wr_id, 1005u);
  EXPECT_EQ(got[0].byte_len, 20u);
  EXPECT_EQ(Statuses(Await(*a_->scq, 1)),
            std::vector<WcStatus>{WcStatus::kSuccess});
}

TEST_P(RdmaContract, RnrRetryCountRunsOut) {
  ConnectBoth({.rnr_retry = 2});
  std::byte msg[44] = {};
  SendWr s[2] = {InlineSend(msg, 44, 1), InlineSend(msg, 44, 2)};
  ASSERT_TRUE(a_->qp->PostSend(s).ok());
  EXPECT_EQ(Statuses(Await(*a_->scq, 2)),
            (std::vector<WcStatus>{WcStatus::kRnrRetryExcErr,
                                   WcStatus::kWrFlushErr}));
  if (bed_->sim()) {
    EXPECT_EQ(bed_->sim()->stats().rnr_naks, 3u);  // the try and two retries
  }
  EXPECT_EQ(a_->qp->state(), QpState::kError);
}

TEST_P(RdmaContract, ReceiveQueueDepthIsEnforced) {
  // The device may grant more than asked; its grant is the bound.
  RdmaHost c(bed_->host(0), 0x1000, 3, {.max_recv_wr = 2});
  ASSERT_TRUE(c.qp->ModifyToInit({}).ok());
  const uint32_t depth = c.qp->caps().max_recv_wr;
  ASSERT_GE(depth, 2u);
  ASSERT_LT(depth, kSlots);
  std::vector<RecvWr> r;
  for (uint32_t i = 0; i <= depth; ++i) r.push_back(c.Slot(i));
  size_t posted = 0;
  Status st = c.qp->PostRecv(r, &posted);
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(posted, depth);
}

// ---- refusals at post and modify ----

TEST_P(RdmaContract, InlineAboveMaxInlineIsRefused) {
  ConnectBoth();
  const uint32_t max = a_->qp->caps().max_inline_data;
  std::vector<std::byte> big(max + 1);
  SendWr ok = InlineSend(big.data(), max, 1);
  SendWr too_big = InlineSend(big.data(), max + 1, 2);
  SendWr wrs[2] = {ok, too_big};
  size_t posted = 0;
  Status st = a_->qp->PostSend(wrs, &posted);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(posted, 1u);  // stopped at the bad one
  // A QP cannot be created with more inline than the device offers.
  QpCaps caps;
  caps.max_inline_data = a_->ctx->attr().max_inline + 1;
  EXPECT_FALSE(a_->pd->CreateRcQp(*a_->scq, *a_->rcq, caps).ok());
  b_->PostSlots(1);
  EXPECT_EQ(Await(*b_->rcq, 1).size(), 1u);
}

TEST_P(RdmaContract, WrongQpStateIsRefused) {
  std::byte msg[44] = {};
  SendWr s = InlineSend(msg, 44, 1);
  RecvWr r = b_->Slot(0);
  EXPECT_EQ(a_->qp->PostSend({&s, 1}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(a_->qp->PostRecv({&r, 1}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(a_->qp->ModifyToRtr(RtrTo(*a_, *b_, 1)).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(a_->qp->ModifyToRts({}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(a_->qp->state(), QpState::kReset);

  ASSERT_TRUE(a_->qp->ModifyToInit({}).ok());
  EXPECT_TRUE(a_->qp->PostRecv({&r, 1}).ok());  // receives go in from INIT
  EXPECT_EQ(a_->qp->PostSend({&s, 1}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(a_->qp->ModifyToInit({}).code(), StatusCode::kFailedPrecondition);
  // Bad attributes change nothing.
  RtrAttr rtr = RtrTo(*a_, *b_, 1);
  rtr.sgid_index = a_->ctx->attr().gid_index + 1;  // not SMC-R's GID
  EXPECT_EQ(a_->qp->ModifyToRtr(rtr).code(), StatusCode::kInvalidArgument);
  rtr = RtrTo(*a_, *b_, 1);
  rtr.dest_qpn = 1u << 24;
  EXPECT_EQ(a_->qp->ModifyToRtr(rtr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(a_->qp->state(), QpState::kInit);

  ASSERT_TRUE(a_->qp->ModifyToRtr(RtrTo(*a_, *b_, 1)).ok());
  EXPECT_EQ(a_->qp->PostSend({&s, 1}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(a_->qp->ModifyToRts({.sq_psn = 1, .retry_cnt = 8}).code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(a_->qp->ModifyToRts({.sq_psn = 1}).ok());
  EXPECT_TRUE(a_->qp->PostSend({&s, 1}).ok());

  // RESET drops everything without completions.
  ASSERT_TRUE(a_->qp->ModifyToReset().ok());
  bed_->Settle();
  EXPECT_TRUE(Drain(*a_->scq).empty());
  EXPECT_TRUE(Drain(*a_->rcq).empty());
  EXPECT_EQ(a_->qp->state(), QpState::kReset);
}

// The responder drops requests until it is in RTR; the requester's ACK
// timeout resends them (the order SMC-R's first contact relies on).
TEST_P(RdmaContract, RequestsBeforeThePeerIsReadyAreResent) {
  Connect(*a_, *b_, kPsnA, kPsnB);
  ASSERT_TRUE(b_->qp->ModifyToInit({}).ok());
  b_->PostSlots(1);
  std::byte msg[44] = {std::byte{1}};
  SendWr s = InlineSend(msg, 44, 1);
  ASSERT_TRUE(a_->qp->PostSend({&s, 1}).ok());
  bed_->Settle();
  if (bed_->sim()) {
    EXPECT_EQ(bed_->sim()->stats().discarded, 1u);
  }
  EXPECT_TRUE(Drain(*b_->rcq).empty());
  ASSERT_TRUE(b_->qp->ModifyToRtr(RtrTo(*b_, *a_, kPsnA)).ok());
  bed_->Pass(200);  // one 134 ms timeout
  if (bed_->sim()) {
    EXPECT_EQ(bed_->sim()->stats().retransmits, 1u);
  }
  EXPECT_EQ(Await(*b_->rcq, 1).size(), 1u);
  EXPECT_EQ(Statuses(Await(*a_->scq, 1)),
            std::vector<WcStatus>{WcStatus::kSuccess});
}

// A wrong PSN on either side is not an error verbs can report at once:
// the responder NAKs or ignores and the requester retries. The sim then
// gives up (RETRY_EXC_ERR); the lab's rxe (6.12) retries for good: no
// completion at all, so only a timer above verbs (SMC-R's LLC) can tell.
TEST_P(RdmaContract, MismatchedPsnNeverDelivers) {
  Connect(*a_, *b_, kPsnA + 5, kPsnB);  // A sends from a PSN B does not expect
  Connect(*b_, *a_, kPsnB, kPsnA);
  b_->PostSlots(1);
  std::byte msg[44] = {};
  SendWr s = InlineSend(msg, 44, 1);
  ASSERT_TRUE(a_->qp->PostSend({&s, 1}).ok());
  bed_->Pass(2000);
  if (bed_->sim()) {
    EXPECT_EQ(Statuses(Await(*a_->scq, 1)),
              std::vector<WcStatus>{WcStatus::kRetryExcErr});
  } else {
    EXPECT_TRUE(Drain(*a_->scq).empty());
  }
  EXPECT_TRUE(Drain(*b_->rcq).empty());
  EXPECT_EQ(b_->qp->state(), QpState::kRts);  // B never noticed
}

TEST_P(RdmaContract, MultiPacketMessagesAdvanceThePsn) {
  ConnectBoth();
  b_->PostSlots(2);
  // 5000 bytes = 5 packets at MTU 1024; A's expected PSN crosses 2^24.
  SendWr w = Write(*b_, 0, 5000, *a_, kIovaA);
  std::byte msg[44] = {std::byte{7}};
  SendWr s = InlineSend(msg, 44, 1);
  SendWr wrs[2] = {w, s};
  a_->PostSlots(1);
  ASSERT_TRUE(b_->qp->PostSend(wrs).ok());
  EXPECT_EQ(Await(*a_->rcq, 1).size(), 1u);
  EXPECT_TRUE(
      std::equal(a_->rmb.begin(), a_->rmb.begin() + 5000, b_->sndbuf.begin()));
  EXPECT_EQ(Statuses(Await(*b_->scq, 1)),
            std::vector<WcStatus>{WcStatus::kSuccess});
  if (bed_->sim()) {
    EXPECT_EQ(bed_->sim()->stats().retransmits, 0u);
  }
}

}  // namespace
}  // namespace usmc::dev::rdma
