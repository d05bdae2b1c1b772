#include "engine/clc_server.h"

#include <algorithm>
#include <cerrno>
#include <string>

#include "engine/clc_smcr.h"
#include "wire/bufsize.h"
#include "wire/reason.h"

namespace usmc::engine {
namespace {

using S = ClcServerState;
using E = HandshakeEvent;

constexpr ClcServerTransition kTable[] = {
    {S::kInit, E::kStart, {S::kAwaitProposal}, 1},
    {S::kInit, E::kAppClose, {S::kFailed}, 1},
    {S::kAwaitProposal,
     E::kClcMessage,
     {S::kRegisteringDmb, S::kFallback, S::kJoiningLgr},
     3},
    {S::kAwaitProposal, E::kClcError, {S::kFallback}, 1},
    {S::kAwaitProposal, E::kTimeout, {S::kFallback}, 1},
    {S::kAwaitProposal, E::kTcpEof, {S::kFallback}, 1},
    {S::kAwaitProposal, E::kAppClose, {S::kFailed}, 1},
    {S::kRegisteringDmb,
     E::kDmbRegistered,
     {S::kAwaitConfirm, S::kFallback},
     2},
    {S::kRegisteringDmb, E::kDmbRegisterFailed, {S::kFallback}, 1},
    {S::kRegisteringDmb, E::kTcpEof, {S::kFallback}, 1},
    {S::kRegisteringDmb, E::kAppClose, {S::kFailed}, 1},
    {S::kAwaitConfirm,
     E::kClcMessage,
     {S::kAttachingPeerDmb, S::kFallback, S::kActive, S::kFailed},
     4},
    {S::kAwaitConfirm, E::kPeerDmbAttached, {S::kAwaitConfirm}, 1},
    {S::kAwaitConfirm, E::kClcError, {S::kFallback}, 1},
    {S::kAwaitConfirm, E::kTimeout, {S::kFallback, S::kFailed}, 2},
    {S::kAwaitConfirm, E::kTcpEof, {S::kFallback}, 1},
    {S::kAwaitConfirm, E::kAppClose, {S::kFailed}, 1},
    {S::kAttachingPeerDmb, E::kPeerDmbAttached, {S::kActive}, 1},
    {S::kAttachingPeerDmb, E::kPeerDmbAttachFailed, {S::kFailed}, 1},
    {S::kAttachingPeerDmb, E::kTcpEof, {S::kFailed}, 1},
    {S::kAttachingPeerDmb, E::kAppClose, {S::kFailed}, 1},
    {S::kJoiningLgr,
     E::kLgrJoined,
     {S::kAwaitSmcrConfirm, S::kConfirmingRkey, S::kFallback},
     3},
    {S::kJoiningLgr, E::kLgrJoinFailed, {S::kFallback}, 1},
    {S::kJoiningLgr, E::kTcpEof, {S::kFallback}, 1},
    {S::kJoiningLgr, E::kAppClose, {S::kFailed}, 1},
    {S::kConfirmingRkey,
     E::kRkeyConfirmed,
     {S::kAwaitSmcrConfirm, S::kFallback},
     2},
    {S::kConfirmingRkey, E::kTcpEof, {S::kFallback}, 1},
    {S::kConfirmingRkey, E::kAppClose, {S::kFailed}, 1},
    {S::kAwaitSmcrConfirm,
     E::kClcMessage,
     {S::kAwaitLink, S::kActive, S::kFallback},
     3},
    {S::kAwaitSmcrConfirm, E::kClcError, {S::kFallback}, 1},
    {S::kAwaitSmcrConfirm, E::kTimeout, {S::kFallback}, 1},
    {S::kAwaitSmcrConfirm, E::kTcpEof, {S::kFallback}, 1},
    {S::kAwaitSmcrConfirm, E::kAppClose, {S::kFailed}, 1},
    {S::kAwaitLink, E::kLinkUp, {S::kActive}, 1},
    {S::kAwaitLink, E::kLinkFailed, {S::kFallback}, 1},
    {S::kAwaitLink, E::kClcMessage, {S::kFallback}, 1},
    {S::kAwaitLink, E::kClcError, {S::kFallback}, 1},
    {S::kAwaitLink, E::kTcpEof, {S::kFallback}, 1},
    {S::kAwaitLink, E::kAppClose, {S::kFailed}, 1},
};

}  // namespace

std::span<const ClcServerTransition> ClcServerTransitions() { return kTable; }

bool ClcServer::Check(HandshakeEvent e, Actions& out) {
  if (Declared<S, E>(kTable, state_, e)) return true;
  InvalidEvent(e, out);
  return false;
}

void ClcServer::Move(HandshakeEvent e, ClcServerState next, Actions& out) {
  if (!Allowed<S, E>(kTable, state_, e, next)) {
    InvalidEvent(e, out);
    return;
  }
  state_ = next;
}

void ClcServer::OnForeignEvent(std::string_view name, Actions& out) {
  InvalidEventNamed(name, out);
}

void ClcServer::InvalidEvent(HandshakeEvent e, Actions& out) {
  InvalidEventNamed(ToString(e), out);
}

void ClcServer::InvalidEventNamed(std::string_view name, Actions& out) {
  out.push_back(ReportError{EINVAL, "invalid event " + std::string(name) +
                                        " in CLC server state " +
                                        std::string(ToString(state_))});
  if (Terminal()) return;
  if (state_ == S::kAttachingPeerDmb) {
    core_.Fail(ECONNABORTED, "CLC server failed after Confirm", true, out);
    state_ = S::kFailed;
    return;
  }
  core_.FallBack(wire::kReasonIntErr, 0, /*send_decline=*/true, out);
  state_ = S::kFallback;
}

void ClcServer::FallBack(HandshakeEvent e, uint32_t local, uint32_t peer,
                         bool send_decline, Actions& out) {
  core_.FallBack(local, peer, send_decline, out);
  Move(e, S::kFallback, out);
}

void ClcServer::OnStart(TimePoint now, Actions& out) {
  if (!Check(E::kStart, out)) return;
  core_.ArmTimer(now, out);
  Move(E::kStart, S::kAwaitProposal, out);
}

void ClcServer::OnTcpBytes(std::span<const std::byte> bytes, TimePoint,
                           Actions& out) {
  if (state_ != S::kAwaitProposal && state_ != S::kAwaitConfirm &&
      state_ != S::kAwaitSmcrConfirm && state_ != S::kAwaitLink) {
    return;
  }
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
      if (state_ == S::kAwaitProposal) {
        // The client's Decline already behind its Proposal: it gave up
        // waiting (an app slow to accept) and is TCP now, where our Accept
        // would land in its stream.
        if (std::holds_alternative<wire::ClcProposal>(core_.message())) {
          if (std::optional<uint32_t> diag =
                  core_.DeclineBehindFrame(bytes, out)) {
            FallBack(E::kClcMessage, wire::kReasonPeerDecl, *diag, false, out);
            return;
          }
        }
        OnProposal(core_.message(), out);
      } else if (state_ == S::kAwaitConfirm) {
        OnConfirm(core_.message(), out);
      } else if (state_ == S::kAwaitSmcrConfirm) {
        OnSmcrConfirm(core_.message(), out);
      } else {
        // AWAIT_LINK: only the client's Decline (its CONFIRM_LINK wait ran
        // out) may come now.
        const auto* d = std::get_if<wire::ClcDecline>(&core_.message());
        if (d != nullptr) core_.peer_out_of_sync = d->out_of_sync;
        FallBack(E::kClcMessage,
                 d ? wire::kReasonPeerDecl : wire::kReasonCnfErr,
                 d ? d->peer_diagnosis : 0, d == nullptr, out);
      }
      return;
  }
}

