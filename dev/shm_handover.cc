#include "dev/shm_handover.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <span>
#include <vector>

#include "base/endian.h"
#include "base/owned_fd.h"
#include "dev/shm_identity.h"

namespace usmc::dev {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kNameKey = 0x75736d632d756e78ULL;      // "usmc-unx"
constexpr uint64_t kProofDomain = 0x75736d632d707266ULL;  // "usmc-prf"
constexpr size_t kMaxFdsAccepted = 8;
// Connections watched at once by one Accept: the real peer sends its offer
// right after connect, so it is never the oldest silent one for long.
constexpr size_t kMaxPending = 16;
// A handover is a handshake step: minutes are already absurd.
constexpr std::chrono::milliseconds kMaxHandoverTimeout{600000};

uint64_t Load64(const std::byte* p) {
  return uint64_t{LoadLe32(p)} | (uint64_t{LoadLe32(p + 4)} << 32);
}
void Store64(std::byte* p, uint64_t v) {
  StoreLe32(p, static_cast<uint32_t>(v));
  StoreLe32(p + 4, static_cast<uint32_t>(v >> 32));
}

// No early exit on the first differing byte: the time a comparison takes
// tells nothing about how much of a guessed proof was right.
bool ConstantTimeEqual(uint64_t a, uint64_t b) {
  volatile uint64_t d = a ^ b;
  return d == 0;
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

Clock::time_point DeadlineOf(std::chrono::milliseconds timeout) {
  return Clock::now() +
         std::clamp(timeout, std::chrono::milliseconds(0), kMaxHandoverTimeout);
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
  uint16_t kind = 0;
  uint64_t sender_token = 0;
  uint64_t sender_size = 0;
  uint64_t proof = 0;
  UniqueFd memfd;
};

// Sends one whole handover message, with `fd` alongside unless it is < 0,
// waiting for room until `deadline`.
Status SendFrame(int conn, std::span<const std::byte> msg, int fd,
                 Clock::time_point deadline) {
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof fd)] = {};
  iovec iov{const_cast<std::byte*>(msg.data()), msg.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (fd >= 0) {
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fd);
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    // MSG_DONTWAIT: the peer shares this socket's file flags (it holds the
    // other end, and may hold a dup of ours after fork): per call only.
    ssize_t n = ::sendmsg(conn, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(msg.size())) return OkStatus();
    // A stream socket may take part of it; a small send into an empty
    // socket never does, so a short one is the peer's doing.
    if (n >= 0) return Status(StatusCode::kInternal, "short handover send");
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return Status::FromErrno(errno, "sendmsg offer");
    USMC_RETURN_IF_ERROR(WaitFd(conn, POLLOUT, deadline, "sending offer"));
  }
}

Status SendOffer(int conn, const LocalDmb& dmb, const std::byte* msg,
                 Clock::time_point deadline) {
  const int fd = dmb.memfd();
  if (fd < 0) return Status(StatusCode::kFailedPrecondition, "no DMB memfd");
  return SendFrame(conn, {msg, kOfferSize}, fd, deadline);
}

// An offer arrived with MSG_CTRUNC and no fd: the kernel drops fds it
// cannot install in a full table, and says only CTRUNC. Whether that was
// us, a probe for one fd tells: EMFILE/ENFILE (the fallback must name the
// fd limit, NOFD, not a bad peer), else OK.
Status FdTableFull(int conn, const char* what) {
  const int probe = ::fcntl(conn, F_DUPFD_CLOEXEC, 0);
  if (probe < 0 && (errno == EMFILE || errno == ENFILE)) {
    return Status::FromErrno(errno, what);
  }
  if (probe >= 0) ::close(probe);
  return OkStatus();
}

