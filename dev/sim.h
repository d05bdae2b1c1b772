// dev/sim.h: an in-process, deterministic device for engine tests.
//
// SimDevice holds DMBs in memory (register/attach/unregister by 64-bit
// token, like an emulated ISM device), a TCP byte pipe per direction, and an
// injected clock. Each side of the connection sees it through a SimEndpoint,
// which implements dev/device.h as the kernel's loopback ISM device
// implements the hardware ops. It knows nothing about the engine;
// runtime/sim_pair.h drives two engines over it through the runtime's
// executor. Fault knobs: registration failure, one-byte trickle, a silent
// direction (CLC never delivered).
//
//   SimDevice dev(/*seed=*/1);
//   uint64_t tok = *dev.RegisterDmb(65536);
//   std::span<std::byte> dmb = dev.Dmb(tok);   // CDC area at 0, ring at 32
//   dev.pipe(0).Write(bytes);                  // side 0 -> side 1
#ifndef USMC_DEV_SIM_H_
#define USMC_DEV_SIM_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "dev/device.h"

namespace usmc::dev {

// One direction of a TCP connection: an ordered byte queue.
class SimPipe {
 public:
  void Write(std::span<const std::byte> bytes);
  // Takes up to `max` bytes from the head.
  std::vector<std::byte> Read(size_t max);
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  // The writer closed (FIN) or reset (RST) its end.
  void Close() { closed_ = true; }
  bool closed() const { return closed_; }
  // Silent: written bytes vanish (a peer that never answers).
  void set_silent(bool v) { silent_ = v; }
  // Held: written bytes queue up but the reader sees none until released
  // (a slow network or a slow peer; the clock moves meanwhile).
  void set_held(bool v) { held_ = v; }
  bool readable() const { return !held_ && !bytes_.empty(); }

 private:
  std::deque<std::byte> bytes_;
  bool closed_ = false;
  bool silent_ = false;
  bool held_ = false;
};

class SimEndpoint;

class SimDevice {
 public:
  explicit SimDevice(uint64_t seed) : rng_(seed) {}

  // Registers a zeroed DMB; nullopt when registration is set to fail.
  std::optional<uint64_t> RegisterDmb(uint32_t size);
  void UnregisterDmb(uint64_t token);
  bool Exists(uint64_t token) const { return dmbs_.count(token) != 0; }
  // The DMB's memory (empty span for an unknown token).
  std::span<std::byte> Dmb(uint64_t token);
  size_t dmb_count() const { return dmbs_.size(); }

  // Knob: the next registrations fail.
  void set_fail_register(bool v) { fail_register_ = v; }

  SimPipe& pipe(int from_side) { return pipes_[from_side]; }

  // The injected clock.
  std::chrono::nanoseconds now() const { return now_; }
  void Advance(std::chrono::nanoseconds d) { now_ += d; }
  void SetNow(std::chrono::nanoseconds t) { now_ = t; }

  uint64_t Random64();

  // Side s's view (0 or 1): its own buffer, the peer's, the CDC slots.
  SimEndpoint& endpoint(int s);
  // A CDC was posted into side s's buffer since the last take.
  bool TakeCdcPosted(int s) {
    const bool v = cdc_posted_[s];
    cdc_posted_[s] = false;
    return v;
  }
  void MarkCdcPosted(int s) { cdc_posted_[s] = true; }

 private:
  uint64_t rng_;
  std::map<uint64_t, std::vector<std::byte>> dmbs_;
  bool fail_register_ = false;
  SimPipe pipes_[2];
  std::chrono::nanoseconds now_{std::chrono::seconds(1000)};
  bool cdc_posted_[2] = {false, false};
  std::unique_ptr<SimEndpoint> endpoints_[2];
};

// One side's Device over a SimDevice: single-threaded, so waits never
// sleep (a wait that is not ready at once times out).
class SimEndpoint final : public Device {
 public:
  SimEndpoint(SimDevice& d, int side) : d_(d), side_(side) {}

  uint64_t own_token() const { return own_.token; }
  uint64_t peer_token() const { return peer_.token; }
  uint64_t signals() const { return signals_; }

  Result<BufferInfo> RegisterBuffer(const RegisterRequest& r) override;
  bool registered() const override { return own_.token != 0; }
  BufferInfo own() const override { return own_; }
  void UnregisterBuffer() override;
  Status ReadOwn(uint64_t offset, std::span<std::byte> out) const override;
  Result<BufferInfo> AttachPeerBuffer(const AttachRequest& r) override;
  bool attached() const override { return peer_.token != 0; }
  BufferInfo peer() const override { return peer_; }
  void DetachPeerBuffer() override { peer_ = {}; }
  Status MoveData(uint64_t offset, std::span<const std::byte> data) override;
  int AttachFd() const override { return -1; }
  void EndHandshake() override {}
  void PostCdc(std::span<const std::byte> cdc) override;
  CdcBytes LoadCdc() const override;
  bool LoadForeignPost(CdcBytes&) override { return false; }
  void Signal() override { ++signals_; }
  WaitResult Wait(ReadyFn ready, std::chrono::nanoseconds,
                  const WaitOptions&) override {
    return ready() ? WaitResult::kReady : WaitResult::kTimedOut;
  }
  bool Arm(ReadyFn ready, uint64_t) override { return !ready(); }
  void Disarm() override {}
  int WaitFd() const override { return -1; }
  bool Drain(bool, bool) override { return true; }
  uint64_t PeerPostedNs() const override { return 0; }
  DoorbellStats wait_stats() const override { return {}; }
  DoorbellStats signal_stats() const override { return {}; }
  uint32_t* Shared(SharedWord) override { return nullptr; }
  Status ExportFds(std::array<int, 4>&) const override {
    return Status(StatusCode::kFailedPrecondition, "the sim cannot move");
  }

 private:
  SimDevice& d_;
  const int side_;
  BufferInfo own_;
  BufferInfo peer_;
  uint64_t signals_ = 0;
};

}  // namespace usmc::dev

#endif  // USMC_DEV_SIM_H_
