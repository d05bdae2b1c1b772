#include "dev/shm_pairs.h"

#include <poll.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/owned_fd.h"
#include "dev/shm_identity.h"

namespace usmc::dev {
namespace {

constexpr uint64_t kPairDomain = 0x75736d632d706172ULL;  // "usmc-par"

// Readable pidfd: the process exited (zombie or reaped). A pidfd we could
// not poll counts as gone: a pair is only worth its risk with a live peer.
bool Exited(const UniqueFd& pidfd) {
  for (;;) {
    pollfd p{pidfd.get(), POLLIN, 0};
    const int n = ::poll(&p, 1, 0);
    if (n == 0) return false;
    if (n < 0 && errno == EINTR) continue;
    return true;
  }
}

}  // namespace

uint64_t PairProof(const PairKey& key, uint64_t server_token,
                   uint64_t client_token, uint16_t kind, uint64_t pair_id,
                   uint64_t slot_offset, uint64_t slot_size) {
  uint64_t msg[6] = {kPairDomain ^ kind, server_token, client_token, pair_id,
                     slot_offset,        slot_size};
  return SipHash24(key.k0, key.k1, msg, sizeof msg);
}

Result<PairKey> NewPairKey() {
  PairKey k;
  uint64_t words[2];
  size_t got = 0;
  while (got < sizeof words) {
    const ssize_t n = ::getrandom(reinterpret_cast<char*>(words) + got,
                                  sizeof words - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "getrandom");
    got += static_cast<size_t>(n);
  }
  k.k0 = words[0];
  k.k1 = words[1];
  return k;
}

ArenaPairs& ArenaPairs::Process() {
  static ArenaPairs* t = new ArenaPairs();  // never destroyed: exit-safe
  return *t;
}

bool ArenaPairs::Usable(const ArenaPair& p) const {
  return !p.retired && p.owner == ::getpid() && p.pidfd && !Exited(p.pidfd);
}

void ArenaPairs::Sweep() {
  // Unusable and unused: gone. (A used one stays until its last
  // connection releases it; the connections hold the arenas anyway.)
  std::erase_if(pairs_, [&](const std::shared_ptr<ArenaPair>& p) {
    return p->live == 0 && !Usable(*p);
  });
  size_t idle = 0;
  for (const auto& p : pairs_) idle += p->live == 0;
  while (idle > max_idle_) {
    auto lru = pairs_.end();
    for (auto it = pairs_.begin(); it != pairs_.end(); ++it) {
      if ((*it)->live == 0 &&
          (lru == pairs_.end() || (*it)->last_used < (*lru)->last_used)) {
        lru = it;
      }
    }
    pairs_.erase(lru);
    --idle;
  }
}

Status ArenaPairs::Add(std::shared_ptr<ArenaPair> pair) {
  if (!pair || pair->id == 0 || pair->peer_pid <= 0) {
    return Status(StatusCode::kInvalidArgument, "arena pair incomplete");
  }
  if (!pair->pidfd) {
    pair->pidfd = UniqueFd(base::OwnFd(
        static_cast<int>(::syscall(SYS_pidfd_open, pair->peer_pid, 0))));
    if (!pair->pidfd) {
      return Status(
          errno == ESRCH ? StatusCode::kUnavailable : StatusCode::kSystem,
          std::string("pidfd_open: ") + std::strerror(errno));
    }
  }
  pair->owner = ::getpid();
  std::lock_guard lock(mu_);
  pair->last_used = ++tick_;
  pairs_.push_back(std::move(pair));
  Sweep();
  return OkStatus();
}

std::shared_ptr<ArenaPair> ArenaPairs::ForPeer(pid_t peer_pid) {
  if (peer_pid <= 0) return nullptr;
  std::lock_guard lock(mu_);
  // Only the pairs of this pid are looked at (one pidfd poll each, not
  // one per peer process): a connection's setup stays O(1) in the peers.
  for (auto it = pairs_.begin(); it != pairs_.end();) {
    const std::shared_ptr<ArenaPair>& p = *it;
    if (p->peer_pid != peer_pid) {
      ++it;
    } else if (Usable(*p)) {
      p->last_used = ++tick_;
      return p;
    } else if (p->live == 0) {
      it = pairs_.erase(it);
    } else {
      ++it;
    }
  }
  return nullptr;
}

std::shared_ptr<ArenaPair> ArenaPairs::ById(uint64_t id, pid_t peer_pid) {
  if (id == 0 || peer_pid <= 0) return nullptr;
  std::lock_guard lock(mu_);
  for (const auto& p : pairs_) {
    if (p->id == id) {
      if (p->peer_pid != peer_pid || !Usable(*p)) return nullptr;
      p->last_used = ++tick_;
      return p;
    }
  }
  return nullptr;
}

void ArenaPairs::Retire(uint64_t id) {
  std::lock_guard lock(mu_);
  for (const auto& p : pairs_) {
    if (p->id == id) p->retired = true;
  }
  Sweep();
}

void ArenaPairs::Acquire(const std::shared_ptr<ArenaPair>& pair) {
  std::lock_guard lock(mu_);
  ++pair->live;
}

void ArenaPairs::Release(const std::shared_ptr<ArenaPair>& pair) {
  std::lock_guard lock(mu_);
  if (pair->live > 0) --pair->live;
  pair->last_used = ++tick_;
  if (pair->live != 0) return;
  if (Usable(*pair)) {
    pair->idle_since = std::chrono::steady_clock::now();
    return;
  }
  // Its peer exited (or it is retired, or a fork parent's): nothing will
  // claim it again. Its fds and arenas go with the last reference, the
  // caller's.
  std::erase(pairs_, pair);
}

bool ArenaPairs::Watched(const ArenaPair& p, std::chrono::milliseconds watch,
                         std::chrono::steady_clock::time_point now) const {
  return p.live == 0 && !p.retired && p.owner == ::getpid() && p.pidfd &&
         p.idle_since != std::chrono::steady_clock::time_point{} &&
         now - p.idle_since < watch;
}

std::vector<int> ArenaPairs::WatchFds(std::chrono::milliseconds watch,
                                      int* next_ms) {
  const auto now = std::chrono::steady_clock::now();
  std::vector<int> fds;
  *next_ms = -1;
  std::lock_guard lock(mu_);
  for (const auto& p : pairs_) {
    if (!Watched(*p, watch, now)) continue;
    fds.push_back(p->pidfd.get());
    const int ms =
        static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(
                             p->idle_since + watch - now)
                             .count());
    *next_ms = *next_ms < 0 ? ms : std::min(*next_ms, ms);
  }
  return fds;
}

bool ArenaPairs::Watching(std::chrono::milliseconds watch) const {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  for (const auto& p : pairs_) {
    if (Watched(*p, watch, now)) return true;
  }
  return false;
}

void ArenaPairs::DropExited() {
  std::lock_guard lock(mu_);
  Sweep();
}

size_t ArenaPairs::size() const {
  std::lock_guard lock(mu_);
  return pairs_.size();
}

}  // namespace usmc::dev
