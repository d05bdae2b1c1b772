// runtime/late_clc.h: the one CLC message that may follow our Decline.
//
// A side that declines is TCP from then on, but the peer may have sent one
// CLC message before it read that Decline: its answer to our last message
// (a late Proposal, Accept or Confirm when our timer ran out), or its own
// Decline when it gave up at the same moment (both declining at once, a
// Decline crossing ours after an Accept). That message is the handshake's,
// not the app's: the first look at the TCP stream after such a fallback
// drops one whole, valid CLC message at its head (engine::Fallback::
// declined says when). Anything else ends the check and is left for the
// app, at once: app bytes, EOF, an error, and also the start of a CLC
// message whose rest is not there. A usmc peer writes each CLC message with
// one send at the start of the stream, so it arrives whole; a header whose
// body does not follow is a peer that does not speak usmc's CLC, and its
// bytes are its app's, as every byte of a peer that speaks no CLC at all.
// Nothing waits for the length a header announces.
#ifndef USMC_RUNTIME_LATE_CLC_H_
#define USMC_RUNTIME_LATE_CLC_H_

namespace usmc::runtime {

enum class LateClc {
  kDone,         // decided: the message was dropped, or there is none
  kWouldBlock,   // nothing there yet (errno EAGAIN): look again later
  kInterrupted,  // a signal interrupted the wait (errno EINTR)
};

// Looks at the head of `fd`'s stream (the TCP socket, any fd of it).
// `wait`: a blocking read's check; sleeps until a first byte is there, as
// the read itself would (SO_RCVTIMEO included: kWouldBlock, errno EAGAIN).
LateClc DropLateClc(int fd, bool wait);

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_LATE_CLC_H_
