// dev/sim.h: an in-process, deterministic device for engine tests.
//
// SimDevice holds DMBs in memory (register/attach/unregister by 64-bit
// token, like an emulated ISM device), a TCP byte pipe per direction, and an
// injected clock. It knows nothing about the engine; dev/sim_pair.h drives
// two engines over it. Fault knobs: registration failure, one-byte trickle,
// a silent direction (CLC never delivered).
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
#include <optional>
#include <span>
#include <vector>

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

 private:
  uint64_t rng_;
  std::map<uint64_t, std::vector<std::byte>> dmbs_;
  bool fail_register_ = false;
  SimPipe pipes_[2];
  std::chrono::nanoseconds now_{std::chrono::seconds(1000)};
};

}  // namespace usmc::dev

#endif  // USMC_DEV_SIM_H_
