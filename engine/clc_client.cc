#include "engine/clc_client.h"

#include <algorithm>
#include <cerrno>
#include <string>

#include "engine/clc_smcr.h"
#include "wire/bufsize.h"
#include "wire/reason.h"

namespace usmc::engine {
namespace {

using S = ClcClientState;
using E = HandshakeEvent;

constexpr ClcClientTransition kTable[] = {
    {S::kInit, E::kStart, {S::kAwaitAccept, S::kFallback}, 2},
    {S::kInit, E::kAppClose, {S::kFailed}, 1},
    {S::kAwaitAccept,
     E::kClcMessage,
     {S::kRegisteringDmb, S::kFallback, S::kJoiningLgr},
     3},
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
    {S::kJoiningLgr,
     E::kLgrJoined,
     {S::kConfirmingRkey, S::kAwaitLink, S::kFallback},
     3},
    {S::kJoiningLgr, E::kLgrJoinFailed, {S::kFallback}, 1},
    {S::kJoiningLgr, E::kTcpEof, {S::kFallback}, 1},
    {S::kJoiningLgr, E::kAppClose, {S::kFailed}, 1},
    {S::kConfirmingRkey, E::kRkeyConfirmed, {S::kActive, S::kFallback}, 2},
    {S::kConfirmingRkey, E::kTcpEof, {S::kFallback}, 1},
    {S::kConfirmingRkey, E::kAppClose, {S::kFailed}, 1},
    {S::kAwaitLink, E::kLinkUp, {S::kActive}, 1},
    {S::kAwaitLink, E::kLinkFailed, {S::kFallback}, 1},
    // A Decline from the server while the link is confirmed (its own
    // CONFIRM_LINK wait ran out), or garbage: TCP.
    {S::kAwaitLink, E::kClcMessage, {S::kFallback}, 1},
    {S::kAwaitLink, E::kClcError, {S::kFallback}, 1},
    {S::kAwaitLink, E::kTcpEof, {S::kFallback}, 1},
    {S::kAwaitLink, E::kAppClose, {S::kFailed}, 1},
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
  if (!core_.params().smcd_enabled && !core_.params().smcr_enabled) {
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
  // Not ours to consume otherwise.
  if (state_ != S::kAwaitAccept && state_ != S::kAwaitLink) return;
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
      if (state_ == S::kAwaitLink) {
        // Only a Decline may come now (the server gave up on the link).
        const auto* d = std::get_if<wire::ClcDecline>(&core_.message());
        FallBack(E::kClcMessage,
                 d ? wire::kReasonPeerDecl : wire::kReasonCnfErr,
                 d ? d->peer_diagnosis : 0, /*send_decline=*/d == nullptr, out);
        return;
      }
      // The server's Decline already behind its Accept: its timer ran out
      // while our app was away; it is TCP now and takes no Confirm.
      if (std::holds_alternative<wire::ClcSmcdAccept>(core_.message()) ||
          std::holds_alternative<wire::ClcSmcrAccept>(core_.message())) {
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
  if (const auto* r = std::get_if<wire::ClcSmcrAccept>(&m)) {
    if (!core_.params().smcr_enabled || r->type != wire::ClcType::kAccept) {
      // We offered SMC-D only (or it is not an Accept).
      FallBack(E::kClcMessage,
               core_.params().smcr_enabled ? wire::kReasonCnfErr
                                           : wire::kReasonModeUnsupp,
               0, true, out);
      return;
    }
    OnSmcrAccept(*r, out);
    return;
  }
  if (!core_.params().smcd_enabled) {
    // We offered SMC-R only.
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

// ---- SMC-R ----

void ClcClient::OnSmcrAccept(const wire::ClcSmcrAccept& a, Actions& out) {
  if (uint32_t reason = CheckSmcrAccept(a, core_.params()); reason != 0) {
    FallBack(E::kClcMessage, reason, 0, true, out);
    return;
  }
  core_.CancelTimer(out);
  smcr_ = true;
  SmcrLink& l = core_.smcr;
  l.first_contact = a.first_contact;
  TakePeerAccept(a, l);
  const EngineParams& p = core_.params();
  l.local_gid = p.smcr.gid;
  l.local_mac = p.smcr.mac;
  l.local_rkey = p.smcr.rmb_rkey;
  l.local_iova = p.smcr.rmb_iova;
  l.local_rmb_size = p.smcr.rmb_size;
  l.mtu = std::min(a.qp_mtu, p.smcr.mtu);
  if (a.first_contact) {
    l.max_conns = a.fce.max_conns;
    l.max_links = a.fce.max_links;
  }
  // First contact: always a new group (smc_conn_create, no lookup). Reuse:
  // the registry must know the group (system ID, QPN, GID) or SYNCERR.
  out.push_back(SmcrJoinLgr{a.first_contact, l});
  Move(E::kClcMessage, S::kJoiningLgr, out);
}

void ClcClient::OnLgrJoined(const SmcrLgrJoined& e, Actions& out) {
  if (!Check(E::kLgrJoined, out)) return;
  SmcrLink& l = core_.smcr;
  core_.TakeLgrJoined(e);
  if (e.first_contact != l.first_contact || e.token == 0 ||
      !ValidSmcrRmbSize(l.local_rmb_size)) {
    // The registry broke the contract (or our RMB cannot be announced).
    FallBack(E::kLgrJoined,
             e.token == 0 ? wire::kReasonIntErr : wire::kReasonErrRegBuf, 0,
             true, out);
    return;
  }
  if (l.first_contact) {
    // The QP is RTR with receives posted: Confirm, then CONFIRM_LINK.
    SendSmcrConfirm(out);
    out.push_back(SmcrStartLink{l});
    Move(E::kLgrJoined, S::kAwaitLink, out);
    return;
  }
  // af_smc.c:smcr_lgr_reg_rmbs: a reuse RMB is announced before Confirm.
  core_.rkey_announced = true;
  out.push_back(SmcrConfirmRkey{l.local_rkey, l.local_iova});
  Move(E::kLgrJoined, S::kConfirmingRkey, out);
}

void ClcClient::OnLgrJoinFailed(const SmcrLgrJoinFailed& e, Actions& out) {
  if (!Check(E::kLgrJoinFailed, out)) return;
  const uint32_t reason = e.reason != 0 ? e.reason : wire::kReasonIntErr;
  // SYNCERR: the server thinks we share a group we do not know: the
  // Decline says "out of sync" so it ends that group (smc_clc_wait_msg).
  core_.FallBack(reason, 0, true, out,
                 /*out_of_sync=*/reason == wire::kReasonSyncErr);
  Move(E::kLgrJoinFailed, S::kFallback, out);
}

void ClcClient::OnRkeyConfirmed(const SmcrRkeyConfirmed& e, Actions& out) {
  if (!Check(E::kRkeyConfirmed, out)) return;
  if (!e.ok) {
    core_.rkey_announced = false;  // the peer did not take it
    FallBack(E::kRkeyConfirmed, wire::kReasonErrRegBuf, 0, true, out);
    return;
  }
  SendSmcrConfirm(out);
  out.push_back(HandshakeDone{Technology::kSmcr, {}, core_.smcr});
  Move(E::kRkeyConfirmed, S::kActive, out);
}

void ClcClient::OnLinkUp(Actions& out) {
  if (!Check(E::kLinkUp, out)) return;
  out.push_back(core_.SmcrFirstContactDone());
  Move(E::kLinkUp, S::kActive, out);
}

void ClcClient::OnLinkFailed(const SmcrLinkFailed& e, Actions& out) {
  if (!Check(E::kLinkFailed, out)) return;
  // smcr_clnt_conf_first_link: no CONFIRM_LINK in time -> Decline
  // TIMEOUT_CL, and both ends stay TCP (no app byte moved yet).
  FallBack(E::kLinkFailed, HandshakeCore::LinkFailedReason(e), 0, true, out);
}

void ClcClient::SendSmcrConfirm(Actions& out) {
  out.push_back(EncodeForTcp(
      BuildSmcrAccept(wire::ClcType::kConfirm, core_.params(), core_.smcr)));
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
  out.push_back(HandshakeDone{Technology::kSmcd, core_.link, {}});
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
    case S::kJoiningLgr:
      return "JOINING_LGR";
    case S::kConfirmingRkey:
      return "CONFIRMING_RKEY";
    case S::kAwaitLink:
      return "AWAIT_LINK";
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
