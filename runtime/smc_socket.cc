#include "runtime/smc_socket.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <variant>

#include "base/owned_fd.h"
#include "dev/shm_device.h"
#include "dev/shm_dmb.h"
#include "dev/shm_identity.h"
#include "engine/clc_common.h"
#include "runtime/config.h"
#include "runtime/lgr_registry.h"
#include "wire/cdc.h"
#include "wire/clc.h"
#include "wire/reason.h"

namespace usmc::runtime {
namespace {

// Large sends and receives move in steps of this size, each published on
// its own (a CDC update): a 128 KiB write into a 256 KiB ring otherwise
// holds the reader, and a 128 KiB read holds a blocked writer, for the
// whole copy.
constexpr size_t kCopyStep = 64 * 1024;
// Sends up to this size are placed whole, or not at all yet (SendSmc), as
// a pipe's writes up to PIPE_BUF.
constexpr size_t kAtomicSendMax = 4096;

// Bumped by every fork of a process that has SmcSockets (pthread_atfork)
// and by the exec handover: see SmcSocket::MaybeShared. Never reset: a
// sibling that published and exited leaves our state behind what the peer
// knows until we adopt it once.
std::atomic<uint32_t> g_shared{0};

void CountFork() { g_shared.fetch_add(1, std::memory_order_seq_cst); }

// The peer's RoCEv2 GID as SMC-Rv2 over IPv4 uses it (::ffff:a.b.c.d): the
// key of our link group with it. Zero if the peer is not IPv4.
wire::Gid PeerGid(int fd) {
  wire::Gid g{};
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return g;
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    g[10] = g[11] = 0xff;
    std::memcpy(g.data() + 12, &in->sin_addr, 4);
  } else if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    std::memcpy(g.data(), &in6->sin6_addr, 16);
  }
  return g;
}

uint64_t SeedFromKernel() {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) {
    seed = static_cast<uint64_t>(
        std::chrono::steady_clock::now().time_since_epoch().count());
  }
  return seed;
}

// The engine's SMC-D event from the device's CDC (SMC-D: the 32-byte area).
engine::CdcArrived ToArrived(const dev::CdcBytes& cdc) {
  engine::CdcArrived e;
  std::memcpy(e.area.data(), cdc.data.data(),
              std::min<size_t>(cdc.len, e.area.size()));
  return e;
}

engine::EngineParams MakeSmcdParams(const Options& opts) {
  engine::EngineParams p;
  p.role = opts.role;
  p.smcd_enabled = opts.smcd_enabled;
  Result<dev::ShmGid> gid = dev::LocalShmGid();
  if (gid.ok()) {
    p.device = {
        .gid = gid->gid, .gid_ext = gid->gid_ext, .chid = dev::kShmChid};
  } else {
    p.smcd_enabled = false;  // no device: the engine declines NOSMCDDEV
    if (OutOfFds(gid.status())) p.no_smcd_reason = wire::kReasonNoFd;
  }
  p.eid = wire::MakeClcEid(opts.eid);
  char host[65] = {};
  if (gethostname(host, sizeof host - 1) == 0) {
    p.hostname = wire::MakeClcHostname(host);
  }
  p.dmb_size = opts.dmb_size;
  if (opts.dmb_follows_held) {
    p.dmb_size =
        std::min(p.dmb_size, HeldDmbSize(dev::DmbBudget::Process().used()));
  }
  p.clc_timeout = opts.clc_timeout;
  return p;
}

}  // namespace

struct SmcSocket::Made {
  engine::EngineParams params;
  wire::Gid peer_gid{};
};

SmcSocket::Made SmcSocket::MakeParams(int fd, const Options& opts) {
  Made m;
  m.params = MakeSmcdParams(opts);
  if (opts.smcr != nullptr) {
    m.peer_gid = PeerGid(fd);
    m.params = opts.smcr->ConnParams(m.params, m.peer_gid);
  }
  return m;
}

SmcSocket::SmcSocket(int fd, const Options& opts)
    : SmcSocket(fd, opts, MakeParams(fd, opts)) {}

