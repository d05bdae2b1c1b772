// engine/clc_client.h: the CLC handshake, client side (SMC-Dv2 over an
// emulated ISM device), as a sans-I/O state machine.
//
// Start -> send Proposal, arm the 6 s timer -> Accept arrives -> register
// our DMB -> attach the server's DMB -> send Confirm -> ACTIVE (SMC-D).
// Any failure before Confirm: send a Decline with the reason code (unless
// the server declined), then Fallback: the app keeps the TCP socket and
// every byte after the last CLC message.
//
//   ClcClient c(params, &entropy);
//   Actions out;
//   c.OnStart(now, out);            // SendTcp(Proposal), ArmTimer
//   c.OnTcpBytes(bytes, now, out);  // TcpConsumed, RegisterRecvBuffer
#ifndef USMC_ENGINE_CLC_CLIENT_H_
#define USMC_ENGINE_CLC_CLIENT_H_

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

enum class ClcClientState : uint8_t {
  kInit,
  kAwaitAccept,
  kRegisteringDmb,
  kAttachingPeerDmb,
  // SMC-R (after an SMC-R Accept):
  kJoiningLgr,      // SmcrJoinLgr sent, waiting for the registry's answer
  kConfirmingRkey,  // reuse: our RMB announced (CONFIRM_RKEY), Confirm next
  kAwaitLink,       // first contact: Confirm sent, CONFIRM_LINK running
  kActive,          // SMC chosen; the data path takes over
  kFallback,        // stays TCP (terminal)
  kFailed,          // abandoned: app closed during the handshake (terminal)
};
std::string_view ToString(ClcClientState s);
std::ostream& operator<<(std::ostream& os, ClcClientState s);

using ClcClientTransition = Transition<ClcClientState, HandshakeEvent>;
std::span<const ClcClientTransition> ClcClientTransitions();

class ClcClient {
 public:
  ClcClient(const EngineParams& params, Entropy* entropy)
      : core_(params, entropy) {}
  // Builds a client directly in `state` with `link` as negotiated so far
  // (tests, fizz style).
  ClcClient(const EngineParams& params, Entropy* entropy, ClcClientState state,
            const SmcdLink& link, bool own_registered)
      : core_(params, entropy), state_(state) {
    core_.link = link;
    core_.own_registered = own_registered;
  }

  void OnStart(TimePoint now, Actions& out);
  void OnTcpBytes(std::span<const std::byte> bytes, TimePoint now,
                  Actions& out);
  void OnDmbRegistered(const RecvBufferRegistered& e, Actions& out);
  void OnDmbRegisterFailed(const RecvBufferFailed& e, Actions& out);
  void OnPeerDmbAttached(const PeerBufferAttached& e, Actions& out);
  void OnPeerDmbAttachFailed(const PeerBufferAttachFailed& e, Actions& out);
  void OnLgrJoined(const SmcrLgrJoined& e, Actions& out);
  void OnLgrJoinFailed(const SmcrLgrJoinFailed& e, Actions& out);
  void OnRkeyConfirmed(const SmcrRkeyConfirmed& e, Actions& out);
  void OnLinkUp(Actions& out);
  void OnLinkFailed(const SmcrLinkFailed& e, Actions& out);
  void OnTimeout(TimePoint now, Actions& out);
  void OnTcpEof(Actions& out);
  void OnAppClose(Actions& out);
  // An event that has no meaning during the handshake (app data, a CDC):
  // the InvalidEvent path (report, then Decline INTERR and fall back).
  void OnForeignEvent(std::string_view name, Actions& out);

  ClcClientState state() const { return state_; }
  bool Terminal() const {
    return state_ == ClcClientState::kActive ||
           state_ == ClcClientState::kFallback ||
           state_ == ClcClientState::kFailed;
  }
  HandshakeOutcome Outcome() const {
    switch (state_) {
      case ClcClientState::kActive:
        return smcr_ ? HandshakeOutcome::kSmcr : HandshakeOutcome::kSmcd;
      case ClcClientState::kFallback:
        return HandshakeOutcome::kFallback;
      case ClcClientState::kFailed:
        return HandshakeOutcome::kFailed;
      default:
        return HandshakeOutcome::kRunning;
    }
  }
  const HandshakeCore& core() const { return core_; }
  std::optional<TimePoint> NextDeadline() const { return core_.deadline(); }

 private:
  bool Check(HandshakeEvent e, Actions& out);
  void Move(HandshakeEvent e, ClcClientState next, Actions& out);
  void InvalidEvent(HandshakeEvent e, Actions& out);
  void InvalidEventNamed(std::string_view name, Actions& out);
  void FallBack(HandshakeEvent e, uint32_t local, uint32_t peer,
                bool send_decline, Actions& out);
  void OnMessage(const wire::ClcMessage& m, Actions& out);
  void OnSmcrAccept(const wire::ClcSmcrAccept& a, Actions& out);
  void SendSmcrConfirm(Actions& out);

  HandshakeCore core_;
  bool smcr_ = false;  // the server accepted SMC-R
  ClcClientState state_ = ClcClientState::kInit;
};

}  // namespace usmc::engine

#endif  // USMC_ENGINE_CLC_CLIENT_H_
