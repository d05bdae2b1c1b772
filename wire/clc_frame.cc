// wire/clc_frame.cc: ClcFrameDecoder, CLC framing over the TCP byte stream.
//
// Linux peeks the 8-byte header and then reads exactly `length` bytes
// (smc_clc_wait_msg) so that it never takes bytes that follow the message.
// This decoder does the same over arbitrary chunks: it copies at most up to
// the end of the current message and reports how much it took.
#include <algorithm>
#include <cstring>

#include "wire/clc.h"

namespace usmc::wire {

ClcFrameDecoder::Result ClcFrameDecoder::Feed(
    std::span<const std::byte> bytes) {
  if (failed_) return {Status::kError, 0};
  if (done_) {
    done_ = false;
    have_ = 0;
    need_ = kClcHeaderLen;
  }
  size_t consumed = 0;
  while (consumed < bytes.size()) {
    size_t take = std::min(need_ - have_, bytes.size() - consumed);
    std::memcpy(buf_.data() + have_, bytes.data() + consumed, take);
    have_ += take;
    consumed += take;
    if (have_ < need_) break;
    if (need_ == kClcHeaderLen) {
      // The header is complete: learn (and bound) the message length.
      WireResult<ClcHeader> h = DecodeClcHeader(frame());
      if (!h) {
        failed_ = true;
        error_ = h.error();
        return {Status::kError, consumed};
      }
      need_ = h->length;  // >= kClcDeclineV1Len > kClcHeaderLen
      continue;
    }
    // The message is complete.
    if (decode_body_) {
      WireResult<ClcMessage> m = DecodeClc(frame());
      if (!m) {
        failed_ = true;
        error_ = m.error();
        return {Status::kError, consumed};
      }
      message_ = std::move(*m);
    } else {
      const std::byte* t = buf_.data() + have_ - kClcTrailerLen;
      const std::byte* h = buf_.data();
      // Same eyecatcher values as the header check: SMCR or SMCD.
      bool ok = std::memcmp(t, h, 3) == 0 &&
                (t[3] == std::byte{0xD9} || t[3] == std::byte{0xC4});
      if (!ok) {
        failed_ = true;
        error_ = WireError{WireErrc::kBadTrailer, "clc.trailer"};
        return {Status::kError, consumed};
      }
    }
    done_ = true;
    return {Status::kFrame, consumed};
  }
  return {Status::kNeedMore, consumed};
}

std::string_view ToString(ClcFrameDecoder::Status s) {
  switch (s) {
    case ClcFrameDecoder::Status::kNeedMore:
      return "NEED_MORE";
    case ClcFrameDecoder::Status::kFrame:
      return "FRAME";
    case ClcFrameDecoder::Status::kError:
      return "ERROR";
  }
  return "UNKNOWN";
}

std::ostream& operator<<(std::ostream& os, ClcFrameDecoder::Status s) {
  return os << ToString(s);
}

}  // namespace usmc::wire
