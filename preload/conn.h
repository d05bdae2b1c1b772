// preload/conn.h: what the interposer knows about one TCP connection, and
// the per-process table from fd numbers to it.
//
// The application's fd stays the kernel TCP socket. A Conn is shared by
// every fd of this process that refers to the same socket (dup, dup2, dup3,
// F_DUPFD); the SmcSocket inside works on a private dup of the socket, so
// that the app closing or renumbering its fds never pulls the connection
// out from under it. Across fork, the processes holding an SMC-D connection
// are listed (pids) in the DMB's control page (shared memory), and only the
// last live one to let go runs the SMC close.
//
//   std::shared_ptr<Conn> c = table().Lookup(fd);
//   if (!c) return real().recv(fd, buf, len, flags);  // not ours
//   return c->Recv(fd, buf, len, flags);
#ifndef USMC_PRELOAD_CONN_H_
#define USMC_PRELOAD_CONN_H_

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <utility>
#include <vector>

#include "engine/events.h"
#include "negotiate/negotiate.h"
#include "runtime/publish.h"
#include "runtime/smc_socket.h"

namespace usmc::preload {

enum class Phase : uint8_t {
  kConnecting,  // non-blocking connect in progress: the TCP verdict is due
  kSmc,         // SmcSocket present (handshaking, SMC-D, or declined)
  kTcp,         // plain TCP for good: every call passes to the kernel
};

struct EpollReg;  // preload/epoll.h

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  explicit Conn(engine::Role role) : role_(role) {}
  ~Conn();

  engine::Role role() const { return role_; }
  Phase phase() const { return phase_.load(std::memory_order_acquire); }

  // Becomes kSmc (the peer offered SMC too) or kTcp. `blocking` lets the
  // client handshake run to completion now (a blocking connect); otherwise
  // a handshake left undecided goes to the progress thread
  // (preload/unattended.h) in case the app leaves the socket alone.
  // `known`: the negotiation's outcome if the caller asked already (accept
  // does, to tell whether the connection is ours): not asked twice.
  void OnEstablished(int app_fd, bool blocking,
                     const negotiate::Outcome* known = nullptr);
  // kConnecting: checks whether the non-blocking connect finished, and if
  // so, settles. false if it is still in progress. `likely_done` (right
  // after connect() on a fast path such as loopback): asks getpeername
  // first, which answers an established socket in one call and hands its
  // address to the record; else poll first (one call while in progress).
  bool SettleConnect(int app_fd, bool likely_done = false);
  // The peer's address, known from accept() or a getpeername (saves the
  // record's own getpeername). Before the Conn is in the table (or under
  // the phase lock, as SettleConnect does), before OnEstablished.
  void SetKnownPeer(const sockaddr* a, socklen_t len);

  // Plain TCP for good (the peer did not offer SMC, or a fallback): the
  // app's call may reach the kernel as it was made — one sendmsg stays one
  // sendmsg, its control messages intact — counted with CountIn/CountOut.
  // A read waits for a late CLC message to be dropped first (`read`).
  bool PassThrough(int app_fd, bool read) {
    if (phase() == Phase::kConnecting) SettleConnect(app_fd);
    return phase() == Phase::kTcp && !(read && LateClcPending());
  }
  // Plain TCP for good and nothing of usmc's left on it: no late CLC
  // message to drop, no epoll registration of ours. Its fds may then go
  // kPassThru (ConnTable::MarkPassThru): calls reach the kernel as made.
  bool TcpForGood() const {
    return phase() == Phase::kTcp && !LateClcPending() &&
           !in_epoll.load(std::memory_order_acquire);
  }
  // Where kPassThru calls count the connection's bytes for `usmc ss`: its
  // status slot's TCP counters (null without a slot).
  std::pair<std::atomic<uint64_t>*, std::atomic<uint64_t>*> PassCounters();
  // Bytes the app moved (status, exit report); returns n.
  ssize_t CountIn(ssize_t n);
  ssize_t CountOut(ssize_t n);

  // Data path (the wrappers' common cases).
  ssize_t Recv(int app_fd, void* buf, size_t len, int flags);
  ssize_t Send(int app_fd, const void* buf, size_t len, int flags);

