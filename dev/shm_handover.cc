#include "dev/shm_handover.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "base/endian.h"
#include "base/owned_fd.h"
#include "dev/shm_identity.h"
#include "dev/shm_peer_verify.h"

namespace usmc::dev {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kNameSalt = 0x75736d632d756e78ULL;  // "usmc-unx"
constexpr size_t kMaxFdsAccepted = 8;
// A handover is a handshake step: minutes are already absurd.
constexpr std::chrono::milliseconds kMaxHandoverTimeout{
    600000};  // room to notice (and close) extras

uint64_t Load64(const std::byte* p) {
  return uint64_t{LoadLe32(p)} | (uint64_t{LoadLe32(p + 4)} << 32);
}
void Store64(std::byte* p, uint64_t v) {
  StoreLe32(p, static_cast<uint32_t>(v));
  StoreLe32(p + 4, static_cast<uint32_t>(v >> 32));
}

Status Timeout(const char* what) {
  return Status(StatusCode::kUnavailable,
                std::string("shm handover: timed out ") + what);
}

int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - Clock::now());
  if (left.count() <= 0) return 0;
  return left.count() > 1000000 ? 1000000 : static_cast<int>(left.count());
}

// Waits for `events` on fd; kUnavailable on timeout. Retries EINTR.
Status WaitFd(int fd, short events, Clock::time_point deadline,
              const char* what) {
  for (;;) {
    pollfd pfd{fd, events, 0};
    int n = ::poll(&pfd, 1, MillisLeft(deadline));
    if (n > 0) return OkStatus();  // ready, or HUP/ERR for the caller to see
    if (n == 0) return Timeout(what);
    if (errno != EINTR) return Status::FromErrno(errno, "poll");
  }
}

socklen_t AbstractAddr(uint64_t token, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  const std::string name = HandoverSocketName(token);
  std::memcpy(addr->sun_path + 1, name.data(), name.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 +
                                name.size());
}

struct Offer {
  uint64_t sender_token = 0;
  uint64_t sender_size = 0;
  uint64_t receiver_token = 0;
  UniqueFd memfd;
  UniqueFd doorbell;
};

Status SendOffer(int conn, const LocalDmb& dmb, uint64_t peer_token,
                 Clock::time_point deadline) {
  std::byte msg[kOfferSize] = {};
  StoreLe32(msg, kOfferMagic);
  StoreLe16(msg + 4, kOfferVersion);
  Store64(msg + 8, dmb.token());
  Store64(msg + 16, dmb.size());
  Store64(msg + 24, peer_token);
  const int fds[2] = {dmb.memfd(), dmb.doorbell_peer_end()};
  if (fds[0] < 0 || fds[1] < 0) {
    return Status(StatusCode::kFailedPrecondition,
                  "DMB not registered or already handed over");
  }
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof fds)] = {};
  iovec iov{msg, sizeof msg};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof fds);
  std::memcpy(CMSG_DATA(c), fds, sizeof fds);
  for (;;) {
    ssize_t n = ::sendmsg(conn, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(sizeof msg)) return OkStatus();
    if (n >= 0) return Status(StatusCode::kInternal, "short handover send");
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return Status::FromErrno(errno, "sendmsg offer");
    USMC_RETURN_IF_ERROR(WaitFd(conn, POLLOUT, deadline, "sending offer"));
  }
}

