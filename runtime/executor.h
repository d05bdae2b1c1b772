// runtime/executor.h: the one place where engine actions become effects.
//
// The sans-I/O engine (engine/connection.h) answers each event with a list
// of actions; an Executor carries them out, in order, on the connection's
// device (dev/device.h: shm in production, sim in tests) and its TCP side,
// and collects the answer events the engine asked for (RegisterRecvBuffer
// -> RecvBufferRegistered, ...). runtime::SmcSocket and the tests' SimPair
// (runtime/sim_pair.h) both run their engines through it, so the tests run
// the executor that production uses.
//
//   Executor x(*device, tcp_side, {.tcp_fd = fd});
//   std::vector<engine::Event> answers;
//   x.Execute(conn.OnEvent(event, now), answers);
//   for (const engine::Event& a : answers) { /* feed, execute again */ }
//
// Data moves by the engine's copy plans: CopyToPeer / CopyFromOwn.
#ifndef USMC_RUNTIME_EXECUTOR_H_
#define USMC_RUNTIME_EXECUTOR_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "dev/device.h"
#include "engine/actions.h"
#include "engine/data_path.h"
#include "engine/events.h"

namespace usmc::runtime {

// The connection's TCP socket as the executor needs it during CLC and at
// the end. (Its app-facing use stays with the socket.)
class TcpSide {
 public:
  virtual ~TcpSide() = default;
  // CLC bytes, to be written in order after any queued before.
  virtual void SendClc(std::span<const std::byte> bytes) = 0;
  // The first `len` bytes last seen (engine::TcpBytes) were CLC: drop them.
  virtual void ConsumeClc(size_t len) = 0;
  // Reset the connection (the peer sees a RST).
  virtual void ResetTcp() = 0;
  // Orderly close of the TCP socket.
  virtual void CloseTcp() = 0;
};

class SmcrConn;  // runtime/lgr_registry.h

struct ExecutorOptions {
  std::chrono::milliseconds attach_timeout{2000};
  // The connection's SMC-R side in its process's link-group registry; null
  // where the runtime has no RDMA device (the SMC-R actions then fail the
  // connection loudly: EPROTONOSUPPORT and a reset).
  SmcrConn* smcr = nullptr;
};

class Executor {
 public:
  Executor(dev::Device& device, TcpSide& tcp, const ExecutorOptions& opts)
      : dev_(&device), tcp_(tcp), opts_(opts), smcr_(opts.smcr) {}

  // Carries out `actions` in order. Answer events are appended to
  // `answers`; the caller feeds them (in order) before any other event.
  void Execute(const engine::Actions& actions,
               std::vector<engine::Event>& answers);

  // The engine's copy plans onto the device. false: a chunk lies outside
  // the buffer (an engine bug, never the peer's doing); nothing after it
  // was copied.
  bool CopyToPeer(const engine::CopyPlan& plan, const std::byte* src);
  bool CopyFromOwn(const engine::CopyPlan& plan, std::byte* dst) const;

  // The device the data moves on: the one given, until the handshake
  // chose SMC-R (SmcrJoinLgr): from then on the SMC-R connection (a
  // socket that offered both starts on the SMC-D device).
  dev::Device& device() { return *dev_; }

  // ---- what the actions left behind ----
  // The Timeout deadline (ArmTimer), if armed.
  const std::optional<engine::TimePoint>& deadline() const { return deadline_; }
  // The caller is about to feed Timeout for the armed deadline: it is used.
  void TimerFired() { deadline_.reset(); }
  // The first errno a ReportError named (0: none), sticky.
  int error() const { return error_; }
  // The handshake's outcome, once decided.
  const std::optional<engine::HandshakeDone>& done() const { return done_; }
  const std::optional<engine::Fallback>& fallback() const { return fallback_; }
  // AbortTcp ran: the TCP socket is reset.
  bool aborted() const { return aborted_; }
  // CloseTcp ran.
  bool closed() const { return closed_; }

  // For tests: everything, counted.
  struct Log {
    std::vector<wire::ClcType> clc_sent;
    std::vector<engine::ReportError> errors;
    uint64_t signals = 0;
    uint64_t notifies = 0;
    size_t max_actions = 0;      // longest list executed
    size_t dropped_actions = 0;  // Actions::dropped(): an engine bug
  };
  const Log& log() const { return log_; }

 private:
  // An SMC-R action without a registry (no RDMA device): the connection
  // ends with EPROTONOSUPPORT and the TCP socket is reset.
  void NotExecutable();

  dev::Device* dev_;
  TcpSide& tcp_;
  const ExecutorOptions opts_;
  SmcrConn* const smcr_;
  std::optional<engine::TimePoint> deadline_;
  int error_ = 0;
  std::optional<engine::HandshakeDone> done_;
  std::optional<engine::Fallback> fallback_;
  bool aborted_ = false;
  bool closed_ = false;
  Log log_;
};

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_EXECUTOR_H_
