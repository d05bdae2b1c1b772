// preload/epoll.h: epoll for SMC connections, with the app's epoll fd kept a
// real kernel epoll instance.
//
// A socket in SMC-D mode moves its bytes in shared memory, so the kernel
// never sees it become readable. Instead, each SMC connection owns two
// eventfds that mirror its readiness (one readable while the socket is
// readable or hung up, one while it is writable), registered in the app's
// epoll set with the app's own flags (ET, ONESHOT, EXCLUSIVE) and a tag of
// ours as data; the connection's wake fds (doorbell, or the TCP socket and
// handover listener during the handshake) are registered too, so that the
// kernel wakes the epoll set when the peer rings. epoll_wait translates tags
// back to the app's data and re-validates readiness before reporting it.
// Because the kernel does the queueing, nesting the epoll fd in another
// epoll set or in poll() works, and a socket may sit in many epoll sets.
//
// Scan mode (sets of up to kScanMaxSockets registrations that are not
// nested): epoll_wait first reads readiness straight from shared memory and
// keeps the doorbells armed only while it sleeps, so that a busy process
// costs its peers no system call per message (see EpollWait).
#ifndef USMC_PRELOAD_EPOLL_H_
#define USMC_PRELOAD_EPOLL_H_

#include <sys/epoll.h>

#include <atomic>
#include <memory>
#include <vector>

#include "preload/fresh_sockets.h"

namespace usmc::preload {

class Conn;

namespace epoll_detail {
extern __attribute__((visibility("hidden"))) std::atomic<bool> g_any_set;
}  // namespace epoll_detail
// Whether the process made an epoll set of ours (a connection that was not
// plain TCP when it was added): until then epoll_wait is the kernel's.
inline bool AnyEpollSet() {
  return epoll_detail::g_any_set.load(std::memory_order_acquire);
}

int EpollCtl(int epfd, int op, int fd, epoll_event* ev);
// timeout_ms < 0: forever. sigmask may be null.
int EpollWait(int epfd, epoll_event* events, int maxevents, int timeout_ms,
              const sigset_t* sigmask);
// epoll_wait on a set with no registration of ours (every set, until the
// process makes one): the kernel's, but a thread asleep in it is counted,
// so that a set made meanwhile by another thread registers its sockets
// with the kernel at once, and the sleeper, once up, reports them as
// EpollWait does.
int PlainEpollWait(int epfd, epoll_event* events, int maxevents, int timeout_ms,
                   const sigset_t* sigmask);
// `c` was just created for a socket that the app had added to epoll sets
// before it connected (preload/fresh_sockets.h): each item the kernel still
// holds becomes a registration of ours with the app's events and data (a
// ONESHOT that fired stays disarmed).
void AdoptEarlyEpollRegs(const std::shared_ptr<Conn>& c,
                         const std::vector<EarlyEpollItem>& items);
// The last fd of `c` in this process closed: unregister it everywhere.
void DropEpollRegs(Conn& c);
// The app closed an fd: if it was an epoll set, forget it.
void ForgetEpollSet(int epfd);
bool IsTrackedEpollSet(int epfd);
// epoll_create(1) returned `epfd`.
void NoteEpollCreated(int epfd);
bool AnyEpollCreated();
// The app polls `fd` or adds it to an epoll set: if it is an epoll fd, its
// SMC-D sockets must stay visible to the kernel (no scan mode).
void NoteNestedIfEpoll(int fd);

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_EPOLL_H_
