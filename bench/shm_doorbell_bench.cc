// bench/shm_doorbell_bench.cc: ping-pong between two processes through the
// shm device's doorbell, to choose the USMC_SPIN_US default.
//
// For each spin budget, a forked child and the parent swap DMBs over a real
// TCP loopback handover, then bounce a message of --size bytes --iters
// times: write into the peer's DMB, release-store a sequence number, Ring();
// the other side Wait()s for it (spin, then arm and sleep), copies the
// message out, optionally "thinks" (busy) for --think-us, and answers.
// Reports per round trip: latency p50/p99, CPU time of both processes
// (getrusage) and CPU per payload byte; medians over --reps runs.
//
//   shm_doorbell_bench --spins 0,5,20,50,100 --size 64 --iters 20000 --reps 5
//   shm_doorbell_bench --spins 20 --adaptive 1 --think-us 30
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dev/shm_doorbell.h"
#include "dev/shm_test_util.h"

namespace {

using namespace usmc::dev;           // NOLINT: bench
using namespace usmc::dev::testing;  // NOLINT
using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<uint32_t> spins = {0, 5, 20, 50, 100};
  uint64_t size = 64;
  int iters = 20000;
  int reps = 5;
  uint32_t think_us = 0;
  bool adaptive = false;  // default: measure fixed spin budgets
};

struct RunResult {
  double p50_us, p99_us, cpu_us_per_rt, sleeps_per_rt;
};

constexpr size_t kDataOff = 64;