SmcSocket::SmcSocket(int fd, const Options& opts, const Made& made)
    : fd_(fd),
      opts_(opts),
      entropy_(SeedFromKernel()),
      conn_(made.params, &entropy_) {
  if (opts.smcr != nullptr)
    smcr_ = opts.smcr->NewConn(made.params, made.peer_gid);
  // The device's process-wide values (DMB budget, spin) come from it.
  (void)ProcessConfig();
  UseDevice(dev::ShmDevice::Create(
      opts.role == engine::Role::kServer,
      {.size = opts.roomy_dmb_size > 0
                   ? engine::SmcdDmbSizeFor(opts.roomy_dmb_size)
                   : 0,
       .budget = opts.roomy_budget}));
  // The DMB's CDC area at registration: all zero.
  last_area_.len = wire::kSmcdCdcLen;
  // The app may close every fd it does not know of (close_range before
  // exec): ours stays.
  base::MarkOwnedFd(fd_);
  // Before any fork that could share this socket.
  static const bool counted =
      ::pthread_atfork(CountFork, nullptr, nullptr) == 0;
  if (!counted) NoteShared();  // cannot tell: always look
}

bool SmcSocket::MaybeShared() {
  return g_shared.load(std::memory_order_seq_cst) != 0;
}

void SmcSocket::NoteShared() { CountFork(); }

SmcSocket::~SmcSocket() {
  if (!tcp_closed_) Close();
  // Only now: a sleeper may hold the number in its poll set until then.
  if (decided_fd_ >= 0) base::CloseOwnedFd(decided_fd_);
}

engine::TimePoint SmcSocket::Now() {
  return std::chrono::duration_cast<engine::TimePoint>(
      Clock::now().time_since_epoch());
}

int SmcSocket::MsLeft(engine::TimePoint now, engine::TimePoint deadline) {
  if (deadline <= now) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
  return static_cast<int>(std::min<int64_t>(ms.count(), 1 << 30));
}

engine::Mode SmcSocket::mode() const {
  std::lock_guard lock(mu_);
  return conn_.mode();
}

void SmcSocket::Feed(const engine::Event& e) {
  std::vector<engine::Event> answers;
  // Only the handshake and SMC-R's wait for a close CDC after TCP ended
  // have timers; a clock read per send or receive costs more than the rest
  // of the engine's step on some VMs.
  const bool timed = conn_.mode() == engine::Mode::kHandshake ||
                     std::holds_alternative<engine::Timeout>(e) ||
                     std::holds_alternative<engine::TcpEof>(e);
  const engine::TimePoint now = timed ? Now() : engine::TimePoint{};
  exec_->Execute(conn_.OnEvent(e, now), answers);
  if (error_ == 0) error_ = exec_->error();
  if (exec_->fallback() && exec_->fallback()->declined && !decline_noted_) {
    decline_noted_ = true;
    late_clc_.store(true, std::memory_order_release);
  }
  for (const engine::Event& a : answers) Feed(a);
}

void SmcSocket::UseDevice(std::unique_ptr<dev::Device> d) {
  exec_.reset();
  dev_ = std::move(d);
  exec_.emplace(*dev_, static_cast<TcpSide&>(*this),
                ExecutorOptions{.attach_timeout = opts_.handover_timeout,
                                .smcr = smcr_.get()});
}

void SmcSocket::ConsumeClc(size_t len) {
  // The bytes are in the socket: they were peeked.
  std::byte sink[256];
  size_t left = len;
  while (left > 0) {
    ssize_t n = ::recv(fd_, sink, std::min(left, sizeof sink), MSG_DONTWAIT);
    if (n <= 0 && errno == EINTR) continue;
    if (n <= 0) break;
    left -= static_cast<size_t>(n);
  }
  consumed_ += len;
}

