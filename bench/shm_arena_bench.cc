// bench/shm_arena_bench.cc: what one connection's DMB costs, today against an
// arena slot (docs/dev-shm.md, "Arenas"). Today: Register, Attach of a dup
// (the peer's side), the CDC page and one data page touched both ways,
// Detach, Unregister. Arena: Allocate, CheckSlot (the peer's side), the same
// touches, Free. A second thread stays alive, as the interposer's progress
// thread does: munmap then needs TLB shootdowns on multi-CPU machines.
//
//   build-dev/dev/shm_arena_bench [dmb_size] [iterations]
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "base/owned_fd.h"
#include "dev/shm_arena.h"
#include "dev/shm_dmb.h"

namespace {

using usmc::dev::DmbBudget;
using usmc::dev::LocalDmb;
using usmc::dev::PeerDmb;
using usmc::dev::ShmArena;
using usmc::dev::UniqueFd;

double CpuSeconds() {
  rusage r{};
  ::getrusage(RUSAGE_SELF, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

UniqueFd Dup(int fd) {
  return UniqueFd(usmc::base::OwnFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0)));
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t size = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 262144;
  const int n = argc > 2 ? std::atoi(argv[2]) : 2000;
  if (size < 8192 || n <= 0) {
    std::fprintf(stderr, "usage: %s [dmb_size >= 8192] [iterations]\n",
                 argv[0]);
    return 2;
  }
  std::atomic<bool> stop{false};
  std::thread other([&] {
    while (!stop.load()) ::usleep(1000);
  });
  DmbBudget budget(uint64_t{1} << 30);
  int rc = 0;
  for (int arena_mode = 0; arena_mode < 2 && rc == 0; ++arena_mode) {
    auto arena = ShmArena::Create(256 << 20, budget);
    if (!arena.ok()) return 1;
    auto peer = ShmArena::AttachPeer(Dup((*arena)->memfd()),
                                     (*arena)->file_size(), (*arena)->id());
    if (!peer.ok()) return 1;
    const double cpu0 = CpuSeconds();
    const auto wall0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n && rc == 0; ++i) {
      if (arena_mode == 0) {
        auto l = LocalDmb::Register(size, budget);
        if (!l.ok()) {
          rc = 1;
          break;
        }
        auto p = PeerDmb::Attach(Dup(l->memfd()), l->token(), size);
        if (!p.ok()) {
          rc = 1;
          break;
        }
        std::memset(p->bytes().data(), 1, 4096 + 100);
        volatile std::byte b = l->bytes()[4096 + 50];
        (void)b;
      } else {
        auto s = (*arena)->Allocate(size, static_cast<uint64_t>(i) + 1);
        if (!s.ok() || !(*peer)->CheckSlot(*s).ok()) {
          rc = 1;
          break;
        }
        std::memset((*peer)->Bytes(*s).data(), 1, 4096 + 100);
        volatile std::byte b = (*arena)->Bytes(*s)[4096 + 50];
        (void)b;
        (*arena)->Free(*s);
      }
    }
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0)
            .count();
    std::printf("%-11s %8llu B: %9.2f us wall, %8.2f us CPU per DMB\n",
                arena_mode ? "arena slot" : "memfd DMB",
                static_cast<unsigned long long>(size), wall / n * 1e6,
                (CpuSeconds() - cpu0) / n * 1e6);
  }
  stop.store(true);
  other.join();
  return rc;
}
