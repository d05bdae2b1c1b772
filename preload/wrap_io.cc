// preload/wrap_io.cc: the data-path entry points (read/write family,
// sendfile, splice). A call on an fd that is not a connection of ours costs
// one load of its kind (ConnTable::Kind) before it reaches the C library;
// one on a connection that is plain TCP for good (kPassThru) that load, a
// thread-local load, and a relaxed load and store per counter.
#include <errno.h>
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "preload/conn.h"
#include "preload/pass.h"
#include "preload/real.h"

using usmc::preload::Bypass;
using usmc::preload::Conn;
using usmc::preload::ConnTable;
using usmc::preload::FdKind;
using usmc::preload::Inside;
using usmc::preload::Phase;
using usmc::preload::real;
using usmc::preload::RealFunctions;
using usmc::preload::table;

namespace {

std::shared_ptr<Conn> Smc(int fd) {
  if (Bypass()) return nullptr;
  return table().Lookup(fd);
}

// fd's kind for a wrapper; kNone while usmc itself runs (its calls are not
// the app's and are never counted).
inline __attribute__((always_inline)) FdKind KindOf(int fd) {
  const FdKind k = ConnTable::Kind(fd);
  return k != FdKind::kNone && Bypass() ? FdKind::kNone : k;
}

// A call that passes through on a kConn fd: once its Conn is TCP for good,
// the fd's next calls take the kPassThru path.
void MaybePassThru(int fd, const std::shared_ptr<Conn>& c) {
  if (c->TcpForGood()) table().MarkPassThru(fd, c);
}

enum Dir { kIn, kOut };

// A wrapper's dispatch: `call` (given the C library's entry points) for an
// fd that is not ours, the same counted as `dir` for one that is TCP for
// good, else `slow` (a Conn), kept out of line so that the two fast paths
// save no registers for it.
template <Dir dir, typename Call, typename Slow>
inline __attribute__((always_inline)) ssize_t Dispatch(int fd, Call call,
                                                       Slow slow) {
  switch (KindOf(fd)) {
    case FdKind::kNone:
      return call(real());
    case FdKind::kPassThru: {
      // A Conn exists, so the entry points were resolved long ago.
      const ssize_t n = call(usmc::preload::real_detail::g_real);
      return dir == kIn ? ConnTable::CountPassIn(fd, n)
                        : ConnTable::CountPassOut(fd, n);
    }
    case FdKind::kConn:
      break;
  }
  return slow();
}

// Whether a message's control data may carry fds (preload/pass.h).
bool MayPassFds(const msghdr* msg) {
  return msg != nullptr && msg->msg_control != nullptr &&
         msg->msg_controllen >= sizeof(cmsghdr) && !Bypass();
}

size_t IovTotal(const iovec* iov, int cnt) {
  size_t total = 0;
  for (int i = 0; i < cnt; ++i) total += iov[i].iov_len;
  return total;
}

// Scatter receive: the first non-empty iovec may block (as the flags say),
// the rest take only what is there. MSG_PEEK and MSG_WAITALL go through a
// bounce buffer so that their all-or-nothing meaning holds across iovecs.
ssize_t RecvIov(Conn& c, int fd, const iovec* iov, int cnt, int flags) {
  if (cnt < 0) {
    errno = EINVAL;
    return -1;
  }
  if (cnt == 1) return c.Recv(fd, iov[0].iov_base, iov[0].iov_len, flags);
  const size_t total = IovTotal(iov, cnt);
  if (flags & (MSG_PEEK | MSG_WAITALL)) {
    std::vector<char> bounce(total);
    ssize_t n = c.Recv(fd, bounce.data(), total, flags);
    size_t off = 0;
    for (int i = 0; i < cnt && n > 0 && off < static_cast<size_t>(n); ++i) {
      size_t k = std::min(iov[i].iov_len, static_cast<size_t>(n) - off);
      std::memcpy(iov[i].iov_base, bounce.data() + off, k);
      off += k;
    }
    return n;
  }
  ssize_t done = 0;
  for (int i = 0; i < cnt; ++i) {
    if (iov[i].iov_len == 0) continue;
    ssize_t n = c.Recv(fd, iov[i].iov_base, iov[i].iov_len,
                       done > 0 ? flags | MSG_DONTWAIT : flags);
    if (n < 0) return done > 0 ? done : -1;
    done += n;
    if (static_cast<size_t>(n) < iov[i].iov_len) break;
  }
  return done;
}

// Gather send: each iovec in turn; stops at a short write (non-blocking).
// MSG_OOB marks only the last byte of the whole call urgent.
ssize_t SendIov(Conn& c, int fd, const iovec* iov, int cnt, int flags) {
  if (cnt < 0) {
    errno = EINVAL;
    return -1;
  }
  int last = -1;
  for (int i = 0; i < cnt; ++i) {
    if (iov[i].iov_len > 0) last = i;
  }
  if (last < 0) return c.Send(fd, nullptr, 0, flags & ~MSG_OOB);
  ssize_t done = 0;
  for (int i = 0; i <= last; ++i) {
    if (iov[i].iov_len == 0) continue;
    int f = i == last ? flags : flags & ~MSG_OOB;
    ssize_t n = c.Send(fd, iov[i].iov_base, iov[i].iov_len, f);
    if (n < 0) return done > 0 ? done : -1;
    done += n;
    if (static_cast<size_t>(n) < iov[i].iov_len) break;
  }
  return done;
}

}  // namespace

