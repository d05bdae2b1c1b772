// wire/clc_frame.cc: PeekClcFrame, the one CLC framing rule, and
// ClcFrameDecoder, which cuts messages out of arbitrary chunks with it.
//
// Linux peeks the 8-byte header and then reads exactly `length` bytes
// (smc_clc_wait_msg) so that it never takes bytes that follow the message.
// The decoder does the same over arbitrary chunks: it copies at most up to
// the end of the current message and reports how much it took.
#include "wire/clc_frame.h"

#include <algorithm>
#include <cstring>

#include "wire/clc.h"

namespace usmc::wire {

namespace {

// The trailer carries one of the two eyecatchers (not necessarily the
// header's); both begin with the same three EBCDIC bytes "SMC".
bool TrailerOk(std::span<const std::byte> frame) {
  const std::byte* t = frame.data() + frame.size() - kClcTrailerLen;
  return t[0] == std::byte{0xE2} && t[1] == std::byte{0xD4} &&
         t[2] == std::byte{0xC3} &&
         (t[3] == std::byte{0xD9} || t[3] == std::byte{0xC4});
}

}  // namespace

ClcFramePeek PeekClcFrame(std::span<const std::byte> bytes) {
  ClcFramePeek p;
  if (bytes.size() < kClcHeaderLen) {
    // The header decides everything: wait for all of it, as Linux does.
    p.status = ClcFramePeek::Status::kNeedMore;
    p.need = kClcHeaderLen - bytes.size();
    return p;
  }
  WireResult<ClcHeader> h = DecodeClcHeader(bytes.first(kClcHeaderLen));
  if (!h) {
    p.status = ClcFramePeek::Status::kNotClc;
    p.error = h.error();
    return p;
  }
  p.header = *h;
  p.header_ok = true;
  // DecodeClcHeader bounds the length to [kClcDeclineV1Len,
  // kClcMaxMessageLen], so a message always holds header and trailer.
  if (bytes.size() < h->length) {
    p.status = ClcFramePeek::Status::kNeedMore;
    p.need = h->length - bytes.size();
    return p;
  }
  p.status = ClcFramePeek::Status::kComplete;
  p.length = h->length;
  p.trailer_ok = TrailerOk(bytes.first(p.length));
  return p;
}

std::string_view ToString(ClcFramePeek::Status s) {
  switch (s) {
    case ClcFramePeek::Status::kComplete:
      return "COMPLETE";
    case ClcFramePeek::Status::kNeedMore:
      return "NEED_MORE";
    case ClcFramePeek::Status::kNotClc:
      return "NOT_CLC";
  }
  return "UNKNOWN";
}

std::ostream& operator<<(std::ostream& os, ClcFramePeek::Status s) {
  return os << ToString(s);
}

ClcFrameDecoder::Result ClcFrameDecoder::Feed(
    std::span<const std::byte> bytes) {
  if (failed_) return {Status::kError, 0};
  if (done_) {
    done_ = false;
    have_ = 0;
  }
  size_t consumed = 0;
  for (;;) {
    ClcFramePeek p = PeekClcFrame(frame());
    if (p.status == ClcFramePeek::Status::kNotClc) {
      failed_ = true;
      error_ = p.error;
      return {Status::kError, consumed};
    }
    if (p.status == ClcFramePeek::Status::kComplete) break;
    if (consumed == bytes.size()) return {Status::kNeedMore, consumed};
    // Never past the header before its length is known, never past the
    // message end: the bytes after it are the next message's or the app's.
    size_t take = std::min(p.need, bytes.size() - consumed);
    std::memcpy(buf_.data() + have_, bytes.data() + consumed, take);
    have_ += take;
    consumed += take;
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
  } else if (!PeekClcFrame(frame()).trailer_ok) {
    failed_ = true;
    error_ = WireError{WireErrc::kBadTrailer, "clc.trailer"};
    return {Status::kError, consumed};
  }
  done_ = true;
  return {Status::kFrame, consumed};
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
