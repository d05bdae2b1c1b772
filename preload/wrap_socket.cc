// preload/wrap_socket.cc: connection setup and the fd-level calls (connect,
// listen, accept, close, dup, fcntl, ioctl, socket options, poll, epoll).
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "base/owned_fd.h"
#include "negotiate/negotiate.h"
#include "preload/conn.h"
#include "preload/epoll.h"
#include "preload/fresh_sockets.h"
#include "preload/listeners.h"
#include "preload/policy_glue.h"
#include "preload/poll.h"
#include "preload/real.h"
#include "preload/smcr.h"
#include "preload/status.h"

using usmc::preload::Bypass;
using usmc::preload::Conn;
using usmc::preload::Inside;
using usmc::preload::Phase;
using usmc::preload::real;
using usmc::preload::table;
namespace pl = usmc::preload;

namespace {

bool IsInet(const sockaddr* a) {
  return a != nullptr && (a->sa_family == AF_INET || a->sa_family == AF_INET6);
}

// A TCP socket (connect() of an inet address may be UDP's; never SMC's).
bool IsStream(int fd) {
  int type = 0, proto = 0;
  socklen_t tlen = sizeof type, plen = sizeof proto;
  return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 &&
         type == SOCK_STREAM &&
         ::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &plen) == 0 &&
         proto == IPPROTO_TCP;
}

// An AF_INET/AF_INET6 TCP socket (listen() is also called on Unix
// sockets, which never were SMC's).
bool IsTcpListener(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  return ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0 &&
         (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) && IsStream(fd);
}

bool IsNonblocking(int fd) {
  int fl = real().fcntl(fd, F_GETFL);
  return fl >= 0 && (fl & O_NONBLOCK);
}

// After accept: an SMC connection if both ends offered it on the TCP
// handshake, a TCP one with the reason if we offered and the peer did not
// or if the listener would have offered but no eBPF program is attached
// (NONEGOTIATION), and nothing of ours otherwise (not opted in, not TCP).
// `peer`, `peer_len`, `cap`: the app's address buffer after accept and its
// size before (the peer's address, if it fit: the record needs no
// getpeername then).
int AfterAccept(int listen_fd, int fd, const sockaddr* peer = nullptr,
                const socklen_t* peer_len = nullptr, socklen_t cap = 0) {
  if (fd < 0 || Bypass()) return fd;
  Inside in;
  const int saved = errno;
  pl::ForgetFreshFd(fd);                // a mark left by a close we did not see
  if (pl::ListenerDenied(listen_fd)) {  // it offered nothing: plain TCP
    errno = saved;
    return fd;
  }
  usmc::negotiate::Outcome o = usmc::negotiate::QueryOutcome(fd);
  if (o.both_offered() ||
      o.detail == usmc::negotiate::Detail::kPeerDidNotOffer ||
      (pl::HooksAbsent(o) && pl::ListenerUnattached(listen_fd))) {
    auto c = std::make_shared<Conn>(usmc::engine::Role::kServer);
    if (peer != nullptr && peer_len != nullptr && *peer_len <= cap) {
      c->SetKnownPeer(peer, *peer_len);
    }
    table().Install(fd, c);
    c->OnEstablished(fd, /*blocking=*/false, &o);  // never stalls accept()
  }
  errno = saved;
  return fd;
}

// The app's fd `fd` goes away (close, or replaced by dup2): the connection
// ends if no other fd of this process refers to it.
void ForgetFd(int fd) {
  pl::ForgetFreshFd(fd);
  if (std::shared_ptr<Conn> c = table().Remove(fd)) {
    c->ReleaseFromProcess();
    pl::NoteClosed(*c);
  } else {
    pl::ForgetEpollSet(fd);
    pl::ForgetListenerFd(fd);
  }
}

}  // namespace

namespace usmc::preload {
void ForgetFdForProcess(int fd) { ForgetFd(fd); }
}  // namespace usmc::preload

