// Fuzzes the SMC-D receiver against a hostile peer: after a real handshake
// over dev/sim, the input is a script of operations: write a 32-byte CDC
// area into the victim's DMB, write ring bytes, send, receive, peek, read
// urgent data, shut down, close; what a forked sibling published, the
// peer's process vanishing. Invariants: no crash, every copy plan
// stays inside the DMB, no action list overflows, and after a violation the
// victim reports ECONNABORTED.
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "runtime/sim_pair.h"
#include "wire/cdc.h"

namespace {

using usmc::runtime::kClient;
using usmc::runtime::kServer;
using usmc::runtime::SimPair;

// Aborts (a libFuzzer crash) naming the broken invariant.
#define CHECK_INVARIANT(cond)                                \
  do {                                                       \
    if (!(cond)) {                                           \
      std::fprintf(stderr, "invariant failed: %s\n", #cond); \
      std::abort();                                          \
    }                                                        \
  } while (0)

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  usmc::runtime::SimOptions o = SimPair::DefaultOptions();
  o.client.dmb_size = 16 * 1024;  // small rings wrap often
  o.server.dmb_size = 16 * 1024;
  SimPair sim(o);
  sim.Start();
  sim.Pump();
  CHECK_INVARIANT(sim.conn(kServer).mode() == usmc::engine::Mode::kSmc);
  std::vector<std::byte> buf(40000);
  size_t pos = 0;
  auto next = [&]() -> uint8_t { return pos < size ? data[pos++] : 0; };
  while (pos < size) {
    const uint8_t op = next();
    const size_t n = (size_t{next()} << 8 | next()) % buf.size();
    switch (op % 9) {
      case 0: {  // hostile CDC area into the server's DMB
        std::array<std::byte, 32> area{};
        for (auto& b : area) b = std::byte{next()};
        if (op & 0x10) area[0] = std::byte{0xFE};
        sim.InjectCdc(kServer, area);
        break;
      }
      case 1: {  // hostile ring bytes
        std::array<std::byte, 8> bytes{};
        for (auto& b : bytes) b = std::byte{next()};
        sim.InjectRing(kServer, static_cast<uint32_t>(32 + n % 16000), bytes);
        break;
      }
      case 2:
        for (size_t i = 0; i < n; ++i) buf[i] = std::byte(i);
        sim.Send(kClient, std::span(buf).first(n), (op & 0x20) != 0);
        break;
      case 3:
        sim.Recv(kServer, std::span(buf).first(n), (op & 0x20) != 0);
        break;
      case 4:
        sim.Send(kServer, std::span(buf).first(n), (op & 0x20) != 0);
        break;
      case 5:
        sim.Recv(kClient, std::span(buf).first(n), false);
        break;
      case 6: {
        std::byte b;
        (void)sim.conn(kServer).ReadUrgent((op & 0x20) != 0, &b);
        (void)sim.conn(kServer).AtUrgentMark();
        (void)sim.conn(kServer).WaitAllSatisfied(n);
        break;
      }
      case 7:
        if (op & 0x20) {
          sim.Shutdown(op & 0x40 ? kServer : kClient);
        }
        break;
      case 8:
        if ((op & 0xE0) == 0xE0) sim.Close(kClient);
        if ((op & 0xE0) == 0x20) {
          // A "sibling" (fork) published for the server: both areas are
          // memory the hostile peer can write too.
          usmc::engine::SiblingPublished e;
          if (op & 0x10) {
            for (auto& b : e.published) b = std::byte{next()};
            for (auto& b : e.peer_area) b = std::byte{next()};
          } else {  // decodable, so the cursor checks are reached
            usmc::wire::CdcMessage m;
            m.producer = {static_cast<uint16_t>(next() & 3),
                          static_cast<uint32_t>(n)};
            m.consumer = {static_cast<uint16_t>(next() & 3),
                          static_cast<uint32_t>(next() << 8 | next())};
            (void)usmc::wire::EncodeSmcdCdc(m, e.published);
            m.consumer.count = static_cast<uint32_t>(next() << 8 | next());
            if (next() & 1) (void)usmc::wire::EncodeSmcdCdc(m, e.peer_area);
          }
          sim.Feed(kServer, e);
        }
        if ((op & 0xE0) == 0x40)
          sim.Feed(kServer, usmc::engine::PeerVanished{});
        break;
    }
    sim.Pump(10000);
    for (int s = 0; s < 2; ++s) {
      CHECK_INVARIANT(sim.side(s).plan_out_of_bounds == 0);
      CHECK_INVARIANT(sim.side(s).dropped_actions == 0);
      const usmc::engine::RecvStatus st = sim.conn(s).RecvState();
      CHECK_INVARIANT(st.readable <= 16 * 1024 - 32);
    }
    const auto& stats = sim.conn(kServer).Stats();
    if (stats.counters.violations > 0) {
      CHECK_INVARIANT(stats.error == ECONNABORTED);
    }
  }
  return 0;
}
