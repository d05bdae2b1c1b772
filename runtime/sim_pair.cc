#include "runtime/sim_pair.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <variant>

namespace usmc::runtime {

using namespace usmc::engine;  // NOLINT: the sim speaks the engine's words

SmcrWorld::SmcrWorld(uint64_t seed, const LgrRegistryOptions& options,
                     bool ipv6_gids)
    : seed_(seed), options_(options), fabric_(clock_, seed) {
  for (int h = 0; h < 2; ++h) {
    dev::rdma::SimDeviceConfig c;
    c.name = "sim" + std::to_string(h);
    c.ipv4 = 0x0a000001u + uint32_t(h);
    if (ipv6_gids)
      c.gid = dev::rdma::Gid{0xfd, 0, 0, 0, 0, 0, 0, 0,
                             0,    0, 0, 0, 0, 0, 0, uint8_t(h + 1)};
    hosts_[h] = &fabric_.AddDevice(c);
  }
}

SmcrWorld::~SmcrWorld() {
  // Registries before the fabric that handed out their objects.
  procs_.clear();
}

int SmcrWorld::AddProcess(int host) {
  Process p;
  p.host = host;
  p.entropy = std::make_unique<SeededEntropy>(seed_ * 1000 + procs_.size());
  LgrRegistryOptions o = options_;
  o.clock = [this] { return clock_.now(); };
  p.registry = std::make_unique<LgrRegistry>(*hosts_[host], *p.entropy, o);
  procs_.push_back(std::move(p));
  return int(procs_.size()) - 1;
}

bool SmcrWorld::Progress() {
  bool any = fabric_.Step();
  for (Process& p : procs_) {
    if (!p.frozen) any = p.registry->Progress() || any;
  }
  return any;
}

std::optional<TimePoint> SmcrWorld::NextDeadline() const {
  std::optional<TimePoint> out = fabric_.NextDeadline();
  for (const Process& p : procs_) {
    if (p.frozen) continue;
    std::optional<TimePoint> d = p.registry->NextDeadline();
    if (d && (!out || *d < *out)) out = d;
  }
  return out;
}

SimPair::SimPair(const SimOptions& options)
    : options_(options),
      dev_(options.seed),
      entropy_{SeededEntropy(options.seed * 2 + 1),
               SeededEntropy(options.seed * 2 + 2)} {
  if (options_.smcr) {
    world_ = options_.world;
    if (world_ == nullptr) {
      own_world_ = std::make_unique<SmcrWorld>(options_.seed);
      options_.client_process = own_world_->AddProcess(0);
      options_.server_process = own_world_->AddProcess(1);
      world_ = own_world_.get();
    }
    const int proc[2] = {options_.client_process, options_.server_process};
    EngineParams* params[2] = {&options_.client, &options_.server};
    for (int s = 0; s < 2; ++s) {
      const int peer_host = world_->host_of(proc[1 - s]);
      LgrRegistry& reg = world_->registry(proc[s]);
      *params[s] =
          reg.ConnParams(*params[s], world_->host(peer_host).attr().gid);
      if (s == kClient && options_.client_system_id)
        params[s]->smcr_system_id = *options_.client_system_id;
      // The client's peer GID: a second first contact to it while this
      // one runs joins its group (LgrRegistry::NewConn).
      smcr_[s] = reg.NewConn(
          *params[s],
          s == kClient ? world_->host(peer_host).attr().gid : wire::Gid{});
    }
  }
  sides_[kClient].conn.emplace(options_.client, &entropy_[kClient]);
  sides_[kServer].conn.emplace(options_.server, &entropy_[kServer]);
  for (int s = 0; s < 2; ++s) {
    if (smcr_[s]) {
      exec_[s].emplace(*smcr_[s], tcp_[s],
                       ExecutorOptions{.smcr = smcr_[s].get()});
    } else {
      exec_[s].emplace(dev_.endpoint(s), tcp_[s], ExecutorOptions{});
    }
  }
}

LgrRegistry& SimPair::registry(int s) {
  return world_->registry(s == kClient ? options_.client_process
                                       : options_.server_process);
}

size_t SimPair::BuffersInUse() {
  if (!options_.smcr) return dev_.dmb_count();
  size_t n = 0;
  for (int s = 0; s < 2; ++s) {
    for (const MrRecord& r : smcr_[s]->Regions()) n += r.rmb ? 1 : 0;
  }
  return n;
}

TimePoint SimPair::now() const {
  return options_.smcr ? world_->now() : dev_.now();
}

void SimPair::Tcp::SendClc(std::span<const std::byte> bytes) {
  pair_.sides_[side_].clc_bytes.emplace_back(bytes.begin(), bytes.end());
  pair_.dev_.pipe(side_).Write(bytes);
  if (pair_.options_.on_clc_sent) pair_.options_.on_clc_sent(side_);
}

void SimPair::Tcp::ConsumeClc(size_t len) {
  std::vector<std::byte>& rx = pair_.sides_[side_].tcp_rx;
  const size_t n = std::min(len, rx.size());
  rx.erase(rx.begin(), rx.begin() + static_cast<std::ptrdiff_t>(n));
}

void SimPair::Tcp::ResetTcp() {
  pair_.sides_[side_].tcp_closed = true;
  pair_.sides_[side_].tcp_reset = true;
  pair_.dev_.pipe(side_).Close();
}

void SimPair::Tcp::CloseTcp() {
  pair_.sides_[side_].tcp_closed = true;
  pair_.dev_.pipe(side_).Close();
}

SimOptions SimPair::SmcrOptions() {
  SimOptions o = DefaultOptions();
  o.smcr = true;
  o.client.smcd_enabled = false;
  o.server.smcd_enabled = false;
  o.client.smcr.rmb_size = 64 * 1024;
  o.server.smcr.rmb_size = 64 * 1024;
  return o;
}

SimOptions SimPair::DefaultOptions() {
  SimOptions o;
  EngineParams p;
  p.device = SmcdDevice{0x1122334455667788ULL, 0x99aabbccddeeff00ULL, 0xFFFF};
  p.eid = wire::MakeClcEid("USMC-SIM-UEID");
  p.hostname = wire::MakeClcHostname("sim-host");
  p.dmb_size = 64 * 1024;
  o.client = p;
  o.client.role = Role::kClient;
  o.server = p;
  o.server.role = Role::kServer;
  return o;
}

void SimPair::Start() {
  Feed(kServer, engine::Start{});
  Feed(kClient, engine::Start{});
}

void SimPair::Feed(int s, const Event& e) {
  const Actions a = sides_[s].conn->OnEvent(e, now());
  Execute(s, a);
}

void SimPair::Execute(int s, const Actions& actions) {
  SimSide& me = sides_[s];
  Executor& x = *exec_[s];
  std::vector<Event> answers;
  x.Execute(actions, answers);
  // UrgentByteCaptured is owed before anything else queued.
  for (auto it = answers.rbegin(); it != answers.rend(); ++it) {
    if (std::holds_alternative<UrgentByteCaptured>(*it)) {
      me.answers.push_front(*it);
    }
  }
  for (const Event& e : answers) {
    if (!std::holds_alternative<UrgentByteCaptured>(e)) me.answers.push_back(e);
  }
  // The executor's record, in the shape the tests read.
  const Executor::Log& log = x.log();
  dev::SimEndpoint& ep = dev_.endpoint(s);
  me.deadline = x.deadline();
  if (x.done()) me.link = x.done()->link;
  if (x.done() && x.done()->technology == Technology::kSmcr)
    me.smcr_link = x.done()->smcr;
  me.fallback = x.fallback();
  me.errors = log.errors;
  me.clc_sent = log.clc_sent;
  me.own_token = ep.own_token();
  me.peer_token = ep.peer_token();
  me.own_registered = ep.registered();
  me.peer_attached = ep.attached();
  me.signals = log.signals;
  me.notifies = log.notifies;
  me.max_actions = log.max_actions;
  me.dropped_actions = log.dropped_actions;
}

void SimPair::Freeze(int s) {
  frozen_[s] = true;
  if (world_ != nullptr)
    world_->Freeze(s == kClient ? options_.client_process
                                : options_.server_process);
}

bool SimPair::Step(int s) {
  if (frozen_[s]) return false;
  SimSide& me = sides_[s];
  if (!me.answers.empty()) {
    Event e = me.answers.front();
    me.answers.pop_front();
    Feed(s, e);
    return true;
  }
  // SMC-R: what the link brought this connection (CDCs, completions,
  // the link coming up, the group ending), in order.
  if (smcr_[s] && smcr_[s]->HasEvents()) {
    for (Event& e : smcr_[s]->TakeEvents()) me.answers.push_back(std::move(e));
    return true;
  }
  const Mode mode = me.conn->mode();
  // A CDC posted before this side reached SMC-D stays pending until it
  // has (the runtime re-reads the area after HandshakeDone).
  if (!smcr_[s] && mode != Mode::kHandshake && dev_.TakeCdcPosted(s)) {
    const dev::CdcBytes cdc = dev_.endpoint(s).LoadCdc();
    if (mode == Mode::kSmc && cdc.len >= 32) {
      CdcArrived e;
      std::memcpy(e.area.data(), cdc.data.data(), e.area.size());
      Feed(s, e);
      return true;
    }
  }
  if (mode != Mode::kHandshake && mode != Mode::kSmc) return false;
  SimPipe& in = dev_.pipe(1 - s);
  if (in.readable()) {
    std::vector<std::byte> got = in.Read(options_.trickle ? 1 : in.size());
    me.tcp_rx.insert(me.tcp_rx.end(), got.begin(), got.end());
    Feed(s, TcpBytes{me.tcp_rx});
    return true;
  }
  if (in.closed() && in.empty() && !me.eof_delivered) {
    me.eof_delivered = true;
    Feed(s, TcpEof{});
    return true;
  }
  return false;
}

size_t SimPair::Pump(size_t max_events) {
  size_t fed = 0;
  bool progress = true;
  while (progress && fed < max_events) {
    progress = false;
    for (int s = 0; s < 2 && fed < max_events; ++s) {
      if (Step(s)) {
        progress = true;
        ++fed;
      }
    }
    // The fabric and the registries' progress (what a progress thread
    // does in a process), when the engines have nothing to do.
    if (!progress && world_ != nullptr && fed < max_events) {
      progress = world_->Progress();
      if (progress) ++fed;
    }
  }
  return fed;
}

void SimPair::PumpOthers(int s, size_t max_events) {
  for (size_t fed = 0; fed < max_events;) {
    if (Step(1 - s)) {
      ++fed;
      continue;
    }
    if (world_ == nullptr || !world_->Progress()) return;
    ++fed;
  }
}

bool SimPair::FireNextTimer() {
  std::optional<TimePoint> earliest;
  for (int s = 0; s < 2; ++s) {
    const SimSide& side = sides_[s];
    if (frozen_[s]) continue;
    if (side.deadline && (!earliest || *side.deadline < *earliest)) {
      earliest = side.deadline;
    }
  }
  if (world_ != nullptr) {
    std::optional<TimePoint> w = world_->NextDeadline();
    if (w && (!earliest || *w < *earliest)) earliest = w;
  }
  if (!earliest) return false;
  if (dev_.now() < *earliest) dev_.SetNow(*earliest);
  if (world_ != nullptr) world_->clock().Set(*earliest);
  for (int s = 0; s < 2; ++s) {
    if (frozen_[s]) continue;
    if (sides_[s].deadline && *sides_[s].deadline <= now()) {
      sides_[s].deadline.reset();
      Feed(s, Timeout{});
    }
  }
  return true;
}

size_t SimPair::Send(int s, std::span<const std::byte> bytes, bool urgent) {
  SimSide& me = sides_[s];
  if (me.conn->SendError() != 0) return 0;
  const CopyPlan plan = me.conn->PlanSend(bytes.size());
  if (!exec_[s]->CopyToPeer(plan, bytes.data())) {
    ++me.plan_out_of_bounds;
    return 0;
  }
  const bool wanted_more = plan.total < bytes.size();
  Feed(s, AppSent{plan.total, wanted_more, urgent && !wanted_more});
  return plan.total;
}

size_t SimPair::Recv(int s, std::span<std::byte> out, bool peek) {
  SimSide& me = sides_[s];
  const CopyPlan plan = me.conn->PlanRecv(out.size());
  if (!exec_[s]->CopyFromOwn(plan, out.data())) {
    ++me.plan_out_of_bounds;
    return 0;
  }
  if (!peek && plan.total > 0) Feed(s, AppConsumed{plan.total});
  return plan.total;
}

void SimPair::TcpAppWrite(int s, std::span<const std::byte> bytes) {
  dev_.pipe(s).Write(bytes);
}

std::vector<std::byte> SimPair::TcpAppRead(int s) {
  std::vector<std::byte> out = std::move(sides_[s].tcp_rx);
  sides_[s].tcp_rx.clear();
  SimPipe& in = dev_.pipe(1 - s);
  std::vector<std::byte> rest = in.Read(in.size());
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

void SimPair::InjectTcp(int from, std::span<const std::byte> bytes) {
  dev_.pipe(from).Write(bytes);
}

void SimPair::InjectCdc(int s, std::span<const std::byte> area) {
  std::span<std::byte> dmb = dev_.Dmb(sides_[s].own_token);
  const size_t n = std::min<size_t>(32, area.size());
  if (dmb.size() < n) return;
  std::memcpy(dmb.data(), area.data(), n);
  dev_.MarkCdcPosted(s);
}

void SimPair::InjectRing(int s, uint32_t offset,
                         std::span<const std::byte> bytes) {
  std::span<std::byte> dmb = dev_.Dmb(sides_[s].own_token);
  if (offset > dmb.size() || bytes.size() > dmb.size() - offset) return;
  std::memcpy(dmb.data() + offset, bytes.data(), bytes.size());
}

}  // namespace usmc::runtime