// Reads the offer at the front of `conn` without waiting: exactly kOfferSize
// bytes (the rest of the stream is rings) and the one fd sent with them.
// *again: nothing there yet.
Result<Offer> TryRecvOffer(int conn, bool* again) {
  *again = false;
  std::byte msg[kOfferSize];
  alignas(cmsghdr) char cbuf[CMSG_SPACE(kMaxFdsAccepted * sizeof(int))];
  for (;;) {
    iovec iov{msg, sizeof msg};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    ssize_t n = ::recvmsg(conn, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      *again = true;
      return Status(StatusCode::kUnavailable, "no offer yet");
    }
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
    if ((mh.msg_flags & MSG_CTRUNC) != 0 && fds.empty()) {
      USMC_RETURN_IF_ERROR(
          FdTableFull(conn, "shm handover: no fd for the peer's DMB"));
    }
    if ((mh.msg_flags & MSG_CTRUNC) != 0 ||
        n != static_cast<ssize_t>(kOfferSize)) {
      return Status(StatusCode::kDataLoss, "shm handover: malformed offer");
    }
    if (LoadLe32(msg) != kOfferMagic || LoadLe16(msg + 4) != kOfferVersion) {
      return Status(StatusCode::kDataLoss, "shm handover: offer magic/version");
    }
    if (fds.size() != 1) {
      return Status(StatusCode::kDataLoss,
                    "shm handover: offer must carry exactly 1 fd");
    }
    Offer o;
    o.kind = LoadLe16(msg + 6);
    o.sender_token = Load64(msg + 8);
    o.sender_size = Load64(msg + 16);
    o.proof = Load64(msg + 24);
    o.memfd = std::move(fds[0]);
    return o;
  }
}

Result<Offer> RecvOffer(int conn, Clock::time_point deadline) {
  for (;;) {
    bool again = false;
    Result<Offer> o = TryRecvOffer(conn, &again);
    if (!again) return o;
    USMC_RETURN_IF_ERROR(WaitFd(conn, POLLIN, deadline, "waiting for offer"));
  }
}

Result<PeerCred> GetPeerCred(int unix_fd) {
  struct ucred uc {};
  socklen_t len = sizeof uc;
  if (::getsockopt(unix_fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0) {
    return Status::FromErrno(errno, "SO_PEERCRED");
  }
  return PeerCred{uc.pid, uc.uid, uc.gid};
}

// The checks of a client's offer that need no attach: kind, the peer's
// token and size where CLC named them, and the proof.
Status CheckClientOffer(const Offer& o, uint64_t server_token,
                        const HandoverParams& p) {
  if (o.kind != kOfferFromClient || o.sender_token == 0 ||
      DmbFileSize(o.sender_size) == 0) {
    return Status(StatusCode::kDataLoss, "shm handover: bad client offer");
  }
  if (!ConstantTimeEqual(
          o.proof, HandoverProof(server_token, o.sender_token, kOfferFromClient,
                                 o.sender_size))) {
    return Status(StatusCode::kPermissionDenied,
                  "shm handover: offer does not prove the server token");
  }
  if (p.peer_token != 0 &&
      (o.sender_token != p.peer_token || o.sender_size != p.peer_dmb_size)) {
    return Status(StatusCode::kDataLoss,
                  "shm handover: offer names another DMB than CLC");
  }
  return OkStatus();
}

// Both sides end the same way: attach the peer's DMB, (the server) answer
// with ours, then our end of the socket becomes the doorbell of our DMB and
// of the peer's.
Result<Handover> Finish(LocalDmb& dmb, UniqueFd conn, UniqueFd peer_memfd,
                        uint64_t peer_token, uint64_t peer_size,
                        const std::byte* reply, Clock::time_point deadline) {
  Result<PeerCred> cred = GetPeerCred(conn.get());
  SharedFd bell = ShareFd(std::move(conn));
  Result<PeerDmb> peer =
      PeerDmb::Attach(std::move(peer_memfd), peer_token, peer_size, bell);
  if (!peer.ok()) return peer.status();
  if (reply != nullptr) {
    USMC_RETURN_IF_ERROR(SendOffer(bell->get(), dmb, reply, deadline));
  }
  dmb.ConnectDoorbell(std::move(bell));
  Handover h{std::move(*peer), {}};
  if (cred.ok()) h.cred = *cred;
  return h;
}

}  // namespace

std::string HandoverSocketName(uint64_t server_token) {
  const uint64_t domain = kNameKey;
  char name[32];
  std::snprintf(name, sizeof name, "usmc-shm-%016llx",
                static_cast<unsigned long long>(
                    SipHash24(server_token, kNameKey, &domain, sizeof domain)));
  return name;
}

