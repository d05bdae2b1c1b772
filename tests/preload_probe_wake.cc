// tests/preload_probe_wake.cc: wakeups and handshakes across many
// connections: the sleep tokens of dev/shm_doorbell.h (a peer wakes one
// sleep through one doorbell and skips the rest), and handshakes that no
// call of the server's app drives (preload/unattended.h).
//
//   fan-in:      one client thread, kFanConns connections in one set; each
//                round the server writes to all of them at once while the
//                client sleeps; every byte must be reported.
//   two-sleepers: two client threads sleep in one set (maxevents 1,
//                ONESHOT); each round the server writes to two connections
//                at once and each thread must be woken for one of them
//                (neither moves on before the other got its byte). TCP wakes
//                both; a sleep token left armed would wake one.
//   accept-first: the server accepts kAcceptFirst connections (blocking)
//                before it touches any; the client connects them one after
//                the other with blocking connects, then writes on each.
//                Once all are closed, the thread that drove them ends and
//                leaves no eventfd behind (soak's survivor kept one).
//   fork-serve:  a forking server (accept, fork, the child serves, the
//                parent closes) and kForkServe clients connecting at once:
//                the parent's progress thread must leave the handshakes the
//                children now run alone.
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/preload_probe.h"

namespace usmc::probe {
namespace {

constexpr int kFanConns = 16;
constexpr int kFanRounds = 200;

// The server's half of both scenarios: accepts a control connection, then
// `n` data connections; per round, waits for "g" on the control connection
// and writes one byte to each connection `pick(round)` names.
int WriteRounds(int lfd, int n, int rounds,
                const std::function<std::vector<int>(int)>& pick) {
  // Each connection's first byte is read right after its accept: a usmc
  // server handshakes when the app calls in, and the client's blocking
  // connect waits for that (docs/preload.md).
  int ctl = AcceptOne(lfd);
  CHECK(ctl >= 0, "accept control");
  RUN(WaitAck(ctl));
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    int fd = AcceptOne(lfd);
    CHECK(fd >= 0, "accept %d", i);
    RUN(WaitAck(fd));
    fds.push_back(fd);
  }
  for (int r = 0; r < rounds; ++r) {
    RUN(WaitAck(ctl));
    for (int i : pick(r)) {
      const char c = static_cast<char>('a' + (r + i) % 26);
      RUN(WriteAll(fds[static_cast<size_t>(i)], &c, 1));
    }
  }
  RUN(WaitAck(ctl));  // the client got everything
  for (int fd : fds) close(fd);
  close(ctl);
  return 0;
}

int FanInServer(int lfd) {
  return WriteRounds(lfd, kFanConns, kFanRounds, [](int) {
    std::vector<int> all;
    for (int i = 0; i < kFanConns; ++i) all.push_back(i);
    return all;
  });
}

// Connects the control connection, then `n` data connections in an epoll
// set (events as given, data.u32 = index).
int ConnectSet(uint16_t port, int n, uint32_t events, int* ctl,
               std::vector<int>* fds, int* ep) {
  *ctl = Connect(port);
  CHECK(*ctl >= 0, "connect control");
  RUN(Ack(*ctl));
  *ep = epoll_create1(EPOLL_CLOEXEC);
  CHECK(*ep >= 0, "epoll_create1");
  for (int i = 0; i < n; ++i) {
    int fd = Connect(port);
    CHECK(fd >= 0, "connect %d", i);
    RUN(Ack(fd));
    SetNonblock(fd, true);
    epoll_event ev = {};
    ev.events = events;
    ev.data.u32 = static_cast<uint32_t>(i);
    CHECK(epoll_ctl(*ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll_ctl add");
    fds->push_back(fd);
  }
  return 0;
}

int FanInClient(uint16_t port, const char*) {
  int ctl, ep;
  std::vector<int> fds;
  RUN(ConnectSet(port, kFanConns, EPOLLIN, &ctl, &fds, &ep));
  for (int r = 0; r < kFanRounds; ++r) {
    RUN(Ack(ctl));  // "go": the server writes while we sleep below
    std::vector<bool> got(kFanConns, false);
    int left = kFanConns;
    while (left > 0) {
      epoll_event evs[4];
      int n = epoll_wait(ep, evs, 4, -1);
      CHECK(n > 0 || errno == EINTR, "epoll_wait");
      for (int k = 0; k < n; ++k) {
        const int i = static_cast<int>(evs[k].data.u32);
        char c;
        ssize_t m = recv(fds[static_cast<size_t>(i)], &c, 1, 0);
        CHECK(m == 1, "recv from %d in round %d", i, r);
        CHECK(c == static_cast<char>('a' + (r + i) % 26), "byte of %d", i);
        CHECK(!got[static_cast<size_t>(i)], "%d twice in round %d", i, r);
        got[static_cast<size_t>(i)] = true;
        --left;
      }
    }
  }
  RUN(Ack(ctl));
  for (int fd : fds) close(fd);
  close(ep);
  close(ctl);
  return 0;
}

constexpr int kPairConns = 4;
constexpr int kPairRounds = 100;

int TwoSleepersServer(int lfd) {
  return WriteRounds(lfd, kPairConns, kPairRounds, [](int r) {
    return std::vector<int>{(2 * r) % kPairConns, (2 * r + 1) % kPairConns};
  });
}

// State letter of thread `tid` of this process ('S': asleep).
char ThreadState(long tid) {
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), {});
  size_t close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size()
             ? '?'
             : stat[close + 2];
}

int TwoSleepersClient(uint16_t port, const char*) {
  int ctl, ep;
  std::vector<int> fds;
  RUN(ConnectSet(port, kPairConns, EPOLLIN | EPOLLONESHOT, &ctl, &fds, &ep));
  pthread_barrier_t done;  // both workers got their byte, and the main thread
  pthread_barrier_init(&done, nullptr, 3);
  std::atomic<int> waiting{0};  // workers that entered this round's wait
  std::atomic<long> tids[2] = {0, 0};
  std::atomic<int> failures{0};
  auto worker = [&](int w) {
    tids[w].store(syscall(SYS_gettid));
    for (int r = 0; r < kPairRounds; ++r) {
      waiting.fetch_add(1);
      epoll_event ev;
      int n;
      do {
        n = epoll_wait(ep, &ev, 1, -1);
      } while (n < 0 && errno == EINTR);
      int i = n == 1 ? static_cast<int>(ev.data.u32) : -1;
      char c = 0;
      if (i < 0 || recv(fds[static_cast<size_t>(i)], &c, 1, 0) != 1 ||
          c != static_cast<char>('a' + (r + i) % 26)) {
        std::fprintf(stderr, "%s: worker %d round %d: event %d byte %d\n",
                     Name(), w, r, i, c);
        failures.fetch_add(1);
      }
      if (i >= 0) {
        ev.events = EPOLLIN | EPOLLONESHOT;
        ev.data.u32 = static_cast<uint32_t>(i);
        epoll_ctl(ep, EPOLL_CTL_MOD, fds[static_cast<size_t>(i)], &ev);
      }
      pthread_barrier_wait(&done);
    }
  };
  std::thread a(worker, 0), b(worker, 1);
  for (int r = 0; r < kPairRounds; ++r) {
    // Both workers asleep in epoll_wait before the server writes: the
    // case where one ring must not stand for the other's.
    while (waiting.load() < 2 * (r + 1) || tids[0].load() == 0 ||
           tids[1].load() == 0 || ThreadState(tids[0].load()) != 'S' ||
           ThreadState(tids[1].load()) != 'S') {
      std::this_thread::yield();
    }
    RUN(Ack(ctl));
    pthread_barrier_wait(&done);
  }
  a.join();
  b.join();
  pthread_barrier_destroy(&done);
  CHECK(failures.load() == 0, "%d rounds went wrong", failures.load());
  RUN(Ack(ctl));
  for (int fd : fds) close(fd);
  close(ep);
  close(ctl);
  return 0;
}

constexpr int kAcceptFirst = 4;

// Eventfds and threads of this process: usmc's progress thread and its
// wake eventfd (nothing else here makes either).
std::pair<int, int> EventfdsAndThreads() {
  int efds = 0, threads = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(e.path(), ec) == "anon_inode:[eventfd]") {
      ++efds;
    }
  }
  for ([[maybe_unused]] const auto& e :
       std::filesystem::directory_iterator("/proc/self/task")) {
    ++threads;
  }
  return {efds, threads};
}

