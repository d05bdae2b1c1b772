// runtime/smc_socket.h: one SMC connection on top of a connected TCP socket,
// the library API that the interposer and the tools call.
//
// The runtime carries out the sans-I/O engine's actions: CLC bytes on the
// TCP socket, DMBs and doorbells on the shm device, memcpy into the peer's
// DMB, timers as poll() deadlines. The application keeps using the TCP fd
// number; in SMC-D mode its bytes move through shared memory, in TCP mode
// (fallback) every call passes straight to the kernel socket.
//
// Calls follow the socket API: they return -1 and set errno on failure.
//
//   auto s = SmcSocket::Upgrade(fd, {.role = engine::Role::kClient});
//   if (!s.ok()) { /* the TCP connection is unusable */ }
//   (*s)->Send(buf, len, 0);          // SMC-D, or TCP after a fallback
//   (*s)->Recv(buf, len, MSG_WAITALL);
//   (*s)->Close();                    // also closes fd
//
// Event loops (the interposer) must not stall on a peer that echoed the TCP
// option but sends no CLC, so the handshake also runs without blocking:
// Start() begins it, later calls drive it (Progress, or any data call), and
// until the decision the socket reports neither readable nor writable. To
// sleep in the kernel for many sockets at once, a loop asks each socket
// what to sleep on:
//
//   auto s = SmcSocket::Start(fd, opts);        // never waits for the peer
//   SmcSocket::WaitSpec w = (*s)->PrepareWait(POLLIN);
//   if (w.ready == 0 && w.n > 0) poll(w.fds, w.n, w.timeout_ms);
//   (*s)->AfterWait(w);                         // then Recv(..., MSG_DONTWAIT)
//
// Threads: calls on one SmcSocket are serialised by a mutex. Of the threads
// blocked in Send/Recv/Wait, one sleeps on the doorbell and the others on a
// condition variable that it signals after each wakeup. Close() must not
// race a blocked call on the same socket (as with close(2) of a TCP fd in
// use, the outcome is undefined). A PrepareWait sleeper and a thread blocked
// in Send/Recv on the same socket at once may see a wakeup late (the blocked
// thread may drain the doorbell first); the interposer re-validates anyway.
#ifndef USMC_RUNTIME_SMC_SOCKET_H_
#define USMC_RUNTIME_SMC_SOCKET_H_

#include <poll.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "dev/device.h"
#include "dev/shm_device.h"  // ArenaExportTo
#include "engine/connection.h"
#include "runtime/executor.h"
#include "runtime/late_clc.h"
#include "runtime/publish.h"
#include "wire/bufsize.h"

namespace usmc::runtime {

struct ExecRecord;  // runtime/exec_record.h
class LgrRegistry;  // runtime/lgr_registry.h
class SmcrConn;

struct Options {
  engine::Role role = engine::Role::kClient;
  // Our receive buffer (DMB) size, CDC area included. SMC-D sizes are
  // powers of two from 16 KiB to 1 MiB; the engine rounds.
  uint32_t dmb_size = 256 * 1024;
  // Non-zero: a larger DMB for this connection while the process's DMBs
  // (the device's process budget) stay within roomy_budget bytes with it. A
  // process with a few connections streams with fewer waits for room; one
  // with hundreds keeps them small (cache footprint, memory).
  uint32_t roomy_dmb_size = 0;
  uint64_t roomy_budget = 0;
  // At most HeldDmbSize(the process's DMB bytes) (runtime/config.h): a
  // process holding thousands of connections gives each new one a small
  // DMB.
  bool dmb_follows_held = false;
  // The UEID both ends must share (blank padded to 32 bytes).
  std::string eid = "USMC-SHM";
  // The kernel's CLC wait (engine::kClcTimeout); the interposer uses its
  // Config's (runtime/config.h).
  std::chrono::milliseconds clc_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(
          engine::kClcTimeout);
  std::chrono::milliseconds handover_timeout{2000};
  bool smcd_enabled = true;  // false: decline everything (tests, policy)
  // SMC-R: this process's link-group registry on the RDMA device whose
  // RoCEv2 GID serves the connection's local address (the caller chose
  // it), or null: SMC-R is then neither offered nor accepted. With both,
  // SMC-D wins where the peer shares our host (engine::ChooseForProposal).
  LgrRegistry* smcr = nullptr;
};

// What `usmc ss` / status need about one connection.
struct SocketStatus {
  engine::ConnectionStats engine;
  dev::DoorbellStats doorbell;       // our doorbell (we wait, peer rings)
  dev::DoorbellStats peer_doorbell;  // the peer's (we ring)
  uint64_t local_dmb_token = 0;
  uint64_t peer_dmb_token = 0;
  SmcrRecord smcr;  // SMC-R chosen: its link group and token
};

class SmcSocket : private TcpSide {
 public:
  // A client's early data, at most: half the smallest DMB, so that it
  // always fits into the peer's fresh ring at the decision.
  static constexpr size_t kEarlyDataMax = wire::kMinBufSize / 2;

