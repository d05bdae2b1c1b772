#include "dev/shm_doorbell.h"

#include <poll.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>

namespace usmc::dev {

std::string_view ToString(RingResult r) {
  switch (r) {
    case RingResult::kNotArmed:
      return "NOT_ARMED";
    case RingResult::kWoken:
      return "WOKEN";
    case RingResult::kPending:
      return "PENDING";
    case RingResult::kCoalesced:
      return "COALESCED";
    case RingResult::kPeerGone:
      return "PEER_GONE";
  }
  return "?";
}
std::ostream& operator<<(std::ostream& os, RingResult r) {
  return os << ToString(r);
}

namespace {
std::atomic<uint32_t> g_default_spin_us{kDefaultSpinUs};
}  // namespace

void SetDefaultSpinUs(uint32_t us) {
  g_default_spin_us.store(us, std::memory_order_relaxed);
}

uint32_t DefaultSpinUs() {
  return g_default_spin_us.load(std::memory_order_relaxed);
}

Status CheckDoorbellFd(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, "fstat doorbell");
  if (!S_ISSOCK(st.st_mode)) {
    return Status(StatusCode::kDataLoss, "doorbell fd is not a socket");
  }
  int domain = 0, type = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
    return Status::FromErrno(errno, "getsockopt SO_DOMAIN");
  }
  len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    return Status::FromErrno(errno, "getsockopt SO_TYPE");
  }
  if (domain != AF_UNIX || type != SOCK_STREAM) {
    return Status(StatusCode::kDataLoss,
                  "doorbell fd is not an AF_UNIX stream socket");
  }
  return OkStatus();
}

