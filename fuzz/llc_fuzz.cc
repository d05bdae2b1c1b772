// fuzz/llc_fuzz.cc: DecodeLlc on arbitrary bytes. When a decode succeeds:
//   1. EncodeLlc must succeed with LlcEncodedLength bytes;
//   2. decoding that encoding gives the same message (header length aside)
//      and encoding again gives the same bytes (a canonical fixed point);
//   3. the encoding only clears bits of the input: reserved bytes are
//      written 0 and reserved bits (flags, nibbles) cleared. Two documented
//      exceptions: the CONFIRM_LINK eyecatcher bits (either bit -> 0x03),
//      and a V2 length_v2 larger than the content (padding dropped).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <variant>
#include <vector>

#include "wire/llc.h"

using usmc::wire::LlcMessage;

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  auto m = usmc::wire::DecodeLlc(in);
  if (!m.ok()) return 0;
  Check(!usmc::wire::DescribeLlc(*m).empty());

  const size_t want_len = usmc::wire::LlcEncodedLength(*m);
  std::vector<std::byte> e(want_len);
  auto n = usmc::wire::EncodeLlc(*m, e);
  Check(n.ok() && *n == want_len);
  const auto& hdr = usmc::wire::HeaderOf(*m);
  Check(want_len <= hdr.length);

  auto again = usmc::wire::DecodeLlc(e);
  Check(again.ok());
  LlcMessage expect = *m;
  std::visit([&](auto& msg) { msg.hdr.length = static_cast<uint16_t>(*n); },
             expect);
  Check(*again == expect);
  std::vector<std::byte> e2(want_len);
  Check(usmc::wire::EncodeLlc(*again, e2).ok() && e2 == e);

  const bool confirm_link =
      usmc::wire::TypeOf(*m) == usmc::wire::LlcType::kConfirmLink;
  for (size_t i = 0; i < want_len; ++i) {
    const auto x = static_cast<uint8_t>(data[i]);
    const auto y = static_cast<uint8_t>(e[i]);
    if (hdr.v2 && (i == 1 || i == 2)) continue;  // length_v2, checked above
    if (i == 3) {
      const uint8_t added = y & static_cast<uint8_t>(~x);
      Check(added == 0 || (confirm_link && (added & ~0x03) == 0));
      continue;
    }
    Check((y & static_cast<uint8_t>(~x)) == 0);
  }
  return 0;
}
