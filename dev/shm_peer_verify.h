// dev/shm_peer_verify.h: is the process at the other end of a Unix socket
// really the peer of our TCP connection?
//
// The handover hands DMB fds only to that process. Proof: SO_PEERCRED gives
// the Unix peer's pid and uid; sock_diag (inet_diag exact lookup of the
// reverse 4-tuple) gives the inode and owner uid of the TCP socket at the
// far end of our connection; the pid must hold socket:[inode] in
// /proc/<pid>/fd and the uids must agree.
//
//   Result<PeerCred> cred = GetPeerCred(unix_fd);
//   USMC_RETURN_IF_ERROR(VerifyTcpPeerProcess(tcp_fd, *cred, deadline));
#ifndef USMC_DEV_SHM_PEER_VERIFY_H_
#define USMC_DEV_SHM_PEER_VERIFY_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>

#include "base/status.h"

namespace usmc::dev {

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// SO_PEERCRED of a connected AF_UNIX socket.
Result<PeerCred> GetPeerCred(int unix_fd);

struct TcpPeerSocket {
  uint64_t inode = 0;
  uid_t uid = 0;
};

// The TCP socket at the other end of connected socket `tcp_fd`, looked up
// with NETLINK_SOCK_DIAG in our network namespace. kNotFound if the peer
// is not a socket on this host (or not in this namespace).
Result<TcpPeerSocket> FindTcpPeerSocket(
    int tcp_fd, std::chrono::steady_clock::time_point deadline);

// Whether process `pid` has socket:[inode] among its fds. kNotFound if the
// process is gone, kPermissionDenied if its fd table is not ours to read
// (another uid and we lack CAP_SYS_PTRACE, or it is not dumpable).
// `fd_hint` (>= 0): the fd to look at first (DmbTokenFdHint), a saving
// only: a wrong one costs one lookup, then every fd is looked at.
Result<bool> ProcessHoldsSocket(pid_t pid, uint64_t inode, int fd_hint = -1);

// Whether a child of `pid` (one generation, from /proc/PID/task/*/children)
// holds socket:[inode]. A forking server: the process that created the
// handover listener (SO_PEERCRED names it) gave the connection to a child
// and closed its own copy; the child serves the handover.
bool ChildHoldsSocket(pid_t pid, uint64_t inode);

// All checks above (the pid, or one of its children, must hold the TCP
// peer socket), and the Unix peer's uid must be our effective uid (the
// rule both sides apply: memory is shared within one uid only);
// kPermissionDenied naming the first that failed.
Status VerifyTcpPeerProcess(int tcp_fd, const PeerCred& cred,
                            std::chrono::steady_clock::time_point deadline,
                            int fd_hint = -1);

}  // namespace usmc::dev

#endif  // USMC_DEV_SHM_PEER_VERIFY_H_
