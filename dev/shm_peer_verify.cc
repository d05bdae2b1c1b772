#include "dev/shm_peer_verify.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "dev/unique_fd.h"

namespace usmc::dev {
namespace {

int MillisLeft(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return 0;
  return left.count() > 1000000 ? 1000000 : static_cast<int>(left.count());
}

// Copies the address bytes of a sockaddr_in/in6 into an inet_diag id word
// array and returns the port (network byte order).
uint16_t AddrToDiag(const sockaddr_storage& ss, __be32 out[4]) {
  std::memset(out, 0, 4 * sizeof(__be32));
  if (ss.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(ss);
    std::memcpy(out, &in.sin_addr, 4);
    return in.sin_port;
  }
  const auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
  std::memcpy(out, &in6.sin6_addr, 16);
  return in6.sin6_port;
}

}  // namespace

Result<PeerCred> GetPeerCred(int unix_fd) {
  struct ucred uc {};
  socklen_t len = sizeof uc;
  if (::getsockopt(unix_fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0) {
    return Status::FromErrno(errno, "SO_PEERCRED");
  }
  if (uc.pid <= 0) {
    return Status(StatusCode::kPermissionDenied,
                  "Unix peer has no pid in our pid namespace");
  }
  return PeerCred{uc.pid, uc.uid, uc.gid};
}

Result<TcpPeerSocket> FindTcpPeerSocket(
    int tcp_fd, std::chrono::steady_clock::time_point deadline) {
  sockaddr_storage local{}, remote{};
  socklen_t llen = sizeof local, rlen = sizeof remote;
  if (::getsockname(tcp_fd, reinterpret_cast<sockaddr*>(&local), &llen) != 0) {
    return Status::FromErrno(errno, "getsockname");
  }
  if (::getpeername(tcp_fd, reinterpret_cast<sockaddr*>(&remote), &rlen) != 0) {
    return Status::FromErrno(errno, "getpeername");
  }
  if ((local.ss_family != AF_INET && local.ss_family != AF_INET6) ||
      remote.ss_family != local.ss_family) {
    return Status(StatusCode::kInvalidArgument, "not an inet TCP socket");
  }

  UniqueFd nl(
      ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) return Status::FromErrno(errno, "socket NETLINK_SOCK_DIAG");

  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;  // exact lookup, not a dump
  msg.nlh.nlmsg_seq = 1;
  msg.req.sdiag_family = static_cast<uint8_t>(local.ss_family);
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = ~0u;
  // The peer's socket sees our 4-tuple reversed: its source is our remote.
  msg.req.id.idiag_sport = AddrToDiag(remote, msg.req.id.idiag_src);
  msg.req.id.idiag_dport = AddrToDiag(local, msg.req.id.idiag_dst);
  if (remote.ss_family == AF_INET6) {
    msg.req.id.idiag_if =
        reinterpret_cast<const sockaddr_in6&>(remote).sin6_scope_id;
  }
  msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = ::sendto(nl.get(), &msg, sizeof msg, 0,
                    reinterpret_cast<sockaddr*>(&kernel), sizeof kernel);
  } while (sent < 0 && errno == EINTR);
  if (sent != static_cast<ssize_t>(sizeof msg)) {
    return Status::FromErrno(errno, "sock_diag request");
  }

  alignas(nlmsghdr) char buf[8192];
  for (;;) {
    pollfd pfd{nl.get(), POLLIN, 0};
    int pr = ::poll(&pfd, 1, MillisLeft(deadline));
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) return Status::FromErrno(errno, "poll sock_diag");
    if (pr == 0) {
      return Status(StatusCode::kUnavailable, "sock_diag: no answer in time");
    }
    ssize_t n = ::recv(nl.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return Status::FromErrno(errno, "recv sock_diag");
    // Walk the netlink messages; every length is checked against the bytes
    // actually received.
    const size_t got = static_cast<size_t>(n);
    for (size_t off = 0, step = 0; got - off >= sizeof(nlmsghdr); off += step) {
      const auto* h = reinterpret_cast<const nlmsghdr*>(buf + off);
      if (h->nlmsg_len < sizeof(nlmsghdr) || h->nlmsg_len > got - off) break;
      step = NLMSG_ALIGN(h->nlmsg_len);
      if (step > got - off) step = got - off;
      if (h->nlmsg_seq != 1) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
          return Status(StatusCode::kInternal, "sock_diag: short error");
        }
        int err =
            -static_cast<const nlmsgerr*>(NLMSG_DATA(const_cast<nlmsghdr*>(h)))
                 ->error;
        if (err == ENOENT) {
          return Status(StatusCode::kNotFound,
                        "TCP peer socket is not on this host/namespace");
        }
        return Status::FromErrno(err, "sock_diag lookup");
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) {
        return Status(StatusCode::kInternal, "sock_diag: short answer");
      }
      const auto* m = static_cast<const inet_diag_msg*>(
          NLMSG_DATA(const_cast<nlmsghdr*>(h)));
      if (m->id.idiag_sport != msg.req.id.idiag_sport ||
          m->id.idiag_dport != msg.req.id.idiag_dport || m->idiag_inode == 0) {
        return Status(StatusCode::kNotFound, "sock_diag: no live peer socket");
      }
      return TcpPeerSocket{m->idiag_inode, m->idiag_uid};
    }
  }
}