Result<Offer> RecvOffer(int conn, Clock::time_point deadline) {
  std::byte msg[kOfferSize + 1];
  alignas(cmsghdr) char cbuf[CMSG_SPACE(kMaxFdsAccepted * sizeof(int))];
  for (;;) {
    USMC_RETURN_IF_ERROR(WaitFd(conn, POLLIN, deadline, "waiting for offer"));
    iovec iov{msg, sizeof msg};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    ssize_t n = ::recvmsg(conn, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return Status::FromErrno(errno, "recvmsg offer");
    // Own every fd that arrived before looking at anything else, so each
    // error path below closes them.
    std::vector<UniqueFd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr;
         c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        fds.emplace_back(base::OwnFd(fd));
      }
    }
    if (n == 0) {
      return Status(StatusCode::kUnavailable,
                    "shm handover: peer closed before its offer");
    }
    if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
        n != static_cast<ssize_t>(kOfferSize)) {
      return Status(StatusCode::kDataLoss, "shm handover: malformed offer");
    }
    if (fds.size() != 2) {
      return Status(StatusCode::kDataLoss,
                    "shm handover: offer must carry exactly 2 fds");
    }
    if (LoadLe32(msg) != kOfferMagic || LoadLe16(msg + 4) != kOfferVersion) {
      return Status(StatusCode::kDataLoss, "shm handover: offer magic/version");
    }
    Offer o;
    o.sender_token = Load64(msg + 8);
    o.sender_size = Load64(msg + 16);
    o.receiver_token = Load64(msg + 24);
    o.memfd = std::move(fds[0]);
    o.doorbell = std::move(fds[1]);
    return o;
  }
}

Status CheckDoorbellFd(int fd) {
  struct stat st {};
  int domain = 0, type = 0;
  socklen_t len = sizeof domain;
  if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
      ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 ||
      (len = sizeof type,
       ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) ||
      domain != AF_UNIX || type != SOCK_STREAM) {
    return Status(StatusCode::kDataLoss,
                  "shm handover: doorbell is not a Unix stream socket");
  }
  return OkStatus();
}

// The steps after the peer's process has been verified. The client sends
// first; the server checks the client's offer (tokens echoed) before it
// sends its own fds, so a client with the wrong token gets nothing.
Result<PeerDmb> Exchange(int conn, LocalDmb& dmb, const HandoverParams& p,
                         bool send_first, Clock::time_point deadline) {
  if (send_first) {
    USMC_RETURN_IF_ERROR(SendOffer(conn, dmb, p.peer_token, deadline));
  }
  Result<Offer> offer = RecvOffer(conn, deadline);
  if (!offer.ok()) return offer.status();
  // A zero peer_token (server, before CLC Confirm) takes the token and size
  // from the verified peer's offer; the engine checks them against Confirm.
  const uint64_t peer_token = p.peer_token ? p.peer_token : offer->sender_token;
  const uint64_t peer_size =
      p.peer_token ? p.peer_dmb_size : offer->sender_size;
  if (offer->sender_token != peer_token || peer_token == 0) {
    return Status(StatusCode::kDataLoss, "shm handover: peer token mismatch");
  }
  if (offer->receiver_token != dmb.token()) {
    return Status(StatusCode::kDataLoss, "shm handover: our token not echoed");
  }
  if (offer->sender_size != peer_size || DmbFileSize(peer_size) == 0) {
    return Status(StatusCode::kDataLoss, "shm handover: peer DMB size");
  }
  USMC_RETURN_IF_ERROR(CheckDoorbellFd(offer->doorbell.get()));
  Result<PeerDmb> peer = PeerDmb::Attach(std::move(offer->memfd), peer_token,
                                         peer_size, std::move(offer->doorbell));
  if (!peer.ok()) return peer.status();
  if (!send_first) {
    USMC_RETURN_IF_ERROR(SendOffer(conn, dmb, peer_token, deadline));
  }
  // The peer now holds its own copy; dropping ours makes its exit visible
  // to our doorbell as a hangup.
  dmb.CloseDoorbellPeerEnd();
  return peer;
}

// `learn_peer`: the server may pass peer_token 0 to take it from the offer.
Status CheckParams(const LocalDmb& dmb, const HandoverParams& p,
                   bool learn_peer = false) {
  const bool learning = learn_peer && p.peer_token == 0;
  if (!dmb.registered() || p.tcp_fd < 0 ||
      (!learning && (p.peer_token == 0 || DmbFileSize(p.peer_dmb_size) == 0))) {
    return Status(StatusCode::kInvalidArgument, "shm handover parameters");
  }
  return OkStatus();
}

}  // namespace

