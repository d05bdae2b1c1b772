// wire/llc_test_util.h: helpers shared by the LLC and kernel-capture tests.
//
//   std::vector<std::byte> b = HexBytes("21 2c00 03 | 525400000001");
#ifndef USMC_WIRE_LLC_TEST_UTIL_H_
#define USMC_WIRE_LLC_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace usmc::wire::testing {

// Parses hex digits, ignoring spaces, newlines and '|' separators, so
// fixtures can be written field by field.
inline std::vector<std::byte> HexBytes(std::string_view text) {
  std::vector<std::byte> out;
  int hi = -1;
  for (char c : text) {
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else {
      continue;
    }
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(std::byte(static_cast<uint8_t>(hi << 4 | v)));
      hi = -1;
    }
  }
  return out;
}

inline std::string ToHex(const std::vector<std::byte>& b) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (std::byte x : b) {
    s += kDigits[static_cast<uint8_t>(x) >> 4];
    s += kDigits[static_cast<uint8_t>(x) & 0x0F];
  }
  return s;
}

}  // namespace usmc::wire::testing

#endif  // USMC_WIRE_LLC_TEST_UTIL_H_
