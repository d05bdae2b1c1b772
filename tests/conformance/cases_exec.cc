// tests/conformance/cases_exec.cc: a connection handed to another program
// or to a process that drops its privileges: fork, the socket onto fds 0
// and 1, every other fd closed (close_range, closefrom, a close loop, as
// Python's subprocess, git daemon and sshd do), exec of an unmodified
// program (head -c N: reads N bytes from stdin and writes them to stdout,
// here the connection); and a forked child that serves the connection
// after setgid/setuid, or after chroot and setuid.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/conformance/conform.h"

namespace usmc::conform {
namespace {

constexpr size_t kEcho = 600 << 10;  // more than one DMB's worth each way

enum class CloseAll { kRange, kFrom, kLoop };

// The client's side of every case here: kEcho bytes out, the same back,
// then EOF.
int EchoClient(uint16_t port) {
  int fd = Connect(port);
  CCHECK(fd >= 0, "connect");
  CRUN(SendPat(fd, 0, kEcho, 61));
  CRUN(RecvPat(fd, 0, kEcho, 61));
  Say("cli", "echo of %zu bytes equal", kEcho);
  CRUN(ExpectEof(fd));
  Say("cli", "eof");
  return close(fd);
}

int ExecEcho(CloseAll how) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  pid_t srv = Spawn([&] {
    int fd = AcceptOne(lfd);
    CCHECK(fd >= 0, "accept");
    pid_t child = fork();
    CCHECK(child >= 0, "fork");
    if (child == 0) {
      if (dup2(fd, 0) != 0 || dup2(fd, 1) != 1) _exit(120);
      int r = 0;
      switch (how) {
        case CloseAll::kRange:
          r = close_range(3, ~0u, 0);
          break;
        case CloseAll::kFrom:
          closefrom(3);
          break;
        case CloseAll::kLoop: {
          struct rlimit rl {};
          getrlimit(RLIMIT_NOFILE, &rl);
          const rlim_t n = rl.rlim_cur < 65536 ? rl.rlim_cur : 65536;
          for (rlim_t i = 3; i < n; ++i) close(static_cast<int>(i));
          break;
        }
      }
      if (r != 0) _exit(121);
      const std::string n = std::to_string(kEcho);
      execl("/usr/bin/head", "head", "-c", n.c_str(),
            static_cast<char*>(nullptr));
      _exit(122);
    }
    close(fd);
    Say("srv", "head exited %d", Reap(child));
    return 0;
  });
  close(lfd);
  CRUN(EchoClient(port));
  return Reap(srv);
}

CONFORM_CASE(exec_after_close_range, 2) { return ExecEcho(CloseAll::kRange); }
CONFORM_CASE(exec_after_closefrom, 2) { return ExecEcho(CloseAll::kFrom); }
CONFORM_CASE(exec_after_close_loop, 2) { return ExecEcho(CloseAll::kLoop); }

// A forked child drops its privileges (and, with `jail`, chroot()s into an
// empty directory first) and echoes; the parent closes its copy at once.
int DropPrivilegesAndEcho(bool jail) {
  char dir[] = "/tmp/conform-jail-XXXXXX";
  CCHECK(!jail || mkdtemp(dir) != nullptr, "mkdtemp");
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  pid_t srv = Spawn([&] {
    int fd = AcceptOne(lfd);
    CCHECK(fd >= 0, "accept");
    pid_t child = Spawn([&] {
      close(lfd);
      if (jail) {
        CCHECK(chroot(dir) == 0 && chdir("/") == 0, "chroot");
      }
      CCHECK(setgid(65534) == 0 && setuid(65534) == 0, "setuid");
      std::vector<char> buf(64 << 10);
      size_t left = kEcho;
      while (left > 0) {
        ssize_t n = read(fd, buf.data(), std::min(left, buf.size()));
        CCHECK(n > 0, "read");
        CRUN(WriteAll(fd, buf.data(), static_cast<size_t>(n)));
        left -= static_cast<size_t>(n);
      }
      return close(fd);
    });
    close(fd);
    Say("srv", "child exited %d", Reap(child));
    return 0;
  });
  close(lfd);
  int rc = EchoClient(port);
  const int srv_rc = Reap(srv);
  if (jail) rmdir(dir);
  CRUN(rc);
  return srv_rc;
}

// SMC-D: usmc finishes the handshake before the privileges go. Only the
// client's end is counted for certain: the child, now nobody, may not be
// able to append to the (root's) exit report.
CONFORM_CASE(setuid_after_accept, 1) { return DropPrivilegesAndEcho(false); }
CONFORM_CASE(chroot_and_setuid_after_accept, 1) {
  return DropPrivilegesAndEcho(true);
}

}  // namespace
}  // namespace usmc::conform