void SmcSocket::ResetTcp() {
  struct linger l = {1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::shutdown(fd_, SHUT_RDWR);
  fatal_ = true;
}

// ---- SMC-D data path ------------------------------------------------------

bool SmcSocket::SmcrChosen() const { return smcr_ && &Dev() == smcr_.get(); }

bool SmcSocket::is_smcr() const {
  std::lock_guard lock(mu_);
  return SmcrChosen();
}

bool SmcSocket::FeedSmcrEvents() {
  if (!smcr_ || forked_away_ || tcp_closed_) return false;
  std::vector<engine::Event> events = smcr_->TakeEvents();
  for (const engine::Event& e : events) {
    if (std::holds_alternative<engine::DeviceFailed>(e) && conn_.PeerClosed()) {
      // The peer closed, then its link group ended (its process exited:
      // TerminateAll's DELETE_LINK comes behind its close CDC on the same
      // QP). Its bytes are all in our RMB: as with SMC-D's gone peer
      // (OnPeerGone), the orderly close is final and the app reads the
      // rest, then EOF, instead of losing it to an abort.
      continue;
    }
    if (std::holds_alternative<engine::SmcrCdcReceived>(e) ||
        std::holds_alternative<engine::DeviceFailed>(e) ||
        std::holds_alternative<engine::Timeout>(e)) {
      peer_changes_.fetch_add(1, std::memory_order_relaxed);
    }
    Feed(e);
  }
  return !events.empty();
}

void SmcSocket::Refresh() {
  if (SmcrChosen()) {
    // SMC-R: what the link brought (CDCs, completions, the group's end)
    // waits on the connection's queue, in order.
    if (conn_.mode() == engine::Mode::kSmc) FeedSmcrEvents();
    return;
  }
  // Once the peer is gone, its last words are final: OnPeerGone fed the
  // close its death implies (PeerVanished).
  if (conn_.mode() != engine::Mode::kSmc || !Dev().registered() || peer_gone_) {
    return;
  }
  if (Dev().attached() && MaybeShared()) AdoptSiblingProgress();
  const dev::CdcBytes cdc = Dev().LoadCdc();
  if (cdc == last_area_) return;
  last_area_ = cdc;
  peer_changes_.fetch_add(1, std::memory_order_relaxed);
  Feed(ToArrived(cdc));
}

void SmcSocket::AdoptSiblingProgress() {
  dev::CdcBytes now;
  if (!Dev().LoadForeignPost(now)) return;
  // (After exec nothing was published by this image yet: the area then
  // matches the restored state and the engine's resync changes nothing.)
  engine::SiblingPublished e;
  e.published = ToArrived(now).area;
  e.peer_area = ToArrived(Dev().LoadCdc()).area;
  Feed(e);
}

bool SmcSocket::Nonblocking(int flags) const {
  return nonblocking_ || (flags & MSG_DONTWAIT);
}

void SmcSocket::SetNonblocking(bool on) {
  std::lock_guard lock(mu_);
  nonblocking_ = on;
}

bool SmcSocket::WaitForPeer(int timeout_ms) {
  if (!Dev().registered() || peer_gone_) {
    errno = EAGAIN;
    return false;
  }
  if (doorbell_waiter_) {
    // Another thread sleeps on the doorbell and notifies after each
    // wakeup; the slice bounds a missed notification.
    auto slice = std::chrono::milliseconds(
        timeout_ms < 0 ? 100 : std::min(timeout_ms, 100));
    peer_changed_.wait_for(mu_, slice);
    return true;
  }
  const dev::CdcBytes seen = last_area_;
  dev::Device& d = Dev();
  auto timeout =
      timeout_ms < 0
          ? std::chrono::nanoseconds::max() / 2
          : std::chrono::nanoseconds(std::chrono::milliseconds(timeout_ms));
  doorbell_waiter_ = true;
  mu_.unlock();
  SmcrConn* const link = SmcrChosen() ? smcr_.get() : nullptr;
  auto moved = [&] {
    return link != nullptr ? link->HasEvents() : !(d.LoadCdc() == seen);
  };
  dev::WaitResult r =
      d.Wait(moved, timeout,
             {.extra_fd = tcp_ended_ ? -1 : fd_, .return_on_signal = true});
  mu_.lock();
  doorbell_waiter_ = false;
  bool progressed = true;
  switch (r) {
    case dev::WaitResult::kReady:
      Refresh();
      break;
    case dev::WaitResult::kTimedOut:
      errno = EAGAIN;
      progressed = false;
      break;
    case dev::WaitResult::kInterrupted:
      errno = EINTR;
      progressed = false;
      break;
    case dev::WaitResult::kPeerGone:
    case dev::WaitResult::kExtraFdReady:
      // The TCP socket stays silent while SMC-D runs: readable means the
      // peer's process closed it (exit, kill) or broke the protocol.
      OnPeerGone();
      break;
  }
  peer_changed_.notify_all();
  return progressed;
}

void SmcSocket::OnPeerGone() {
  if (peer_gone_) return;
  if (SmcrChosen()) {
    OnSmcrTcpEnded();
    return;
  }
  Refresh();          // it may have published its close just before exiting
  peer_gone_ = true;  // from now on the area is ours alone (see Refresh)
  if (conn_.PeerClosed()) return;  // an orderly close: the engine has it
  // The peer's process went away without closing (exit, kill). The kernel
  // closed its TCP socket for it; its fds close one by one, so give the
  // FIN a moment to follow the doorbell's hangup.
  struct pollfd p = {fd_, POLLIN, 0};
  ::poll(&p, 1, 100);
  char c;
  ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0 || (n < 0 && errno == EAGAIN)) {
    // TCP bytes during SMC-D, or a live TCP socket behind a dead doorbell:
    // the peer broke the protocol.
    Feed(engine::DeviceFailed{});
    return;
  }
  // The engine decides what its death means (a close, or a reset if it
  // left data of ours unread), as TCP does for a dying process.
  peer_changes_.fetch_add(1, std::memory_order_relaxed);
  Feed(engine::PeerVanished{});
}

