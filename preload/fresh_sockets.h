// preload/fresh_sockets.h: TCP sockets that are not connections yet.
//
// A socket becomes ours at connect() (a Conn, preload/conn.h), but the app
// may use it before: nginx adds each upstream socket to epoll (ADD
// IN|OUT|RDHUP|ET) and only then connects, and any program may dup it. The
// kernel's epoll item of such a socket never sees the bytes that arrive in
// shared memory, and a dup's fd number would never reach the Conn (its
// reads would take the CLC bytes off the TCP socket as payload). So
// socket() marks the TCP sockets it returns (one byte per fd number: a
// plain TCP program pays a store at socket() and a load at epoll_ctl, dup
// and close), and for a marked socket this table remembers its fd numbers
// and the epoll registrations the app made of it. connect() ends the
// socket's fresh life (EndFresh): the Conn takes over every fd number, and
// each registration the kernel still holds becomes a usmc registration
// with the app's flags and data (AdoptEarlyEpollRegs, preload/epoll.h).
//
//   int fd = real().socket(AF_INET, SOCK_STREAM, 0);
//   NoteSocketCreated(fd, /*tcp=*/true);
//   ...
//   EndFresh(fd, [&](const FreshSocket& f) { /* install, adopt */ });
#ifndef USMC_PRELOAD_FRESH_SOCKETS_H_
#define USMC_PRELOAD_FRESH_SOCKETS_H_

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

namespace usmc::preload {

// One kernel epoll item the app made of a fresh socket, as it made it.
struct EarlyEpollItem {
  int epfd;
  int fd;  // the fd number it was registered under
  uint32_t events;
  epoll_data_t data;
};

struct FreshSocket {
  std::vector<int> fds;  // every fd number of this process that names it
  std::vector<EarlyEpollItem> items;
};

namespace fresh_detail {
inline constexpr int kMaxFd = 1 << 16;
extern std::atomic<uint8_t> g_fresh[kMaxFd];
}  // namespace fresh_detail

// Whether `fd` is a TCP socket socket() returned that was not connected or
// listening yet (or is being taken over by its Conn right now).
inline bool IsFresh(int fd) {
  return fd >= 0 && fd < fresh_detail::kMaxFd &&
         fresh_detail::g_fresh[fd].load(std::memory_order_acquire) != 0;
}

// socket() returned `fd`; `tcp`: AF_INET/AF_INET6 and SOCK_STREAM.
void NoteSocketCreated(int fd, bool tcp);
// The app's epoll_ctl on a fresh fd: made here and remembered, under the
// table's lock (so no call slips between it and EndFresh). false: `fd` is
// not fresh (any more), the caller goes on as for any fd.
bool FreshEpollCtl(int epfd, int op, int fd, epoll_event* ev, int* result);
// `to` now names the socket of `from` (dup family); `to` was forgotten.
void DuplicateFreshFd(int from, int to);
// `fd` was closed (or replaced by dup2/dup3): its number and the epoll
// items made under it are forgotten (the app cannot name them any more).
void ForgetFreshFd(int fd);
void ForgetFreshFds(unsigned first, unsigned last);  // close_range
// The socket of `fd` connected or listens: it is fresh no more. `adopt`
// (may be empty) runs under the table's lock with what was remembered;
// the socket's fd numbers are unmarked after it.
void EndFresh(int fd, const std::function<void(const FreshSocket&)>& adopt);

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_FRESH_SOCKETS_H_
