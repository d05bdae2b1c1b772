// preload/late_clc.h: the one CLC message that may follow a CLC timeout.
//
// A side whose CLC timer ran out sends a Decline and is TCP from then on,
// but the peer may have sent its next message (a late Proposal, Accept,
// Confirm or Decline) before it read that Decline. Those bytes are the
// handshake's, not the app's: the first read after such a fallback drops
// one whole, valid CLC message at the head of the stream. Anything else
// (app bytes, EOF) ends the check and is left for the app.
#ifndef USMC_PRELOAD_LATE_CLC_H_
#define USMC_PRELOAD_LATE_CLC_H_

namespace usmc::preload {

enum class LateClc {
  kDone,         // no CLC message (left) at the head: stop checking
  kWouldBlock,   // part of a message is there, the rest not yet (EAGAIN)
  kInterrupted,  // a signal arrived while waiting for the rest (EINTR)
};

// `wait`: a blocking read; sleep until the rest of a started message is
// there. Drops at most one message.
LateClc DropLateClc(int fd, bool wait);

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_LATE_CLC_H_