double CpuSeconds(const rusage& r) {
  return r.ru_utime.tv_sec + r.ru_stime.tv_sec +
         (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

std::atomic_ref<uint64_t> Seq(std::span<std::byte> b) {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(b.data()));
}

void Think(uint32_t us) {
  if (us == 0) return;
  const auto end = Clock::now() + std::chrono::microseconds(us);
  while (Clock::now() < end) CpuRelax();
}

// One side of the ping-pong: answers (child) or initiates (parent).
bool Bounce(ShmPair& p, uint64_t seq, uint64_t size, std::byte* scratch) {
  std::memcpy(scratch, p.local.bytes().data() + kDataOff, 0);
  if (!p.peer.Write(kDataOff, std::span(scratch, size)).ok()) return false;
  Seq(p.peer.bytes()).store(seq, std::memory_order_release);
  p.peer.doorbell().Ring();
  return true;
}

bool Await(ShmPair& p, uint64_t seq, uint64_t size, std::byte* scratch) {
  WaitResult r = p.local.doorbell().Wait(
      [&] {
        return Seq(p.local.bytes()).load(std::memory_order_acquire) == seq;
      },
      std::chrono::seconds(10));
  if (r != WaitResult::kReady) return false;
  std::memcpy(scratch, p.local.bytes().data() + kDataOff, size);
  return true;
}

int Child(uint16_t port, const Options& o, uint32_t spin) {
  usmc::Result<UniqueFd> tcp = TcpConnectLoopback(port);
  if (!tcp.ok()) return 10;
  usmc::Result<ShmPair> p =
      SetupShmPair(false, std::move(*tcp), kDataOff + o.size);
  if (!p.ok()) return 11;
  p->local.doorbell().set_spin_us(spin);
  p->local.doorbell().set_adaptive(o.adaptive);
  std::vector<std::byte> scratch(o.size);
  rusage r0{}, r1{};
  ::getrusage(RUSAGE_SELF, &r0);
  const int total = o.iters + o.iters / 10;  // warm-up included
  for (int i = 1; i <= total; ++i) {
    if (i == o.iters / 10 + 1) ::getrusage(RUSAGE_SELF, &r0);
    if (!Await(*p, i, o.size, scratch.data())) return 12;
    Think(o.think_us);
    if (!Bounce(*p, i, o.size, scratch.data())) return 13;
  }
  ::getrusage(RUSAGE_SELF, &r1);
  double cpu = CpuSeconds(r1) - CpuSeconds(r0);
  if (!WriteAll(p->tcp.get(), &cpu, sizeof cpu).ok()) return 14;
  uint64_t sleeps = p->local.doorbell().stats().sleeps;
  if (!WriteAll(p->tcp.get(), &sleeps, sizeof sleeps).ok()) return 15;
  return 0;
}

bool RunOnce(const Options& o, uint32_t spin, RunResult* out) {
  uint16_t port;
  usmc::Result<UniqueFd> l = TcpListenLoopback(&port);
  if (!l.ok()) return false;
  pid_t pid = ::fork();
  if (pid == 0) {
    l->Reset();
    _exit(Child(port, o, spin));
  }
  usmc::Result<UniqueFd> tcp = TcpAccept(l->get());
  if (!tcp.ok()) return false;
  usmc::Result<ShmPair> p =
      SetupShmPair(true, std::move(*tcp), kDataOff + o.size);
  if (!p.ok()) {
    std::fprintf(stderr, "handover: %s\n", p.status().ToString().c_str());
    return false;
  }
  p->local.doorbell().set_spin_us(spin);
  p->local.doorbell().set_adaptive(o.adaptive);
  std::vector<std::byte> scratch(o.size, std::byte{0x42});
  std::vector<double> lat;
  lat.reserve(o.iters);
  rusage r0{}, r1{};
  const int warm = o.iters / 10;
  uint64_t sleeps0 = 0;
  for (int i = 1; i <= warm + o.iters; ++i) {
    if (i == warm + 1) {
      ::getrusage(RUSAGE_SELF, &r0);
      sleeps0 = p->local.doorbell().stats().sleeps;
    }
    const auto t0 = Clock::now();
    if (!Bounce(*p, i, o.size, scratch.data())) return false;
    if (!Await(*p, i, o.size, scratch.data())) return false;
    const auto t1 = Clock::now();
    if (i > warm) {
      lat.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
  }
  ::getrusage(RUSAGE_SELF, &r1);
  double child_cpu = 0;
  uint64_t child_sleeps = 0;
  if (!ReadAll(p->tcp.get(), &child_cpu, sizeof child_cpu).ok() ||
      !ReadAll(p->tcp.get(), &child_sleeps, sizeof child_sleeps).ok()) {
    return false;
  }
  int st = WaitChild(pid);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return false;
  std::sort(lat.begin(), lat.end());
  out->p50_us = lat[lat.size() / 2];
  out->p99_us = lat[lat.size() * 99 / 100];
  const double cpu = CpuSeconds(r1) - CpuSeconds(r0) + child_cpu;
  out->cpu_us_per_rt = cpu * 1e6 / o.iters;
  const uint64_t sleeps = p->local.doorbell().stats().sleeps - sleeps0;
  out->sleeps_per_rt = static_cast<double>(sleeps + child_sleeps) / o.iters;
  return true;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<uint32_t> ParseList(const char* s) {
  std::vector<uint32_t> v;
  for (const char* p = s; *p;) {
    v.push_back(
        static_cast<uint32_t>(std::strtoul(p, const_cast<char**>(&p), 10)));
    if (*p == ',')
      ++p;
    else if (*p)
      break;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--spins")
      o.spins = ParseList(v);
    else if (k == "--size")
      o.size = std::strtoull(v, nullptr, 10);
    else if (k == "--iters")
      o.iters = std::atoi(v);
    else if (k == "--reps")
      o.reps = std::atoi(v);
    else if (k == "--think-us")
      o.think_us = static_cast<uint32_t>(std::atoi(v));
    else if (k == "--adaptive")
      o.adaptive = std::atoi(v) != 0;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (o.size == 0 || o.iters < 10 || o.reps < 1) return 2;
  std::printf(
      "size=%llu B, iters=%d, reps=%d, think=%u us, spin=%s (medians)\n",
      static_cast<unsigned long long>(o.size), o.iters, o.reps, o.think_us,
      o.adaptive ? "adaptive" : "fixed");
  std::printf(
      "| spin us | p50 us | p99 us | CPU us/RT | CPU ns/B | sleeps/RT |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (uint32_t spin : o.spins) {
    std::vector<double> p50, p99, cpu, sl;
    for (int r = 0; r < o.reps; ++r) {
      RunResult rr{};
      if (!RunOnce(o, spin, &rr)) {
        std::fprintf(stderr, "run failed (spin %u)\n", spin);
        return 1;
      }
      p50.push_back(rr.p50_us);
      p99.push_back(rr.p99_us);
      cpu.push_back(rr.cpu_us_per_rt);
      sl.push_back(rr.sleeps_per_rt);
    }
    const double c = Median(cpu);
    std::printf("| %u | %.1f | %.1f | %.1f | %.2f | %.2f |\n", spin,
                Median(p50), Median(p99), c, c * 1000 / (2.0 * o.size),
                Median(sl));
    std::fflush(stdout);
  }
  return 0;
}