  // poll(2) bits that hold now, for the app's `events` (non-blocking).
  short Poll(int app_fd, short events);
  // The SmcSocket, if SMC may still carry bytes (handshake or SMC-D).
  runtime::SmcSocket* smc() const;

  // The app changed O_NONBLOCK / SO_RCVLOWAT.
  void SetNonblocking(bool on);
  void SetRcvLowat(int n);
  int Readable(int app_fd);
  bool AtMark(int app_fd);
  int Shutdown(int app_fd, int how);

  // exec cannot carry a handshake under way (its CLC state would be
  // lost): it finishes it first, bounded by the CLC timeout.
  void SettleHandshake();
  // fork must not copy a client's early data into two processes (both
  // would send it): a short wait for the decision, else it goes now over
  // TCP (FlushEarlyData). Other handshakes under way are left alone: a
  // fork (Redis's BGSAVE) must not wait for a slow peer's CLC.
  void SettleEarlyDataForFork();
  // A socket the previous program image handed over across exec.
  void Adopt(std::unique_ptr<runtime::SmcSocket> s);
  void SetAppFd(int fd);  // the adopting image publishes it under this fd
  // The last fd of this process referring to the connection was closed.
  void ReleaseFromProcess();
  // After fork: `pid` (the child, or ourselves in the child) holds it too.
  void AddHolderPid(pid_t pid);
  // SCM_RIGHTS (preload/pass.h): while a passed connection is in flight,
  // PassMarker() of the sender stands in the holder table for the process
  // that will receive it, so that the sender closing its copy right after
  // sendmsg does not end the connection; the receiver removes it.
  static uint32_t PassMarker(pid_t sender);
  void AddHolderValue(uint32_t v);
  void RemoveHolderValue(uint32_t v);
  // Before its fd leaves the process: a connect or a handshake under way
  // is finished first (the receiver could not carry it on).
  void SettleForPass(int app_fd);
  // Ever held by two processes (fork): both may sleep on its doorbell, so
  // an epoll sleep must not arm it with a sleep token (preload/epoll.cc).
  bool forked() const { return forked_.load(std::memory_order_relaxed); }
  // fork(): the epoll lock, the phase lock and the socket's lock are held
  // across the fork (in the order the app's calls take them), so that the
  // child never finds them held by a thread of the parent (git clone forks
  // index-pack while its sideband thread reads the connection: the child
  // hung in fork()).
  void LockForFork();
  void UnlockAfterFork();

  // epoll (preload/epoll.cc): registrations and readiness mirrors.
  std::mutex mu;
  std::vector<EpollReg*> regs;
  int mirror_rd = -1, mirror_wr = -1;  // eventfds, created on demand
  // Written under mu; read without it on the data path.
  std::atomic<bool> mirror_rd_on{false}, mirror_wr_on{false};
  // Re-evaluates readiness and updates the mirrors; `poke` re-signals the
  // read mirror (new data: edge-triggered waiters want another edge).
  void UpdateMirrors(bool poke = false);
  std::atomic<bool> in_epoll{false};
  // A wake fd of this connection polled ready: let the socket look (ring,
  // handshake bytes, a finished connect) and refresh the mirrors.
  void OnWake(int app_fd, int fired_fd = -1, short revents = 0,
              bool edge = false);

  // The progress thread moved the handshake on: count and publish a
  // decision now, not at the app's next call.
  void AfterProgress() { AfterCall(/*data=*/false); }

  // Status: the fallback reason and bytes, for usmc ss / exit reports.
  uint32_t reason() const { return reason_; }
  std::atomic<uint64_t> bytes_in{0}, bytes_out{0};
  bool counted_smc() const {
    return counted_smc_.load(std::memory_order_acquire);
  }
  // `usmc ss`: (re)publishes this connection's record; after fork the
  // child takes a slot in its own status file.
  void Publish();
  void RepublishAfterFork();

