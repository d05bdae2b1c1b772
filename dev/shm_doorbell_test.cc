#include "dev/shm_doorbell.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>

#include "dev/shm_dmb.h"
#include "gtest/gtest.h"

namespace usmc::dev {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint64_t kSize = 16 * 1024;

// One DMB and a PeerDmb attached to it in this process: the owner's
// Doorbell and the peer's PeerDoorbell are the two ends.
struct Loop {
  LocalDmb local;
  PeerDmb peer;
  std::atomic_ref<uint32_t> armed() {
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    auto* w = reinterpret_cast<uint32_t*>(
        local.bytes().data() + (DmbFileSize(kSize) - page) + kCtrlArmedOff);
    return std::atomic_ref<uint32_t>(*w);
  }
  std::atomic_ref<uint64_t> sleep_token() {
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    auto* w = reinterpret_cast<uint64_t*>(local.bytes().data() +
                                          (DmbFileSize(kSize) - page) +
                                          kCtrlSleepTokenOff);
    return std::atomic_ref<uint64_t>(*w);
  }
};

Loop MakeLoop(DmbBudget& budget) {
  Result<LocalDmb> l = LocalDmb::Register(kSize, budget);
  EXPECT_TRUE(l.ok());
  UniqueFd mem(::fcntl(l->memfd(), F_DUPFD_CLOEXEC, 0));
  // The two ends of one connection's doorbell socket: the owner waits on
  // one, the peer rings through the other.
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  l->ConnectDoorbell(ShareFd(UniqueFd(sv[0])));
  Result<PeerDmb> p = PeerDmb::Attach(std::move(mem), l->token(), kSize,
                                      ShareFd(UniqueFd(sv[1])));
  EXPECT_TRUE(p.ok());
  return Loop{std::move(*l), std::move(*p)};
}

bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

TEST(ShmDoorbellTest, RingWithoutArmedWaiterMakesNoSyscall) {
  DmbBudget budget(1 << 20);
  Loop loop = MakeLoop(budget);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(loop.peer.doorbell().Ring(), RingResult::kNotArmed);
  }
  DoorbellStats s = loop.peer.doorbell().stats();
  EXPECT_EQ(s.rings, 100u);
  EXPECT_EQ(s.wakeups_skipped, 100u);
  EXPECT_EQ(s.wakeups_sent, 0u);
  EXPECT_FALSE(Readable(loop.local.doorbell().fd()));
}

// State letter of a thread from /proc/self/task/<tid>/stat ('S' = asleep).
char ThreadState(pid_t tid) {
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), {});
  size_t close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size()
             ? '?'
             : stat[close + 2];
}

TEST(ShmDoorbellTest, ArmedWaiterIsWokenExactlyOnce) {
  DmbBudget budget(1 << 20);
  Loop loop = MakeLoop(budget);
  loop.local.doorbell().set_spin_us(0);
  std::atomic<uint64_t> published{0};
  std::atomic<pid_t> tid{0};
  WaitResult result = WaitResult::kTimedOut;
  std::thread waiter([&] {
    tid.store(::gettid());
    result = loop.local.doorbell().Wait(
        [&] { return published.load(std::memory_order_acquire) != 0; },
        seconds(60));
  });
  // Until the waiter has armed and is asleep in ppoll.
  while (tid.load() == 0 || loop.armed().load() == 0 ||
         ThreadState(tid.load()) != 'S') {
    std::this_thread::yield();
  }
  published.store(1, std::memory_order_release);
  EXPECT_EQ(loop.peer.doorbell().Ring(), RingResult::kWoken);
  waiter.join();
  EXPECT_EQ(result, WaitResult::kReady);
  // Disarmed: further rings send nothing.
  EXPECT_EQ(loop.peer.doorbell().Ring(), RingResult::kNotArmed);
  DoorbellStats w = loop.local.doorbell().stats();
  DoorbellStats k = loop.peer.doorbell().stats();
  EXPECT_EQ(k.rings, 2u);
  EXPECT_EQ(k.wakeups_sent, 1u);
  EXPECT_EQ(k.wakeups_skipped, 1u);
  EXPECT_EQ(w.waits, 1u);
  EXPECT_EQ(w.sleeps, 1u);
  EXPECT_EQ(w.wakeups_received, 1u);
  EXPECT_EQ(loop.armed().load(), 0u);
}

