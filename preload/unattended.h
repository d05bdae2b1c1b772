// preload/unattended.h: server handshakes that no call of the app drives.
//
// A usmc server handshakes when the app calls into the accepted socket
// (recv, send, poll, epoll); Linux does it in the kernel, before accept. A
// server that accepts several connections before it touches any (an accept
// loop, then the work; a thread pool that is busy) would leave each
// client's blocking connect() waiting for the CLC answer until the CLC
// timeout, then TCP. So an accept that leaves the handshake undecided hands
// the connection to a progress thread (ARCHITECTURE.md, "Handshake"),
// which, once the app has left it alone for 20 ms, sleeps on such
// connections' sockets and drives them until each is decided; the app's
// own calls drive them too, under the socket's lock. The
// thread starts on demand, blocks every signal, and ends once it has had
// nothing to drive for a second.
//
//   NoteUnattended(conn);           // accept: still handshaking
//   UnattendedBeforeFork();         // fork wrapper, around real fork()
//   UnattendedAfterFork(/*child=*/pid == 0);
#ifndef USMC_PRELOAD_UNATTENDED_H_
#define USMC_PRELOAD_UNATTENDED_H_

#include <memory>

namespace usmc::preload {

class Conn;

// `c` was just accepted: noted if its handshake is still undecided.
void NoteUnattended(const std::shared_ptr<Conn>& c);

// fork must not copy a socket's lock while the thread holds it: the
// thread is paused (between two steps) across the fork. Afterwards neither
// process's thread drives the connections noted before it: both hold them,
// and the one that uses a connection handshakes it by its calls (a forking
// server's child serves it, the parent closes it).
void UnattendedBeforeFork();
void UnattendedAfterFork(bool child);

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_UNATTENDED_H_