void ClcServer::OnProposal(const wire::ClcMessage& m, Actions& out) {
  if (const auto* d = std::get_if<wire::ClcDecline>(&m)) {
    FallBack(E::kClcMessage, wire::kReasonPeerDecl, d->peer_diagnosis, false,
             out);
    return;
  }
  const auto* p = std::get_if<wire::ClcProposal>(&m);
  if (p == nullptr) {
    FallBack(E::kClcMessage, wire::kReasonCnfErr, 0, true, out);
    return;
  }
  const ProposalChoice choice = ChooseForProposal(*p, core_.params());
  if (choice.reason != 0) {
    FallBack(E::kClcMessage, choice.reason, 0, true, out);
    return;
  }
  if (choice.technology == Technology::kSmcr) {
    OnSmcrProposal(*p, out);
    return;
  }
  core_.CancelTimer(out);
  core_.link.local_device = core_.params().device;
  core_.link.peer_device = core_.params().device;  // matched in CheckProposal
  core_.link.eid = core_.params().eid;
  core_.link.link_id = core_.NewLinkId();
  out.push_back(RegisterRecvBuffer{SmcdDmbSizeFor(core_.params().dmb_size)});
  Move(E::kClcMessage, S::kRegisteringDmb, out);
}

// ---- SMC-R ----

