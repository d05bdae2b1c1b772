#include "engine/close.h"

#include <cerrno>
#include <iterator>

namespace usmc::engine {
namespace {

using S = CloseState;
using E = CloseEvent;

// Declared (state, event) pairs and their permitted targets. Anything not
// listed is an invalid event. Keep in sync with docs/engine.md.
constexpr CloseTransition kTable[] = {
    {S::kActive, E::kAppShutdownWrite, {S::kPeerCloseWait1}, 1},
    {S::kActive, E::kAppClose, {S::kPeerCloseWait1}, 1},
    {S::kActive, E::kAppAbort, {S::kClosed}, 1},
    {S::kActive, E::kPeerDoneWriting, {S::kAppCloseWait1}, 1},
    {S::kActive, E::kPeerClosed, {S::kAppCloseWait1}, 1},
    {S::kActive, E::kPeerAbort, {S::kProcessAbort}, 1},
    {S::kActive, E::kLocalAbort, {S::kPeerAbortWait}, 1},

    {S::kPeerCloseWait1, E::kAppShutdownWrite, {S::kPeerCloseWait1}, 1},
    {S::kPeerCloseWait1, E::kAppClose, {S::kPeerCloseWait1}, 1},
    {S::kPeerCloseWait1, E::kAppAbort, {S::kClosed}, 1},
    {S::kPeerCloseWait1, E::kPeerDoneWriting, {S::kPeerCloseWait2}, 1},
    {S::kPeerCloseWait1, E::kPeerClosed, {S::kClosed, S::kAppFinCloseWait}, 2},
    {S::kPeerCloseWait1, E::kPeerAbort, {S::kClosed, S::kProcessAbort}, 2},
    {S::kPeerCloseWait1, E::kLocalAbort, {S::kPeerAbortWait, S::kClosed}, 2},

    {S::kPeerCloseWait2, E::kAppShutdownWrite, {S::kPeerCloseWait2}, 1},
    {S::kPeerCloseWait2, E::kAppClose, {S::kPeerCloseWait2}, 1},
    {S::kPeerCloseWait2, E::kAppAbort, {S::kClosed}, 1},
    {S::kPeerCloseWait2, E::kPeerClosed, {S::kClosed, S::kAppFinCloseWait}, 2},
    {S::kPeerCloseWait2, E::kPeerAbort, {S::kClosed, S::kProcessAbort}, 2},
    {S::kPeerCloseWait2, E::kLocalAbort, {S::kPeerAbortWait, S::kClosed}, 2},

    {S::kAppCloseWait1, E::kAppShutdownWrite, {S::kAppCloseWait2}, 1},
    {S::kAppCloseWait1, E::kAppClose, {S::kClosed, S::kPeerFinCloseWait}, 2},
    {S::kAppCloseWait1, E::kAppAbort, {S::kClosed}, 1},
    {S::kAppCloseWait1, E::kPeerClosed, {S::kAppCloseWait1}, 1},
    {S::kAppCloseWait1, E::kPeerAbort, {S::kProcessAbort}, 1},
    {S::kAppCloseWait1, E::kLocalAbort, {S::kPeerAbortWait}, 1},

    {S::kAppCloseWait2, E::kAppShutdownWrite, {S::kAppCloseWait2}, 1},
    {S::kAppCloseWait2, E::kAppClose, {S::kClosed, S::kPeerFinCloseWait}, 2},
    {S::kAppCloseWait2, E::kAppAbort, {S::kClosed}, 1},
    {S::kAppCloseWait2, E::kPeerClosed, {S::kAppCloseWait2}, 1},
    {S::kAppCloseWait2, E::kPeerAbort, {S::kClosed}, 1},
    {S::kAppCloseWait2, E::kLocalAbort, {S::kPeerAbortWait}, 1},

    {S::kAppFinCloseWait, E::kAppShutdownWrite, {S::kAppFinCloseWait}, 1},
    {S::kAppFinCloseWait, E::kAppClose, {S::kClosed}, 1},
    {S::kAppFinCloseWait, E::kAppAbort, {S::kClosed}, 1},
    {S::kAppFinCloseWait, E::kPeerAbort, {S::kProcessAbort}, 1},
    {S::kAppFinCloseWait, E::kLocalAbort, {S::kPeerAbortWait}, 1},

    {S::kPeerFinCloseWait, E::kPeerClosed, {S::kClosed}, 1},
    {S::kPeerFinCloseWait, E::kPeerAbort, {S::kClosed}, 1},
    {S::kPeerFinCloseWait, E::kLocalAbort, {S::kClosed}, 1},

    {S::kProcessAbort, E::kAppShutdownWrite, {S::kProcessAbort}, 1},
    {S::kProcessAbort, E::kAppClose, {S::kClosed}, 1},
    {S::kProcessAbort, E::kAppAbort, {S::kClosed}, 1},
    {S::kProcessAbort, E::kLocalAbort, {S::kProcessAbort}, 1},

    {S::kPeerAbortWait, E::kAppShutdownWrite, {S::kPeerAbortWait}, 1},
    {S::kPeerAbortWait, E::kAppClose, {S::kClosed}, 1},
    {S::kPeerAbortWait, E::kAppAbort, {S::kClosed}, 1},
    {S::kPeerAbortWait, E::kPeerDoneWriting, {S::kPeerAbortWait}, 1},
    {S::kPeerAbortWait, E::kPeerClosed, {S::kPeerAbortWait}, 1},
    {S::kPeerAbortWait, E::kPeerAbort, {S::kPeerAbortWait}, 1},
    {S::kPeerAbortWait, E::kLocalAbort, {S::kPeerAbortWait}, 1},

    {S::kClosed, E::kAppShutdownWrite, {S::kClosed}, 1},
    {S::kClosed, E::kAppClose, {S::kClosed}, 1},
    {S::kClosed, E::kAppAbort, {S::kClosed}, 1},
    {S::kClosed, E::kPeerDoneWriting, {S::kClosed}, 1},
    {S::kClosed, E::kPeerClosed, {S::kClosed}, 1},
    {S::kClosed, E::kPeerAbort, {S::kClosed}, 1},
    {S::kClosed, E::kLocalAbort, {S::kClosed}, 1},
};

const CloseTransition* Find(S from, E event) {
  for (const CloseTransition& t : kTable) {
    if (t.from == from && t.event == event) return &t;
  }
  return nullptr;
}

}  // namespace

std::span<const CloseTransition> CloseTransitions() { return kTable; }

bool CloseTransitionAllowed(CloseState from, CloseEvent event, CloseState to) {
  const CloseTransition* t = Find(from, event);
  if (t == nullptr) return false;
  for (uint8_t i = 0; i < t->to_count; ++i) {
    if (t->to[i] == to) return true;
  }
  return false;
}

CloseStep CloseMachine::Handle(CloseEvent event, bool unread_data) {
  CloseStep step;
  if (Find(state_, event) == nullptr) {
    step.valid = false;
    return step;
  }
  // close() and abort after close() are invalid: the app released it already.
  if ((event == E::kAppClose || event == E::kAppAbort) && released_) {
    step.valid = false;
    return step;
  }
  S next = state_;
  // The flag close() puts in its CDC: closed, or abort if data is unread
  // (the peer then sees ECONNRESET, as with TCP's RST on close).
  auto send_final = [&] {
    if (unread_data) {
      step.send_abort = !abort_sent_;
      abort_sent_ = true;
      aborted_ = true;
    } else {
      step.send_closed = true;
    }
    write_shut_ = true;
    released_ = true;
  };
  auto send_abort = [&] {
    if (!abort_sent_) step.send_abort = true;
    abort_sent_ = true;
    aborted_ = true;
    write_shut_ = true;
    released_ = true;
  };

  switch (event) {
    case E::kAppShutdownWrite:
      if (!write_shut_ && !aborted_ && !peer_closed_) {
        step.send_done_writing = true;
      }
      write_shut_ = true;
      if (state_ == S::kActive) next = S::kPeerCloseWait1;
      if (state_ == S::kAppCloseWait1) next = S::kAppCloseWait2;
      break;
    case E::kAppClose:
      switch (state_) {
        case S::kActive:
          send_final();
          next = S::kPeerCloseWait1;
          break;
        case S::kPeerCloseWait1:
        case S::kPeerCloseWait2:
          send_final();  // we had only shut WR
          break;
        case S::kAppCloseWait1:
        case S::kAppCloseWait2:
          send_final();
          next = peer_closed_ ? S::kClosed : S::kPeerFinCloseWait;
          break;
        case S::kAppFinCloseWait:
          send_final();
          next = S::kClosed;
          break;
        case S::kProcessAbort:
          send_abort();  // answer the peer's abort, as Linux does
          next = S::kClosed;
          break;
        default:  // kPeerAbortWait, kClosed: nothing more to tell the peer
          released_ = true;
          next = S::kClosed;
          break;
      }
      break;
    case E::kAppAbort:
      if (state_ != S::kClosed && state_ != S::kPeerAbortWait) send_abort();
      released_ = true;
      next = S::kClosed;
      break;
    case E::kPeerDoneWriting:
      peer_write_shut_ = true;
      if (state_ == S::kActive) next = S::kAppCloseWait1;
      if (state_ == S::kPeerCloseWait1) next = S::kPeerCloseWait2;
      break;
    case E::kPeerClosed:
      peer_write_shut_ = true;
      switch (state_) {
        case S::kActive:
          peer_closed_ = true;
          next = S::kAppCloseWait1;
          break;
        case S::kPeerCloseWait1:
        case S::kPeerCloseWait2:
          peer_closed_ = true;
          next = released_ ? S::kClosed : S::kAppFinCloseWait;
          break;
        case S::kPeerFinCloseWait:
          peer_closed_ = true;
          next = S::kClosed;
          break;
        default:
          peer_closed_ = true;
          break;
      }
      break;
    case E::kPeerAbort:
      peer_write_shut_ = true;
      peer_closed_ = true;
      if (state_ != S::kPeerAbortWait && state_ != S::kClosed) {
        aborted_ = true;
        if (!released_) step.error = ECONNRESET;
      }
      switch (state_) {
        case S::kActive:
        case S::kAppCloseWait1:
        case S::kAppFinCloseWait:
          next = S::kProcessAbort;
          break;
        case S::kPeerCloseWait1:
        case S::kPeerCloseWait2:
          next = released_ ? S::kClosed : S::kProcessAbort;
          break;
        case S::kAppCloseWait2:
        case S::kPeerFinCloseWait:
          next = S::kClosed;
          break;
        default:
          break;
      }
      break;
    case E::kLocalAbort:
      if (state_ == S::kClosed || state_ == S::kPeerAbortWait ||
          state_ == S::kProcessAbort) {
        break;  // idempotent: the connection is already dead
      }
      if (!abort_sent_) step.send_abort = true;
      abort_sent_ = true;
      aborted_ = true;
      write_shut_ = true;
      step.abort_tcp = true;
      if (!released_) step.error = ECONNABORTED;
      next = released_ ? S::kClosed : S::kPeerAbortWait;
      break;
  }
  // The handler may only go where the table says (fizz's Transition<to>).
  if (!CloseTransitionAllowed(state_, event, next)) {
    step = CloseStep{};
    step.valid = false;
    return step;
  }
  step.reached_closed = next == S::kClosed && state_ != S::kClosed;
  state_ = next;
  return step;
}

CloseMachine::CloseMachine(const CloseMachineState& s)
    : state_(s.state),
      released_(s.released),
      peer_closed_(s.peer_closed),
      write_shut_(s.write_shut),
      peer_write_shut_(s.peer_write_shut),
      aborted_(s.aborted),
      abort_sent_(s.abort_sent) {}

CloseMachineState CloseMachine::SaveState() const {
  return CloseMachineState{.state = state_,
                           .released = released_,
                           .peer_closed = peer_closed_,
                           .write_shut = write_shut_,
                           .peer_write_shut = peer_write_shut_,
                           .aborted = aborted_,
                           .abort_sent = abort_sent_};
}

std::string_view CloseMachine::CheckState(const CloseMachineState& s) {
  if (static_cast<uint8_t>(s.state) > static_cast<uint8_t>(S::kClosed)) {
    return "close state out of range";
  }
  // Every event that sets a flag also leaves ACTIVE.
  if (s.state == S::kActive &&
      (s.released || s.peer_closed || s.write_shut || s.peer_write_shut ||
       s.aborted || s.abort_sent)) {
    return "ACTIVE with close flags set";
  }
  if (s.abort_sent && !(s.aborted && s.write_shut)) {
    return "abort sent but not aborted";
  }
  if (s.peer_closed && !s.peer_write_shut) {
    return "peer closed but still writing";
  }
  return {};
}

std::string_view ToString(CloseState s) {
  switch (s) {
    case S::kActive:
      return "ACTIVE";
    case S::kPeerCloseWait1:
      return "PEERCLOSEWAIT1";
    case S::kPeerCloseWait2:
      return "PEERCLOSEWAIT2";
    case S::kAppCloseWait1:
      return "APPCLOSEWAIT1";
    case S::kAppCloseWait2:
      return "APPCLOSEWAIT2";
    case S::kAppFinCloseWait:
      return "APPFINCLOSEWAIT";
    case S::kPeerFinCloseWait:
      return "PEERFINCLOSEWAIT";
    case S::kPeerAbortWait:
      return "PEERABORTWAIT";
    case S::kProcessAbort:
      return "PROCESSABORT";
    case S::kClosed:
      return "CLOSED";
  }
  return "UNKNOWN";
}

std::string_view ToString(CloseEvent e) {
  switch (e) {
    case E::kAppShutdownWrite:
      return "AppShutdownWrite";
    case E::kAppClose:
      return "AppClose";
    case E::kAppAbort:
      return "AppAbort";
    case E::kPeerDoneWriting:
      return "PeerDoneWriting";
    case E::kPeerClosed:
      return "PeerClosed";
    case E::kPeerAbort:
      return "PeerAbort";
    case E::kLocalAbort:
      return "LocalAbort";
  }
  return "Unknown";
}

std::ostream& operator<<(std::ostream& os, CloseState s) {
  return os << ToString(s);
}
std::ostream& operator<<(std::ostream& os, CloseEvent e) {
  return os << ToString(e);
}

}  // namespace usmc::engine
