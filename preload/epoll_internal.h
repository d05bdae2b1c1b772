// preload/epoll_internal.h: what preload/epoll*.cc share (not an API).
// epoll.cc: the sets, kernel registrations and the wrappers; epoll_report.cc:
// translating kernel events into the app's; epoll_scan.cc: scan mode.
#ifndef USMC_PRELOAD_EPOLL_INTERNAL_H_
#define USMC_PRELOAD_EPOLL_INTERNAL_H_

#include <signal.h>
#include <sys/epoll.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <utility>
#include <vector>

#include "preload/conn.h"

namespace usmc::preload {

struct EpollSet;

// Our data in the kernel epoll set: which registration, and what fd.
struct Tag {
  enum Kind : uint8_t { kRd, kWr, kWake };
  EpollReg* reg;
  Kind kind;
  int fd = -1;          // -1: not registered
  uint32_t events = 0;  // as registered (skip epoll_ctl when unchanged)
  // A wake tag's file: the runtime closes some of its wake fds itself (the
  // DMB handover listener when the handshake ends, possibly inside a recv),
  // and the number may belong to another registered fd by the time the tag
  // goes.
  dev_t dev = 0;
  ino_t ino = 0;
};

struct EpollReg {
  EpollSet* set;
  int app_fd;
  std::shared_ptr<Conn> conn;
  uint32_t events = 0;  // the app's
  epoll_data_t data{};  // the app's
  bool oneshot_fired = false;
  // Edge-triggered: the peer_changes() this registration last reported.
  uint64_t edge_seen = 0;
  // The app removed the fd (EPOLL_CTL_DEL): the registration stays, with
  // its wake fds, for the next EPOLL_CTL_ADD (event loops such as Redis's
  // switch interest with DEL+ADD on every request), but reports nothing.
  bool active = true;
  // Needs PrepareWait before the next sleep. A clean registration's
  // doorbell is still armed from the last one (only the peer's ring clears
  // it, and a ring wakes us and makes it dirty), so epoll_wait costs
  // O(sockets that moved), not O(sockets in the set).
  bool dirty = true;
  // On the set's watch list (EpollSet::watch).
  bool watched = false;
  size_t index = 0;  // in EpollSet::regs
  Tag rd{this, Tag::kRd};
  Tag wr{this, Tag::kWr};
  std::vector<std::unique_ptr<Tag>> wake;
};

struct EpollSet {
  int epfd;
  std::mutex mu;
  int spin_us = -1;  // adaptive spin before sleeping (-1: not yet set)
  uint32_t spin_probe = 0;
  // Inside another epoll set or poll(): the kernel must see readiness at
  // any time, so no scan mode.
  bool nested = false;
  int sleepers = 0;           // threads in a sleeping epoll_pwait (scan mode)
  int kernel_sleepers = 0;    // ... kernel-visible mode
  uint32_t kernel_looks = 0;  // scan mode: calls since the kernel's list
  size_t scan_next = 0;       // scan mode: where the next scan starts
  // Scan mode, a lone sleeper arming: the token of this sleep (dev's "Sleep
  // tokens"), 0 otherwise. A peer that rang one of our doorbells armed
  // with it skips the others: fine for a sleeper that looks at every socket
  // once up, not for one that reads the kernel's list (see RevokeSleepTokens).
  uint64_t sleep_token = 0;
  bool tokens_out = false;  // doorbells may still hold a sleep token
  std::vector<std::unique_ptr<EpollReg>> regs;  // EpollReg::index
  // The registrations epoll_wait must look at before a sleep: every one
  // that is not an established SMC-D socket whose doorbell is armed
  // (connecting, handshaking, dirty, removed by the app). A server holding
  // 10,000 idle connections then pays for the few that moved, not for all
  // of them, on each epoll_wait (issue 21: setup cost grew with the
  // connections held). A registration may be on it and need nothing.
  std::vector<EpollReg*> watch;
  std::unordered_set<const void*> tags;
};

namespace epoll_detail {

using Clock = std::chrono::steady_clock;
// The app's events of one batch, by registration: (registration, slot).
using Merged = std::vector<std::pair<EpollReg*, int>>;

// Sets with more sockets than this do not spin before sleeping: scanning
// them costs what the spin would save, and a busy server rarely sleeps.
inline constexpr size_t kSpinMaxSockets = 16;

// epoll.cc
short PollBitsOf(uint32_t epoll_events);
// Puts `reg` on the set's watch list (once); MarkDirty also makes it
// dirty. The set is locked.
inline void Watch(EpollSet& set, EpollReg* reg) {
  if (reg->watched) return;
  reg->watched = true;
  set.watch.push_back(reg);
}
inline void MarkDirty(EpollSet& set, EpollReg* reg) {
  reg->dirty = true;
  Watch(set, reg);
}
// Brings the kernel registrations of `reg` in line with its connection's
// phase (arming its doorbell when established). false: the registration
// was handed to the kernel (plain TCP) and removed from the set.
bool Sync(EpollSet& set, EpollReg* reg, int* wait_ms);
// Drives what is not a plain established SMC-D socket (connects,
// handshakes, sockets gone TCP) and, with `arm`, arms the others too for a
// sleep. The set is locked.
void Maintain(EpollSet& set, bool arm, int* wait_ms);
// Before a sleep that relies on every ring reaching the kernel (a second
// sleeper, kernel-visible mode): marks the registrations dirty if doorbells
// may hold a sleep token, so that the sleep's Maintain re-arms them without.
void RevokeSleepTokens(EpollSet& set);
int MsLeft(int timeout_ms, Clock::time_point deadline);

// epoll_report.cc
void OrderByArrival(epoll_event* events, const Merged& merged);
void Report(EpollSet& set, EpollReg* reg, const Tag* fired, uint32_t bits,
            epoll_event* events, int* out, Merged& merged);
int Translate(EpollSet& set, epoll_event* events, int out, int n,
              Merged& merged);
int TranslateAll(EpollSet& set, epoll_event* events, int n);
// What of the app's interest (and HUP/ERR) holds now.
uint32_t ReadyBits(EpollReg& reg);
// Edge-triggered SMC-D registration whose peer published nothing since its
// last report: no new edge, whatever woke us (a scan, a ring, a mirror).
bool EdgeReported(const EpollReg& reg);
// An SMC-D socket past its handshake, or null.
runtime::SmcSocket* Established(const EpollReg& reg);

// epoll_scan.cc
bool ScanMode(const EpollSet& set);
bool SpinForReady(EpollSet& set, size_t max_sockets);
int ScanWait(EpollSet& set, epoll_event* events, int maxevents, int timeout_ms,
             const sigset_t* sigmask);

}  // namespace epoll_detail
}  // namespace usmc::preload

#endif  // USMC_PRELOAD_EPOLL_INTERNAL_H_
