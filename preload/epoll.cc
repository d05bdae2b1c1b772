#include "preload/epoll.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/owned_fd.h"
#include "preload/conn.h"
#include "preload/epoll_internal.h"
#include "preload/fresh_sockets.h"
#include "preload/real.h"

namespace usmc::preload {
namespace epoll_detail {

// Epoll fds this process created (epoll_create), and which of them were
// nested before usmc tracked them as a set. fds past kMaxFd: never scan
// mode.
constexpr int kMaxFd = 1 << 16;
constexpr uint8_t kIsEpoll = 1, kNested = 2;
std::atomic<uint8_t> g_epoll_fds[kMaxFd];
std::atomic<bool> g_any_epoll{false};

bool NestedHint(int epfd) {
  return epfd < 0 || epfd >= kMaxFd ||
         (g_epoll_fds[epfd].load(std::memory_order_relaxed) & kNested);
}

// Per epoll fd: the threads asleep in the kernel's epoll_wait on it while
// it had no set of ours (PlainEpollWait), and kHasSet once it has one. One
// word: a thread going to sleep and another making the set cannot both miss
// the other (one of the two read-modify-writes comes second and sees the
// first). A set made while such a thread sleeps registers its sockets with
// the kernel at once (SyncAfterCtl), as scan mode would only at a sleep of
// its own, which that thread does not know it should make.
constexpr uint32_t kHasSet = 1u << 31;
std::atomic<uint32_t> g_plain_waits[kMaxFd];

uint32_t PlainSleepers(int epfd) {
  if (epfd < 0 || epfd >= kMaxFd) return 0;
  return g_plain_waits[epfd].load(std::memory_order_seq_cst) & ~kHasSet;
}

constexpr uint32_t kFlagBits =
    EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE;  // passed on to the mirrors

// Whether the process ever made a set of ours: until then every epoll_wait
// goes to the kernel after this one load (Sets() is a function call).
std::atomic<bool> g_any_set{false};

class SetTable {
 public:
  std::shared_ptr<EpollSet> Find(int epfd) {
    std::shared_lock lock(mu_);
    auto it = sets_.find(epfd);
    return it == sets_.end() ? nullptr : it->second;
  }
  std::shared_ptr<EpollSet> FindOrCreate(int epfd) {
    std::unique_lock lock(mu_);
    std::shared_ptr<EpollSet>& s = sets_[epfd];
    any_.store(true, std::memory_order_release);
    g_any_set.store(true, std::memory_order_release);
    if (!s) {
      s = std::make_shared<EpollSet>();
      s->epfd = epfd;
      s->nested = NestedHint(epfd);
      // After g_any_set: a sleeper that sees the bit finds the set.
      if (epfd >= 0 && epfd < kMaxFd) {
        g_plain_waits[epfd].fetch_or(kHasSet, std::memory_order_seq_cst);
      }
    }
    return s;
  }
  std::shared_ptr<EpollSet> Remove(int epfd) {
    std::unique_lock lock(mu_);
    auto it = sets_.find(epfd);
    if (it == sets_.end()) return nullptr;
    if (epfd >= 0 && epfd < kMaxFd) {
      g_plain_waits[epfd].fetch_and(~kHasSet, std::memory_order_seq_cst);
    }
    std::shared_ptr<EpollSet> s = std::move(it->second);
    sets_.erase(it);
    return s;
  }
  bool any() const { return any_.load(std::memory_order_acquire); }