namespace {

std::atomic<uint64_t> g_next_sleep_token{0};

void SeedSleepTokens() {
  uint64_t seed = 0;
  if (::getrandom(&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed) {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    seed = (static_cast<uint64_t>(::getpid()) << 40) ^
           static_cast<uint64_t>(ts.tv_sec) * 1000000000u ^
           static_cast<uint64_t>(ts.tv_nsec);
  }
  g_next_sleep_token.store(seed, std::memory_order_relaxed);
}

}  // namespace

uint64_t NewSleepToken() {
  // A forked child must not repeat its parent's tokens: both may sleep on
  // doorbells of one peer, whose rings would take one for the other.
  static const bool seeded = [] {
    SeedSleepTokens();
    ::pthread_atfork(nullptr, nullptr, SeedSleepTokens);
    return true;
  }();
  (void)seeded;
  for (;;) {
    const uint64_t t =
        g_next_sleep_token.fetch_add(1, std::memory_order_relaxed);
    if (t != 0) return t;
  }
}

Doorbell::Doorbell(SharedFd fd, uint32_t* armed, uint64_t* sleep_token)
    : fd_(std::move(fd)),
      armed_(armed),
      sleep_token_(sleep_token),
      spin_us_(DefaultSpinUs()),
      cur_spin_us_(spin_us_) {}

uint32_t Doorbell::SpinForThisWait() {
  probing_ = false;
  if (!adaptive_ || cur_spin_us_ > 0) return cur_spin_us_;
  // Backed off completely: probe with the full budget now and then.
  if (++probe_count_ < probe_interval_) return 0;
  probe_count_ = 0;
  probing_ = true;
  return spin_us_;
}

void Doorbell::Learn(bool spin_hit, uint32_t spun_us) {
  if (!adaptive_ || spin_us_ == 0) return;
  if (spin_hit) {
    // Spinning pays off: keep the full budget, probe eagerly again later.
    cur_spin_us_ = spin_us_;
    probe_interval_ = kProbeEvery;
  } else if (probing_) {
    // Still no use: stay at zero and probe half as often (bounded), so a
    // long-busy machine pays almost nothing for the probes.
    probe_interval_ = std::min(probe_interval_ * 2, kMaxProbeEvery);
  } else if (spun_us > 0) {
    // Spun in vain. A sleep that ended soon after does not prove a longer
    // spin would have helped: on a busy CPU our spinning is what delays the
    // peer. Only a spin that actually sees the data restores the budget.
    cur_spin_us_ = spun_us / 2;
  }
}

DoorbellStats Doorbell::stats() const {
  DoorbellStats s;
  s.waits = c_->waits.load(std::memory_order_relaxed);
  s.ready_at_once = c_->ready_at_once.load(std::memory_order_relaxed);
  s.spins = c_->spins.load(std::memory_order_relaxed);
  s.spin_hits = c_->spin_hits.load(std::memory_order_relaxed);
  s.sleeps = c_->sleeps.load(std::memory_order_relaxed);
  s.wakeups_received = c_->wakeups_received.load(std::memory_order_relaxed);
  s.timeouts = c_->timeouts.load(std::memory_order_relaxed);
  return s;
}

bool Doorbell::Drain() { return DrainUpTo(/*to_end=*/false); }

bool Doorbell::DrainUpTo(bool to_end) {
  // The peer sends one byte per wakeup, but a hostile peer may flood the
  // socket: read a bounded amount; leftovers only cause a spurious wakeup.
  char buf[512];
  for (int i = 0; i < 64; ++i) {
    ssize_t n = ::recv(RawFd(fd_), buf, sizeof buf, MSG_DONTWAIT);
    // A short read emptied the socket: no second call just to see EAGAIN
    // (a close right behind it shows as POLLHUP on the next poll). After a
    // hang-up there is no next edge for an edge-triggered sleeper: read on
    // to the end of the stream.
    if (!to_end && n > 0 && static_cast<size_t>(n) < sizeof buf) return true;
    if (n > 0) continue;
    if (n == 0) return false;  // peer closed its end
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
  return true;
}

bool Doorbell::DrainLazily(bool hangup) {
  if (!hangup && ++undrained_ < kLazyDrainEvery) return true;
  undrained_ = 0;
  return DrainUpTo(/*to_end=*/hangup);
}

WaitResult Doorbell::SleepUntil(PredRef ready, Clock::time_point deadline,
                                const WaitOptions& opts) {
  std::atomic_ref<uint32_t> armed(*armed_);
  auto disarm = [&] { armed.store(0, std::memory_order_relaxed); };
  for (;;) {
    // Arm, then re-check: with the waker's "publish; fence; load armed" the
    // two fences guarantee that either we see the new data or it sees
    // armed == 1 and sends a wakeup.
    StoreArmed(0);  // one waiter, not a loop over many: no token
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (ready()) {
      disarm();
      return WaitResult::kReady;
    }
    const Clock::time_point now = Clock::now();
    if (now >= deadline) {
      disarm();
      Bump(c_->timeouts);
      return WaitResult::kTimedOut;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
    struct timespec ts;
    ts.tv_sec = static_cast<time_t>(left.count() / 1000000000);
    ts.tv_nsec = static_cast<long>(left.count() % 1000000000);
    struct pollfd fds[2] = {{RawFd(fd_), POLLIN, 0},
                            {opts.extra_fd, POLLIN, 0}};
    const nfds_t nfds = opts.extra_fd >= 0 ? 2 : 1;
    Bump(c_->sleeps);
    int n = ::ppoll(fds, nfds, &ts, nullptr);
    if (n < 0) {
      if (errno == EINTR) {
        if (opts.return_on_signal) {
          disarm();
          return WaitResult::kInterrupted;
        }
        continue;
      }
      disarm();  // EFAULT/EINVAL/ENOMEM: nothing sensible to wait on
      return WaitResult::kPeerGone;
    }
    if (n == 0) continue;  // deadline check at the top of the loop
    bool gone = (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) != 0;
    if (fds[0].revents & POLLIN) {
      Bump(c_->wakeups_received);
      if (!Drain()) gone = true;
    }
    if (gone) {
      disarm();
      return ready() ? WaitResult::kReady : WaitResult::kPeerGone;
    }
    if (nfds == 2 && fds[1].revents != 0) {
      disarm();
      return ready() ? WaitResult::kReady : WaitResult::kExtraFdReady;
    }
    // Rung (or spurious): loop re-arms and re-checks the predicate.
  }
}

PeerDoorbell::PeerDoorbell(SharedFd fd, uint32_t* armed, uint64_t* sleep_token)
    : fd_(std::move(fd)), armed_(armed), sleep_token_(sleep_token) {}

DoorbellStats PeerDoorbell::stats() const {
  DoorbellStats s;
  s.rings = c_->rings.load(std::memory_order_relaxed);
  s.wakeups_sent = c_->wakeups_sent.load(std::memory_order_relaxed);
  s.wakeups_skipped = c_->wakeups_skipped.load(std::memory_order_relaxed);
  s.wakeups_coalesced = c_->wakeups_coalesced.load(std::memory_order_relaxed);
  return s;
}

RingResult PeerDoorbell::Ring() {
  auto bump = [](std::atomic<uint64_t>& c) {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  };
  bump(c_->rings);
  // Pairs with the waiter's fence after arming (see Doorbell::SleepUntil).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  std::atomic_ref<uint32_t> armed(*armed_);
  // Any non-zero value means armed: the peer owns the word, so it may hold
  // anything; the worst it can do is cost itself wakeups.
  if (armed.load(std::memory_order_relaxed) == 0 ||
      armed.exchange(0, std::memory_order_acq_rel) == 0) {
    bump(c_->wakeups_skipped);
    return RingResult::kNotArmed;
  }
  // The exchange acquired the owner's release store of armed, so this is
  // the token it armed with (or a later one: a sleep that armed after our
  // exchange, which our wakeup then reaches as well).
  static thread_local uint64_t last_woken = 0;
  const uint64_t token = sleep_token_ == nullptr
                             ? 0
                             : std::atomic_ref<uint64_t>(*sleep_token_)
                                   .load(std::memory_order_relaxed);
  if (token != 0 && token == last_woken) {
    bump(c_->wakeups_coalesced);
    return RingResult::kCoalesced;
  }
  const char one = 1;
  for (;;) {
    // MSG_DONTWAIT is per call: the peer cannot make us block by changing
    // the shared file status flags (the reason this is not an eventfd).
    ssize_t n = ::send(RawFd(fd_), &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == 1) {
      bump(c_->wakeups_sent);
      last_woken = token;
      return RingResult::kWoken;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return RingResult::kPending;
    }
    return RingResult::kPeerGone;
  }
}

}  // namespace usmc::dev
