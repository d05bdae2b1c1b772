#include "preload/conn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "base/owned_fd.h"
#include "base/sandbox.h"
#include "negotiate/negotiate.h"
#include "preload/epoll.h"
#include "preload/pass.h"
#include "preload/real.h"
#include "preload/signals.h"
#include "preload/smcr.h"
#include "preload/status.h"
#include "preload/unattended.h"
#include "runtime/config.h"
#include "runtime/wait.h"
#include "wire/reason.h"

namespace usmc::preload {
namespace {

// How long a non-blocking write waits for an undecided handshake.
constexpr int kEarlyWriteWaitMs = 50;

bool ProcVisible() {
  struct stat st {};
  return ::stat("/proc/self/stat", &st) == 0;
}

// The holder table (SmcSocket::ProcessHolders): pids of the processes that hold
// an SMC-D connection. A process that exits without closing (_exit, a
// crash, a Redis BGSAVE child) leaves its pid behind; a dead or zombie pid
// no longer counts, so the last live holder still runs the SMC close.
bool PidAlive(uint32_t pid) {
  // In a seccomp sandbox (sshd's pre-auth child) a call may kill us, and a
  // holder we cannot check is alive: we never close under it.
  if (base::SyscallFilterActive()) return true;
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%u/stat", pid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // No /proc here (a server that chroot()ed after accept): kill(0)
    // tells a gone pid (ESRCH) from a live one, of any uid (EPERM).
    if (ProcVisible()) return false;
    return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
  }
  char buf[512];
  ssize_t n = real().read(fd, buf, sizeof buf - 1);
  real().close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return true;
  return p[2] != 'Z' && p[2] != 'X';  // a zombie's fds are closed
}

void AddHolder(uint32_t* table, uint32_t pid) {
  for (size_t i = 0; i < runtime::kProcessHolderSlots; ++i) {
    if (std::atomic_ref<uint32_t>(table[i]).load() == pid) return;
  }
  for (size_t i = 0; i < runtime::kProcessHolderSlots; ++i) {
    uint32_t expected = 0;
    if (std::atomic_ref<uint32_t>(table[i]).compare_exchange_strong(expected,
                                                                    pid)) {
      return;
    }
  }
}

void RemoveHolder(uint32_t* table, uint32_t pid) {
  for (size_t i = 0; i < runtime::kProcessHolderSlots; ++i) {
    uint32_t expected = pid;
    std::atomic_ref<uint32_t>(table[i]).compare_exchange_strong(expected, 0);
  }
}

// A pass marker (Conn::PassMarker) lives as long as its sender: the
// receiver may take the connection after the sender closed it.
constexpr uint32_t kPassMarkerBit = 0x80000000u;

bool OtherHolderAlive(uint32_t* table, uint32_t self) {
  bool alive = false;
  for (size_t i = 0; i < runtime::kProcessHolderSlots; ++i) {
    uint32_t v = std::atomic_ref<uint32_t>(table[i]).load();
    if (v == 0 || v == self) continue;
    const std::optional<bool> in_flight = InFlightAlive(v);  // pass.h
    if (in_flight ? *in_flight : PidAlive(v & ~kPassMarkerBit)) {
      alive = true;
    } else {
      std::atomic_ref<uint32_t>(table[i]).compare_exchange_strong(v, 0);
    }
  }
  return alive;
}

}  // namespace

namespace {
// The settings are read when the library is loaded, not at the first
// connection: nginx clears its workers' environment (all but TZ) before
// they connect.
[[maybe_unused]] const bool g_options_read = (runtime::ProcessConfig(), true);
// Once, while the process has one thread (SayOnce sets the environment).
[[maybe_unused]] const bool g_status_dir_said =
    (runtime::SayStatusDirProblemOnce(), true);
}  // namespace

