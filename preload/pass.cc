// preload/pass.cc: SCM_RIGHTS hand-over of SMC-D connections (pass.h).
//
// State memfd layout (host byte order: both ends are on one host):
//   "USMCPAS3" | u32 app fds | u32 records | u32 marker |
//   records x (u32 index of the app fd | u32 length | exec record bytes)
// and the message's fd list is: the app's fds, then per record its local
// DMB, peer DMB, doorbell socket, then the state memfd. Version 3: exec
// records of version 3, whose DMB fds may be arenas (docs/dev-shm.md,
// "Arenas"). An arena fd maps every slot of the pair: a receiver known to
// run under our uid takes the whole pair; to another uid, or one we cannot
// tell (an unconnected datagram), only a pair's first and only connection
// goes, and any other is reset with the reason. Either way the pair is
// retired here for new connections (ShmDevice::ExportArenas).
#include "preload/pass.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/sandbox.h"
#include "preload/conn.h"
#include "preload/policy_glue.h"
#include "preload/real.h"
#include "runtime/exec_record.h"
#include "runtime/smc_socket.h"

namespace usmc::preload {
namespace {

constexpr std::string_view kMagic = "USMCPAS3";  // 3: v3 exec records
constexpr size_t kMaxFds = 253;  // SCM_MAX_FD: the kernel's limit
constexpr size_t kBufferFds = 3;
constexpr size_t kMaxState = 1 << 20;

void PutU32(std::string& out, uint32_t v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
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

// The SCM_RIGHTS fds of a message, in the order the kernel queues them
// (it joins every SCM_RIGHTS of one message into one list).
std::vector<int> RightsFds(const msghdr* msg) {
  std::vector<int> fds;
  msghdr* m = const_cast<msghdr*>(msg);
  for (cmsghdr* c = CMSG_FIRSTHDR(m); c != nullptr; c = CMSG_NXTHDR(m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
        c->cmsg_len < CMSG_LEN(0)) {
      continue;
    }
    const size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.push_back(fd);
    }
  }
  return fds;
}

// Our library's file name, as /proc/PID/maps lists it.
std::string LibName() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&LibName), &info) == 0 ||
      info.dli_fname == nullptr) {
    return {};
  }
  std::string_view p = info.dli_fname;
  const size_t slash = p.rfind('/');
  return std::string(slash == p.npos ? p : p.substr(slash + 1));
}

// Whether process `pid` has our library mapped: 1, 0, or -1 (cannot tell).
int RunsUsmc(pid_t pid) {
  const std::string lib = LibName();
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%d/maps", static_cast<int>(pid));
  const int m = ::open(path, O_RDONLY | O_CLOEXEC);
  if (lib.empty() || m < 0) return -1;
  std::string tail;
  char buf[16384];
  bool found = false;
  for (;;) {
    const ssize_t n = real().read(m, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    tail.append(buf, static_cast<size_t>(n));
    if (tail.find(lib) != std::string::npos) {
      found = true;
      break;
    }
    // Keep what a name split across two reads needs.
    if (tail.size() > lib.size()) tail.erase(0, tail.size() - lib.size());
  }
  real().close(m);
  return found ? 1 : 0;
}

// sock_diag about the Unix socket of inode `ino`: 1 it exists, 0 it does
// not, -1 cannot tell; the inode of its other end in *peer (0: none).
int UnixDiag(uint64_t ino, uint64_t* peer) {
  *peer = 0;
  const int nl =
      ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) return -1;
  struct {
    nlmsghdr nlh;
    unix_diag_req req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;  // one socket, not a dump
  msg.nlh.nlmsg_seq = 1;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0u;
  msg.req.udiag_ino = static_cast<uint32_t>(ino);
  msg.req.udiag_show = UDIAG_SHOW_PEER;
  msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0u;  // no cookie
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  int exists = -1;
  alignas(nlmsghdr) char buf[4096];
  if (::sendto(nl, &msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) == static_cast<ssize_t>(sizeof msg)) {
    pollfd p{nl, POLLIN, 0};
    const ssize_t n = real().poll(&p, 1, 1000) == 1
                          ? real().recv(nl, buf, sizeof buf, MSG_DONTWAIT)
                          : -1;
    const auto* h = reinterpret_cast<const nlmsghdr*>(buf);
    if (n >= static_cast<ssize_t>(NLMSG_LENGTH(sizeof(nlmsgerr))) &&
        h->nlmsg_type == NLMSG_ERROR &&
        reinterpret_cast<const nlmsgerr*>(NLMSG_DATA(h))->error == -ENOENT) {
      exists = 0;
    }
    if (n >= static_cast<ssize_t>(sizeof(nlmsghdr)) &&
        h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
        h->nlmsg_len <= static_cast<size_t>(n) &&
        h->nlmsg_len >= NLMSG_LENGTH(sizeof(unix_diag_msg))) {
      exists = 1;
      int left =
          static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(unix_diag_msg)));
      const auto* a = reinterpret_cast<const rtattr*>(
          buf + NLMSG_LENGTH(sizeof(unix_diag_msg)));
      for (; RTA_OK(a, left); a = RTA_NEXT(a, left)) {
        if (a->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(a) >= 4) {
          uint32_t v;
          std::memcpy(&v, RTA_DATA(a), sizeof v);
          *peer = v;
        }
      }
    }
  }
  real().close(nl);
  return exists;
}

