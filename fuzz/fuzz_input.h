// fuzz/fuzz_input.h: what the hand-written fuzz targets share: a check that
// names the broken invariant before aborting, and a cursor that reads the
// fuzzer's bytes as numbers and byte runs (zeros once they run out).
#ifndef USMC_FUZZ_FUZZ_INPUT_H_
#define USMC_FUZZ_FUZZ_INPUT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#define FUZZ_CHECK(cond)                                              \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                   \
    }                                                                 \
  } while (0)

namespace usmc::fuzz {

class Input {
 public:
  Input(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  bool empty() const { return i_ >= n_; }
  uint8_t U8() { return i_ < n_ ? d_[i_++] : 0; }
  // Big-endian, one statement per read: the order the bytes are taken in
  // must not be left to the compiler.
  uint16_t U16() {
    const uint16_t hi = U8();
    return static_cast<uint16_t>(hi << 8 | U8());
  }
  uint32_t U32() {
    const uint32_t hi = U16();
    return hi << 16 | U16();
  }
  uint64_t U64() {
    const uint64_t hi = U32();
    return hi << 32 | U32();
  }
  // Up to `len` bytes (fewer at the end of the input).
  std::span<const std::byte> Take(size_t len) {
    len = std::min(len, n_ - std::min(i_, n_));
    auto s = std::span(reinterpret_cast<const std::byte*>(d_ + i_), len);
    i_ += len;
    return s;
  }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t i_ = 0;
};

}  // namespace usmc::fuzz

#endif  // USMC_FUZZ_FUZZ_INPUT_H_
