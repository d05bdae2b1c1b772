// dev/rdma_contract_test.h: the rules of dev/rdma.h every implementation
// keeps (../docs/dev-rdma.md), as one value-parameterised suite,
// RdmaContract, run by dev/sim_rdma_test.cc over SimRdma and by
// dev/verbs_test.cc over a real device (rxe in the lab, tests/lab/).
// A test bed gives two hosts' contexts and a way to let time pass: the sim
// steps its fabric, a real device is waited for, bounded.
#ifndef USMC_DEV_RDMA_CONTRACT_TEST_H_
#define USMC_DEV_RDMA_CONTRACT_TEST_H_

#include <poll.h>

#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "dev/rdma.h"
#include "gtest/gtest.h"

namespace usmc::dev::rdma {

class SimRdma;

inline constexpr uint32_t kRmbSize = 65536;
inline constexpr uint32_t kSlot = 48;  // one receive slot: SMC-Rv2's 44 B + pad
inline constexpr uint32_t kSlots = 16;

std::vector<std::byte> Pattern(size_t n, uint8_t seed);
inline uint64_t Addr(const void* p) { return reinterpret_cast<uint64_t>(p); }

// The value of a call that must succeed (objects are move-only).
template <typename T>
T Must(Result<T> r) {
  if (!r.ok()) ADD_FAILURE() << r.status();
  return std::move(r).value();
}

// Page-aligned storage: verbs (ib_uverbs) refuses an MR whose IOVA and
// address differ in their offset within a page, so an RMB registered at a
// page-aligned IOVA must itself be page-aligned (as usmc's mmap'ed RMBs
// are).
template <typename T>
struct PageAlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kPage{4096};
  PageAlignedAllocator() = default;
  template <typename U>
  PageAlignedAllocator(const PageAlignedAllocator<U>&) {}  // NOLINT
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), kPage));
  }
  void deallocate(T* p, size_t) { ::operator delete(p, kPage); }
  bool operator==(const PageAlignedAllocator&) const { return true; }
};
using PageBuffer = std::vector<std::byte, PageAlignedAllocator<std::byte>>;

// One host, set up as usmc's SMC-R link would be: an RMB the peer writes
// (LOCAL_WRITE|REMOTE_WRITE at a chosen IOVA), a local-only send buffer, a
// receive ring of 48-byte slots. Members are declared in the order verbs
// creates them, so they are destroyed in the order it requires (QP, MRs,
// CQs, channel, PD).
struct RdmaHost {
  RdmaHost(Context& c, uint64_t rmb_iova, uint8_t seed, QpCaps caps = {});

  // A receive WR for slot i.
  RecvWr Slot(uint32_t i) const;
  void PostSlots(uint32_t n);

  Context* ctx = nullptr;
  std::unique_ptr<Pd> pd;
  std::unique_ptr<CompChannel> ch;
  std::unique_ptr<Cq> scq;
  std::unique_ptr<Cq> rcq;
  PageBuffer rmb;
  std::vector<std::byte> sndbuf;
  std::vector<std::byte> rx;
  std::unique_ptr<Mr> rmb_mr;
  std::unique_ptr<Mr> snd_mr;
  std::unique_ptr<Mr> rx_mr;
  std::unique_ptr<Qp> qp;
};

RtrAttr RtrTo(const RdmaHost& self, const RdmaHost& peer, uint32_t peer_psn);
// RESET -> INIT -> RTR -> RTS with the kernel's attributes (SMCR.md §1.5).
void Connect(RdmaHost& h, const RdmaHost& peer, uint32_t own_psn,
             uint32_t peer_psn, RtsAttr rts = {});
// Everything the CQ holds now.
std::vector<WorkCompletion> Drain(Cq& cq);
std::vector<WcStatus> Statuses(const std::vector<WorkCompletion>& wcs);
bool Readable(int fd);
SendWr Write(const RdmaHost& from, uint32_t src_off, uint32_t len,
             const RdmaHost& to, uint64_t dst_iova, uint32_t flags = 0,
             uint64_t wr_id = 1);
