#include "dev/sim.h"

#include <algorithm>

namespace usmc::dev {

void SimPipe::Write(std::span<const std::byte> bytes) {
  if (silent_ || closed_) return;
  bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
}

std::vector<std::byte> SimPipe::Read(size_t max) {
  const size_t n = std::min(max, bytes_.size());
  std::vector<std::byte> out(bytes_.begin(), bytes_.begin() + n);
  bytes_.erase(bytes_.begin(), bytes_.begin() + n);
  return out;
}

uint64_t SimDevice::Random64() {
  // splitmix64: deterministic tokens per seed.
  uint64_t z = (rng_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::optional<uint64_t> SimDevice::RegisterDmb(uint32_t size) {
  if (fail_register_) return std::nullopt;
  uint64_t token = 0;
  do {
    token = Random64();
  } while (token == 0 || dmbs_.count(token) != 0);
  dmbs_[token].assign(size, std::byte{0});
  return token;
}

void SimDevice::UnregisterDmb(uint64_t token) { dmbs_.erase(token); }

std::span<std::byte> SimDevice::Dmb(uint64_t token) {
  auto it = dmbs_.find(token);
  if (it == dmbs_.end()) return {};
  return it->second;
}

}  // namespace usmc::dev