 private:
  std::shared_mutex mu_;
  std::unordered_map<int, std::shared_ptr<EpollSet>> sets_;
  std::atomic<bool> any_{false};
};

SetTable& Sets() {
  static SetTable* t = new SetTable();
  return *t;
}

short PollBitsOf(uint32_t epoll_events) {
  return static_cast<short>(
      epoll_events &
      (EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP | EPOLLRDNORM | EPOLLWRNORM));
}

// Whether a wake tag's fd number still names the file it registered. If not,
// the kernel dropped that registration when the file was closed (or keeps it
// while a forked child holds the file), and EPOLL_CTL_DEL by the number would
// remove someone else's: Redis then missed a killed client's hang-up, and
// new connections stalled.
bool StillOurs(const Tag& t) {
  if (t.kind != Tag::kWake) return true;  // mirrors: Conn's, closed last
  struct stat st;
  return ::fstat(t.fd, &st) == 0 && st.st_dev == t.dev && st.st_ino == t.ino;
}

void DropKernelItem(EpollSet& set, Tag& t) {
  if (t.fd >= 0 && StillOurs(t)) {
    real().epoll_ctl(set.epfd, EPOLL_CTL_DEL, t.fd, nullptr);
  }
  t.fd = -1;
}

// (Un)registers one tag's fd; the set is locked.
bool Register(EpollSet& set, Tag& t, int fd, uint32_t events) {
  if (t.fd == fd && t.events == events) return true;
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = &t;
  if (t.fd == fd) {
    if (real().epoll_ctl(set.epfd, EPOLL_CTL_MOD, fd, &ev) != 0) return false;
    t.events = events;
    return true;
  }
  DropKernelItem(set, t);
  struct stat st {};
  if (t.kind == Tag::kWake && ::fstat(fd, &st) != 0) return false;
  if (real().epoll_ctl(set.epfd, EPOLL_CTL_ADD, fd, &ev) != 0 &&
      errno != EEXIST) {
    return false;
  }
  t.dev = st.st_dev;
  t.ino = st.st_ino;
  t.fd = fd;
  t.events = events;
  set.tags.insert(&t);
  return true;
}

// The app dropped this interest: keep the kernel's item with no events,
// so that toggling EPOLLOUT per request (Redis's ae does) costs one
// EPOLL_CTL_MOD, as it does on a TCP socket, not a DEL and an ADD.
void Park(EpollSet& set, Tag& t) {
  if (t.fd < 0 || t.events == 0) return;
  epoll_event ev{};
  ev.data.ptr = &t;
  if (real().epoll_ctl(set.epfd, EPOLL_CTL_MOD, t.fd, &ev) == 0) t.events = 0;
}

void Unregister(EpollSet& set, Tag& t) {
  DropKernelItem(set, t);
  set.tags.erase(&t);
}

void UnregisterAll(EpollSet& set, EpollReg& reg) {
  Unregister(set, reg.rd);
  Unregister(set, reg.wr);
  for (auto& w : reg.wake) Unregister(set, *w);
  reg.wake.clear();
}

// Makes the wake registrations exactly `fds` (POLLIN, level-triggered).
// `first_flags` go with fds[0] (EPOLLET for an SMC-D doorbell).
void SyncWake(EpollSet& set, EpollReg& reg, const pollfd* fds, int n,
              uint32_t first_flags = 0) {
  auto events_of = [&](int i) {
    return static_cast<uint16_t>(fds[i].events) | (i == 0 ? first_flags : 0);
  };
  if (static_cast<int>(reg.wake.size()) == n) {
    bool same = true;
    for (int i = 0; i < n; ++i) {
      same = same && reg.wake[i]->fd == fds[i].fd &&
             reg.wake[i]->events == events_of(i);
    }
    if (same) return;
  }
  std::vector<std::unique_ptr<Tag>> keep;
  for (auto& w : reg.wake) {
    bool wanted = false;
    for (int i = 0; i < n; ++i) wanted = wanted || fds[i].fd == w->fd;
    if (wanted) {
      keep.push_back(std::move(w));
    } else {
      Unregister(set, *w);
    }
  }
  reg.wake = std::move(keep);
  for (int i = 0; i < n; ++i) {
    if (fds[i].fd < 0) continue;
    const uint32_t events = events_of(i);
    Tag* have = nullptr;
    for (auto& w : reg.wake) {
      if (w->fd == fds[i].fd) have = w.get();
    }
    if (have != nullptr) {
      Register(set, *have, fds[i].fd, events);
      continue;
    }
    auto t = std::make_unique<Tag>(Tag{&reg, Tag::kWake, -1});
    if (Register(set, *t, fds[i].fd, events)) reg.wake.push_back(std::move(t));
  }
}

void RemoveReg(EpollSet& set, EpollReg* reg) {
  UnregisterAll(set, *reg);
  {
    std::lock_guard lock(reg->conn->mu);
    auto& v = reg->conn->regs;
    v.erase(std::remove(v.begin(), v.end(), reg), v.end());
    reg->conn->in_epoll.store(!v.empty(), std::memory_order_relaxed);
  }
  if (reg->watched) {
    auto& w = set.watch;
    w.erase(std::remove(w.begin(), w.end(), reg), w.end());
  }
  // Swap with the last: O(1) with 10,000 in the set.
  auto& regs = set.regs;
  const size_t i = reg->index;
  if (i + 1 != regs.size()) {
    regs[i] = std::move(regs.back());
    regs[i]->index = i;
  }
  regs.pop_back();
}

// Brings the kernel registrations of `reg` in line with its connection's
// phase. Returns false if the registration was handed to the kernel (plain
// TCP) and removed from the set.
bool Sync(EpollSet& set, EpollReg* reg, int* wait_ms) {
  Conn& c = *reg->conn;
  if (!reg->active && c.phase() == Phase::kTcp) {
    RemoveReg(set, reg);
    return false;
  }
  switch (c.phase()) {
    case Phase::kTcp: {
      // Plain TCP for good: the app's fd goes in with the app's data, as if
      // usmc had never been there.
      UnregisterAll(set, *reg);
      if (!reg->oneshot_fired) {
        epoll_event ev{};
        ev.events = reg->events;
        ev.data = reg->data;
        real().epoll_ctl(set.epfd, EPOLL_CTL_ADD, reg->app_fd, &ev);
      }
      RemoveReg(set, reg);
      return false;
    }
    case Phase::kConnecting: {
      int fd = reg->app_fd;
      if (reg->wake.empty() || reg->wake[0]->fd != fd) {
        SyncWake(set, *reg, nullptr, 0);
        auto t = std::make_unique<Tag>(Tag{reg, Tag::kWake, -1});
        if (Register(set, *t, fd, EPOLLOUT)) reg->wake.push_back(std::move(t));
      }
      return true;
    }
    case Phase::kSmc:
      break;
  }
  runtime::SmcSocket* s = c.smc();
  if (s == nullptr) return true;
  const bool handshaking = s->handshaking();
  if (!reg->active && !handshaking) {
    // (Scan mode leaves a DEL's items to here: a set about to sleep must
    // not hold a ready mirror that reports nothing.)
    Park(set, reg->rd);
    Park(set, reg->wr);
    return true;
  }
  if (wait_ms != nullptr && !reg->dirty && !handshaking) return true;
  // Until the handshake ends the doorbell is not armed: the registration
  // stays dirty, so the first look in SMC-D mode arms it.
  reg->dirty = handshaking;
  const uint32_t flags = reg->events & kFlagBits;
  // (Scan mode's ADD/MOD leave the mirrors to here: they may not exist yet.)
  if (c.mirror_rd < 0 || c.mirror_wr < 0) c.UpdateMirrors();
  if (reg->active && !reg->oneshot_fired) {
    if (reg->events & (EPOLLIN | EPOLLRDHUP | EPOLLPRI | EPOLLRDNORM)) {
      Register(set, reg->rd, c.mirror_rd, EPOLLIN | flags);
    } else {
      Park(set, reg->rd);
    }
    if (reg->events & (EPOLLOUT | EPOLLWRNORM)) {
      Register(set, reg->wr, c.mirror_wr, EPOLLIN | flags);
    } else {
      Park(set, reg->wr);
    }
  }
  // Only the app's interest: asking for POLLOUT too would find it ready
  // (writable) and never arm the doorbell for incoming data.
  // Edge-triggered: arm for the next publish whatever is ready now; the
  // edge is the wakeup itself (reported in Translate), never "still ready".
  const short interest = (reg->oneshot_fired || (reg->events & EPOLLET))
                             ? short{0}
                             : PollBitsOf(reg->events);
  // A sleep token only for a socket no other set or process sleeps on.
  uint64_t token = 0;
  if (set.sleep_token != 0 && wait_ms != nullptr && !c.forked()) {
    std::lock_guard lock(c.mu);
    if (c.regs.size() == 1) token = set.sleep_token;
  }
  runtime::SmcSocket::WaitSpec spec = s->PrepareWait(interest, token);
  if (handshaking && !s->handshaking()) {
    // PrepareWait's progress decided the handshake. Declined (a server
    // past its DMB budget), the socket is TCP now and has no wake fds to
    // give, but only the Conn's next call would learn it: the app slept in
    // epoll_wait for good on a registration with nothing in the kernel
    // (tests/scale_test.cc FallbacksAtTheBudgetUnderEpoll). Let the Conn
    // settle, and a TCP one go to the kernel with the app's events.
    (void)c.Poll(reg->app_fd, 0);
    if (c.phase() == Phase::kTcp) return Sync(set, reg, wait_ms);
  }
  if (token != 0 && spec.ready == 0) set.tokens_out = true;
  if (interest == 0 && !reg->oneshot_fired && reg->active &&
      s->peer_changes() != reg->edge_seen &&
      (s->Poll(PollBitsOf(reg->events)) &
       (reg->events | EPOLLHUP | EPOLLERR))) {
    // The peer published while the doorbell was not armed (we were busy):
    // no ring came, but for the kernel that would have been an edge. (The
    // report, not the poke, moves edge_seen: see Translate.)
    c.UpdateMirrors(/*poke=*/true);
  }
  if (spec.ready != 0) {
    c.UpdateMirrors();
    MarkDirty(set, reg);  // not armed: look again before the next sleep
  } else {
    // The doorbell edge-triggered: every ring is an edge, so its bytes
    // need not be read per wakeup (Doorbell::DrainLazily).
    SyncWake(set, *reg, spec.fds, std::min(spec.n, 3),
             handshaking ? 0u : static_cast<uint32_t>(EPOLLET));
    if (wait_ms != nullptr && spec.timeout_ms >= 0 &&
        (*wait_ms < 0 || spec.timeout_ms < *wait_ms)) {
      *wait_ms = spec.timeout_ms;
    }
  }
  return true;
}

// Drives what is not a plain established SMC-D socket (connects,
// handshakes, sockets gone TCP) and, with `arm`, arms the others too for a
// sleep. `wait_ms` as in Sync. The set is locked.
void Maintain(EpollSet& set, bool arm, int* wait_ms) {
  // Only the watch list: a clean established registration's doorbell is
  // armed already (Sync would return at once).
  std::vector<EpollReg*> regs;
  regs.swap(set.watch);
  for (EpollReg* r : regs) r->watched = false;
  for (EpollReg* r : regs) {
    if (r->conn->phase() == Phase::kConnecting) {
      r->conn->SettleConnect(r->app_fd);
    }
    runtime::SmcSocket* s = r->conn->smc();
    if (s != nullptr && s->handshaking()) {
      s->AfterWait();  // feeds a due CLC timeout
      (void)r->conn->Poll(r->app_fd, POLLIN);
    }
    if (!arm && Established(*r) != nullptr) {
      Watch(set, r);  // arm it at the next sleep
      continue;
    }
    if (!Sync(set, r, wait_ms)) continue;  // handed to the kernel, gone
    // Established and armed (or parked, for one the app removed): nothing
    // to do until a ring, a report or the app's epoll_ctl makes it dirty.
    if (Established(*r) == nullptr || (r->dirty && r->active)) Watch(set, r);
  }
}

void RevokeSleepTokens(EpollSet& set) {
  if (!set.tokens_out) return;
  for (auto& r : set.regs) MarkDirty(set, r.get());
  set.tokens_out = false;
}

int MsLeft(int timeout_ms, Clock::time_point deadline) {
  if (timeout_ms < 0) return -1;
  auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(left.count(), 0));
}

}  // namespace epoll_detail