SendWr InlineSend(const void* data, uint32_t len, uint64_t wr_id,
                  uint32_t extra_flags = kSendSolicited);

class RdmaTestBed {
 public:
  virtual ~RdmaTestBed() = default;
  // Host i's device (i = 0, 1). One real device may serve both: a QP pair
  // in loopback.
  virtual Context& host(int i) = 0;
  // Moves things along a little: the sim does one step (false when idle),
  // a device is given a millisecond (always true).
  virtual bool Step() = 0;
  // Lets everything in flight happen: the sim runs until idle, a device is
  // given a while (what has not happened then, in tests, will not).
  virtual void Settle() = 0;
  // Lets `ms` milliseconds pass (simulated or real).
  virtual void Pass(int ms) = 0;
  // The fabric when it is the sim (its counters and misuse list), else
  // nullptr.
  virtual SimRdma* sim() { return nullptr; }
  // Whether completions say `solicited` (verbs does not report it).
  virtual bool ReportsSolicited() const = 0;
  // Whether lkey and rkey of one MR differ (rxe uses one value).
  virtual bool DistinctKeys() const = 0;
};

struct RdmaBedFactory {
  const char* name;
  // A bed, or nullptr with `why` set: the test is skipped, saying why.
  std::unique_ptr<RdmaTestBed> (*make)(std::string* why);
};

// The suite; dev/rdma_contract_test.cc has its tests, each implementation's
// test file instantiates it with its bed.
class RdmaContract : public ::testing::TestWithParam<RdmaBedFactory> {
 public:
  static constexpr uint64_t kIovaA = 0x7a3f'1200'0000ull;
  static constexpr uint64_t kIovaB = 0x51c0'0840'0000ull;
  static constexpr uint32_t kPsnA = 0x123456;
  static constexpr uint32_t kPsnB = 0xfffffe;  // wraps after two packets

 protected:
  void SetUp() override {
    std::string why;
    bed_ = GetParam().make(&why);
    if (!bed_) GTEST_SKIP() << why;
    a_.emplace(bed_->host(0), kIovaA, 1);
    b_.emplace(bed_->host(1), kIovaB, 2);
  }
  void TearDown() override;  // the sim must have seen no misuse

  void ConnectBoth(RtsAttr rts_a = {}, RtsAttr rts_b = {}) {
    Connect(*a_, *b_, kPsnA, kPsnB, rts_a);
    Connect(*b_, *a_, kPsnB, kPsnA, rts_b);
  }

  // At least n completions of `cq` (fewer only if they never come: the
  // sim went idle, or about 10 s passed on a device), then whatever else
  // arrives once things settle.
  std::vector<WorkCompletion> Await(Cq& cq, size_t n) {
    std::vector<WorkCompletion> all = Drain(cq);
    for (int i = 0; i < 10000 && all.size() < n; ++i) {
      const bool moved = bed_->Step();
      std::vector<WorkCompletion> more = Drain(cq);
      all.insert(all.end(), more.begin(), more.end());
      if (!moved) break;
    }
    bed_->Settle();
    std::vector<WorkCompletion> more = Drain(cq);
    all.insert(all.end(), more.begin(), more.end());
    return all;
  }

  std::unique_ptr<RdmaTestBed> bed_;
  std::optional<RdmaHost> a_;
  std::optional<RdmaHost> b_;
};

// gtest prints a parameter by its name, not its bytes.
inline void PrintTo(const RdmaBedFactory& f, std::ostream* os) {
  *os << f.name;
}

// For INSTANTIATE_TEST_SUITE_P's name generator.
std::string BedName(const ::testing::TestParamInfo<RdmaBedFactory>& info);

}  // namespace usmc::dev::rdma

#endif  // USMC_DEV_RDMA_CONTRACT_TEST_H_
