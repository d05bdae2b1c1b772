// dev/sim_rdma_test.cc: what only SimRdma does (a fabric a test steps,
// holds, cuts and kills; its view of registered MRs; rules where it is
// stricter than rxe), plus RdmaContract (dev/rdma_contract_test.cc), the
// rules every dev/rdma.h implementation keeps, run here over SimRdma. Time
// is the fabric's SimClock only.
#include "dev/sim_rdma.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "dev/rdma_contract_test.h"
#include "gtest/gtest.h"

namespace usmc::dev::rdma {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

// ---- RdmaContract over SimRdma: two devices on one fabric ----

class SimBed final : public RdmaTestBed {
 public:
  SimBed()
      : fabric_(clock_, 42),
        a_(fabric_.AddDevice({.name = "a", .ipv4 = 0x0a000001})),
        b_(fabric_.AddDevice({.name = "b", .ipv4 = 0x0a000002})) {}
  Context& host(int i) override { return i == 0 ? a_ : b_; }
  // Idle at this instant: let simulated time reach the next timer.
  bool Step() override {
    if (fabric_.Step()) return true;
    fabric_.RunFor(milliseconds(1));
    return true;
  }
  void Settle() override { fabric_.RunUntilIdle(); }
  void Pass(int ms) override { fabric_.RunFor(milliseconds(ms)); }
  SimRdma* sim() override { return &fabric_; }
  bool ReportsSolicited() const override { return true; }
  bool DistinctKeys() const override { return true; }

 private:
  SimClock clock_;
  SimRdma fabric_;
  Context& a_;
  Context& b_;
};

INSTANTIATE_TEST_SUITE_P(Sim, RdmaContract,
                         ::testing::Values(RdmaBedFactory{
                             "SimRdma",
                             [](std::string*) -> std::unique_ptr<RdmaTestBed> {
                               return std::make_unique<SimBed>();
                             }}),
                         BedName);

// ---- SimRdma only ----

// A host on its own simulated device (dev/rdma_contract_test.h's RdmaHost).
struct Host : RdmaHost {
  Host(SimRdma& f, const char* name, uint32_t ip, uint64_t rmb_iova,
       QpCaps caps = {})
      : RdmaHost(f.AddDevice({.name = name, .ipv4 = ip}), rmb_iova, ip & 0xff,
                 caps) {}
};

// Every sim device has its GID at the same index: the peer's is ours.
RtrAttr RtrTo(const Host& peer, uint32_t peer_psn) {
  return RtrTo(peer, peer, peer_psn);
}

void Connect(Host& h, const Host& peer, uint32_t own_psn, uint32_t peer_psn,
             RtsAttr rts = {}) {
  Connect(static_cast<RdmaHost&>(h), peer, own_psn, peer_psn, rts);
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

TEST_F(SimRdmaTest, DevicesHaveTheirOwnGids) {
  EXPECT_EQ(ToString(a_.ctx->attr().gid), "::ffff:10.0.0.1");
  EXPECT_NE(a_.ctx->attr().gid, b_.ctx->attr().gid);
}

// Stricter than rxe (which checks the port's maximum): path_mtu may not
// exceed the port's active MTU.
TEST_F(SimRdmaTest, PathMtuAboveTheActiveMtuIsRefused) {
  ASSERT_TRUE(a_.qp->ModifyToInit({}).ok());
  RtrAttr rtr = RtrTo(b_, 1);
  rtr.path_mtu = Mtu::k4096;  // above the port's active 1024
  EXPECT_EQ(a_.qp->ModifyToRtr(rtr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(a_.qp->state(), QpState::kInit);
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

// ---- send-queue slots (stricter than rxe, which frees a slot when the
// WR is acknowledged, polled or not) ----

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