extern "C" {

[[gnu::noinline]] static ssize_t SlowRead(int fd, void* buf, size_t n) {
  if (auto c = table().Lookup(fd)) {
    if (c->PassThrough(fd, /*read=*/true)) {
      MaybePassThru(fd, c);
      return c->CountIn(real().read(fd, buf, n));
    }
    return c->Recv(fd, buf, n, 0);
  }
  return real().read(fd, buf, n);
}

ssize_t read(int fd, void* buf, size_t n) {
  return Dispatch<kIn>(
      fd, [&](const RealFunctions& r) { return r.read(fd, buf, n); },
      [&] { return SlowRead(fd, buf, n); });
}

ssize_t __read_chk(int fd, void* buf, size_t n, size_t buflen) {
  if (n > buflen) __builtin_trap();  // what glibc's check does: abort
  return read(fd, buf, n);
}

[[gnu::noinline]] static ssize_t SlowReadv(int fd, const iovec* iov, int cnt) {
  if (auto c = table().Lookup(fd)) {
    if (c->PassThrough(fd, /*read=*/true)) {
      MaybePassThru(fd, c);
      return c->CountIn(real().readv(fd, iov, cnt));
    }
    return RecvIov(*c, fd, iov, cnt, 0);
  }
  return real().readv(fd, iov, cnt);
}

ssize_t readv(int fd, const iovec* iov, int cnt) {
  return Dispatch<kIn>(
      fd, [&](const RealFunctions& r) { return r.readv(fd, iov, cnt); },
      [&] { return SlowReadv(fd, iov, cnt); });
}

[[gnu::noinline]] static ssize_t SlowWrite(int fd, const void* buf, size_t n) {
  if (auto c = table().Lookup(fd)) {
    if (c->PassThrough(fd, /*read=*/false)) {
      MaybePassThru(fd, c);
      return c->CountOut(real().write(fd, buf, n));
    }
    return c->Send(fd, buf, n, 0);
  }
  return real().write(fd, buf, n);
}

ssize_t write(int fd, const void* buf, size_t n) {
  return Dispatch<kOut>(
      fd, [&](const RealFunctions& r) { return r.write(fd, buf, n); },
      [&] { return SlowWrite(fd, buf, n); });
}

[[gnu::noinline]] static ssize_t SlowWritev(int fd, const iovec* iov, int cnt) {
  if (auto c = table().Lookup(fd)) {
    if (c->PassThrough(fd, /*read=*/false)) {
      MaybePassThru(fd, c);
      return c->CountOut(real().writev(fd, iov, cnt));
    }
    return SendIov(*c, fd, iov, cnt, 0);
  }
  return real().writev(fd, iov, cnt);
}

ssize_t writev(int fd, const iovec* iov, int cnt) {
  return Dispatch<kOut>(
      fd, [&](const RealFunctions& r) { return r.writev(fd, iov, cnt); },
      [&] { return SlowWritev(fd, iov, cnt); });
}

[[gnu::noinline]] static ssize_t SlowRecv(int fd, void* buf, size_t n,
                                          int flags) {
  if (auto c = table().Lookup(fd)) {
    if (c->PassThrough(fd, /*read=*/true)) {
      MaybePassThru(fd, c);
      return c->CountIn(real().recv(fd, buf, n, flags));
    }
    return c->Recv(fd, buf, n, flags);
  }
  return real().recv(fd, buf, n, flags);
}

ssize_t recv(int fd, void* buf, size_t n, int flags) {
  return Dispatch<kIn>(
      fd, [&](const RealFunctions& r) { return r.recv(fd, buf, n, flags); },
      [&] { return SlowRecv(fd, buf, n, flags); });
}

ssize_t __recv_chk(int fd, void* buf, size_t n, size_t buflen, int flags) {
  if (n > buflen) __builtin_trap();
  return recv(fd, buf, n, flags);
}

[[gnu::noinline]] static ssize_t SlowRecvfrom(int fd, void* buf, size_t n,
                                              int flags, sockaddr* addr,
                                              socklen_t* addrlen) {
  if (auto c = table().Lookup(fd)) {
    if (c->PassThrough(fd, /*read=*/true)) {
      MaybePassThru(fd, c);
      return c->CountIn(real().recvfrom(fd, buf, n, flags, addr, addrlen));
    }
    ssize_t r = c->Recv(fd, buf, n, flags);
    // TCP reports no source address (as the kernel does for TCP).
    if (r >= 0 && addr != nullptr && addrlen != nullptr) *addrlen = 0;
    return r;
  }
  return real().recvfrom(fd, buf, n, flags, addr, addrlen);
}

ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* addr,
                 socklen_t* addrlen) {
  return Dispatch<kIn>(
      fd,
      [&](const RealFunctions& r) {
        return r.recvfrom(fd, buf, n, flags, addr, addrlen);
      },
      [&] { return SlowRecvfrom(fd, buf, n, flags, addr, addrlen); });
}