uint64_t HandoverProof(uint64_t server_token, uint64_t client_token,
                       uint16_t kind, uint64_t sender_size) {
  std::byte msg[16];
  Store64(msg, kProofDomain ^ kind);
  Store64(msg + 8, sender_size);
  return SipHash24(server_token, client_token, msg, sizeof msg);
}

void EncodeOffer(uint16_t kind, uint64_t sender_token, uint64_t sender_size,
                 uint64_t proof, std::byte (&out)[kOfferSize]) {
  StoreLe32(out, kOfferMagic);
  StoreLe16(out + 4, kOfferVersion);
  StoreLe16(out + 6, kind);
  Store64(out + 8, sender_token);
  Store64(out + 16, sender_size);
  Store64(out + 24, proof);
}

Result<HandoverListener> HandoverListener::Listen(const LocalDmb& dmb) {
  if (!dmb.registered()) {
    return Status(StatusCode::kFailedPrecondition, "DMB not registered");
  }
  return Listen(dmb.token());
}

Result<HandoverListener> HandoverListener::Listen(uint64_t token) {
  if (token == 0) {
    return Status(StatusCode::kFailedPrecondition, "no DMB token");
  }
  UniqueFd fd(base::OwnFd(
      ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)));
  if (!fd) return Status::FromErrno(errno, "socket AF_UNIX");
  sockaddr_un addr;
  socklen_t len = AbstractAddr(token, &addr);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    return Status::FromErrno(errno, "bind handover socket");
  }
  if (::listen(fd.get(), 8) != 0) return Status::FromErrno(errno, "listen");
  return HandoverListener(std::move(fd));
}

Result<Handover> HandoverListener::Accept(LocalDmb& dmb,
                                          const HandoverParams& params) {
  if (!dmb.registered() ||
      (params.peer_token != 0 && DmbFileSize(params.peer_dmb_size) == 0)) {
    return Status(StatusCode::kInvalidArgument, "shm handover parameters");
  }
  if (!fd_) return Status(StatusCode::kFailedPrecondition, "listener closed");
  const Clock::time_point deadline = DeadlineOf(params.timeout);
  std::vector<UniqueFd> pending;
  std::string last_rejection;
  auto reject = [&](size_t i, std::string why) {
    ++rejected_;  // closed unanswered: it learns nothing, gets nothing
    last_rejection = std::move(why);
    pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
  };
  for (;;) {
    // Take everyone queued; the oldest silent one makes room if needed.
    for (;;) {
      UniqueFd conn(base::OwnFd(::accept4(fd_.get(), nullptr, nullptr,
                                          SOCK_CLOEXEC | SOCK_NONBLOCK)));
      if (!conn) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return Status::FromErrno(errno, "accept4");
      }
      if (pending.size() == kMaxPending) reject(0, "silent");
      pending.push_back(std::move(conn));
    }
    for (size_t i = 0; i < pending.size();) {
      bool again = false;
      Result<Offer> o = TryRecvOffer(pending[i].get(), &again);
      if (again) {
        ++i;
        continue;
      }
      Status ok =
          o.ok() ? CheckClientOffer(*o, dmb.token(), params) : o.status();
      if (!ok.ok()) {
        reject(i, std::string(ok.message()));
        continue;
      }
      // The proof holds: this process knows our token, i.e. it holds the
      // TCP connection. Attach its DMB, then send ours.
      UniqueFd conn = std::move(pending[i]);
      rejected_ += pending.size() - 1;  // the rest were not the peer
      pending.clear();
      std::byte msg[kOfferSize];
      EncodeOffer(kOfferFromServer, 0, dmb.size(),
                  HandoverProof(dmb.token(), o->sender_token, kOfferFromServer,
                                dmb.size()),
                  msg);
      return Finish(dmb, std::move(conn), std::move(o->memfd), o->sender_token,
                    o->sender_size, msg, deadline);
    }
    std::vector<pollfd> pfds;
    pfds.push_back({fd_.get(), POLLIN, 0});
    for (const UniqueFd& c : pending) pfds.push_back({c.get(), POLLIN, 0});
    const int n = ::poll(pfds.data(), pfds.size(), MillisLeft(deadline));
    if (n < 0 && errno != EINTR) return Status::FromErrno(errno, "poll");
    if (n == 0) {
      rejected_ += pending.size();  // silent until the end
      Status s = Timeout("waiting for the peer");
      if (!last_rejection.empty()) {
        return Status(s.code(),
                      s.message() + " (rejected: " + last_rejection + ")");
      }
      return s;
    }
  }
}

