#include "preload/fresh_sockets.h"

#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "preload/real.h"

namespace usmc::preload {
namespace fresh_detail {
// 0: not a fresh socket; kMarked: fresh, nothing remembered yet; kListed:
// fresh, with an entry in the table (a dup or an epoll registration).
std::atomic<uint8_t> g_fresh[kMaxFd];
}  // namespace fresh_detail

namespace {

using fresh_detail::g_fresh;
using fresh_detail::kMaxFd;
constexpr uint8_t kMarked = 1, kListed = 2;

struct Table {
  std::mutex mu;
  // fd number -> its socket's entry (shared by the socket's fd numbers).
  std::unordered_map<int, std::shared_ptr<FreshSocket>> by_fd;
};

Table& T() {
  static Table* t = [] {
    auto* p = new Table();  // never destroyed: used at exit
    // A fork while another thread holds the lock would leave it locked in
    // the child for good.
    ::pthread_atfork([] { T().mu.lock(); }, [] { T().mu.unlock(); },
                     [] { T().mu.unlock(); });
    return p;
  }();
  return *t;
}

// The entry of marked `fd`, created on first need. The table is locked.
FreshSocket& EntryLocked(int fd) {
  std::shared_ptr<FreshSocket>& e = T().by_fd[fd];
  if (!e) {
    e = std::make_shared<FreshSocket>();
    e->fds.push_back(fd);
  }
  g_fresh[fd].store(kListed, std::memory_order_release);
  return *e;
}

void ForgetLocked(int fd) {
  if (g_fresh[fd].load(std::memory_order_relaxed) == kListed) {
    auto it = T().by_fd.find(fd);
    if (it != T().by_fd.end()) {
      FreshSocket& s = *it->second;
      s.fds.erase(std::remove(s.fds.begin(), s.fds.end(), fd), s.fds.end());
      // The kernel keeps an item while another fd names the file, but the
      // app cannot name it any more either, and a later DEL by this number
      // could hit whatever file gets it next.
      std::erase_if(s.items,
                    [fd](const EarlyEpollItem& i) { return i.fd == fd; });
      T().by_fd.erase(it);
    }
  }
  g_fresh[fd].store(0, std::memory_order_release);
}

}  // namespace

void NoteSocketCreated(int fd, bool tcp) {
  if (fd < 0 || fd >= kMaxFd) return;
  if (g_fresh[fd].load(std::memory_order_acquire) != 0) {
    // A mark left by a close usmc did not see (a raw syscall, fclose).
    std::lock_guard lock(T().mu);
    ForgetLocked(fd);
  }
  if (tcp) g_fresh[fd].store(kMarked, std::memory_order_release);
}

bool FreshEpollCtl(int epfd, int op, int fd, epoll_event* ev, int* result) {
  if (!IsFresh(fd)) return false;
  std::lock_guard lock(T().mu);
  if (g_fresh[fd].load(std::memory_order_relaxed) == 0) return false;
  const int r = real().epoll_ctl(epfd, op, fd, ev);
  *result = r;
  if (r != 0) return true;
  const int err = errno;
  std::vector<EarlyEpollItem>& items = EntryLocked(fd).items;
  auto it = std::find_if(items.begin(), items.end(), [&](const auto& i) {
    return i.epfd == epfd && i.fd == fd;
  });
  switch (op) {
    case EPOLL_CTL_ADD:
      // An item of an epoll fd number since closed and reused: replaced.
      if (it != items.end()) items.erase(it);
      items.push_back({epfd, fd, ev->events, ev->data});
      break;
    case EPOLL_CTL_MOD:
      if (it != items.end()) {
        it->events = ev->events;
        it->data = ev->data;
      }
      break;
    case EPOLL_CTL_DEL:
      if (it != items.end()) items.erase(it);
      break;
    default:
      break;
  }
  errno = err;
  return true;
}

void DuplicateFreshFd(int from, int to) {
  if (!IsFresh(from) || to < 0 || to >= kMaxFd || to == from) return;
  std::lock_guard lock(T().mu);
  if (g_fresh[from].load(std::memory_order_relaxed) == 0) return;
  EntryLocked(from);
  std::shared_ptr<FreshSocket> e = T().by_fd[from];
  ForgetLocked(to);
  e->fds.push_back(to);
  T().by_fd[to] = std::move(e);
  g_fresh[to].store(kListed, std::memory_order_release);
}

void ForgetFreshFd(int fd) {
  if (!IsFresh(fd)) return;
  std::lock_guard lock(T().mu);
  ForgetLocked(fd);
}

void ForgetFreshFds(unsigned first, unsigned last) {
  for (unsigned fd = first; fd <= last && fd < kMaxFd; ++fd) {
    ForgetFreshFd(static_cast<int>(fd));
  }
}

void EndFresh(int fd, const std::function<void(const FreshSocket&)>& adopt) {
  if (!IsFresh(fd)) return;
  std::lock_guard lock(T().mu);
  if (g_fresh[fd].load(std::memory_order_relaxed) == 0) return;
  FreshSocket s;
  auto it = T().by_fd.find(fd);
  if (it != T().by_fd.end()) {
    s = *it->second;
  } else {
    s.fds.push_back(fd);
  }
  if (adopt) adopt(s);
  for (int d : s.fds) {
    T().by_fd.erase(d);
    g_fresh[d].store(0, std::memory_order_release);
  }
}

}  // namespace usmc::preload