void SmcSocket::OnSmcrTcpEnded() {
  if (tcp_ended_) return;
  char c;
  const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    return;  // nothing happened on TCP after all
  }
  tcp_ended_ = true;  // readable for good now: no longer a wakeup
  if (n > 0) {
    // TCP bytes after the handshake: the peer broke the protocol.
    peer_changes_.fetch_add(1, std::memory_order_relaxed);
    Feed(engine::DeviceFailed{});
    return;
  }
  // The peer's FIN or RST. Its close CDC was posted before (the kernel
  // closes its CLC socket right behind it, and so do we) but may still be
  // in flight or in our completion queue: take what is there, then let
  // the engine wait for it, bounded (engine::kSmcrPeerCloseWait; the
  // registry queues the Timeout). Bytes already in our RMB stay readable
  // whatever it decides.
  if (opts_.smcr != nullptr) (void)opts_.smcr->Progress();
  Refresh();
  if (conn_.PeerClosed()) return;
  Feed(engine::TcpEof{});
}

ssize_t SmcSocket::Send(const void* buf, size_t len, int flags) {
  std::lock_guard lock(mu_);
  if (HandshakingLocked()) {
    (void)ProgressLocked(0);
    if (HandshakingLocked() && shut_wr_pending_) {
      // As TCP after shutdown(SHUT_WR), whatever the handshake does.
      if (!(flags & MSG_NOSIGNAL)) ::raise(SIGPIPE);
      errno = EPIPE;
      return -1;
    }
    // Early data (see the header): all of it, or for a non-blocking call
    // what fits; a blocking call that does not fit waits for the decision.
    const size_t room = EarlyRoom();
    if (room > 0 && !(flags & MSG_OOB) && (room >= len || Nonblocking(flags))) {
      return SendEarly(static_cast<const std::byte*>(buf), len);
    }
  }
  if (!Settle(Nonblocking(flags))) return -1;
  if (conn_.mode() != engine::Mode::kSmc || tcp_closed_) {
    return TcpUnusable() ? -1 : ::send(fd_, buf, len, flags);
  }
  return SendSmc(static_cast<const std::byte*>(buf), len, flags);
}

