// preload/unattended.h: handshakes that no call of the app drives.
//
// A usmc socket handshakes when the app calls into it (recv, send, poll,
// epoll); Linux does it in the kernel. A server that accepts several
// connections before it touches any (an accept loop, then the work; a
// busy thread pool), or a client that connects ahead of use (a connection
// pool), would leave the peer waiting for its CLC answer until the peer's
// CLC timer runs out, then TCP. So an accept or a non-blocking connect
// that leaves the handshake undecided hands the connection to a progress
// thread (ARCHITECTURE.md, "Handshake"), which, once the app has left it
// alone for 20 ms, sleeps on such connections' sockets and drives them
// until each is decided; the app's own calls drive them too, under the
// socket's lock. It also watches the peers of arena pairs that went idle,
// for a while (WatchIdlePairs). The thread starts on demand, blocks every
// signal, and ends once it has had nothing to do for a second, closing its
// eventfd (an idle process keeps no fd of usmc's). USMC_PROGRESS_THREAD=0 turns
// it off (the app's calls alone drive handshakes).
//
//   NoteUnattended(conn);           // accept / connect: still handshaking
//   UnattendedBeforeFork();         // fork wrapper, around real fork()
//   UnattendedAfterFork(/*child=*/pid == 0);
#ifndef USMC_PRELOAD_UNATTENDED_H_
#define USMC_PRELOAD_UNATTENDED_H_

#include <memory>

namespace usmc::preload {

class Conn;

// `c` was just accepted or connected: noted if its handshake is still
// undecided.
void NoteUnattended(const std::shared_ptr<Conn>& c);

// fork must not copy a socket's lock while the thread holds it: the
// thread is paused (between two steps) across the fork. Afterwards neither
// process's thread drives the connections noted before it: both hold them,
// and the one that uses a connection handshakes it by its calls (a forking
// server's child serves it, the parent closes it).
void UnattendedBeforeFork();
void UnattendedAfterFork(bool child);

// A connection was released (its fds closed): the thread, if it sleeps in
// poll(2) on that connection's TCP socket, holds a reference to the socket
// (the kernel's poll wait entries do) and would keep it open, without a
// FIN to the peer, until that poll's timeout (the CLC deadline). It wakes.
void UnattendedReleased();

// A connection ended (no lock of ours held): if an arena pair went idle,
// the thread watches its peer for a while and drops the pair once the peer
// exited (dev/shm_pairs.h), so an exited client's fds and arenas do not
// stay until the next handshake.
void WatchIdlePairs();

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_UNATTENDED_H_
