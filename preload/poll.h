// preload/poll.h: poll(2)/ppoll(2)/select(2)/pselect(2) over sets that hold
// SMC connections. An SMC-D socket is ready when its shared-memory state
// says so; to sleep, the wait arms the socket's doorbell and polls its wake
// fds in the kernel together with the app's other fds.
#ifndef USMC_PRELOAD_POLL_H_
#define USMC_PRELOAD_POLL_H_

#include <poll.h>
#include <signal.h>
#include <sys/select.h>

namespace usmc::preload {

// True if any fd of the set is one of ours (else: pass straight through).
bool AnyTracked(const pollfd* fds, nfds_t nfds);
// timeout_ms < 0: forever.
int PollImpl(pollfd* fds, nfds_t nfds, int timeout_ms, const sigset_t* sigmask);
// select over PollImpl; timeout_ms < 0: forever. Returns -1 with errno, or
// the number of bits set, and rewrites the sets like select(2).
int SelectImpl(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, int timeout_ms,
               const sigset_t* sigmask);
bool AnyTrackedInSets(int nfds, const fd_set* rd, const fd_set* wr,
                      const fd_set* ex);

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_POLL_H_