ssize_t SmcSocket::SendSmc(const std::byte* buf, size_t len, int flags) {
  size_t done = 0;
  for (;;) {
    Refresh();
    if (int err = conn_.SendError(); err != 0) {
      if (done > 0) return static_cast<ssize_t>(done);
      // TCP reports the socket error once (ECONNRESET: no SIGPIPE), then
      // EPIPE with SIGPIPE.
      if (err == conn_.PendingError()) Feed(engine::AppErrorReported{});
      if (err == EPIPE && !(flags & MSG_NOSIGNAL)) ::raise(SIGPIPE);
      errno = err;
      return -1;
    }
    if (done == len && len > 0) return static_cast<ssize_t>(done);
    if (len == 0) return 0;
    if (conn_.SendDiscards()) {
      // The peer closed: TCP takes these bytes and the peer resets the
      // connection; the next send fails.
      if (done > 0) return static_cast<ssize_t>(done);
      Feed(engine::AppSentToClosedPeer{});
      return static_cast<ssize_t>(len);
    }
    // A blocking send of a record that does not fit yet places nothing and
    // waits for room for all of it: placed in part, the rest would wait
    // with mu_ released, and another thread's send would land in the
    // middle (8 threads sending 64-byte records split them 3.3 times as
    // often as TCP, whose send waits for whole buffers of memory). Bounded
    // so that room always comes: a peer that read everything has confirmed
    // all but its update limit (at most a tenth of the ring, >= 2304
    // bytes), which leaves well over kAtomicSendMax free in any DMB.
    const bool whole = done == 0 && len <= kAtomicSendMax &&
                       !Nonblocking(flags) && conn_.SendSpace() < len;
    if (whole) {
      // Tell the peer we wait ("writer blocked": it confirms what it reads).
      Feed(engine::AppSent{.len = 0, .wanted_more = true});
      if (!WaitForPeer(-1)) return -1;
      continue;
    }
    if (conn_.SendSpace() > 0) {
      // In steps: the peer may start reading the first bytes of a large
      // send while we copy the rest (see kCopyStep).
      const size_t step = std::min(len - done, kCopyStep);
      engine::CopyPlan plan = conn_.PlanSend(step);
      if (!exec_->CopyToPeer(plan, buf + done)) {
        errno = EIO;  // an engine bug, never a peer's doing
        return -1;
      }
      done += plan.total;
      // wanted_more (the peer's "writer blocked"): the ring, not the step,
      // cut this copy short.
      Feed(engine::AppSent{.len = plan.total,
                           .wanted_more = done < len && plan.total < step,
                           .urgent = (flags & MSG_OOB) && done == len});
      continue;
    }
    if (Nonblocking(flags)) {
      if (done > 0) return static_cast<ssize_t>(done);
      errno = EAGAIN;
      return -1;
    }
    if (!WaitForPeer(-1)) return done > 0 ? static_cast<ssize_t>(done) : -1;
  }
}

ssize_t SmcSocket::Recv(void* buf, size_t len, int flags) {
  std::unique_lock lock(mu_);
  if (HandshakingLocked()) {
    (void)ProgressLocked(0);
    // As TCP after shutdown(SHUT_RD): end of stream (no byte of the peer's
    // app can have arrived before the decision).
    if (HandshakingLocked() && shut_rd_pending_) return 0;
  }
  if (!Settle(Nonblocking(flags))) return -1;
  if (conn_.mode() != engine::Mode::kSmc || tcp_closed_) {
    if (TcpUnusable()) return -1;
    if (late_clc_pending()) {
      const bool wait = !Nonblocking(flags);
      lock.unlock();  // a wait here must not hold up our sends
      if (DropLateClc(fd_, wait) != LateClc::kDone) return -1;
    }
    return ::recv(fd_, buf, len, flags);
  }
  return RecvSmc(static_cast<std::byte*>(buf), len, flags);
}

