// engine/clc_server.h: the CLC handshake, server side (SMC-Dv2 over an
// emulated ISM device), as a sans-I/O state machine.
//
// Start -> arm the 6 s timer -> Proposal arrives -> pick SMC-Dv2 if the
// client lists our GID and CHID (same host) and our UEID -> register our
// DMB -> send Accept, arm the timer -> Confirm arrives -> attach the
// client's DMB -> ACTIVE. Before Confirm every failure declines with its
// reason code and falls back to TCP. After Confirm the client is already
// ACTIVE, so a failure to attach aborts the connection (ECONNABORTED).
//
//   ClcServer s(params, &entropy);
//   Actions out;
//   s.OnStart(now, out);            // ArmTimer
//   s.OnTcpBytes(bytes, now, out);  // TcpConsumed, RegisterRecvBuffer
#ifndef USMC_ENGINE_CLC_SERVER_H_
#define USMC_ENGINE_CLC_SERVER_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <span>
#include <string_view>

#include "engine/actions.h"
#include "engine/clc_common.h"
#include "engine/events.h"
#include "engine/params.h"
#include "engine/transition_table.h"

namespace usmc::engine {

enum class ClcServerState : uint8_t {
  kInit,
  kAwaitProposal,
  kRegisteringDmb,
  kAwaitConfirm,
  kAttachingPeerDmb,
  // SMC-R (after a Proposal we serve with SMC-R):
  kJoiningLgr,        // SmcrJoinLgr sent, waiting for the registry
  kConfirmingRkey,    // reuse: our RMB announced (CONFIRM_RKEY), Accept next
  kAwaitSmcrConfirm,  // Accept sent, waiting for the Confirm
  kAwaitLink,         // first contact: CONFIRM_LINK running
  kActive,            // SMC chosen; the data path takes over
  kFallback,          // stays TCP (terminal)
  kFailed,            // aborted after Confirm, or closed by the app (terminal)
};
std::string_view ToString(ClcServerState s);
std::ostream& operator<<(std::ostream& os, ClcServerState s);

using ClcServerTransition = Transition<ClcServerState, HandshakeEvent>;
std::span<const ClcServerTransition> ClcServerTransitions();

class ClcServer {
 public:
  ClcServer(const EngineParams& params, Entropy* entropy)
      : core_(params, entropy) {}
  // Builds a server directly in `state` (tests, fizz style).
  ClcServer(const EngineParams& params, Entropy* entropy, ClcServerState state,
            const SmcdLink& link, bool own_registered)
      : core_(params, entropy), state_(state) {
    core_.link = link;
    core_.own_registered = own_registered;
  }

  void OnStart(TimePoint now, Actions& out);
  void OnTcpBytes(std::span<const std::byte> bytes, TimePoint now,
                  Actions& out);
  void OnDmbRegistered(const RecvBufferRegistered& e, TimePoint now,
                       Actions& out);
  void OnDmbRegisterFailed(const RecvBufferFailed& e, Actions& out);
  void OnPeerDmbAttached(const PeerBufferAttached& e, TimePoint now,
                         Actions& out);
  void OnPeerDmbAttachFailed(const PeerBufferAttachFailed& e, Actions& out);
  void OnLgrJoined(const SmcrLgrJoined& e, TimePoint now, Actions& out);
  void OnLgrJoinFailed(const SmcrLgrJoinFailed& e, Actions& out);
  void OnRkeyConfirmed(const SmcrRkeyConfirmed& e, TimePoint now, Actions& out);
  void OnLinkUp(Actions& out);
  void OnLinkFailed(const SmcrLinkFailed& e, Actions& out);
  void OnTimeout(TimePoint now, Actions& out);
  void OnTcpEof(Actions& out);
  void OnAppClose(Actions& out);
  // An event that has no meaning during the handshake (app data, a CDC):
  // the InvalidEvent path (report, then Decline INTERR and fall back).
  void OnForeignEvent(std::string_view name, Actions& out);

  ClcServerState state() const { return state_; }
  bool Terminal() const {
    return state_ == ClcServerState::kActive ||
           state_ == ClcServerState::kFallback ||
           state_ == ClcServerState::kFailed;
  }
  HandshakeOutcome Outcome() const {
    switch (state_) {
      case ClcServerState::kActive:
        return smcr_ ? HandshakeOutcome::kSmcr : HandshakeOutcome::kSmcd;
      case ClcServerState::kFallback:
        return HandshakeOutcome::kFallback;
      case ClcServerState::kFailed:
        return HandshakeOutcome::kFailed;
      default:
        return HandshakeOutcome::kRunning;
    }
  }
  const HandshakeCore& core() const { return core_; }
  std::optional<TimePoint> NextDeadline() const { return core_.deadline(); }

 private:
  bool Check(HandshakeEvent e, Actions& out);
  void Move(HandshakeEvent e, ClcServerState next, Actions& out);
  void InvalidEvent(HandshakeEvent e, Actions& out);
  void InvalidEventNamed(std::string_view name, Actions& out);
  void FallBack(HandshakeEvent e, uint32_t local, uint32_t peer,
                bool send_decline, Actions& out);
  void OnProposal(const wire::ClcMessage& m, Actions& out);
  void OnConfirm(const wire::ClcMessage& m, Actions& out);
  void OnSmcrProposal(const wire::ClcProposal& p, Actions& out);
  void OnSmcrConfirm(const wire::ClcMessage& m, Actions& out);
  void SendSmcrAccept(TimePoint now, Actions& out);

  HandshakeCore core_;
  bool smcr_ = false;  // we chose SMC-R
  ClcServerState state_ = ClcServerState::kInit;
};

}  // namespace usmc::engine

#endif  // USMC_ENGINE_CLC_SERVER_H_