using epoll_detail::Clock;
using epoll_detail::Established;
using epoll_detail::g_any_epoll;
using epoll_detail::g_epoll_fds;
using epoll_detail::kIsEpoll;
using epoll_detail::kMaxFd;
using epoll_detail::kNested;
using epoll_detail::kSpinMaxSockets;
using epoll_detail::Maintain;
using epoll_detail::MarkDirty;
using epoll_detail::MsLeft;
using epoll_detail::Park;
using epoll_detail::PlainSleepers;
using epoll_detail::RemoveReg;
using epoll_detail::RevokeSleepTokens;
using epoll_detail::ScanMode;
using epoll_detail::ScanWait;
using epoll_detail::Sets;
using epoll_detail::SpinForReady;
using epoll_detail::Sync;
using epoll_detail::TranslateAll;
using epoll_detail::Watch;

// ---- Conn's mirrors
// ----------------------------------------------------------

void Conn::UpdateMirrors(bool poke) {
  Inside in;
  short r = 0;
  if (runtime::SmcSocket* s = smc()) {
    r = s->Poll(POLLIN | POLLOUT | POLLRDHUP | POLLPRI);
  }
  std::lock_guard lock(mu);
  if (mirror_rd < 0) {
    mirror_rd = base::OwnFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  }
  if (mirror_wr < 0) {
    mirror_wr = base::OwnFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  }
  const bool rd = r & (POLLIN | POLLRDHUP | POLLPRI | POLLHUP | POLLERR);
  const bool wr = r & (POLLOUT | POLLHUP | POLLERR);
  uint64_t v = 1;
  if (rd && (!mirror_rd_on || poke)) {
    (void)real().write(mirror_rd, &v, sizeof v);
  } else if (!rd && mirror_rd_on) {
    (void)real().read(mirror_rd, &v, sizeof v);
  }
  if (wr && !mirror_wr_on) {
    (void)real().write(mirror_wr, &v, sizeof v);
  } else if (!wr && mirror_wr_on) {
    (void)real().read(mirror_wr, &v, sizeof v);
  }
  mirror_rd_on = rd;
  mirror_wr_on = wr;
}

