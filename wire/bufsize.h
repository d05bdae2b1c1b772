// wire/bufsize.h: the 4-bit compressed buffer size of CLC Accept/Confirm.
//
// size = 1 << (c + 14): 0 is 16 KiB, 1 is 32 KiB, ... Compression rounds up to
// a power of two (minimum 16 KiB) and caps at the technology's maximum
// (SMC-R 15, SMC-D 6 = 1 MiB), as Linux does (PROTOCOL.md §2.3).
//
//   uint8_t c = CompressBufSize(100 * 1024, kSmcdMaxCompressed);  // 3 (128
//   KiB)
#ifndef USMC_WIRE_BUFSIZE_H_
#define USMC_WIRE_BUFSIZE_H_

#include <cstddef>
#include <cstdint>

namespace usmc::wire {

inline constexpr size_t kMinBufSize = 16 * 1024;
inline constexpr uint8_t kSmcrMaxCompressed = 15;  // 512 MiB
inline constexpr uint8_t kSmcdMaxCompressed = 6;   // 1 MiB

constexpr size_t UncompressBufSize(uint8_t compressed) {
  return size_t{1} << ((compressed & 0x0f) + 14);
}

constexpr uint8_t CompressBufSize(size_t bytes, uint8_t max_compressed) {
  uint8_t c = 0;
  while (c < max_compressed && UncompressBufSize(c) < bytes) ++c;
  return c;
}

}  // namespace usmc::wire

#endif  // USMC_WIRE_BUFSIZE_H_
