// preload/pass.h: SMC-D connections passed to another process with
// SCM_RIGHTS (a listener handing accepted sockets to workers, and back).
//
// The fd that arrives is the kernel TCP socket; the connection's bytes live
// in shared memory. So the sender carries the connection along, as exec
// does (runtime/exec_record.h): for every SMC-D socket among the message's
// fds, it appends to the same SCM_RIGHTS list the socket's four buffer fds
// (DMBs and doorbells) and, last, a sealed memfd "usmc-pass" with the
// records (engine snapshot, which fd each record belongs to). The
// receiver's recvmsg recognizes that memfd (sealed, our uid, magic, fd
// counts that match), adopts each connection as a new holder (a fork child
// is one too: several processes, serial hand-off), and hands the app only
// the fds the sender's app sent, with the control data laid out and
// truncated (MSG_CTRUNC) as the kernel would have done.
//
// While a connection is in flight, a marker in its holder table (the Unix
// socket it is sent to, or the sender's pid, flagged) keeps the sender's
// close, and any other holder's, from ending it. A
// handshake under way is finished before the fd leaves. A receiver known
// not to run usmc, or of another uid (it may not share our memory), cannot
// take the connection: it is reset, as for an exec of such a program, so
// that process finds a dead socket, never a silent one (docs/preload.md).
#ifndef USMC_PRELOAD_PASS_H_
#define USMC_PRELOAD_PASS_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace usmc::preload {

// sendmsg/recvmsg on an fd that is not an SMC connection (a Unix socket,
// usually). Both pass straight through when no SMC-D connection travels.
ssize_t SendmsgPassing(int fd, const msghdr* msg, int flags);
ssize_t RecvmsgPassing(int fd, msghdr* msg, int flags);

// For a holder-table value that marks a connection in flight to a Unix
// socket: whether that socket still exists (the message can still be
// received). nullopt for any other value (a pid, or the sender's marker).
std::optional<bool> InFlightAlive(uint32_t holder);

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_PASS_H_
