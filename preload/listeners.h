// preload/listeners.h: listening sockets that offer SMC, published for
// `usmc ss -l` (docs/observability.md).
//
// A listener has no Conn (its calls all pass to the kernel), so it is kept
// in a small table of its own: fd -> status slot, shared by the fds that
// dup the same socket. The slot is released when the last of them closes.
//
//   if (real().listen(fd, n) == 0 && opted_in) NoteListening(fd);
//   ForgetListenerFd(fd);             // close, dup2 over it
#ifndef USMC_PRELOAD_LISTENERS_H_
#define USMC_PRELOAD_LISTENERS_H_

#include <cstdint>

namespace usmc::preload {

// `fd` listens now and offers SMC (publishes it, or refreshes its record
// when listen() is called again, e.g. to change the backlog).
void NoteListening(int fd);
// `fd` listens now and would offer SMC, but the negotiation program is not
// attached: not published (it offers nothing), only remembered, so that
// the connections it accepts are published as TCP with that reason.
void NoteListeningUnattached(int fd);
// `fd` listens now and the policy said it offers nothing (docs/config.md):
// remembered only, so that accept() need not ask the negotiation program
// about each connection (a system call; none of them can be ours).
void NoteListeningDenied(int fd);
// What this process noted of listener `fd`: nothing, NoteListening,
// NoteListeningUnattached or NoteListeningDenied. accept() asks once per
// connection: a load (the table's lock only past fd 65535).
enum class ListenerKind : uint8_t { kNone, kOffers, kUnattached, kDenied };
ListenerKind ListenerKindOf(int fd);
// `fd` is closed (or replaced by dup2/dup3).
void ForgetListenerFd(int fd);
// Every listener fd in [first, last] is closed (close_range).
void ForgetListenerFds(unsigned first, unsigned last);
// `to` now refers to the same socket as `from` (dup family).
void DuplicateListenerFd(int from, int to);

// fork: the table's lock is held across fork(); the child publishes its
// inherited listeners in its own status file (as it does connections).
void ListenersBeforeFork();
void ListenersAfterForkParent();
void ListenersAfterForkChild();

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_LISTENERS_H_