  // Starts the CLC handshake on the connected TCP socket `fd` (owned from
  // now on) and makes what progress is possible without waiting: the client
  // sends its Proposal, the server reads a Proposal already there. The
  // server first checks with one bounded sock_diag query that the peer can
  // share memory with us (else it will decline). An error means the TCP
  // connection is unusable (the peer broke the protocol after committing).
  static Result<std::unique_ptr<SmcSocket>> Start(int fd, const Options& opts);
  // Start, then Progress(-1): blocking, bounded by the CLC timeout, whatever
  // O_NONBLOCK says. A Decline or a silent peer is not an error: the socket
  // stays usable in TCP mode with the reason in status().
  static Result<std::unique_ptr<SmcSocket>> Upgrade(int fd,
                                                    const Options& opts);
  ~SmcSocket();
  SmcSocket(const SmcSocket&) = delete;
  SmcSocket& operator=(const SmcSocket&) = delete;

  int fd() const { return fd_; }
  engine::Mode mode() const;
  bool is_smc() const { return mode() == engine::Mode::kSmc; }

  // After a fallback in which we declined (engine::Fallback::declined), one
  // CLC message of the peer's may still come (runtime/late_clc.h). The
  // socket's own TCP-mode calls drop it first; a caller that reads the TCP
  // socket directly (any fd of it) calls this before each read until it
  // says kDone. Never waits for anything but a first byte (`wait`).
  LateClc DropLateClc(int fd, bool wait);
  bool late_clc_pending() const {
    return late_clc_.load(std::memory_order_acquire);
  }

  // True until the handshake is decided and its last CLC bytes are written.
  // Then mode() is final: kSmcd, kTcp (use the TCP socket directly from now
  // on) or kFailed (reset; calls fail).
  bool handshaking() const;
  // How many times the peer's CDC changed, as seen so far (Refresh): an
  // edge-triggered waiter reports new readiness when this moved.
  uint64_t peer_changes() const {
    return peer_changes_.load(std::memory_order_relaxed);
  }
  // Advances the handshake: 0 = only what is possible now, -1 = until it is
  // decided, n = at most n ms. Past the CLC deadline it declines (TCP).
  // Error only when the connection became unusable (see Start).
  Status Progress(int timeout_ms);

  // send(2)/recv(2) semantics: MSG_DONTWAIT, MSG_PEEK, MSG_WAITALL,
  // MSG_OOB, MSG_NOSIGNAL (EPIPE otherwise raises SIGPIPE, as TCP does).
  // O_NONBLOCK on the fd is honoured. During the handshake a call that may
  // block finishes the handshake first; a non-blocking one drives it and
  // fails with EAGAIN while it is undecided. Except early data: a client's
  // send during the handshake is kept (up to kEarlyDataMax bytes) and goes
  // out at the decision, through the peer's DMB or, after a fallback, over
  // TCP behind the CLC bytes. So the client's connection is usable when
  // TCP's is, as with TCP, whose send buffer takes bytes before the peer's
  // application has accepted (a server busy for a second must not turn a
  // client's request timeout into a connect timeout).
  ssize_t Send(const void* buf, size_t len, int flags);
  ssize_t Recv(void* buf, size_t len, int flags);

