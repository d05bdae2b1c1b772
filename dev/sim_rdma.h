// dev/sim_rdma.h: SimRdma, an RDMA fabric in one process behind dev/rdma.h,
// for tests: two or more simulated hosts (devices) whose RC queue pairs
// talk the way real RC does, deterministically, on an injected clock.
//
// What it models (../docs/dev-rdma.md has the list and what it leaves out):
// RC order per QP (a WRITE lands in the peer's MR before a later SEND is
// seen), remote checks (rkey, PD, IOVA range, REMOTE_WRITE on MR and QP)
// failing with a remote access error at the writer and both QPs in error,
// flushes, receive-queue depth with RNR NAKs retried on the RNR timer (7 =
// forever), PSN checks, ACK timeouts with retry_cnt, one direction between
// two devices held or dropped, a QP or a whole device that dies.
//
// Nothing runs by itself: Step() does one thing (delivers one packet, sends
// one WR, fires one due timer), RunUntilIdle() steps until nothing is left
// at this instant, RunFor(d) also moves the clock from timer to timer.
// Single-threaded; the fabric outlives every object it handed out.
//
//   SimClock clock;
//   SimRdma fabric(clock);
//   Context& a = fabric.AddDevice({.name = "a", .ipv4 = 0x0a000001});
//   Context& b = fabric.AddDevice({.name = "b", .ipv4 = 0x0a000002});
//   ... PDs, CQs, MRs, QPs as in dev/rdma.h; connect the QPs ...
//   qp_a->PostSend(wrs);
//   fabric.RunUntilIdle();                  // delivered and acknowledged
//   fabric.SetLink(a, b, LinkMode::kDrop);
//   qp_a->PostSend(more);
//   fabric.RunFor(std::chrono::seconds(2));  // -> kRetryExcErr at a
#ifndef USMC_DEV_SIM_RDMA_H_
#define USMC_DEV_SIM_RDMA_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dev/rdma.h"

namespace usmc::dev::rdma {

// Simulated time, moved only by the test (or SimRdma::RunFor).
class SimClock {
 public:
  std::chrono::nanoseconds now() const { return now_; }
  void Advance(std::chrono::nanoseconds d) { now_ += d; }
  // Never backwards.
  void Set(std::chrono::nanoseconds t) {
    if (t > now_) now_ = t;
  }

 private:
  std::chrono::nanoseconds now_{std::chrono::seconds(1000)};
};

struct SimDeviceConfig {
  std::string name;
  uint32_t ipv4 = 0;                      // host order; the GID is ::ffff:ipv4
  std::optional<Gid> gid = std::nullopt;  // instead: this GID (IPv6...)
  uint8_t gid_index = 1;
  Mtu active_mtu = Mtu::k1024;
  uint32_t max_inline = 512;  // rxe's limit
  uint32_t max_qp_wr = 1024;
  uint32_t max_sge = 4;
  uint32_t max_cqe = 4096;
};

// One direction between two devices (requests and ACKs alike).
enum class LinkMode {
  kPass,  // delivered in order
  kHold,  // queued, delivered once the mode changes (a slow path)
  kDrop,  // packets sent while dropping vanish (a dead path)
};

struct SimRdmaStats {
  uint64_t requests_sent = 0;  // request packets put on a link
  uint64_t retransmits = 0;    // of those, repeats after a timeout or NAK
  uint64_t dropped = 0;        // vanished: dropping link, no such device
  uint64_t delivered = 0;      // taken off a link
  uint64_t discarded = 0;      // delivered to no QP or a QP not receiving
  uint64_t acks = 0;
  uint64_t rnr_naks = 0;
  uint64_t seq_naks = 0;
  uint64_t access_naks = 0;  // remote access / invalid request / op errors
  uint64_t ack_timeouts = 0;
};

// A registered memory region as the fabric sees it (for tests that check
// what a device exposes).
struct SimMrInfo {
  uint64_t addr = 0;  // the process address behind it
  uint64_t iova = 0;
  uint64_t length = 0;
  uint32_t access = 0;
  uint32_t lkey = 0;
  uint32_t rkey = 0;
};

class SimRdma {
 public:
  explicit SimRdma(SimClock& clock, uint64_t seed = 1);
  ~SimRdma();
  SimRdma(const SimRdma&) = delete;
  SimRdma& operator=(const SimRdma&) = delete;

  // A host with one RDMA device, owned by the fabric.
  Context& AddDevice(const SimDeviceConfig& config);

  // The path from one device to another (may be the same: loopback).
  void SetLink(const Context& from, const Context& to, LinkMode mode);
  // Packets queued on that path.
  size_t InFlight(const Context& from, const Context& to) const;

  // One unit of work; false when there is none at this instant.
  bool Step();
  // Steps until Step() returns false; returns the number of steps.
  size_t RunUntilIdle();
  // Runs, moving the clock to each due timer in turn, until `d` has passed
  // on the clock; ends idle.
  void RunFor(std::chrono::nanoseconds d);
  // The earliest pending timer (ACK timeout, RNR wait), if any.
  std::optional<std::chrono::nanoseconds> NextDeadline() const;

  // The QP dies as if its owner crashed: it errors (its WRs flush), never
  // sends or answers again, and cannot be modified back. Its peer learns
  // only by sending: ACK timeouts, then kRetryExcErr.
  void Kill(Qp& qp);
  // Every QP of the device dies; nothing reaches it or leaves it again.
  void KillDevice(Context& ctx);

  // The MRs registered on a device now, in rkey order.
  std::vector<SimMrInfo> RegisteredMrs(const Context& ctx) const;

  // Uses of the API that verbs refuses or punishes later (destroying a PD
  // with live MRs/QPs, a CQ with QPs or unacked events, ...): tests expect
  // this to stay empty.
  const std::vector<std::string>& misuse() const;
  const SimRdmaStats& stats() const;

  struct Fabric;  // the state behind the objects (sim_rdma.cc)

 private:
  std::unique_ptr<Fabric> f_;
};

}  // namespace usmc::dev::rdma

#endif  // USMC_DEV_SIM_RDMA_H_