extern "C" {

int socket(int domain, int type, int protocol) {
  const int fd = real().socket(domain, type, protocol);
  if (fd >= 0 && !Bypass()) {
    // Only what connect() may turn into a Conn is tracked until then.
    const bool tcp = (domain == AF_INET || domain == AF_INET6) &&
                     (type & 0xf) == SOCK_STREAM &&
                     (protocol == 0 || protocol == IPPROTO_TCP);
    pl::NoteSocketCreated(fd, tcp);
  }
  return fd;
}

int connect(int fd, const sockaddr* addr, socklen_t len) {
  if (Bypass() || !IsInet(addr) || table().Tracks(fd)) {
    return real().connect(fd, addr, len);
  }
  Inside in;
  const bool allowed = pl::PolicyAllowsConnect(fd, addr, len);
  const bool opted = allowed && usmc::negotiate::OptIn(fd);
  // No program to offer SMC: still a connection of ours, published as TCP
  // with reason NONEGOTIATION (else `usmc ss` and the exit report would
  // show nothing and say nothing).
  const bool unattached =
      allowed && !opted && IsStream(fd) && !usmc::negotiate::HooksPresent(fd);
  // The RDMA device opens while TCP connects, not inside the handshake.
  if (opted) pl::SmcrWarmUpForConnect(addr, len);
  int r = real().connect(fd, addr, len);
  const int err = errno;
  std::shared_ptr<Conn> c;
  if ((opted || unattached) && (r == 0 || err == EINPROGRESS)) {
    c = std::make_shared<Conn>(usmc::engine::Role::kClient);
    if (r == 0) c->SetKnownPeer(addr, len);  // connected: the peer is there
    table().Install(fd, c);
    if (r == 0) {
      c->OnEstablished(fd, /*blocking=*/!IsNonblocking(fd));
    } else {
      // Same-host connects are usually established by now: the Proposal
      // goes out at once, not when the app next calls in (a pool that
      // connects ahead of use would let the server's CLC timer run out).
      (void)c->SettleConnect(fd, /*likely_done=*/true);
    }
  }
  if (r == 0 || err == EINPROGRESS) {
    // What the app did with the socket before: its dups become fds of the
    // connection, and its epoll items ours (unless it is TCP already: then
    // the kernel's items are right as they are).
    pl::EndFresh(fd, [&](const pl::FreshSocket& f) {
      if (!c) return;
      for (int d : f.fds) {
        if (d != fd) table().Install(d, c);
      }
      if (c->phase() != Phase::kTcp) pl::AdoptEarlyEpollRegs(c, f.items);
    });
  }
  errno = err;
  return r;
}

int listen(int fd, int backlog) {
  if (Bypass()) return real().listen(fd, backlog);
  Inside in;
  const bool allowed = pl::PolicyAllowsListen(fd);
  const bool opted = allowed && usmc::negotiate::OptIn(fd);
  const int r = real().listen(fd, backlog);
  if (r == 0) pl::EndFresh(fd, nullptr);  // its readiness stays the kernel's
  if (r == 0 && opted) {
    // Only listeners that offer SMC: the connections of the others are
    // not ours and not published either.
    const int err = errno;
    pl::NoteListening(fd);
    pl::SmcrWarmUpForListener(fd);  // before the first client's Proposal
    errno = err;
  } else if (r == 0 && allowed && IsTcpListener(fd) &&
             !usmc::negotiate::HooksPresent(fd)) {
    // Would offer, but no program is attached: its connections are
    // published as TCP with reason NONEGOTIATION (AfterAccept).
    const int err = errno;
    pl::NoteListeningUnattached(fd);
    errno = err;
  } else if (r == 0 && !allowed) {
    pl::NoteListeningDenied(fd);  // its connections are plain TCP
  }
  return r;
}

int accept(int fd, sockaddr* addr, socklen_t* len) {
  const socklen_t cap = addr != nullptr && len != nullptr ? *len : 0;
  return AfterAccept(fd, real().accept(fd, addr, len), addr, len, cap);
}

int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  const socklen_t cap = addr != nullptr && len != nullptr ? *len : 0;
  return AfterAccept(fd, real().accept4(fd, addr, len, flags), addr, len, cap);
}