  // poll(2) bits that hold now (POLLIN, POLLOUT, POLLPRI, POLLRDHUP,
  // POLLHUP, POLLERR), without blocking. During the handshake only
  // POLLHUP/POLLERR of the TCP socket, and a client's POLLOUT while early
  // data has room: the rest waits for the decision.
  short Poll(short events);
  // Blocks until one of `events` holds or the timeout passes (-1: forever).
  // Returns the bits that hold (0 on timeout).
  short Wait(short events, int timeout_ms);

  // Event-loop hooks: what to sleep on for `events`, so that one poll/epoll
  // call can sleep for many sockets.
  //   ready != 0: those bits (of events|POLLHUP|POLLERR) hold now; do not
  //               sleep. POLLNVAL after Close/Forget.
  //   handshake:  fds = TCP socket (POLLIN, POLLOUT while CLC bytes wait to
  //               go out), on the server the DMB handover listener, and
  //               the decision eventfd if watched (WatchDecision);
  //               timeout_ms = time to the CLC deadline (-1: none).
  //   SMC-D:      our doorbell is ARMED (the peer rings it on its next
  //               publish) and the readiness re-checked after arming, so no
  //               publish can slip between the check and the sleep; fds =
  //               doorbell and TCP socket (its POLLIN: the peer is gone or
  //               broke the protocol); timeout_ms = -1.
  //   TCP mode:   n = 0, ready = 0: poll the app's fd with the app's events.
  // Skipping the sleep (or AfterWait) is harmless: the armed doorbell then
  // costs one spurious wakeup at most.
  struct WaitSpec {
    int n = 0;
    struct pollfd fds[3] = {};
    int timeout_ms = -1;
    short ready = 0;
  };
  // `sleep_token` (runtime::NewSleepToken, runtime/wait.h; 0: none): the caller
  // will look at every socket it sleeps for once woken, so the peer need wake
  // it through one of them only. Dropped while another thread of this process
  // sleeps on the doorbell; the caller must not pass one for a socket that
  // another process (fork) may sleep on.
  WaitSpec PrepareWait(short events, uint64_t sleep_token = 0);
  // After the sleep (any fd ready, or the timeout): drains the doorbell,
  // notices a gone peer, reads the peer's CDC area, drives the handshake
  // and its timeout. Then re-query with Poll or a non-blocking call.
  // With the polled spec (revents filled) only fds that fired are read.
  void AfterWait();
  // `edge`: the doorbell fd was polled edge-triggered (epoll EPOLLET), so
  // its bytes need not be read on every wakeup.
  void AfterWait(const WaitSpec& polled, bool edge = false);

  // Another thread drives this handshake too (preload/unattended.h): it may
  // take the CLC bytes a sleeper of the app was woken for, and the
  // sleeper's poll then sleeps on. From now on the handshake spec includes
  // an eventfd that becomes readable once the handshake has ended.
  void WatchDecision();
  // For that thread: what the handshake waits on (n == 0 once it is over;
  // never the doorbell, which belongs to the app's sleepers). Progress(0)
  // then takes what came.
  WaitSpec HandshakeSpec() const;

  // For event loops that keep the doorbell armed only while they sleep
  // (preload/epoll.cc, scan mode): then a busy process costs its peer no
  // system call per publish. DisarmIdle disarms unless another thread may
  // sleep on the doorbell (a blocking call of this socket, or a poll that
  // counted itself with AddSleeper before its PrepareWait). true: disarmed;
  // the caller must look (Poll/PrepareWait) before it sleeps again.
  bool DisarmIdle();
  void AddSleeper(int delta) {
    sleepers_.fetch_add(delta, std::memory_order_seq_cst);
  }