std::string HandoverSocketName(uint64_t token) {
  char name[32];
  std::snprintf(name, sizeof name, "usmc-shm-%016llx",
                static_cast<unsigned long long>(Mix64(token ^ kNameSalt)));
  return name;
}

Result<HandoverListener> HandoverListener::Listen(const LocalDmb& dmb) {
  if (!dmb.registered()) {
    return Status(StatusCode::kFailedPrecondition, "DMB not registered");
  }
  UniqueFd fd(base::OwnFd(
      ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)));
  if (!fd) return Status::FromErrno(errno, "socket AF_UNIX");
  sockaddr_un addr;
  socklen_t len = AbstractAddr(dmb.token(), &addr);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    return Status::FromErrno(errno, "bind handover socket");
  }
  if (::listen(fd.get(), 8) != 0) return Status::FromErrno(errno, "listen");
  return HandoverListener(std::move(fd));
}

Result<PeerDmb> HandoverListener::Accept(LocalDmb& dmb,
                                         const HandoverParams& params) {
  USMC_RETURN_IF_ERROR(CheckParams(dmb, params, /*learn_peer=*/true));
  if (!fd_) return Status(StatusCode::kFailedPrecondition, "listener closed");
  const Clock::time_point deadline =
      Clock::now() + std::clamp(params.timeout, std::chrono::milliseconds(0),
                                kMaxHandoverTimeout);
  std::string last_rejection;
  for (;;) {
    UniqueFd conn(
        ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN) return Status::FromErrno(errno, "accept4");
      Status s = WaitFd(fd_.get(), POLLIN, deadline, "waiting for the peer");
      if (!s.ok() && !last_rejection.empty()) {
        return Status(s.code(),
                      s.message() + " (rejected: " + last_rejection + ")");
      }
      USMC_RETURN_IF_ERROR(s);
      continue;
    }
    Result<PeerCred> cred = GetPeerCred(conn.get());
    Status verified =
        cred.ok() ? VerifyTcpPeerProcess(params.tcp_fd, *cred, deadline,
                                         DmbTokenFdHint(params.peer_token))
                  : cred.status();
    if (!verified.ok()) {
      ++rejected_;  // not our TCP peer: close unanswered, keep listening
      last_rejection = verified.message();
      continue;
    }
    return Exchange(conn.get(), dmb, params, /*send_first=*/false, deadline);
  }
}

Result<PeerDmb> ConnectHandover(LocalDmb& dmb, const HandoverParams& params) {
  USMC_RETURN_IF_ERROR(CheckParams(dmb, params));
  const Clock::time_point deadline =
      Clock::now() + std::clamp(params.timeout, std::chrono::milliseconds(0),
                                kMaxHandoverTimeout);
  sockaddr_un addr;
  const socklen_t len = AbstractAddr(params.peer_token, &addr);
  UniqueFd conn;
  for (;;) {
    conn = UniqueFd(
        ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!conn) return Status::FromErrno(errno, "socket AF_UNIX");
    if (::connect(conn.get(), reinterpret_cast<sockaddr*>(&addr), len) == 0) {
      break;
    }
    // Not listening yet (CLC messages may overtake the server's listen) or
    // backlog full: retry until the deadline.
    if (errno != ECONNREFUSED && errno != EAGAIN && errno != EINTR) {
      return Status::FromErrno(errno, "connect handover socket");
    }
    if (Clock::now() >= deadline) return Timeout("connecting");
    struct timespec pause = {0, 1000000};  // 1 ms
    ::nanosleep(&pause, nullptr);
  }
  Result<PeerCred> cred = GetPeerCred(conn.get());
  if (!cred.ok()) return cred.status();
  // The server's token carries the fd its socket has there: one lookup
  // instead of a scan of every fd of a server with thousands.
  USMC_RETURN_IF_ERROR(VerifyTcpPeerProcess(params.tcp_fd, *cred, deadline,
                                            DmbTokenFdHint(params.peer_token)));
  return Exchange(conn.get(), dmb, params, /*send_first=*/true, deadline);
}

}  // namespace usmc::dev