void Conn::OnWake(int app_fd, int fired_fd, short revents, bool edge) {
  Inside in;
  if (phase() == Phase::kConnecting) {
    SettleConnect(app_fd);
    return;
  }
  if (runtime::SmcSocket* s = smc()) {
    if (fired_fd >= 0) {
      // Only the fd that fired: a doorbell ring then costs no look at the
      // (silent) TCP socket.
      runtime::SmcSocket::WaitSpec polled;
      polled.n = 1;
      polled.fds[0] = {fired_fd, POLLIN, revents};
      s->AfterWait(polled, edge);
    } else {
      s->AfterWait();
    }
    (void)Poll(app_fd, POLLIN);  // settles the phase if the handshake ended
  }
  // One set: no mirror update. epoll_wait reports what holds right away,
  // and the registration's next PrepareWait sets the mirror if data is
  // left over (level-triggered), so a wakeup costs no eventfd write.
  // Several sets: this set drained the ring the others were woken for, so
  // they learn of it through the mirror (a new edge for ET sets).
  bool shared;
  {
    std::lock_guard lock(mu);
    shared = regs.size() > 1;
  }
  if (shared) UpdateMirrors(/*poke=*/true);
}

// ---- wrappers' implementation
// -------------------------------------------------

namespace {

// An edge-triggered registration reports what is ready at its next look
// (the kernel does so after ADD and MOD).
constexpr uint64_t kReportNow = ~uint64_t{0};

// After the app's ADD/MOD: the kernel items follow the new interest at once,
// except in scan mode, where an established SMC-D socket is looked at in
// shared memory and its items matter only when the set sleeps (Sync then).
// Redis's ae changes interest on every request: that costs no system call.
// A thread asleep in the set now made its sleep's Sync without this socket
// (or before the set was ours, or in kernel-visible mode before the set
// shrank into scan mode): only the kernel can wake it for the socket, so
// the items go in now (the set's last sleeper disarms them once up).
void SyncAfterCtl(EpollSet& set, EpollReg* reg) {
  if (ScanMode(set) && Established(*reg) != nullptr && set.sleepers == 0 &&
      set.kernel_sleepers == 0 && PlainSleepers(set.epfd) == 0) {
    return;
  }
  reg->conn->UpdateMirrors();
  Sync(set, reg, nullptr);
}

EpollReg* NewReg(EpollSet& set, int fd, const std::shared_ptr<Conn>& c,
                 uint32_t events, epoll_data_t data) {
  auto r = std::make_unique<EpollReg>();
  r->set = &set;
  r->app_fd = fd;
  r->conn = c;
  r->events = events;
  r->data = data;
  r->edge_seen = kReportNow;
  r->index = set.regs.size();
  EpollReg* reg = r.get();
  set.regs.push_back(std::move(r));
  Watch(set, reg);
  {
    std::lock_guard cl(c->mu);
    c->regs.push_back(reg);
  }
  c->in_epoll.store(true, std::memory_order_relaxed);
  return reg;
}

// Whether the kernel's item of `fd` in `epfd` is a ONESHOT that fired and
// was not re-armed: the kernel then keeps only the flag bits of its events,
// which /proc shows (there is no other way to read an item back).
bool KernelOneshotFired(int epfd, int fd) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fdinfo/%d", epfd);
  const int pf = ::open(path, O_RDONLY | O_CLOEXEC);
  if (pf < 0) return false;
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = real().read(pf, buf, sizeof buf)) > 0;) {
    text.append(buf, static_cast<size_t>(n));
  }
  real().close(pf);
  constexpr uint32_t kPrivate =
      EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE;
  for (size_t at = text.find("tfd:"); at != std::string::npos;
       at = text.find("tfd:", at + 4)) {
    int tfd = -1;
    unsigned events = 0;
    if (std::sscanf(text.c_str() + at, "tfd: %d events: %x", &tfd, &events) ==
            2 &&
        tfd == fd) {
      return (events & ~kPrivate) == 0;
    }
  }
  return false;
}

}  // namespace

