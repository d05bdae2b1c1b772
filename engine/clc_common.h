// engine/clc_common.h: what the CLC client and server machines share.
//
// Builders for the usmc SMC-Dv2 messages (Proposal with the SMC-Dv2
// extension and a two-entry emulated-ISM GID list, Accept/Confirm, Decline),
// the checks that turn a received message into "go on" or a reason code,
// and HandshakeCore, the state both machines keep (decoder, deadline,
// buffers) with the one fallback path.
//
//   wire::ClcProposal p = BuildProposal(params);
//   uint32_t reason = CheckProposal(p, params);  // 0: SMC-Dv2 possible
#ifndef USMC_ENGINE_CLC_COMMON_H_
#define USMC_ENGINE_CLC_COMMON_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <span>
#include <string_view>

#include "engine/actions.h"
#include "engine/common.h"
#include "engine/events.h"
#include "engine/params.h"
#include "wire/clc.h"
#include "wire/reason.h"

namespace usmc::engine {

// usmc's reason when the peer breaks the CLC protocol (garbage bytes, a
// message of the wrong type, TCP EOF mid-handshake): the RFC has no code for
// it, so usmc uses CNFERR ("configuration error"); a bad version gives
// VERSMISMAT. The CLC timeout uses TIMEOUT_CL (docs/engine.md).
uint32_t ReasonForBadClc(const wire::WireError& e);

// The events the two handshake machines declare transitions for.
enum class HandshakeEvent : uint8_t {
  kStart,
  kClcMessage,  // a complete, valid CLC message
  kClcError,    // bytes that are not a valid CLC message
  kDmbRegistered,
  kDmbRegisterFailed,
  kPeerDmbAttached,
  kPeerDmbAttachFailed,
  kTimeout,
  kTcpEof,
  kAppClose,  // the app closed or aborted during the handshake
  // SMC-R (answers to the Smcr* actions):
  kLgrJoined,
  kLgrJoinFailed,
  kRkeyConfirmed,
  kLinkUp,
  kLinkFailed,
};
std::string_view ToString(HandshakeEvent e);

// Where a handshake machine ended up.
enum class HandshakeOutcome : uint8_t {
  kRunning,
  kSmcd,
  kSmcr,
  kFallback,
  kFailed
};
std::string_view ToString(HandshakeOutcome o);
std::ostream& operator<<(std::ostream& os, HandshakeOutcome o);
std::ostream& operator<<(std::ostream& os, HandshakeEvent e);

wire::ClcProposal BuildProposal(const EngineParams& params);
// An SMC-D v2 Accept (type kAccept) or Confirm (kConfirm), first contact.
wire::ClcSmcdAccept BuildSmcdAccept(wire::ClcType type,
                                    const EngineParams& params,
                                    uint64_t dmb_token, uint32_t dmb_size,
                                    uint32_t link_id);
wire::ClcDecline BuildDecline(uint32_t reason);

// Server: 0 if the Proposal lets us pick SMC-Dv2 on our device, else the
// Decline reason (VERSMISMAT, NOV2EXT, NOV2DEXT, NOSMCDDEV, NOUEID,
// NOSMCD2DEV).
uint32_t CheckProposal(const wire::ClcProposal& p, const EngineParams& params);
// Client (an Accept) and server (a Confirm): 0 if it names SMC-Dv2 on our
// device, else the reason (VERSMISMAT, NOSMCD2DEV, NOUEID, CNFERR).
uint32_t CheckSmcdAccept(const wire::ClcSmcdAccept& a,
                         const EngineParams& params);

// A SendTcp action with the encoded message.
SendTcp EncodeForTcp(const wire::ClcMessage& m);

// State both handshake machines keep, and their shared moves.
class HandshakeCore {
 public:
  HandshakeCore(const EngineParams& params, Entropy* entropy)
      : params_(params), entropy_(entropy) {}

