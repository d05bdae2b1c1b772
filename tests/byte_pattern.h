// tests/byte_pattern.h: the checked byte streams of the black-box probes
// (tests/preload_probe*.cc, tests/conformance/): byte i of stream `seed`
// is a fixed function of both, so a receiver checks every byte without the
// sender's copy.
#ifndef USMC_TESTS_BYTE_PATTERN_H_
#define USMC_TESTS_BYTE_PATTERN_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace usmc::test_pattern {

// Byte i of stream `seed`.
inline uint8_t Pat(uint64_t i, int seed) {
  uint64_t x = i * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(seed) * 977;
  return static_cast<uint8_t>((x >> 29) ^ (x >> 47));
}
// Bytes off..off+len-1 of stream `seed`.
inline std::vector<char> Pattern(uint64_t off, size_t len, int seed) {
  std::vector<char> v(len);
  for (size_t i = 0; i < len; ++i) v[i] = static_cast<char>(Pat(off + i, seed));
  return v;
}
// Index of the first byte of p that is not stream `seed` from off, or -1.
inline long Mismatch(const char* p, uint64_t off, size_t len, int seed) {
  for (size_t i = 0; i < len; ++i) {
    if (static_cast<uint8_t>(p[i]) != Pat(off + i, seed)) return long(i);
  }
  return -1;
}

}  // namespace usmc::test_pattern

#endif  // USMC_TESTS_BYTE_PATTERN_H_