Result<Handover> ConnectHandover(LocalDmb& dmb, const HandoverParams& params) {
  if (!dmb.registered() || params.peer_token == 0 ||
      DmbFileSize(params.peer_dmb_size) == 0) {
    return Status(StatusCode::kInvalidArgument, "shm handover parameters");
  }
  const Clock::time_point deadline = DeadlineOf(params.timeout);
  sockaddr_un addr;
  const socklen_t len = AbstractAddr(params.peer_token, &addr);
  UniqueFd conn;
  for (;;) {
    conn = UniqueFd(base::OwnFd(
        ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)));
    if (!conn) return Status::FromErrno(errno, "socket AF_UNIX");
    if (::connect(conn.get(), reinterpret_cast<sockaddr*>(&addr), len) == 0) {
      break;
    }
    // The server bound the name before its Accept went out: refused means
    // it is gone, and waiting would only give a squatter time to take the
    // name. A full backlog (impostors) is worth retrying.
    if (errno != EAGAIN && errno != EINTR) {
      return Status(
          errno == ECONNREFUSED || errno == ENOENT ? StatusCode::kUnavailable
                                                   : StatusCode::kSystem,
          std::string("shm handover: connect: ") + std::strerror(errno));
    }
    if (Clock::now() >= deadline) return Timeout("connecting");
    struct timespec pause = {0, 1000000};  // 1 ms
    ::nanosleep(&pause, nullptr);
  }
  // Only the server's token is secret here: its name was bound before the
  // token left the server, so what answers is the server (or, if the server
  // gave up and closed it, someone who cannot answer our proof and gets a
  // DMB we then never use).
  std::byte msg[kOfferSize];
  EncodeOffer(kOfferFromClient, dmb.token(), dmb.size(),
              HandoverProof(params.peer_token, dmb.token(), kOfferFromClient,
                            dmb.size()),
              msg);
  USMC_RETURN_IF_ERROR(SendOffer(conn.get(), dmb, msg, deadline));
  Result<Offer> o = RecvOffer(conn.get(), deadline);
  if (!o.ok()) return o.status();
  if (o->kind != kOfferFromServer ||
      !ConstantTimeEqual(o->proof,
                         HandoverProof(params.peer_token, dmb.token(),
                                       kOfferFromServer, o->sender_size))) {
    return Status(StatusCode::kPermissionDenied,
                  "shm handover: server offer does not prove both tokens");
  }
  if (o->sender_size != params.peer_dmb_size) {
    return Status(StatusCode::kDataLoss, "shm handover: peer DMB size");
  }
  return Finish(dmb, std::move(conn), std::move(o->memfd), params.peer_token,
                params.peer_dmb_size, nullptr, deadline);
}

// ---- Arena handover (offer v3) -------------------------------------------

