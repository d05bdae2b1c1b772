// negotiate/negotiate.h: per-socket SMC opt-in and the handshake's verdict.
//
// The RFC 7609 option (kind 254, ExID 0xE2D4C3D9) is written and read by the
// eBPF program that `usmc setup` attaches; this API is how a socket talks to
// it, through a private socket option (no privilege needed). It never fails
// the application's socket: without the program every answer is "unknown"
// and the connection simply stays TCP.
//
//   int fd = socket(AF_INET, SOCK_STREAM, 0);
//   usmc::negotiate::OptIn(fd);                 // before connect()/listen()
//   connect(fd, ...);
//   usmc::negotiate::Outcome o = usmc::negotiate::QueryOutcome(fd);
//   if (o.answer == usmc::negotiate::Answer::kBothOffered) { /* CLC next */ }
//   else { /* TCP; o.reason is the fallback reason (PEERNOSMC, ...) */ }
#ifndef USMC_NEGOTIATE_NEGOTIATE_H_
#define USMC_NEGOTIATE_NEGOTIATE_H_

#include <cstdint>
#include <ostream>
#include <string_view>

namespace usmc::negotiate {

// Whether both ends offered SMC on the TCP handshake.
enum class Answer {
  kBothOffered,  // SYN and SYN-ACK carried the option: start CLC
  kNotBoth,      // hooks present, but no agreement: stay TCP
  kUnknown,      // hooks absent (not set up, other cgroup, built without eBPF)
};

// Why, in more detail than the three answers (for `usmc ss`, logs, tests).
enum class Detail {
  kBothOffered,
  kPeerDidNotOffer,  // our offer was not echoed / the SYN had no option
  kNotOptedIn,       // this socket never opted in
  kPending,          // asked before the handshake finished (or a listener)
  kFastOpen,         // a TCP Fast Open socket is never SMC
  kSynCookie,        // the server answered from a SYN cookie
  kNoOptionRoom,     // the option did not fit in the TCP header
  kHooksAbsent,      // the socket option is not served: program not attached
  kNotBuilt,         // usmc built with USMC_BPF=OFF
};

struct Outcome {
  Answer answer = Answer::kUnknown;
  Detail detail = Detail::kHooksAbsent;
  // Fallback reason when answer != kBothOffered (wire/reason.h), else 0:
  // PEERNOSMC, except OPTUNSUPP for TCP Fast Open sockets.
  uint32_t reason = 0;

  bool both_offered() const { return answer == Answer::kBothOffered; }
};

// Asks the program to offer SMC on fd's SYN (client) or to echo offers
// (listener; accepted sockets inherit it). Call before connect()/listen().
// Returns true if the program took it; false if it is not there (or fd is
// not a fresh TCP socket). Never changes errno.
bool OptIn(int fd);

// The verdict for a connected or accepted socket. Never changes errno.
Outcome QueryOutcome(int fd);

// Whether the program serves fd's cgroup at all (one getsockopt, no
// waiting): false when it is not attached (or not built). Lets a caller
// whose OptIn failed tell "not set up here" from "not a fresh TCP socket".
// Never changes errno.
bool HooksPresent(int fd);

// Maps the program's USMC_ST_* value (negotiate_abi.h) to an Outcome; values
// the program does not define count as kUnknown. Exposed for tests.
Outcome OutcomeFromStatus(int status);
// The Outcome when getsockopt failed with err (hooks absent).
Outcome OutcomeFromErrno(int err);

// True if this build includes the eBPF program (USMC_BPF=ON and the tools
// were found at configure time).
bool BuiltWithBpf();

std::string_view ToString(Answer a);
std::string_view ToString(Detail d);
std::ostream& operator<<(std::ostream& os, Answer a);
std::ostream& operator<<(std::ostream& os, Detail d);
std::ostream& operator<<(std::ostream& os, const Outcome& o);

}  // namespace usmc::negotiate

#endif  // USMC_NEGOTIATE_NEGOTIATE_H_
