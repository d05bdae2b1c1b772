#include "dev/shm_pairs.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dev/shm_test_util.h"

namespace usmc::dev {
namespace {

// A peer process that lives until we kill it.
struct Sleeper {
  pid_t pid = -1;
  Sleeper() {
    pid = ::fork();
    if (pid == 0) {
      ::pause();
      ::_exit(0);
    }
  }
  void Kill() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      testing::WaitChild(pid);
      pid = -1;
    }
  }
  ~Sleeper() { Kill(); }
};

std::shared_ptr<ArenaPair> MakePair(uint64_t id, pid_t peer) {
  auto p = std::make_shared<ArenaPair>();
  p->id = id;
  p->peer_pid = peer;
  p->key = *NewPairKey();
  return p;
}

TEST(ShmPairsTest, ClaimByPeerPidAndById) {
  Sleeper b, c;
  ArenaPairs t;
  ASSERT_TRUE(t.Add(MakePair(11, b.pid)).ok());
  ASSERT_TRUE(t.Add(MakePair(22, c.pid)).ok());
  ASSERT_NE(t.ForPeer(b.pid), nullptr);
  EXPECT_EQ(t.ForPeer(b.pid)->id, 11u);
  EXPECT_EQ(t.ForPeer(c.pid)->id, 22u);
  EXPECT_EQ(t.ForPeer(::getpid()), nullptr);
  EXPECT_EQ(t.ById(11, b.pid)->id, 11u);
  // No slot of pair (us, B) is ever offered to C: an offer from C naming
  // B's pair is not given the pair, whatever proof it carries.
  EXPECT_EQ(t.ById(11, c.pid), nullptr);
  EXPECT_EQ(t.ById(33, b.pid), nullptr);
}

// pid reuse: once the peer exited its pair is never handed out again (a
// pid is only recycled after its process exited).
TEST(ShmPairsTest, PairOfAnExitedPeerIsDroppedOnceUnused) {
  Sleeper b;
  ArenaPairs t;
  auto p = MakePair(11, b.pid);
  ASSERT_TRUE(t.Add(p).ok());
  const pid_t pid = b.pid;
  {
    PairUse use(t, t.ForPeer(pid));
    ASSERT_NE(use.pair(), nullptr);
    b.Kill();
    EXPECT_EQ(t.ForPeer(pid), nullptr);
    EXPECT_EQ(t.ById(11, pid), nullptr);
    EXPECT_EQ(t.size(), 1u);  // a connection still uses it
  }
  EXPECT_EQ(t.ForPeer(pid), nullptr);
  EXPECT_EQ(t.size(), 0u);
  // And a gone peer cannot be added at all.
  EXPECT_EQ(t.Add(MakePair(12, pid)).code(), StatusCode::kUnavailable);
}

// The last connection's end drops the pair of a peer that exited, with no
// lookup or handshake after it (its fds and arenas go now). Before, it
// stayed until the next Add or lookup of that pid (soak.sh: an idle server
// held 3 fds per exited client).
TEST(ShmPairsTest, LastReleaseDropsThePairOfAnExitedPeer) {
  Sleeper b;
  ArenaPairs t;
  ASSERT_TRUE(t.Add(MakePair(11, b.pid)).ok());
  {
    PairUse use(t, t.ForPeer(b.pid));
    ASSERT_NE(use.pair(), nullptr);
    b.Kill();
    EXPECT_EQ(t.size(), 1u);  // still in use
  }
  EXPECT_EQ(t.size(), 0u);
}