// The inode of the other end of connected Unix socket `fd`, or 0.
uint64_t UnixPeerInode(int fd) {
  struct stat st {};
  uint64_t peer = 0;
  if (::fstat(fd, &st) == 0) (void)UnixDiag(st.st_ino, &peer);
  return peer;
}

// While a message is in flight, the kernel holds its fds for the socket it
// was sent to, for as long as that socket exists, even after the sender
// exited (a worker handing its last connection back). The holder-table
// marker names that socket (kToSocket | inode) where the sender knows it,
// else the sender (Conn::PassMarker: alive while the sender is). A marker
// of the sender alone let the listener's close end a connection the
// exited worker had handed back, before the listener received it.
constexpr uint32_t kToSocket = 0xC0000000u;
uint32_t InFlightMarker(int fd, const msghdr* msg) {
  const uint64_t to = msg->msg_name == nullptr ? UnixPeerInode(fd) : 0;
  if (to != 0 && to < (uint64_t{1} << 30)) return kToSocket | to;
  return Conn::PassMarker(::getpid());
}

// Whether process `pid` has socket:[inode] among its fds.
bool HoldsSocket(pid_t pid, uint64_t inode) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return false;
  const std::string want = "socket:[" + std::to_string(inode) + "]";
  bool found = false;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char link[64];
    const ssize_t n = ::readlinkat(::dirfd(d), e->d_name, link, sizeof link);
    if (n == static_cast<ssize_t>(want.size()) &&
        std::memcmp(link, want.data(), want.size()) == 0) {
      found = true;
      break;
    }
  }
  ::closedir(d);
  return found;
}

// The effective uid of process `pid` (/proc/PID/status), or -1.
long EffectiveUid(pid_t pid) {
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%d/status", static_cast<int>(pid));
  const int f = ::open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return -1;
  char b[4096];
  const ssize_t n = real().read(f, b, sizeof b - 1);
  real().close(f);
  if (n <= 0) return -1;
  b[n] = '\0';
  const char* u = std::strstr(b, "\nUid:");
  if (u == nullptr) return -1;
  char* end = nullptr;
  std::strtol(u + 5, &end, 10);  // real
  const long e = std::strtol(end, &end, 10);
  return end != nullptr ? e : -1;
}

// The children of `pid` (/proc/PID/task/*/children).
std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> kids;
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(task.c_str());
  if (d == nullptr) return kids;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const int f = ::open((task + "/" + e->d_name + "/children").c_str(),
                         O_RDONLY | O_CLOEXEC);
    if (f < 0) continue;
    char b[4096];
    const ssize_t n = real().read(f, b, sizeof b - 1);
    real().close(f);
    if (n <= 0) continue;
    b[n] = '\0';
    for (char* p = b; *p != '\0';) {
      char* end = nullptr;
      const long k = std::strtol(p, &end, 10);
      if (end == p) break;
      kids.push_back(static_cast<pid_t>(k));
      p = end;
    }
  }
  ::closedir(d);
  return kids;
}

// Which uids may take a connection along (docs/dev-shm.md, threat model).
// The receiver holds the TCP socket, so it may have the DMBs: the sender
// need not fear it. The receiver must trust the state (a forged record
// makes it read bytes from a memfd as if the TCP peer had sent them), and
// it trusts one made by its own uid (which could ptrace it anyway) or by
// root (who can do anything). So a connection goes to another uid only
// from root: a privileged master handing accepted sockets to workers that
// dropped their privileges. Between two ordinary uids it is reset.
constexpr const char* kOtherUid =
    "the receiver runs under another uid, and only root's connections go "
    "to another uid";