  // O_NONBLOCK is read from the fd once, at Start; whoever changes it
  // later (fcntl F_SETFL, ioctl FIONBIO) must tell the socket, so that the
  // data path never needs a system call to learn it.
  void SetNonblocking(bool on);
  // SO_RCVLOWAT (the caller also sets it on the TCP socket). SMC-D: POLLIN
  // only once min(n, ring size) bytes are readable (or EOF/error); a
  // blocking Recv returns once min(len, n) bytes arrived (or EOF/error).
  // TCP mode: the kernel does it; the value is kept. Starts as the TCP
  // socket's value at Start; the handshake restores it on the socket.
  void SetRcvLowat(int n);
  // Our doorbell's fd: readable when the peer signals us. -1 in TCP mode.
  int PollFd() const;
  // When the peer last published into our DMB (CLOCK_MONOTONIC ns, 0 if
  // unknown): event loops report ready connections oldest first, as the
  // kernel's epoll ready list does for TCP.
  uint64_t PeerPublishedNs() const;
  // FIONREAD and SIOCATMARK. During an undecided non-blocking handshake:
  // 0 and false.
  int Readable();
  bool AtMark();

  // shutdown(2): SHUT_RD, SHUT_WR, SHUT_RDWR. During an undecided
  // non-blocking handshake it is recorded and applied at the decision.
  int Shutdown(int how);
  // close(2): the SMC close protocol, then the TCP socket is closed. A
  // client's early data still undecided goes first (FlushEarlyData).
  int Close();
  // A client about to close: early data still waiting for the decision is
  // sent now, declining (TIMEOUT_CL) unless the server's answer is already
  // here, so that a close never waits for a silent server. No-op without
  // early data.
  void FlushEarlyData();
  // Abortive close (SO_LINGER 0): the peer sees ECONNRESET.
  void Abort();
  // This process stops using the connection without any protocol, because
  // another process (after fork) still holds it: unmaps the DMBs and closes
  // this object's fds (the TCP fd too); publishes nothing, rings nothing.
  // Afterwards only status() and mode() are meaningful; calls fail (EBADF).
  void Forget();
  // fork() from a threaded process: held across the fork, so that the child
  // never inherits the lock taken by a thread it does not have (it would
  // wait for it forever) nor state half-changed under it.
  void LockForFork() { mu_.lock(); }
  void UnlockAfterFork() { mu_.unlock(); }
  // In a fork child: the SMC-R side (a QP, memory regions, the parent's
  // link-group registry and its progress thread) cannot be used here. The
  // SMC-R object is left to the parent (never freed or touched here); a
  // connection that runs, or may come to run, over SMC-R is unusable in
  // this process: its calls fail with ECONNABORTED, its close sends
  // nothing (the parent's connection goes on). SMC-D and TCP sockets are
  // unaffected. true if the socket became unusable here.
  bool DetachSmcrAfterFork();
  // The connection runs over SMC-R (the handshake chose it).
  bool is_smcr() const;
  // SMC-D: a 32-bit word in our DMB's control page, 1 when SMC-D came up,
  // for a reference count shared by the processes holding the connection
  // (use std::atomic_ref). nullptr otherwise. The peer maps that page too.
  uint32_t* ProcessRefs();
  // dev::kHolderSlots u32 pids in our DMB's control page (the
  // interposer's record of which processes hold the connection), or
  // nullptr when not SMC-D.
  uint32_t* ProcessHolders();

  SocketStatus status() const;

  // exec(2) handover, implemented in runtime/smc_socket_exec.cc. Appends to
  // `out` what a new program image needs to rebuild this SMC-D socket
  // (engine state, DMB and doorbell fds, whose FD_CLOEXEC it clears). Fails
  // for a socket that cannot move (handshake in progress); the caller then
  // aborts it, so the new image finds a reset TCP socket, never a silent one.
  // After a successful export this image must not use the socket again.
  Status ExportForExec(std::string& out);
  // Rebuilds one socket from the front of `in` (advanced past the record).
  static Result<std::unique_ptr<SmcSocket>> AdoptAfterExec(
      std::string_view& in);
  // SCM_RIGHTS handover (preload/pass.cc): the same record, its fds this
  // process's numbers (FD_CLOEXEC untouched); the caller sends the fds and
  // the record's bytes to the receiving process. This process may go on
  // holding the socket: another process publishes for it from now on.
  // `receiver_same_uid`: the receiver is known to run under our uid (it
  // may then have the connection's whole arena pair, dev/shm_device.h
  // ArenaExportTo); false also when that cannot be told.
  Status ExportForPass(ExecRecord& rec, bool receiver_same_uid);
  // Rebuilds a socket from a record whose fds the caller has already put
  // into this process. On
  // failure after the TCP fd was checked, the connection is reset.
  // `own_buffer_fds`: the four buffer fds are closed on any failure (else
  // only once they proved to be buffers). The TCP fd is never closed on
  // failure.
  static Result<std::unique_ptr<SmcSocket>> AdoptRecord(const ExecRecord& rec,
                                                        bool own_buffer_fds);

