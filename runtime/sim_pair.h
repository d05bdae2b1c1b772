// dev/sim_pair.h: a client and a server engine wired together over SimDevice
// (fizz's LocalTransport): it carries out every action the engines return,
// feeds back the answers (RecvBufferRegistered, CdcArrived, TcpBytes...), and
// offers app-level Send/Recv/Close for tests. Deterministic: one thread, an
// injected clock, seeded tokens.
//
// This is the one place in dev/ that includes engine/: it is the engine's
// test device, not a transport the runtime uses.
//
//   SimPair sim(SimPair::DefaultOptions());
//   sim.Start();
//   sim.Pump();                                // handshake runs to the end
//   sim.Send(kClient, bytes); sim.Pump();
//   size_t n = sim.Recv(kServer, buf);
#ifndef USMC_RUNTIME_SIM_PAIR_H_
#define USMC_RUNTIME_SIM_PAIR_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dev/sim.h"
#include "dev/sim_rdma.h"
#include "engine/connection.h"
#include "runtime/executor.h"
#include "runtime/lgr_registry.h"

namespace usmc::runtime {

using dev::SimDevice;
using dev::SimPipe;

inline constexpr int kClient = 0;
inline constexpr int kServer = 1;

// SMC-R's world for SimPairs: one simulated RDMA fabric (dev/sim_rdma.h)
// with two hosts, and the runtimes ("processes") on them, each with its
// own link-group registry. Outlives the pairs that use it, so one test can
// run many connections between the same processes.
class SmcrWorld {
 public:
  // ipv6_gids: the hosts' GIDs are fd00::1 and fd00::2 (SMC-Rv2 over
  // IPv6, usmc ↔ usmc) instead of ::ffff:10.0.0.1 and ::ffff:10.0.0.2.
  explicit SmcrWorld(uint64_t seed = 1, const LgrRegistryOptions& options = {},
                     bool ipv6_gids = false);
  ~SmcrWorld();
  // A new process on host 0 or 1; returns its index.
  int AddProcess(int host);
  LgrRegistry& registry(int process) { return *procs_[process].registry; }
  int host_of(int process) const { return procs_[process].host; }
  dev::rdma::Context& host(int h) { return *hosts_[h]; }
  dev::rdma::SimRdma& fabric() { return fabric_; }
  dev::rdma::SimClock& clock() { return clock_; }
  engine::TimePoint now() const { return clock_.now(); }
  // One fabric step, then every registry's Progress. true if anything
  // moved.
  bool Progress();
  // The earliest timer of the fabric or any registry.
  std::optional<engine::TimePoint> NextDeadline() const;
  // The process hangs or is gone: its registry makes no more progress.
  void Freeze(int process) { procs_[process].frozen = true; }

 private:
  struct Process {
    int host = 0;
    std::unique_ptr<engine::SeededEntropy> entropy;
    std::unique_ptr<LgrRegistry> registry;
    bool frozen = false;
  };
  const uint64_t seed_;
  const LgrRegistryOptions options_;
  dev::rdma::SimClock clock_;
  dev::rdma::SimRdma fabric_;
  dev::rdma::Context* hosts_[2] = {nullptr, nullptr};
  std::vector<Process> procs_;
};

struct SimOptions {
  engine::EngineParams client;
  engine::EngineParams server;
  uint64_t seed = 1;
  bool trickle = false;  // deliver TCP bytes one at a time
  // SMC-R over a simulated RDMA fabric instead of SMC-D: the pair's own
  // SmcrWorld (two processes on two hosts) unless `world` names one, with
  // the client and server in processes `client_process`/`server_process`.
  bool smcr = false;
  SmcrWorld* world = nullptr;
  int client_process = 0;
  int server_process = 1;
  // Tests: the system ID the client proposes, instead of its registry's.
  std::optional<wire::ClcPeerId> client_system_id;
  // Tests: runs right after side s wrote a CLC message, inside its
  // executor (the actions after the SendClc have not run yet): what a peer
  // and a progress thread may do meanwhile in a real process. It may call
  // PumpOthers(s), never feed side s.
  std::function<void(int side)> on_clc_sent;
};

// What one side's engine did, as seen by the sim.
struct SimSide {
  std::optional<engine::Connection> conn;
  std::vector<std::byte> tcp_rx;  // read from TCP, not consumed by the engine
  std::deque<engine::Event> answers;  // owed answer events
  std::optional<engine::TimePoint> deadline;
  std::optional<engine::SmcdLink> link;
  std::optional<engine::SmcrLink> smcr_link;
  std::vector<std::vector<std::byte>> clc_bytes;  // every CLC message sent
  std::optional<engine::Fallback> fallback;
  std::vector<engine::ReportError> errors;
  std::vector<wire::ClcType> clc_sent;
  uint64_t own_token = 0;
  uint64_t peer_token = 0;
  bool own_registered = false;
  bool peer_attached = false;
  bool tcp_closed = false;  // this side closed / reset TCP
  bool tcp_reset = false;
  bool eof_delivered = false;
  uint64_t signals = 0;
  uint64_t notifies = 0;
  uint64_t plan_out_of_bounds = 0;  // copy plans outside a DMB: engine bug
  size_t max_actions = 0;
  size_t dropped_actions = 0;
};

class SimPair {
 public:
  explicit SimPair(const SimOptions& options);
  // Matching SMC-Dv2 identities on one "host", 64 KiB DMBs.
  static SimOptions DefaultOptions();
  // The same over SMC-R (SMC-D off), 64 KiB RMBs.
  static SimOptions SmcrOptions();