void AdoptEarlyEpollRegs(const std::shared_ptr<Conn>& c,
                         const std::vector<EarlyEpollItem>& items) {
  Inside in;
  for (const EarlyEpollItem& it : items) {
    if (table().Lookup(it.fd) != c) continue;
    const bool fired =
        (it.events & EPOLLONESHOT) && KernelOneshotFired(it.epfd, it.fd);
    // Fails if the kernel dropped the item (its epoll fd was closed).
    if (real().epoll_ctl(it.epfd, EPOLL_CTL_DEL, it.fd, nullptr) != 0) {
      continue;
    }
    std::shared_ptr<EpollSet> set = Sets().FindOrCreate(it.epfd);
    std::lock_guard lock(set->mu);
    EpollReg* reg = NewReg(*set, it.fd, c, it.events, it.data);
    reg->oneshot_fired = fired;
    SyncAfterCtl(*set, reg);
  }
}

int EpollCtl(int epfd, int op, int fd, epoll_event* ev) {
  if (IsFresh(fd)) {
    // A socket not connected yet (or being taken over by its Conn now):
    // the kernel's item, remembered for connect().
    int r;
    if (FreshEpollCtl(epfd, op, fd, ev, &r)) return r;
  }
  // kPassThru: TCP for good with no registration of ours (Conn::TcpForGood),
  // so the kernel's item is the app's own.
  std::shared_ptr<Conn> c =
      table().Kind(fd) == FdKind::kConn ? table().Lookup(fd) : nullptr;
  if (!c) {
    if (op == EPOLL_CTL_ADD && AnyEpollCreated()) NoteNestedIfEpoll(fd);
    return real().epoll_ctl(epfd, op, fd, ev);
  }
  Inside in;
  if (c->phase() == Phase::kConnecting) c->SettleConnect(fd);
  // A TCP connection makes no set: a set of ours costs every epoll_wait
  // (a lookup, and a look at the kernel's list before each sleep). One
  // that exists may hold a registration the app removed (DEL) and adds
  // back now.
  std::shared_ptr<EpollSet> set =
      op == EPOLL_CTL_ADD && c->phase() != Phase::kTcp
          ? Sets().FindOrCreate(epfd)
          : Sets().Find(epfd);
  if (!set) return real().epoll_ctl(epfd, op, fd, ev);
  std::lock_guard lock(set->mu);
  // By the connection's registrations (one or two), not the set's: a set
  // of 10,000 made every ADD and MOD cost a scan of them all.
  EpollReg* reg = nullptr;
  {
    std::lock_guard cl(c->mu);
    for (EpollReg* r : c->regs) {
      if (r->set == set.get() && r->app_fd == fd) reg = r;
    }
  }
  // Whatever the op, the next sleep looks at it (a DEL in scan mode leaves
  // its items to Sync).
  if (reg != nullptr) Watch(*set, reg);
  switch (op) {
    case EPOLL_CTL_ADD: {
      if (reg != nullptr && reg->active) {
        errno = EEXIST;
        return -1;
      }
      if (ev == nullptr) {
        errno = EFAULT;
        return -1;
      }
      if (reg != nullptr) {  // back after a DEL: no new registration
        reg->active = true;
        reg->events = ev->events;
        reg->data = ev->data;
        reg->oneshot_fired = false;
        MarkDirty(*set, reg);
        reg->edge_seen = kReportNow;
        SyncAfterCtl(*set, reg);
        return 0;
      }
      if (c->phase() == Phase::kTcp) return real().epoll_ctl(epfd, op, fd, ev);
      // Let the kernel judge epfd and fd (EBADF, EINVAL, ELOOP...).
      epoll_event probe{};
      if (real().epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &probe) != 0) return -1;
      real().epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
      SyncAfterCtl(*set, NewReg(*set, fd, c, ev->events, ev->data));
      return 0;
    }
    case EPOLL_CTL_MOD:
      if (reg == nullptr || !reg->active) {
        return real().epoll_ctl(epfd, op, fd, ev);  // ENOENT, as the kernel
      }
      if (ev == nullptr) {
        errno = EFAULT;
        return -1;
      }
      // MOD re-arms a fired ONESHOT and re-reports what is ready to an ET
      // set: the kernel must see it too. A level-triggered change of
      // interest needs only the items whose events change.
      if ((reg->events | ev->events) & (EPOLLET | EPOLLONESHOT)) {
        reg->rd.events = reg->wr.events = ~0u;
      }
      reg->events = ev->events;
      reg->data = ev->data;
      reg->oneshot_fired = false;
      MarkDirty(*set, reg);
      reg->edge_seen = kReportNow;
      SyncAfterCtl(*set, reg);
      return 0;
    case EPOLL_CTL_DEL:
      if (reg == nullptr || !reg->active) {
        return real().epoll_ctl(epfd, op, fd, ev);
      }
      reg->active = false;
      if (!ScanMode(*set)) {
        Park(*set, reg->rd);
        Park(*set, reg->wr);
      }
      return 0;
    default:
      errno = EINVAL;
      return -1;
  }
}

