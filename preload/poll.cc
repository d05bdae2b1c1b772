#include "preload/poll.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <vector>

#include "preload/conn.h"
#include "preload/epoll.h"
#include "preload/real.h"

namespace usmc::preload {
namespace {

using Clock = std::chrono::steady_clock;

struct Entry {
  enum Kind { kPlain, kWake, kConnecting } kind;
  nfds_t index;  // in the app's array
};

int KernelPoll(std::vector<pollfd>& k, int timeout_ms,
               const sigset_t* sigmask) {
  if (sigmask == nullptr) return real().poll(k.data(), k.size(), timeout_ms);
  timespec ts{}, *tsp = nullptr;
  if (timeout_ms >= 0) {
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = static_cast<long>(timeout_ms % 1000) * 1000000;
    tsp = &ts;
  }
  return real().ppoll(k.data(), k.size(), tsp, sigmask);
}

// Is fd a connection poll must look at itself? One that is plain TCP for
// good is polled by the kernel as it is.
bool Ours(int fd) {
  if (table().Kind(fd) != FdKind::kConn) return false;  // kPassThru: TCP
  std::shared_ptr<Conn> c = table().Lookup(fd);
  return c != nullptr && c->phase() != Phase::kTcp;
}

}  // namespace

bool AnyTracked(const pollfd* fds, nfds_t nfds) {
  bool any = false;
  const bool epolls = AnyEpollCreated();
  for (nfds_t i = 0; i < nfds; ++i) {
    // An epoll set polled here must stay visible to the kernel.
    if (epolls) NoteNestedIfEpoll(fds[i].fd);
    any = any || Ours(fds[i].fd);
  }
  return any;
}

int PollImpl(pollfd* fds, nfds_t nfds, int timeout_ms,
             const sigset_t* sigmask) {
  Inside in;
  const Clock::time_point deadline =
      Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
  std::vector<std::shared_ptr<Conn>> conns(nfds);
  for (nfds_t i = 0; i < nfds; ++i) conns[i] = table().Lookup(fds[i].fd);
  std::vector<pollfd> k;
  std::vector<Entry> map;
  // Counted before arming: an epoll set in scan mode then leaves our arm.
  std::vector<runtime::SmcSocket*> counted;
  auto uncount = [&] {
    for (runtime::SmcSocket* s : counted) s->AddSleeper(-1);
    counted.clear();
  };
  for (;;) {
    k.clear();
    map.clear();
    int ready = 0;
    int wait_ms = timeout_ms;
    if (timeout_ms > 0) {
      auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      wait_ms = static_cast<int>(std::max<int64_t>(left.count(), 0));
    }
    for (nfds_t i = 0; i < nfds; ++i) {
      fds[i].revents = 0;
      Conn* c = conns[i].get();
      if (c != nullptr && c->phase() == Phase::kConnecting &&
          !c->SettleConnect(fds[i].fd)) {
        k.push_back(
            {fds[i].fd, static_cast<short>(fds[i].events | POLLOUT), 0});
        map.push_back({Entry::kConnecting, i});
        continue;
      }
      runtime::SmcSocket* s = c ? c->smc() : nullptr;
      if (s == nullptr) {
        k.push_back({fds[i].fd, fds[i].events, 0});
        map.push_back({Entry::kPlain, i});
        continue;
      }
      s->AddSleeper(1);
      counted.push_back(s);
      runtime::SmcSocket::WaitSpec spec = s->PrepareWait(fds[i].events);
      if (spec.ready != 0) {
        fds[i].revents = spec.ready;
        ++ready;
        continue;
      }
      if (spec.n == 0) {  // the socket went TCP meanwhile
        k.push_back({fds[i].fd, fds[i].events, 0});
        map.push_back({Entry::kPlain, i});
        continue;
      }
      for (int j = 0; j < spec.n; ++j) {
        k.push_back(spec.fds[j]);
        map.push_back({Entry::kWake, i});
      }
      if (spec.timeout_ms >= 0 && (wait_ms < 0 || spec.timeout_ms < wait_ms)) {
        wait_ms = spec.timeout_ms;
      }
    }
    int r = KernelPoll(k, ready > 0 ? 0 : wait_ms, sigmask);
    uncount();
    if (r < 0) return -1;
    for (size_t j = 0; j < k.size(); ++j) {
      if (k[j].revents == 0) continue;
      const nfds_t i = map[j].index;
      switch (map[j].kind) {
        case Entry::kPlain:
          if (fds[i].revents == 0) ++ready;
          fds[i].revents = k[j].revents;
          break;
        case Entry::kConnecting:
          conns[i]->SettleConnect(fds[i].fd);
          break;
        case Entry::kWake: {
          conns[i]->OnWake(fds[i].fd, k[j].fd, k[j].revents);
          short bits = conns[i]->Poll(fds[i].fd, fds[i].events);
          if (bits != 0 && fds[i].revents == 0) ++ready;
          fds[i].revents |= bits;
          break;
        }
      }
    }
    if (ready > 0) return ready;
    if (timeout_ms == 0) return 0;
    if (timeout_ms > 0 && Clock::now() >= deadline) return 0;
  }
}

bool AnyTrackedInSets(int nfds, const fd_set* rd, const fd_set* wr,
                      const fd_set* ex) {
  nfds = std::min(nfds, FD_SETSIZE);
  bool any = false;
  const bool epolls = AnyEpollCreated();
  for (int fd = 0; fd < nfds; ++fd) {
    if ((rd && FD_ISSET(fd, rd)) || (wr && FD_ISSET(fd, wr)) ||
        (ex && FD_ISSET(fd, ex))) {
      if (epolls) NoteNestedIfEpoll(fd);
      any = any || Ours(fd);
    }
  }
  return any;
}

int SelectImpl(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, int timeout_ms,
               const sigset_t* sigmask) {
  nfds = std::min(nfds, FD_SETSIZE);
  std::vector<pollfd> p;
  for (int fd = 0; fd < nfds; ++fd) {
    short ev = 0;
    if (rd && FD_ISSET(fd, rd)) ev |= POLLIN;
    if (wr && FD_ISSET(fd, wr)) ev |= POLLOUT;
    if (ex && FD_ISSET(fd, ex)) ev |= POLLPRI;
    if (ev != 0) p.push_back({fd, ev, 0});
  }
  int r = PollImpl(p.data(), p.size(), timeout_ms, sigmask);
  if (r < 0) return -1;
  for (const pollfd& q : p) {
    if (q.revents & POLLNVAL) {
      errno = EBADF;
      return -1;
    }
  }
  if (rd) FD_ZERO(rd);
  if (wr) FD_ZERO(wr);
  if (ex) FD_ZERO(ex);
  int bits = 0;
  for (const pollfd& q : p) {
    if ((q.events & POLLIN) && (q.revents & (POLLIN | POLLHUP | POLLERR))) {
      FD_SET(q.fd, rd);
      ++bits;
    }
    if ((q.events & POLLOUT) && (q.revents & (POLLOUT | POLLERR))) {
      FD_SET(q.fd, wr);
      ++bits;
    }
    if ((q.events & POLLPRI) && (q.revents & POLLPRI)) {
      FD_SET(q.fd, ex);
      ++bits;
    }
  }
  return bits;
}

}  // namespace usmc::preload
