// fuzz/cdc_fuzz.cc: DecodeCdc and DecodeSmcdCdc on arbitrary bytes. When a
// decode succeeds, re-encoding must reproduce the input bytes except the
// reserved bytes and bits, which the encoder writes as zero (canonical form).
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "wire/cdc.h"

namespace {

using usmc::wire::CdcMessage;

// Zeroes reserved bits in a copy of the input so it can be compared with the
// canonical re-encoding.
template <size_t N>
std::array<std::byte, N> Canonical(const uint8_t* data,
                                   std::initializer_list<size_t> keep_bytes,
                                   size_t prod_flags, size_t conn_state) {
  std::array<std::byte, N> c{};
  for (size_t i : keep_bytes) c[i] = std::byte{data[i]};
  c[prod_flags] = std::byte{static_cast<uint8_t>(data[prod_flags] & 0xF8)};
  c[conn_state] = std::byte{static_cast<uint8_t>(data[conn_state] & 0xE0)};
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);

  if (auto r = usmc::wire::DecodeCdc(in); r.ok()) {
    std::array<std::byte, usmc::wire::kCdcMsgLen> out{};
    if (!usmc::wire::EncodeCdc(*r, out).ok()) std::abort();
    auto want = Canonical<usmc::wire::kCdcMsgLen>(
        data, {0,  1,  2,  3,  4,  5,  6,  7,  10, 11,
               12, 13, 14, 15, 18, 19, 20, 21, 22, 23},
        24, 25);
    if (out != want) std::abort();
    if (usmc::wire::DescribeCdc(*r).empty()) std::abort();
  }

  if (auto r = usmc::wire::DecodeSmcdCdc(in); r.ok()) {
    std::array<std::byte, usmc::wire::kSmcdCdcLen> out{};
    if (!usmc::wire::EncodeSmcdCdc(*r, out).ok()) std::abort();
    auto want = Canonical<usmc::wire::kSmcdCdcLen>(
        data, {0, 8, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20, 21}, 22, 23);
    if (out != want) std::abort();
    CdcMessage again = *usmc::wire::DecodeSmcdCdc(out);
    if (!(again == *r)) std::abort();
  }
  return 0;
}