  // Frames the TCP bytes with wire::PeekClcFrame and decodes a whole
  // message; consumed bytes are reported with TcpConsumed. Returns kFrame
  // (message()), kNeedMore, or kError (decode_error()).
  wire::ClcFrameDecoder::Status Feed(std::span<const std::byte> bytes,
                                     Actions& out);
  const wire::ClcMessage& message() const { return message_; }
  const wire::WireError& decode_error() const { return decode_error_; }
  // After Feed returned kFrame for `bytes`: if a whole Decline follows that
  // message in `bytes`, consumes it too and returns its peer diagnosis.
  std::optional<uint32_t> DeclineBehindFrame(std::span<const std::byte> bytes,
                                             Actions& out);
  // False when the peer's first bytes were not a CLC header at all: it
  // echoed the TCP option but speaks no CLC, so a Decline would only land
  // in its application's stream.
  bool peer_spoke_clc() const { return peer_spoke_clc_; }

  void ArmTimer(TimePoint now, Actions& out);
  void CancelTimer(Actions& out);
  std::optional<TimePoint> deadline() const { return deadline_; }
  // True if a Timeout event at `now` is due (not stale).
  bool TimeoutDue(TimePoint now) const {
    return deadline_.has_value() && now >= *deadline_;
  }

  // The one fallback path: cancel the timer, send a Decline (if
  // send_decline), release buffers, emit Fallback. Idempotent.
  // out_of_sync: the Decline carries the SYNCERR bit (header 0x08).
  void FallBack(uint32_t local_reason, uint32_t peer_reason, bool send_decline,
                Actions& out, bool out_of_sync = false);
  // Handshake abandoned without fallback (app close, server attach
  // failure): release, then AbortTcp/ReportError as asked. Idempotent.
  void Fail(int err, std::string_view what, bool abort_tcp, Actions& out);
  void ReleaseBuffers(Actions& out);
  bool finished() const { return finished_; }

  const EngineParams& params() const { return params_; }

  // SMC-R, shared by both roles. The registry's answer to SmcrJoinLgr: the
  // group's identity, our token and (when it registered one) our RMB.
  void TakeLgrJoined(const SmcrLgrJoined& e);
  // The first contact's link is up: the HandshakeDone to emit (the
  // first-contact RMB counts as confirmed).
  HandshakeDone SmcrFirstContactDone();
  // The reason a failed first contact declines with (TIMEOUT_CL unless the
  // group said otherwise: smcr_{clnt,serv}_conf_first_link).
  static uint32_t LinkFailedReason(const SmcrLinkFailed& e) {
    return e.clc_reason != 0 ? e.clc_reason : wire::kReasonTimeoutCl;
  }

  uint32_t NewLinkId() { return static_cast<uint32_t>(entropy_->Random64()); }

  SmcdLink link;  // filled in as the handshake goes
  bool own_registered = false;
  bool peer_attached = false;
  // SMC-R: what is negotiated so far, and whether the connection holds a
  // token in a link group (left again on fallback) and announced its RMB.
  SmcrLink smcr;
  bool lgr_joined = false;
  bool rkey_announced = false;
  // The peer's Decline had the out-of-sync bit (SmcrLeaveLgr::end_group).
  bool peer_out_of_sync = false;
  uint32_t local_reason = 0;
  uint32_t peer_reason = 0;

 private:
  const EngineParams params_;
  Entropy* entropy_;
  wire::ClcMessage message_;
  wire::WireError decode_error_{wire::WireErrc::kTruncated, "clc"};
  size_t frame_len_ = 0;  // bytes of the last whole message Feed() framed
  bool peer_spoke_clc_ = true;
  std::optional<TimePoint> deadline_;
  bool finished_ = false;
};

// True if a DMB of this size can be announced in CLC (16 KiB .. 1 MiB,
// power of two).
bool ValidSmcdDmbSize(uint32_t size);
// The size to register for the wanted size (rounded up, capped at 1 MiB).
uint32_t SmcdDmbSizeFor(uint32_t wanted);

}  // namespace usmc::engine

#endif  // USMC_ENGINE_CLC_COMMON_H_