 private:
  void BecomeTcp(uint32_t reason, uint32_t peer_reason = 0);
  // Once TCP the calls go to the kernel socket; the socket (if there was
  // one) still knows whether the peer's crossing CLC message may come
  // (runtime/late_clc.h). DropLateClc: false with errno EAGAIN / EINTR, as
  // the app's read would say.
  bool LateClcPending() const { return sock_ && sock_->late_clc_pending(); }
  bool DropLateClc(int app_fd, int flags);
  // Phase follow-up after any call into the socket. `data`: a send/recv
  // (counts toward the periodic republish; polls, which epoll's scan mode
  // makes many per request, do not).
  void AfterCall(bool data = true);

  runtime::ConnRecord Record();

  const engine::Role role_;
  runtime::SlotId slot_ = runtime::kNoSlot;
  runtime::ConnRecord base_;       // what the fd says (addresses, inode, uid)
  sockaddr_storage known_peer_{};  // SetKnownPeer
  socklen_t known_peer_len_ = 0;
  int app_fd_ = -1;     // the fd it was first seen on (for ss)
  uint32_t calls_ = 0;  // data calls since the last publish
  std::atomic<Phase> phase_{Phase::kConnecting};
  std::unique_ptr<runtime::SmcSocket> sock_;
  uint32_t reason_ = 0;
  uint32_t peer_reason_ = 0;
  // Set once, under phase_mu_: the app's threads and the progress thread
  // (preload/unattended.h) may see the decision at once.
  std::atomic<bool> counted_smc_{false};
  std::atomic<bool> forked_{false};
  // Bytes the app sent before the decision (the runtime's early data):
  // counted as SMC-D or TCP once it is known.
  std::atomic<uint64_t> early_out_{0};
  bool released_ = false;
  std::mutex phase_mu_;  // phase transitions
  int app_fds_ = 0;      // fds of this process referring to it (table lock)
  // Calls inside the socket now; the release waits for them (see
  // ReleaseFromProcess).
  struct InFlight {
    explicit InFlight(Conn& c);
    ~InFlight();
    Conn& c_;
  };
  void FinishRelease();
  std::atomic<int> inflight_{0};
  std::atomic<bool> release_pending_{false};
  std::atomic<bool> release_done_{false};
  bool forget_ = false;
  friend class ConnTable;
};

// What an fd number is to the interposer: one byte per fd, read by every
// wrapper before anything else.
enum class FdKind : uint8_t {
  kNone,  // not a connection of ours: the call goes to the C library
  kConn,  // a Conn: Lookup() it
  // A Conn that is plain TCP for good (Conn::TcpForGood): the call goes to
  // the C library as made, its bytes counted with CountPassIn/Out, with no
  // lock, no shared_ptr copy and no locked instruction.
  kPassThru,
};

namespace conn_detail {
// fds at or above this are not interposed (they stay plain TCP).
inline constexpr size_t kMaxTrackedFds = 65536;
// Per fd: its FdKind, and what pass-through calls counted. Globals (zero
// pages until used: 2 MiB of counters at 65536 fds cost only the entries of
// fds that passed bytes), so that the wrappers' first load needs no
// pointer chase.
struct Pass {
  std::atomic<uint64_t> in, out;
  // The Conn's status slot counters, or a sink nobody reads (no slot).
  std::atomic<std::atomic<uint64_t>*> pub_in, pub_out;
};
extern __attribute__((visibility("hidden"))) std::atomic<uint8_t>
    g_kind[kMaxTrackedFds];
extern __attribute__((visibility("hidden"))) Pass g_pass[kMaxTrackedFds];
}  // namespace conn_detail

