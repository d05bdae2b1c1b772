// The close machine, one (state, event) at a time (fizz style): build the
// machine in a state, feed one event, check the step and the next state.
#include "engine/close.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace usmc::engine {
namespace {

using S = CloseState;
using E = CloseEvent;

constexpr S kAllStates[] = {S::kActive,           S::kPeerCloseWait1,
                            S::kPeerCloseWait2,   S::kAppCloseWait1,
                            S::kAppCloseWait2,    S::kAppFinCloseWait,
                            S::kPeerFinCloseWait, S::kPeerAbortWait,
                            S::kProcessAbort,     S::kClosed};
constexpr E kAllEvents[] = {E::kAppShutdownWrite, E::kAppClose,   E::kAppAbort,
                            E::kPeerDoneWriting,  E::kPeerClosed, E::kPeerAbort,
                            E::kLocalAbort};

TEST(CloseMachine, ShutdownWriteInActiveSendsDoneWriting) {
  CloseMachine m;
  CloseStep s = m.Handle(E::kAppShutdownWrite, false);
  EXPECT_TRUE(s.valid);
  EXPECT_TRUE(s.send_done_writing);
  EXPECT_FALSE(s.send_closed);
  EXPECT_EQ(m.state(), S::kPeerCloseWait1);
  EXPECT_TRUE(m.write_shut());
  EXPECT_FALSE(m.released());
}

TEST(CloseMachine, CloseInActiveSendsClosed) {
  CloseMachine m;
  CloseStep s = m.Handle(E::kAppClose, false);
  EXPECT_TRUE(s.send_closed);
  EXPECT_FALSE(s.send_abort);
  EXPECT_EQ(m.state(), S::kPeerCloseWait1);
  EXPECT_TRUE(m.released());
}

TEST(CloseMachine, CloseWithUnreadDataSendsAbort) {
  CloseMachine m;
  CloseStep s = m.Handle(E::kAppClose, /*unread_data=*/true);
  EXPECT_TRUE(s.send_abort);
  EXPECT_FALSE(s.send_closed);
  EXPECT_EQ(m.state(), S::kPeerCloseWait1);
}

TEST(CloseMachine, PeerDoneWritingInActive) {
  CloseMachine m;
  CloseStep s = m.Handle(E::kPeerDoneWriting, false);
  EXPECT_FALSE(s.send_done_writing || s.send_closed || s.send_abort);
  EXPECT_EQ(m.state(), S::kAppCloseWait1);
  EXPECT_TRUE(m.peer_write_shut());
  EXPECT_FALSE(m.peer_closed());
}

TEST(CloseMachine, PeerAbortInActiveIsEconnreset) {
  CloseMachine m;
  CloseStep s = m.Handle(E::kPeerAbort, false);
  EXPECT_EQ(s.error, ECONNRESET);
  EXPECT_EQ(m.state(), S::kProcessAbort);
  // close() then answers with an abort.
  s = m.Handle(E::kAppClose, false);
  EXPECT_TRUE(s.send_abort);
  EXPECT_TRUE(s.reached_closed);
  EXPECT_EQ(m.state(), S::kClosed);
}

TEST(CloseMachine, LocalAbortIsEconnabortedAndIdempotent) {
  CloseMachine m;
  CloseStep s = m.Handle(E::kLocalAbort, false);
  EXPECT_EQ(s.error, ECONNABORTED);
  EXPECT_TRUE(s.send_abort);
  EXPECT_TRUE(s.abort_tcp);
  EXPECT_EQ(m.state(), S::kPeerAbortWait);
  s = m.Handle(E::kLocalAbort, false);
  EXPECT_TRUE(s.valid);
  EXPECT_EQ(s.error, 0);
  EXPECT_FALSE(s.send_abort || s.abort_tcp);
  EXPECT_EQ(m.state(), S::kPeerAbortWait);
  s = m.Handle(E::kAppClose, false);
  EXPECT_TRUE(s.reached_closed);
  EXPECT_FALSE(s.send_abort);  // already sent
}

TEST(CloseMachine, PeerCloseWait1Transitions) {
  {
    CloseMachine m(S::kPeerCloseWait1, /*released=*/false, false);
    m.Handle(E::kPeerDoneWriting, false);
    EXPECT_EQ(m.state(), S::kPeerCloseWait2);
  }
  {
    CloseMachine m(S::kPeerCloseWait1, /*released=*/true, false);
    CloseStep s = m.Handle(E::kPeerClosed, false);
    EXPECT_TRUE(s.reached_closed);
    EXPECT_EQ(m.state(), S::kClosed);
  }
  {
    CloseMachine m(S::kPeerCloseWait1, /*released=*/false, false);
    m.Handle(E::kPeerClosed, false);
    EXPECT_EQ(m.state(), S::kAppFinCloseWait);
  }
  {
    CloseMachine m(S::kPeerCloseWait1, /*released=*/false, false);
    CloseStep s = m.Handle(E::kPeerAbort, false);
    EXPECT_EQ(s.error, ECONNRESET);
    EXPECT_EQ(m.state(), S::kProcessAbort);
  }
  {
    CloseMachine m(S::kPeerCloseWait1, /*released=*/true, false);
    CloseStep s = m.Handle(E::kPeerAbort, false);
    EXPECT_EQ(s.error, 0);  // nobody left to tell
    EXPECT_EQ(m.state(), S::kClosed);
  }
}

TEST(CloseMachine, AppCloseWaitTransitions) {
  {
    CloseMachine m(S::kAppCloseWait1, false, /*peer_closed=*/false);
    CloseStep s = m.Handle(E::kAppShutdownWrite, false);
    EXPECT_TRUE(s.send_done_writing);
    EXPECT_EQ(m.state(), S::kAppCloseWait2);
  }
  {
    CloseMachine m(S::kAppCloseWait1, false, /*peer_closed=*/false);
    CloseStep s = m.Handle(E::kAppClose, false);
    EXPECT_TRUE(s.send_closed);
    EXPECT_EQ(m.state(), S::kPeerFinCloseWait);
  }
  {
    CloseMachine m(S::kAppCloseWait1, false, /*peer_closed=*/true);
    CloseStep s = m.Handle(E::kAppClose, false);
    EXPECT_TRUE(s.send_closed);
    EXPECT_TRUE(s.reached_closed);
  }
  {
    CloseMachine m(S::kAppCloseWait2, false, false);
    CloseStep s = m.Handle(E::kPeerAbort, false);
    EXPECT_EQ(s.error, ECONNRESET);
    EXPECT_EQ(m.state(), S::kClosed);
  }
}

TEST(CloseMachine, FinCloseWaits) {
  {
    CloseMachine m(S::kAppFinCloseWait, false, true);
    CloseStep s = m.Handle(E::kAppClose, false);
    EXPECT_TRUE(s.send_closed);
    EXPECT_EQ(m.state(), S::kClosed);
  }
  {
    CloseMachine m(S::kPeerFinCloseWait, true, false);
    CloseStep s = m.Handle(E::kPeerClosed, false);
    EXPECT_TRUE(s.reached_closed);
    EXPECT_EQ(m.state(), S::kClosed);
  }
}

TEST(CloseMachine, AbortFromAnyLiveStateGoesToClosed) {
  for (S from : kAllStates) {
    CloseMachine m(from, false, false);
    CloseStep s = m.Handle(E::kAppAbort, false);
    if (from == S::kPeerFinCloseWait) {
      EXPECT_FALSE(s.valid);  // the app already released it
      continue;
    }
    EXPECT_TRUE(s.valid) << from;
    EXPECT_EQ(m.state(), S::kClosed) << from;
    EXPECT_TRUE(m.released());
  }
}

TEST(CloseMachine, DoubleCloseIsInvalid) {
  CloseMachine m;
  ASSERT_TRUE(m.Handle(E::kAppClose, false).valid);
  const CloseStep s = m.Handle(E::kAppClose, false);
  EXPECT_FALSE(s.valid);
  EXPECT_EQ(m.state(), S::kPeerCloseWait1);
}

// Every pair the table does not declare is invalid and changes nothing;
// every declared pair moves only to a declared target.
TEST(CloseMachine, TableIsTheOnlyWayToMove) {
  for (S from : kAllStates) {
    for (E ev : kAllEvents) {
      for (bool released : {false, true}) {
        CloseMachine m(from, released, false);
        const CloseStep s = m.Handle(ev, false);
        bool declared = false;
        for (const CloseTransition& t : CloseTransitions()) {
          declared |= t.from == from && t.event == ev;
        }
        if (!declared) {
          EXPECT_FALSE(s.valid) << from << " " << ev;
          EXPECT_EQ(m.state(), from) << from << " " << ev;
        } else if (s.valid) {
          EXPECT_TRUE(CloseTransitionAllowed(from, ev, m.state()))
              << from << " " << ev << " -> " << m.state();
        } else {
          EXPECT_EQ(m.state(), from);
        }
      }
    }
  }
}

TEST(CloseMachine, EveryStateHasAName) {
  for (S s : kAllStates) EXPECT_NE(ToString(s), "UNKNOWN");
  for (E e : kAllEvents) EXPECT_NE(ToString(e), "Unknown");
  EXPECT_EQ(ToString(S::kPeerCloseWait1), "PEERCLOSEWAIT1");
}

}  // namespace
}  // namespace usmc::engine