ssize_t SmcSocket::RecvSmc(std::byte* buf, size_t len, int flags) {
  const bool peek = flags & MSG_PEEK;
  const bool waitall = (flags & MSG_WAITALL) && !peek;
  if (flags & MSG_OOB) {
    Refresh();
    std::byte b{0};
    int err = conn_.ReadUrgent(peek, &b);
    if (err != 0) {
      errno = err;
      return -1;
    }
    if (len == 0) return 0;
    buf[0] = b;
    return 1;
  }
  // SO_RCVLOWAT: a blocking recv returns once min(len, lowat) bytes came
  // (TCP's target); MSG_PEEK looks only once that many are there.
  const size_t lowat = std::min<size_t>(len, EffectiveLowat());
  const size_t target = waitall ? len : lowat;
  size_t done = 0;
  for (;;) {
    Refresh();
    engine::RecvStatus st = conn_.RecvState();
    std::byte urgent{0};
    const bool look = !peek || st.readable >= lowat || st.eof || st.error ||
                      Nonblocking(flags) ||
                      conn_.ReadUrgent(/*peek=*/true, &urgent) == 0;
    if (st.readable > 0 && done < len && look) {
      // A read stops at the urgent mark, as TCP's does.
      if (done > 0 && conn_.AtUrgentMark()) return static_cast<ssize_t>(done);
      // In steps (not for MSG_PEEK, which consumes nothing): a blocked
      // sender gets room after the first step, not after the whole copy.
      const size_t step = peek ? len - done : std::min(len - done, kCopyStep);
      engine::CopyPlan plan = conn_.PlanRecv(step);
      if (!exec_->CopyFromOwn(plan, buf + done)) {
        errno = EIO;
        return -1;
      }
      done += plan.total;
      // Shared with another process (fork): each read is confirmed at once,
      // so a sibling that reads next starts after it.
      if (!peek) Feed(engine::AppConsumed{plan.total, MaybeShared()});
      if (peek || done == len) return static_cast<ssize_t>(done);
      // Took all there was (the step was not the limit): as one copy would.
      if (done >= target && plan.total < step) {
        return static_cast<ssize_t>(done);
      }
      continue;
    }
    // A full step, and nothing more has come since.
    if (done > 0 && done >= target) return static_cast<ssize_t>(done);
    if (len == 0) return 0;
    if (done > 0 && (st.eof || st.error)) return static_cast<ssize_t>(done);
    if (st.error) {
      if (!peek) Feed(engine::AppErrorReported{});  // TCP: reported once
      errno = st.error;
      return -1;
    }
    if (st.eof) return 0;
    if (conn_.AtUrgentMark() && done > 0) return static_cast<ssize_t>(done);
    if (Nonblocking(flags)) {
      if (done > 0) return static_cast<ssize_t>(done);
      errno = EAGAIN;
      return -1;
    }
    if (!WaitForPeer(-1)) return done > 0 ? static_cast<ssize_t>(done) : -1;
  }
}

short SmcSocket::Poll(short events) {
  std::lock_guard lock(mu_);
  if (tcp_closed_) return forked_away_ ? POLLERR | POLLHUP : POLLNVAL;
  if (HandshakingLocked()) {
    (void)ProgressLocked(0);
    // Undecided: not readable yet, writable only into early data (an app
    // byte on the TCP socket now would be taken for CLC).
    if (HandshakingLocked()) {
      return static_cast<short>(TcpHupErr() | EarlyPollBits(events));
    }
  }
  if (conn_.mode() != engine::Mode::kSmc) {
    // A late CLC message alone does not make the socket readable.
    if (late_clc_pending()) (void)DropLateClc(fd_, /*wait=*/false);
    struct pollfd p = {fd_, events, 0};
    return ::poll(&p, 1, 0) > 0 ? p.revents : 0;
  }
  Refresh();
  return SmcPollBits(events);
}

