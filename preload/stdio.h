// preload/stdio.h: C stdio streams (FILE) on SMC sockets.
//
// glibc's FILE reads and writes with its internal read/write, past the
// interposer: an SMC-D socket used through stdout would send its bytes on
// the kernel TCP socket, which the peer (reading the DMB) takes for a
// protocol violation. inetd-style programs do exactly that: git's
// upload-pack, exec'd with the connection on fds 0 and 1, answers through
// stdout. So stdin/stdout/stderr of an image that adopted an SMC connection
// on fd 0/1/2 across exec, and fdopen() of an SMC socket, become
// fopencookie streams whose reads and writes go through usmc (fileno()
// still answers the fd).
#ifndef USMC_PRELOAD_STDIO_H_
#define USMC_PRELOAD_STDIO_H_

namespace usmc::preload {

// After AdoptExecState: the standard streams whose fd is an SMC connection.
void WrapStdStreamsOnSmc();
// At exit, before the connections close: what those streams still buffer.
void FlushSmcStreams();

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_STDIO_H_
