#include "engine/clc_client.h"

#include <cerrno>
#include <string>

#include "wire/bufsize.h"
#include "wire/reason.h"

namespace usmc::engine {
namespace {

using S = ClcClientState;
using E = HandshakeEvent;

constexpr ClcClientTransition kTable[] = {
    {S::kInit, E::kStart, {S::kAwaitAccept, S::kFallback}, 2},
    {S::kInit, E::kAppClose, {S::kFailed}, 1},
    {S::kAwaitAccept, E::kClcMessage, {S::kRegisteringDmb, S::kFallback}, 2},
    {S::kAwaitAccept, E::kClcError, {S::kFallback}, 1},
    {S::kAwaitAccept, E::kTimeout, {S::kFallback}, 1},
    {S::kAwaitAccept, E::kTcpEof, {S::kFallback}, 1},
    {S::kAwaitAccept, E::kAppClose, {S::kFailed}, 1},
    {S::kRegisteringDmb,
     E::kDmbRegistered,
     {S::kAttachingPeerDmb, S::kFallback},
     2},
    {S::kRegisteringDmb, E::kDmbRegisterFailed, {S::kFallback}, 1},
    {S::kRegisteringDmb, E::kTcpEof, {S::kFallback}, 1},
    {S::kRegisteringDmb, E::kAppClose, {S::kFailed}, 1},
    {S::kAttachingPeerDmb, E::kPeerDmbAttached, {S::kActive}, 1},
    {S::kAttachingPeerDmb, E::kPeerDmbAttachFailed, {S::kFallback}, 1},
    {S::kAttachingPeerDmb, E::kTcpEof, {S::kFallback}, 1},
    {S::kAttachingPeerDmb, E::kAppClose, {S::kFailed}, 1},
};

}  // namespace

std::span<const ClcClientTransition> ClcClientTransitions() { return kTable; }

bool ClcClient::Check(HandshakeEvent e, Actions& out) {
  if (Declared<S, E>(kTable, state_, e)) return true;
  InvalidEvent(e, out);
  return false;
}

void ClcClient::Move(HandshakeEvent e, ClcClientState next, Actions& out) {
  if (!Allowed<S, E>(kTable, state_, e, next)) {
    InvalidEvent(e, out);
    return;
  }
  state_ = next;
}

// The one error path for events the table does not declare: report, and
// if the handshake was still running, decline (INTERR) and stay TCP.
void ClcClient::OnForeignEvent(std::string_view name, Actions& out) {
  InvalidEventNamed(name, out);
}

void ClcClient::InvalidEvent(HandshakeEvent e, Actions& out) {
  InvalidEventNamed(ToString(e), out);
}

void ClcClient::InvalidEventNamed(std::string_view name, Actions& out) {
  out.push_back(ReportError{EINVAL, "invalid event " + std::string(name) +
                                        " in CLC client state " +
                                        std::string(ToString(state_))});
  if (Terminal()) return;
  // Confirm goes out only once the handover succeeded: until then a decline
  // is still possible.
  core_.FallBack(wire::kReasonIntErr, 0, /*send_decline=*/true, out);
  state_ = S::kFallback;
}

void ClcClient::FallBack(HandshakeEvent e, uint32_t local, uint32_t peer,
                         bool send_decline, Actions& out) {
  core_.FallBack(local, peer, send_decline, out);
  Move(e, S::kFallback, out);
}

void ClcClient::OnStart(TimePoint now, Actions& out) {
  if (!Check(E::kStart, out)) return;
  if (!core_.params().smcd_enabled) {
    // No usable device: tell the server, as Linux's client does.
    FallBack(E::kStart, core_.params().no_smcd_reason, 0, true, out);
    return;
  }
  out.push_back(EncodeForTcp(BuildProposal(core_.params())));
  core_.ArmTimer(now, out);
  Move(E::kStart, S::kAwaitAccept, out);
}

void ClcClient::OnTcpBytes(std::span<const std::byte> bytes, TimePoint,
                           Actions& out) {
  if (state_ != S::kAwaitAccept) return;  // not ours to consume
  switch (core_.Feed(bytes, out)) {
    case wire::ClcFrameDecoder::Status::kNeedMore:
      return;
    case wire::ClcFrameDecoder::Status::kError:
      if (!Check(E::kClcError, out)) return;
      FallBack(E::kClcError, ReasonForBadClc(core_.decode_error()), 0,
               /*send_decline=*/core_.peer_spoke_clc(), out);
      return;
    case wire::ClcFrameDecoder::Status::kFrame:
      if (!Check(E::kClcMessage, out)) return;
      // The server's Decline already behind its Accept: its timer ran out
      // while our app was away; it is TCP now and takes no Confirm.
      if (std::holds_alternative<wire::ClcSmcdAccept>(core_.message())) {
        if (std::optional<uint32_t> diag =
                core_.DeclineBehindFrame(bytes, out)) {
          FallBack(E::kClcMessage, wire::kReasonPeerDecl, *diag,
                   /*send_decline=*/false, out);
          return;
        }
      }
      OnMessage(core_.message(), out);
      return;
  }
}

void ClcClient::OnMessage(const wire::ClcMessage& m, Actions& out) {
  if (const auto* d = std::get_if<wire::ClcDecline>(&m)) {
    FallBack(E::kClcMessage, wire::kReasonPeerDecl, d->peer_diagnosis,
             /*send_decline=*/false, out);
    return;
  }
  if (std::holds_alternative<wire::ClcSmcrAccept>(m)) {
    // We offered SMC-D only.
    FallBack(E::kClcMessage, wire::kReasonModeUnsupp, 0, true, out);
    return;
  }
  const auto* a = std::get_if<wire::ClcSmcdAccept>(&m);
  if (a == nullptr || a->type != wire::ClcType::kAccept) {
    FallBack(E::kClcMessage, wire::kReasonCnfErr, 0, true, out);
    return;
  }
  if (uint32_t reason = CheckSmcdAccept(*a, core_.params()); reason != 0) {
    FallBack(E::kClcMessage, reason, 0, true, out);
    return;
  }
  core_.CancelTimer(out);
  core_.link.local_device = core_.params().device;
  core_.link.peer_device = SmcdDevice{a->gid, a->gid_ext, a->chid};
  core_.link.peer_dmb_token = a->dmb_token;
  core_.link.peer_dmb_size =
      static_cast<uint32_t>(wire::UncompressBufSize(a->dmbe_size));
  core_.link.link_id = a->link_id;
  core_.link.eid = a->eid;
  out.push_back(RegisterRecvBuffer{SmcdDmbSizeFor(core_.params().dmb_size)});
  Move(E::kClcMessage, S::kRegisteringDmb, out);
}

void ClcClient::OnDmbRegistered(const RecvBufferRegistered& e, Actions& out) {
  if (!Check(E::kDmbRegistered, out)) return;
  core_.own_registered = true;
  core_.link.local_dmb_token = e.token;
  core_.link.local_dmb_size = e.size;
  if (!ValidSmcdDmbSize(e.size)) {
    FallBack(E::kDmbRegistered, wire::kReasonErrRegBuf, 0, true, out);
    return;
  }
  // The DMB handover comes before Confirm: the server serves it while it
  // waits for Confirm, so a handover that fails (the peer process cannot be
  // verified) is still a Decline and plain TCP, not an abort.
  out.push_back(
      AttachPeerBuffer{core_.link.peer_dmb_token, core_.link.peer_dmb_size});
  Move(E::kDmbRegistered, S::kAttachingPeerDmb, out);
}

void ClcClient::OnDmbRegisterFailed(const RecvBufferFailed& e, Actions& out) {
  if (!Check(E::kDmbRegisterFailed, out)) return;
  FallBack(E::kDmbRegisterFailed, e.reason ? e.reason : wire::kReasonMem, 0,
           true, out);
}

void ClcClient::OnPeerDmbAttached(const PeerBufferAttached&, Actions& out) {
  if (!Check(E::kPeerDmbAttached, out)) return;
  core_.peer_attached = true;
  // Committed from here on, as in Linux: Confirm is the client's last word.
  out.push_back(EncodeForTcp(BuildSmcdAccept(
      wire::ClcType::kConfirm, core_.params(), core_.link.local_dmb_token,
      core_.link.local_dmb_size, core_.link.link_id)));
  out.push_back(HandshakeDone{Technology::kSmcd, core_.link});
  Move(E::kPeerDmbAttached, S::kActive, out);
}

void ClcClient::OnPeerDmbAttachFailed(const PeerBufferAttachFailed& e,
                                      Actions& out) {
  if (!Check(E::kPeerDmbAttachFailed, out)) return;
  FallBack(E::kPeerDmbAttachFailed, e.reason ? e.reason : wire::kReasonErrRtok,
           0, true, out);
}

void ClcClient::OnTimeout(TimePoint now, Actions& out) {
  if (!core_.TimeoutDue(now)) return;  // stale timer: nothing happened
  if (!Check(E::kTimeout, out)) return;
  FallBack(E::kTimeout, wire::kReasonTimeoutCl, 0, true, out);
}

void ClcClient::OnTcpEof(Actions& out) {
  if (!Check(E::kTcpEof, out)) return;
  // The app reads the EOF itself on the TCP socket.
  FallBack(E::kTcpEof, wire::kReasonCnfErr, 0, false, out);
}

void ClcClient::OnAppClose(Actions& out) {
  if (!Check(E::kAppClose, out)) return;
  core_.Fail(0, "", /*abort_tcp=*/false, out);
  out.push_back(CloseTcp{});
  Move(E::kAppClose, S::kFailed, out);
}

std::string_view ToString(ClcClientState s) {
  switch (s) {
    case S::kInit:
      return "INIT";
    case S::kAwaitAccept:
      return "AWAIT_ACCEPT";
    case S::kRegisteringDmb:
      return "REGISTERING_DMB";
    case S::kAttachingPeerDmb:
      return "ATTACHING_PEER_DMB";
    case S::kActive:
      return "ACTIVE";
    case S::kFallback:
      return "FALLBACK";
    case S::kFailed:
      return "FAILED";
  }
  return "UNKNOWN";
}

std::ostream& operator<<(std::ostream& os, ClcClientState s) {
  return os << ToString(s);
}

}  // namespace usmc::engine
