// engine/events.h: everything that can happen to a connection, as data.
//
// The runtime turns socket readiness, device notifications, app calls and
// timer expiry into one of these structs and calls
// Connection::OnEvent(event, now). Events are small and never own memory
// (TcpBytes borrows the runtime's buffer for the duration of the call).
//
//   Actions a = conn.OnEvent(TcpBytes{received}, now);
//   a = conn.OnEvent(AppSent{.len = n}, now);
#ifndef USMC_ENGINE_EVENTS_H_
#define USMC_ENGINE_EVENTS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <span>
#include <string_view>
#include <variant>

#include "wire/clc.h"

namespace usmc::engine {

// Client: send the Proposal. Server: start waiting for it (arms the timer).
struct Start {};
// Bytes read (or peeked) from the TCP socket and not yet consumed. The
// engine answers TcpConsumed{n}: only the first n belong to CLC.
struct TcpBytes {
  std::span<const std::byte> bytes;
};
// The TCP connection reached EOF or was reset.
struct TcpEof {};
// Answers to RegisterRecvBuffer / AttachPeerBuffer, fed before the next other
// event.
struct RecvBufferRegistered {
  uint64_t token = 0;
  uint32_t size = 0;  // whole DMB, CDC area included
};
struct RecvBufferFailed {
  uint32_t reason = 0;  // e.g. wire::kReasonMem, kReasonMaxDmb
};
// token/size: what was attached, when the runtime learned them from the
// peer itself (server, handover before Confirm); 0 means "as requested".
struct PeerBufferAttached {
  uint64_t token = 0;
  uint32_t size = 0;
};
struct PeerBufferAttachFailed {
  uint32_t reason = 0;
};
// The 32-byte CDC area of OUR DMB changed (the peer published a CDC).
struct CdcArrived {
  std::array<std::byte, 32> area{};
};
// Answer to CaptureUrgentByte.
struct UrgentByteCaptured {
  std::byte value{0};
};
// The app's bytes were copied per Connection::PlanSend. wanted_more: the
// app had more than fitted. urgent: the last byte is MSG_OOB data.
struct AppSent {
  uint32_t len = 0;
  bool wanted_more = false;
  bool urgent = false;
};
// The app consumed len bytes per Connection::PlanRecv (not for MSG_PEEK).
// `confirm`: publish the consumer cursor now, whatever the update rule
// says: another process shares the connection (fork) and may read next; it
// must start after these bytes, even if this process dies without a word.
struct AppConsumed {
  uint32_t len = 0;
  bool confirm = false;
};
struct AppShutdown {
  bool read = false;
  bool write = true;
};
struct AppClose {};
struct AppAbort {};  // close with SO_LINGER 0
// The deadline of the last ArmTimer passed. cut_short: the runtime stops
// waiting before it (the app closed a client whose early data must go out
// over TCP now); it acts as a due timer, and like one is ignored when no
// timer runs.
struct Timeout {
  bool cut_short = false;
};
// The device lost the peer or our DMB (local abnormal termination).
struct DeviceFailed {};
// Another process shares this connection (fork; or the image before exec)
// and published a CDC to the peer since we last did: `published` is the CDC
// area now in the peer's receive buffer (our side as the peer knows it),
// `peer_area` the one in ours (the peer's latest CDC; all zero if none).
// The engine takes over the sibling's progress; an impossible value aborts
// the connection as a hostile CDC does (the peer can write there too).
struct SiblingPublished {
  std::array<std::byte, 32> published{};
  std::array<std::byte, 32> peer_area{};
};
// The peer's process is gone (its device hung up, its TCP socket closed
// with nothing on it), maybe without closing the connection first. As TCP
// when a process dies: nothing if its last CDC closed or aborted, a reset
// if data of ours is unread, else an orderly close.
struct PeerVanished {};
// The app sent after the peer closed (Connection::SendDiscards): as TCP
// accepts those bytes and the peer answers with a reset, the bytes are
// dropped and the connection now has the error EPIPE.
struct AppSentToClosedPeer {};
// The app got the connection's error (Connection::PendingError) from a send
// or recv: like TCP's socket error, it is reported once; later sends fail
// with EPIPE and recvs see EOF.
struct AppErrorReported {};

// ---- SMC-R (answers to the Smcr* actions; docs/engine.md) ----

// Answer to SmcrJoinLgr: the connection is in a link group. first_contact:
// a new group (its link still to confirm); token: our alert token in it;
// system_id, qpn, psn: the group's ID and its link's QP (ours).
// rmb_rkey/rmb_iova: our RMB's memory region, registered on the group's
// protection domain now that the group is known (SMCR.md §4: a PD per
// group); both 0: the one in EngineParams::smcr stands (tests).
struct SmcrLgrJoined {
  bool first_contact = false;
  uint32_t token = 0;
  wire::ClcPeerId system_id{};
  uint32_t qpn = 0;
  uint32_t psn = 0;
  uint32_t rmb_rkey = 0;
  uint64_t rmb_iova = 0;
};
// Answer to SmcrJoinLgr: no group. SYNCERR (client: a reuse Accept names no
// group of ours), MAXCONNERR (group full), ERR_RDYLNK (no QP)...
struct SmcrLgrJoinFailed {
  uint32_t reason = 0;
};
// The link group's first CONFIRM_LINK exchange ended (LgrLinkUp, or
// LgrFirstContactFailed{clc_reason}: TIMEOUT_CL, RMBE_EC).
struct SmcrLinkUp {};
struct SmcrLinkFailed {
  uint32_t clc_reason = 0;
};
// Answer to SmcrConfirmRkey (LgrRkeyConfirmed).
struct SmcrRkeyConfirmed {
  bool ok = false;
};
// A 44-byte SEND on the link that carried a CDC (byte 0 = 0xFE) for this
// connection's token; the data it announces is already in our RMB (RC
// order).
struct SmcrCdcReceived {
  std::array<std::byte, 44> bytes{};
};
// One of our CDC SENDs completed (its send slot is free again).
struct SmcrSendCompleted {};

using Event = std::variant<
    Start, TcpBytes, TcpEof, RecvBufferRegistered, RecvBufferFailed,
    PeerBufferAttached, PeerBufferAttachFailed, CdcArrived, UrgentByteCaptured,
    AppSent, AppConsumed, AppShutdown, AppClose, AppAbort, Timeout,
    DeviceFailed, AppSentToClosedPeer, AppErrorReported, SiblingPublished,
    PeerVanished, SmcrLgrJoined, SmcrLgrJoinFailed, SmcrLinkUp, SmcrLinkFailed,
    SmcrRkeyConfirmed, SmcrCdcReceived, SmcrSendCompleted>;

// "TcpBytes", ... (the struct name).
std::string_view EventName(const Event& e);
std::ostream& operator<<(std::ostream& os, const Event& e);

}  // namespace usmc::engine

#endif  // USMC_ENGINE_EVENTS_H_