runtime::Options SocketOptions(engine::Role role) {
  const runtime::Config& cfg = runtime::ProcessConfig();
  runtime::Options o;
  o.role = role;
  o.dmb_size = cfg.dmb_size.value_or(runtime::kDefaultDmbSize);
  // Unless USMC_DMB_SIZE fixes the size: 1 MiB DMBs while this process's
  // DMBs stay within 4 MiB (its first three connections: a stream's
  // sender then waits for room four times less often; iperf3 2.0x -> 3.6x
  // TCP on this VM), 256 KiB for the rest (a server's hundreds of
  // connections keep their cache footprint and memory), smaller still once
  // it holds thousands (runtime::HeldDmbSize).
  if (!cfg.dmb_size.has_value()) {
    o.roomy_dmb_size = 1024 * 1024;
    o.roomy_budget = 4 << 20;
    o.dmb_follows_held = true;
  }
  o.clc_timeout = cfg.clc_timeout;
  return o;
}

bool HooksAbsent(const negotiate::Outcome& o) {
  return o.detail == negotiate::Detail::kHooksAbsent ||
         o.detail == negotiate::Detail::kNotBuilt;
}

uint32_t FallbackReason(const negotiate::Outcome& o) {
  return HooksAbsent(o) ? wire::kReasonNoNegotiation : o.reason;
}

// ---- Conn -------------------------------------------------------------------

Conn::~Conn() {
  Inside in;
  if (mirror_rd >= 0) base::CloseOwnedFd(mirror_rd);
  if (mirror_wr >= 0) base::CloseOwnedFd(mirror_wr);
}

std::pair<std::atomic<uint64_t>*, std::atomic<uint64_t>*> Conn::PassCounters() {
  runtime::StatusPublisher* pub = runtime::StatusPublisher::Process();
  if (pub == nullptr) return {};
  return pub->TcpByteCounters(slot_);
}

runtime::SmcSocket* Conn::smc() const {
  return phase() == Phase::kSmc ? sock_.get() : nullptr;
}

void Conn::BecomeTcp(uint32_t reason, uint32_t peer_reason) {
  reason_ = reason;
  peer_reason_ = peer_reason;
  phase_.store(Phase::kTcp, std::memory_order_release);
  NoteFallback(role_, reason);
  const uint64_t early = early_out_.exchange(0, std::memory_order_relaxed);
  if (runtime::StatusPublisher* pub = runtime::StatusPublisher::Process()) {
    runtime::ConnRecord r = Record();
    pub->Update(slot_, r);
    pub->CountHandshake(r);
    if (early > 0) pub->AddBytes(slot_, 0, early, false);
  }
}

runtime::ConnRecord Conn::Record() {
  runtime::ConnRecord r = base_;
  if (sock_ && phase() == Phase::kSmc) {
    r = runtime::RecordFrom(sock_->status(), -1);
    r.local = base_.local;
    r.peer = base_.peer;
    r.inode = base_.inode;
    r.uid = base_.uid;
    r.pid = base_.pid;
  } else {
    r.mode = phase() == Phase::kTcp ? runtime::ConnMode::kTcp
                                    : runtime::ConnMode::kHandshake;
    r.role = role_;
    r.local_reason = reason_;
    r.peer_reason = peer_reason_;  // the Decline's diagnosis, if any
    runtime::SetState(r, phase() == Phase::kTcp ? "TCP" : "CONNECTING");
  }
  r.fd = app_fd_;
  return r;
}

void Conn::Publish() {
  runtime::StatusPublisher* pub = runtime::StatusPublisher::Process();
  if (pub == nullptr) return;
  if (slot_ == runtime::kNoSlot) {
    slot_ = pub->Acquire();
    // pid: left 0 for the publisher to fill (RepublishAfterFork sets the
    // child's), so no getpid per connection.
    if (app_fd_ >= 0) {
      runtime::FillFromFdKnown(base_, app_fd_,
                               known_peer_len_ > 0
                                   ? reinterpret_cast<sockaddr*>(&known_peer_)
                                   : nullptr,
                               known_peer_len_);
    }
  }
  pub->Update(slot_, Record());
}

void Conn::RepublishAfterFork() {
  // The child counts what it moves itself; the parent's bytes stay the
  // parent's.
  bytes_in.store(0, std::memory_order_relaxed);
  bytes_out.store(0, std::memory_order_relaxed);
  slot_ = runtime::kNoSlot;  // that slot is in the parent's file
  base_.pid = static_cast<int32_t>(::getpid());
  Publish();
}

