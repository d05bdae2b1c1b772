// preload/wrap_process.cc: fork, vfork and the exec family, and the start
// and end of a process under usmc.
//
// fork: every SMC-D connection gains a holder (the count lives in the DMB's
// control page, shared memory), so that whichever process closes last runs
// the SMC close. exec: a connection whose fd survives exec is handed to the
// new image through an inherited memfd (USMC_EXEC_STATE), after finishing a
// handshake under way; if it cannot be (a static or set-id program that will
// not load usmc), it is reset, so the new image finds a dead socket instead of
// a silent TCP one that would lose the bytes in shared memory.
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/sandbox.h"
#include "preload/conn.h"
#include "preload/listeners.h"
#include "preload/policy_glue.h"
#include "preload/real.h"
#include "preload/smcr.h"
#include "preload/status.h"
#include "preload/stdio.h"
#include "preload/unattended.h"

extern char** environ;

namespace usmc::preload {
namespace {

constexpr std::string_view kExecMagic = "USMCEXEC1";

std::vector<std::shared_ptr<Conn>> UniqueConns() {
  std::vector<std::shared_ptr<Conn>> v;
  std::set<Conn*> seen;
  table().ForEach([&](int, const std::shared_ptr<Conn>& c) {
    if (seen.insert(c.get()).second) v.push_back(c);
  });
  return v;
}

// Our own file name, for LD_PRELOAD of the new image.
std::string SelfPath() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&SelfPath), &info) == 0 ||
      info.dli_fname == nullptr) {
    return {};
  }
  return info.dli_fname;
}

// Will the program at `path` load usmc? It must be dynamically linked (a
// PT_INTERP header; scripts start an interpreter that is) and not set-id
// (the loader drops LD_PRELOAD for those).
bool LoadsPreload(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || (st.st_mode & (S_ISUID | S_ISGID))) {
    return false;
  }
  unsigned char head[64] = {};
  ssize_t n = ::pread(fd, head, sizeof head, 0);
  if (n >= 2 && head[0] == '#' && head[1] == '!') return true;
  if (n < static_cast<ssize_t>(sizeof(Elf64_Ehdr)) ||
      std::memcmp(head, ELFMAG, SELFMAG) != 0 || head[EI_CLASS] != ELFCLASS64) {
    return false;
  }
  Elf64_Ehdr eh;
  std::memcpy(&eh, head, sizeof eh);
  for (int i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    if (::pread(fd, &ph, sizeof ph, eh.e_phoff + i * eh.e_phentsize) !=
        static_cast<ssize_t>(sizeof ph)) {
      return false;
    }
    if (ph.p_type == PT_INTERP) return true;
  }
  return false;
}

bool PathLoadsPreload(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;  // exec will fail by itself
  bool ok = LoadsPreload(fd);
  real().close(fd);
  return ok;
}

struct ExecPrep {
  std::vector<int> released_fds;  // close-on-exec SMC fds, already closed
  int state_fd = -1;
  std::vector<std::string> env_store;
  std::vector<char*> envp;
};

bool SurvivesExec(int fd) {
  int fl = real().fcntl(fd, F_GETFD);
  return fl >= 0 && !(fl & FD_CLOEXEC);
}

