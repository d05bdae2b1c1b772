// negotiate/negotiate.cc: the socket-option side of the negotiation API.
#include "negotiate/negotiate.h"

#include <sys/socket.h>
#include <time.h>

#include <cerrno>

#include "negotiate/negotiate_abi.h"
#include "wire/reason.h"

namespace usmc::negotiate {
namespace {

// Restores errno on scope exit: the interposer calls us inside the app's
// own socket calls, where a stray errno would be visible to the app.
class ErrnoKeeper {
 public:
  ErrnoKeeper() : saved_(errno) {}
  ~ErrnoKeeper() { errno = saved_; }
  ErrnoKeeper(const ErrnoKeeper&) = delete;
  ErrnoKeeper& operator=(const ErrnoKeeper&) = delete;

 private:
  int saved_;
};

Outcome NoSmc(Answer answer, Detail detail) {
  return Outcome{answer, detail, wire::kReasonPeerNoSmc};
}

// USMC_SO_STATUS; false (errno set) if nobody answers the level.
bool ReadStatus(int fd, int* status) {
  socklen_t len = sizeof(*status);
  if (getsockopt(fd, USMC_SOL_NEGOTIATE, USMC_SO_STATUS, status, &len) != 0) {
    return false;
  }
  if (len != sizeof(*status)) {
    errno = ENOPROTOOPT;
    return false;
  }
  return true;
}

// How long an established socket may still say PENDING (see QueryOutcome):
// 200 looks, 100 us apart.
constexpr int kPendingTries = 200;
constexpr long kPendingSleepNs = 100 * 1000;

}  // namespace

bool BuiltWithBpf() {
#ifdef USMC_HAVE_BPF
  return true;
#else
  return false;
#endif
}

bool OptIn(int fd) {
  if (!BuiltWithBpf()) return false;
  ErrnoKeeper keep;
  int one = 1;
  return setsockopt(fd, USMC_SOL_NEGOTIATE, USMC_SO_OPTIN, &one, sizeof(one)) ==
         0;
}

Outcome QueryOutcome(int fd) {
  if (!BuiltWithBpf()) return NoSmc(Answer::kUnknown, Detail::kNotBuilt);
  ErrnoKeeper keep;
  int status = 0;
  if (!ReadStatus(fd, &status)) return OutcomeFromErrno(errno);
  if (status == USMC_ST_PENDING) {
    // The socket is established, yet the program's ESTABLISHED callback
    // has not run: the kernel puts an accepted child on the accept queue
    // (and shows a connect's POLLOUT) a moment before the softirq runs
    // it. Answering "not SMC" now while the peer decided SMC would leave
    // CLC bytes in the app's stream (seen once in Redis's suite under
    // load: a server never answered a Proposal). A socket-lock round trip
    // lets a callback in progress finish; then look again for a while.
    int ka = 0;
    socklen_t kl = sizeof(ka);
    if (getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &ka, &kl) == 0) {
      (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &ka, sizeof(ka));
    }
    for (int i = 0; i < kPendingTries && status == USMC_ST_PENDING; ++i) {
      if (i > 0) {
        const timespec ts{0, kPendingSleepNs};
        nanosleep(&ts, nullptr);
      }
      if (!ReadStatus(fd, &status)) return OutcomeFromErrno(errno);
    }
  }
  return OutcomeFromStatus(status);
}

bool HooksPresent(int fd) {
  if (!BuiltWithBpf()) return false;
  ErrnoKeeper keep;
  int status = 0;
  return ReadStatus(fd, &status);
}

Outcome OutcomeFromErrno(int /*err*/) {
  // ENOPROTOOPT / EOPNOTSUPP: nobody serves the level. Any other error is
  // treated the same way: the connection must go on as TCP regardless.
  return NoSmc(Answer::kUnknown, Detail::kHooksAbsent);
}

Outcome OutcomeFromStatus(int status) {
  switch (status) {
    case USMC_ST_SMC:
      return Outcome{Answer::kBothOffered, Detail::kBothOffered, 0};
    case USMC_ST_NOT_OPTED_IN:
      return NoSmc(Answer::kNotBoth, Detail::kNotOptedIn);
    case USMC_ST_PENDING:
      return NoSmc(Answer::kNotBoth, Detail::kPending);
    case USMC_ST_PEER_NO_SMC:
      return NoSmc(Answer::kNotBoth, Detail::kPeerDidNotOffer);
    case USMC_ST_TFO:
      // Like the kernel's SMC, which refuses TFO sockets with OPTUNSUPP.
      return Outcome{Answer::kNotBoth, Detail::kFastOpen,
                     wire::kReasonOptUnsupp};
    case USMC_ST_SYN_COOKIE:
      return NoSmc(Answer::kNotBoth, Detail::kSynCookie);
    case USMC_ST_NO_ROOM:
      return NoSmc(Answer::kNotBoth, Detail::kNoOptionRoom);
    default:
      return NoSmc(Answer::kUnknown, Detail::kHooksAbsent);
  }
}

std::string_view ToString(Answer a) {
  switch (a) {
    case Answer::kBothOffered:
      return "both-offered";
    case Answer::kNotBoth:
      return "not-both";
    case Answer::kUnknown:
      return "unknown";
  }
  return "invalid";
}

std::string_view ToString(Detail d) {
  switch (d) {
    case Detail::kBothOffered:
      return "both-offered";
    case Detail::kPeerDidNotOffer:
      return "peer-did-not-offer";
    case Detail::kNotOptedIn:
      return "not-opted-in";
    case Detail::kPending:
      return "pending";
    case Detail::kFastOpen:
      return "tcp-fast-open";
    case Detail::kSynCookie:
      return "syn-cookie";
    case Detail::kNoOptionRoom:
      return "no-option-room";
    case Detail::kHooksAbsent:
      return "hooks-absent";
    case Detail::kNotBuilt:
      return "not-built";
  }
  return "invalid";
}

std::ostream& operator<<(std::ostream& os, Answer a) {
  return os << ToString(a);
}
std::ostream& operator<<(std::ostream& os, Detail d) {
  return os << ToString(d);
}
std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  os << o.answer << " (" << o.detail << ")";
  if (o.reason != 0) os << " reason " << wire::FormatReason(o.reason);
  return os;
}

}  // namespace usmc::negotiate