int shutdown(int fd, int how) {
  if (!Bypass()) {
    if (auto c = table().Lookup(fd)) return c->Shutdown(fd, how);
  }
  return real().shutdown(fd, how);
}

// usmc's own fds (base/owned_fd.h) are not the app's: a program closing
// every fd it does not know of (a close loop, close_range or closefrom
// before exec, a /proc/self/fd walk) must not take them, or the SMC
// connections they carry die with them. The app sees what it would see
// without usmc, where that number is not open: EBADF for close, nothing
// for the range calls.
int close(int fd) {
  if (!Bypass()) {
    if (usmc::base::IsOwnedFd(fd)) {
      errno = EBADF;
      return -1;
    }
    Inside in;
    ForgetFd(fd);
  }
  return real().close(fd);
}

namespace {

static int RealCloseRange(unsigned first, unsigned last, int flags) {
  if (real().close_range != nullptr) {
    return real().close_range(first, last, flags);
  }
  return static_cast<int>(::syscall(SYS_close_range, first, last, flags));
}

// close_range over [first, last] minus usmc's fds: one call per gap.
// CLOSE_RANGE_CLOEXEC needs no gaps (ours are close-on-exec already, and
// the exec wrapper clears it where a connection moves to the new image).
static int CloseRangeSkippingOurs(unsigned first, unsigned last, int flags) {
  if (flags & CLOSE_RANGE_CLOEXEC) return RealCloseRange(first, last, flags);
  return usmc::base::ForEachUnownedRange(
      first, last,
      [](unsigned lo, unsigned hi, void* f) {
        return RealCloseRange(lo, hi, *static_cast<int*>(f));
      },
      &flags);
}

}  // namespace

int close_range(unsigned first, unsigned last, int flags) {
  if (!Bypass() && !(flags & CLOSE_RANGE_CLOEXEC)) {
    Inside in;
    std::vector<int> fds;
    table().ForEach([&](int fd, const std::shared_ptr<Conn>&) {
      if (static_cast<unsigned>(fd) >= first &&
          static_cast<unsigned>(fd) <= last) {
        fds.push_back(fd);
      }
    });
    for (int fd : fds) ForgetFd(fd);
    pl::ForgetListenerFds(first, last);
    pl::ForgetFreshFds(first, last);
    for (unsigned fd = first; fd <= last && fd < 65536; ++fd) {
      if (pl::IsTrackedEpollSet(static_cast<int>(fd))) {
        pl::ForgetEpollSet(static_cast<int>(fd));
      }
    }
  }
  if (Bypass()) return RealCloseRange(first, last, flags);
  return CloseRangeSkippingOurs(first, last, flags);
}

// glibc's closefrom calls close_range inside the library, past our
// wrapper: it needs its own.
void closefrom(int lowfd) {
  const unsigned low = lowfd < 0 ? 0u : static_cast<unsigned>(lowfd);
  if (close_range(low, ~0u, 0) == 0) return;
  // No close_range (a kernel before 5.9): every open fd from /proc, as
  // glibc's fallback does, through close() (which skips ours).
  Inside in;
  std::vector<int> fds;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    const int dfd = ::dirfd(d);
    while (dirent* e = ::readdir(d)) {
      const int fd = std::atoi(e->d_name);
      if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && fd >= lowfd &&
          fd != dfd) {
        fds.push_back(fd);
      }
    }
    ::closedir(d);
  } else {
    for (int fd = std::max(lowfd, 0); fd < 65536; ++fd) fds.push_back(fd);
  }
  for (int fd : fds) {
    if (usmc::base::IsOwnedFd(fd)) continue;
    ForgetFd(fd);
    real().close(fd);
  }
}