bool MayGoToAnotherUid() { return ::geteuid() == 0; }
bool TrustedStateOwner(uid_t owner) {
  return owner == ::geteuid() || owner == 0;
}

// Can the process at the other end of Unix socket `fd` take an SMC-D
// connection? kYes, kNo (why in *why), or kCannotTell (not connected: an
// unconnected datagram names its receiver only by address).
// `*same_uid`: the receiver is known to run under our effective uid.
enum Takes { kNotAsked = -2, kCannotTell = -1, kNo = 0, kYes = 1 };
Takes PeerTakes(int fd, const char** why, bool* same_uid) {
  *same_uid = false;
  struct ucred uc {};
  socklen_t len = sizeof uc;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0 ||
      uc.pid <= 0) {
    return kCannotTell;
  }
  if (uc.uid != ::geteuid() && !MayGoToAnotherUid()) {
    *why = kOtherUid;
    return kNo;
  }
  // SO_PEERCRED names the process that made the other end (for a
  // socketpair: this one, before it forked the worker). The receiver is a
  // process that holds that end now: that one, or one of its children
  // (which may have exec'd a program without usmc).
  const uint64_t peer = UnixPeerInode(fd);
  pid_t holder = 0;
  if (peer != 0) {
    for (pid_t kid : ChildrenOf(uc.pid)) {
      if (HoldsSocket(kid, peer)) {
        holder = kid;
        break;
      }
    }
  }
  if (holder == 0) {
    if (uc.pid == ::getpid()) {  // the other end is still ours
      *same_uid = true;
      return kYes;
    }
    holder = uc.pid;
  }
  // A worker may have changed its uid after the socketpair was made
  // (SO_PEERCRED keeps the creator's).
  const long uid = EffectiveUid(holder);
  if (uid >= 0 && static_cast<uid_t>(uid) != ::geteuid() &&
      !MayGoToAnotherUid()) {
    *why = kOtherUid;
    return kNo;
  }
  *same_uid = uid >= 0 && static_cast<uid_t>(uid) == ::geteuid() &&
              uc.uid == ::geteuid();
  const int runs = RunsUsmc(holder);
  if (runs == 0) *why = "the receiving process does not run usmc";
  return runs == 1 ? kYes : runs == 0 ? kNo : kCannotTell;
}

// As exec does for a program that will not load usmc: a dead socket for
// the receiver, never a silent TCP one whose bytes are in shared memory.
void ResetConn(Conn& c, int app_fd, const char* why) {
  std::fprintf(stderr,
               "usmc: SCM_RIGHTS: SMC connection on fd %d cannot move to the "
               "receiving process (%s); it is reset\n",
               app_fd, why);
  if (runtime::SmcSocket* s = c.smc()) s->Abort();
  sockaddr unspec{};
  unspec.sa_family = AF_UNSPEC;
  (void)real().connect(app_fd, &unspec, sizeof unspec);
}

struct Outgoing {
  size_t index;  // of the app's fd in the message
  std::shared_ptr<Conn> conn;
  runtime::ExecRecord rec;
};

// ---- receiving ----

struct Incoming {
  size_t index;
  runtime::ExecRecord rec;
};
struct State {
  size_t app_fds = 0;
  uint32_t marker = 0;
  std::vector<Incoming> records;
  // Laid out as ours, but not sealed, or made by a uid we do not trust
  // (TrustedStateOwner): nothing of it is taken (it could be forged).
  bool foreign = false;
};

// Is the last fd of the message our state memfd? Sealed, ours, and its
// counts match the message exactly; anything else is the app's.
std::optional<State> ReadState(const std::vector<int>& fds) {
  const int sfd = fds.back();
  struct stat st {};
  if (::fstat(sfd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 20 ||
      st.st_size > static_cast<off_t>(kMaxState)) {
    return std::nullopt;
  }
  const int seals = real().fcntl(sfd, F_GET_SEALS);
  if (seals < 0) return std::nullopt;  // not a memfd
  const bool foreign = !TrustedStateOwner(st.st_uid) ||
                       !(seals & F_SEAL_WRITE) || !(seals & F_SEAL_SHRINK);
  std::string blob(static_cast<size_t>(st.st_size), '\0');
  if (::pread(sfd, blob.data(), blob.size(), 0) !=
      static_cast<ssize_t>(blob.size())) {
    return std::nullopt;
  }
  std::string_view in(blob);
  if (!in.starts_with(kMagic)) return std::nullopt;
  in.remove_prefix(kMagic.size());
  bool ok = true;
  State s;
  s.foreign = foreign;
  s.app_fds = GetU32(in, ok);
  const uint32_t n = GetU32(in, ok);
  s.marker = GetU32(in, ok);
  if (!ok || s.app_fds + kBufferFds * n + 1 != fds.size()) return std::nullopt;
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t index = GetU32(in, ok);
    const uint32_t len = GetU32(in, ok);
    if (!ok || index >= s.app_fds || len > in.size()) return std::nullopt;
    std::string_view rec = in.substr(0, len);
    in.remove_prefix(len);
    Result<runtime::ExecRecord> r = runtime::DecodeExecRecord(rec);
    if (!r.ok()) return std::nullopt;
    s.records.push_back({index, std::move(*r)});
  }
  if (!in.empty()) return std::nullopt;
  return s;
}

