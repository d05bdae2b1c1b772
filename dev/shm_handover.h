// dev/shm_handover.h: swapping DMBs between the two processes of one TCP
// connection.
//
// After CLC Accept/Confirm both sides know both DMB tokens. The server
// listens on an abstract AF_UNIX SOCK_SEQPACKET name derived from its own
// token (hashed: /proc/net/unix shows names, the token stays private), only
// for the handshake window; the client connects. Each side first proves the
// other is the process holding the far end of the TCP connection
// (shm_peer_verify.h). Then the client sends one 32-byte offer (magic,
// version, own token, own DMB size, the server's token echoed) with two fds
// attached by SCM_RIGHTS: its DMB memfd and the peer's end of its doorbell.
// The server checks it and attaches (PeerDmb::Attach) before it answers with
// its own offer, so fds go only to a verified process that also knows both
// tokens; the client then checks and attaches the server's.
// Connections from anyone else are closed without a byte and counted; the
// server keeps listening for the real peer until the deadline. Every step
// is bounded by HandoverParams::timeout; a failure is a Status the engine
// turns into a Decline and plain TCP.
//
//   // server, after sending CLC Accept
//   Result<HandoverListener> l = HandoverListener::Listen(my_dmb);
//   Result<PeerDmb> peer = l->Accept(my_dmb, {tcp_fd, client_token, size});
//   // client, after sending CLC Confirm
//   Result<PeerDmb> peer = ConnectHandover(my_dmb, {tcp_fd, server_token,
//   size});
#ifndef USMC_DEV_SHM_HANDOVER_H_
#define USMC_DEV_SHM_HANDOVER_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "base/status.h"
#include "dev/shm_dmb.h"
#include "dev/unique_fd.h"

namespace usmc::dev {

struct HandoverParams {
  int tcp_fd = -1;  // our end of the TCP connection
  // The peer's DMB token and size, from CLC. The server may pass 0 to
  // Accept before CLC Confirm names them: they are then taken from the
  // verified peer's offer (PeerDmb::token()/size()), and the caller checks
  // them against Confirm.
  uint64_t peer_token = 0;
  uint64_t peer_dmb_size = 0;  // the peer's DMB size, from CLC
  std::chrono::milliseconds timeout{2000};
};

// Offer message layout (host byte order: both ends are on one host).
inline constexpr size_t kOfferSize = 32;
inline constexpr uint32_t kOfferMagic = 0x484d5355;  // "USMH"
inline constexpr uint16_t kOfferVersion = 1;

// The abstract socket name (without the leading NUL) for a DMB token.
std::string HandoverSocketName(uint64_t token);

class HandoverListener {
 public:
  // Binds the abstract name of `dmb`'s token. kSystem/EADDRINUSE if taken.
  static Result<HandoverListener> Listen(const LocalDmb& dmb);

  // Accepts until a verified peer completes the exchange or the timeout
  // passes. Impostors are closed unanswered and counted in rejected().
  Result<PeerDmb> Accept(LocalDmb& dmb, const HandoverParams& params);

  int fd() const { return fd_.get(); }  // pollable: a peer is connecting
  uint64_t rejected() const { return rejected_; }
  void Close() { fd_.Reset(); }

 private:
  explicit HandoverListener(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  uint64_t rejected_ = 0;
};

// Client side: connects (retrying while the server is not yet listening),
// then the same verify/offer/attach steps.
Result<PeerDmb> ConnectHandover(LocalDmb& dmb, const HandoverParams& params);

}  // namespace usmc::dev

#endif  // USMC_DEV_SHM_HANDOVER_H_
