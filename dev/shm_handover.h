// dev/shm_handover.h: swapping DMBs between the two processes of one TCP
// connection, bound to a secret of that connection.
//
// The two DMB tokens are random and travel only in the TCP stream (CLC
// Accept carries the server's, Confirm the client's): only processes that
// hold one end of the connection (and root) learn them. Before it sends
// Accept, the server binds an abstract AF_UNIX stream listener whose name is
// a one-way hash of its token: nobody can have bound it first (the token did
// not exist anywhere else), and the name, which /proc/net/unix shows to
// every user, does not give the token away. After Accept the client
// connects to that name and sends its offer: its token, its DMB size, a
// proof of knowing the server's token (a SipHash keyed with both tokens,
// shm_identity.h) and its memfd. The server checks the proof (constant
// time) before it attaches anything, then answers with its size, its own
// proof (which binds the client's token: the client checks it) and its
// memfd. Connections that fail the check are closed unanswered and counted;
// the server keeps accepting until the deadline.
//
// The connected socket then stays as the connection's doorbell, both ways:
// each side waits on POLLIN of its end and rings the peer by writing a byte
// (shm_doorbell.h). Framing: each side's first 32 bytes on it are the
// offer (one sendmsg, fds attached); every later byte is a ring. A peer
// rings only after it has attached our DMB, i.e. after its offer.
//
//   // server, before sending CLC Accept
//   Result<HandoverListener> l = HandoverListener::Listen(my_dmb);
//   Result<Handover> h = l->Accept(my_dmb, {0, 0});  // learns the client's
//   // client, after reading Accept
//   Result<Handover> h = ConnectHandover(my_dmb, {server_token, size});
#ifndef USMC_DEV_SHM_HANDOVER_H_
#define USMC_DEV_SHM_HANDOVER_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "dev/shm_arena.h"
#include "dev/shm_dmb.h"
#include "dev/shm_pairs.h"
#include "dev/unique_fd.h"

namespace usmc::dev {

struct HandoverParams {
  // The peer's DMB token and size, from CLC. The server may pass 0 to
  // Accept before CLC Confirm names them: they are then taken from the
  // offer whose proof holds (PeerDmb::token()/size()), and the caller checks
  // them against Confirm.
  uint64_t peer_token = 0;
  uint64_t peer_dmb_size = 0;
  std::chrono::milliseconds timeout{2000};
};

// SO_PEERCRED of the Unix peer at the time it connected (or listened): for
// the record only, nothing is decided on it.
struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// A completed handover: the peer's DMB, attached, whose doorbell shares our
// end of the connected socket with `dmb`'s (LocalDmb::ConnectDoorbell).
struct Handover {
  PeerDmb peer;
  PeerCred cred;
};

// Offer layout (host byte order: both ends are on one host):
//   u32 magic "USMH" | u16 version 2 | u16 kind (1 client, 2 server) |
//   u64 sender token (client; 0 from the server) | u64 sender DMB size |
//   u64 proof = SipHash24(server token, client token, domain | size)
// with exactly one fd (the sender's memfd) attached.
inline constexpr size_t kOfferSize = 32;
inline constexpr uint32_t kOfferMagic = 0x484d5355;  // "USMH"
inline constexpr uint16_t kOfferVersion = 2;
inline constexpr uint16_t kOfferFromClient = 1;
inline constexpr uint16_t kOfferFromServer = 2;

// The abstract socket name (without the leading NUL) for a server token:
// one-way, so listing it reveals nothing of the token.
std::string HandoverSocketName(uint64_t server_token);

// The proof an offer carries: keyed with both tokens, over the sender's
// side and DMB size.
uint64_t HandoverProof(uint64_t server_token, uint64_t client_token,
                       uint16_t kind, uint64_t sender_size);

// Builds an offer (tests and the fuzzer forge them with this too).
void EncodeOffer(uint16_t kind, uint64_t sender_token, uint64_t sender_size,
                 uint64_t proof, std::byte (&out)[kOfferSize]);

class HandoverListener {
 public:
  // Binds the abstract name of `dmb`'s token (SOCK_STREAM). kSystem/
  // EADDRINUSE if taken.
  static Result<HandoverListener> Listen(const LocalDmb& dmb);
  // The same for a token whose DMB is not placed yet (arena handover).
  static Result<HandoverListener> Listen(uint64_t token);

  // Accepts until an offer with a valid proof completes the exchange or
  // the timeout passes; several connections are watched at once, so silent
  // ones cannot hold up the real peer. The others are closed unanswered and
  // counted in rejected(). On success `dmb`'s doorbell is connected.
  Result<Handover> Accept(LocalDmb& dmb, const HandoverParams& params);

  int fd() const { return fd_.get(); }  // pollable: a peer is connecting
  uint64_t rejected() const { return rejected_; }
  void Close() { fd_.Reset(); }

 private:
  explicit HandoverListener(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  uint64_t rejected_ = 0;
};

// ---- Arena handover (offer version 3; docs/dev-shm.md, "Arenas") ----------
//
// ShmDevice uses it when USMC_SHM_ARENA=1. The same token-bound exchange,
// but the DMBs are slots of the two processes' arenas: the first
// connection between two processes sends the arenas (one fd each way) and
// the halves of the pair key; later ones claim the pair (no fd) with a
// pair proof. A claim the server cannot match is answered with kind 3
// ("unknown pair", nothing else in it), and the client sends a first-time
// offer on the same socket within the same deadline.
//
// Offer v3, 96 bytes: u32 "USMH" | u16 3 | u16 kind | u64 sender token |
// u64 sender DMB size | u64 token proof (HandoverProof) | u64 pair id |
// u64 arena id | u64 arena size | u64 slot offset | u64 pair proof (0 on a
// first connection) | u64 key half 0 | u64 key half 1 | u64 0. One fd (the
// sender's arena) exactly when it starts a pair.
inline constexpr size_t kOfferV3Size = 96;
inline constexpr uint16_t kOfferVersion3 = 3;

struct ArenaParams {
  uint64_t own_token = 0;  // drawn at Register (CLC carries it)
  uint64_t own_size = 0;
  uint64_t peer_token = 0;  // client: from CLC Accept; server: 0 or Confirm's
  uint64_t peer_size = 0;
  uint64_t new_arena_size = 64 << 20;  // for a pair this handover starts
  std::chrono::milliseconds timeout{2000};
};

struct ArenaHandoverResult {
  LocalDmb local;  // in our arena's slot, doorbell connected
  PeerDmb peer;    // in the peer arena's slot
  PairUse use;     // the pair, held for the connection's life
  PeerCred cred;
  bool new_pair = false;
};

Result<ArenaHandoverResult> ArenaAccept(HandoverListener& l, ArenaPairs& pairs,
                                        const ArenaParams& p);
Result<ArenaHandoverResult> ArenaConnect(ArenaPairs& pairs,
                                         const ArenaParams& p);

// Client side: connects to the server's name (bound before Accept went out:
// ECONNREFUSED means the server gave up, and is final), sends its offer,
// checks the server's. On success `dmb`'s doorbell is connected.
Result<Handover> ConnectHandover(LocalDmb& dmb, const HandoverParams& params);

}  // namespace usmc::dev

#endif  // USMC_DEV_SHM_HANDOVER_H_
