// preload/real.h: the C library's own entry points behind the wrappers, and
// the guard that sends usmc's own calls straight to them.
//
// Every wrapper starts with
//   if (preload::Bypass()) return preload::real().recv(fd, buf, len, flags);
// so calls made while usmc itself runs (the runtime's ::recv on its private
// TCP fd, ::poll on a doorbell...) never re-enter the interposer.
//
//   preload::Inside in;      // RAII: this thread runs usmc code now
//   sock->Recv(buf, len, 0);
#ifndef USMC_PRELOAD_REAL_H_
#define USMC_PRELOAD_REAL_H_

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>

namespace usmc::preload {

// One pointer per wrapped function, resolved with dlsym(RTLD_NEXT).
struct RealFunctions {
  int (*connect)(int, const sockaddr*, socklen_t);
  int (*listen)(int, int);
  int (*accept)(int, sockaddr*, socklen_t*);
  int (*accept4)(int, sockaddr*, socklen_t*, int);
  int (*close)(int);
  int (*shutdown)(int, int);
  ssize_t (*read)(int, void*, size_t);
  ssize_t (*readv)(int, const iovec*, int);
  ssize_t (*write)(int, const void*, size_t);
  ssize_t (*writev)(int, const iovec*, int);
  ssize_t (*recv)(int, void*, size_t, int);
  ssize_t (*recvfrom)(int, void*, size_t, int, sockaddr*, socklen_t*);
  ssize_t (*recvmsg)(int, msghdr*, int);
  int (*recvmmsg)(int, mmsghdr*, unsigned, int, timespec*);
  ssize_t (*send)(int, const void*, size_t, int);
  ssize_t (*sendto)(int, const void*, size_t, int, const sockaddr*, socklen_t);
  ssize_t (*sendmsg)(int, const msghdr*, int);
  int (*sendmmsg)(int, mmsghdr*, unsigned, int);
  ssize_t (*sendfile)(int, int, off_t*, size_t);
  ssize_t (*splice)(int, loff_t*, int, loff_t*, size_t, unsigned);
  int (*getsockopt)(int, int, int, void*, socklen_t*);
  int (*setsockopt)(int, int, int, const void*, socklen_t);
  int (*fcntl)(int, int, ...);
  int (*ioctl)(int, unsigned long, ...);
  int (*dup)(int);
  int (*dup2)(int, int);
  int (*dup3)(int, int, int);
  int (*poll)(pollfd*, nfds_t, int);
  int (*ppoll)(pollfd*, nfds_t, const timespec*, const sigset_t*);
  int (*select)(int, fd_set*, fd_set*, fd_set*, timeval*);
  int (*pselect)(int, fd_set*, fd_set*, fd_set*, const timespec*,
                 const sigset_t*);
  int (*epoll_create)(int);
  int (*epoll_create1)(int);
  int (*epoll_ctl)(int, int, int, epoll_event*);
  int (*epoll_wait)(int, epoll_event*, int, int);
  int (*epoll_pwait)(int, epoll_event*, int, int, const sigset_t*);
  int (*epoll_pwait2)(int, epoll_event*, int, const timespec*, const sigset_t*);
  pid_t (*fork)();
  int (*execve)(const char*, char* const[], char* const[]);
  int (*execveat)(int, const char*, char* const[], char* const[], int);
  int (*fexecve)(int, char* const[], char* const[]);
  int (*close_range)(unsigned, unsigned, int);
  int (*socket)(int, int, int);
};

namespace real_detail {
// Hidden: a load relative to the library, not through the GOT. The
// wrappers read these on every call, before anything else.
#define USMC_HIDDEN __attribute__((visibility("hidden")))
extern USMC_HIDDEN RealFunctions g_real;
extern USMC_HIDDEN std::atomic<bool> g_real_ready;
extern USMC_HIDDEN std::atomic<bool> g_disabled;
// initial-exec: the library is preloaded, so its TLS is in the static block
// and the guard costs one %fs-relative load. __thread, not thread_local: an
// extern thread_local is read through a call that checks for a dynamic
// initializer.
extern USMC_HIDDEN
    __attribute__((tls_model("initial-exec"))) __thread bool t_inside;
const RealFunctions& LoadReal();
#undef USMC_HIDDEN
}  // namespace real_detail

// Resolved on first use (wrappers may run before our constructor); after
// that one load and a branch.
inline const RealFunctions& real() {
  if (__builtin_expect(
          real_detail::g_real_ready.load(std::memory_order_acquire), 1)) {
    return real_detail::g_real;
  }
  return real_detail::LoadReal();
}

// True while this thread runs usmc code, or if the interposer is off.
inline bool Bypass() {
  return real_detail::t_inside ||
         real_detail::g_disabled.load(std::memory_order_relaxed);
}

// Marks the current thread as running usmc code for its lifetime.
class Inside {
 public:
  Inside();
  ~Inside();
  Inside(const Inside&) = delete;
  Inside& operator=(const Inside&) = delete;

 private:
  bool was_;
};

// Turns the interposer off for this process (USMC_DISABLE, bad config).
void DisableInterposer();

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_REAL_H_
