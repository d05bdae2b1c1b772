// dev/shm_pairs.h: the process's arena pairs, one per peer process
// (docs/dev-shm.md, "Arenas: design decisions").
//
// A pair is what two processes share after their first SMC-D handover: our
// arena, the peer's arena (dev/shm_arena.h), a public random pair id and a
// secret pair key K exchanged inside that token-bound handover. A later
// connection between them claims the pair: its offers carry, besides the
// unchanged token proof, PairProof(K, ...), so a process that only holds
// its own TCP connection with us cannot get its slots placed in an arena a
// third process maps.
//
// The table answers: which pair to claim for a peer pid (client side, by
// SO_PEERCRED of the listener), and which pair an offer names (server side,
// by id, from the peer pid it claims to be). It never hands out
//   - a pair created by another process (fork: the child starts its own),
//   - a retired pair (its arenas were passed to another process),
//   - a pair whose peer exited (its pidfd is readable): a pid can only be
//     reused after its process exited, so a recycled pid never meets a
//     stale pair.
// Idle pairs (no live connection) of live peers are kept for their warm
// slots, at most `max_idle`, least recently used dropped first. A pair
// whose peer exited goes when its last connection ends, or, if the peer
// was still exiting then (it closed its fds, the kernel had not yet
// reported it gone) or exits soon after, once its pidfd says so while it
// is watched (WatchFds, DropExited: the interposer's progress thread
// watches a pair for kPairWatch after its last connection ended). A peer
// that exits later leaves its pair until the next handshake's sweep.
//
//   ArenaPairs& t = ArenaPairs::Process();
//   std::shared_ptr<ArenaPair> p = t.ForPeer(listener_pid);
//   if (p) { PairUse use(p); ... p->own->Allocate(...) ... }
#ifndef USMC_DEV_SHM_PAIRS_H_
#define USMC_DEV_SHM_PAIRS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "base/status.h"
#include "dev/shm_arena.h"
#include "dev/unique_fd.h"

namespace usmc::dev {

struct PairKey {
  uint64_t k0 = 0;
  uint64_t k1 = 0;
};

struct ArenaPair {
  uint64_t id = 0;  // public, random
  PairKey key;      // secret: only the two processes
  pid_t peer_pid = 0;
  pid_t owner = 0;  // getpid() of the process that made the pair
  std::shared_ptr<ShmArena> own;
  std::shared_ptr<ShmArena> peer;
  UniqueFd pidfd;  // the peer process; readable once it exited
  // Maintained by ArenaPairs (under its lock).
  uint32_t live = 0;  // connections using the pair (PairUse)
  bool retired = false;
  uint64_t last_used = 0;
  std::chrono::steady_clock::time_point idle_since{};  // live went to 0
};

// How long after its last connection ended an idle pair's peer is watched
// for its exit: a peer that exits does so right after its last close, or
// is killed (its fds close before the kernel reports the exit).
inline constexpr std::chrono::milliseconds kPairWatch{2000};

// The proof a claiming offer carries: keyed with K, over both tokens of
// the connection (so it is fresh per connection), the sender's side, the
// pair id and the slot it names.
uint64_t PairProof(const PairKey& key, uint64_t server_token,
                   uint64_t client_token, uint16_t kind, uint64_t pair_id,
                   uint64_t slot_offset, uint64_t slot_size);

// A new pair key or id (getrandom).
Result<PairKey> NewPairKey();

class ArenaPairs {
 public:
  explicit ArenaPairs(size_t max_idle = 64) : max_idle_(max_idle) {}
  static ArenaPairs& Process();

  // Takes a new pair (its pidfd is opened here if the caller gave none;
  // kUnavailable if the peer is already gone). Drops idle pairs beyond
  // max_idle (least recently used first) and pairs of exited peers.
  Status Add(std::shared_ptr<ArenaPair> pair);
  // The pair to claim with `peer_pid`, or null (none, not ours, retired,
  // or the peer exited: then it is dropped unless connections still use
  // it). Polls only the pidfds of that pid's pairs.
  std::shared_ptr<ArenaPair> ForPeer(pid_t peer_pid);
  // The pair an offer names: same conditions, and its peer must be
  // `peer_pid` (SO_PEERCRED of the offer's socket).
  std::shared_ptr<ArenaPair> ById(uint64_t id, pid_t peer_pid);
  // Never handed out again (its arenas went to another process).
  void Retire(uint64_t id);

  // A connection uses `pair` from now until Release. The last Release of
  // a pair whose peer exited (or that is retired, or another process's)
  // drops it; a live peer's pair is watched from then on (WatchFds).
  void Acquire(const std::shared_ptr<ArenaPair>& pair);
  void Release(const std::shared_ptr<ArenaPair>& pair);

  // The pidfds of idle pairs whose last connection ended less than
  // `watch` ago (readable once that peer exited), and in *next_ms when
  // the first of them stops being watched (-1: none is). The numbers are
  // only valid until the next call into the table: poll them, then call
  // DropExited, then ask again.
  std::vector<int> WatchFds(std::chrono::milliseconds watch, int* next_ms);
  // Whether WatchFds has something to watch.
  bool Watching(std::chrono::milliseconds watch) const;
  // Drops the unused pairs whose peer exited (and the other unusable ones).
  void DropExited();

  size_t size() const;

 private:
  bool Usable(const ArenaPair& p) const;  // under mu_
  void Sweep();                           // under mu_
  // Idle, usable as far as we know, and within `watch` of its last use.
  bool Watched(const ArenaPair& p, std::chrono::milliseconds watch,
               std::chrono::steady_clock::time_point now) const;

  const size_t max_idle_;
  mutable std::mutex mu_;
  uint64_t tick_ = 0;
  std::vector<std::shared_ptr<ArenaPair>> pairs_;
};

// Acquire/Release as a scope (one per connection).
class PairUse {
 public:
  PairUse() = default;
  PairUse(ArenaPairs& t, std::shared_ptr<ArenaPair> p)
      : table_(&t), pair_(std::move(p)) {
    if (pair_) table_->Acquire(pair_);
  }
  PairUse(PairUse&& o) noexcept : table_(o.table_), pair_(std::move(o.pair_)) {}
  PairUse& operator=(PairUse&& o) noexcept {
    if (this != &o) {
      Reset();
      table_ = o.table_;
      pair_ = std::move(o.pair_);
    }
    return *this;
  }
  ~PairUse() { Reset(); }
  void Reset() {
    if (pair_) table_->Release(pair_);
    pair_.reset();
  }
  const std::shared_ptr<ArenaPair>& pair() const { return pair_; }

 private:
  ArenaPairs* table_ = nullptr;
  std::shared_ptr<ArenaPair> pair_;
};

}  // namespace usmc::dev

#endif  // USMC_DEV_SHM_PAIRS_H_
