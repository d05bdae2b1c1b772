// The CLC handshake of SmcSocket, driven without blocking: Start feeds the
// engine's Start, every later call (Progress, data calls, AfterWait) does
// what the sockets allow now, and only Progress(-1) / blocking calls sleep.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "runtime/smc_socket.h"
#include "wire/clc.h"
#include "wire/clc_frame.h"

namespace usmc::runtime {
Result<std::unique_ptr<SmcSocket>> SmcSocket::Start(int fd,
                                                    const Options& opts) {
  // Whether the peer can share memory with us is the CLC GID's question
  // (same kernel, same network namespace) and the handover's (it holds this
  // TCP connection: it knows the tokens); its uid does not matter.
  std::unique_ptr<SmcSocket> s(new SmcSocket(fd, opts));
  std::lock_guard lock(s->mu_);
  const int fl = ::fcntl(fd, F_GETFL);
  s->nonblocking_ = fl >= 0 && (fl & O_NONBLOCK);
  s->BeginHandshake();
  USMC_RETURN_IF_ERROR(s->ProgressLocked(0));
  return s;
}

Result<std::unique_ptr<SmcSocket>> SmcSocket::Upgrade(int fd,
                                                      const Options& opts) {
  Result<std::unique_ptr<SmcSocket>> s = Start(fd, opts);
  if (!s.ok()) return s;
  USMC_RETURN_IF_ERROR((*s)->Progress(-1));
  return s;
}

bool SmcSocket::handshaking() const {
  std::lock_guard lock(mu_);
  return HandshakingLocked();
}

Status SmcSocket::Progress(int timeout_ms) {
  std::lock_guard lock(mu_);
  return ProgressLocked(timeout_ms);
}

void SmcSocket::BeginHandshake() {
  // CLC waits for whole messages with SO_RCVLOWAT; the app's value comes
  // back at the decision (and is SMC-D's low-water mark too).
  int lowat = 1;
  socklen_t len = sizeof lowat;
  if (::getsockopt(fd_, SOL_SOCKET, SO_RCVLOWAT, &lowat, &len) != 0) {
    lowat = 1;
  }
  rcv_lowat_ = tcp_lowat_ = std::max(lowat, 1);
  SetTcpLowat(1);
  Feed(engine::Start{});
}

bool SmcSocket::HandshakingLocked() const {
  if (tcp_closed_ || fatal_) return false;
  return conn_.mode() == engine::Mode::kHandshake ||
         tcp_out_off_ < tcp_out_.size() || !early_.empty();
}

namespace {
constexpr int kHandshakeSliceMs = 20;
// How long a close waits for its early data to leave (see
// FlushEarlyDataLocked).
constexpr int kCloseFlushMs = 1000;
}  // namespace

Status SmcSocket::ProgressLocked(int timeout_ms) {
  const engine::TimePoint until =
      timeout_ms < 0 ? engine::TimePoint::max()
                     : Now() + std::chrono::milliseconds(timeout_ms);
  while (HandshakingLocked()) {
    if (StepHandshake()) continue;
    if (!HandshakingLocked()) break;
    const engine::TimePoint now = Now();
    if (now >= until) break;
    WaitSpec w = HandshakeWaitSpec();
    int ms = timeout_ms < 0 ? -1 : MsLeft(now, until);
    if (w.timeout_ms >= 0 && (ms < 0 || w.timeout_ms < ms)) ms = w.timeout_ms;
    // Sleep without the lock: other threads may use the socket meanwhile,
    // so the next round re-checks under the lock instead of trusting the
    // revents. In slices: another thread may consume the event this one
    // sleeps for (two threads blocking in the handshake at once) and
    // finish the handshake, after which the TCP socket stays silent.
    if (ms < 0 || ms > kHandshakeSliceMs) ms = kHandshakeSliceMs;
    mu_.unlock();
    ::poll(w.fds, static_cast<nfds_t>(w.n), ms);
    mu_.lock();
  }
  if (!HandshakingLocked()) FinishHandshake();
  if (fatal_) {
    return Status(StatusCode::kDataLoss,
                  "SMC handshake failed after the peer committed to SMC",
                  error_ ? error_ : ECONNABORTED);
  }
  return OkStatus();
}

bool SmcSocket::StepHandshake() {
  bool moved = FlushEarly();
  moved = FlushTcp() || moved;
  if (conn_.mode() != engine::Mode::kHandshake) return moved;
  if (SmcrChosen()) {
    // SMC-R chosen: the link's answers (link up, rkey confirmed, failed)
    // come as events, queued by the progress thread.
    (void)Dev().Drain(false, false);
    if (FeedSmcrEvents()) return true;
  }
  const bool due = exec_->deadline() && Now() >= *exec_->deadline();
  WaitSpec w = HandshakeWaitSpec();
  if (::poll(w.fds, static_cast<nfds_t>(w.n), 0) <= 0) {
    if (!due) return moved;
    exec_->TimerFired();
    Feed(engine::Timeout{});
    return true;
  }
  const int handover_fd = Dev().AttachFd();
  const bool handover =
      w.n > 1 && w.fds[1].fd == handover_fd && (w.fds[1].revents & POLLIN);
  const bool link = w.n > 1 && w.fds[w.n - 1].fd == Dev().WaitFd() &&
                    handover_fd < 0 && (w.fds[w.n - 1].revents & POLLIN);
  if (link) return true;  // the next round feeds the link's events
  // What the peer sent before the deadline is read first: an app that
  // called in late must not decline an answer that came in time (the
  // peer would have gone on with SMC, or its Accept would land in our
  // TCP stream).
  if (due && !(w.fds[0].revents & (POLLIN | POLLHUP | POLLERR)) && !handover) {
    exec_->TimerFired();
    Feed(engine::Timeout{});
    return true;
  }
  // The server serves the DMB handover, which the client runs before it
  // sends Confirm.
  if (handover) {
    ServeHandover();
    return true;
  }
  if (w.fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
    return ReadClc() || moved;
  }
  return moved;
}

bool SmcSocket::ReadClc() {
  // Room for two messages: a server looks for the client's Decline behind
  // its Proposal (the client gave up before the app called accept()).
  std::array<std::byte, 2 * wire::kClcMaxMessageLen> buf;
  ssize_t n = ::recv(fd_, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
  if (n <= 0) {
    Feed(engine::TcpEof{});
    return true;
  }
  consumed_ = 0;
  Feed(engine::TcpBytes{{buf.data(), static_cast<size_t>(n)}});
  if (conn_.mode() == engine::Mode::kHandshake && consumed_ == 0) {
    // Half a CLC message (wire::PeekClcFrame says how much is missing):
    // sleep until the rest has arrived, instead of spinning on a socket
    // that stays readable. Anything else the engine left: one more byte.
    const wire::ClcFramePeek p =
        wire::PeekClcFrame({buf.data(), static_cast<size_t>(n)});
    const size_t want =
        static_cast<size_t>(n) +
        (p.status == wire::ClcFramePeek::Status::kNeedMore ? p.need : 1);
    if (want <= buf.size()) {
      clc_lowat_ = static_cast<int>(want);
      SetTcpLowat(clc_lowat_);
    }
    return false;
  }
  clc_lowat_ = 1;
  if (conn_.mode() == engine::Mode::kHandshake) SetTcpLowat(1);
  return true;
}

void SmcSocket::ServeHandover() {
  // Short: whoever connected is there now. An offer without the proof of
  // our token is closed unanswered; the listener stays up for the real
  // peer until Confirm or the CLC timeout.
  Result<dev::BufferInfo> peer = Dev().AttachPeerBuffer(
      {.timeout =
           std::min(opts_.handover_timeout, std::chrono::milliseconds(200))});
  if (!peer.ok()) return;  // nothing to do: the client declines in CLC
  Feed(engine::PeerBufferAttached{peer->token, peer->size});
}

SmcSocket::WaitSpec SmcSocket::HandshakeWaitSpec() const {
  WaitSpec w;
  const bool out = tcp_out_off_ < tcp_out_.size();
  if (conn_.mode() != engine::Mode::kHandshake) {
    // Decided; only the last CLC bytes wait for room in the socket.
    w.n = 1;
    w.fds[0] = {fd_, POLLOUT, 0};
    return w;
  }
  w.n = 1;
  w.fds[0] = {fd_, static_cast<short>(POLLIN | (out ? POLLOUT : 0)), 0};
  if (int fd = Dev().AttachFd(); fd >= 0) {
    w.fds[1] = {fd, POLLIN, 0};
    w.n = 2;
  } else if (SmcrChosen()) {
    w.fds[w.n++] = {Dev().WaitFd(), POLLIN, 0};  // the link's answers
  }
  if (exec_->deadline()) w.timeout_ms = MsLeft(Now(), *exec_->deadline());
  return w;
}

void SmcSocket::QueueTcp(std::span<const std::byte> bytes) {
  if (tcp_out_off_ == tcp_out_.size()) {
    tcp_out_.clear();
    tcp_out_off_ = 0;
  }
  tcp_out_.insert(tcp_out_.end(), bytes.begin(), bytes.end());
  FlushTcp();
}

bool SmcSocket::FlushTcp() {
  bool moved = false;
  while (tcp_out_off_ < tcp_out_.size()) {
    ssize_t n =
        ::send(fd_, tcp_out_.data() + tcp_out_off_,
               tcp_out_.size() - tcp_out_off_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      tcp_out_off_ += static_cast<size_t>(n);
      moved = true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    // The connection broke: nothing will go out any more; the read side
    // sees the EOF or reset and the engine decides.
    tcp_out_off_ = tcp_out_.size();
    moved = true;
  }
  if (tcp_out_off_ == tcp_out_.size() && !tcp_out_.empty()) {
    tcp_out_.clear();
    tcp_out_off_ = 0;
  }
  return moved;
}

void SmcSocket::SetTcpLowat(int n) {
  if (n == tcp_lowat_ || tcp_closed_) return;
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVLOWAT, &n, sizeof n);
  tcp_lowat_ = n;
}

void SmcSocket::FinishHandshake() {
  if (handshake_finished_ || tcp_closed_) return;
  handshake_finished_ = true;
  if (decided_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(decided_fd_, &one, sizeof one);  // !: fortify builds
  }
  // The decision changes readiness (a client's early data went out, its
  // POLLOUT is the ring's now): edge-triggered waiters get a new edge.
  peer_changes_.fetch_add(1, std::memory_order_relaxed);
  SetTcpLowat(rcv_lowat_);
  if (fatal_ || !(shut_rd_pending_ || shut_wr_pending_)) return;
  const bool rd = shut_rd_pending_, wr = shut_wr_pending_;
  shut_rd_pending_ = shut_wr_pending_ = false;
  if (conn_.mode() == engine::Mode::kSmc) {
    Refresh();
    Feed(engine::AppShutdown{.read = rd, .write = wr});
  } else if (conn_.mode() == engine::Mode::kTcp) {
    ::shutdown(fd_, rd && wr ? SHUT_RDWR : rd ? SHUT_RD : SHUT_WR);
  }
}

bool SmcSocket::Settle(bool nonblocking) {
  if (!HandshakingLocked()) return true;
  (void)ProgressLocked(nonblocking ? 0 : -1);
  if (!HandshakingLocked()) return true;
  errno = EAGAIN;
  return false;
}

size_t SmcSocket::EarlyRoom() const {
  if (opts_.role != engine::Role::kClient || shut_wr_pending_ || fatal_ ||
      tcp_closed_) {
    return 0;
  }
  // Also after a fallback while the Decline is still queued: those bytes
  // go behind it (into tcp_out_) in order.
  const bool open = conn_.mode() == engine::Mode::kHandshake ||
                    (conn_.mode() == engine::Mode::kTcp && !early_.empty());
  return open ? kEarlyDataMax - std::min(early_.size(), kEarlyDataMax) : 0;
}

ssize_t SmcSocket::SendEarly(const std::byte* buf, size_t len) {
  const size_t n = std::min(len, EarlyRoom());
  early_.insert(early_.end(), buf, buf + n);
  return static_cast<ssize_t>(n);
}

bool SmcSocket::FlushEarly() {
  if (early_.empty()) return false;
  switch (conn_.mode()) {
    case engine::Mode::kHandshake:
      return false;
    case engine::Mode::kSmc: {
      // The peer's ring is fresh and at least twice as large: it all fits.
      // An error (the peer already gone) is the connection's, reported to
      // the app's next call; the bytes are lost as TCP's would be.
      std::vector<std::byte> bytes = std::move(early_);
      early_.clear();
      (void)SendSmc(bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      return true;
    }
    case engine::Mode::kTcp:
      // Behind the CLC bytes (our Decline), before anything sent later.
      QueueTcp(early_);
      early_.clear();
      return true;
    case engine::Mode::kFailed:
      early_.clear();  // reset: nothing will go out
      return true;
  }
  return false;
}

short SmcSocket::EarlyPollBits(short events) const {
  short r = 0;
  // After the app's shutdown, as tcp_poll: writable (a send fails at once)
  // and, for SHUT_RD, readable (EOF).
  if (shut_wr_pending_ || EarlyRoom() > 0) r |= POLLOUT | POLLWRNORM;
  if (shut_rd_pending_) r |= POLLIN | POLLRDNORM | POLLRDHUP;
  return static_cast<short>(r & events);
}

void SmcSocket::FlushEarlyData() {
  std::lock_guard lock(mu_);
  if (!early_.empty() && !tcp_closed_) FlushEarlyDataLocked();
}

void SmcSocket::FlushEarlyDataLocked() {
  (void)ProgressLocked(0);  // an answer already here is taken first
  const bool declined = conn_.mode() == engine::Mode::kHandshake;
  if (declined) Feed(engine::Timeout{.cut_short = true});
  // The Decline and the bytes fit into a fresh socket's send buffer; the
  // bound is for a peer whose window is shut.
  if (HandshakingLocked()) (void)ProgressLocked(kCloseFlushMs);
  if (!declined) return;
  // An Accept that crossed our Decline may be unread: closing with unread
  // bytes would reset the connection, and with it the early data the
  // server has not read yet.
  (void)DropLateClc(fd_, /*wait=*/false);
}

short SmcSocket::TcpHupErr() const {
  struct pollfd p = {fd_, 0, 0};
  if (::poll(&p, 1, 0) <= 0) return 0;
  return static_cast<short>(p.revents & (POLLHUP | POLLERR));
}

}  // namespace usmc::runtime
