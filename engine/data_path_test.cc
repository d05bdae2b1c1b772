// DataPath alone: copy plans, ring wrap, cursor validation, the consumer
// update rule and urgent data. Two DataPaths stand for the two ends; CDCs
// are passed by hand.
#include "engine/data_path.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "engine/common.h"

namespace usmc::engine {
namespace {

// Every test runs for both transports: SMC-D (ring after the 32-byte CDC
// area of the DMB) and SMC-R (the ring is the whole RMBE). The data path is
// the same code; only where the ring starts differs.
constexpr uint32_t kDmb = 16 * 1024;

class DataPath : public ::testing::TestWithParam<Technology> {
 protected:
  uint32_t Off() const {
    return GetParam() == Technology::kSmcd ? wire::kSmcdCdcLen : 0;
  }
  uint32_t Ring() const { return kDmb - Off(); }
  engine::DataPath Make() const {
    return engine::DataPath({kDmb, kDmb, Off()});
  }
  const uint32_t kRing = Ring();
};

wire::CdcMessage Producer(uint16_t wrap, uint32_t count) {
  wire::CdcMessage m;
  m.producer = {wrap, count};
  return m;
}

TEST_P(DataPath, PlanSendIsOneChunkAtTheProducer) {
  engine::DataPath d = Make();
  EXPECT_EQ(d.SendSpace(), kRing);
  const CopyPlan p = d.PlanSend(100);
  ASSERT_EQ(p.count, 1);
  EXPECT_EQ(p.chunks[0].offset, Off());
  EXPECT_EQ(p.chunks[0].len, 100u);
  EXPECT_EQ(p.total, 100u);
  ASSERT_TRUE(d.CommitSend(100, false, false));
  EXPECT_EQ(d.tx_producer(), (wire::Cursor{0, 100}));
  EXPECT_EQ(d.SendSpace(), kRing - 100);
}

TEST_P(DataPath, PlanSendWrapsIntoTwoChunks) {
  engine::DataPath d = Make();
  ASSERT_TRUE(d.CommitSend(kRing - 10, false, false));
  // The peer consumed everything.
  wire::CdcMessage m;
  m.consumer = {0, kRing - 10};
  ASSERT_EQ(d.OnPeerCdc(m).violation, CdcViolation::kNone);
  const CopyPlan p = d.PlanSend(50);
  ASSERT_EQ(p.count, 2);
  EXPECT_EQ(p.chunks[0].offset, Off() + kRing - 10);
  EXPECT_EQ(p.chunks[0].len, 10u);
  EXPECT_EQ(p.chunks[1].offset, Off());
  EXPECT_EQ(p.chunks[1].len, 40u);
  ASSERT_TRUE(d.CommitSend(50, false, false));
  EXPECT_EQ(d.tx_producer(), (wire::Cursor{1, 40}));
}

TEST_P(DataPath, FullRingStopsTheSender) {
  engine::DataPath d = Make();
  EXPECT_EQ(d.PlanSend(kRing + 5).total, kRing);
  ASSERT_TRUE(d.CommitSend(kRing, /*wanted_more=*/true, false));
  EXPECT_EQ(d.SendSpace(), 0u);
  EXPECT_TRUE(d.write_blocked());
  EXPECT_FALSE(d.CommitSend(1, false, false));
  EXPECT_TRUE(d.BuildCdc({}).prod_flags.write_blocked);
}

TEST_P(DataPath, ReceiverSeesDataAndPlansTwoChunksAcrossTheEnd) {
  engine::DataPath d = Make();
  ASSERT_EQ(d.OnPeerCdc(Producer(0, kRing - 4)).new_bytes, kRing - 4);
  EXPECT_TRUE(d.CommitRecv(kRing - 4));  // ring was full: confirm
  const PeerCdcResult r = d.OnPeerCdc(Producer(1, 6));
  EXPECT_EQ(r.new_bytes, 10u);
  const CopyPlan p = d.PlanRecv(100);
  ASSERT_EQ(p.count, 2);
  EXPECT_EQ(p.chunks[0].offset, Off() + kRing - 4);
  EXPECT_EQ(p.chunks[0].len, 4u);
  EXPECT_EQ(p.chunks[1].offset, Off());
  EXPECT_EQ(p.chunks[1].len, 6u);
}

TEST_P(DataPath, ProducerOneFullRingAheadIsValidMoreIsNot) {
  engine::DataPath d = Make();
  EXPECT_EQ(d.OnPeerCdc(Producer(1, 0)).new_bytes, kRing);  // full
  EXPECT_EQ(d.Readable(), kRing);
  engine::DataPath e = Make();
  EXPECT_EQ(e.OnPeerCdc(Producer(1, 1)).violation,
            CdcViolation::kProducerOverrun);
}

TEST_P(DataPath, ViolationsChangeNothing) {
  engine::DataPath d = Make();
  ASSERT_EQ(d.OnPeerCdc(Producer(0, 100)).violation, CdcViolation::kNone);
  EXPECT_EQ(d.OnPeerCdc(Producer(0, kRing)).violation,
            CdcViolation::kProducerRange);
  EXPECT_EQ(d.OnPeerCdc(Producer(0, 50)).violation,
            CdcViolation::kProducerBackwards);
  EXPECT_EQ(d.OnPeerCdc(Producer(0xffff, 50)).violation,
            CdcViolation::kProducerBackwards);
  wire::CdcMessage m = Producer(0, 100);
  m.consumer = {0, 1};  // we wrote nothing
  EXPECT_EQ(d.OnPeerCdc(m).violation, CdcViolation::kConsumerOverrun);
  m.consumer = {0, kRing + 3};
  EXPECT_EQ(d.OnPeerCdc(m).violation, CdcViolation::kConsumerRange);
  m = Producer(0, 100);
  m.prod_flags.failover_validation = true;
  EXPECT_EQ(d.OnPeerCdc(m).violation, CdcViolation::kBadFlags);
  EXPECT_EQ(d.peer_producer(), (wire::Cursor{0, 100}));
  EXPECT_EQ(d.Readable(), 100u);
}

TEST_P(DataPath, ConsumerUpdateRule) {
  engine::DataPath d = Make();
  // 3000 bytes in, sender_free = kRing - 3000 > kRing / 2.
  ASSERT_EQ(d.OnPeerCdc(Producer(0, 3000)).violation, CdcViolation::kNone);
  // limit = max(kRing / 10, 2304) = 2304 for a 16 KiB DMB.
  EXPECT_FALSE(d.CommitRecv(2500));  // over the limit but the ring is roomy
  ASSERT_EQ(d.OnPeerCdc(Producer(0, 12000)).violation, CdcViolation::kNone);
  // Now sender_free = kRing - 12000 <= kRing / 2: the update is due.
  EXPECT_TRUE(d.CommitRecv(1));
  const wire::CdcMessage m = d.BuildCdc({});
  EXPECT_EQ(m.consumer, (wire::Cursor{0, 2501}));
  EXPECT_EQ(d.UnconfirmedConsumed(), 0u);
  EXPECT_FALSE(d.CommitRecv(100));  // small again
}

TEST_P(DataPath, WriteBlockedPeerGetsAnUpdateAboveTheLimit) {
  engine::DataPath d = Make();
  wire::CdcMessage m = Producer(0, 4000);
  m.prod_flags.write_blocked = true;
  ASSERT_EQ(d.OnPeerCdc(m).violation, CdcViolation::kNone);
  EXPECT_FALSE(d.CommitRecv(2000));
  EXPECT_TRUE(d.CommitRecv(400));
}

TEST_P(DataPath, ConsumerUpdateRequestIsAnswered) {
  engine::DataPath d = Make();
  ASSERT_EQ(d.OnPeerCdc(Producer(0, 100)).violation, CdcViolation::kNone);
  EXPECT_FALSE(d.CommitRecv(10));
  wire::CdcMessage m = Producer(0, 100);
  m.prod_flags.cons_curs_upd_req = true;
  EXPECT_TRUE(d.OnPeerCdc(m).send_consumer_update);
}

TEST_P(DataPath, UrgentByteIsOutOfBandWithAMark) {
  engine::DataPath d = Make();
  wire::CdcMessage m = Producer(0, 5);
  m.prod_flags.urg_data_present = true;
  const PeerCdcResult r = d.OnPeerCdc(m);
  ASSERT_TRUE(r.urgent_arrived);
  EXPECT_EQ(r.urgent_offset, Off() + 4);
  d.SetUrgentByte(std::byte{'!'});
  EXPECT_EQ(d.Readable(), 4u);
  EXPECT_EQ(d.PlanRecv(100).total, 4u);
  EXPECT_FALSE(d.AtUrgentMark());
  EXPECT_TRUE(d.CommitRecv(4));  // passing the byte forces an update
  EXPECT_TRUE(d.AtUrgentMark());
  EXPECT_EQ(d.rx_consumer(), (wire::Cursor{0, 5}));
  std::byte b{0};
  EXPECT_EQ(d.ReadUrgent(false, &b), 0);
  EXPECT_EQ(b, std::byte{'!'});
  EXPECT_EQ(d.ReadUrgent(false, &b), EINVAL);
  // The same area seen again is the same mark, not a new urgent byte.
  EXPECT_FALSE(d.OnPeerCdc(m).urgent_arrived);
}

TEST_P(DataPath, UrgentFlagWithoutDataIsAViolation) {
  engine::DataPath d = Make();
  wire::CdcMessage m;
  m.prod_flags.urg_data_present = true;
  EXPECT_EQ(d.OnPeerCdc(m).violation, CdcViolation::kBadUrgent);
}

TEST_P(DataPath, UrgentPendingAloneMeansNotYet) {
  engine::DataPath d = Make();
  wire::CdcMessage m;
  m.prod_flags.urg_data_pending = true;
  ASSERT_EQ(d.OnPeerCdc(m).violation, CdcViolation::kNone);
  std::byte b{0};
  EXPECT_EQ(d.ReadUrgent(false, &b), EAGAIN);
  EXPECT_EQ(d.urgent_state(), UrgentState::kPending);
}

TEST_P(DataPath, SenderWaitsAfterUrgentUntilAllConsumed) {
  engine::DataPath d = Make();
  ASSERT_TRUE(d.CommitSend(3, false, /*urgent=*/true));
  EXPECT_TRUE(d.BuildCdc({}).prod_flags.urg_data_present);
  EXPECT_EQ(d.SendSpace(), 0u);
  wire::CdcMessage m;
  m.consumer = {0, 2};
  ASSERT_EQ(d.OnPeerCdc(m).violation, CdcViolation::kNone);
  EXPECT_EQ(d.SendSpace(), 0u);
  m.consumer = {0, 3};
  ASSERT_EQ(d.OnPeerCdc(m).violation, CdcViolation::kNone);
  EXPECT_EQ(d.SendSpace(), kRing);
  ASSERT_TRUE(d.CommitSend(1, false, false));
  EXPECT_FALSE(d.BuildCdc({}).prod_flags.urg_data_present);
}

INSTANTIATE_TEST_SUITE_P(
    Transports, DataPath,
    ::testing::Values(Technology::kSmcd, Technology::kSmcr),
    [](const auto& info) {
      return std::string(info.param == Technology::kSmcd ? "Smcd" : "Smcr");
    });

}  // namespace
}  // namespace usmc::engine