ssize_t __recvfrom_chk(int fd, void* buf, size_t n, size_t buflen, int flags,
                       sockaddr* addr, socklen_t* addrlen) {
  if (n > buflen) __builtin_trap();
  return recvfrom(fd, buf, n, flags, addr, addrlen);
}

[[gnu::noinline]] static ssize_t SlowRecvmsg(int fd, msghdr* msg, int flags) {
  if (auto c = table().Lookup(fd)) {
    if (c->PassThrough(fd, /*read=*/true)) {
      MaybePassThru(fd, c);
      return c->CountIn(real().recvmsg(fd, msg, flags));
    }
    ssize_t r =
        RecvIov(*c, fd, msg->msg_iov, static_cast<int>(msg->msg_iovlen), flags);
    if (r >= 0) {
      msg->msg_namelen = 0;
      msg->msg_controllen = 0;
      msg->msg_flags = 0;
    }
    return r;
  }
  return real().recvmsg(fd, msg, flags);
}

ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  switch (KindOf(fd)) {
    case FdKind::kNone:
      // Not ours: it may carry fds (preload/pass.h).
      if (MayPassFds(msg)) return usmc::preload::RecvmsgPassing(fd, msg, flags);
      return real().recvmsg(fd, msg, flags);
    case FdKind::kPassThru:
      return ConnTable::CountPassIn(
          fd, usmc::preload::real_detail::g_real.recvmsg(fd, msg, flags));
    case FdKind::kConn:
      break;
  }
  return SlowRecvmsg(fd, msg, flags);
}

