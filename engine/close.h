// engine/close.h: the SMC close protocol as a pure state machine.
//
// States and transitions follow the kernel's smc_close.c (PROTOCOL.md §6.1,
// §6.2). Input is one CloseEvent: an app call (shutdown(SHUT_WR), close(),
// abortive close), a connection-state flag newly set in the peer's CDC, or a
// local abnormal termination. Output is the next state plus what to do: which
// flags to add to the CDC we publish, whether to reset TCP, which errno the
// app sees. The (state, event) pairs are declared in one table
// (kCloseTransitions); any other pair is an invalid event and changes nothing.
//
//   CloseMachine m;                       // kActive
//   CloseStep s = m.Handle(CloseEvent::kAppShutdownWrite, /*unread=*/false);
//   // s.send_done_writing, m.state() == CloseState::kPeerCloseWait1
#ifndef USMC_ENGINE_CLOSE_H_
#define USMC_ENGINE_CLOSE_H_

#include <cstdint>
#include <ostream>
#include <span>
#include <string_view>

namespace usmc::engine {

// Names as smcss prints them.
enum class CloseState : uint8_t {
  kActive,
  kPeerCloseWait1,    // we closed or shut WR; waiting for the peer
  kPeerCloseWait2,    // the peer shut WR after our close/shutdown
  kAppCloseWait1,     // the peer closed or shut WR; waiting for the app
  kAppCloseWait2,     // ... and the app shut WR too
  kAppFinCloseWait,   // peer closed after our shutdown; waiting for close()
  kPeerFinCloseWait,  // we closed after the peer's shutdown; waiting for it
  kPeerAbortWait,     // local abnormal termination (ECONNABORTED)
  kProcessAbort,      // the peer aborted (ECONNRESET); waiting for close()
  kClosed,
};

enum class CloseEvent : uint8_t {
  kAppShutdownWrite,  // shutdown(SHUT_WR) or SHUT_RDWR
  kAppClose,          // close() of the last reference
  kAppAbort,          // abortive close (SO_LINGER 0)
  kPeerDoneWriting,   // peer_done_writing newly set in the peer's CDC
  kPeerClosed,        // peer_conn_closed newly set
  kPeerAbort,         // peer_conn_abort newly set
  kLocalAbort,        // we must kill the connection (hostile peer, device lost)
};

std::string_view ToString(CloseState s);
std::string_view ToString(CloseEvent e);
std::ostream& operator<<(std::ostream& os, CloseState s);
std::ostream& operator<<(std::ostream& os, CloseEvent e);

// One row of the declared transition table: in `from`, `event` is legal and
// may lead only to the states in `to`.
struct CloseTransition {
  CloseState from;
  CloseEvent event;
  CloseState to[2];
  uint8_t to_count;
};

// The declared table (docs/engine.md prints it).
std::span<const CloseTransition> CloseTransitions();

// True if (from, event) is declared and `to` is one of its targets.
bool CloseTransitionAllowed(CloseState from, CloseEvent event, CloseState to);

// Everything a CloseMachine knows, for the exec handover (engine/snapshot.h).
struct CloseMachineState {
  CloseState state = CloseState::kActive;
  bool released = false;
  bool peer_closed = false;
  bool write_shut = false;
  bool peer_write_shut = false;
  bool aborted = false;
  bool abort_sent = false;
  bool operator==(const CloseMachineState&) const = default;
};

// What one event asks the caller to do.
struct CloseStep {
  bool valid = true;               // false: undeclared pair, nothing changed
  bool send_done_writing = false;  // publish a CDC with this flag added
  bool send_closed = false;
  bool send_abort = false;
  bool abort_tcp = false;       // reset the TCP connection
  int error = 0;                // errno the app now sees (0: none)
  bool reached_closed = false;  // state became kClosed on this step
};

class CloseMachine {
 public:
  CloseMachine() = default;
  // Builds a machine directly in a state (tests, fizz style).
  CloseMachine(CloseState s, bool released, bool peer_closed)
      : state_(s), released_(released), peer_closed_(peer_closed) {}
  // Rebuilds a machine saved by SaveState (CheckState(s) must be "").
  explicit CloseMachine(const CloseMachineState& s);
  CloseMachineState SaveState() const;
  // "" if `s` is a state some sequence of events reaches, else what is
  // impossible about it (a corrupted snapshot).
  static std::string_view CheckState(const CloseMachineState& s);

  // `unread_data`: bytes are left unread in our DMB; close() then sends
  // abort instead of closed, so the peer sees ECONNRESET.
  CloseStep Handle(CloseEvent event, bool unread_data);

  CloseState state() const { return state_; }
  bool released() const { return released_; }        // app called close()
  bool peer_closed() const { return peer_closed_; }  // peer sent closed/abort
  bool write_shut() const { return write_shut_; }    // we sent done/closed
  bool peer_write_shut() const { return peer_write_shut_; }  // EOF after data
  bool aborted() const { return aborted_; }  // abort sent or received

 private:
  CloseState state_ = CloseState::kActive;
  bool released_ = false;
  bool peer_closed_ = false;
  bool write_shut_ = false;
  bool peer_write_shut_ = false;
  bool aborted_ = false;
  bool abort_sent_ = false;  // our CDC carries peer_conn_abort
};

}  // namespace usmc::engine

#endif  // USMC_ENGINE_CLOSE_H_
