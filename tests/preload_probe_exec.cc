// tests/preload_probe_exec.cc: probe scenarios of exec after "close every
// other fd" (Python's subprocess with close_fds, git daemon, sshd): fork,
// the socket onto fds 0 and 1, every fd from 3 closed (close_range,
// closefrom, a close loop, a /proc/self/fd walk), exec. usmc's own fds must
// survive it and the connection must move to the new image as SMC-D.
#include <dirent.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "tests/preload_probe.h"

namespace usmc::probe {
namespace {

constexpr size_t kChunk = 64 << 10;  // as ExecChild sends and receives

enum class CloseAll { kRange, kFrom, kLoop, kProcWalk };

void CloseAllFrom3(CloseAll how) {
  switch (how) {
    case CloseAll::kRange:
      close_range(3, ~0u, 0);
      break;
    case CloseAll::kFrom:
      closefrom(3);
      break;
    case CloseAll::kLoop: {
      struct rlimit rl {};
      getrlimit(RLIMIT_NOFILE, &rl);
      const rlim_t n = rl.rlim_cur < 65536 ? rl.rlim_cur : 65536;
      for (rlim_t fd = 3; fd < n; ++fd) close(static_cast<int>(fd));
      break;
    }
    case CloseAll::kProcWalk: {
      std::vector<int> fds;
      DIR* d = opendir("/proc/self/fd");
      if (d == nullptr) return;
      while (dirent* e = readdir(d)) {
        int fd = std::atoi(e->d_name);
        if (fd >= 3 && fd != dirfd(d)) fds.push_back(fd);
      }
      closedir(d);
      for (int fd : fds) close(fd);
      break;
    }
  }
}

int ExecCloseAllServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, kChunk, 23));
  RUN(Ack(fd));
  RUN(RecvPat(fd, kChunk, 2 * kChunk, 23));
  RUN(SendPat(fd, 0, kChunk, 24));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}

int ExecCloseAllClient(uint16_t port, CloseAll how,
                       const char* child = "exec-child") {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, kChunk, 23));
  RUN(WaitAck(fd));
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    SetName("probe-fork");
    if (dup2(fd, 0) != 0 || dup2(fd, 1) != 1) _exit(3);
    // As sshd before its re-exec: fixed small numbers for the new image
    // (a file here), numbers the kernel may have given usmc's own fds.
    int null = open("/dev/null", O_RDWR);
    for (int k = 3; k < 16; ++k) {
      if (k != null && dup2(null, k) != k) _exit(4);
    }
    CloseAllFrom3(how);
    execl("/proc/self/exe", "preload_probe", child, "0", "1",
          static_cast<char*>(nullptr));
    _exit(5);
  }
  close(fd);
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
        "the exec'd child failed (status %#x)", st);
  return 0;
}

// As sshd's pre-auth child: a seccomp filter that allows read and write but
// kills the process on recvfrom and sendto (what recv and send become), and
// on unlink (usmc's status file at exit).
int SandboxReadWriteOnly() {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),  // not x86-64: no check
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_recvfrom, 4, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sendto, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_unlink, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_unlinkat, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
  };
  struct sock_fprog prog = {static_cast<unsigned short>(std::size(f)), f};
  CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs");
  CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0, "seccomp");
  return 0;
}

// The server (under usmc) of a connection that is TCP (the client has no
// usmc) serves it from a forked child in that sandbox with read and write.
int SandboxTcpServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    if (SandboxReadWriteOnly() != 0) _exit(2);
    if (RecvPat(fd, 0, kChunk, 31) != 0) _exit(3);
    if (SendPat(fd, 0, kChunk, 32) != 0) _exit(4);
    if (ExpectEof(fd) != 0) _exit(5);
    exit(0);  // usmc's exit path runs in the sandbox too
  }
  close(fd);
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
        "the sandboxed child failed (status %#x)", st);
  return 0;
}
int SandboxTcpClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, kChunk, 31));
  RUN(RecvPat(fd, 0, kChunk, 32));
  close(fd);
  return 0;
}

// A client that talks through fdopen()'s stream (fwrite, fflush, fread).
int FdopenServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, kChunk, 41));
  RUN(SendPat(fd, 0, kChunk, 42));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}
int FdopenClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  FILE* f = fdopen(fd, "r+");
  CHECK(f != nullptr, "fdopen");
  CHECK(fileno(f) == fd, "fileno");
  std::vector<char> out = Pattern(0, kChunk, 41);
  CHECK(fwrite(out.data(), 1, out.size(), f) == out.size(), "fwrite");
  CHECK(fflush(f) == 0, "fflush");
  std::vector<char> in(kChunk);
  CHECK(fread(in.data(), 1, in.size(), f) == in.size(), "fread");
  CHECK(Mismatch(in.data(), 0, kChunk, 42) < 0, "fread: bytes differ");
  CHECK(fclose(f) == 0, "fclose");  // closes fd: the peer reads EOF
  return 0;
}

}  // namespace

// The new image of "exec-stdio": an inetd-style program that talks through
// stdin and stdout (C stdio buffers, glibc's own read/write underneath).
int ExecStdioChild() {
  SetName("probe-exec");
  std::vector<char> out = Pattern(kChunk, 2 * kChunk, 23);
  CHECK(fwrite(out.data(), 1, out.size(), stdout) == out.size(), "fwrite");
  CHECK(fflush(stdout) == 0, "fflush");
  std::vector<char> in(kChunk);
  CHECK(fread(in.data(), 1, in.size(), stdin) == in.size(), "fread");
  long bad = Mismatch(in.data(), 0, kChunk, 24);
  CHECK(bad < 0, "byte %ld read through stdin differs", bad);
  CHECK(fileno(stdout) == 1 && fileno(stdin) == 0, "fileno");
  return 0;  // exit() closes 0 and 1: the peer reads EOF
}

void AddExecScenarios(Scenarios& s) {
  s["fdopen"] = {FdopenServer, FdopenClient};
  s["exec-stdio"] = {ExecCloseAllServer, [](uint16_t port, const char*) {
                       return ExecCloseAllClient(port, CloseAll::kRange,
                                                 "exec-stdio-child");
                     }};
  s["sandbox-tcp"] = {SandboxTcpServer, SandboxTcpClient};
  auto add = [&](const char* name, CloseAll how) {
    s[name] = {ExecCloseAllServer, [how](uint16_t port, const char*) {
                 return ExecCloseAllClient(port, how);
               }};
  };
  add("exec-close-range", CloseAll::kRange);
  add("exec-closefrom", CloseAll::kFrom);
  add("exec-close-loop", CloseAll::kLoop);
  add("exec-proc-walk", CloseAll::kProcWalk);
}

}  // namespace usmc::probe