int recvmmsg(int fd, mmsghdr* vec, unsigned vlen, int flags, timespec* tmo) {
  auto c = Smc(fd);
  if (!c) return real().recvmmsg(fd, vec, vlen, flags, tmo);
  if (c->PassThrough(fd, /*read=*/true)) {
    int r = real().recvmmsg(fd, vec, vlen, flags, tmo);
    for (int i = 0; i < r; ++i) c->CountIn(vec[i].msg_len);
    return r;
  }
  // Stream sockets fill one message per call; after the first, take only
  // what is there (MSG_WAITFORONE is how TCP behaves here anyway).
  unsigned got = 0;
  const int base = flags & ~MSG_WAITFORONE;
  for (; got < vlen; ++got) {
    ssize_t r =
        recvmsg(fd, &vec[got].msg_hdr, got == 0 ? base : base | MSG_DONTWAIT);
    if (r < 0) break;
    vec[got].msg_len = static_cast<unsigned>(r);
    if (r == 0) {
      ++got;
      break;
    }
  }
  return got > 0 ? static_cast<int>(got) : -1;
}

[[gnu::noinline]] static ssize_t SlowSend(int fd, const void* buf, size_t n,
                                          int flags) {
  if (auto c = table().Lookup(fd)) {
    if (c->PassThrough(fd, /*read=*/false)) {
      MaybePassThru(fd, c);
      return c->CountOut(real().send(fd, buf, n, flags));
    }
    return c->Send(fd, buf, n, flags);
  }
  return real().send(fd, buf, n, flags);
}

ssize_t send(int fd, const void* buf, size_t n, int flags) {
  return Dispatch<kOut>(
      fd, [&](const RealFunctions& r) { return r.send(fd, buf, n, flags); },
      [&] { return SlowSend(fd, buf, n, flags); });
}

[[gnu::noinline]] static ssize_t SlowSendto(int fd, const void* buf, size_t n,
                                            int flags, const sockaddr* addr,
                                            socklen_t addrlen) {
  if (auto c = table().Lookup(fd)) {
    if (c->PassThrough(fd, /*read=*/false)) {
      MaybePassThru(fd, c);
      return c->CountOut(real().sendto(fd, buf, n, flags, addr, addrlen));
    }
    // A connected TCP socket ignores the address.
    return c->Send(fd, buf, n, flags);
  }
  return real().sendto(fd, buf, n, flags, addr, addrlen);
}

ssize_t sendto(int fd, const void* buf, size_t n, int flags,
               const sockaddr* addr, socklen_t addrlen) {
  return Dispatch<kOut>(
      fd,
      [&](const RealFunctions& r) {
        return r.sendto(fd, buf, n, flags, addr, addrlen);
      },
      [&] { return SlowSendto(fd, buf, n, flags, addr, addrlen); });
}

[[gnu::noinline]] static ssize_t SlowSendmsg(int fd, const msghdr* msg,
                                             int flags) {
  if (auto c = table().Lookup(fd)) {
    if (c->PassThrough(fd, /*read=*/false)) {
      MaybePassThru(fd, c);
      return c->CountOut(real().sendmsg(fd, msg, flags));
    }
    return SendIov(*c, fd, msg->msg_iov, static_cast<int>(msg->msg_iovlen),
                   flags);
  }
  return real().sendmsg(fd, msg, flags);
}

ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  switch (KindOf(fd)) {
    case FdKind::kNone:
      // Not ours: it may carry fds (preload/pass.h).
      if (MayPassFds(msg)) return usmc::preload::SendmsgPassing(fd, msg, flags);
      return real().sendmsg(fd, msg, flags);
    case FdKind::kPassThru:
      return ConnTable::CountPassOut(
          fd, usmc::preload::real_detail::g_real.sendmsg(fd, msg, flags));
    case FdKind::kConn:
      break;
  }
  return SlowSendmsg(fd, msg, flags);
}

int sendmmsg(int fd, mmsghdr* vec, unsigned vlen, int flags) {
  auto c = Smc(fd);
  bool fds = false;  // then one sendmsg each, which carries connections
  for (unsigned i = 0; !c && i < vlen && !fds; ++i) {
    fds = MayPassFds(&vec[i].msg_hdr);
  }
  if (!c && !fds) return real().sendmmsg(fd, vec, vlen, flags);
  if (c && c->PassThrough(fd, /*read=*/false)) {
    int r = real().sendmmsg(fd, vec, vlen, flags);
    for (int i = 0; i < r; ++i) c->CountOut(vec[i].msg_len);
    return r;
  }
  unsigned sent = 0;
  for (; sent < vlen; ++sent) {
    ssize_t r = sendmsg(fd, &vec[sent].msg_hdr, flags);
    if (r < 0) break;
    vec[sent].msg_len = static_cast<unsigned>(r);
  }
  return sent > 0 ? static_cast<int>(sent) : -1;
}

