// wire/clc_frame.h: CLC framing over the TCP byte stream, in one function.
//
// Every reader of CLC bytes (ClcFrameDecoder, the engine's handshake, the
// runtime's receive wake-up, the late-CLC drop after a Decline) asks the
// same question of the bytes at the head of the stream: is a whole message
// there, how many bytes are still missing, or is this not CLC at all?
// PeekClcFrame answers it without consuming anything, as Linux peeks the
// 8-byte header before it reads exactly `length` bytes (smc_clc_wait_msg).
//
//   ClcFramePeek p = PeekClcFrame(peeked);
//   if (p.status == ClcFramePeek::Status::kComplete)
//     Use(peeked.first(p.length));   // the bytes after it are not this
//                                    // message's
#ifndef USMC_WIRE_CLC_FRAME_H_
#define USMC_WIRE_CLC_FRAME_H_

#include <cstddef>
#include <span>

#include "wire/clc.h"
#include "wire/error.h"

namespace usmc::wire {

struct ClcFramePeek {
  enum class Status : uint8_t {
    kComplete,  // a whole message of `length` bytes starts the input
    kNeedMore,  // not yet: at least `need` more bytes must arrive
    kNotClc,    // the header is not a CLC header: `error` says why
  };
  Status status = Status::kNeedMore;
  // kComplete: the message length (the header's). kNeedMore: 0.
  size_t length = 0;
  // kNeedMore: bytes missing to the end of the header (fewer than 8 given)
  // or to the end of the message (header given). Otherwise 0.
  size_t need = 0;
  // kComplete, and kNeedMore once the 8 header bytes are there.
  ClcHeader header{};
  bool header_ok = false;
  // kComplete: the trailer is an eyecatcher (SMCR or SMCD). Checking the
  // body is DecodeClc's business; framing-only readers look at this.
  bool trailer_ok = false;
  // kNotClc: DecodeClcHeader's error (eyecatcher, type, version 0, length
  // below the shortest message or above kClcMaxMessageLen).
  WireError error{WireErrc::kTruncated, "clc.header"};
};

// Looks at the bytes at the head of the stream (everything received and
// not consumed); never reads past `bytes` and keeps no state. Bytes after a
// complete message are ignored.
ClcFramePeek PeekClcFrame(std::span<const std::byte> bytes);

std::string_view ToString(ClcFramePeek::Status s);
std::ostream& operator<<(std::ostream& os, ClcFramePeek::Status s);

}  // namespace usmc::wire

#endif  // USMC_WIRE_CLC_FRAME_H_