namespace {

constexpr uint16_t kOfferUnknownPair = 3;

struct OfferV3 {
  uint16_t kind = 0;
  uint64_t token = 0;
  uint64_t size = 0;
  uint64_t proof = 0;
  uint64_t pair_id = 0;
  uint64_t arena_id = 0;
  uint64_t arena_size = 0;
  uint64_t slot = 0;
  uint64_t pair_proof = 0;
  PairKey key;
  UniqueFd fd;  // the sender's arena, only when it starts a pair
};

void EncodeV3(const OfferV3& o, std::byte (&out)[kOfferV3Size]) {
  std::memset(out, 0, sizeof out);
  StoreLe32(out, kOfferMagic);
  StoreLe16(out + 4, kOfferVersion3);
  StoreLe16(out + 6, o.kind);
  const uint64_t words[] = {o.token,    o.size,       o.proof, o.pair_id,
                            o.arena_id, o.arena_size, o.slot,  o.pair_proof,
                            o.key.k0,   o.key.k1};
  for (size_t i = 0; i < std::size(words); ++i)
    Store64(out + 8 + 8 * i, words[i]);
}

Status SendV3(int conn, const OfferV3& o, int fd, Clock::time_point deadline) {
  std::byte msg[kOfferV3Size];
  EncodeV3(o, msg);
  return SendFrame(conn, msg, fd, deadline);
}

// As TryRecvOffer, for a v3 offer: exactly kOfferV3Size bytes, at most one
// fd, owned at once.
Result<OfferV3> TryRecvV3(int conn, bool* again) {
  *again = false;
  std::byte msg[kOfferV3Size];
  alignas(cmsghdr) char cbuf[CMSG_SPACE(kMaxFdsAccepted * sizeof(int))];
  for (;;) {
    iovec iov{msg, sizeof msg};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    ssize_t n = ::recvmsg(conn, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      *again = true;
      return Status(StatusCode::kUnavailable, "no offer yet");
    }
    if (n < 0) return Status::FromErrno(errno, "recvmsg offer");
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
    if ((mh.msg_flags & MSG_CTRUNC) != 0 && fds.empty()) {
      USMC_RETURN_IF_ERROR(
          FdTableFull(conn, "shm handover: no fd for the peer's arena"));
    }
    if ((mh.msg_flags & MSG_CTRUNC) != 0 ||
        n != static_cast<ssize_t>(kOfferV3Size) || fds.size() > 1) {
      return Status(StatusCode::kDataLoss, "shm handover: malformed offer");
    }
    if (LoadLe32(msg) != kOfferMagic || LoadLe16(msg + 4) != kOfferVersion3) {
      return Status(StatusCode::kDataLoss, "shm handover: offer magic/version");
    }
    OfferV3 o;
    o.kind = LoadLe16(msg + 6);
    uint64_t* words[] = {&o.token,    &o.size,       &o.proof, &o.pair_id,
                         &o.arena_id, &o.arena_size, &o.slot,  &o.pair_proof,
                         &o.key.k0,   &o.key.k1};
    for (size_t i = 0; i < std::size(words); ++i) {
      *words[i] = Load64(msg + 8 + 8 * i);
    }
    if (Load64(msg + 88) != 0) {
      return Status(StatusCode::kDataLoss, "shm handover: reserved field");
    }
    if (!fds.empty()) o.fd = std::move(fds[0]);
    return o;
  }
}

Result<OfferV3> RecvV3(int conn, Clock::time_point deadline) {
  for (;;) {
    bool again = false;
    Result<OfferV3> o = TryRecvV3(conn, &again);
    if (!again) return o;
    USMC_RETURN_IF_ERROR(WaitFd(conn, POLLIN, deadline, "waiting for offer"));
  }
}

PairKey Mix(const PairKey& a, const PairKey& b) {
  return {a.k0 ^ b.k0, a.k1 ^ b.k1};
}

// What a first connection between two processes makes of the peer's arena
// and its half of the key: the peer's slot attached, our arena created and
// our slot taken.
struct NewPairParts {
  std::shared_ptr<ShmArena> own;
  std::shared_ptr<ShmArena> peer;
};

Result<NewPairParts> MakePairArenas(UniqueFd peer_fd, const OfferV3& o,
                                    uint64_t new_arena_size) {
  NewPairParts parts;
  Result<std::shared_ptr<ShmArena>> peer =
      ShmArena::AttachPeer(std::move(peer_fd), o.arena_size, o.arena_id);
  if (!peer.ok()) return peer.status();
  parts.peer = std::move(*peer);
  Result<std::shared_ptr<ShmArena>> own = ShmArena::Create(new_arena_size);
  if (!own.ok()) return own.status();
  parts.own = std::move(*own);
  return parts;
}

// Registers a pair both sides now share (if the peer's pid is known: a
// peer in another pid namespace gets per-connection arenas).
void KeepPair(ArenaPairs& pairs, ArenaHandoverResult& r, uint64_t id,
              const PairKey& key, pid_t peer_pid) {
  if (peer_pid <= 0) return;
  auto pair = std::make_shared<ArenaPair>();
  pair->id = id;
  pair->key = key;
  pair->peer_pid = peer_pid;
  pair->own = r.local.arena();
  pair->peer = r.peer.arena();
  if (pairs.Add(pair).ok()) r.use = PairUse(pairs, std::move(pair));
}

}  // namespace