void PutU32(std::string& out, uint32_t v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// Hands over or resets every SMC connection; builds the new environment.
void PrepareExec(ExecPrep& p, bool loads_preload, char* const envp[]) {
  std::string blob(kExecMagic);
  uint32_t records = 0;
  for (const std::shared_ptr<Conn>& c : UniqueConns()) {
    std::vector<int> fds;
    table().ForEach([&](int fd, const std::shared_ptr<Conn>& o) {
      if (o == c && SurvivesExec(fd)) fds.push_back(fd);
    });
    if (fds.empty()) {
      // exec closes every fd of it: as close(2) would, the last holder
      // runs the SMC close (the peer reads EOF after the last byte).
      table().ForEach([&](int fd, const std::shared_ptr<Conn>& o) {
        if (o == c) p.released_fds.push_back(fd);
      });
      c->ReleaseFromProcess();
      continue;
    }
    c->SettleHandshake();
    runtime::SmcSocket* s = c->smc();
    if (s == nullptr) continue;  // plain TCP: the kernel socket is all
    std::string rec;
    if (loads_preload && s->ExportForExec(rec).ok()) {
      PutU32(blob, static_cast<uint32_t>(fds.size()));
      for (int fd : fds) PutU32(blob, static_cast<uint32_t>(fd));
      PutU32(blob, static_cast<uint32_t>(rec.size()));
      blob += rec;
      ++records;
      continue;
    }
    std::fprintf(stderr,
                 "usmc: exec: SMC connection on fd %d cannot move to the new "
                 "program; it is reset\n",
                 fds[0]);
    s->Abort();
    // The app's fds keep the kernel socket open, so the reset needs a
    // disconnect: connect(AF_UNSPEC) sends RST and leaves the socket
    // unconnected, so the new program's reads and writes fail.
    sockaddr unspec{};
    unspec.sa_family = AF_UNSPEC;
    (void)real().connect(fds[0], &unspec, sizeof unspec);
  }
  // QPs do not survive exec: the SMC-R connections were reset above (they
  // cannot be exported); the link groups end orderly before the image goes.
  SmcrTerminate();
  if (records > 0) {
    p.state_fd = ::memfd_create("usmc-exec", 0);  // inherited on purpose
    if (p.state_fd >= 0 && real().write(p.state_fd, blob.data(), blob.size()) !=
                               static_cast<ssize_t>(blob.size())) {
      real().close(p.state_fd);
      p.state_fd = -1;
    }
  }
  // The new environment: the app's, plus LD_PRELOAD naming us (a program
  // that cleans its environment would otherwise drop usmc for its child)
  // and the state fd.
  const std::string self = SelfPath();
  bool have_preload = false;
  for (char* const* e = envp; e != nullptr && *e != nullptr; ++e) {
    std::string_view v(*e);
    if (v.starts_with("USMC_EXEC_STATE=")) continue;
    if (v.starts_with("LD_PRELOAD=")) {
      have_preload = true;
      if (!self.empty() && v.find(self) == std::string_view::npos) {
        p.env_store.push_back(std::string(v) + " " + self);
        continue;
      }
    }
    p.env_store.emplace_back(v);
  }
  if (!have_preload && !self.empty()) {
    p.env_store.push_back("LD_PRELOAD=" + self);
  }
  if (p.state_fd >= 0) {
    p.env_store.push_back("USMC_EXEC_STATE=" + std::to_string(p.state_fd));
  }
  for (std::string& s : p.env_store) p.envp.push_back(s.data());
  p.envp.push_back(nullptr);
  WriteExitReport();
}

void UndoExec(ExecPrep& p) {
  const int err = errno;
  // exec failed after their SMC close: no silent idle TCP socket either.
  for (int fd : p.released_fds) {
    sockaddr unspec{};
    unspec.sa_family = AF_UNSPEC;
    (void)real().connect(fd, &unspec, sizeof unspec);
  }
  if (p.state_fd >= 0) real().close(p.state_fd);
  errno = err;
}

uint32_t GetU32(std::string_view& in, bool& ok) {
  uint32_t v = 0;
  if (in.size() < sizeof v) {
    ok = false;
    return 0;
  }
  std::memcpy(&v, in.data(), sizeof v);
  in.remove_prefix(sizeof v);
  return v;
}

// The new image's side: rebuild what the old one handed over.
void AdoptExecState() {
  const char* v = std::getenv("USMC_EXEC_STATE");
  if (v == nullptr) return;
  const int fd = std::atoi(v);
  ::unsetenv("USMC_EXEC_STATE");
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || st.st_size <= 0 ||
      st.st_size > (64 << 20)) {
    return;
  }
  std::string blob(static_cast<size_t>(st.st_size), '\0');
  ssize_t n = ::pread(fd, blob.data(), blob.size(), 0);
  real().close(fd);
  if (n != static_cast<ssize_t>(blob.size())) return;
  std::string_view in(blob);
  if (!in.starts_with(kExecMagic)) return;
  in.remove_prefix(kExecMagic.size());
  while (!in.empty()) {
    bool ok = true;
    std::vector<int> fds(GetU32(in, ok));
    if (!ok || fds.size() > 4096) break;
    for (int& f : fds) f = static_cast<int>(GetU32(in, ok));
    uint32_t len = GetU32(in, ok);
    if (!ok || len > in.size()) break;
    std::string_view rec = in.substr(0, len);
    in.remove_prefix(len);
    Result<std::unique_ptr<runtime::SmcSocket>> s =
        runtime::SmcSocket::AdoptAfterExec(rec);
    if (!s.ok()) {
      std::fprintf(stderr, "usmc: exec: could not re-attach fd %d: %s\n",
                   fds.empty() ? -1 : fds[0],
                   std::string(s.status().message()).c_str());
      for (int f : fds) {
        // Loudly dead, never silently TCP: reset the socket.
        struct linger l = {1, 0};
        ::setsockopt(f, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        ::shutdown(f, SHUT_RDWR);
      }
      continue;
    }
    auto c = std::make_shared<Conn>((*s)->status().engine.role);
    c->Adopt(std::move(*s));
    for (int f : fds) table().Install(f, c);
    if (!fds.empty()) c->SetAppFd(fds[0]);
    // The peer rang nobody while we were between images: look once.
    if (runtime::SmcSocket* sock = c->smc()) (void)sock->Poll(POLLIN);
  }
}

// A server that drops privileges after accept (setuid, chroot) would run a
// handshake under way without what it needs (its uid for the peer check,
// /proc): as exec does, finish those first, bounded by the CLC timeout.
// Once SMC-D, the connection needs neither.
void SettleBeforePrivilegeDrop() {
  if (Bypass()) return;
  Inside in;
  for (auto& c : UniqueConns()) c->SettleHandshake();
}

template <typename... A>
int CallNext(const char* name, A... args) {
  using Fn = int (*)(A...);
  auto next = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
  if (next == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  return next(args...);
}

}  // namespace
}  // namespace usmc::preload

