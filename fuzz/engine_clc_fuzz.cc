// Fuzzes the CLC client and server machines with arbitrary TCP bytes in
// arbitrary chunks (peek semantics: unconsumed bytes are fed again), with
// every RegisterRecvBuffer/AttachPeerBuffer answered and timers firing. Invariants:
// no crash, no action list overflow, never more bytes consumed than fed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <variant>
#include <vector>

#include "engine/connection.h"

namespace {

using namespace usmc::engine;  // NOLINT

void Check(bool ok) {
  if (!ok) std::abort();
}

void Run(Role role, const uint8_t* data, size_t size) {
  if (size < 1) return;
  EngineParams p;
  p.role = role;
  p.device = SmcdDevice{0x0102030405060708ULL, 0x1112131415161718ULL, 0xFFFF};
  p.eid = usmc::wire::MakeClcEid("FUZZ");
  SeededEntropy entropy(size);
  Connection conn(p, &entropy);
  TimePoint now{std::chrono::seconds(1)};
  std::vector<std::byte> pending;  // received, not consumed
  std::vector<Event> answers;
  const uint8_t chunk_seed = data[0];
  size_t pos = 1;

  auto run = [&](const Event& e) {
    const Actions a = conn.OnEvent(e, now);
    Check(a.dropped() == 0);
    for (const Action& x : a) {
      if (const auto* c = std::get_if<TcpConsumed>(&x)) {
        Check(c->len <= pending.size());
        pending.erase(pending.begin(), pending.begin() + c->len);
      } else if (const auto* r = std::get_if<RegisterRecvBuffer>(&x)) {
        answers.push_back(RecvBufferRegistered{0x77, r->size});
      } else if (std::holds_alternative<AttachPeerBuffer>(x)) {
        answers.push_back(PeerBufferAttached{});
      }
    }
  };

  run(Start{});
  while (pos < size && conn.mode() == Mode::kHandshake) {
    const size_t n = 1 + (chunk_seed + pos) % 97;
    const size_t take = n < size - pos ? n : size - pos;
    for (size_t i = 0; i < take; ++i) {
      pending.push_back(static_cast<std::byte>(data[pos + i]));
    }
    pos += take;
    run(TcpBytes{pending});
    while (!answers.empty()) {
      Event e = answers.front();
      answers.erase(answers.begin());
      run(e);
    }
    if ((chunk_seed & 0x80) && (pos & 7) == 0) {
      now += std::chrono::seconds(7);
      run(Timeout{});
    }
  }
  if (conn.mode() == Mode::kHandshake) {
    now += std::chrono::seconds(7);
    run(Timeout{});
  }
  (void)conn.Stats();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Run(Role::kServer, data, size);
  Run(Role::kClient, data, size);
  return 0;
}
