// The steady-state SMC-D data path allocates nothing: after the handshake,
// send / CDC delivery / receive / consumer updates run with zero calls to
// operator new (engine and sim alike). Own binary: it replaces the global
// operator new to count.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "runtime/sim_pair.h"

namespace {
std::atomic<uint64_t> g_allocs{0};
}  // namespace

// GCC cannot tell that these two belong together.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t n) {
  ++g_allocs;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace usmc::runtime {
namespace {

TEST(SimAlloc, SteadyStateDataPathDoesNotAllocate) {
  SimPair sim(SimPair::DefaultOptions());
  sim.Start();
  sim.Pump();
  ASSERT_EQ(sim.conn(kClient).mode(), engine::Mode::kSmc);
  std::vector<std::byte> out(50000, std::byte{1});
  std::vector<std::byte> in(50000);
  uint64_t moved = 0;
  const uint64_t before = g_allocs.load();
  ASSERT_GT(before, 0u);  // the counter sees the handshake's allocations
  for (int i = 0; i < 2000; ++i) {
    const size_t n = 1 + (i * 7919) % 40000;
    sim.Send(kClient, std::span(out).first(n));
    sim.Send(kServer, std::span(out).first(n / 2 + 1));
    sim.Pump();
    moved += sim.Recv(kServer, std::span(in).first(1 + (i * 104729) % 50000));
    moved += sim.Recv(kClient, in);
    sim.Pump();
  }
  const uint64_t allocs = g_allocs.load() - before;
  EXPECT_GT(moved, 10u * 1024 * 1024);
  EXPECT_EQ(allocs, 0u);
  EXPECT_TRUE(sim.side(kClient).errors.empty());
  EXPECT_TRUE(sim.side(kServer).errors.empty());
}

}  // namespace
}  // namespace usmc::runtime
