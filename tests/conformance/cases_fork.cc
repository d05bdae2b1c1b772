// tests/conformance/cases_fork.cc: one connection used by more than one
// process after fork, in turns (serial hand-off), as forking servers and
// clients that hand a socket to a child do.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/conformance/conform.h"

namespace usmc::conform {
namespace {

// The parent reads part of a stream, a child writes on the shared socket
// and exits, then the parent reads on: it must get the bytes after those it
// already read, not any of them again.
CONFORM_CASE(fork_child_writes_between_parent_reads, 2) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  int sync[2];
  CCHECK(pipe(sync) == 0, "pipe");
  pid_t srv = Spawn([&] {
    int fd = AcceptOne(lfd);
    CCHECK(fd >= 0, "accept");
    CRUN(SendPat(fd, 0, 1000, 7));
    CRUN(RecvPat(fd, 0, 10, 8));  // the child's bytes
    Say("srv", "got the child's 10 bytes");
    CRUN(SendPat(fd, 1000, 1000, 7));
    CRUN(ExpectEof(fd));
    Say("srv", "eof");
    return close(fd);
  });
  close(lfd);
  int fd = Connect(port);
  CCHECK(fd >= 0, "connect");
  CRUN(RecvPat(fd, 0, 1000, 7));
  Say("cli", "parent read bytes 0-999");
  pid_t child = Spawn([&] {
    CRUN(SendPat(fd, 0, 10, 8));
    Say("child", "wrote 10 bytes");
    return 0;
  });
  CCHECK(Reap(child) == 0, "child");
  CRUN(RecvPat(fd, 1000, 1000, 7));
  Say("cli", "parent read bytes 1000-1999");
  CCHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
  close(fd);
  return Reap(srv);
}

// Reading in turns: the parent reads, a child reads the next part and
// exits (or is killed: what it read is consumed all the same, as over TCP),
// the parent reads the rest; then the parent writes.
int ChildReadsBetweenParentReads(bool killed) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  pid_t srv = Spawn([&] {
    int fd = AcceptOne(lfd);
    CCHECK(fd >= 0, "accept");
    CRUN(SendPat(fd, 0, 300000, 9));  // more than a small DMB holds
    CRUN(RecvPat(fd, 0, 100, 10));
    Say("srv", "got the parent's 100 bytes");
    CRUN(ExpectEof(fd));
    Say("srv", "eof");
    return close(fd);
  });
  close(lfd);
  int fd = Connect(port);
  CCHECK(fd >= 0, "connect");
  CRUN(RecvPat(fd, 0, 1000, 9));
  Say("cli", "parent read bytes 0-999");
  pid_t child = Spawn([&] {
    CRUN(RecvPat(fd, 1000, 150000, 9));
    Say("child", "read bytes 1000-150999");
    if (killed) raise(SIGKILL);
    return 0;
  });
  CCHECK(Reap(child) == (killed ? -1 : 0), "child");
  CRUN(RecvPat(fd, 151000, 300000 - 151000, 9));
  Say("cli", "parent read bytes 151000-299999");
  CRUN(SendPat(fd, 0, 100, 10));
  CCHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
  close(fd);
  return Reap(srv);
}

CONFORM_CASE(fork_child_reads_between_parent_reads, 2) {
  return ChildReadsBetweenParentReads(/*killed=*/false);
}

CONFORM_CASE(fork_child_reads_then_is_killed, 2) {
  return ChildReadsBetweenParentReads(/*killed=*/true);
}

}  // namespace
}  // namespace usmc::conform
