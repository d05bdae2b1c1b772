// engine/actions.h: what the engine asks the runtime to do, as data.
//
// Connection::OnEvent returns an Actions list; the runtime carries out each
// action in order (docs/engine.md says how). Actions are plain structs that
// tests compare field by field. The list has a fixed inline capacity, so the
// steady-state data path never allocates; only SendTcp (handshake) and
// ReportError own heap memory.
//
//   for (const Action& a : conn.OnEvent(AppSent{.len = n}, now)) {
//     if (auto* p = std::get_if<PostCdc>(&a)) WriteCdcArea(p->area);
//     ...
//   }
//
// The runtime must not call back into the engine while it executes an
// action list, except to feed the answer events the action asks for
// (RecvBufferRegistered for RegisterRecvBuffer, ...), after the list is done.
#ifndef USMC_ENGINE_ACTIONS_H_
#define USMC_ENGINE_ACTIONS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/common.h"
#include "engine/params.h"
#include "wire/clc.h"

namespace usmc::engine {

// Write these CLC message bytes to the TCP socket (all of them, in order).
struct SendTcp {
  std::vector<std::byte> bytes;
  wire::ClcType type = wire::ClcType::kDecline;  // for logs and tests
};
// The first `len` bytes of the last TcpBytes were CLC: drop them. The rest
// stays queued (after a Fallback it is the app's data).
struct TcpConsumed {
  size_t len = 0;
};
// Register a DMB of `size` bytes (CDC area included, zeroed) and answer
// RecvBufferRegistered or RecvBufferFailed.
struct RegisterRecvBuffer {
  uint32_t size = 0;
};
// Map the peer's DMB for writing and answer PeerBufferAttached or
// PeerBufferAttachFailed.
struct AttachPeerBuffer {
  uint64_t token = 0;
  uint32_t size = 0;
};
// Store these 32 bytes at offset 0 of the peer's DMB, after every data
// write issued before it is visible (release order).
struct PostCdc {
  std::array<std::byte, 32> area{};
};
// The peer may need waking (new data, space freed, flags): the device
// signals it if it said it is about to sleep.
struct SignalPeer {};
// Copy the byte at this offset of OUR DMB now and answer
// UrgentByteCaptured before carrying out the next action.
struct CaptureUrgentByte {
  uint32_t buffer_offset = 0;
};
// Readiness may have changed: re-check the queries and wake waiters.
struct NotifyApp {
  bool readable = false;
  bool writable = false;
};
// The handshake chose SMC; app bytes go through the receive buffers from
// now on.
struct HandshakeDone {
  Technology technology = Technology::kSmcd;
  SmcdLink link;  // SMC-D's negotiated parameters
  SmcrLink smcr;  // SMC-R's
};
// The connection stays TCP. local_reason: our reason code (PEERDECL when the
// peer declined); peer_reason: the peer's diagnosis (0 if we declined).
// declined: we sent a Decline. The peer may have sent one CLC message of
// its own before it read ours (its answer to our last message, or its own
// Decline when its timer ran out at the same time): that message is still
// to come at the head of the TCP stream, and is not the app's.
struct Fallback {
  uint32_t local_reason = 0;
  uint32_t peer_reason = 0;
  bool declined = false;
};
// Deliver Timeout once `deadline` has passed (replaces an earlier timer).
struct ArmTimer {
  TimePoint deadline{};
};
struct CancelTimer {};
// The app should now see this errno (ECONNRESET, ECONNABORTED, EINVAL...).
struct ReportError {
  int err = 0;
  std::string what;
};
// Reset the TCP connection (abortive close).
struct AbortTcp {};
// Unregister our DMB (if own_registered) and detach the peer's (if
// peer_attached).
struct ReleaseBuffers {
  bool own_registered = false;
  uint64_t own_token = 0;
  bool peer_attached = false;
  uint64_t peer_dmb_token = 0;
};
// The SMC connection is CLOSED and released: close the TCP socket.
struct CloseTcp {};

// ---- SMC-R (docs/engine.md, "SMC-R") ----

// Put this connection into a link group (the runtime's registry drives
// engine/lgr) and answer SmcrLgrJoined or SmcrLgrJoinFailed.
// Client, first_contact (the Accept said so): a new group with the peer of
// `link` (QP created, RESET->INIT->RTR with the peer's QPN/PSN/MTU,
// receives posted: the Confirm goes out next). Client, reuse: the group
// whose peer has link.peer_system_id, link.peer_qpn and link.peer_gid, else
// SYNCERR. Server: one of ours with room for (peer_system_id, peer_gid), or
// a new one (QP created); first_contact in the answer says which.
// In every case: LgrConnOpen (the token), and on the client
// LgrAddPeerRtoken{peer_rkey, peer_vaddr}.
struct SmcrJoinLgr {
  bool first_contact = false;
  SmcrLink link;
};
// First contact: the link may be confirmed now (LgrQpReady). Client: its
// Confirm is out. Server: the Confirm arrived: QP RTR/RTS with the
// client's QPN/PSN/MTU, LgrAddPeerRtoken, then LgrQpReady (CONFIRM_LINK).
// Answer SmcrLinkUp or SmcrLinkFailed.
struct SmcrStartLink {
  SmcrLink link;
};
// Reuse: announce our RMB (LgrConfirmRkey) and answer SmcrRkeyConfirmed.
struct SmcrConfirmRkey {
  uint32_t rkey = 0;
  uint64_t vaddr = 0;
};
// RDMA WRITE `len` bytes of our sndbuf (the mirror of the peer's RMB) at
// `offset` to the peer's RMB at the same offset; unsignaled, posted before
// the SEND that follows (RC order: the peer sees the bytes first).
struct RdmaWrite {
  uint32_t offset = 0;
  uint32_t len = 0;
};
// Post this 44-byte CDC as a SEND (signaled, solicited, inline) on the link;
// its completion is fed back as SmcrSendCompleted.
struct PostSend {
  std::array<std::byte, 44> bytes{};
};
// The connection leaves its link group: LgrConnClosed{token}, and (if
// announced) LgrDeleteRkey{rkey}; deregister the RMB's memory region.
struct SmcrLeaveLgr {
  uint32_t token = 0;
  uint32_t rkey = 0;
  bool announced = false;
  // The peer declined with the out-of-sync bit: its view of the group we
  // offered for reuse differs from ours, so the group ends with all its
  // connections, as the kernel does (sync_err; SMCR.md §3.1).
  bool end_group = false;
};

using Action =
    std::variant<SendTcp, TcpConsumed, RegisterRecvBuffer, AttachPeerBuffer,
                 PostCdc, SignalPeer, CaptureUrgentByte, NotifyApp,
                 HandshakeDone, Fallback, ArmTimer, CancelTimer, ReportError,
                 AbortTcp, ReleaseBuffers, CloseTcp, SmcrJoinLgr, SmcrStartLink,
                 SmcrConfirmRkey, RdmaWrite, PostSend, SmcrLeaveLgr>;

std::string_view ActionName(const Action& a);
std::ostream& operator<<(std::ostream& os, const Action& a);

// A list with inline storage. The engine emits at most kCapacity actions
// per event by construction; push_back past it is a bug and is counted.
class Actions {
 public:
  static constexpr size_t kCapacity = 10;

  void push_back(Action a) {
    if (size_ == kCapacity) {
      ++dropped_;
      return;
    }
    items_[size_++] = std::move(a);
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t dropped() const { return dropped_; }
  const Action& operator[](size_t i) const { return items_[i]; }
  const Action* begin() const { return items_.data(); }
  const Action* end() const { return items_.data() + size_; }

 private:
  std::array<Action, kCapacity> items_{};
  size_t size_ = 0;
  size_t dropped_ = 0;
};

std::ostream& operator<<(std::ostream& os, const Actions& a);

}  // namespace usmc::engine

#endif  // USMC_ENGINE_ACTIONS_H_