LateClc SmcSocket::DropLateClc(int fd, bool wait) {
  if (!late_clc_pending()) return LateClc::kDone;
  std::lock_guard lock(late_mu_);
  if (!late_clc_pending()) return LateClc::kDone;  // another thread did
  const LateClc r = runtime::DropLateClc(fd, wait);
  if (r == LateClc::kDone) late_clc_.store(false, std::memory_order_release);
  return r;
}

uint32_t SmcSocket::EffectiveLowat() const {
  // Never more than the ring holds: a larger mark could never be reached.
  const uint64_t size = Dev().own().size;
  const uint64_t ring = size > wire::kSmcdCdcLen ? size - wire::kSmcdCdcLen : 1;
  return static_cast<uint32_t>(
      std::clamp<uint64_t>(static_cast<uint64_t>(rcv_lowat_), 1, ring));
}

short SmcSocket::SmcPollBits(short events) {
  short r = 0;
  engine::RecvStatus st = conn_.RecvState();
  if (st.readable >= EffectiveLowat() || st.eof || st.error) {
    r |= POLLIN | POLLRDNORM;
  }
  // As tcp_poll: writable also when a send would fail (or be discarded),
  // RDHUP once no more bytes will come, HUP when both directions are over,
  // ERR while the connection's error is pending.
  if (conn_.SendSpace() > 0 || conn_.SendError() != 0 || conn_.SendDiscards()) {
    r |= POLLOUT | POLLWRNORM;
  }
  std::byte urgent{0};
  if (conn_.ReadUrgent(/*peek=*/true, &urgent) == 0) r |= POLLPRI;
  if (st.read_closed) r |= POLLIN | POLLRDNORM | POLLRDHUP;
  if (conn_.HungUp()) r |= POLLHUP;
  if (conn_.PendingError() != 0) r |= POLLERR;
  return static_cast<short>(r & (events | POLLHUP | POLLERR));
}

short SmcSocket::Wait(short events, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    short r = Poll(events);
    if (r != 0) return r;
    int left = -1;
    if (timeout_ms >= 0) {
      auto ms =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (ms.count() <= 0) return 0;
      left = static_cast<int>(std::min<int64_t>(ms.count(), 1 << 30));
    }
    std::unique_lock lock(mu_);
    if (tcp_closed_) return forked_away_ ? POLLERR | POLLHUP : POLLNVAL;
    if (HandshakingLocked()) {
      (void)ProgressLocked(left);
      continue;
    }
    if (conn_.mode() != engine::Mode::kSmc) {
      lock.unlock();
      struct pollfd p = {fd_, events, 0};
      if (::poll(&p, 1, left) <= 0) return 0;
      // Only a late CLC message came (dropped by Poll): wait on.
      if (late_clc_pending() && (p.revents & POLLIN)) continue;
      return p.revents;
    }
    if (!WaitForPeer(left) && errno != EAGAIN) return 0;
  }
}

uint64_t SmcSocket::PeerPublishedNs() const {
  std::lock_guard lock(mu_);
  return Dev().PeerPostedNs();
}

int SmcSocket::PollFd() const {
  std::lock_guard lock(mu_);
  if (conn_.mode() != engine::Mode::kSmc || !Dev().registered() ||
      tcp_closed_) {
    return -1;
  }
  return Dev().WaitFd();
}

int SmcSocket::Readable() {
  std::lock_guard lock(mu_);
  if (tcp_closed_) {
    errno = EBADF;
    return -1;
  }
  if (!Settle(nonblocking_)) return 0;
  if (conn_.mode() != engine::Mode::kSmc) {
    if (late_clc_pending()) (void)DropLateClc(fd_, /*wait=*/false);
    int n = 0;
    return ::ioctl(fd_, FIONREAD, &n) == 0 ? n : -1;
  }
  Refresh();
  return static_cast<int>(conn_.RecvState().readable);
}

bool SmcSocket::AtMark() {
  std::lock_guard lock(mu_);
  if (tcp_closed_ || !Settle(nonblocking_)) return false;
  if (conn_.mode() != engine::Mode::kSmc) {
    int at = 0;
    return ::ioctl(fd_, SIOCATMARK, &at) == 0 && at;
  }
  Refresh();
  return conn_.AtUrgentMark();
}