// sendfile to an SMC socket: read the file, send the bytes, and move the
// file offset by what was really sent.
ssize_t sendfile(int out_fd, int in_fd, off_t* offset, size_t count) {
  auto c = Smc(out_fd);
  if (!c) return real().sendfile(out_fd, in_fd, offset, count);
  if (c->PassThrough(out_fd, /*read=*/false)) {
    return c->CountOut(real().sendfile(out_fd, in_fd, offset, count));
  }
  Inside in;
  off_t pos = offset ? *offset : ::lseek(in_fd, 0, SEEK_CUR);
  const bool seekable = pos >= 0;
  std::vector<char> buf(std::min<size_t>(count, 256 * 1024));
  size_t done = 0;
  while (done < count) {
    size_t want = std::min(buf.size(), count - done);
    ssize_t got = seekable ? ::pread(in_fd, buf.data(), want, pos)
                           : real().read(in_fd, buf.data(), want);
    if (got < 0) {
      if (done > 0) break;
      return -1;
    }
    if (got == 0) break;
    ssize_t sent = c->Send(out_fd, buf.data(), static_cast<size_t>(got),
                           done > 0 ? MSG_DONTWAIT : 0);
    if (sent < 0) {
      if (done > 0) break;
      return -1;
    }
    done += static_cast<size_t>(sent);
    pos += sent;
    if (sent < got) break;
  }
  if (offset) {
    *offset = pos;
  } else if (seekable) {
    ::lseek(in_fd, pos, SEEK_SET);
  }
  return static_cast<ssize_t>(done);
}

ssize_t sendfile64(int out_fd, int in_fd, off_t* offset, size_t count) {
  return sendfile(out_fd, in_fd, offset, count);
}

// splice to or from an SMC socket, through a buffer. From the socket the
// bytes are peeked first and consumed only once the pipe took them, so
// nothing is lost when the pipe is full.
ssize_t splice(int fd_in, loff_t* off_in, int fd_out, loff_t* off_out,
               size_t len, unsigned flags) {
  auto cin = Smc(fd_in);
  auto cout = Smc(fd_out);
  // PassThrough, not the phase alone: a TCP connection may still have a
  // late CLC message of the peer's to drop, which the kernel would splice
  // into the app's pipe.
  const bool in_raw = !cin || cin->PassThrough(fd_in, /*read=*/true);
  const bool out_raw = !cout || cout->PassThrough(fd_out, /*read=*/false);
  if (in_raw && out_raw) {
    const ssize_t n = real().splice(fd_in, off_in, fd_out, off_out, len, flags);
    if (cin) cin->CountIn(n);
    if (cout) cout->CountOut(n);
    return n;
  }
  Inside in;
  const int dontwait = (flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0;
  std::vector<char> buf(std::min<size_t>(len, 64 * 1024));
  if (!in_raw) {
    ssize_t n = cin->Recv(fd_in, buf.data(), buf.size(), MSG_PEEK | dontwait);
    if (n <= 0) return n;
    ssize_t w = off_out ? ::pwrite(fd_out, buf.data(), n, *off_out)
                        : real().write(fd_out, buf.data(), n);
    if (w <= 0) return w;
    if (off_out) *off_out += w;
    return cin->Recv(fd_in, buf.data(), static_cast<size_t>(w), 0);
  }
  ssize_t n = off_in ? ::pread(fd_in, buf.data(), buf.size(), *off_in)
                     : real().read(fd_in, buf.data(), buf.size());
  if (n <= 0) return n;
  if (off_in) *off_in += n;
  // The bytes are out of the pipe: send them all, whatever the socket's
  // blocking mode, so none is lost.
  ssize_t done = 0;
  while (done < n) {
    ssize_t s =
        cout->Send(fd_out, buf.data() + done, static_cast<size_t>(n - done), 0);
    if (s < 0) return done > 0 ? done : -1;
    done += s;
  }
  return done;
}

}  // extern "C"
