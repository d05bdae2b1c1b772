// engine/connection.h: one SMC connection as a sans-I/O engine (the API the
// runtime uses).
//
// The runtime feeds every event with the current time and carries out the
// returned actions in order (docs/engine.md lists what each one means). The
// handshake runs the CLC client or server machine; on HandshakeDone the
// SMC-D data path and the close machine take over; on Fallback the runtime
// uses the TCP socket directly and stops calling the engine for data.
//
//   Connection conn(params, &entropy);
//   Actions a = conn.OnEvent(Start{}, now);       // SendTcp(Proposal), ...
//   ...
//   CopyPlan p = conn.PlanSend(len);              // memcpy into peer DMB
//   a = conn.OnEvent(AppSent{.len = p.total}, now);  // PostCdc, SignalPeer
//
// No system calls, clocks, threads or allocation on the data path. Not
// thread-safe; never re-entered from action execution.
#ifndef USMC_ENGINE_CONNECTION_H_
#define USMC_ENGINE_CONNECTION_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <variant>

#include "base/status.h"
#include "engine/actions.h"
#include "engine/clc_client.h"
#include "engine/clc_server.h"
#include "engine/close.h"
#include "engine/common.h"
#include "engine/data_path.h"
#include "engine/events.h"
#include "engine/params.h"
#include "engine/stats.h"
#include "engine/transport.h"

namespace usmc::engine {

struct ConnectionSnapshot;  // engine/snapshot.h

// What a recv would see now.
struct RecvStatus {
  uint32_t readable = 0;  // bytes a recv returns now (stops at the mark)
  bool eof = false;       // peer done writing and everything read
  // errno a recv returns now: after the bytes that came before the reset,
  // like TCP (ECONNABORTED: at once, the ring is not trusted).
  int error = 0;
  bool read_closed = false;  // no more bytes will come (TCP's RCV_SHUTDOWN)
};

class Connection {
 public:
  Connection(const EngineParams& params, Entropy* entropy);

  Actions OnEvent(const Event& event, TimePoint now);

  Role role() const { return params_.role; }
  Mode mode() const { return mode_; }
  // SMC-D or SMC-R, once mode() is kSmc.
  Technology technology() const { return technology_; }
  std::string_view handshake_state() const;
  CloseState close_state() const { return close_.state(); }
  // The next Timeout deadline, if a timer is armed (the handshake's; in
  // SMC-R mode the wait for the peer's close CDC after its TCP ended).
  std::optional<TimePoint> NextDeadline() const;
  // Negotiated parameters (SMC-D mode only).
  const SmcdLink* link() const {
    return mode_ == Mode::kSmc && technology_ == Technology::kSmcd ? &link_
                                                                   : nullptr;
  }
  // Negotiated parameters (SMC-R mode only).
  const SmcrLink* smcr_link() const {
    return mode_ == Mode::kSmc && technology_ == Technology::kSmcr ? &smcr_
                                                                   : nullptr;
  }

  // ---- errors (SMC-D mode), as TCP reports them ----
  // The connection's error until the app got it once (AppErrorReported),
  // like TCP's socket error: ECONNRESET (peer aborted: TCP's RST),
  // ECONNABORTED (local abort), EPIPE (reset after the peer's close: data
  // sent to a closed peer, or the peer aborted after shutting down); 0 if
  // none or already reported. poll shows it as POLLERR.
  int PendingError() const;
  // Both directions are over (TCP's POLLHUP): the peer shut down writing and
  // we did too, or the connection was reset or aborted.
  bool HungUp() const;
  // The peer's last CDC closed or aborted the connection: its process's
  // death changes nothing (the runtime then need not look at TCP).
  bool PeerClosed() const {
    return mode_ == Mode::kSmc && close_.peer_closed();
  }

  // ---- sending (SMC-D mode) ----
  // errno a send gets now: 0, ENOTCONN (not SMC-D), the pending error, else
  // EPIPE once the connection is shut down for writing, reset or aborted.
  int SendError() const;
  // The peer closed (peer_conn_closed) and nothing was sent since: TCP
  // would accept one more send and get a reset for it. The runtime then
  // returns the whole length and feeds AppSentToClosedPeer instead of
  // copying (SendError() is 0, SendSpace() is 0).
  bool SendDiscards() const;
  uint32_t SendSpace() const;
  CopyPlan PlanSend(size_t want) const;