Result<ArenaHandoverResult> ArenaAccept(HandoverListener& l, ArenaPairs& pairs,
                                        const ArenaParams& p) {
  if (p.own_token == 0 || DmbFileSize(p.own_size) == 0 ||
      (p.peer_token != 0 && DmbFileSize(p.peer_size) == 0)) {
    return Status(StatusCode::kInvalidArgument, "shm handover parameters");
  }
  if (l.fd() < 0) {
    return Status(StatusCode::kFailedPrecondition, "listener closed");
  }
  const Clock::time_point deadline = DeadlineOf(p.timeout);
  std::vector<UniqueFd> pending;
  auto drop = [&](size_t i) {
    pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
  };
  for (;;) {
    for (;;) {
      UniqueFd conn(base::OwnFd(
          ::accept4(l.fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)));
      if (!conn) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return Status::FromErrno(errno, "accept4");
      }
      if (pending.size() == kMaxPending) drop(0);
      pending.push_back(std::move(conn));
    }
    for (size_t i = 0; i < pending.size();) {
      bool again = false;
      Result<OfferV3> o = TryRecvV3(pending[i].get(), &again);
      if (again) {
        ++i;
        continue;
      }
      // The token proof first: who cannot prove our token gets nothing,
      // not even an answer.
      if (!o.ok() || o->kind != kOfferFromClient || o->token == 0 ||
          DmbFileSize(o->size) == 0 ||
          !ConstantTimeEqual(
              o->proof, HandoverProof(p.own_token, o->token, kOfferFromClient,
                                      o->size)) ||
          (p.peer_token != 0 &&
           (o->token != p.peer_token || o->size != p.peer_size))) {
        drop(i);
        continue;
      }
      UniqueFd conn = std::move(pending[i]);
      pending.clear();
      ArenaHandoverResult r;
      Result<PeerCred> cred = GetPeerCred(conn.get());
      if (cred.ok()) r.cred = *cred;
      SharedFd bell = ShareFd(std::move(conn));
      OfferV3 offer = std::move(*o);
      for (bool answered_unknown = false;;) {
        OfferV3 reply;
        reply.kind = kOfferFromServer;
        reply.size = p.own_size;
        reply.proof = HandoverProof(p.own_token, offer.token, kOfferFromServer,
                                    p.own_size);
        reply.pair_id = offer.pair_id;
        if (offer.fd) {  // the first connection between our two processes
          if (offer.pair_id == 0 || offer.pair_proof != 0) {
            return Status(StatusCode::kDataLoss,
                          "shm handover: bad first offer");
          }
          Result<NewPairParts> parts =
              MakePairArenas(std::move(offer.fd), offer, p.new_arena_size);
          if (!parts.ok()) return parts.status();
          Result<PeerDmb> peer = PeerDmb::AttachSlot(
              parts->peer, offer.slot, offer.token, offer.size, bell);
          if (!peer.ok()) return peer.status();
          Result<LocalDmb> local =
              LocalDmb::InArena(parts->own, p.own_size, p.own_token);
          if (!local.ok()) return local.status();
          Result<PairKey> half = NewPairKey();
          if (!half.ok()) return half.status();
          reply.arena_id = parts->own->id();
          reply.arena_size = parts->own->file_size();
          reply.slot = local->slot_offset();
          reply.key = *half;
          USMC_RETURN_IF_ERROR(
              SendV3(bell->get(), reply, parts->own->memfd(), deadline));
          r.local = std::move(*local);
          r.peer = std::move(*peer);
          r.new_pair = true;
          KeepPair(pairs, r, offer.pair_id, Mix(offer.key, *half), r.cred.pid);
          break;
        }
        // A claim: the pair must exist, with this peer, and the claim must
        // prove its key.
        std::shared_ptr<ArenaPair> pair = pairs.ById(offer.pair_id, r.cred.pid);
        if (pair == nullptr ||
            !ConstantTimeEqual(
                offer.pair_proof,
                PairProof(pair->key, p.own_token, offer.token, kOfferFromClient,
                          offer.pair_id, offer.slot, offer.size))) {
          if (answered_unknown) {
            return Status(StatusCode::kDataLoss,
                          "shm handover: a claim again after unknown pair");
          }
          // Nothing of the pair in the answer. The client proved our token:
          // it may start a pair of its own, on this socket, within the
          // same deadline (one more round trip, no fallback).
          OfferV3 unknown;
          unknown.kind = kOfferUnknownPair;
          USMC_RETURN_IF_ERROR(SendV3(bell->get(), unknown, -1, deadline));
          answered_unknown = true;
          Result<OfferV3> again = RecvV3(bell->get(), deadline);
          if (!again.ok()) return again.status();
          if (again->kind != kOfferFromClient || again->token != offer.token ||
              again->size != offer.size ||
              !ConstantTimeEqual(again->proof, offer.proof) || !again->fd) {
            return Status(StatusCode::kDataLoss,
                          "shm handover: bad offer after unknown pair");
          }
          offer = std::move(*again);
          continue;
        }
        Result<PeerDmb> peer = PeerDmb::AttachSlot(
            pair->peer, offer.slot, offer.token, offer.size, bell);
        if (!peer.ok()) return peer.status();
        Result<LocalDmb> local =
            LocalDmb::InArena(pair->own, p.own_size, p.own_token);
        if (!local.ok()) return local.status();
        reply.slot = local->slot_offset();
        reply.pair_proof =
            PairProof(pair->key, p.own_token, offer.token, kOfferFromServer,
                      offer.pair_id, reply.slot, p.own_size);
        USMC_RETURN_IF_ERROR(SendV3(bell->get(), reply, -1, deadline));
        r.local = std::move(*local);
        r.peer = std::move(*peer);
        r.use = PairUse(pairs, std::move(pair));
        break;
      }
      r.local.ConnectDoorbell(std::move(bell));
      return r;
    }
    std::vector<pollfd> pfds;
    pfds.push_back({l.fd(), POLLIN, 0});
    for (const UniqueFd& c : pending) pfds.push_back({c.get(), POLLIN, 0});
    const int n = ::poll(pfds.data(), pfds.size(), MillisLeft(deadline));
    if (n < 0 && errno != EINTR) return Status::FromErrno(errno, "poll");
    if (n == 0) return Timeout("waiting for the peer");
  }
}