// A peer that exits after its pair went idle (it closed its connections
// first, or was killed and its fds closed before the kernel reported the
// exit): the pair is watched (WatchFds gives its pidfd) for the window
// after its last connection, and DropExited drops it once the pidfd says
// so. A live peer's idle pair stays; outside the window nothing is watched.
TEST(ShmPairsTest, IdlePairIsWatchedAndDroppedOnceItsPeerExits) {
  Sleeper b, c;
  ArenaPairs t;
  ASSERT_TRUE(t.Add(MakePair(11, b.pid)).ok());
  ASSERT_TRUE(t.Add(MakePair(22, c.pid)).ok());
  int next_ms = 0;
  EXPECT_TRUE(t.WatchFds(std::chrono::hours(1), &next_ms).empty());
  EXPECT_FALSE(t.Watching(std::chrono::hours(1)));  // never used yet
  { PairUse use(t, t.ForPeer(b.pid)); }
  { PairUse use(t, t.ForPeer(c.pid)); }
  ASSERT_TRUE(t.Watching(std::chrono::hours(1)));
  EXPECT_FALSE(t.Watching(std::chrono::milliseconds(0)));
  std::vector<int> fds = t.WatchFds(std::chrono::hours(1), &next_ms);
  ASSERT_EQ(fds.size(), 2u);
  EXPECT_GT(next_ms, 0);
  t.DropExited();
  EXPECT_EQ(t.size(), 2u);  // both peers alive
  b.Kill();
  pollfd p[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
  ASSERT_EQ(::poll(p, 2, 10000), 1);  // b's pidfd, readable
  t.DropExited();
  EXPECT_EQ(t.size(), 1u);
  EXPECT_NE(t.ForPeer(c.pid), nullptr);
  EXPECT_EQ(t.WatchFds(std::chrono::hours(1), &next_ms).size(), 1u);
}

// A forked child must not claim its parent's pairs: the parent's peer maps
// those arenas.
TEST(ShmPairsTest, ForkedChildSeesNoPairOfItsParent) {
  Sleeper b;
  ArenaPairs t;
  ASSERT_TRUE(t.Add(MakePair(11, b.pid)).ok());
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const bool none =
        t.ForPeer(b.pid) == nullptr && t.ById(11, b.pid) == nullptr;
    ::_exit(none ? 0 : 1);
  }
  const int status = testing::WaitChild(child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_NE(t.ForPeer(b.pid), nullptr);  // the parent still may
}

TEST(ShmPairsTest, RetiredPairIsNeverHandedOutAgain) {
  Sleeper b;
  ArenaPairs t;
  ASSERT_TRUE(t.Add(MakePair(11, b.pid)).ok());
  t.Retire(11);
  EXPECT_EQ(t.ForPeer(b.pid), nullptr);
  EXPECT_EQ(t.ById(11, b.pid), nullptr);
  // A new pair with the same peer replaces it.
  ASSERT_TRUE(t.Add(MakePair(12, b.pid)).ok());
  EXPECT_EQ(t.ForPeer(b.pid)->id, 12u);
}

TEST(ShmPairsTest, IdlePairsBeyondTheCapGoLeastRecentlyUsedFirst) {
  Sleeper a, b, c;
  ArenaPairs t(/*max_idle=*/2);
  ASSERT_TRUE(t.Add(MakePair(1, a.pid)).ok());
  ASSERT_TRUE(t.Add(MakePair(2, b.pid)).ok());
  PairUse busy(t, t.ForPeer(a.pid));  // in use: never dropped, recent
  ASSERT_TRUE(t.Add(MakePair(3, c.pid)).ok());
  EXPECT_EQ(t.size(), 3u);  // one used + two idle
  busy.Reset();             // three idle now; the next Add trims
  ASSERT_TRUE(t.Add(MakePair(4, c.pid)).ok());
  EXPECT_EQ(t.size(), 2u);
  EXPECT_EQ(t.ForPeer(b.pid), nullptr);  // the least recently used
}

TEST(ShmPairsTest, PairProofBindsEveryInput) {
  const PairKey k{1, 2};
  const uint64_t base = PairProof(k, 10, 20, 1, 30, 4096, 65536);
  EXPECT_EQ(base, PairProof(k, 10, 20, 1, 30, 4096, 65536));
  EXPECT_NE(base, PairProof({1, 3}, 10, 20, 1, 30, 4096, 65536));
  EXPECT_NE(base, PairProof(k, 11, 20, 1, 30, 4096, 65536));
  EXPECT_NE(base, PairProof(k, 10, 21, 1, 30, 4096, 65536));
  EXPECT_NE(base, PairProof(k, 10, 20, 2, 30, 4096, 65536));
  EXPECT_NE(base, PairProof(k, 10, 20, 1, 31, 4096, 65536));
  EXPECT_NE(base, PairProof(k, 10, 20, 1, 30, 8192, 65536));
  EXPECT_NE(base, PairProof(k, 10, 20, 1, 30, 4096, 16384));
}

}  // namespace
}  // namespace usmc::dev
