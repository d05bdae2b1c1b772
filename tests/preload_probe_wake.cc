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
//   fork-seq:    the same server, kForkSeq connections one after the other
//                (PostgreSQL with pgbench -C): each child echoes, then
//                lingers while the client says goodbye, closes and connects
//                again; only then does the child read the goodbye and the
//                EOF. The parent closed its copy while the handshake was
//                undecided: it must not free the child's DMB slot (the
//                next connection of the pair took it: 5 bytes lost,
//                ECONNABORTED).
//   late-add VARIANT: a thread sleeps in epoll_wait on a set; only then does
//                another thread add (or modify) an established connection
//                there, and the server writes to it: the sleeper must wake
//                with EPOLLIN for it, as with TCP. VARIANT: add, add-et,
//                add-oneshot, mod, mod-et, mod-oneshot, readd (DEL before
//                the sleep, ADD during it), first (the set held no
//                connection of usmc's when the thread went to sleep; two
//                are added, the server writes to the second), shrink (the
//                set holds kShrinkExtra more connections, too many for scan
//                mode, while the thread goes to sleep; three are closed
//                before the ADD, which brings the set back into scan mode).
#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
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

// A forking server's loop: accepts `n` connections; each is served by
// `serve` in a child of its own (true: it went right) while this process
// closes its copy at once. Fails unless every child succeeded.
int ServeEachInAChild(int lfd, int n, const std::function<bool(int)>& serve) {
  std::vector<pid_t> kids;
  for (int i = 0; i < n; ++i) {
    int fd = AcceptOne(lfd);
    CHECK(fd >= 0, "accept %d", i);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
      close(lfd);
      const bool ok = serve(fd);
      close(fd);
      _exit(ok ? 0 : 1);
    }
    close(fd);
    kids.push_back(pid);
  }
  int failed = 0;
  for (pid_t pid : kids) {
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ++failed;
  }
  CHECK(failed == 0, "%d of %d children failed", failed, n);
  return 0;
}