TEST(ShmDoorbellTest, ReadyPredicateNeverSleeps) {
  DmbBudget budget(1 << 20);
  Loop loop = MakeLoop(budget);
  EXPECT_EQ(loop.local.doorbell().Wait([] { return true; }, seconds(1)),
            WaitResult::kReady);
  DoorbellStats s = loop.local.doorbell().stats();
  EXPECT_EQ(s.ready_at_once, 1u);
  EXPECT_EQ(s.sleeps, 0u);
}

TEST(ShmDoorbellTest, SpinSeesPublishWithoutSleeping) {
  DmbBudget budget(1 << 20);
  Loop loop = MakeLoop(budget);
  // A spin budget far above any scheduling delay: the flag is seen while
  // spinning and the waiter never arms.
  loop.local.doorbell().set_spin_us(30'000'000);
  std::atomic<int> flag{0};
  std::thread setter([&] { flag.store(1, std::memory_order_release); });
  WaitResult r = loop.local.doorbell().Wait(
      [&] { return flag.load(std::memory_order_acquire) == 1; }, seconds(60));
  setter.join();
  EXPECT_EQ(r, WaitResult::kReady);
  DoorbellStats s = loop.local.doorbell().stats();
  EXPECT_EQ(s.sleeps, 0u);
  EXPECT_EQ(s.ready_at_once + s.spin_hits, 1u);
  EXPECT_EQ(loop.armed().load(), 0u);
}

TEST(ShmDoorbellTest, AdaptiveSpinBacksOffAndProbesBack) {
  DmbBudget budget(1 << 20);
  Loop loop = MakeLoop(budget);
  Doorbell& bell = loop.local.doorbell();
  bell.set_spin_us(100);
  // Ready only once the waiter has armed (spinning is over) and well after
  // the budget: every spin was wasted, whatever the scheduler does.
  auto slow_wait = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    return bell.Wait(
        [&] {
          return loop.armed().load() == 1 &&
                 std::chrono::steady_clock::now() - t0 >= milliseconds(1);
        },
        milliseconds(2));
  };
  ASSERT_EQ(slow_wait(), WaitResult::kReady);
  EXPECT_EQ(bell.current_spin_us(), 50u);
  ASSERT_EQ(slow_wait(), WaitResult::kReady);
  EXPECT_EQ(bell.current_spin_us(), 25u);
  // A spin that sees the data restores the full budget.
  int calls = 0;
  ASSERT_EQ(bell.Wait([&] { return ++calls >= 3; }, seconds(10)),
            WaitResult::kReady);
  EXPECT_EQ(bell.stats().spin_hits, 1u);
  EXPECT_EQ(bell.current_spin_us(), 100u);
  for (int i = 0; i < 10 && bell.current_spin_us() > 0; ++i) {
    ASSERT_EQ(slow_wait(), WaitResult::kReady);
  }
  ASSERT_EQ(bell.current_spin_us(), 0u);
  // Backed off, probes failing: the probe interval doubles each time.
  uint64_t spins0 = bell.stats().spins;
  for (uint32_t i = 0; i < Doorbell::kProbeEvery; ++i) {
    ASSERT_EQ(slow_wait(), WaitResult::kReady);
  }
  EXPECT_EQ(bell.stats().spins, spins0 + 1);
  EXPECT_EQ(bell.current_spin_us(), 0u);
  for (uint32_t i = 0; i < 2 * Doorbell::kProbeEvery - 1; ++i) {
    ASSERT_EQ(slow_wait(), WaitResult::kReady);
  }
  EXPECT_EQ(bell.stats().spins, spins0 + 1);  // not yet
  ASSERT_EQ(slow_wait(), WaitResult::kReady);
  EXPECT_EQ(bell.stats().spins, spins0 + 2);
  // Backed off: no spinning, except a full-budget probe every kProbeEvery
  // waits, which finds this (fast) peer and restores the budget.
  int waits = 0;
  while (bell.current_spin_us() == 0 && waits < 100) {
    int n = 0;
    ASSERT_EQ(bell.Wait([&] { return ++n >= 3; }, milliseconds(1)),
              WaitResult::kReady);
    ++waits;
  }
  EXPECT_EQ(bell.current_spin_us(), 100u);
  EXPECT_LE(waits, static_cast<int>(4 * Doorbell::kProbeEvery));
}