void ClcServer::OnSmcrProposal(const wire::ClcProposal& p, Actions& out) {
  core_.CancelTimer(out);
  smcr_ = true;
  const EngineParams& params = core_.params();
  const SmcrLimits lim = NegotiateSmcrLimits(p, params);
  SmcrLink& l = core_.smcr;
  // The kernel server keys reuse on (Proposal system ID, V2 GID); a kernel
  // client sends system ID 0 (SMCR.md §3.1, §3.2).
  l.peer_system_id = p.peer_id;
  l.peer_gid = p.roce_v2_gid;
  l.peer_mac = p.mac;
  l.max_conns = lim.max_conns;
  l.max_links = lim.max_links;
  l.eid = params.eid;
  l.local_gid = params.smcr.gid;
  l.local_mac = params.smcr.mac;
  l.local_rkey = params.smcr.rmb_rkey;
  l.local_iova = params.smcr.rmb_iova;
  l.local_rmb_size = params.smcr.rmb_size;
  out.push_back(SmcrJoinLgr{false, l});
  Move(E::kClcMessage, S::kJoiningLgr, out);
}

void ClcServer::OnLgrJoined(const SmcrLgrJoined& e, TimePoint now,
                            Actions& out) {
  if (!Check(E::kLgrJoined, out)) return;
  SmcrLink& l = core_.smcr;
  l.first_contact = e.first_contact;
  core_.TakeLgrJoined(e);
  if (e.token == 0 || !ValidSmcrRmbSize(l.local_rmb_size)) {
    FallBack(E::kLgrJoined,
             e.token == 0 ? wire::kReasonIntErr : wire::kReasonErrRegBuf, 0,
             true, out);
    return;
  }
  if (l.first_contact) {
    SendSmcrAccept(now, out);
    Move(E::kLgrJoined, S::kAwaitSmcrConfirm, out);
    return;
  }
  // smcr_lgr_reg_rmbs: CONFIRM_RKEY over the group's link before Accept.
  core_.rkey_announced = true;
  out.push_back(SmcrConfirmRkey{l.local_rkey, l.local_iova});
  Move(E::kLgrJoined, S::kConfirmingRkey, out);
}

void ClcServer::OnLgrJoinFailed(const SmcrLgrJoinFailed& e, Actions& out) {
  if (!Check(E::kLgrJoinFailed, out)) return;
  FallBack(E::kLgrJoinFailed, e.reason != 0 ? e.reason : wire::kReasonIntErr, 0,
           true, out);
}

void ClcServer::OnRkeyConfirmed(const SmcrRkeyConfirmed& e, TimePoint now,
                                Actions& out) {
  if (!Check(E::kRkeyConfirmed, out)) return;
  if (!e.ok) {
    core_.rkey_announced = false;
    FallBack(E::kRkeyConfirmed, wire::kReasonErrRegBuf, 0, true, out);
    return;
  }
  SendSmcrAccept(now, out);
  Move(E::kRkeyConfirmed, S::kAwaitSmcrConfirm, out);
}

void ClcServer::SendSmcrAccept(TimePoint now, Actions& out) {
  out.push_back(EncodeForTcp(
      BuildSmcrAccept(wire::ClcType::kAccept, core_.params(), core_.smcr)));
  core_.ArmTimer(now, out);
}