  // ---- receiving (SMC-D mode) ----
  RecvStatus RecvState() const;
  // Where to copy up to `max` bytes (MSG_PEEK: plan only, no AppConsumed).
  CopyPlan PlanRecv(size_t max) const;
  // MSG_WAITALL: true once a recv of n bytes can complete (or must return
  // short: EOF, error, urgent mark).
  bool WaitAllSatisfied(size_t n) const;
  bool AtUrgentMark() const;  // SIOCATMARK
  // MSG_OOB: 0 and the byte, or EINVAL / EAGAIN.
  int ReadUrgent(bool peek, std::byte* out);

  ConnectionStats Stats() const;
  const ConnectionCounters& counters() const { return counters_; }

  // ---- exec handover (engine/snapshot.cc) ----
  // Everything needed to rebuild this connection elsewhere. Only SMC-D
  // mode has such a state (kFailedPrecondition otherwise: a handshake's
  // half-read CLC bytes and timers do not move).
  Result<ConnectionSnapshot> Snapshot() const;
  // Puts a fresh connection (constructed, no event fed yet) into the
  // snapshot's SMC-D state. kInvalidArgument if the snapshot is impossible
  // (CheckSnapshot), names another role or another device than our params;
  // kFailedPrecondition if this connection already started.
  Status Restore(const ConnectionSnapshot& snapshot);

 private:
  struct Visitor;
  friend struct Visitor;

  void OnHandshakeEvent(const Event& event, TimePoint now, Actions& out);
  void AfterHandshakeStep(Actions& out);
  void OnSmcdEvent(const Event& event, TimePoint now, Actions& out);
  // TCP ended (FIN/RST) during SMC mode, and its Timeout.
  void OnTcpEof(TimePoint now, Actions& out);
  void OnSmcTimeout(const Timeout& t, TimePoint now, Actions& out);
  void OnPeerCdc(std::span<const std::byte> bytes, Actions& out);
  void OnSiblingPublished(const SiblingPublished& e, Actions& out);
  void OnPeerVanished(Actions& out);
  // Applies the peer's new connection-state flags to the close machine.
  // false if the connection was aborted for it.
  bool PeerCloseFlags(bool abort, bool closed, bool done_writing, Actions& out);
  // Dead: nothing the peer (or a sibling) writes matters any more.
  bool Dead() const;
  void OnAppSent(const AppSent& e, Actions& out);
  void OnAppConsumed(const AppConsumed& e, Actions& out);
  // Runs one close event; false if the close machine does not declare it.
  // `what` names the cause in the ReportError (default: from the errno).
  bool ApplyClose(CloseEvent ev, Actions& out, std::string_view what = {});
  void LocalAbort(std::string_view what, Actions& out);
  void InvalidEvent(const Event& event, Actions& out);
  void Publish(Actions& out);
  void MaybeFinish(Actions& out);
  void ReportErrno(int err, std::string_view what, Actions& out);

  const EngineParams params_;
  Entropy* entropy_;
  Mode mode_ = Mode::kHandshake;
  Technology technology_ = Technology::kSmcd;
  std::variant<ClcClient, ClcServer> clc_;
  SmcdLink link_;
  SmcrLink smcr_;
  // SMC-R: the peer's latest CDC if it came before our handshake ended (the
  // SEND is consumed, unlike an SMC-D area that can be read again).
  std::optional<std::array<std::byte, 44>> early_cdc_;
  std::optional<DataPath> data_;
  std::unique_ptr<CdcTransport> transport_;
  CloseMachine close_;
  wire::CdcConnStateFlags local_flags_;  // cumulative flags we publish
  bool published_write_blocked_ = false;
  bool read_shut_ = false;
  // SMC-R: the peer's TCP ended before its close CDC came; until this
  // deadline (kSmcrPeerCloseWait) the CDC decides how it closed.
  std::optional<TimePoint> peer_close_wait_;
  bool finished_ = false;    // buffers released, TCP closed
  int error_ = 0;            // ECONNRESET, ECONNABORTED or EPIPE: dead
  bool error_seen_ = false;  // the app got error_ once (AppErrorReported)
  ConnectionCounters counters_;
};

}  // namespace usmc::engine

#endif  // USMC_ENGINE_CONNECTION_H_
