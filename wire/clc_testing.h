// wire/clc_testing.h: helpers for the CLC tests (test-only, not in the
// library): a field-by-field byte builder for hand-assembled messages,
// encode-to-vector, and gtest printers that show DescribeClc text.
//
//   Bytes want = ByteBuilder().Eye("SMCR").U8(4).U16(28).U8(0x10)...Take();
//   EXPECT_EQ(EncodeToBytes(msg), want);
#ifndef USMC_WIRE_CLC_TESTING_H_
#define USMC_WIRE_CLC_TESTING_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "wire/clc.h"

namespace usmc::wire {

using Bytes = std::vector<std::byte>;

// Appends big-endian fields in wire order. Independent of the codec.
class ByteBuilder {
 public:
  ByteBuilder& U8(uint64_t v) {
    b_.push_back(static_cast<std::byte>(v & 0xff));
    return *this;
  }
  ByteBuilder& Be(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) U8(v >> (8 * i));
    return *this;
  }
  ByteBuilder& U16(uint64_t v) { return Be(v, 2); }
  ByteBuilder& U24(uint64_t v) { return Be(v, 3); }
  ByteBuilder& U32(uint64_t v) { return Be(v, 4); }
  ByteBuilder& U64(uint64_t v) { return Be(v, 8); }
  ByteBuilder& Raw(std::initializer_list<int> v) {
    for (int x : v) U8(static_cast<uint64_t>(x));
    return *this;
  }
  ByteBuilder& Zeros(size_t n) {
    b_.insert(b_.end(), n, std::byte{0});
    return *this;
  }
  // "SMCR" / "SMCD" in EBCDIC.
  ByteBuilder& Eye(std::string_view which) {
    return Raw({0xE2, 0xD4, 0xC3, which == "SMCD" ? 0xC4 : 0xD9});
  }
  // ASCII text, blank padded to n bytes.
  ByteBuilder& Text(std::string_view s, size_t n) {
    for (size_t i = 0; i < n; ++i) U8(i < s.size() ? s[i] : ' ');
    return *this;
  }
  // An IPv4-mapped 16-byte GID ::ffff:a.b.c.d.
  ByteBuilder& MappedGid(int a, int b, int c, int d) {
    Zeros(10);
    return Raw({0xff, 0xff, a, b, c, d});
  }
  size_t size() const { return b_.size(); }
  Bytes Take() { return std::move(b_); }

 private:
  Bytes b_;
};

inline ClcGid MappedGid(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return ClcGid{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d};
}

inline Bytes EncodeToBytes(const ClcMessage& m) {
  Bytes out(kClcMaxMessageLen);
  WireResult<size_t> n = EncodeClc(m, out);
  if (!n) return {};
  out.resize(*n);
  return out;
}

inline Bytes HexToBytes(std::string_view hex) {
  Bytes b;
  auto nib = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    b.push_back(static_cast<std::byte>(nib(hex[i]) << 4 | nib(hex[i + 1])));
  }
  return b;
}

// Reads a fixture relative to the repo root (USMC_SOURCE_DIR).
inline Bytes ReadFixture(const std::string& rel) {
  const char* root = std::getenv("USMC_SOURCE_DIR");
  std::string path = std::string(root ? root : ".") + "/" + rel;
  std::ifstream f(path, std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(f)),
                        std::istreambuf_iterator<char>());
  Bytes b(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) b[i] = std::byte(raw[i]);
  return b;
}

inline void PrintTo(const ClcProposal& m, std::ostream* os) {
  *os << "\n" << DescribeClc(m);
}
inline void PrintTo(const ClcSmcrAccept& m, std::ostream* os) {
  *os << "\n" << DescribeClc(m);
}
inline void PrintTo(const ClcSmcdAccept& m, std::ostream* os) {
  *os << "\n" << DescribeClc(m);
}
inline void PrintTo(const ClcDecline& m, std::ostream* os) {
  *os << "\n" << DescribeClc(m);
}

}  // namespace usmc::wire

#endif  // USMC_WIRE_CLC_TESTING_H_