void ClcServer::OnSmcrConfirm(const wire::ClcMessage& m, Actions& out) {
  if (const auto* d = std::get_if<wire::ClcDecline>(&m)) {
    core_.peer_out_of_sync = d->out_of_sync;
    FallBack(E::kClcMessage, wire::kReasonPeerDecl, d->peer_diagnosis, false,
             out);
    return;
  }
  const auto* c = std::get_if<wire::ClcSmcrAccept>(&m);
  if (c == nullptr || c->type != wire::ClcType::kConfirm) {
    FallBack(E::kClcMessage,
             std::holds_alternative<wire::ClcSmcdAccept>(m)
                 ? wire::kReasonModeUnsupp
                 : wire::kReasonCnfErr,
             0, true, out);
    return;
  }
  SmcrLink& l = core_.smcr;
  if (uint32_t reason = CheckSmcrConfirm(*c, core_.params(), l); reason != 0) {
    FallBack(E::kClcMessage, reason, 0, true, out);
    return;
  }
  core_.CancelTimer(out);
  // The Proposal's system ID and GID stay the group's key; the Confirm
  // names the client's link end.
  const wire::ClcPeerId proposal_id = l.peer_system_id;
  TakePeerAccept(*c, l);
  l.peer_system_id = proposal_id;
  l.mtu = std::min(c->qp_mtu, core_.params().smcr.mtu);
  if (l.first_contact) {
    out.push_back(SmcrStartLink{l});
    Move(E::kClcMessage, S::kAwaitLink, out);
    return;
  }
  out.push_back(HandshakeDone{Technology::kSmcr, {}, l});
  Move(E::kClcMessage, S::kActive, out);
}

void ClcServer::OnLinkUp(Actions& out) {
  if (!Check(E::kLinkUp, out)) return;
  out.push_back(core_.SmcrFirstContactDone());
  Move(E::kLinkUp, S::kActive, out);
}

void ClcServer::OnLinkFailed(const SmcrLinkFailed& e, Actions& out) {
  if (!Check(E::kLinkFailed, out)) return;
  // smcr_serv_conf_first_link: no CONFIRM_LINK response in time -> Decline
  // TIMEOUT_CL, TCP on both ends.
  FallBack(E::kLinkFailed, HandshakeCore::LinkFailedReason(e), 0, true, out);
}

void ClcServer::OnDmbRegistered(const RecvBufferRegistered& e, TimePoint now,
                                Actions& out) {
  if (!Check(E::kDmbRegistered, out)) return;
  core_.own_registered = true;
  core_.link.local_dmb_token = e.token;
  core_.link.local_dmb_size = e.size;
  if (!ValidSmcdDmbSize(e.size)) {
    FallBack(E::kDmbRegistered, wire::kReasonErrRegBuf, 0, true, out);
    return;
  }
  out.push_back(
      EncodeForTcp(BuildSmcdAccept(wire::ClcType::kAccept, core_.params(),
                                   e.token, e.size, core_.link.link_id)));
  core_.ArmTimer(now, out);
  Move(E::kDmbRegistered, S::kAwaitConfirm, out);
}

void ClcServer::OnConfirm(const wire::ClcMessage& m, Actions& out) {
  if (const auto* d = std::get_if<wire::ClcDecline>(&m)) {
    FallBack(E::kClcMessage, wire::kReasonPeerDecl, d->peer_diagnosis, false,
             out);
    return;
  }
  if (std::holds_alternative<wire::ClcSmcrAccept>(m)) {
    FallBack(E::kClcMessage, wire::kReasonModeUnsupp, 0, true, out);
    return;
  }
  const auto* c = std::get_if<wire::ClcSmcdAccept>(&m);
  if (c == nullptr || c->type != wire::ClcType::kConfirm) {
    FallBack(E::kClcMessage, wire::kReasonCnfErr, 0, true, out);
    return;
  }
  uint32_t reason = CheckSmcdAccept(*c, core_.params());
  if (reason == 0 && c->link_id != core_.link.link_id) {
    reason = wire::kReasonCnfErr;  // not an answer to our Accept
  }
  if (reason != 0) {
    FallBack(E::kClcMessage, reason, 0, true, out);
    return;
  }
  core_.CancelTimer(out);
  core_.link.peer_device = SmcdDevice{c->gid, c->gid_ext, c->chid};
  const uint32_t confirmed_size =
      static_cast<uint32_t>(wire::UncompressBufSize(c->dmbe_size));
  if (core_.peer_attached) {
    // The handover already ran (the usual order: the client attaches before
    // it confirms). Confirm must name the DMB we were given.
    if (c->dmb_token != core_.link.peer_dmb_token ||
        confirmed_size != core_.link.peer_dmb_size) {
      core_.Fail(ECONNABORTED, "Confirm names another DMB than the handover",
                 true, out);
      Move(E::kClcMessage, S::kFailed, out);
      return;
    }
    out.push_back(HandshakeDone{Technology::kSmcd, core_.link, {}});
    Move(E::kClcMessage, S::kActive, out);
    return;
  }
  core_.link.peer_dmb_token = c->dmb_token;
  core_.link.peer_dmb_size = confirmed_size;
  out.push_back(
      AttachPeerBuffer{core_.link.peer_dmb_token, core_.link.peer_dmb_size});
  Move(E::kClcMessage, S::kAttachingPeerDmb, out);
}