Result<ArenaHandoverResult> ArenaConnect(ArenaPairs& pairs,
                                         const ArenaParams& p) {
  if (p.own_token == 0 || DmbFileSize(p.own_size) == 0 || p.peer_token == 0 ||
      DmbFileSize(p.peer_size) == 0) {
    return Status(StatusCode::kInvalidArgument, "shm handover parameters");
  }
  const Clock::time_point deadline = DeadlineOf(p.timeout);
  sockaddr_un addr;
  const socklen_t len = AbstractAddr(p.peer_token, &addr);
  UniqueFd conn;
  for (;;) {
    conn = UniqueFd(base::OwnFd(
        ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)));
    if (!conn) return Status::FromErrno(errno, "socket AF_UNIX");
    if (::connect(conn.get(), reinterpret_cast<sockaddr*>(&addr), len) == 0) {
      break;
    }
    if (errno != EAGAIN && errno != EINTR) {
      return Status(
          errno == ECONNREFUSED || errno == ENOENT ? StatusCode::kUnavailable
                                                   : StatusCode::kSystem,
          std::string("shm handover: connect: ") + std::strerror(errno));
    }
    if (Clock::now() >= deadline) return Timeout("connecting");
    struct timespec pause = {0, 1000000};
    ::nanosleep(&pause, nullptr);
  }
  ArenaHandoverResult r;
  Result<PeerCred> cred = GetPeerCred(conn.get());
  if (cred.ok()) r.cred = *cred;
  // The listener's pid picks the pair; the server checks our claim with
  // the pair's key, we check its answer the same way. A pair the server
  // no longer knows is dropped and a new one started on this socket.
  std::shared_ptr<ArenaPair> pair = pairs.ForPeer(r.cred.pid);
  for (;;) {
    OfferV3 offer;
    offer.kind = kOfferFromClient;
    offer.token = p.own_token;
    offer.size = p.own_size;
    offer.proof =
        HandoverProof(p.peer_token, p.own_token, kOfferFromClient, p.own_size);
    std::shared_ptr<ShmArena> own;
    int send_fd = -1;
    if (pair != nullptr) {
      own = pair->own;
      offer.pair_id = pair->id;
    } else {
      Result<std::shared_ptr<ShmArena>> a = ShmArena::Create(p.new_arena_size);
      if (!a.ok()) return a.status();
      own = std::move(*a);
      Result<uint64_t> id = NewDmbToken();
      if (!id.ok()) return id.status();
      Result<PairKey> half = NewPairKey();
      if (!half.ok()) return half.status();
      offer.pair_id = *id;
      offer.arena_id = own->id();
      offer.arena_size = own->file_size();
      offer.key = *half;
      send_fd = own->memfd();
    }
    Result<LocalDmb> local = LocalDmb::InArena(own, p.own_size, p.own_token);
    if (!local.ok()) return local.status();
    offer.slot = local->slot_offset();
    if (pair != nullptr) {
      offer.pair_proof =
          PairProof(pair->key, p.peer_token, p.own_token, kOfferFromClient,
                    pair->id, offer.slot, p.own_size);
    }
    USMC_RETURN_IF_ERROR(SendV3(conn.get(), offer, send_fd, deadline));
    Result<OfferV3> o = RecvV3(conn.get(), deadline);
    if (!o.ok()) return o.status();
    if (o->kind == kOfferUnknownPair && pair != nullptr && !o->fd) {
      // The server dropped or retired it (LRU, another image after exec):
      // so do we, and the same socket carries a first-time offer.
      pairs.Retire(pair->id);
      pair.reset();
      continue;
    }
    if (o->kind != kOfferFromServer ||
        !ConstantTimeEqual(
            o->proof, HandoverProof(p.peer_token, p.own_token, kOfferFromServer,
                                    o->size))) {
      return Status(StatusCode::kPermissionDenied,
                    "shm handover: server offer does not prove both tokens");
    }
    if (o->size != p.peer_size || o->pair_id != offer.pair_id) {
      return Status(StatusCode::kDataLoss,
                    "shm handover: peer DMB size or pair");
    }
    SharedFd bell = ShareFd(std::move(conn));
    if (pair != nullptr) {
      if (o->fd || !ConstantTimeEqual(o->pair_proof,
                                      PairProof(pair->key, p.peer_token,
                                                p.own_token, kOfferFromServer,
                                                pair->id, o->slot, o->size))) {
        return Status(StatusCode::kPermissionDenied,
                      "shm handover: server does not prove the pair");
      }
      Result<PeerDmb> peer =
          PeerDmb::AttachSlot(pair->peer, o->slot, p.peer_token, o->size, bell);
      if (!peer.ok()) return peer.status();
      r.peer = std::move(*peer);
      r.use = PairUse(pairs, std::move(pair));
    } else {
      if (!o->fd || o->pair_proof != 0) {
        return Status(StatusCode::kDataLoss, "shm handover: bad first answer");
      }
      Result<std::shared_ptr<ShmArena>> peer_arena =
          ShmArena::AttachPeer(std::move(o->fd), o->arena_size, o->arena_id);
      if (!peer_arena.ok()) return peer_arena.status();
      Result<PeerDmb> peer = PeerDmb::AttachSlot(*peer_arena, o->slot,
                                                 p.peer_token, o->size, bell);
      if (!peer.ok()) return peer.status();
      r.peer = std::move(*peer);
      r.new_pair = true;
      r.local = std::move(*local);
      KeepPair(pairs, r, offer.pair_id, Mix(offer.key, o->key), r.cred.pid);
    }
    if (!r.local.registered()) r.local = std::move(*local);
    r.local.ConnectDoorbell(std::move(bell));
    return r;
  }
}

}  // namespace usmc::dev