void Conn::OnEstablished(int app_fd, bool blocking,
                         const negotiate::Outcome* known) {
  Inside in;
  {
    std::lock_guard lock(phase_mu_);
    if (phase() != Phase::kConnecting) return;
    app_fd_ = app_fd;
    Publish();
    const negotiate::Outcome o =
        known != nullptr ? *known : negotiate::QueryOutcome(app_fd);
    if (!o.both_offered()) {
      BecomeTcp(FallbackReason(o));
      return;
    }
    // The runtime's own reference to the socket: the app may close or dup2
    // over its fd numbers at will. Above the numbers programs dup2 onto
    // (base/owned_fd.h); the SmcSocket marks it as ours.
    int priv = real().fcntl(app_fd, F_DUPFD_CLOEXEC, base::kOwnedFdFloor);
    if (priv < 0 && errno == EINVAL) {
      priv = real().fcntl(app_fd, F_DUPFD_CLOEXEC, 0);  // a low fd limit
    }
    if (priv < 0) {
      BecomeTcp(errno == EMFILE || errno == ENFILE ? wire::kReasonNoFd
                                                   : wire::kReasonMem);
      return;
    }
    runtime::Options opts = SocketOptions(role_);
    opts.smcr = SmcrRegistryFor(priv);  // null: no RDMA device serves it
    Result<std::unique_ptr<runtime::SmcSocket>> s =
        runtime::SmcSocket::Start(priv, opts);
    if (!s.ok()) {
      // The peer committed to SMC and then broke the protocol: the runtime
      // reset the connection, so the app's calls fail as on a reset socket.
      NoteHandshakeError(role_);
      BecomeTcp(0);
      return;
    }
    sock_ = std::move(*s);
    phase_.store(Phase::kSmc, std::memory_order_release);
  }
  // Not under phase_mu_: a handshake that ends in TCP (the peer declined)
  // makes AfterCall take it, and a blocking connect() then deadlocked.
  if (blocking) (void)sock_->Progress(-1);
  AfterCall();
  // Never stalls accept() or a non-blocking connect: if the app leaves the
  // socket alone (an accept loop, a pool connecting ahead of use), the
  // thread answers the peer before its CLC timer runs out.
  if (!blocking) {
    if (std::shared_ptr<Conn> self = weak_from_this().lock()) {
      NoteUnattended(self);
    }
  }
}

void Conn::SetKnownPeer(const sockaddr* a, socklen_t len) {
  if (a == nullptr || len == 0 || len > sizeof known_peer_ ||
      (a->sa_family != AF_INET && a->sa_family != AF_INET6)) {
    return;
  }
  std::memcpy(&known_peer_, a, len);
  known_peer_len_ = len;
}