void ClcServer::OnDmbRegisterFailed(const RecvBufferFailed& e, Actions& out) {
  if (!Check(E::kDmbRegisterFailed, out)) return;
  FallBack(E::kDmbRegisterFailed, e.reason ? e.reason : wire::kReasonMem, 0,
           true, out);
}

void ClcServer::OnPeerDmbAttached(const PeerBufferAttached& e, TimePoint now,
                                  Actions& out) {
  if (!Check(E::kPeerDmbAttached, out)) return;
  core_.peer_attached = true;
  if (state_ == S::kAwaitConfirm) {
    // The client ran the handover before Confirm; Confirm must match it.
    core_.link.peer_dmb_token = e.token;
    core_.link.peer_dmb_size = e.size;
    // The client sends Confirm right after a handover that worked and is
    // SMC-D from then on: a Decline now would leave it writing into our
    // DMB while we read TCP. A fresh timer (a server that ran late may be
    // past the old deadline already) only bounds a client that breaks
    // the protocol, and its end is an abort, not a fallback.
    core_.ArmTimer(now, out);
    Move(E::kPeerDmbAttached, S::kAwaitConfirm, out);
    return;
  }
  out.push_back(HandshakeDone{Technology::kSmcd, core_.link, {}});
  Move(E::kPeerDmbAttached, S::kActive, out);
}

void ClcServer::OnPeerDmbAttachFailed(const PeerBufferAttachFailed&,
                                      Actions& out) {
  if (!Check(E::kPeerDmbAttachFailed, out)) return;
  // The client went ACTIVE when it sent Confirm: too late to decline.
  core_.Fail(ECONNABORTED, "cannot attach the client's DMB", true, out);
  Move(E::kPeerDmbAttachFailed, S::kFailed, out);
}

void ClcServer::OnTimeout(TimePoint now, Actions& out) {
  if (!core_.TimeoutDue(now)) return;
  if (!Check(E::kTimeout, out)) return;
  if (state_ == S::kAwaitConfirm && core_.peer_attached) {
    // The client is committed (see OnPeerDmbAttached): too late to decline.
    core_.Fail(ETIMEDOUT, "no Confirm after the DMB handover", true, out);
    Move(E::kTimeout, S::kFailed, out);
    return;
  }
  FallBack(E::kTimeout, wire::kReasonTimeoutCl, 0, true, out);
}

void ClcServer::OnTcpEof(Actions& out) {
  if (!Check(E::kTcpEof, out)) return;
  if (state_ == S::kAttachingPeerDmb) {
    core_.Fail(ECONNRESET, "TCP closed during the handshake", false, out);
    Move(E::kTcpEof, S::kFailed, out);
    return;
  }
  FallBack(E::kTcpEof, wire::kReasonCnfErr, 0, false, out);
}

void ClcServer::OnAppClose(Actions& out) {
  if (!Check(E::kAppClose, out)) return;
  core_.Fail(0, "", false, out);
  out.push_back(CloseTcp{});
  Move(E::kAppClose, S::kFailed, out);
}

std::string_view ToString(ClcServerState s) {
  switch (s) {
    case S::kInit:
      return "INIT";
    case S::kAwaitProposal:
      return "AWAIT_PROPOSAL";
    case S::kRegisteringDmb:
      return "REGISTERING_DMB";
    case S::kAwaitConfirm:
      return "AWAIT_CONFIRM";
    case S::kAttachingPeerDmb:
      return "ATTACHING_PEER_DMB";
    case S::kJoiningLgr:
      return "JOINING_LGR";
    case S::kConfirmingRkey:
      return "CONFIRMING_RKEY";
    case S::kAwaitSmcrConfirm:
      return "AWAIT_SMCR_CONFIRM";
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

std::ostream& operator<<(std::ostream& os, ClcServerState s) {
  return os << ToString(s);
}

}  // namespace usmc::engine