// The Conn this process already has for the socket behind `fd` (it handed
// the connection out and kept a copy, and now gets it back), if any.
std::shared_ptr<Conn> TrackedSameSocket(int fd) {
  struct stat want {};
  if (::fstat(fd, &want) != 0) return nullptr;
  std::vector<std::pair<int, std::shared_ptr<Conn>>> all;
  table().ForEach([&](int f, const std::shared_ptr<Conn>& c) {
    if (f != fd) all.emplace_back(f, c);
  });
  for (const auto& [f, c] : all) {
    struct stat st {};
    if (::fstat(f, &st) == 0 && st.st_ino == want.st_ino &&
        st.st_dev == want.st_dev) {
      return c;
    }
  }
  return nullptr;
}

// Takes the connections of `s` along; their app fds are fds[index].
void Adopt(const std::vector<int>& fds, State& s) {
  for (size_t k = 0; k < s.records.size(); ++k) {
    Incoming& in = s.records[k];
    const int app_fd = fds[in.index];
    const int* bufs = fds.data() + s.app_fds + kBufferFds * k;
    auto close_bufs = [&] {
      for (size_t j = 0; j < kBufferFds; ++j) real().close(bufs[j]);
    };
    if (std::shared_ptr<Conn> mine = TrackedSameSocket(app_fd)) {
      close_bufs();  // our own mappings are still there
      table().Install(app_fd, mine);
      mine->RemoveHolderValue(s.marker);
      continue;
    }
    runtime::ExecRecord& r = in.rec;
    const int priv = real().fcntl(app_fd, F_DUPFD_CLOEXEC, 0);
    if (priv < 0) {
      close_bufs();
      std::fprintf(stderr,
                   "usmc: SCM_RIGHTS: no fd left to take the SMC connection "
                   "on fd %d; it is reset\n",
                   app_fd);
      struct linger l = {1, 0};
      ::setsockopt(app_fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      ::shutdown(app_fd, SHUT_RDWR);
      continue;
    }
    r.tcp_fd = priv;
    r.tcp_cloexec = true;
    r.local_memfd = bufs[0];
    r.peer_memfd = bufs[1];
    r.doorbell_fd = bufs[2];
    Result<std::unique_ptr<runtime::SmcSocket>> sock =
        runtime::SmcSocket::AdoptRecord(r, /*own_buffer_fds=*/true);
    if (!sock.ok()) {
      std::fprintf(stderr,
                   "usmc: SCM_RIGHTS: could not take the SMC connection on "
                   "fd %d: %s\n",
                   app_fd, std::string(sock.status().message()).c_str());
      real().close(priv);
      continue;
    }
    auto c = std::make_shared<Conn>((*sock)->status().engine.role);
    c->Adopt(std::move(*sock));
    table().Install(app_fd, c);
    c->SetAppFd(app_fd);
    // A holder like a fork child; the in-flight marker has done its job.
    c->AddHolderPid(::getpid());
    c->RemoveHolderValue(s.marker);
    // The peer rang nobody of ours while the connection was in flight.
    if (runtime::SmcSocket* smc = c->smc()) (void)smc->Poll(POLLIN);
  }
}

// Lays the control data of `got` out in the app's buffer as the kernel
// would have (put_cmsg, scm_detach_fds), with only the first `app_fds` of
// the message's fds. Returns how many of those fit; sets MSG_CTRUNC.
size_t CopyControl(msghdr* got, msghdr* app, size_t room_total, size_t app_fds,
                   int* flags) {
  char* out = static_cast<char*>(app->msg_control);
  size_t used = 0, seen = 0, fit = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(got); c != nullptr; c = CMSG_NXTHDR(got, c)) {
    const size_t room = room_total - used;
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const size_t mine = seen < app_fds ? std::min(k, app_fds - seen) : 0;
      const size_t first = seen;
      seen += k;
      if (mine == 0) continue;
      const size_t max =
          room > sizeof(cmsghdr) ? (room - sizeof(cmsghdr)) / sizeof(int) : 0;
      const size_t n = std::min(mine, max);
      if (n < mine) *flags |= MSG_CTRUNC;
      if (n == 0) continue;
      if (first == fit) fit += n;  // (one list in practice: always true)
      cmsghdr h{};
      h.cmsg_len = CMSG_LEN(n * sizeof(int));
      h.cmsg_level = SOL_SOCKET;
      h.cmsg_type = SCM_RIGHTS;
      std::memcpy(out + used, &h, sizeof h);
      std::memcpy(out + used + CMSG_LEN(0), CMSG_DATA(c), n * sizeof(int));
      used += std::min(CMSG_SPACE(n * sizeof(int)), room);
      continue;
    }
    if (room < sizeof(cmsghdr)) {
      *flags |= MSG_CTRUNC;
      continue;
    }
    size_t len = c->cmsg_len;
    if (room < len) {
      *flags |= MSG_CTRUNC;
      len = room;
    }
    std::memcpy(out + used, c, len);
    reinterpret_cast<cmsghdr*>(out + used)->cmsg_len = len;
    used += std::min(CMSG_ALIGN(c->cmsg_len), room);
  }
  app->msg_controllen = used;
  return fit;
}

}  // namespace