bool Conn::SettleConnect(int app_fd, bool likely_done) {
  Inside in;
  if (phase() != Phase::kConnecting) return true;
  // getpeername, not SO_ERROR: reading SO_ERROR would clear it for the app.
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  // Several threads may settle at once: the address is stored under the
  // phase lock, which OnEstablished's Publish reads it under.
  auto established = [&] {
    {
      std::lock_guard lock(phase_mu_);
      if (phase() == Phase::kConnecting) {
        SetKnownPeer(reinterpret_cast<sockaddr*>(&ss), len);
      }
    }
    OnEstablished(app_fd, /*blocking=*/false);
  };
  if (likely_done &&
      ::getpeername(app_fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    established();
    return true;
  }
  // Not connected (yet): in progress or failed, as poll tells. The connect
  // may also have finished since that getpeername: asked again below.
  struct pollfd p = {app_fd, POLLOUT, 0};
  if (real().poll(&p, 1, 0) <= 0) return false;
  if (!(p.revents & (POLLOUT | POLLERR | POLLHUP))) return false;
  len = sizeof ss;
  if (::getpeername(app_fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    established();
  } else {
    std::lock_guard lock(phase_mu_);
    if (phase() == Phase::kConnecting) {
      phase_.store(Phase::kTcp, std::memory_order_release);  // failed
    }
  }
  return true;
}

void Conn::AfterCall(bool data) {
  if (phase() != Phase::kSmc || sock_->handshaking()) return;
  if (sock_->mode() == engine::Mode::kSmc) {
    if (!counted_smc()) {
      std::lock_guard lock(phase_mu_);
      if (counted_smc_.load(std::memory_order_relaxed)) return;
      NoteSmcd(role_);
      if (sock_->is_smcr()) NoteSmcr();
      if (uint32_t* t = sock_->ProcessHolders()) {
        AddHolder(t, static_cast<uint32_t>(::getpid()));
      }
      const uint64_t early = early_out_.exchange(0, std::memory_order_relaxed);
      if (runtime::StatusPublisher* pub = runtime::StatusPublisher::Process()) {
        runtime::ConnRecord r = Record();
        pub->Update(slot_, r);
        pub->CountHandshake(r);
        if (early > 0) pub->AddBytes(slot_, 0, early, true);
      }
      counted_smc_.store(true, std::memory_order_release);
    } else if (data && (++calls_ & 1023) == 0) {
      Publish();  // cursors and counters for `usmc ss -W`, now and then
    }
    return;
  }
  // Declined or timed out: from now on the kernel socket is all there is.
  // The SmcSocket (TCP mode) stays until release: another thread may be
  // inside it right now.
  std::lock_guard lock(phase_mu_);
  if (phase() == Phase::kSmc) {
    // Failed (not declined): the peer had committed, the connection was
    // reset. A handshake error, as when Start fails (OnEstablished).
    if (sock_->mode() == engine::Mode::kFailed) NoteHandshakeError(role_);
    const runtime::SocketStatus st = sock_->status();
    BecomeTcp(st.engine.local_reason, st.engine.peer_reason);
  }
}

ssize_t Conn::CountIn(ssize_t n) {
  if (n > 0) {
    bytes_in.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    if (runtime::StatusPublisher* pub = runtime::StatusPublisher::Process()) {
      pub->AddBytes(slot_, static_cast<uint64_t>(n), 0, counted_smc());
    }
  }
  return n;
}

ssize_t Conn::CountOut(ssize_t n) {
  if (n > 0) {
    bytes_out.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    if (phase() == Phase::kSmc && !counted_smc() && sock_->handshaking()) {
      // Early data: its path is known at the decision (AfterCall).
      early_out_.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      return n;
    }
    if (runtime::StatusPublisher* pub = runtime::StatusPublisher::Process()) {
      pub->AddBytes(slot_, 0, static_cast<uint64_t>(n), counted_smc());
    }
  }
  return n;
}

bool Conn::DropLateClc(int app_fd, int flags) {
  const bool wait =
      !(flags & MSG_DONTWAIT) && !(real().fcntl(app_fd, F_GETFL) & O_NONBLOCK);
  return sock_->DropLateClc(app_fd, wait) == runtime::LateClc::kDone;
}

ssize_t Conn::Recv(int app_fd, void* buf, size_t len, int flags) {
  Inside in;
  if (phase() == Phase::kConnecting) SettleConnect(app_fd);
  if (phase() != Phase::kSmc) {
    // We declined: the peer's one crossing CLC message is not the app's
    // (runtime/late_clc.h). errno EAGAIN / EINTR as the read would say.
    if (LateClcPending() && !DropLateClc(app_fd, flags)) return -1;
    const ssize_t r = real().recv(app_fd, buf, len, flags);
    return (flags & MSG_PEEK) ? r : CountIn(r);  // as below: read, not peeked
  }
  // The epoll mirrors are not cleared here: a stale one costs a spurious
  // wakeup that epoll_wait filters, and saves two syscalls per message.
  ssize_t n;
  {
    InFlight guard(*this);
    do {
      ClearLastSignal();
      n = sock_->Recv(buf, len, flags);
    } while (n < 0 && errno == EINTR && ShouldRestart());
  }
  const int err = errno;
  AfterCall();
  // A read that emptied the socket clears a set epoll mirror now, so the
  // next epoll_wait does not wake for nothing.
  if (mirror_rd_on && !(flags & MSG_PEEK)) UpdateMirrors();
  errno = err;
  return (flags & MSG_PEEK) ? n : CountIn(n);
}

ssize_t Conn::Send(int app_fd, const void* buf, size_t len, int flags) {
  Inside in;
  if (phase() == Phase::kConnecting) SettleConnect(app_fd);
  if (phase() != Phase::kSmc) {
    return CountOut(real().send(app_fd, buf, len, flags));
  }
  if (role_ == engine::Role::kServer && sock_->handshaking()) {
    // A write right after accept (a greeting, an error before close) would
    // get EAGAIN from a non-blocking socket while the CLC exchange runs. A
    // usmc client answers within a few round trips, so wait that long; a
    // silent one still costs at most this. (A client's writes are early
    // data: the runtime keeps them until the decision.)
    (void)sock_->Progress(kEarlyWriteWaitMs);
  }
  ssize_t n;
  {
    InFlight guard(*this);
    do {
      ClearLastSignal();
      n = sock_->Send(buf, len, flags);
    } while (n < 0 && errno == EINTR && ShouldRestart());
  }
  const int err = errno;
  AfterCall();
  errno = err;
  return CountOut(n);
}

short Conn::Poll(int app_fd, short events) {
  Inside in;
  if (phase() == Phase::kConnecting && !SettleConnect(app_fd)) {
    struct pollfd p = {app_fd, events, 0};
    return real().poll(&p, 1, 0) > 0 ? p.revents : 0;
  }
  if (phase() == Phase::kSmc) {
    short r = sock_->Poll(events);
    AfterCall(/*data=*/false);
    if (phase() == Phase::kSmc) return r;
  }
  if (LateClcPending()) (void)DropLateClc(app_fd, MSG_DONTWAIT);
  struct pollfd p = {app_fd, events, 0};
  return real().poll(&p, 1, 0) > 0 ? p.revents : 0;
}

void Conn::SettleHandshake() {
  Inside in;
  if (phase() != Phase::kSmc || !sock_->handshaking()) return;
  (void)sock_->Progress(-1);
  AfterCall(/*data=*/false);
}

void Conn::SettleEarlyDataForFork() {
  Inside in;
  if (early_out_.load(std::memory_order_relaxed) == 0 ||
      phase() != Phase::kSmc || !sock_->handshaking()) {
    return;
  }
  (void)sock_->Progress(kEarlyWriteWaitMs);
  sock_->FlushEarlyData();
  AfterCall(/*data=*/false);
}

void Conn::SetNonblocking(bool on) {
  if (sock_) sock_->SetNonblocking(on);
}

void Conn::SetRcvLowat(int n) {
  if (sock_) sock_->SetRcvLowat(n);
}

int Conn::Readable(int app_fd) {
  Inside in;
  if (phase() == Phase::kSmc) {
    int n = sock_->Readable();
    AfterCall();
    if (phase() == Phase::kSmc) return n;
  }
  if (LateClcPending()) (void)DropLateClc(app_fd, MSG_DONTWAIT);
  int n = 0;
  return real().ioctl(app_fd, FIONREAD, &n) == 0 ? n : -1;
}

bool Conn::AtMark(int app_fd) {
  Inside in;
  if (phase() == Phase::kSmc) return sock_->AtMark();
  int at = 0;
  return real().ioctl(app_fd, SIOCATMARK, &at) == 0 && at;
}

int Conn::Shutdown(int app_fd, int how) {
  Inside in;
  if (phase() == Phase::kConnecting) SettleConnect(app_fd);
  if (phase() == Phase::kSmc) {
    int r = sock_->Shutdown(how);
    const int err = errno;
    AfterCall();
    if (in_epoll.load(std::memory_order_relaxed)) UpdateMirrors();
    // The close state changed: `usmc ss` shows it, with the cursors and
    // counters as they are now (a state change, not the data path).
    if (phase() == Phase::kSmc && counted_smc()) Publish();
    errno = err;
    if (phase() == Phase::kSmc) return r;
  }
  return real().shutdown(app_fd, how);
}

void Conn::ReleaseFromProcess() {
  Inside in;
  DropEpollRegs(*this);
  if (early_out_.load(std::memory_order_relaxed) > 0 &&
      phase() == Phase::kSmc) {
    // A client closing before the decision: its early data goes now (and
    // with it the decision), so that the record below says where.
    sock_->FlushEarlyData();
    AfterCall(/*data=*/false);
  }
  std::lock_guard lock(phase_mu_);
  if (released_) return;
  released_ = true;
  if (runtime::StatusPublisher* pub = runtime::StatusPublisher::Process()) {
    pub->Update(slot_, Record());
    pub->Release(slot_);
    slot_ = runtime::kNoSlot;
  }
  if (!sock_) return;
  const uint32_t self = static_cast<uint32_t>(::getpid());
  uint32_t* holders = sock_->ProcessHolders();
  if (holders != nullptr) {
    RemoveHolder(holders, self);
    forget_ = OtherHolderAlive(holders, self);
  } else {
    // Undecided here when a fork copied it: the holder table does not cover
    // it (no process had it in SMC-D then), and the copy may run on in
    // another process (a forking server's child finishes the handshake).
    // A close here would mark the peer's DMB released and free ours under
    // it; the pair's next connection then took those slots (PostgreSQL
    // under pgbench -C lost a client's last 5 bytes). The child that
    // decides it holds it alone, as after exec.
    forget_ = forked() && sock_->handshaking();
  }
  // Another thread may sleep inside the socket (a blocking recv): as with
  // close(2) of a TCP socket in use, the connection goes only when that
  // call returns. Until then the peer learns of the close (shutdown), and
  // the buffers stay mapped under the sleeper.
  release_pending_.store(true, std::memory_order_seq_cst);
  if (inflight_.load(std::memory_order_seq_cst) == 0) {
    FinishRelease();
  } else if (!forget_) {
    (void)sock_->Shutdown(SHUT_RDWR);
  }
}

void Conn::FinishRelease() {
  if (release_done_.exchange(true)) return;
  if (forget_) {
    sock_->Forget();  // another process still holds the connection
  } else {
    sock_->Close();
  }
  UnattendedReleased();  // its poll may hold the socket open
}

Conn::InFlight::InFlight(Conn& c) : c_(c) {
  c_.inflight_.fetch_add(1, std::memory_order_seq_cst);
}

Conn::InFlight::~InFlight() {
  if (c_.inflight_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
      c_.release_pending_.load(std::memory_order_seq_cst)) {
    c_.FinishRelease();
    WatchIdlePairs();  // no lock held here
  }
}

void Conn::Adopt(std::unique_ptr<runtime::SmcSocket> s) {
  sock_ = std::move(s);
  counted_smc_.store(sock_->mode() == engine::Mode::kSmc);
  phase_.store(Phase::kSmc, std::memory_order_release);
}

void Conn::SetAppFd(int fd) {
  app_fd_ = fd;
  Publish();
}

void Conn::AddHolderPid(pid_t pid) {
  forked_.store(true, std::memory_order_relaxed);
  if (!sock_ || phase() != Phase::kSmc) return;
  if (uint32_t* t = sock_->ProcessHolders()) {
    AddHolder(t, static_cast<uint32_t>(pid));
  }
}

void Conn::LockForFork() {
  mu.lock();  // epoll's, taken before the others (UpdateMirrors)
  phase_mu_.lock();
  if (sock_) sock_->LockForFork();
}

void Conn::UnlockAfterFork() {
  if (sock_) sock_->UnlockAfterFork();
  phase_mu_.unlock();
  mu.unlock();
}

uint32_t Conn::PassMarker(pid_t sender) {
  return static_cast<uint32_t>(sender) | kPassMarkerBit;
}

void Conn::AddHolderValue(uint32_t v) {
  forked_.store(true, std::memory_order_relaxed);  // two processes hold it
  if (!sock_ || phase() != Phase::kSmc) return;
  if (uint32_t* t = sock_->ProcessHolders()) AddHolder(t, v);
}

void Conn::RemoveHolderValue(uint32_t v) {
  if (!sock_ || phase() != Phase::kSmc) return;
  if (uint32_t* t = sock_->ProcessHolders()) RemoveHolder(t, v);
}

void Conn::SettleForPass(int app_fd) {
  Inside in;
  if (phase() == Phase::kConnecting && !SettleConnect(app_fd)) {
    // The kernel's connect is still under way: wait for it, bounded as a
    // handshake is.
    struct pollfd p = {app_fd, POLLOUT, 0};
    (void)real().poll(
        &p, 1, static_cast<int>(SocketOptions(role_).clc_timeout.count()));
    (void)SettleConnect(app_fd);
  }
  SettleHandshake();
}

// ---- ConnTable --------------------------------------------------------------

ConnTable::ConnTable() {
  struct rlimit rl = {};
  size_t n = 4096;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    n = rl.rlim_max == RLIM_INFINITY ? conn_detail::kMaxTrackedFds
                                     : static_cast<size_t>(rl.rlim_max);
  }
  size_ = std::min(std::max(n, size_t{1024}), conn_detail::kMaxTrackedFds);
  slots_.resize(size_);
}

std::shared_ptr<Conn> ConnTable::LookupSlow(int fd) const {
  std::shared_lock lock(mu_);
  return slots_[fd];
}

void ConnTable::Install(int fd, std::shared_ptr<Conn> c) {
  if (fd < 0 || static_cast<size_t>(fd) >= size_) return;
  std::unique_lock lock(mu_);
  TakePassBytes(fd, slots_[fd].get());
  if (slots_[fd]) --slots_[fd]->app_fds_;
  if (c) ++c->app_fds_;
  slots_[fd] = std::move(c);
  conn_detail::g_kind[fd].store(
      static_cast<uint8_t>(slots_[fd] ? FdKind::kConn : FdKind::kNone),
      std::memory_order_release);
}

std::shared_ptr<Conn> ConnTable::Remove(int fd) {
  if (fd < 0 || static_cast<size_t>(fd) >= size_) return nullptr;
  // Every close() of the app comes here (nginx closes each file it serves):
  // an fd that is not a connection costs a load, not the table's write lock.
  // Install and Remove of one fd number are ordered by the app's own calls
  // (accept or connect returned it before it closes it).
  if (Kind(fd) == FdKind::kNone) return nullptr;
  std::unique_lock lock(mu_);
  TakePassBytes(fd, slots_[fd].get());
  std::shared_ptr<Conn> c = std::move(slots_[fd]);
  slots_[fd] = nullptr;
  conn_detail::g_kind[fd].store(static_cast<uint8_t>(FdKind::kNone),
                                std::memory_order_release);
  if (!c) return nullptr;
  return --c->app_fds_ == 0 ? c : nullptr;  // else another fd still has it
}

void ConnTable::Duplicate(int from, int to) {
  if (to < 0 || static_cast<size_t>(to) >= size_) return;
  std::shared_ptr<Conn> c = Lookup(from);
  if (c) Install(to, std::move(c));
}

void ConnTable::UnlockAfterFork(bool child) {
  if (child) {
    new (&mu_) std::shared_mutex();  // held by us, no one else is left
  } else {
    mu_.unlock();
  }
}

void ConnTable::ForEach(
    const std::function<void(int, const std::shared_ptr<Conn>&)>& fn) const {
  std::shared_lock lock(mu_);
  for (size_t fd = 0; fd < size_; ++fd) {
    if (slots_[fd]) fn(static_cast<int>(fd), slots_[fd]);
  }
}

namespace conn_detail {
std::atomic<uint8_t> g_kind[kMaxTrackedFds];
Pass g_pass[kMaxTrackedFds];
std::atomic<ConnTable*> g_table{nullptr};
ConnTable& MakeTable() {
  static ConnTable* t = [] {
    auto* made = new ConnTable();  // never destroyed: used at exit
    g_table.store(made, std::memory_order_release);
    return made;
  }();
  return *t;
}
}  // namespace conn_detail

}  // namespace usmc::preload
