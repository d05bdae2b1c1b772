#include "dev/sim.h"

#include <algorithm>
#include <cstring>

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

SimEndpoint& SimDevice::endpoint(int s) {
  if (!endpoints_[s]) endpoints_[s] = std::make_unique<SimEndpoint>(*this, s);
  return *endpoints_[s];
}

Result<BufferInfo> SimEndpoint::RegisterBuffer(const RegisterRequest& r) {
  std::optional<uint64_t> tok = d_.RegisterDmb(r.size);
  if (!tok.has_value()) {
    return Status(StatusCode::kResourceExhausted, "sim: registration fails");
  }
  own_ = {*tok, r.size};
  return own_;
}

void SimEndpoint::UnregisterBuffer() {
  if (own_.token != 0) d_.UnregisterDmb(own_.token);
  own_ = {};
}

Status SimEndpoint::ReadOwn(uint64_t offset, std::span<std::byte> out) const {
  std::span<std::byte> b = d_.Dmb(own_.token);
  if (offset < 32 || offset > b.size() || out.size() > b.size() - offset) {
    return Status(StatusCode::kInvalidArgument, "sim: read outside the ring");
  }
  if (!out.empty()) std::memcpy(out.data(), b.data() + offset, out.size());
  return OkStatus();
}

Result<BufferInfo> SimEndpoint::AttachPeerBuffer(const AttachRequest& r) {
  if (!d_.Exists(r.token) || d_.Dmb(r.token).size() != r.size) {
    return Status(StatusCode::kNotFound, "sim: no such DMB");
  }
  peer_ = {r.token, r.size};
  return peer_;
}

Status SimEndpoint::MoveData(uint64_t offset, std::span<const std::byte> data) {
  std::span<std::byte> b = d_.Dmb(peer_.token);
  // The CDC area is the device's, never the data path's.
  if (offset < 32 || offset > b.size() || data.size() > b.size() - offset) {
    return Status(StatusCode::kInvalidArgument, "sim: write outside the ring");
  }
  if (!data.empty()) std::memcpy(b.data() + offset, data.data(), data.size());
  return OkStatus();
}

void SimEndpoint::PostCdc(std::span<const std::byte> cdc) {
  std::span<std::byte> b = d_.Dmb(peer_.token);
  if (peer_.token == 0 || b.size() < cdc.size()) return;
  std::memcpy(b.data(), cdc.data(), cdc.size());
  d_.MarkCdcPosted(1 - side_);
}

CdcBytes SimEndpoint::LoadCdc() const {
  CdcBytes c;
  std::span<std::byte> b = d_.Dmb(own_.token);
  if (b.size() < 32) return c;
  std::memcpy(c.data.data(), b.data(), 32);
  c.len = 32;
  return c;
}

}  // namespace usmc::dev