  SimDevice& device() { return dev_; }
  bool smcr() const { return options_.smcr; }
  SmcrWorld& world() { return *world_; }
  SmcrConn& smcr_conn(int s) { return *smcr_[s]; }
  LgrRegistry& registry(int s);
  // Receive buffers this pair holds now (SMC-D: DMBs; SMC-R: RMB regions).
  size_t BuffersInUse();
  engine::TimePoint now() const;
  SimSide& side(int s) { return sides_[s]; }
  engine::Connection& conn(int s) { return *sides_[s].conn; }

  // Feeds Start to both engines (server first, as after accept()).
  void Start();
  // The side's process hangs or is gone (with SMC-R its registry too):
  // its engine gets no more events.
  void Freeze(int s);
  // Feeds one event to a side and carries out the actions.
  void Feed(int s, const engine::Event& e);
  // Delivers everything that is pending until nothing moves. Returns the
  // number of events fed.
  size_t Pump(size_t max_events = 1000000);
  // Delivers what is pending to the side that is not s, and runs the
  // fabric and every registry (progress threads), until nothing moves;
  // side s's engine gets nothing (see SimOptions::on_clc_sent).
  void PumpOthers(int s, size_t max_events = 100000);
  // Moves the clock to the earliest armed deadline and fires it; false if
  // no timer is armed.
  bool FireNextTimer();

  // ---- app side, SMC-D mode ----
  // Copies as much of `bytes` as fits into the peer's DMB and commits.
  size_t Send(int s, std::span<const std::byte> bytes, bool urgent = false);
  size_t Recv(int s, std::span<std::byte> out, bool peek = false);
  void Shutdown(int s) { Feed(s, engine::AppShutdown{false, true}); }
  void Close(int s) { Feed(s, engine::AppClose{}); }
  void Abort(int s) { Feed(s, engine::AppAbort{}); }

  // ---- app side, TCP mode (after Fallback) ----
  void TcpAppWrite(int s, std::span<const std::byte> bytes);
  // Everything the app can read now: leftover after CLC, then the pipe.
  std::vector<std::byte> TcpAppRead(int s);

  // ---- faults ----
  // Raw bytes onto the wire from side s (garbage CLC, a foreign peer).
  void InjectTcp(int from, std::span<const std::byte> bytes);
  // A hostile peer writes this 32-byte CDC area into side s's own DMB.
  void InjectCdc(int s, std::span<const std::byte> area);
  // A hostile peer writes into side s's ring (data bytes).
  void InjectRing(int s, uint32_t offset, std::span<const std::byte> bytes);

 private:
  // One side's TCP socket for the executor: the pipe it writes, the bytes
  // it has read.
  class Tcp final : public TcpSide {
   public:
    Tcp(SimPair& pair, int side) : pair_(pair), side_(side) {}
    void SendClc(std::span<const std::byte> bytes) override;
    void ConsumeClc(size_t len) override;
    void ResetTcp() override;
    void CloseTcp() override;

   private:
    SimPair& pair_;
    const int side_;
  };

  void Execute(int s, const engine::Actions& actions);
  bool Step(int s);

  SimOptions options_;
  std::unique_ptr<SmcrWorld> own_world_;
  SmcrWorld* world_ = nullptr;
  std::unique_ptr<SmcrConn> smcr_[2];
  SimDevice dev_;
  engine::SeededEntropy entropy_[2];
  SimSide sides_[2];
  Tcp tcp_[2] = {Tcp(*this, 0), Tcp(*this, 1)};
  std::optional<Executor> exec_[2];
  bool frozen_[2] = {false, false};
};

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_SIM_PAIR_H_