std::optional<bool> InFlightAlive(uint32_t holder) {
  if ((holder & kToSocket) != kToSocket) return std::nullopt;
  // In a seccomp sandbox the netlink socket may kill us: alive, as a fork
  // holder is there (PidAlive).
  if (base::SyscallFilterActive()) return true;
  uint64_t peer = 0;
  return UnixDiag(holder & ~kToSocket, &peer) != 0;
}

ssize_t SendmsgPassing(int fd, const msghdr* msg, int flags) {
  const std::vector<int> fds = RightsFds(msg);
  if (fds.empty()) return real().sendmsg(fd, msg, flags);
  Inside in;
  std::vector<Outgoing> out;
  Takes takes = kNotAsked;
  bool same_uid = false;
  const char* why = "";
  for (size_t i = 0; i < fds.size(); ++i) {
    std::shared_ptr<Conn> c = table().Lookup(fds[i]);
    if (!c) continue;
    bool again = false;  // the same connection twice: one record
    for (const Outgoing& o : out) again |= o.conn == c;
    if (again) continue;
    c->SettleForPass(fds[i]);
    runtime::SmcSocket* s = c->smc();
    if (s == nullptr || s->mode() != engine::Mode::kSmc) continue;  // TCP
    if (takes == kNotAsked) takes = PeerTakes(fd, &why, &same_uid);
    if (takes == kNo) {
      ResetConn(*c, fds[i], why);
      continue;
    }
    if (fds.size() + kBufferFds * (out.size() + 1) + 1 > kMaxFds) {
      ResetConn(*c, fds[i], "too many fds in one message");
      continue;
    }
    Outgoing o{i, c, {}};
    if (Status st = s->ExportForPass(o.rec, same_uid); !st.ok()) {
      ResetConn(*c, fds[i], std::string(st.message()).c_str());
      continue;
    }
    out.push_back(std::move(o));
  }
  if (out.empty()) return real().sendmsg(fd, msg, flags);

  const uint32_t marker = InFlightMarker(fd, msg);
  std::string blob(kMagic);
  PutU32(blob, static_cast<uint32_t>(fds.size()));
  PutU32(blob, static_cast<uint32_t>(out.size()));
  PutU32(blob, marker);
  std::vector<int> extra;
  for (const Outgoing& o : out) {
    std::string rec;
    runtime::AppendExecRecord(o.rec, rec);
    PutU32(blob, static_cast<uint32_t>(o.index));
    PutU32(blob, static_cast<uint32_t>(rec.size()));
    blob += rec;
    for (int b : {o.rec.local_memfd, o.rec.peer_memfd, o.rec.doorbell_fd}) {
      extra.push_back(b);
    }
  }
  const int state =
      ::memfd_create("usmc-pass", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  bool written = state >= 0 && real().write(state, blob.data(), blob.size()) ==
                                   static_cast<ssize_t>(blob.size());
  written = written && real().fcntl(state, F_ADD_SEALS,
                                    F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW |
                                        F_SEAL_WRITE) == 0;
  if (!written) {
    if (state >= 0) real().close(state);
    for (const Outgoing& o : out) {
      ResetConn(*o.conn, fds[o.index], "no memfd for its state");
    }
    return real().sendmsg(fd, msg, flags);
  }
  extra.push_back(state);
  // The app's control data, then one SCM_RIGHTS with ours: they arrive
  // after the app's in the receiver's list.
  const size_t app_len = CMSG_ALIGN(msg->msg_controllen);
  std::vector<cmsghdr> ctl_store(
      (app_len + CMSG_SPACE(extra.size() * sizeof(int))) / sizeof(cmsghdr) + 1);
  char* ctl = reinterpret_cast<char*>(ctl_store.data());
  std::memset(ctl, 0, ctl_store.size() * sizeof(cmsghdr));
  std::memcpy(ctl, msg->msg_control, msg->msg_controllen);
  auto* c = reinterpret_cast<cmsghdr*>(ctl + app_len);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(extra.size() * sizeof(int));
  std::memcpy(CMSG_DATA(c), extra.data(), extra.size() * sizeof(int));
  msghdr m = *msg;
  m.msg_control = ctl;
  m.msg_controllen = app_len + CMSG_SPACE(extra.size() * sizeof(int));
  for (const Outgoing& o : out) o.conn->AddHolderValue(marker);
  const ssize_t r = real().sendmsg(fd, &m, flags);
  const int err = errno;
  if (r < 0) {
    for (const Outgoing& o : out) o.conn->RemoveHolderValue(marker);
  }
  real().close(state);
  errno = err;
  return r;
}

ssize_t RecvmsgPassing(int fd, msghdr* msg, int flags) {
  const size_t app_len = msg->msg_controllen;
  // Room for the app's control data and a full list of fds.
  // On the stack for the usual small buffers (a UDP server's IP_PKTINFO
  // comes through here on every datagram).
  const size_t need = CMSG_ALIGN(app_len) + CMSG_SPACE(kMaxFds * sizeof(int));
  alignas(cmsghdr) char small[2048];
  std::vector<cmsghdr> big;
  char* buf = small;
  if (need > sizeof small) {
    big.resize(need / sizeof(cmsghdr) + 1);
    buf = reinterpret_cast<char*>(big.data());
  }
  msghdr m = *msg;
  m.msg_control = buf;
  m.msg_controllen = need;
  const ssize_t r = real().recvmsg(fd, &m, flags);
  if (r < 0) return r;
  const int err = errno;
  Inside in;
  msg->msg_namelen = m.msg_namelen;
  int out_flags = m.msg_flags;
  const std::vector<int> fds = RightsFds(&m);
  std::optional<State> s;
  if (!fds.empty()) s = ReadState(fds);
  const size_t app_fds = s ? s->app_fds : fds.size();
  if (s) {
    // Ours, not the app's: closed or owned by usmc from here on.
    for (size_t i = app_fds; i < fds.size(); ++i) {
      real().fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    real().close(fds.back());
  }
  const size_t fit = CopyControl(&m, msg, app_len, app_fds, &out_flags);
  if (s && s->foreign) {
    // Its sender checked our uid (see kOtherUid); if it still came, take
    // nothing of it, and leave no silent socket either.
    for (size_t i = app_fds; i + 1 < fds.size(); ++i) real().close(fds[i]);
    for (const Incoming& in : s->records) {
      const int app_fd = fds[in.index];
      std::fprintf(stderr,
                   "usmc: SCM_RIGHTS: an SMC connection on fd %d came from "
                   "another uid (not root); it is reset\n",
                   app_fd);
      struct linger l = {1, 0};
      ::setsockopt(app_fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      ::shutdown(app_fd, SHUT_RDWR);
    }
  } else if (s && !(flags & MSG_PEEK)) {
    Adopt(fds, *s);
  } else if (s) {
    // A peek: the kernel gives the fds again with the real read, which
    // takes the connections then.
    for (size_t i = app_fds; i + 1 < fds.size(); ++i) real().close(fds[i]);
  }
  // As the kernel does, fds that did not fit are closed (a connection
  // taken along ends as on close(2)).
  for (size_t i = fit; i < app_fds; ++i) {
    ForgetFdForProcess(fds[i]);
    real().close(fds[i]);
  }
  msg->msg_flags = out_flags;
  errno = err;
  return r;
}

}  // namespace usmc::preload