TEST(ShmDoorbellTest, FixedSpinDoesNotAdapt) {
  DmbBudget budget(1 << 20);
  Loop loop = MakeLoop(budget);
  Doorbell& bell = loop.local.doorbell();
  bell.set_spin_us(10);
  bell.set_adaptive(false);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(bell.Wait(
                [&] {
                  return loop.armed().load() == 1 &&
                         std::chrono::steady_clock::now() - t0 >=
                             milliseconds(1);
                },
                milliseconds(2)),
            WaitResult::kReady);
  EXPECT_EQ(bell.current_spin_us(), 10u);
}

TEST(ShmDoorbellTest, TimeoutDisarms) {
  DmbBudget budget(1 << 20);
  Loop loop = MakeLoop(budget);
  loop.local.doorbell().set_spin_us(5);
  EXPECT_EQ(loop.local.doorbell().Wait([] { return false; }, milliseconds(20)),
            WaitResult::kTimedOut);
  EXPECT_EQ(loop.local.doorbell().stats().timeouts, 1u);
  EXPECT_EQ(loop.armed().load(), 0u);
  EXPECT_EQ(loop.peer.doorbell().Ring(), RingResult::kNotArmed);
}

TEST(ShmDoorbellTest, HugeAndNegativeTimeoutsAreClamped) {
  DmbBudget budget(1 << 20);
  Loop loop = MakeLoop(budget);
  loop.local.doorbell().set_spin_us(0);
  EXPECT_EQ(loop.local.doorbell().Wait([] { return false; },
                                       std::chrono::nanoseconds(-5)),
            WaitResult::kTimedOut);
  // Ready on the re-check after arming: the deadline arithmetic with the
  // largest timeout ran (UBSan would flag an overflow) and nothing hangs.
  int calls = 0;
  EXPECT_EQ(loop.local.doorbell().Wait([&] { return ++calls >= 2; },
                                       std::chrono::nanoseconds::max()),
            WaitResult::kReady);
  EXPECT_EQ(calls, 2);
}

TEST(ShmDoorbellTest, ExtraFdEndsTheWait) {
  DmbBudget budget(1 << 20);
  Loop loop = MakeLoop(budget);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  ASSERT_EQ(::write(w.get(), "x", 1), 1);
  WaitOptions opts;
  opts.extra_fd = r.get();
  EXPECT_EQ(loop.local.doorbell().Wait([] { return false; }, seconds(30), opts),
            WaitResult::kExtraFdReady);
}

TEST(ShmDoorbellTest, PeerClosingItsEndIsPeerGone) {
  DmbBudget budget(1 << 20);
  Loop loop = MakeLoop(budget);
  loop.peer.Detach();
  EXPECT_EQ(loop.local.doorbell().Wait([] { return false; }, seconds(30)),
            WaitResult::kPeerGone);
  EXPECT_FALSE(loop.local.doorbell().Drain());
}

// Rings left unread (an edge-triggered sleeper drains lazily), then the
// peer goes: the hang-up's drain must read through to the end of the stream,
// since no further edge will come.
TEST(ShmDoorbellTest, HangupBehindUnreadRingsIsPeerGone) {
  DmbBudget budget(1 << 20);
  Loop loop = MakeLoop(budget);
  for (int i = 0; i < 3; ++i) {
    loop.armed().store(1);
    ASSERT_EQ(loop.peer.doorbell().Ring(), RingResult::kWoken);
  }
  loop.peer.Detach();
  EXPECT_FALSE(loop.local.doorbell().DrainLazily(/*hangup=*/true));
}