 private:
  SmcSocket(int fd, const Options& opts);
  struct Made;  // the engine's parameters, and SMC-R's peer GID
  static Made MakeParams(int fd, const Options& opts);
  SmcSocket(int fd, const Options& opts, const Made& made);
  Status ExportRecord(ExecRecord& rec,
                      dev::ArenaExportTo to);  // ExportFor*'s part

  using Clock = std::chrono::steady_clock;
  static engine::TimePoint Now();
  // Milliseconds from now to deadline for poll(2): 0 if past, capped.
  static int MsLeft(engine::TimePoint now, engine::TimePoint deadline);

  // Feeds one event, has exec_ carry out the resulting actions, then feeds
  // the answer events they produced (RegisterRecvBuffer ->
  // RecvBufferRegistered...).
  void Feed(const engine::Event& e);
  // The device the connection runs over, and the executor on it.
  void UseDevice(std::unique_ptr<dev::Device> d);
  // TcpSide, for the executor.
  void SendClc(std::span<const std::byte> bytes) override { QueueTcp(bytes); }
  void ConsumeClc(size_t len) override;
  void ResetTcp() override;
  void CloseTcp() override { CloseFd(/*reset=*/false); }

  // ---- handshake (runtime/handshake.cc); all with mu_ held ----
  void BeginHandshake();
  bool HandshakingLocked() const;
  Status ProgressLocked(int timeout_ms);
  // One round without waiting; true if something moved (retry at once).
  bool StepHandshake();
  // Peeks CLC bytes and feeds them; true unless only half a message is
  // there (then SO_RCVLOWAT is raised so that poll does not spin).
  bool ReadClc();
  void ServeHandover();
  // What the handshake waits for (fds and the CLC deadline).
  WaitSpec HandshakeWaitSpec() const;
  // CLC output: queued, written without blocking as the socket allows.
  void QueueTcp(std::span<const std::byte> bytes);
  bool FlushTcp();
  void SetTcpLowat(int n);
  // Once decided: restores SO_RCVLOWAT, applies a deferred shutdown.
  void FinishHandshake();
  // Before a data call: false (errno EAGAIN) if the handshake is undecided
  // and the call must not block.
  bool Settle(bool nonblocking);
  // Early data (a client's sends before the decision): how much more fits
  // now (0 for a server, after shutdown, or once decided), keeping bytes,
  // and sending them where the decision says (true if it did).
  size_t EarlyRoom() const;
  ssize_t SendEarly(const std::byte* buf, size_t len);
  bool FlushEarly();
  short EarlyPollBits(short events) const;
  // FlushEarlyData with mu_ held.
  void FlushEarlyDataLocked();
  // POLLHUP/POLLERR of the TCP socket.
  short TcpHupErr() const;

  // SMC-D: feeds the peer's CDC area if it changed since the last look.
  void Refresh();
  // After fork another process of ours may have used the connection: if
  // the device holds a CDC of ours we did not post (Device::LoadForeignPost),
  // the engine takes over its cursors (engine::SiblingPublished).
  void AdoptSiblingProgress();
  // Whether another process may have published into our peer's DMB for
  // this connection: this process forked since its first SmcSocket (or a
  // vfork child exported it for exec), or this image adopted it after exec.
  // Otherwise AdoptSiblingProgress has nothing to find.
  static bool MaybeShared();
  static void NoteShared();
  // poll bits of the SMC-D connection (after Refresh).
  short SmcPollBits(short events);
  // SO_RCVLOWAT as SMC-D applies it: 1 .. ring size.
  uint32_t EffectiveLowat() const;
  // Waits for the peer to publish (or the peer/TCP to go away).
  // false: timed out or interrupted (errno set).
  bool WaitForPeer(int timeout_ms);
  void OnPeerGone();
  // OnPeerGone over SMC-R: TCP ended (or broke the protocol); the link
  // says how the peer closed (see engine::kSmcrPeerCloseWait).
  void OnSmcrTcpEnded();
  // TCP readable during SMC-D (peer died or broke the protocol)?
  bool TcpStirs() const;