int EpollWait(int epfd, epoll_event* events, int maxevents, int timeout_ms,
              const sigset_t* sigmask) {
  std::shared_ptr<EpollSet> set =
      epoll_detail::g_any_set.load(std::memory_order_acquire)
          ? Sets().Find(epfd)
          : nullptr;
  if (!set) {
    return PlainEpollWait(epfd, events, maxevents, timeout_ms, sigmask);
  }
  Inside in;
  size_t nregs;
  bool scan;
  {
    std::lock_guard lock(set->mu);
    nregs = set->regs.size();
    scan = ScanMode(*set);
  }
  if (scan && maxevents > 0) {
    return ScanWait(*set, events, maxevents, timeout_ms, sigmask);
  }
  const Clock::time_point deadline =
      Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
  // Before any look at the kernel's list: a registration reported last
  // time is not armed (dirty), so bytes that reached it since rang no
  // doorbell. Its look (PrepareWait) puts it into the kernel's list now,
  // into the same batch as any doorbell that rang after it, and Translate
  // orders the batch by arrival: otherwise a later request on an armed
  // socket would overtake it (Redis: a client's UNSUBSCRIBE, then another
  // client's PUBLISH).
  auto sync_all = [&](int* wait_ms) {
    std::lock_guard lock(set->mu);
    RevokeSleepTokens(*set);  // left by scan mode (the set grew, or nested)
    Maintain(*set, /*arm=*/true, wait_ms);
  };
  if (timeout_ms != 0 && nregs <= kSpinMaxSockets) {
    // Whatever holds already (kernel fds included) goes out without a spin.
    int ignored_ms = -1;
    sync_all(&ignored_ms);
    int n = real().epoll_pwait(epfd, events, maxevents, 0, sigmask);
    if (n < 0) return n;
    if (n > 0) {
      std::lock_guard lock(set->mu);
      int out = TranslateAll(*set, events, n);
      if (out > 0) return out;
    }
    SpinForReady(*set, kSpinMaxSockets);
  }
  for (;;) {
    int wait_ms = MsLeft(timeout_ms, deadline);
    {
      std::lock_guard lock(set->mu);
      RevokeSleepTokens(*set);
      Maintain(*set, /*arm=*/true, &wait_ms);
      // Counted: should the set shrink into scan mode meanwhile, an ADD
      // must still register with the kernel (SyncAfterCtl).
      ++set->kernel_sleepers;
    }
    int n = real().epoll_pwait(epfd, events, maxevents, wait_ms, sigmask);
    const int saved = errno;
    int out = 0;
    {
      std::lock_guard lock(set->mu);
      --set->kernel_sleepers;
      if (n > 0) out = TranslateAll(*set, events, n);
    }
    errno = saved;
    if (n <= 0) {
      if (n < 0) return n;
      if (timeout_ms >= 0 && Clock::now() >= deadline) return 0;
      continue;
    }
    if (out > 0) return out;
    if (timeout_ms == 0) {
      // Only our wake events came back: their effect (mirrors) shows on a
      // second look at once.
      n = real().epoll_pwait(epfd, events, maxevents, 0, sigmask);
      if (n <= 0) return n;
      std::lock_guard lock(set->mu);
      return TranslateAll(*set, events, n);
    }
    if (timeout_ms > 0 && Clock::now() >= deadline) return 0;
  }
}

