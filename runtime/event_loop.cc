// SmcSocket's hooks for event loops (PrepareWait/AfterWait), SO_RCVLOWAT,
// and what the interposer needs across fork (Forget, ProcessRefs).
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "base/owned_fd.h"
#include "runtime/smc_socket.h"

namespace usmc::runtime {

SmcSocket::WaitSpec SmcSocket::PrepareWait(short events, uint64_t sleep_token) {
  std::lock_guard lock(mu_);
  WaitSpec w;
  if (tcp_closed_) {
    w.ready = forked_away_ ? POLLERR | POLLHUP : POLLNVAL;
    return w;
  }
  if (HandshakingLocked()) {
    (void)ProgressLocked(0);
    if (HandshakingLocked()) {
      w = HandshakeWaitSpec();
      if (decided_fd_ >= 0 && w.n < 3) w.fds[w.n++] = {decided_fd_, POLLIN, 0};
      w.ready = static_cast<short>(TcpHupErr() | EarlyPollBits(events));
      if (w.ready != 0) w.n = 0;
      return w;
    }
  }
  if (conn_.mode() != engine::Mode::kSmc || !Dev().registered()) {
    return w;  // TCP (or failed): the kernel socket is all there is
  }
  Refresh();
  if (short r = SmcPollBits(events); r != 0) {
    w.ready = r;
    return w;
  }
  if (peer_gone_) return w;  // nothing will ring any more: no fds
  // Arm, then look again: the peer rings only an armed doorbell, so a
  // publish between the look above and the sleep either shows here or
  // makes the doorbell fd readable.
  // A blocked thread of ours or a poll sleeping on this doorbell would not
  // be woken by a ring the token lets the peer skip.
  if (doorbell_waiter_ || sleepers_.load() != 0) sleep_token = 0;
  short seen = 0;
  auto ready = [&] {
    Refresh();
    seen = SmcPollBits(events);
    return seen != 0;
  };
  if (!Dev().Arm(ready, sleep_token)) {
    w.ready = seen;
    return w;
  }
  w.n = 2;
  w.fds[0] = {Dev().WaitFd(), POLLIN, 0};
  // During SMC-D the TCP socket is silent: readable means the peer's
  // process closed it (exit, kill) or broke the protocol. (SMC-R, once it
  // ended: readable for good, the link alone wakes us.)
  w.fds[1] = {fd_, POLLIN, 0};
  if (tcp_ended_) w.n = 1;
  return w;
}

void SmcSocket::AfterWait() {
  WaitSpec all;
  all.n = 2;
  all.fds[0] = {-1, POLLIN, POLLIN};  // -1: "whatever ours is", see below
  all.fds[1] = {-1, POLLIN, POLLIN};
  AfterWait(all);
}

void SmcSocket::AfterWait(const WaitSpec& polled, bool edge) {
  std::lock_guard lock(mu_);
  if (tcp_closed_) return;
  if (HandshakingLocked()) {
    // Drives the handshake and feeds the CLC timeout once it is due.
    (void)ProgressLocked(0);
    return;
  }
  if (conn_.mode() != engine::Mode::kSmc || !Dev().registered()) return;
  if (!doorbell_waiter_) {
    // (A thread blocked in Send/Recv sleeps on the doorbell itself: the
    // wakeups and the armed word are its own then.)
    const int bell_fd = Dev().WaitFd();
    bool bell_fired = false, tcp_fired = false, bell_hup = false;
    for (int i = 0; i < polled.n && i < 2; ++i) {
      const pollfd& p = polled.fds[i];
      if (p.revents == 0) continue;
      if (p.fd == bell_fd || (p.fd < 0 && i == 0)) {
        bell_fired = true;
        bell_hup = p.fd < 0 || (p.revents & (POLLHUP | POLLERR | POLLRDHUP));
      }
      if (p.fd == fd_ || (p.fd < 0 && i == 1)) tcp_fired = true;
    }
    Dev().Disarm();
    bool gone = bell_fired && !Dev().Drain(/*lazily=*/edge, bell_hup);
    if (!gone && tcp_fired) gone = TcpStirs();
    if (gone) OnPeerGone();
  }
  Refresh();
  peer_changed_.notify_all();
}

void SmcSocket::WatchDecision() {
  std::lock_guard lock(mu_);
  if (decided_fd_ >= 0 || !HandshakingLocked()) return;
  decided_fd_ = base::OwnFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
}

SmcSocket::WaitSpec SmcSocket::HandshakeSpec() const {
  std::lock_guard lock(mu_);
  if (!HandshakingLocked()) return {};
  WaitSpec w = HandshakeWaitSpec();
  // A decision another thread made (an app's poll or epoll drove the
  // handshake) wakes the progress thread too: it then publishes it.
  if (decided_fd_ >= 0 && w.n < 3) w.fds[w.n++] = {decided_fd_, POLLIN, 0};
  return w;
}

bool SmcSocket::DisarmIdle() {
  std::lock_guard lock(mu_);
  if (tcp_closed_ || conn_.mode() != engine::Mode::kSmc ||
      !Dev().registered()) {
    return false;
  }
  // A poll arms inside PrepareWait, under mu_, after counting itself: seen
  // here, or it arms after this store.
  if (doorbell_waiter_ || sleepers_.load(std::memory_order_seq_cst) != 0) {
    return false;
  }
  Dev().Disarm();
  return true;
}

bool SmcSocket::TcpStirs() const {
  char c;
  ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return !(n < 0 &&
           (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
}

void SmcSocket::SetRcvLowat(int n) {
  std::lock_guard lock(mu_);
  rcv_lowat_ = n > 0 ? n : 1;
  if (tcp_closed_ || !HandshakingLocked()) return;
  // The caller has just set it on the TCP socket too; the handshake keeps
  // its own value there until the decision, then restores this one.
  tcp_lowat_ = -1;  // unknown now: set ours again
  SetTcpLowat(clc_lowat_);
}

void SmcSocket::Forget() {
  std::lock_guard lock(mu_);
  if (tcp_closed_) return;
  forgotten_ = true;
  early_.clear();  // another process sends the connection's bytes now
  // Only this process's mappings and fds: the Doorbell/PeerDoorbell and
  // DMB destructors write nothing into shared memory and send nothing.
  Dev().ForgetBuffers();  // the last holder releases them
  base::CloseOwnedFd(fd_);
  tcp_closed_ = true;
  peer_changed_.notify_all();
}

uint32_t* SmcSocket::ProcessRefs() {
  std::lock_guard lock(mu_);
  if (tcp_closed_ || conn_.mode() != engine::Mode::kSmc) return nullptr;
  return Dev().Shared(dev::SharedWord::kProcessRefs);
}

uint32_t* SmcSocket::ProcessHolders() {
  std::lock_guard lock(mu_);
  if (tcp_closed_ || conn_.mode() != engine::Mode::kSmc) return nullptr;
  return Dev().Shared(dev::SharedWord::kHolders);
}

}  // namespace usmc::runtime
