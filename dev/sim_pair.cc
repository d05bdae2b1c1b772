#include "dev/sim_pair.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <variant>

#include "wire/reason.h"

namespace usmc::dev {

using namespace usmc::engine;  // NOLINT: the sim speaks the engine's words

SimPair::SimPair(const SimOptions& options)
    : options_(options),
      dev_(options.seed),
      entropy_{SeededEntropy(options.seed * 2 + 1),
               SeededEntropy(options.seed * 2 + 2)} {
  sides_[kClient].conn.emplace(options_.client, &entropy_[kClient]);
  sides_[kServer].conn.emplace(options_.server, &entropy_[kServer]);
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
  const Actions a = sides_[s].conn->OnEvent(e, dev_.now());
  Execute(s, a);
}

void SimPair::Execute(int s, const Actions& actions) {
  SimSide& me = sides_[s];
  SimSide& peer = sides_[1 - s];
  me.max_actions = std::max(me.max_actions, actions.size());
  me.dropped_actions += actions.dropped();
  for (const Action& action : actions) {
    std::visit(
        [&](const auto& a) {
          using T = std::decay_t<decltype(a)>;
          if constexpr (std::is_same_v<T, SendTcp>) {
            me.clc_sent.push_back(a.type);
            dev_.pipe(s).Write(a.bytes);
          } else if constexpr (std::is_same_v<T, TcpConsumed>) {
            const size_t n = std::min(a.len, me.tcp_rx.size());
            me.tcp_rx.erase(me.tcp_rx.begin(), me.tcp_rx.begin() + n);
          } else if constexpr (std::is_same_v<T, RegisterRecvBuffer>) {
            std::optional<uint64_t> tok = dev_.RegisterDmb(a.size);
            if (tok.has_value()) {
              me.own_token = *tok;
              me.own_registered = true;
              me.answers.push_back(RecvBufferRegistered{*tok, a.size});
            } else {
              me.answers.push_back(RecvBufferFailed{wire::kReasonMem});
            }
          } else if constexpr (std::is_same_v<T, AttachPeerBuffer>) {
            if (dev_.Exists(a.token) && dev_.Dmb(a.token).size() == a.size) {
              me.peer_token = a.token;
              me.peer_attached = true;
              me.answers.push_back(PeerBufferAttached{});
            } else {
              me.answers.push_back(PeerBufferAttachFailed{wire::kReasonErrRtok});
            }
          } else if constexpr (std::is_same_v<T, PostCdc>) {
            std::span<std::byte> dmb = dev_.Dmb(me.peer_token);
            if (me.peer_attached && dmb.size() >= a.area.size()) {
              std::memcpy(dmb.data(), a.area.data(), a.area.size());
              peer.cdc_dirty = true;
            }
          } else if constexpr (std::is_same_v<T, SignalPeer>) {
            ++me.signals;
          } else if constexpr (std::is_same_v<T, CaptureUrgentByte>) {
            std::span<std::byte> dmb = dev_.Dmb(me.own_token);
            if (a.buffer_offset < dmb.size()) {
              me.answers.push_front(UrgentByteCaptured{dmb[a.buffer_offset]});
            } else {
              ++me.plan_out_of_bounds;
            }
          } else if constexpr (std::is_same_v<T, NotifyApp>) {
            ++me.notifies;
          } else if constexpr (std::is_same_v<T, HandshakeDone>) {
            me.link = a.link;
          } else if constexpr (std::is_same_v<T, Fallback>) {
            me.fallback = a;
          } else if constexpr (std::is_same_v<T, ArmTimer>) {
            me.deadline = a.deadline;
          } else if constexpr (std::is_same_v<T, CancelTimer>) {
            me.deadline.reset();
          } else if constexpr (std::is_same_v<T, ReportError>) {
            me.errors.push_back(a);
          } else if constexpr (std::is_same_v<T, AbortTcp>) {
            me.tcp_closed = true;
            me.tcp_reset = true;
            dev_.pipe(s).Close();
          } else if constexpr (std::is_same_v<T, ReleaseBuffers>) {
            if (a.own_registered && me.own_registered) {
              dev_.UnregisterDmb(me.own_token);
            }
            me.own_registered = false;
            me.peer_attached = false;
          } else if constexpr (std::is_same_v<T, CloseTcp>) {
            me.tcp_closed = true;
            dev_.pipe(s).Close();
          }
        },
        action);
  }
}

bool SimPair::Step(int s) {
  SimSide& me = sides_[s];
  if (!me.answers.empty()) {
    Event e = me.answers.front();
    me.answers.pop_front();
    Feed(s, e);
    return true;
  }
  const Mode mode = me.conn->mode();
  // A CDC published before this side reached SMC-D stays pending until it
  // has (the runtime re-reads the area after HandshakeDone).
  if (me.cdc_dirty && mode != Mode::kHandshake) {
    me.cdc_dirty = false;
    std::span<std::byte> dmb = dev_.Dmb(me.own_token);
    if (mode == Mode::kSmc && me.own_registered && dmb.size() >= 32) {
      CdcArrived e;
      std::memcpy(e.area.data(), dmb.data(), e.area.size());
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
  }
  return fed;
}

bool SimPair::FireNextTimer() {
  std::optional<TimePoint> earliest;
  for (const SimSide& side : sides_) {
    if (side.deadline && (!earliest || *side.deadline < *earliest)) {
      earliest = side.deadline;
    }
  }
  if (!earliest) return false;
  if (dev_.now() < *earliest) dev_.SetNow(*earliest);
  for (int s = 0; s < 2; ++s) {
    if (sides_[s].deadline && *sides_[s].deadline <= dev_.now()) {
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
  std::span<std::byte> dmb = dev_.Dmb(me.peer_token);
  size_t off = 0;
  for (uint8_t i = 0; i < plan.count; ++i) {
    const RingChunk& c = plan.chunks[i];
    if (size_t{c.offset} + c.len > dmb.size() || c.offset < 32) {
      ++me.plan_out_of_bounds;
      return 0;
    }
    std::memcpy(dmb.data() + c.offset, bytes.data() + off, c.len);
    off += c.len;
  }
  const bool wanted_more = plan.total < bytes.size();
  Feed(s, AppSent{plan.total, wanted_more, urgent && !wanted_more});
  return plan.total;
}

size_t SimPair::Recv(int s, std::span<std::byte> out, bool peek) {
  SimSide& me = sides_[s];
  const CopyPlan plan = me.conn->PlanRecv(out.size());
  std::span<std::byte> dmb = dev_.Dmb(me.own_token);
  size_t off = 0;
  for (uint8_t i = 0; i < plan.count; ++i) {
    const RingChunk& c = plan.chunks[i];
    if (size_t{c.offset} + c.len > dmb.size() || c.offset < 32) {
      ++me.plan_out_of_bounds;
      return 0;
    }
    std::memcpy(out.data() + off, dmb.data() + c.offset, c.len);
    off += c.len;
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
  sides_[s].cdc_dirty = true;
}

void SimPair::InjectRing(int s, uint32_t offset,
                         std::span<const std::byte> bytes) {
  std::span<std::byte> dmb = dev_.Dmb(sides_[s].own_token);
  if (offset > dmb.size() || bytes.size() > dmb.size() - offset) return;
  std::memcpy(dmb.data() + offset, bytes.data(), bytes.size());
}

}  // namespace usmc::dev