namespace {

// The kernel's wait (glibc's epoll_wait without a mask: its cheaper entry).
int KernelWait(int epfd, epoll_event* events, int maxevents, int timeout_ms,
               const sigset_t* sigmask) {
  return sigmask == nullptr
             ? real().epoll_wait(epfd, events, maxevents, timeout_ms)
             : real().epoll_pwait(epfd, events, maxevents, timeout_ms, sigmask);
}

// PlainEpollWait's kernel wait returned `n` > 0 events and epfd has a set
// of ours now, made by another thread meanwhile: its items may be among
// them, with our tags, not the app's data. `counted`: the wait was a
// counted sleep, which may go on as the set's if only our wake events
// came. Out of line: PlainEpollWait stays a few instructions.
[[gnu::noinline]] int AfterPlainWait(int epfd, epoll_event* events,
                                     int maxevents, int timeout_ms,
                                     const sigset_t* sigmask, int n,
                                     bool counted) {
  std::shared_ptr<EpollSet> set = Sets().Find(epfd);
  if (!set) return n;
  int out;
  {
    Inside in;
    std::lock_guard lock(set->mu);
    out = TranslateAll(*set, events, n);
  }
  if (out > 0 || !counted) return out;
  // Only our wake events: sleep on as the set's. (With the whole timeout
  // again, once: a clock read before every sleep cost more than the rest
  // of this wrapper.)
  return EpollWait(epfd, events, maxevents, timeout_ms, sigmask);
}

}  // namespace

