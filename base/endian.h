// base/endian.h: explicit big-endian loads and stores on byte spans.
//
// SMC wire formats are big-endian except where PROTOCOL.md says otherwise
// (LLC v2 length_v2, SMC-D CDC area). Never overlay structs on wire bytes:
// these helpers are alignment-safe and make every byte order visible.
//
//   uint32_t qpn = usmc::LoadBe24(p + 38);
//   usmc::StoreBe32(out + 16, reason);
#ifndef USMC_BASE_ENDIAN_H_
#define USMC_BASE_ENDIAN_H_

#include <cstddef>
#include <cstdint>

namespace usmc {

inline uint8_t Load8(const std::byte* p) { return static_cast<uint8_t>(p[0]); }

inline uint16_t LoadBe16(const std::byte* p) {
  return static_cast<uint16_t>((Load8(p) << 8) | Load8(p + 1));
}

inline uint32_t LoadBe24(const std::byte* p) {
  return (uint32_t{Load8(p)} << 16) | (uint32_t{Load8(p + 1)} << 8) |
         Load8(p + 2);
}

inline uint32_t LoadBe32(const std::byte* p) {
  return (uint32_t{LoadBe16(p)} << 16) | LoadBe16(p + 2);
}

inline uint64_t LoadBe64(const std::byte* p) {
  return (uint64_t{LoadBe32(p)} << 32) | LoadBe32(p + 4);
}

inline uint16_t LoadLe16(const std::byte* p) {
  return static_cast<uint16_t>(Load8(p) | (Load8(p + 1) << 8));
}

inline uint32_t LoadLe32(const std::byte* p) {
  return uint32_t{LoadLe16(p)} | (uint32_t{LoadLe16(p + 2)} << 16);
}

inline void Store8(std::byte* p, uint8_t v) { p[0] = std::byte{v}; }

inline void StoreBe16(std::byte* p, uint16_t v) {
  Store8(p, static_cast<uint8_t>(v >> 8));
  Store8(p + 1, static_cast<uint8_t>(v));
}

// Stores the low 24 bits of v (QP numbers, PSNs).
inline void StoreBe24(std::byte* p, uint32_t v) {
  Store8(p, static_cast<uint8_t>(v >> 16));
  StoreBe16(p + 1, static_cast<uint16_t>(v));
}

inline void StoreBe32(std::byte* p, uint32_t v) {
  StoreBe16(p, static_cast<uint16_t>(v >> 16));
  StoreBe16(p + 2, static_cast<uint16_t>(v));
}

inline void StoreBe64(std::byte* p, uint64_t v) {
  StoreBe32(p, static_cast<uint32_t>(v >> 32));
  StoreBe32(p + 4, static_cast<uint32_t>(v));
}

inline void StoreLe16(std::byte* p, uint16_t v) {
  Store8(p, static_cast<uint8_t>(v));
  Store8(p + 1, static_cast<uint8_t>(v >> 8));
}

inline void StoreLe32(std::byte* p, uint32_t v) {
  StoreLe16(p, static_cast<uint16_t>(v));
  StoreLe16(p + 2, static_cast<uint16_t>(v >> 16));
}

}  // namespace usmc

#endif  // USMC_BASE_ENDIAN_H_