using usmc::preload::Bypass;
using usmc::preload::ExecPrep;
using usmc::preload::Inside;
using usmc::preload::real;
namespace pl = usmc::preload;

extern "C" {

pid_t fork() {
  if (Bypass()) return real().fork();
  Inside in;
  auto conns = pl::UniqueConns();
  for (auto& c : conns) c->SettleEarlyDataForFork();
  pl::ListenersBeforeFork();
  pl::UnattendedBeforeFork();
  // Another thread of the app may be inside a connection right now (a
  // blocking recv between two waits): its locks are taken here, so the
  // child gets them free and the state they guard whole.
  for (auto& c : conns) c->LockForFork();
  pl::table().LockForFork();
  pid_t pid = real().fork();
  pl::table().UnlockAfterFork(/*child=*/pid == 0);
  for (auto it = conns.rbegin(); it != conns.rend(); ++it) {
    (*it)->UnlockAfterFork();
  }
  pl::UnattendedAfterFork(/*child=*/pid == 0);
  if (pid != 0) {
    const int err = errno;
    pl::ListenersAfterForkParent();
    if (pid > 0) {
      // Both: the parent may never have called in since the handshake was
      // decided for it (the unattended thread), so it is not listed yet, and
      // the child's close must not end the connection under it.
      for (auto& c : conns) {
        c->AddHolderPid(pid);
        c->AddHolderPid(::getpid());
      }
    }
    errno = err;
  } else {
    pl::ResetAfterFork();
    pl::table().ResetPassThruInChild();
    // SMC-R's QPs and regions stay the parent's: its connections are
    // unusable here, new ones get this process's own registry.
    pl::SmcrAfterForkChild();
    for (auto& c : conns) {
      if (usmc::runtime::SmcSocket* s = c->smc()) s->DetachSmcrAfterFork();
      c->AddHolderPid(::getpid());
      c->RepublishAfterFork();
    }
    pl::ListenersAfterForkChild();
  }
  return pid;
}

int setuid(uid_t u) {
  pl::SettleBeforePrivilegeDrop();
  return pl::CallNext("setuid", u);
}
int seteuid(uid_t u) {
  pl::SettleBeforePrivilegeDrop();
  return pl::CallNext("seteuid", u);
}
int setreuid(uid_t r, uid_t e) {
  pl::SettleBeforePrivilegeDrop();
  return pl::CallNext("setreuid", r, e);
}
int setresuid(uid_t r, uid_t e, uid_t s) {
  pl::SettleBeforePrivilegeDrop();
  return pl::CallNext("setresuid", r, e, s);
}
int chroot(const char* path) {
  pl::SettleBeforePrivilegeDrop();
  return pl::CallNext("chroot", path);
}

// A seccomp filter (sshd's pre-auth child) may kill the process for calls
// usmc makes on its own at exit: from now on it leaves them out.
int prctl(int option, ...) {
  va_list ap;
  va_start(ap, option);
  unsigned long a[4];
  for (unsigned long& x : a) x = va_arg(ap, unsigned long);
  va_end(ap);
  if (option == PR_SET_SECCOMP) usmc::base::NoteSyscallFilter();
  using Fn = int (*)(int, ...);
  static Fn next = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "prctl"));
  return next(option, a[0], a[1], a[2], a[3]);
}

// A vfork child shares our memory until it execs: our exec wrapper would
// change the parent's tables under it. A real fork is the safe answer.
pid_t vfork() { return fork(); }

int execve(const char* path, char* const argv[], char* const envp[]) {
  if (Bypass()) return real().execve(path, argv, envp);
  Inside in;
  ExecPrep p;
  pl::PrepareExec(p, pl::PathLoadsPreload(path), envp);
  int r = real().execve(path, argv, p.envp.data());
  pl::UndoExec(p);
  return r;
}