int PlainEpollWait(int epfd, epoll_event* events, int maxevents, int timeout_ms,
                   const sigset_t* sigmask) {
  if (timeout_ms != 0 && epfd >= 0 && epfd < kMaxFd) {
    std::atomic<uint32_t>& waits = epoll_detail::g_plain_waits[epfd];
    if (waits.fetch_add(1, std::memory_order_seq_cst) & epoll_detail::kHasSet)
        [[unlikely]] {
      // The set became ours since the caller looked.
      waits.fetch_sub(1, std::memory_order_seq_cst);
      return EpollWait(epfd, events, maxevents, timeout_ms, sigmask);
    }
    const int n = KernelWait(epfd, events, maxevents, timeout_ms, sigmask);
    // errno stays; the old value says whether a set came meanwhile.
    if ((waits.fetch_sub(1, std::memory_order_seq_cst) &
         epoll_detail::kHasSet) &&
        n > 0) [[unlikely]] {
      return AfterPlainWait(epfd, events, maxevents, timeout_ms, sigmask, n,
                            /*counted=*/true);
    }
    return n;
  }
  // Not counted (no sleep, or an epoll fd past kMaxFd, whose set is never
  // in scan mode: NestedHint): a set made meanwhile is looked up.
  const int n = KernelWait(epfd, events, maxevents, timeout_ms, sigmask);
  if (n > 0 && (epfd >= 0 && epfd < kMaxFd
                    ? (epoll_detail::g_plain_waits[epfd].load(
                           std::memory_order_acquire) &
                       epoll_detail::kHasSet)
                    : epoll_detail::g_any_set.load(std::memory_order_acquire)))
      [[unlikely]] {
    return AfterPlainWait(epfd, events, maxevents, timeout_ms, sigmask, n,
                          /*counted=*/false);
  }
  return n;
}

void DropEpollRegs(Conn& c) {
  std::vector<EpollReg*> regs;
  {
    std::lock_guard lock(c.mu);
    regs = c.regs;
  }
  for (EpollReg* reg : regs) {
    std::shared_ptr<EpollSet> set = Sets().Find(reg->set->epfd);
    if (!set) continue;
    std::lock_guard lock(set->mu);
    // Still registered: RemoveReg and ForgetEpollSet take it off c.regs
    // under the set's lock (a look at the set's 10,000 was O(n) per close).
    bool present;
    {
      std::lock_guard cl(c.mu);
      present = std::find(c.regs.begin(), c.regs.end(), reg) != c.regs.end();
    }
    if (present) RemoveReg(*set, reg);
  }
}

void ForgetEpollSet(int epfd) {
  if (epfd >= 0 && epfd < kMaxFd &&
      g_any_epoll.load(std::memory_order_relaxed)) {
    g_epoll_fds[epfd].store(0, std::memory_order_relaxed);
  }
  // Every close() of the app comes here: one load while no set exists.
  if (!AnyEpollSet()) return;
  std::shared_ptr<EpollSet> set = Sets().Remove(epfd);
  if (!set) return;
  std::lock_guard lock(set->mu);
  for (auto& r : set->regs) {
    std::lock_guard cl(r->conn->mu);
    auto& v = r->conn->regs;
    v.erase(std::remove(v.begin(), v.end(), r.get()), v.end());
    r->conn->in_epoll.store(!v.empty(), std::memory_order_relaxed);
  }
  set->watch.clear();
  set->regs.clear();  // the kernel dropped its side with the epoll fd
}

bool IsTrackedEpollSet(int epfd) {
  return AnyEpollSet() && Sets().Find(epfd) != nullptr;
}

}  // namespace usmc::preload

namespace usmc::preload {

void NoteEpollCreated(int epfd) {
  if (epfd < 0 || epfd >= kMaxFd) return;
  g_epoll_fds[epfd].store(kIsEpoll, std::memory_order_relaxed);
  g_any_epoll.store(true, std::memory_order_relaxed);
}

bool AnyEpollCreated() { return g_any_epoll.load(std::memory_order_relaxed); }

void NoteNestedIfEpoll(int fd) {
  if (fd < 0 || fd >= kMaxFd) return;
  const uint8_t f = g_epoll_fds[fd].load(std::memory_order_relaxed);
  if (!(f & kIsEpoll) || (f & kNested)) return;
  g_epoll_fds[fd].store(f | kNested, std::memory_order_relaxed);
  std::shared_ptr<EpollSet> set = Sets().any() ? Sets().Find(fd) : nullptr;
  if (!set) return;  // becomes a set later: FindOrCreate reads the hint
  std::lock_guard lock(set->mu);
  if (set->nested) return;
  // Out of scan mode: arm everything now, as the kernel-visible mode keeps
  // it between calls; the outer poll or epoll set may sleep at once.
  set->nested = true;
  RevokeSleepTokens(*set);
  int ignored_ms = -1;
  Maintain(*set, /*arm=*/true, &ignored_ms);
}

}  // namespace usmc::preload