// fd -> Conn for this process.
class ConnTable {
 public:
  ConnTable();
  static FdKind Kind(int fd) {
    if (static_cast<unsigned>(fd) >= conn_detail::kMaxTrackedFds) {
      return FdKind::kNone;
    }
    return static_cast<FdKind>(
        conn_detail::g_kind[fd].load(std::memory_order_acquire));
  }
  std::shared_ptr<Conn> Lookup(int fd) const {
    if (Kind(fd) == FdKind::kNone) return nullptr;
    return LookupSlow(fd);
  }
  // kPassThru: the bytes of a call the app made on fd (returns n). They go
  // to the status slot (`usmc ss`) and to the fd's own counters, which the
  // Conn takes over when the fd leaves it (Install, Remove) and the exit
  // report reads (PassBytes). A relaxed load and store each, as
  // StatusPublisher::AddBytes: one writer per direction, or an increment
  // may be lost.
  static ssize_t CountPassIn(int fd, ssize_t n) {
    if (n > 0) {
      conn_detail::Pass& p = conn_detail::g_pass[fd];
      Bump(p.in, n);
      Bump(*p.pub_in.load(std::memory_order_relaxed), n);
    }
    return n;
  }
  static ssize_t CountPassOut(int fd, ssize_t n) {
    if (n > 0) {
      conn_detail::Pass& p = conn_detail::g_pass[fd];
      Bump(p.out, n);
      Bump(*p.pub_out.load(std::memory_order_relaxed), n);
    }
    return n;
  }
  // fd's Conn `c` is plain TCP for good: from now on fd is kPassThru. Does
  // nothing if fd no longer names `c` (closed and reused meanwhile) or is
  // kPassThru already. Install and Remove take fd back to kConn / kNone.
  void MarkPassThru(int fd, const std::shared_ptr<Conn>& c);
  // The counts of fd's pass-through calls not yet taken over by its Conn.
  std::pair<uint64_t, uint64_t> PassBytes(int fd) const;
  // fork(), in the child: its slots are in its own status file now, and it
  // counts its own bytes; every kPassThru fd becomes kConn again until its
  // next call marks it with the child's slot.
  void ResetPassThruInChild();
  void Install(int fd, std::shared_ptr<Conn> c);
  // Removes fd; returns the Conn if no other fd of this process refers to
  // it any more (the caller then releases it).
  std::shared_ptr<Conn> Remove(int fd);
  // Copies the entry of `from` to `to` (dup); `to` must have been removed.
  void Duplicate(int from, int to);
  // Every (fd, Conn) pair; the callback must not call back into the table.
  void ForEach(
      const std::function<void(int, const std::shared_ptr<Conn>&)>& fn) const;
  bool Tracks(int fd) const { return Lookup(fd) != nullptr; }
  size_t capacity() const { return size_; }
  // Held across fork() (after the connections' locks): a thread's Lookup
  // in the parent would leave the child a reader count that its next
  // Install or Remove (a close before exec) waits on forever. The child
  // starts it afresh: a rwlock's unlock tells a writer by its thread id,
  // which fork changed.
  void LockForFork() { mu_.lock(); }
  void UnlockAfterFork(bool child);

 private:
  std::shared_ptr<Conn> LookupSlow(int fd) const;
  static void Bump(std::atomic<uint64_t>& c, ssize_t n) {
    c.store(c.load(std::memory_order_relaxed) + static_cast<uint64_t>(n),
            std::memory_order_relaxed);
  }
  // Under the write lock: fd leaves kPassThru, its counts go to `c`.
  void TakePassBytes(int fd, Conn* c);
  size_t size_;  // fds tracked: min(RLIMIT_NOFILE's max, kMaxTrackedFds)
  std::vector<std::shared_ptr<Conn>> slots_;
  mutable std::shared_mutex mu_;
};

namespace conn_detail {
extern __attribute__((visibility("hidden"))) std::atomic<ConnTable*> g_table;
ConnTable& MakeTable();
}  // namespace conn_detail

// The process's table, made on first use (never destroyed: used at exit).
inline ConnTable& table() {
  ConnTable* t = conn_detail::g_table.load(std::memory_order_acquire);
  return __builtin_expect(t != nullptr, 1) ? *t : conn_detail::MakeTable();
}

// Process-wide options read once from the environment.
runtime::Options SocketOptions(engine::Role role);

// Whether `o` says no negotiation program serves the socket (not attached
// for its cgroup, or usmc built without eBPF).
bool HooksAbsent(const negotiate::Outcome& o);
// The reason a socket stays TCP by `o`: NONEGOTIATION when no program is
// attached, else the negotiation's own (PEERNOSMC, OPTUNSUPP).
uint32_t FallbackReason(const negotiate::Outcome& o);

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_CONN_H_
