// Fuzzes the exec handover's record decoder (runtime/exec_record.h) and
// what a decoded record feeds: Connection::Restore and the data path it
// rebuilds. A record that decodes must re-encode to the same bytes,
// restore into a fresh engine, and never yield a copy plan outside the
// DMBs, whatever events follow.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/connection.h"
#include "engine/snapshot.h"
#include "runtime/exec_record.h"

namespace {

using namespace usmc;  // NOLINT

void CheckPlan(const engine::CopyPlan& p, uint32_t dmb_size) {
  uint64_t total = 0;
  for (uint8_t i = 0; i < p.count; ++i) {
    if (p.chunks[i].offset < 32 ||
        uint64_t{p.chunks[i].offset} + p.chunks[i].len > dmb_size) {
      std::abort();
    }
    total += p.chunks[i].len;
  }
  if (p.count > 2 || total != p.total) std::abort();
}

void CheckPlans(const engine::Connection& c, const engine::SmcdLink& l) {
  CheckPlan(c.PlanSend(1u << 30), l.peer_dmb_size);
  CheckPlan(c.PlanRecv(1u << 30), l.local_dmb_size);
}

void Exercise(const runtime::ExecRecord& r) {
  engine::EngineParams p;
  p.role = r.role;
  p.device = r.engine.link.local_device;
  engine::SeededEntropy entropy(1);
  engine::Connection c(p, &entropy);
  // The decoder ran CheckSnapshot and matched the roles: this must work.
  if (!c.Restore(r.engine).ok()) std::abort();
  const engine::SmcdLink& l = r.engine.link;
  const engine::TimePoint now{0};
  CheckPlans(c, l);
  (void)c.OnEvent(engine::CdcArrived{r.last_area}, now);
  CheckPlans(c, l);
  (void)c.OnEvent(engine::AppConsumed{c.RecvState().readable}, now);
  CheckPlans(c, l);
  (void)c.OnEvent(engine::AppSent{.len = c.PlanSend(1u << 30).total}, now);
  CheckPlans(c, l);
  std::byte b;
  (void)c.ReadUrgent(false, &b);
  (void)c.OnEvent(engine::AppShutdown{.read = true, .write = true}, now);
  (void)c.OnEvent(engine::AppClose{}, now);
  CheckPlans(c, l);
  (void)c.Stats();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  while (!in.empty()) {
    const std::string_view before = in;
    Result<runtime::ExecRecord> r = runtime::DecodeExecRecord(in);
    if (in.size() >= before.size()) std::abort();  // every call moves on
    if (!r.ok()) continue;
    std::string again;
    runtime::AppendExecRecord(*r, again);
    if (again != before.substr(0, before.size() - in.size())) std::abort();
    Exercise(*r);
  }
  return 0;
}
