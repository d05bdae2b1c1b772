// Connection: routing by mode and the connection-level InvalidEvent path,
// driven by hand (the full client/server runs are in dev/sim_test.cc).
#include "engine/connection.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "engine/test_util.h"
#include "wire/reason.h"

namespace usmc::engine {
namespace {

using namespace testing;  // NOLINT

constexpr TimePoint kNow{std::chrono::seconds(1)};

TEST(Connection, StartsInHandshakeAndReportsDeadline) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  EXPECT_EQ(c.mode(), Mode::kHandshake);
  EXPECT_EQ(c.handshake_state(), "INIT");
  EXPECT_FALSE(c.NextDeadline().has_value());
  Actions out = c.OnEvent(Start{}, kNow);
  ExpectActions<SendTcp, ArmTimer>(out);
  EXPECT_EQ(c.NextDeadline(), kNow + kClcTimeout);
  EXPECT_EQ(c.SendError(), ENOTCONN);
  EXPECT_EQ(c.PlanSend(10).total, 0u);
  EXPECT_EQ(c.RecvState().error, ENOTCONN);
}

TEST(Connection, AppDataDuringHandshakeIsInvalidAndFallsBack) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kClient), &e);
  (void)c.OnEvent(Start{}, kNow);
  Actions out = c.OnEvent(AppSent{.len = 5}, kNow);
  ASSERT_GE(out.size(), 1u);
  EXPECT_EQ(Nth<ReportError>(out, 0).err, EINVAL);
  EXPECT_NE(Nth<ReportError>(out, 0).what.find("AppSent"), std::string::npos);
  const Fallback* f = FindAction<Fallback>(out);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->local_reason, wire::kReasonIntErr);
  EXPECT_EQ(c.mode(), Mode::kTcp);
  EXPECT_EQ(c.Stats().local_reason, wire::kReasonIntErr);
}

TEST(Connection, AfterFallbackOnlyReports) {
  SeededEntropy e(1);
  EngineParams p = TestParams(Role::kClient);
  p.smcd_enabled = false;
  Connection c(p, &e);
  (void)c.OnEvent(Start{}, kNow);
  ASSERT_EQ(c.mode(), Mode::kTcp);
  ExpectActions<>(c.OnEvent(Timeout{}, kNow));  // stale timer: harmless
  Actions out = c.OnEvent(AppClose{}, kNow);
  ExpectActions<ReportError>(out);
  EXPECT_EQ(c.mode(), Mode::kTcp);
}

TEST(Connection, AppCloseDuringHandshakeClosesTcp) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kServer), &e);
  (void)c.OnEvent(Start{}, kNow);
  Actions out = c.OnEvent(AppClose{}, kNow);
  ExpectActions<CancelTimer, CloseTcp>(out);
  EXPECT_EQ(c.mode(), Mode::kFailed);
}

TEST(Connection, StatsNameTheRole) {
  SeededEntropy e(1);
  Connection c(TestParams(Role::kServer), &e);
  const ConnectionStats s = c.Stats();
  EXPECT_EQ(s.role, Role::kServer);
  EXPECT_EQ(s.mode, Mode::kHandshake);
  EXPECT_EQ(s.handshake_state, "INIT");
  EXPECT_EQ(s.counters.bytes_sent, 0u);
}

}  // namespace
}  // namespace usmc::engine
