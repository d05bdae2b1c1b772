// base/owned_fd.h: which fd numbers of this process belong to usmc itself
// (DMB memfds, doorbells, the runtime's private dup of a socket, eventfds,
// the status file), so that the application's "close every other fd"
// (close_range, closefrom, a close loop before exec) and its dup2 onto a
// number it believes free leave them alone (docs/preload.md, "fork, exec,
// signals").
//
// Two defences: long-lived fds move to kOwnedFdFloor or above when they are
// made (programs dup2 onto small fixed numbers: 0-2, sshd's 3-5, socket
// activation's 3...), and every owned fd is marked here, which the close
// wrappers consult. Whoever closes an owned fd unmarks it first
// (CloseOwnedFd, or UniqueFd in dev/): a stale mark would make the app's
// close of a later fd with that number fail.
//
//   int fd = base::OwnFd(::eventfd(0, EFD_CLOEXEC));  // moved up, marked
//   ...
//   base::CloseOwnedFd(fd);
#ifndef USMC_BASE_OWNED_FD_H_
#define USMC_BASE_OWNED_FD_H_

namespace usmc::base {

// usmc's long-lived fds take numbers from here up (when the fd limit
// allows).
inline constexpr int kOwnedFdFloor = 64;

// Moves `fd` to kOwnedFdFloor or above if it is below (the new fd is
// FD_CLOEXEC; the old one is closed) and marks it owned. Returns the fd to
// use: the original if it could not move, -1 for -1.
int OwnFd(int fd);
// Marks `fd` owned without moving it.
void MarkOwnedFd(int fd);
// Unmarks `fd` (its owner is about to close it or hand it on).
void DisownFd(int fd);
// Unmarks and closes; the result of close(2).
int CloseOwnedFd(int fd);
bool IsOwnedFd(int fd);

// Calls fn(lo, hi, arg) for every maximal range [lo, hi] within
// [first, last] that holds no owned fd, in increasing order; stops at the
// first non-zero result and returns it.
int ForEachUnownedRange(unsigned first, unsigned last,
                        int (*fn)(unsigned lo, unsigned hi, void* arg),
                        void* arg);

}  // namespace usmc::base

#endif  // USMC_BASE_OWNED_FD_H_