int SmcSocket::Shutdown(int how) {
  std::lock_guard lock(mu_);
  if (tcp_closed_) {
    errno = EBADF;
    return -1;
  }
  if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR) {
    errno = EINVAL;
    return -1;
  }
  if (!Settle(nonblocking_)) {
    // Undecided and the app must not wait: apply it at the decision (a
    // FIN now would end the handshake, and CLC needs both directions).
    shut_rd_pending_ |= how != SHUT_WR;
    shut_wr_pending_ |= how != SHUT_RD;
    return 0;
  }
  if (conn_.mode() != engine::Mode::kSmc) return ::shutdown(fd_, how);
  Refresh();
  Feed(engine::AppShutdown{.read = how != SHUT_WR, .write = how != SHUT_RD});
  return 0;
}

int SmcSocket::Close() {
  std::lock_guard lock(mu_);
  if (tcp_closed_) {
    errno = EBADF;
    return -1;
  }
  if (!early_.empty()) FlushEarlyDataLocked();
  if (conn_.mode() == engine::Mode::kSmc) {
    Refresh();
    Feed(engine::AppClose{});
  }
  // Our close flags are published; nothing of ours is left for the peer to
  // read, so the buffers and the idle TCP socket can go now even if the
  // engine still waits for the peer's side of the close.
  ReleaseAll(/*reset=*/false);
  return 0;
}

void SmcSocket::Abort() {
  std::lock_guard lock(mu_);
  if (tcp_closed_) return;
  early_.clear();  // a reset discards unsent bytes, as TCP's does
  if (conn_.mode() == engine::Mode::kSmc) {
    Refresh();
    Feed(engine::AppAbort{});
  }
  ReleaseAll(/*reset=*/true);
}

bool SmcSocket::DetachSmcrAfterFork() {
  std::lock_guard lock(mu_);
  if (!smcr_) return false;
  const bool smcr_path =
      &Dev() == smcr_.get() ||
      (conn_.mode() == engine::Mode::kHandshake && !tcp_closed_);
  // Never freed here: its destructor would lock the parent's registry (a
  // copy, maybe locked by a thread we do not have) and post on its QP.
  SmcrConn* parent_side = smcr_.release();
  (void)parent_side;
  if (!smcr_path || tcp_closed_) return false;
  forked_away_ = true;
  early_.clear();
  base::CloseOwnedFd(fd_);  // this process's reference only
  tcp_closed_ = true;
  forgotten_ = true;
  peer_changed_.notify_all();
  return true;
}

void SmcSocket::ReleaseAll(bool reset) {
  Dev().DetachPeerBuffer();
  Dev().UnregisterBuffer();
  CloseFd(reset);
}

void SmcSocket::CloseFd(bool reset) {
  if (tcp_closed_) return;
  if (reset) {  // SO_LINGER 0: the close sends RST
    struct linger l = {1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  base::CloseOwnedFd(fd_);
  tcp_closed_ = true;
}

bool SmcSocket::TcpUnusable() const {
  if (forked_away_) {
    errno = ECONNABORTED;  // the SMC-R link stayed with the parent
    return true;
  }
  if (tcp_closed_) {
    errno = EBADF;
    return true;
  }
  if (fatal_) {
    errno = error_ ? error_ : ECONNABORTED;
    return true;
  }
  return false;
}

SocketStatus SmcSocket::status() const {
  std::lock_guard lock(mu_);
  SocketStatus s;
  s.engine = conn_.Stats();
  if (forked_away_) return s;  // the SMC-R side is the parent's
  s.local_dmb_token = Dev().own().token;
  s.peer_dmb_token = Dev().peer().token;
  s.doorbell = Dev().wait_stats();
  s.peer_doorbell = Dev().signal_stats();
  if (SmcrChosen()) s.smcr = smcr_->StatusFields();
  return s;
}

}  // namespace usmc::runtime
