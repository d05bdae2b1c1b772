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
// Threads: calls on one SmcSocket are serialised by a mutex. Of the threads
// blocked in Send/Recv/Wait, one sleeps on the doorbell and the others on a
// condition variable that it signals after each wakeup. Close() must not
// race a blocked call on the same socket (as with close(2) of a TCP fd in
// use, the outcome is undefined).
#ifndef USMC_RUNTIME_SMC_SOCKET_H_
#define USMC_RUNTIME_SMC_SOCKET_H_

#include <sys/types.h>

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
#include "dev/shm_dmb.h"
#include "dev/shm_handover.h"
#include "engine/connection.h"
#include "runtime/cdc_area.h"

namespace usmc::runtime {

struct Options {
  engine::Role role = engine::Role::kClient;
  // Our receive buffer (DMB) size, CDC area included. SMC-D sizes are
  // powers of two from 16 KiB to 1 MiB; the engine rounds.
  uint32_t dmb_size = 256 * 1024;
  // The UEID both ends must share (blank padded to 32 bytes).
  std::string eid = "USMC-SHM";
  std::chrono::milliseconds clc_timeout{6000};
  std::chrono::milliseconds handover_timeout{2000};
  bool smcd_enabled = true;  // false: decline everything (tests, policy)
};

// What `usmc ss` / status need about one connection.
struct SocketStatus {
  engine::ConnectionStats engine;
  dev::DoorbellStats doorbell;       // our doorbell (we wait, peer rings)
  dev::DoorbellStats peer_doorbell;  // the peer's (we ring)
  uint64_t local_dmb_token = 0;
  uint64_t peer_dmb_token = 0;
};

class SmcSocket {
 public:
  // Runs the CLC handshake on the connected TCP socket `fd` (blocking,
  // bounded by the CLC timeout, whatever O_NONBLOCK says). A Decline or a
  // silent peer is not an error: the socket stays usable in TCP mode with
  // the reason in status(). An error means the TCP connection is unusable
  // (the peer broke the protocol after committing to SMC).
  static Result<std::unique_ptr<SmcSocket>> Upgrade(int fd,
                                                    const Options& opts);
  ~SmcSocket();
  SmcSocket(const SmcSocket&) = delete;
  SmcSocket& operator=(const SmcSocket&) = delete;

  int fd() const { return fd_; }
  engine::Mode mode() const;
  bool is_smc() const { return mode() == engine::Mode::kSmcd; }

  // send(2)/recv(2) semantics: MSG_DONTWAIT, MSG_PEEK, MSG_WAITALL,
  // MSG_OOB, MSG_NOSIGNAL (EPIPE otherwise raises SIGPIPE, as TCP does).
  // O_NONBLOCK on the fd is honoured.
  ssize_t Send(const void* buf, size_t len, int flags);
  ssize_t Recv(void* buf, size_t len, int flags);

  // poll(2) bits that hold now (POLLIN, POLLOUT, POLLPRI, POLLRDHUP,
  // POLLHUP, POLLERR), without blocking.
  short Poll(short events);
  // Blocks until one of `events` holds or the timeout passes (-1: forever).
  // Returns the bits that hold (0 on timeout).
  short Wait(short events, int timeout_ms);
  // O_NONBLOCK is read from the fd once, at Upgrade; whoever changes it
  // later (fcntl F_SETFL, ioctl FIONBIO) must tell the socket, so that the
  // data path never needs a system call to learn it.
  void SetNonblocking(bool on);
  // Our doorbell's fd: readable when the peer signals us. -1 in TCP mode.
  int PollFd() const;
  // FIONREAD and SIOCATMARK.
  int Readable();
  bool AtMark();

  // shutdown(2): SHUT_RD, SHUT_WR, SHUT_RDWR.
  int Shutdown(int how);
  // close(2): the SMC close protocol, then the TCP socket is closed.
  int Close();
  // Abortive close (SO_LINGER 0): the peer sees ECONNRESET.
  void Abort();

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

 private:
  SmcSocket(int fd, const Options& opts);

  using Clock = std::chrono::steady_clock;
  static engine::TimePoint Now();

  // Feeds one event and carries out the resulting actions, then feeds the
  // answer events those actions produced (RegisterDmb -> DmbRegistered...).
  void Feed(const engine::Event& e);
  void Execute(const engine::Actions& actions,
               std::vector<engine::Event>& answers);
  Status RunHandshake();
  // Handshake I/O: reads CLC bytes without consuming app bytes.
  void PumpTcp(engine::TimePoint deadline);
  bool SendAllTcp(const std::vector<std::byte>& bytes);

  // SMC-D: feeds the peer's CDC area if it changed since the last look.
  void Refresh();
  bool AreaChanged() const;
  // Waits for the peer to publish (or the peer/TCP to go away).
  // false: timed out or interrupted (errno set).
  bool WaitForPeer(int timeout_ms);
  void OnPeerGone();

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

  dev::LocalDmb local_;
  dev::PeerDmb peer_;
  std::optional<dev::HandoverListener> listener_;
  CdcArea last_area_{};
  std::optional<engine::TimePoint> deadline_;
  int error_ = 0;        // sticky errno from ReportError
  size_t consumed_ = 0;  // CLC bytes the last TcpBytes consumed
  bool fatal_ = false;   // handshake failed after commit: fd unusable
  bool tcp_closed_ = false;
  bool peer_gone_ = false;
  bool nonblocking_ = false;  // O_NONBLOCK of the fd (see SetNonblocking)
};

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_SMC_SOCKET_H_