int ForkServeServer(int lfd) {
  return ServeEachInAChild(lfd, kForkServe, [](int fd) {
    std::vector<char> buf(kForkServeBytes);
    return ReadExact(fd, buf.data(), buf.size()) == 0 &&
           WriteAll(fd, buf.data(), buf.size()) == 0 && ExpectEof(fd) == 0;
  });
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

constexpr int kForkSeq = 24;
constexpr size_t kForkSeqBytes = 4 << 10;
constexpr char kGoodbye[] = "bye!!";  // pgbench's Terminate is 5 bytes too

int ForkSeqServer(int lfd) {
  return ServeEachInAChild(lfd, kForkSeq, [](int fd) {
    std::vector<char> buf(kForkSeqBytes);
    bool ok = ReadExact(fd, buf.data(), buf.size()) == 0 &&
              WriteAll(fd, buf.data(), buf.size()) == 0;
    // The client's goodbye and close, and its next connection, happen
    // while this child sleeps.
    usleep(50 * 1000);
    char bye[sizeof kGoodbye - 1] = {};
    return ok && ReadExact(fd, bye, sizeof bye) == 0 &&
           std::memcmp(bye, kGoodbye, sizeof bye) == 0 && ExpectEof(fd) == 0;
  });
}

int ForkSeqClient(uint16_t port, const char*) {
  for (int i = 0; i < kForkSeq; ++i) {
    int fd = Connect(port);
    CHECK(fd >= 0, "connect %d", i);
    std::vector<char> got(kForkSeqBytes);
    RUN(SendPat(fd, 0, kForkSeqBytes, i));
    RUN(ReadExact(fd, got.data(), got.size()));
    CHECK(Mismatch(got.data(), 0, got.size(), i) < 0, "echo %d differs", i);
    RUN(WriteAll(fd, kGoodbye, sizeof kGoodbye - 1));
    close(fd);
  }
  return 0;
}

// Scan mode ends past 64 sockets in a set (preload/epoll_scan.cc).
constexpr int kShrinkExtra = 65;

// late-add: connections 0 and 1 (and a control connection, whose first
// byte says how many more come: 'k' none, 's' kShrinkExtra); the server
// writes one byte to connection 1 when told.
int LateAddServer(int lfd) {
  int ctl = AcceptOne(lfd);
  CHECK(ctl >= 0, "accept control");
  char first = 0;
  RUN(ReadExact(ctl, &first, 1));
  std::vector<int> fds(first == 's' ? 2 + kShrinkExtra : 2);
  for (int& fd : fds) {
    fd = AcceptOne(lfd);
    CHECK(fd >= 0, "accept");
    RUN(WaitAck(fd));
  }
  RUN(WaitAck(ctl));  // the client's ctl op is done, its thread asleep
  RUN(WriteAll(fds[1], "x", 1));
  RUN(WaitAck(ctl));  // the client got it
  for (int fd : fds) close(fd);
  close(ctl);
  return 0;
}

// Whether thread `tid` sleeps in an epoll wait now (the syscall /proc
// shows a blocked thread in, with its state 'S').
bool InEpollWait(long tid) {
  if (ThreadState(tid) != 'S') return false;
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/syscall");
  long nr = -1;
  f >> nr;
  return nr == SYS_epoll_wait || nr == SYS_epoll_pwait
#ifdef SYS_epoll_pwait2
         || nr == SYS_epoll_pwait2
#endif
      ;
}

int LateAddClient(uint16_t port, const char* arg) {
  const std::string v = arg;
  const bool mod = v.rfind("mod", 0) == 0;
  const bool shrink = v == "shrink";
  CHECK(v == "add" || v == "add-et" || v == "add-oneshot" || mod ||
            v == "readd" || v == "first" || shrink,
        "variant %s", arg);
  uint32_t flags = 0;
  if (v.size() > 3 && v.compare(v.size() - 3, 3, "-et") == 0) flags = EPOLLET;
  if (v.find("oneshot") != std::string::npos) flags = EPOLLONESHOT;
  int ctl = Connect(port);
  CHECK(ctl >= 0, "connect control");
  RUN(Ack(ctl, shrink ? 's' : 'k'));
  std::vector<int> fds(shrink ? 2 + kShrinkExtra : 2);
  for (int& fd : fds) {
    fd = Connect(port);
    CHECK(fd >= 0, "connect");
    RUN(Ack(fd));  // past the handshake: established
    SetNonblock(fd, true);
  }
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  CHECK(ep >= 0, "epoll_create1");
  int pipefd[2];  // never written: the set always holds a kernel fd
  CHECK(pipe2(pipefd, O_CLOEXEC) == 0, "pipe");
  auto add = [&](int op, int fd, uint32_t events, uint32_t data) {
    epoll_event ev = {};
    ev.events = events;
    ev.data.u32 = data;
    return epoll_ctl(ep, op, fd, &ev);
  };
  CHECK(add(EPOLL_CTL_ADD, pipefd[0], EPOLLIN, 99) == 0, "add pipe");
  if (v != "first") {
    // A usmc set (scan mode unless USMC_EPOLL_SCAN=0), with an idle
    // connection in it.
    CHECK(add(EPOLL_CTL_ADD, fds[0], EPOLLIN, 0) == 0, "add 0");
  }
  for (size_t i = 2; i < fds.size(); ++i) {
    CHECK(add(EPOLL_CTL_ADD, fds[i], EPOLLIN, static_cast<uint32_t>(i)) == 0,
          "add %zu", i);
  }
  if (mod) CHECK(add(EPOLL_CTL_ADD, fds[1], 0, 1) == 0, "add 1, no events");
  if (v == "readd") {
    CHECK(add(EPOLL_CTL_ADD, fds[1], EPOLLIN, 1) == 0, "add 1");
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, fds[1], nullptr) == 0, "del 1");
  }
  std::atomic<long> tid{0};
  epoll_event got[4] = {};
  int n = -2, err = 0;
  std::thread sleeper([&] {
    tid.store(syscall(SYS_gettid));
    // Bounded: a sleeper never woken fails here, before the process
    // timeout.
    do {
      n = epoll_wait(ep, got, 4, 10000);
    } while (n < 0 && errno == EINTR);
    err = errno;
  });
  // Bounded (10 s): the sleeper is in the kernel's epoll wait.
  bool asleep = false;
  for (int i = 0; i < 10000 && !asleep; ++i) {
    asleep = tid.load() != 0 && InEpollWait(tid.load());
    if (!asleep) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const uint32_t events = EPOLLIN | flags;
  if (shrink) {
    for (int k = 0; k < 3; ++k) {
      close(fds.back());
      fds.pop_back();
    }
  }
  int rc = 0;
  if (mod) {
    rc = add(EPOLL_CTL_MOD, fds[1], events, 1);
  } else {
    if (v == "first") rc = add(EPOLL_CTL_ADD, fds[0], EPOLLIN | flags, 0);
    if (rc == 0) rc = add(EPOLL_CTL_ADD, fds[1], events, 1);
  }
  const int ctl_errno = errno;
  RUN(Ack(ctl));  // the server writes to connection 1 now
  sleeper.join();
  CHECK(asleep, "the sleeper never slept in epoll_wait");
  errno = ctl_errno;
  CHECK(rc == 0, "epoll_ctl during the sleep");
  errno = err;
  CHECK(n == 1, "sleeper woke with %d events (want 1: connection 1)", n);
  CHECK(got[0].data.u32 == 1 && (got[0].events & EPOLLIN),
        "sleeper woke for data %#x events %#x (want 1, EPOLLIN)",
        got[0].data.u32, got[0].events);
  char c = 0;
  CHECK(recv(fds[1], &c, 1, 0) == 1 && c == 'x', "the byte");
  RUN(Ack(ctl));
  for (int fd : fds) close(fd);
  close(pipefd[0]);
  close(pipefd[1]);
  close(ep);
  close(ctl);
  return 0;
}

}  // namespace

void AddWakeScenarios(Scenarios& s) {
  s["fan-in"] = {FanInServer, FanInClient};
  s["two-sleepers"] = {TwoSleepersServer, TwoSleepersClient};
  s["accept-first"] = {AcceptFirstServer, AcceptFirstClient};
  s["fork-serve"] = {ForkServeServer, ForkServeClient};
  s["fork-seq"] = {ForkSeqServer, ForkSeqClient};
  s["late-add"] = {LateAddServer, LateAddClient};
}

}  // namespace usmc::probe