int AcceptFirstServer(int lfd) {
  const std::pair<int, int> before = EventfdsAndThreads();
  std::vector<int> fds;
  for (int i = 0; i < kAcceptFirst; ++i) {
    int fd = AcceptOne(lfd);
    CHECK(fd >= 0, "accept %d", i);
    fds.push_back(fd);
  }
  for (int i = 0; i < kAcceptFirst; ++i) {
    const int fd = fds[static_cast<size_t>(i)];
    char c;
    RUN(ReadExact(fd, &c, 1));
    CHECK(c == static_cast<char>('0' + i), "byte of %d", i);
    RUN(WriteAll(fd, &c, 1));
  }
  for (int fd : fds) {
    RUN(ExpectEof(fd));
    close(fd);
  }
  // The thread lingers a second after its last connection; 30 s is only
  // the bound on a loaded machine.
  std::pair<int, int> now = EventfdsAndThreads();
  for (int i = 0; i < 300 && now != before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    now = EventfdsAndThreads();
  }
  CHECK(now == before, "idle: %d eventfds and %d threads, %d and %d before",
        now.first, now.second, before.first, before.second);
  return 0;
}

int AcceptFirstClient(uint16_t port, const char*) {
  std::vector<int> fds;
  for (int i = 0; i < kAcceptFirst; ++i) {
    int fd = Connect(port);
    CHECK(fd >= 0, "connect %d", i);
    fds.push_back(fd);
  }
  for (int i = 0; i < kAcceptFirst; ++i) {
    const char c = static_cast<char>('0' + i);
    RUN(WriteAll(fds[static_cast<size_t>(i)], &c, 1));
  }
  for (int i = 0; i < kAcceptFirst; ++i) {
    char c;
    RUN(ReadExact(fds[static_cast<size_t>(i)], &c, 1));
    CHECK(c == static_cast<char>('0' + i), "echo of %d", i);
  }
  for (int fd : fds) close(fd);
  return 0;
}