int fexecve(int fd, char* const argv[], char* const envp[]) {
  if (Bypass()) return real().fexecve(fd, argv, envp);
  Inside in;
  ExecPrep p;
  pl::PrepareExec(p, pl::LoadsPreload(fd), envp);
  int r = real().fexecve(fd, argv, p.envp.data());
  pl::UndoExec(p);
  return r;
}

int execveat(int dirfd, const char* path, char* const argv[],
             char* const envp[], int flags) {
  if (Bypass()) return real().execveat(dirfd, path, argv, envp, flags);
  Inside in;
  int fd = ::openat(
      dirfd, path,
      O_RDONLY | O_CLOEXEC | ((flags & AT_SYMLINK_NOFOLLOW) ? O_NOFOLLOW : 0));
  bool loads = fd < 0 || pl::LoadsPreload(fd);
  if (fd >= 0) real().close(fd);
  ExecPrep p;
  pl::PrepareExec(p, loads, envp);
  int r = real().execveat(dirfd, path, argv, p.envp.data(), flags);
  pl::UndoExec(p);
  return r;
}

int execv(const char* path, char* const argv[]) {
  return execve(path, argv, environ);
}

// PATH search as execvp(3) does it, so that the exec that runs is ours.
int execvpe(const char* file, char* const argv[], char* const envp[]) {
  if (*file == '\0') {
    errno = ENOENT;
    return -1;
  }
  if (std::strchr(file, '/') != nullptr) return execve(file, argv, envp);
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  int err = ENOENT;
  while (true) {
    size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    std::string full = (dir.empty() ? "." : dir) + "/" + file;
    if (::access(full.c_str(), X_OK) == 0) {
      execve(full.c_str(), argv, envp);
      if (errno == ENOEXEC) {
        // Not a binary and no #!: run it with the shell, as execvp does.
        std::vector<char*> sh_argv{const_cast<char*>("/bin/sh"), full.data()};
        for (char* const* a = argv + (argv[0] ? 1 : 0); *a; ++a) {
          sh_argv.push_back(*a);
        }
        sh_argv.push_back(nullptr);
        execve("/bin/sh", sh_argv.data(), envp);
      }
      if (errno == EACCES) err = EACCES;
    } else if (errno == EACCES) {
      err = EACCES;
    }
    if (colon == std::string_view::npos) break;
    dirs.remove_prefix(colon + 1);
  }
  errno = err;
  return -1;
}

int execvp(const char* file, char* const argv[]) {
  return execvpe(file, argv, environ);
}

static std::vector<char*> CollectArgs(const char* arg0, va_list ap) {
  std::vector<char*> argv{const_cast<char*>(arg0)};
  while (argv.back() != nullptr) argv.push_back(va_arg(ap, char*));
  return argv;
}

int execl(const char* path, const char* arg, ...) {
  va_list ap;
  va_start(ap, arg);
  std::vector<char*> argv = CollectArgs(arg, ap);
  va_end(ap);
  return execve(path, argv.data(), environ);
}

int execlp(const char* file, const char* arg, ...) {
  va_list ap;
  va_start(ap, arg);
  std::vector<char*> argv = CollectArgs(arg, ap);
  va_end(ap);
  return execvpe(file, argv.data(), environ);
}

int execle(const char* path, const char* arg, ...) {
  va_list ap;
  va_start(ap, arg);
  std::vector<char*> argv = CollectArgs(arg, ap);
  char* const* envp = va_arg(ap, char* const*);
  va_end(ap);
  return execve(path, argv.data(), envp);
}

}  // extern "C"

namespace {

__attribute__((constructor)) void UsmcPreloadStart() {
  Inside in;
  (void)real();
  pl::LoadProcessPolicy();
  pl::AdoptExecState();
  pl::WrapStdStreamsOnSmc();
}

// exit(3) closes every fd, as the kernel does for TCP: the connections this
// process held last get their SMC close, the others lose one holder.
__attribute__((destructor)) void UsmcPreloadEnd() {
  // exit() flushes stdio after the destructors: an SMC stream's last
  // bytes must go before its connection closes.
  pl::FlushSmcStreams();
  Inside in;
  std::vector<int> fds;
  pl::table().ForEach(
      [&](int fd, const std::shared_ptr<pl::Conn>&) { fds.push_back(fd); });
  for (int fd : fds) pl::ForgetFdForProcess(fd);
  // Then the link groups end orderly: the peers' groups end at once.
  pl::SmcrTerminate();
  pl::WriteExitReport();
}

}  // namespace
