#include "preload/unattended.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "base/owned_fd.h"
#include "preload/conn.h"
#include "preload/real.h"
#include "runtime/arena_watch.h"
#include "runtime/config.h"
#include "runtime/smc_socket.h"

namespace usmc::preload {
namespace {

using Clock = std::chrono::steady_clock;
using Live = std::vector<std::shared_ptr<Conn>>;

struct Noted {
  std::weak_ptr<Conn> conn;
  Clock::time_point due;  // when the thread starts driving it
};

// The app's own calls come first: most apps touch a socket within this
// time of accepting it (and a forking server forks at once, after which
// the child drives it: see UnattendedAfterFork). Only connections left
// alone longer are the thread's.
constexpr std::chrono::milliseconds kGrace{20};

// More undecided accepts than this at once: the rest wait for the app's
// calls, as without the thread.
constexpr size_t kMaxNoted = 1024;

// Never destroyed: the thread may still run while the process exits.
struct State {
  std::mutex mu;     // the fields below
  std::mutex drive;  // held by the thread while it calls into sockets
  std::vector<Noted> noted;
  bool running = false;
  pid_t owner = 0;  // the process the thread runs in (a fork copies `running`)
  // Bumped by every fork (under both locks): connections noted before it
  // are shared with the child, which may handshake them itself now.
  uint64_t epoch = 0;
  int wake = -1;  // eventfd: new connections to watch
  // The same for UnattendedReleased, which may run under a connection's
  // locks (the fork wrapper takes `mu` before those): no lock there.
  std::atomic<int> wake_fd{-1};
  std::atomic<pid_t> wake_owner{0};
  // UnattendedReleased calls inside a write to wake_fd: the thread closes
  // the eventfd when it ends only once none is (the number could be the
  // app's by then).
  std::atomic<int> ringers{0};
};
State& S() {
  static State* s = new State();
  return *s;
}

bool Undecided(const Conn& c) {
  if (c.phase() != Phase::kSmc) return false;
  runtime::SmcSocket* s = c.smc();
  return s != nullptr && s->handshaking();
}

// Idle this long, the thread ends: a server accepting now and then does
// not start one per connection.
constexpr int kLingerMs = 1000;

// Under st.mu, the thread ending (or gone with a fork): an idle process
// holds no fd of usmc's, as before its first connection.
void CloseWakeLocked(State& st) {
  st.wake_fd.store(-1, std::memory_order_seq_cst);
  while (st.ringers.load(std::memory_order_seq_cst) != 0) {
    std::this_thread::yield();  // a ring in flight: one write(2)
  }
  if (st.wake >= 0) base::CloseOwnedFd(st.wake);
  st.wake = -1;
}

// The noted connections still undecided and due; forgets the decided
// ones, which it adds to `*decided` (another call decided them, maybe one
// that does not publish: a poll's or epoll's look at the socket).
// `*next_ms`: when the next one falls due (-1: none waits). Nothing
// noted and `stop`: the thread is done (under the lock, so a new note
// starts another).
Live TakeOrStop(bool stop, uint64_t* epoch, int* next_ms, Live* decided) {
  State& st = S();
  std::lock_guard lock(st.mu);
  *epoch = st.epoch;
  *next_ms = -1;
  const Clock::time_point now = Clock::now();
  Live live;
  auto keep = st.noted.begin();
  for (auto it = st.noted.begin(); it != st.noted.end(); ++it) {
    std::shared_ptr<Conn> c = it->conn.lock();
    if (!c) continue;
    if (!Undecided(*c)) {
      decided->push_back(std::move(c));
      continue;
    }
    if (it->due <= now) {
      live.push_back(std::move(c));
    } else {
      const int ms = static_cast<int>(
          std::chrono::ceil<std::chrono::milliseconds>(it->due - now).count());
      *next_ms = *next_ms < 0 ? ms : std::min(*next_ms, ms);
    }
    if (keep != it) *keep = std::move(*it);  // a self-move empties it
    ++keep;
  }
  st.noted.erase(keep, st.noted.end());
  if (st.noted.empty() && stop && !runtime::ArenaPairsWatching()) {
    st.running = false;
    CloseWakeLocked(st);
  }
  return live;
}

int MinTimeout(int a, int b) { return a < 0 ? b : b < 0 ? a : std::min(a, b); }

// Publishes the decisions other calls made (`usmc ss` shows them now,
// not at the app's next call), unless a fork came since `epoch`.
void AfterDecided(Live& decided, uint64_t epoch) {
  if (decided.empty()) return;
  State& st = S();
  std::lock_guard drive(st.drive);
  if (st.epoch == epoch) {
    for (auto& c : decided) c->AfterProgress();
  }
  decided.clear();
}

void* Run(void*) {
  Inside in;  // our own socket calls go to the kernel, not to the wrappers
  State& st = S();
  Live decided;
  for (;;) {
    uint64_t epoch;
    int next_ms;
    Live live = TakeOrStop(/*stop=*/false, &epoch, &next_ms, &decided);
    AfterDecided(decided, epoch);
    if (live.empty()) {
      // Nothing to drive: the idle arena pairs' peers are watched for
      // their exit meanwhile (dev/shm_pairs.h).
      int watch_ms = -1;
      std::vector<pollfd> p{{st.wake, POLLIN, 0}};
      {
        // A fork waits for the pairs' lock to be free (UnattendedBeforeFork).
        std::lock_guard drive(st.drive);
        for (int fd : runtime::ArenaPairWatchFds(&watch_ms)) {
          p.push_back({fd, POLLIN, 0});
        }
      }
      int timeout = MinTimeout(next_ms, watch_ms);
      if (timeout < 0) timeout = kLingerMs;
      const int n = real().poll(p.data(), p.size(), timeout);
      if (n > 0) {
        if (p[0].revents != 0) {
          uint64_t v;
          (void)real().read(st.wake, &v, sizeof v);
        }
        if (p.size() > 1) {
          std::lock_guard drive(st.drive);  // a fork waits for it
          runtime::DropArenaPairsOfExitedPeers();
        }
        continue;
      }
      if (next_ms >= 0 || watch_ms >= 0) continue;  // one fell due
      live = TakeOrStop(/*stop=*/true, &epoch, &next_ms, &decided);
      AfterDecided(decided, epoch);
      if (live.empty()) {
        if (next_ms < 0) return nullptr;
        continue;
      }
    }
    std::vector<pollfd> fds{{st.wake, POLLIN, 0}};
    std::vector<Conn*> owner;  // of fds[1..]
    int wait_ms = next_ms;
    {
      std::lock_guard drive(st.drive);
      for (auto& c : live) {
        runtime::SmcSocket* s = c->smc();
        if (s == nullptr) continue;
        // Only the handshake's fds: once decided, the doorbell and the
        // connection's readiness are the app's business alone.
        runtime::SmcSocket::WaitSpec w = s->HandshakeSpec();
        for (int j = 0; j < w.n; ++j) {
          fds.push_back(w.fds[j]);
          owner.push_back(c.get());
        }
        wait_ms = MinTimeout(wait_ms, w.timeout_ms);
      }
    }
    if (fds.size() == 1) continue;  // all decided meanwhile: forget them
    const int n = real().poll(fds.data(), fds.size(), wait_ms);
    if (n < 0) continue;  // EINTR cannot come (signals blocked); ENOMEM
    if (fds[0].revents != 0) {
      uint64_t v;
      (void)real().read(st.wake, &v, sizeof v);
    }
    std::lock_guard drive(st.drive);
    // A fork since the look: the child may be handshaking these right now,
    // and two processes reading one socket's CLC bytes break it.
    if (st.epoch != epoch) continue;
    Conn* last = nullptr;
    for (size_t k = 1; k < fds.size(); ++k) {
      // Fired, or nothing did (a CLC deadline came): Progress takes either.
      if ((fds[k].revents != 0 || n == 0) && owner[k - 1] != last) {
        last = owner[k - 1];
        runtime::SmcSocket* s = last->smc();
        if (s == nullptr) continue;  // the app's call decided it: TCP
        (void)s->Progress(0);
        last->AfterProgress();  // `usmc ss` shows it now
      }
    }
  }
}

// Under st.mu.
bool StartLocked(State& st) {
  if (st.wake < 0) {
    st.wake = base::OwnFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  }
  if (st.wake < 0) return false;
  // Every signal blocked in the thread: the app's handlers run on its own
  // threads, as without usmc.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  const bool ok = pthread_create(&t, &attr, Run, nullptr) == 0;
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (ok) {
    st.running = true;
    st.owner = ::getpid();
    st.wake_fd.store(st.wake, std::memory_order_relaxed);
    st.wake_owner.store(st.owner, std::memory_order_release);
  }
  return ok;
}

// Read at load: nginx clears its workers' environment.
const bool g_unattended_enabled = runtime::ProcessConfig().progress_thread;

}  // namespace

void NoteUnattended(const std::shared_ptr<Conn>& c) {
  if (!g_unattended_enabled || !Undecided(*c)) return;
  if (runtime::SmcSocket* s = c->smc()) s->WatchDecision();
  State& st = S();
  std::lock_guard lock(st.mu);
  if (st.noted.size() >= kMaxNoted) return;
  // A fork the wrapper did not see (glibc's daemon()) copied `running`
  // without the thread.
  if (st.running && st.owner != ::getpid()) {
    st.running = false;
    st.noted.clear();
    st.ringers.store(0);  // the parent's threads are not here
    CloseWakeLocked(st);  // the parent's thread's
  }
  st.noted.push_back({c, Clock::now() + kGrace});
  if (st.running) {
    const uint64_t one = 1;
    (void)real().write(st.wake, &one, sizeof one);
  } else if (!StartLocked(st)) {
    st.noted.pop_back();  // the app's calls drive it, as without the thread
  }
}

void UnattendedReleased() {
  State& st = S();
  // Another process's (a fork the wrapper did not see): not ours to ring.
  if (st.wake_owner.load(std::memory_order_acquire) != ::getpid()) return;
  st.ringers.fetch_add(1, std::memory_order_seq_cst);
  const int fd = st.wake_fd.load(std::memory_order_seq_cst);
  const uint64_t one = 1;
  if (fd >= 0) (void)real().write(fd, &one, sizeof one);
  st.ringers.fetch_sub(1, std::memory_order_seq_cst);
}

void WatchIdlePairs() {
  if (!g_unattended_enabled || !runtime::ArenaPairsWatching()) {
    return;
  }
  State& st = S();
  std::lock_guard lock(st.mu);
  if (st.running && st.owner != ::getpid()) return;  // NoteUnattended's case
  if (st.running) {
    const uint64_t one = 1;
    (void)real().write(st.wake, &one, sizeof one);
  } else {
    (void)StartLocked(st);  // else the next handshake's sweep drops them
  }
}

void UnattendedBeforeFork() {
  S().drive.lock();
  S().mu.lock();
}

void UnattendedAfterFork(bool child) {
  State& st = S();
  // Both processes hold the noted connections now; whichever uses one
  // drives it by its calls, as before the thread (a forking server's parent
  // only closes them).
  st.noted.clear();
  ++st.epoch;
  if (child) {
    st.running = false;
    st.ringers.store(0);  // only the forking thread came along
    CloseWakeLocked(st);  // the parent's thread's
  }
  st.mu.unlock();
  st.drive.unlock();
}

}  // namespace usmc::preload
