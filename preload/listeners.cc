// preload/listeners.cc: see listeners.h.
#include "preload/listeners.h"

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "runtime/publish.h"

namespace usmc::preload {
namespace {

struct Listener {
  runtime::SlotId slot = runtime::kNoSlot;
  int fds = 0;          // fds of this process that refer to it
  bool offers = true;   // false: NoteListeningUnattached (never published)
  bool denied = false;  // NoteListeningDenied (never published either)
};

struct Table {
  std::mutex mu;
  std::map<int, std::shared_ptr<Listener>> by_fd;
  // by_fd.size(): lets close() skip the lock when there is no listener.
  std::atomic<size_t> count{0};
};

Table& T() {
  static Table* t = new Table();  // never destroyed: used at exit
  return *t;
}

ListenerKind KindOf(const Listener& l) {
  return l.denied   ? ListenerKind::kDenied
         : l.offers ? ListenerKind::kOffers
                    : ListenerKind::kUnattached;
}

// Per fd number below kShadowFds: what by_fd holds for it (written under
// mu). close() of every other fd (nginx closes each file it serves) and
// each accept() then cost a load, not the mutex and a map lookup.
constexpr int kShadowFds = 1 << 16;
std::atomic<ListenerKind> g_listener_fd[kShadowFds];

void Shadow(int fd, ListenerKind kind) {
  if (fd >= 0 && fd < kShadowFds) {
    g_listener_fd[fd].store(kind, std::memory_order_release);
  }
}

// Under mu. Drops fd's reference; the last one releases the slot.
void ForgetLocked(Table& t, int fd) {
  auto it = t.by_fd.find(fd);
  if (it == t.by_fd.end()) return;
  std::shared_ptr<Listener> l = std::move(it->second);
  t.by_fd.erase(it);
  t.count.store(t.by_fd.size(), std::memory_order_relaxed);
  Shadow(fd, ListenerKind::kNone);
  if (--l->fds > 0 || !l->offers) return;
  if (runtime::StatusPublisher* pub = runtime::StatusPublisher::Process())
    pub->Release(l->slot);
}

}  // namespace

void NoteListening(int fd) {
  runtime::StatusPublisher* pub = runtime::StatusPublisher::Process();
  if (pub == nullptr) return;
  Table& t = T();
  std::lock_guard lock(t.mu);
  std::shared_ptr<Listener>& l = t.by_fd[fd];
  if (!l || !l->offers) {
    l = std::make_shared<Listener>();
    l->fds = 1;
    l->slot = pub->Acquire();
    t.count.store(t.by_fd.size(), std::memory_order_relaxed);
  }
  Shadow(fd, ListenerKind::kOffers);
  // Also when known: a listen() again may follow a close we did not see
  // (a raw syscall), so the record is rebuilt from the socket as it is now.
  pub->Update(l->slot, runtime::ListenRecord(fd));
}

void NoteListeningUnattached(int fd) {
  Table& t = T();
  std::lock_guard lock(t.mu);
  ForgetLocked(t, fd);  // a listen() again, after a close we did not see
  auto l = std::make_shared<Listener>();
  l->fds = 1;
  l->offers = false;
  t.by_fd[fd] = std::move(l);
  t.count.store(t.by_fd.size(), std::memory_order_relaxed);
  Shadow(fd, ListenerKind::kUnattached);
}

void NoteListeningDenied(int fd) {
  Table& t = T();
  std::lock_guard lock(t.mu);
  ForgetLocked(t, fd);  // a listen() again, after a close we did not see
  auto l = std::make_shared<Listener>();
  l->fds = 1;
  l->offers = false;
  l->denied = true;
  t.by_fd[fd] = std::move(l);
  t.count.store(t.by_fd.size(), std::memory_order_relaxed);
  Shadow(fd, ListenerKind::kDenied);
}

ListenerKind ListenerKindOf(int fd) {
  Table& t = T();
  if (t.count.load(std::memory_order_relaxed) == 0) return ListenerKind::kNone;
  if (fd >= 0 && fd < kShadowFds) {
    return g_listener_fd[fd].load(std::memory_order_acquire);
  }
  std::lock_guard lock(t.mu);
  auto it = t.by_fd.find(fd);
  return it != t.by_fd.end() ? KindOf(*it->second) : ListenerKind::kNone;
}

void ForgetListenerFd(int fd) {
  Table& t = T();
  if (t.count.load(std::memory_order_relaxed) == 0) return;
  if (fd >= 0 && fd < kShadowFds &&
      g_listener_fd[fd].load(std::memory_order_acquire) ==
          ListenerKind::kNone) {
    return;
  }
  std::lock_guard lock(t.mu);
  ForgetLocked(t, fd);
}

void ForgetListenerFds(unsigned first, unsigned last) {
  Table& t = T();
  if (t.count.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard lock(t.mu);
  std::vector<int> fds;
  for (const auto& [fd, l] : t.by_fd)
    if (static_cast<unsigned>(fd) >= first && static_cast<unsigned>(fd) <= last)
      fds.push_back(fd);
  for (int fd : fds) ForgetLocked(t, fd);
}

void DuplicateListenerFd(int from, int to) {
  Table& t = T();
  if (t.count.load(std::memory_order_relaxed) == 0 || from == to) return;
  std::lock_guard lock(t.mu);
  auto it = t.by_fd.find(from);
  if (it == t.by_fd.end()) return;
  std::shared_ptr<Listener> l = it->second;
  ForgetLocked(t, to);  // the caller closed `to` already; be sure
  ++l->fds;
  Shadow(to, KindOf(*l));
  t.by_fd[to] = std::move(l);
  t.count.store(t.by_fd.size(), std::memory_order_relaxed);
}

void ListenersBeforeFork() { T().mu.lock(); }

void ListenersAfterForkParent() { T().mu.unlock(); }

void ListenersAfterForkChild() {
  Table& t = T();
  // The slots are in the parent's file; the child gets its own (as its
  // connections do, Conn::RepublishAfterFork).
  runtime::StatusPublisher* pub =
      t.by_fd.empty() ? nullptr : runtime::StatusPublisher::Process();
  std::set<Listener*> done;
  for (const auto& [fd, l] : t.by_fd) {
    if (!done.insert(l.get()).second || !l->offers) continue;
    l->slot = runtime::kNoSlot;
    if (pub == nullptr) continue;
    l->slot = pub->Acquire();
    pub->Update(l->slot, runtime::ListenRecord(fd));
  }
  t.mu.unlock();
}

}  // namespace usmc::preload