constexpr int kForkServe = 8;
constexpr size_t kForkServeBytes = 256 << 10;

int ForkServeServer(int lfd) {
  std::vector<pid_t> kids;
  for (int i = 0; i < kForkServe; ++i) {
    int fd = AcceptOne(lfd);
    CHECK(fd >= 0, "accept %d", i);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
      close(lfd);
      std::vector<char> buf(kForkServeBytes);
      const int ok = ReadExact(fd, buf.data(), buf.size()) == 0 &&
                     WriteAll(fd, buf.data(), buf.size()) == 0 &&
                     ExpectEof(fd) == 0;
      close(fd);
      _exit(ok ? 0 : 1);
    }
    close(fd);
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
  }
  return 0;
}

int ForkServeClient(uint16_t port, const char*) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kForkServe; ++i) {
    threads.emplace_back([&, i] {
      int fd = Connect(port);
      std::vector<char> got(kForkServeBytes);
      const bool ok = fd >= 0 && SendPat(fd, 0, kForkServeBytes, i) == 0 &&
                      ReadExact(fd, got.data(), got.size()) == 0 &&
                      Mismatch(got.data(), 0, got.size(), i) < 0;
      if (!ok) failures.fetch_add(1);
      if (fd >= 0) close(fd);
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures.load() == 0, "%d of %d echoes failed", failures.load(),
        kForkServe);
  return 0;
}

}  // namespace

void AddWakeScenarios(Scenarios& s) {
  s["fan-in"] = {FanInServer, FanInClient};
  s["two-sleepers"] = {TwoSleepersServer, TwoSleepersClient};
  s["accept-first"] = {AcceptFirstServer, AcceptFirstClient};
  s["fork-serve"] = {ForkServeServer, ForkServeClient};
}

}  // namespace usmc::probe