// dup2/dup3 onto a number usmc holds (at kOwnedFdFloor or above, where
// programs rarely aim): replacing it would make usmc ring or read the app's
// file. Refused as the kernel refuses a number another thread is opening.
static int DupOntoOurs(int to) {
  std::fprintf(stderr,
               "usmc: dup2 onto fd %d, which usmc holds for a connection: "
               "refused (EBUSY)\n",
               to);
  errno = EBUSY;
  return -1;
}

int dup(int fd) {
  int r = real().dup(fd);
  if (r >= 0 && !Bypass()) {
    table().Duplicate(fd, r);
    pl::DuplicateListenerFd(fd, r);
    pl::DuplicateFreshFd(fd, r);
  }
  return r;
}

int dup2(int from, int to) {
  if (Bypass() || from == to) return real().dup2(from, to);
  if (usmc::base::IsOwnedFd(to)) return DupOntoOurs(to);
  Inside in;
  int r = real().dup2(from, to);
  if (r >= 0) {
    const int err = errno;
    ForgetFd(to);  // dup2 closed it
    table().Duplicate(from, to);
    pl::DuplicateListenerFd(from, to);
    pl::DuplicateFreshFd(from, to);
    errno = err;
  }
  return r;
}

int dup3(int from, int to, int flags) {
  if (Bypass()) return real().dup3(from, to, flags);
  if (from != to && usmc::base::IsOwnedFd(to)) return DupOntoOurs(to);
  Inside in;
  int r = real().dup3(from, to, flags);
  if (r >= 0) {
    ForgetFd(to);
    table().Duplicate(from, to);
    pl::DuplicateListenerFd(from, to);
    pl::DuplicateFreshFd(from, to);
  }
  return r;
}

static int FcntlImpl(int fd, int cmd, void* arg) {
  const long iarg = reinterpret_cast<long>(arg);
  int r = real().fcntl(fd, cmd, arg);
  if (r < 0 || Bypass()) return r;
  switch (cmd) {
    case F_SETFL:
      if (auto c = table().Lookup(fd)) c->SetNonblocking(iarg & O_NONBLOCK);
      break;
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
      table().Duplicate(fd, r);
      pl::DuplicateListenerFd(fd, r);
      pl::DuplicateFreshFd(fd, r);
      break;
    default:
      break;
  }
  return r;
}

int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return FcntlImpl(fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return FcntlImpl(fd, cmd, arg);
}

int ioctl(int fd, unsigned long req, ...) {
  va_list ap;
  va_start(ap, req);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  if (!Bypass()) {
    if (auto c = table().Lookup(fd)) {
      switch (req) {
        case FIONREAD: {
          int n = c->Readable(fd);
          if (n < 0) return -1;
          *static_cast<int*>(arg) = n;
          return 0;
        }
        case SIOCATMARK:
          *static_cast<int*>(arg) = c->AtMark(fd) ? 1 : 0;
          return 0;
        case FIONBIO: {
          int r = real().ioctl(fd, req, arg);
          if (r == 0) c->SetNonblocking(*static_cast<int*>(arg) != 0);
          return r;
        }
        default:
          break;
      }
    }
  }
  return real().ioctl(fd, req, arg);
}

int getsockopt(int fd, int level, int name, void* val, socklen_t* len) {
  if (!Bypass() && level == SOL_SOCKET && name == SO_ERROR) {
    // A non-blocking connect that finished settles first, so that the
    // app's next call finds the SMC handshake under way.
    if (auto c = table().Lookup(fd)) c->SettleConnect(fd);
  }
  return real().getsockopt(fd, level, name, val, len);
}

int setsockopt(int fd, int level, int name, const void* val, socklen_t len) {
  int r = real().setsockopt(fd, level, name, val, len);
  if (r == 0 && !Bypass() && level == SOL_SOCKET && name == SO_RCVLOWAT &&
      len >= sizeof(int)) {
    if (auto c = table().Lookup(fd)) {
      Inside in;
      c->SetRcvLowat(*static_cast<const int*>(val));
    }
  }
  return r;
}

int poll(pollfd* fds, nfds_t nfds, int timeout) {
  if (Bypass() || !pl::AnyTracked(fds, nfds)) {
    return real().poll(fds, nfds, timeout);
  }
  return pl::PollImpl(fds, nfds, timeout, nullptr);
}

