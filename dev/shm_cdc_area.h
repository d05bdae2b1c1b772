// dev/shm_cdc_area.h: moving the 32-byte SMC-D CDC area through shared
// memory without torn reads.
//
// The area (PROTOCOL.md §5.2) is four 8-byte words: [0] type + reserved,
// [1] producer cursor, [2] consumer cursor + producer flags + connection
// state flags, [3] reserved. Each word is stored and loaded as one 64-bit
// atomic, the way Linux's smcd_curs_copy does, so a reader never sees half
// a cursor. Order: the writer stores word 1 then word 2 with release; the
// reader loads word 2 then word 1 with acquire. So a reader that sees a flag
// (done writing, closed) also sees every byte produced before it: "data
// after close" can never be a tearing artefact.
//
//   StoreCdcArea(peer_dmb.data(), action.area);     // after the data memcpy
//   std::array<std::byte, 32> a = LoadCdcArea(own_dmb.data());
#ifndef USMC_DEV_SHM_CDC_AREA_H_
#define USMC_DEV_SHM_CDC_AREA_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace usmc::dev {

inline constexpr size_t kCdcAreaLen = 32;
using CdcArea = std::array<std::byte, kCdcAreaLen>;

// `dmb` must be 8-byte aligned (a DMB mapping starts on a page).
inline void StoreCdcArea(std::byte* dmb, const CdcArea& area) {
  uint64_t w[4];
  std::memcpy(w, area.data(), sizeof w);
  auto* words = reinterpret_cast<uint64_t*>(dmb);
  std::atomic_ref<uint64_t>(words[0]).store(w[0], std::memory_order_relaxed);
  std::atomic_ref<uint64_t>(words[3]).store(w[3], std::memory_order_relaxed);
  std::atomic_ref<uint64_t>(words[1]).store(w[1], std::memory_order_release);
  std::atomic_ref<uint64_t>(words[2]).store(w[2], std::memory_order_release);
}

inline CdcArea LoadCdcArea(const std::byte* dmb) {
  auto* words = reinterpret_cast<uint64_t*>(const_cast<std::byte*>(dmb));
  uint64_t w[4];
  w[2] = std::atomic_ref<uint64_t>(words[2]).load(std::memory_order_acquire);
  w[1] = std::atomic_ref<uint64_t>(words[1]).load(std::memory_order_acquire);
  w[0] = std::atomic_ref<uint64_t>(words[0]).load(std::memory_order_relaxed);
  w[3] = std::atomic_ref<uint64_t>(words[3]).load(std::memory_order_relaxed);
  CdcArea area;
  std::memcpy(area.data(), w, sizeof w);
  return area;
}

}  // namespace usmc::dev

#endif  // USMC_DEV_SHM_CDC_AREA_H_
