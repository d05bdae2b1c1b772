// dev/verbs_test.cc: dev/verbs on a real RDMA device. RdmaContract
// (dev/rdma_contract_test.cc, the suite SimRdma passes too) runs on a QP
// pair in loopback on one device; the rest checks what only a device has
// (GID choice). Where no device exists (CI hosts, this project's dev
// machines) every test skips and says why; the lab (tests/lab/, scenario
// verbs) runs them on Soft-RoCE and fails if they skipped.
//
// USMC_VERBS_IPV4=a.b.c.d picks the device by the address its GID maps
// (default: the first IPv4-mapped RoCEv2 GID).
#include "dev/verbs.h"

#include <arpa/inet.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "dev/rdma_contract_test.h"
#include "gtest/gtest.h"

namespace usmc::dev::rdma {
namespace {

uint32_t WantedIpv4() {
  const char* s = std::getenv("USMC_VERBS_IPV4");
  in_addr a{};
  if (!s || ::inet_pton(AF_INET, s, &a) != 1) return 0;
  return ntohl(a.s_addr);
}

// Opens the device or says why not (the skip reason).
std::unique_ptr<Context> OpenOrWhy(std::string* why) {
  Result<std::unique_ptr<Context>> c = VerbsContext::Open(WantedIpv4());
  if (!c.ok()) {
    *why = "no usable RDMA device here: " + c.status().message();
    return nullptr;
  }
  return std::move(c).value();
}

// Both hosts on one device: rxe loops a QP pair back inside the device.
class VerbsLoopbackBed final : public RdmaTestBed {
 public:
  explicit VerbsLoopbackBed(std::unique_ptr<Context> c) : ctx_(std::move(c)) {}
  Context& host(int) override { return *ctx_; }
  bool Step() override {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return true;
  }
  // rxe answers within microseconds; 200 ms is far beyond anything the
  // tests wait for except the timeouts they Pass explicitly.
  void Settle() override {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  void Pass(int ms) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }
  bool ReportsSolicited() const override { return false; }
  bool DistinctKeys() const override { return false; }  // rxe: lkey == rkey

 private:
  std::unique_ptr<Context> ctx_;
};

INSTANTIATE_TEST_SUITE_P(
    Verbs, RdmaContract,
    ::testing::Values(RdmaBedFactory{
        "Loopback",
        [](std::string* why) -> std::unique_ptr<RdmaTestBed> {
          std::unique_ptr<Context> c = OpenOrWhy(why);
          if (!c) return nullptr;
          return std::make_unique<VerbsLoopbackBed>(std::move(c));
        }}),
    BedName);

TEST(VerbsTest, OpenPicksTheIpv4MappedRoceV2Gid) {
  std::string why;
  std::unique_ptr<Context> c = OpenOrWhy(&why);
  if (!c) GTEST_SKIP() << why;
  const DeviceAttr& a = c->attr();
  const uint32_t want = WantedIpv4();
  if (want != 0) {
    EXPECT_EQ(a.gid, GidFromIpv4(want)) << ToString(a.gid);
  } else {
    EXPECT_EQ(ToString(a.gid).rfind("::ffff:", 0), 0u) << ToString(a.gid);
  }
  EXPECT_FALSE(a.name.empty());
  EXPECT_NE(a.mac, (std::array<uint8_t, 6>{}));
  EXPECT_NE(MtuBytes(a.active_mtu), 0u);
  // SMC-R's inline SEND carries the 44-byte CDC (SMCR.md §1.5: >= 64).
  EXPECT_GE(a.max_inline, 64u);
  EXPECT_GE(a.max_qp_wr, 64u);
  EXPECT_GE(a.max_sge, 2u);
}

// An address no GID maps: kNotFound, not a wrong device.
TEST(VerbsTest, AnAddressWithoutAGidIsNotFound) {
  std::string why;
  if (!OpenOrWhy(&why)) GTEST_SKIP() << why;
  Result<std::unique_ptr<Context>> c = VerbsContext::Open(0xc0000201);
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);  // 192.0.2.1
}

// The kernel's QP shape (SMCR.md §1.5, usmc column): 64/64 WRs, two SGEs
// each way, inline >= 64; granted at least as asked.
TEST(VerbsTest, TheKernelsQpShapeIsGranted) {
  std::string why;
  std::unique_ptr<Context> c = OpenOrWhy(&why);
  if (!c) GTEST_SKIP() << why;
  {
    auto pd = Must(c->AllocPd());
    auto ch = Must(c->CreateCompChannel());
    auto cq = Must(c->CreateCq(256, ch.get()));
    auto qp = Must(pd->CreateRcQp(*cq, *cq,
                                  {.max_send_wr = 64,
                                   .max_recv_wr = 64,
                                   .max_send_sge = 2,
                                   .max_recv_sge = 2,
                                   .max_inline_data = 64}));
    const QpCaps got = qp->caps();
    EXPECT_GE(got.max_send_wr, 64u);
    EXPECT_GE(got.max_recv_wr, 64u);
    EXPECT_GE(got.max_send_sge, 2u);
    EXPECT_GE(got.max_recv_sge, 2u);
    EXPECT_GE(got.max_inline_data, 64u);
  }
}

}  // namespace
}  // namespace usmc::dev::rdma