int __poll_chk(pollfd* fds, nfds_t nfds, int timeout, size_t fdslen) {
  if (fdslen / sizeof(*fds) < nfds) __builtin_trap();
  return poll(fds, nfds, timeout);
}

static int TimespecMs(const timespec* ts) {
  if (ts == nullptr) return -1;
  long long ms = static_cast<long long>(ts->tv_sec) * 1000 +
                 (ts->tv_nsec + 999999) / 1000000;
  return static_cast<int>(std::min<long long>(ms, 1 << 30));
}

int ppoll(pollfd* fds, nfds_t nfds, const timespec* ts,
          const sigset_t* sigmask) {
  if (Bypass() || !pl::AnyTracked(fds, nfds)) {
    return real().ppoll(fds, nfds, ts, sigmask);
  }
  return pl::PollImpl(fds, nfds, TimespecMs(ts), sigmask);
}

int __ppoll_chk(pollfd* fds, nfds_t nfds, const timespec* ts,
                const sigset_t* sigmask, size_t fdslen) {
  if (fdslen / sizeof(*fds) < nfds) __builtin_trap();
  return ppoll(fds, nfds, ts, sigmask);
}

int select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, timeval* tv) {
  if (Bypass() || !pl::AnyTrackedInSets(nfds, rd, wr, ex)) {
    return real().select(nfds, rd, wr, ex, tv);
  }
  int ms = -1;
  if (tv != nullptr) {
    long long v =
        static_cast<long long>(tv->tv_sec) * 1000 + (tv->tv_usec + 999) / 1000;
    ms = static_cast<int>(std::min<long long>(v, 1 << 30));
  }
  int r = pl::SelectImpl(nfds, rd, wr, ex, ms, nullptr);
  if (tv != nullptr && r == 0) {
    tv->tv_sec = 0;  // Linux leaves the time not slept; all of it was
    tv->tv_usec = 0;
  }
  return r;
}

int pselect(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, const timespec* ts,
            const sigset_t* sigmask) {
  if (Bypass() || !pl::AnyTrackedInSets(nfds, rd, wr, ex)) {
    return real().pselect(nfds, rd, wr, ex, ts, sigmask);
  }
  return pl::SelectImpl(nfds, rd, wr, ex, TimespecMs(ts), sigmask);
}

int epoll_create(int size) {
  int fd = real().epoll_create(size);
  if (fd >= 0 && !Bypass()) pl::NoteEpollCreated(fd);
  return fd;
}

int epoll_create1(int flags) {
  int fd = real().epoll_create1(flags);
  if (fd >= 0 && !Bypass()) pl::NoteEpollCreated(fd);
  return fd;
}

int epoll_ctl(int epfd, int op, int fd, epoll_event* ev) {
  if (Bypass()) return real().epoll_ctl(epfd, op, fd, ev);
  return pl::EpollCtl(epfd, op, fd, ev);
}

int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout) {
  if (!pl::AnyEpollSet() || Bypass()) {
    return real().epoll_wait(epfd, events, maxevents, timeout);
  }
  return pl::EpollWait(epfd, events, maxevents, timeout, nullptr);
}

int epoll_pwait(int epfd, epoll_event* events, int maxevents, int timeout,
                const sigset_t* sigmask) {
  if (!pl::AnyEpollSet() || Bypass()) {
    return real().epoll_pwait(epfd, events, maxevents, timeout, sigmask);
  }
  return pl::EpollWait(epfd, events, maxevents, timeout, sigmask);
}

int epoll_pwait2(int epfd, epoll_event* events, int maxevents,
                 const timespec* ts, const sigset_t* sigmask) {
  if (Bypass()) {
    return real().epoll_pwait2(epfd, events, maxevents, ts, sigmask);
  }
  return pl::EpollWait(epfd, events, maxevents, TimespecMs(ts), sigmask);
}

}  // extern "C"
