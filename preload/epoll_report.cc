// preload/epoll_report.cc: kernel events become the app's events, in the
// order the peers published.
#include <poll.h>

#include <algorithm>

#include "preload/epoll_internal.h"
#include "preload/real.h"

namespace usmc::preload::epoll_detail {

// The kernel's ready list is in the order the events happened: TCP sockets
// whose bytes came first are reported first, and event loops serve them in
// that order (Redis relies on it: a client's EXEC sent before another
// client's LPUSH runs first). Our events come in the order usmc noticed
// them (a doorbell ring, or a mirror written while scanning registrations),
// so the SMC-D ones of one batch are put back in the order their peers
// published; other fds keep their places.
void OrderByArrival(epoll_event* events, const Merged& merged) {
  struct Item {
    uint64_t stamp;
    epoll_event ev;
  };
  std::vector<Item> items;
  items.reserve(merged.size());
  for (const auto& [reg, slot] : merged) {
    runtime::SmcSocket* s = reg->conn->smc();
    items.push_back({s != nullptr ? s->PeerPublishedNs() : 0, events[slot]});
  }
  if (std::is_sorted(
          items.begin(), items.end(),
          [](const Item& a, const Item& b) { return a.stamp < b.stamp; })) {
    return;
  }
  std::stable_sort(
      items.begin(), items.end(),
      [](const Item& a, const Item& b) { return a.stamp < b.stamp; });
  for (size_t i = 0; i < merged.size(); ++i) {
    events[merged[i].second] = items[i].ev;
  }
}

// Adds `bits` of `reg` to the app's events: one event per registration
// (both mirrors of a socket, or a scan and a mirror, merge). `fired`: the
// kernel item that reported it (null: found by a scan).
void Report(EpollSet& set, EpollReg* reg, const Tag* fired, uint32_t bits,
            epoll_event* events, int* out, Merged& merged) {
  if (runtime::SmcSocket* s = reg->conn->smc()) {
    reg->edge_seen = s->peer_changes();
  }
  if ((reg->events & EPOLLONESHOT) && fired != nullptr) {
    // The kernel disarmed the mirror that fired; disarm the other one.
    Tag& other = fired == &reg->rd ? reg->wr : reg->rd;
    if (other.fd >= 0) {
      epoll_event off{};
      off.data.ptr = &other;
      real().epoll_ctl(set.epfd, EPOLL_CTL_MOD, other.fd, &off);
      other.events = 0;
    }
  }
  // (A scan's ONESHOT report leaves the mirrors: whatever they report
  // until the app re-arms is dropped, see oneshot_fired.)
  if (reg->events & EPOLLONESHOT) reg->oneshot_fired = true;
  auto it = std::find_if(merged.begin(), merged.end(),
                         [&](const auto& m) { return m.first == reg; });
  if (it != merged.end()) {
    events[it->second].events |= bits;
    return;
  }
  events[*out].events = bits;
  events[*out].data = reg->data;
  merged.emplace_back(reg, *out);
  ++*out;
}

// Rewrites the kernel's events events[out, out + n) in place, after the
// `out` events already there: app events pass, mirror events become the
// app's (re-validated, merged per registration), wake events are consumed.
// Returns the number of events for the app.
int Translate(EpollSet& set, epoll_event* events, int out, int n,
              Merged& merged) {
  const int end = out + n;
  for (int i = out; i < end; ++i) {
    epoll_event ev = events[i];
    if (!set.tags.count(ev.data.ptr)) {
      events[out++] = ev;
      continue;
    }
    Tag* t = static_cast<Tag*>(ev.data.ptr);
    EpollReg* reg = t->reg;
    Conn& c = *reg->conn;
    MarkDirty(set, reg);
    if (t->kind == Tag::kWake) {
      // The peer rang (or the handshake moved): report what holds now
      // rather than waiting for the mirror to come round the kernel again.
      c.OnWake(reg->app_fd, t->fd, static_cast<short>(ev.events),
               (t->events & EPOLLET) != 0);
      if (reg->oneshot_fired || !reg->active) continue;
    } else if (reg->oneshot_fired || !reg->active) {
      continue;
    }
    const uint32_t bits = ReadyBits(*reg);
    if (bits == 0) {
      c.UpdateMirrors();  // stale: the app or another thread got there first
      continue;
    }
    // Edge-triggered: a ring or a mirror is a wakeup, not an edge; what it
    // woke us for may have been reported already (by a scan, or by the
    // other kernel item). An edge is a publish not yet reported.
    if (EdgeReported(*reg)) continue;
    Report(set, reg, t, bits, events, &out, merged);
  }
  return out;
}

int TranslateAll(EpollSet& set, epoll_event* events, int n) {
  Merged merged;
  int out = Translate(set, events, 0, n, merged);
  if (merged.size() > 1) OrderByArrival(events, merged);
  return out;
}

uint32_t ReadyBits(EpollReg& reg) {
  return static_cast<uint16_t>(
             reg.conn->Poll(reg.app_fd, PollBitsOf(reg.events))) &
         (reg.events | EPOLLHUP | EPOLLERR);
}

bool EdgeReported(const EpollReg& reg) {
  runtime::SmcSocket* s = Established(reg);
  return (reg.events & EPOLLET) && s != nullptr &&
         s->peer_changes() == reg.edge_seen;
}

// An SMC-D socket past its handshake: what scan mode looks at directly.
runtime::SmcSocket* Established(const EpollReg& reg) {
  if (reg.conn->phase() != Phase::kSmc) return nullptr;
  runtime::SmcSocket* s = reg.conn->smc();
  return s != nullptr && !s->handshaking() ? s : nullptr;
}

}  // namespace usmc::preload::epoll_detail
