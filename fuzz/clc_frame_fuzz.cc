// libFuzzer target for ClcFrameDecoder: the first input bytes choose chunk
// sizes, the rest is the TCP byte stream. Checks that the decoder never
// consumes more than it was given, that every frame is exactly the next
// bytes of the stream with the stated length, that NeedMore consumes the
// whole chunk, and that each decoded frame re-encodes to the same bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "wire/clc.h"

using namespace usmc::wire;

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint8_t* sizes = data;  // 4 chunk-size seeds, used round robin
  std::span<const std::byte> stream(
      reinterpret_cast<const std::byte*>(data + 4), size - 4);
  ClcFrameDecoder dec(/*decode_body=*/(data[0] & 1) == 0);
  size_t pos = 0;
  size_t frame_start = 0;
  size_t turn = 0;
  while (pos < stream.size()) {
    size_t n = std::min<size_t>(1 + sizes[turn++ % 4], stream.size() - pos);
    ClcFrameDecoder::Result r = dec.Feed(stream.subspan(pos, n));
    Check(r.consumed <= n);
    pos += r.consumed;
    if (r.status == ClcFrameDecoder::Status::kError) {
      // Sticky: nothing more is consumed.
      Check(dec.Feed(stream.subspan(pos)).consumed == 0);
      break;
    }
    if (r.status == ClcFrameDecoder::Status::kNeedMore) {
      Check(r.consumed == n);
      continue;
    }
    std::span<const std::byte> f = dec.frame();
    Check(pos - frame_start == f.size());
    Check(std::memcmp(f.data(), stream.data() + frame_start, f.size()) == 0);
    WireResult<ClcHeader> h = DecodeClcHeader(f);
    Check(h.ok() && h->length == f.size() && f.size() <= kClcMaxMessageLen);
    if ((data[0] & 1) == 0) {
      std::byte out[kClcMaxMessageLen];
      WireResult<size_t> e = EncodeClc(dec.message(), out);
      Check(e.ok() && *e == f.size() &&
            std::memcmp(out, f.data(), f.size()) == 0);
    }
    frame_start = pos;
  }
  return 0;
}