  // TCP mode: true (errno set) once the fd is closed or the handshake
  // failed after commit.
  bool TcpUnusable() const;
  // Buffers, listener and fd (close, or reset with SO_LINGER 0).
  void ReleaseAll(bool reset);
  void CloseFd(bool reset);

  ssize_t SendSmc(const std::byte* buf, size_t len, int flags);
  ssize_t RecvSmc(std::byte* buf, size_t len, int flags);
  bool Nonblocking(int flags) const;

  int fd_;
  const Options opts_;
  engine::SeededEntropy entropy_;
  engine::Connection conn_;
  mutable std::mutex mu_;
  std::condition_variable_any peer_changed_;  // followers of the doorbell
  bool doorbell_waiter_ = false;              // a thread sleeps on it
  std::atomic<int> sleepers_{0};  // polls sleeping on it (AddSleeper)
  int decided_fd_ = -1;           // WatchDecision's eventfd

  // SMC-R (Options::smcr): this connection's side in the registry. Before
  // dev_: the executor may point at it.
  std::unique_ptr<SmcrConn> smcr_;
  std::unique_ptr<dev::Device> dev_;
  std::optional<Executor> exec_;  // on *dev_, or *smcr_ once SMC-R chosen
  // The device the connection's data moves on (the executor's).
  dev::Device& Dev() { return exec_->device(); }
  const dev::Device& Dev() const {
    return const_cast<Executor&>(*exec_).device();
  }
  // SMC-R: feeds the events the link queued for this connection.
  bool FeedSmcrEvents();
  // The handshake chose SMC-R: the data moves over smcr_.
  bool SmcrChosen() const;
  bool forked_away_ = false;   // DetachSmcrAfterFork made it unusable
  dev::CdcBytes last_area_{};  // the peer's CDC as last fed to the engine
  std::atomic<uint64_t> peer_changes_{0};
  bool decline_noted_ = false;  // the executor's Fallback{declined} seen
  int error_ = 0;               // sticky errno from ReportError
  size_t consumed_ = 0;         // CLC bytes the last TcpBytes consumed
  bool fatal_ = false;          // handshake failed after commit: fd unusable
  bool tcp_closed_ = false;
  bool peer_gone_ = false;
  // SMC-R: the TCP socket ended (FIN/RST) and is no longer waited on.
  bool tcp_ended_ = false;
  bool nonblocking_ = false;  // O_NONBLOCK of the fd (see SetNonblocking)
  bool forgotten_ = false;    // Forget(): tcp_closed_ too, nothing mapped
  // DropLateClc: a late CLC message may still come. late_mu_ (never held
  // while taking mu_) lets one thread at a time drop it, without mu_: a
  // blocking read's wait must not hold up the socket's sends.
  std::atomic<bool> late_clc_{false};
  std::mutex late_mu_;

  // Handshake state (runtime/handshake.cc).
  std::vector<std::byte> tcp_out_;  // CLC bytes not yet written
  size_t tcp_out_off_ = 0;
  int rcv_lowat_ = 1;  // the app's SO_RCVLOWAT
  int tcp_lowat_ = 1;  // what the TCP socket has now
  int clc_lowat_ = 1;  // what the handshake wants there (half a message)
  bool handshake_finished_ = false;  // FinishHandshake ran
  bool shut_rd_pending_ = false;     // shutdown during the handshake
  bool shut_wr_pending_ = false;
  std::vector<std::byte> early_;  // early data, see Send
};

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_SMC_SOCKET_H_