TEST(ShmDoorbellTest, OwnerGoneIsReportedToTheRinger) {
  DmbBudget budget(1 << 20);
  Loop loop = MakeLoop(budget);
  loop.armed().store(1);
  // The attached mapping keeps the armed word alive after Unregister.
  loop.local.Unregister();
  EXPECT_EQ(loop.peer.doorbell().Ring(), RingResult::kPeerGone);
}

TEST(ShmDoorbellTest, HostileArmedValuesAndBlockingFlagNeverBlockTheRinger) {
  DmbBudget budget(1 << 20);
  Loop loop = MakeLoop(budget);
  // The owner clears O_NONBLOCK on the shared file description and never
  // drains; any non-zero armed value counts as armed.
  int fl = ::fcntl(loop.peer.doorbell().fd(), F_GETFL);
  ASSERT_EQ(::fcntl(loop.peer.doorbell().fd(), F_SETFL, fl & ~O_NONBLOCK), 0);
  int pending = 0;
  for (int i = 0; i < 1000000 && pending == 0; ++i) {
    loop.armed().store(0xdeadbeefu + static_cast<uint32_t>(i));
    RingResult r = loop.peer.doorbell().Ring();
    ASSERT_TRUE(r == RingResult::kWoken || r == RingResult::kPending) << r;
    if (r == RingResult::kPending) ++pending;
    EXPECT_EQ(loop.armed().load(), 0u);
  }
  EXPECT_EQ(pending, 1);  // the socket filled up, Ring returned anyway
  EXPECT_TRUE(Readable(loop.local.doorbell().fd()));
  EXPECT_TRUE(loop.local.doorbell().Drain());
}

// Arms `loop`'s doorbell for a sleep (nothing published yet).
void ArmFor(Loop& loop, uint64_t token) {
  ASSERT_TRUE(loop.local.doorbell().Arm([] { return false; }, token));
}

TEST(ShmDoorbellTest, OneSleepTokenIsWokenThroughOneDoorbellOnly) {
  DmbBudget budget(1 << 20);
  Loop a = MakeLoop(budget), b = MakeLoop(budget), c = MakeLoop(budget);
  const uint64_t token = NewSleepToken();
  for (Loop* l : {&a, &b, &c}) ArmFor(*l, token);
  EXPECT_EQ(b.peer.doorbell().Ring(), RingResult::kWoken);
  EXPECT_EQ(a.peer.doorbell().Ring(), RingResult::kCoalesced);
  EXPECT_EQ(c.peer.doorbell().Ring(), RingResult::kCoalesced);
  EXPECT_TRUE(Readable(b.local.doorbell().fd()));
  EXPECT_FALSE(Readable(a.local.doorbell().fd()));
  EXPECT_FALSE(Readable(c.local.doorbell().fd()));
  // Coalesced rings disarm too: the sleep looks at everything once up.
  EXPECT_EQ(a.armed().load(), 0u);
  EXPECT_EQ(a.peer.doorbell().stats().wakeups_coalesced, 1u);
  EXPECT_EQ(a.peer.doorbell().stats().wakeups_sent, 0u);
  EXPECT_EQ(b.peer.doorbell().stats().wakeups_sent, 1u);
}

TEST(ShmDoorbellTest, WithoutSleepTokenEveryArmedDoorbellIsWoken) {
  DmbBudget budget(1 << 20);
  Loop a = MakeLoop(budget), b = MakeLoop(budget);
  for (Loop* l : {&a, &b}) ArmFor(*l, 0);
  EXPECT_EQ(a.peer.doorbell().Ring(), RingResult::kWoken);
  EXPECT_EQ(b.peer.doorbell().Ring(), RingResult::kWoken);
}

TEST(ShmDoorbellTest, TheNextSleepGetsItsOwnWakeup) {
  DmbBudget budget(1 << 20);
  Loop a = MakeLoop(budget), b = MakeLoop(budget);
  const uint64_t first = NewSleepToken(), second = NewSleepToken();
  EXPECT_NE(first, second);
  for (Loop* l : {&a, &b}) ArmFor(*l, first);
  EXPECT_EQ(a.peer.doorbell().Ring(), RingResult::kWoken);
  EXPECT_EQ(b.peer.doorbell().Ring(), RingResult::kCoalesced);
  EXPECT_TRUE(a.local.doorbell().Drain());
  for (Loop* l : {&a, &b}) ArmFor(*l, second);
  EXPECT_EQ(b.peer.doorbell().Ring(), RingResult::kWoken);
  EXPECT_EQ(a.peer.doorbell().Ring(), RingResult::kCoalesced);
}