Result<bool> ProcessHoldsSocket(pid_t pid, uint64_t inode, int fd_hint) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) {
    if (errno == ENOENT) {
      return Status(StatusCode::kNotFound, "peer process is gone");
    }
    if (errno == EACCES || errno == EPERM) {
      return Status(StatusCode::kPermissionDenied,
                    "cannot read the peer's fd table");
    }
    return Status::FromErrno(errno, "open " + dir);
  }
  // Whether fd `fd` of the process is socket:[inode]. The directory fd
  // stays open below, owned by the DIR stream.
  const int dir_fd = dfd.get();
  const std::string want = "socket:[" + std::to_string(inode) + "]";
  auto is_it = [&](int fd) {
    char name[16], link[64];
    std::snprintf(name, sizeof name, "%d", fd);
    const ssize_t n = ::readlinkat(dir_fd, name, link, sizeof link);
    return n > 0 && static_cast<size_t>(n) == want.size() &&
           std::memcmp(link, want.data(), want.size()) == 0;
  };
  if (fd_hint >= 0 && is_it(fd_hint)) return true;
  DIR* d = ::fdopendir(dfd.get());
  if (d == nullptr) return Status::FromErrno(errno, "fdopendir");
  dfd.Release();  // now owned by d
  // Names first (getdents is cheap), links newest first: each readlink
  // costs microseconds, and the socket of a connection being set up is
  // usually the peer's highest fd (a server holding thousands of
  // connections made every new one scan them all, ~3 ms per thousand).
  std::vector<int> fds;
  int err = 0;
  for (;;) {
    errno = 0;
    dirent* e = ::readdir(d);
    if (e == nullptr) {
      err = errno;
      break;
    }
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (e->d_name[0] != '.' && *end == '\0' && fd >= 0 && fd <= INT32_MAX) {
      fds.push_back(static_cast<int>(fd));
    }
  }
  std::sort(fds.begin(), fds.end(), std::greater<>());
  bool found = false;
  for (int fd : fds) {
    if (fd == fd_hint) continue;  // looked at already
    if (is_it(fd)) {
      found = true;
      break;
    }
  }
  ::closedir(d);
  if (!found && err == EACCES) {
    return Status(StatusCode::kPermissionDenied,
                  "cannot read the peer's fd table");
  }
  return found;
}

bool ChildHoldsSocket(pid_t pid, uint64_t inode) {
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(task.c_str());
  if (d == nullptr) return false;
  bool found = false;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    // Needs CONFIG_PROC_CHILDREN (Debian has it); without it, no child.
    UniqueFd f(::open((task + "/" + e->d_name + "/children").c_str(),
                      O_RDONLY | O_CLOEXEC));
    if (!f) continue;
    char buf[4096];
    const ssize_t n = ::read(f.get(), buf, sizeof buf - 1);
    if (n <= 0) continue;
    buf[n] = '\0';
    for (char* p = buf; *p != '\0' && !found;) {
      char* end = nullptr;
      const long child = std::strtol(p, &end, 10);
      if (end == p) break;
      Result<bool> holds = ProcessHoldsSocket(static_cast<pid_t>(child), inode);
      found = holds.ok() && *holds;
      p = end;
    }
    if (found) break;
  }
  ::closedir(d);
  return found;
}

Status VerifyTcpPeerProcess(int tcp_fd, const PeerCred& cred,
                            std::chrono::steady_clock::time_point deadline,
                            int fd_hint) {
  // Memory is shared only between processes of one uid, whichever side
  // asks: the server checks it before CLC, and a client must not rely on
  // a server (of another implementation, or hostile) having done so.
  if (cred.uid != ::geteuid()) {
    return Status(StatusCode::kPermissionDenied,
                  "Unix peer uid " + std::to_string(cred.uid) +
                      " is not ours (uid " + std::to_string(::geteuid()) + ")");
  }
  Result<TcpPeerSocket> peer = FindTcpPeerSocket(tcp_fd, deadline);
  if (!peer.ok()) return peer.status();
  if (peer->uid != cred.uid) {
    return Status(StatusCode::kPermissionDenied,
                  "Unix peer uid " + std::to_string(cred.uid) +
                      " does not own the TCP peer socket (uid " +
                      std::to_string(peer->uid) + ")");
  }
  Result<bool> holds = ProcessHoldsSocket(cred.pid, peer->inode, fd_hint);
  if (!holds.ok()) return holds.status();
  if (!*holds && !ChildHoldsSocket(cred.pid, peer->inode)) {
    return Status(StatusCode::kPermissionDenied,
                  "Unix peer pid " + std::to_string(cred.pid) +
                      " does not hold the TCP peer socket");
  }
  return OkStatus();
}

}  // namespace usmc::dev