TEST(ShmDoorbellTest, TokensCoalesceOnlyTheRingsOfOneThread) {
  DmbBudget budget(1 << 20);
  Loop a = MakeLoop(budget), b = MakeLoop(budget);
  const uint64_t token = NewSleepToken();
  for (Loop* l : {&a, &b}) ArmFor(*l, token);
  EXPECT_EQ(a.peer.doorbell().Ring(), RingResult::kWoken);
  RingResult other = RingResult::kNotArmed;
  std::thread([&] { other = b.peer.doorbell().Ring(); }).join();
  EXPECT_EQ(other, RingResult::kWoken);
}

// A blocking Wait is one waiter, not a loop over many: it arms without a
// token, whatever a sleep before it left in the word.
TEST(ShmDoorbellTest, BlockingWaitArmsWithoutToken) {
  DmbBudget budget(1 << 20);
  Loop a = MakeLoop(budget), b = MakeLoop(budget);
  b.local.doorbell().set_spin_us(0);
  const uint64_t token = NewSleepToken();
  ArmFor(a, token);
  EXPECT_EQ(a.peer.doorbell().Ring(), RingResult::kWoken);  // this thread
  b.sleep_token().store(token);  // as if the same sleep had armed b
  std::atomic<bool> published{false};
  std::atomic<pid_t> tid{0};
  WaitResult result = WaitResult::kTimedOut;
  std::thread waiter([&] {
    tid.store(::gettid());
    result =
        b.local.doorbell().Wait([&] { return published.load(); }, seconds(60));
  });
  while (tid.load() == 0 || b.armed().load() == 0 ||
         ThreadState(tid.load()) != 'S') {
    std::this_thread::yield();
  }
  EXPECT_EQ(b.sleep_token().load(), 0u);
  published.store(true);
  EXPECT_EQ(b.peer.doorbell().Ring(), RingResult::kWoken);
  waiter.join();
  EXPECT_EQ(result, WaitResult::kReady);
}

TEST(ShmDoorbellTest, ForkedChildDrawsOtherSleepTokens) {
  const uint64_t before = NewSleepToken();
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    uint64_t t = NewSleepToken();
    _exit(::write(p[1], &t, sizeof t) == sizeof t ? 0 : 1);
  }
  ::close(p[1]);
  uint64_t child = 0;
  ASSERT_EQ(::read(p[0], &child, sizeof child),
            static_cast<ssize_t>(sizeof child));
  ::close(p[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  const uint64_t after = NewSleepToken();
  EXPECT_NE(child, 0u);
  EXPECT_NE(child, before + 1);  // what the parent drew next
  EXPECT_EQ(after, before + 1);
}

TEST(ShmDoorbellTest, EnumsPrint) {
  EXPECT_EQ(ToString(WaitResult::kPeerGone), "PEER_GONE");
  EXPECT_EQ(ToString(RingResult::kNotArmed), "NOT_ARMED");
  std::ostringstream os;
  os << WaitResult::kReady << ' ' << RingResult::kWoken;
  EXPECT_EQ(os.str(), "READY WOKEN");
}

TEST(ShmDoorbellTest, DefaultSpinIsSetByTheRuntime) {
  // dev/ reads no environment: the runtime sets the default from its
  // Config (USMC_SPIN_US).
  ::setenv("USMC_SPIN_US", "7", 1);
  EXPECT_EQ(DefaultSpinUs(), kDefaultSpinUs);
  ::unsetenv("USMC_SPIN_US");
  SetDefaultSpinUs(7);
  EXPECT_EQ(DefaultSpinUs(), 7u);
  SetDefaultSpinUs(kDefaultSpinUs);
  EXPECT_EQ(DefaultSpinUs(), kDefaultSpinUs);
}

}  // namespace
}  // namespace usmc::dev
