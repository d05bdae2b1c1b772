// SmcSocket::ExportForExec / AdoptAfterExec: the exec(2) handover of one
// SMC-D socket (runtime/exec_record.h has the bytes, docs/engine.md the
// story). Export changes nothing but FD_CLOEXEC, so a failed execve leaves
// the socket usable in the old image.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "dev/shm_device.h"
#include "runtime/exec_record.h"
#include "runtime/smc_socket.h"

namespace usmc::runtime {
namespace {

Status Precondition(std::string what) {
  return Status(StatusCode::kFailedPrecondition,
                "exec export: " + std::move(what));
}

Status SetCloexec(int fd, bool on) {
  const int fl = ::fcntl(fd, F_GETFD);
  if (fl < 0) return Status::FromErrno(errno, "fcntl F_GETFD");
  const int want = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
  if (want != fl && ::fcntl(fd, F_SETFD, want) != 0) {
    return Status::FromErrno(errno, "fcntl F_SETFD");
  }
  return OkStatus();
}

// Kind checks on the record's fds before anything takes ownership: a
// record naming a wrong fd (stdin, the app's file) must fail without
// closing it.
int SockOpt(int fd, int opt) {
  int v = -1;
  socklen_t len = sizeof v;
  return ::getsockopt(fd, SOL_SOCKET, opt, &v, &len) == 0 ? v : -1;
}

Status CheckTcpFd(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, "fstat TCP fd");
  const int domain = S_ISSOCK(st.st_mode) ? SockOpt(fd, SO_DOMAIN) : -1;
  if ((domain != AF_INET && domain != AF_INET6) ||
      SockOpt(fd, SO_TYPE) != SOCK_STREAM) {
    return Status(
        StatusCode::kInvalidArgument,
        "exec record: fd " + std::to_string(fd) + " is not a TCP socket");
  }
  return OkStatus();
}

Status CheckMemfd(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, "fstat DMB fd");
  if (!S_ISREG(st.st_mode) || ::fcntl(fd, F_GET_SEALS) < 0) {
    return Status(StatusCode::kInvalidArgument,
                  "exec record: fd " + std::to_string(fd) + " is not a memfd");
  }
  return OkStatus();
}

}  // namespace

Status SmcSocket::ExportForExec(std::string& out) {
  // A vfork child exporting shares our memory: the parent learns it too.
  NoteShared();
  ExecRecord rec;
  USMC_RETURN_IF_ERROR(ExportRecord(rec, dev::ArenaExportTo::kExec));
  const int fds[] = {rec.tcp_fd, rec.local_memfd, rec.peer_memfd,
                     rec.doorbell_fd};
  for (size_t i = 0; i < std::size(fds); ++i) {
    Status st = SetCloexec(fds[i], false);
    if (!st.ok()) {
      // Put back what we changed: nothing leaks into the next exec.
      for (size_t j = 0; j < i; ++j) {
        (void)SetCloexec(fds[j], j == 0 ? rec.tcp_cloexec : true);
      }
      return st;
    }
  }
  AppendExecRecord(rec, out);
  return OkStatus();
}

Status SmcSocket::ExportForPass(ExecRecord& rec, bool receiver_same_uid) {
  // The receiver publishes into the peer's DMB too from now on: this
  // process must look for its progress (AdoptSiblingProgress).
  NoteShared();
  return ExportRecord(rec, receiver_same_uid
                               ? dev::ArenaExportTo::kPassSameUid
                               : dev::ArenaExportTo::kPassOtherUid);
}

Status SmcSocket::ExportRecord(ExecRecord& rec, dev::ArenaExportTo to) {
  std::lock_guard lock(mu_);
  if (tcp_closed_) return Precondition("socket already closed");
  if (HandshakingLocked()) {
    // Half-read CLC bytes, queued CLC output and timers cannot move.
    return Precondition("handshake in progress");
  }
  if (conn_.mode() != engine::Mode::kSmc) {
    // TCP mode has nothing to move: the kernel socket is the connection.
    return Precondition("socket in mode " +
                        std::string(engine::ToString(conn_.mode())) +
                        ", only SMC-D sockets are exported");
  }
  std::array<int, 4> fds{};
  dev::ArenaExport arenas;
  auto* shm = dynamic_cast<dev::ShmDevice*>(&Dev());
  if (shm != nullptr && shm->in_arena()) {
    USMC_RETURN_IF_ERROR(shm->ExportArenas(arenas, to));
    fds = {arenas.own_fd, arenas.peer_fd, arenas.doorbell_fd, -1};
  } else if (Status st = Dev().ExportFds(fds); !st.ok()) {
    return st;
  }
  // Deferred shutdowns and the app's SO_RCVLOWAT go where they belong
  // first (a no-op once done), so the snapshot and the socket hold them.
  FinishHandshake();
  Result<engine::ConnectionSnapshot> snap = conn_.Snapshot();
  if (!snap.ok()) return snap.status();
  const engine::SmcdLink& link = snap->link;
  const dev::BufferInfo own = Dev().own(), peer = Dev().peer();
  if (link.local_dmb_token != own.token || link.local_dmb_size != own.size ||
      link.peer_dmb_token != peer.token || link.peer_dmb_size != peer.size) {
    return Status(StatusCode::kInternal,
                  "exec export: buffers do not match "
                  "the engine's link");
  }

  rec.tcp_fd = fd_;
  // ShmDevice::ExportFds' order.
  rec.local_memfd = fds[0];
  rec.peer_memfd = fds[1];
  rec.doorbell_fd = fds[2];
  rec.role = opts_.role;
  rec.smcd_enabled = opts_.smcd_enabled;
  rec.eid = opts_.eid.substr(0, kExecRecordMaxEid);
  rec.dmb_size = opts_.dmb_size;
  rec.clc_timeout = opts_.clc_timeout;
  rec.handover_timeout = opts_.handover_timeout;
  rec.peer_gone = peer_gone_;
  rec.fatal = fatal_;
  rec.error = error_;
  std::memcpy(rec.last_area.data(), last_area_.data.data(),
              std::min<size_t>(last_area_.len, rec.last_area.size()));
  rec.engine = *snap;
  if (shm != nullptr && shm->in_arena()) {
    rec.local_arena_id = arenas.own_id;
    rec.local_arena_size = arenas.own_size;
    rec.local_slot = arenas.own_slot;
    rec.peer_arena_id = arenas.peer_id;
    rec.peer_arena_size = arenas.peer_size;
    rec.peer_slot = arenas.peer_slot;
  }
  const int tcp_fl = ::fcntl(fd_, F_GETFD);
  if (tcp_fl < 0) return Status::FromErrno(errno, "fcntl F_GETFD");
  rec.tcp_cloexec = tcp_fl & FD_CLOEXEC;
  return OkStatus();
}

Result<std::unique_ptr<SmcSocket>> SmcSocket::AdoptAfterExec(
    std::string_view& in) {
  Result<ExecRecord> decoded = DecodeExecRecord(in);
  if (!decoded.ok()) return decoded.status();
  return AdoptRecord(*decoded, /*own_buffer_fds=*/false);
}

Result<std::unique_ptr<SmcSocket>> SmcSocket::AdoptRecord(const ExecRecord& rec,
                                                          bool own_buffer_fds) {
  // A received record's buffer fds are ours whatever happens; an exec
  // record's are only once they proved to be buffers (a bad record may
  // name the app's fds).
  auto close_buffers = [&] {
    if (!own_buffer_fds) return;
    for (int fd : {rec.local_memfd, rec.peer_memfd, rec.doorbell_fd}) {
      if (fd >= 0) ::close(fd);
    }
  };
  if (rec.engine.finished) {
    close_buffers();
    return Status(StatusCode::kInvalidArgument,
                  "exec record: connection already finished");
  }
  if (Status st = CheckTcpFd(rec.tcp_fd); !st.ok()) {
    close_buffers();
    return st;
  }
  // From here on the peer must learn if we fail: a half-adopted connection
  // would leave it waiting on a silent socket. shutdown, not close: the fd
  // number belongs to the application.
  auto fail = [&](Status st) {
    struct linger l = {1, 0};
    ::setsockopt(rec.tcp_fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::shutdown(rec.tcp_fd, SHUT_RDWR);
    return st;
  };
  for (int fd : {rec.local_memfd, rec.peer_memfd}) {
    if (Status st = CheckMemfd(fd); !st.ok()) {
      close_buffers();
      return fail(st);
    }
  }
  if (Status st = dev::ShmDevice::CheckDoorbell(rec.doorbell_fd); !st.ok()) {
    close_buffers();
    return fail(st);
  }
  // The three buffer fds are ours now: every failure below closes them.
  for (int fd : {rec.local_memfd, rec.peer_memfd, rec.doorbell_fd}) {
    if (Status st = SetCloexec(fd, true); !st.ok()) {
      close_buffers();
      return fail(st);
    }
  }
  const engine::SmcdLink& link = rec.engine.link;
  Result<std::unique_ptr<dev::ShmDevice>> d = Status(StatusCode::kInternal, "");
  if (rec.in_arena()) {
    // The arenas are shared with the pair's other records: AdoptArenas
    // attaches each once and takes the fds.
    d = dev::ShmDevice::AdoptArenas({.own_fd = rec.local_memfd,
                                     .peer_fd = rec.peer_memfd,
                                     .doorbell_fd = rec.doorbell_fd,
                                     .own_id = rec.local_arena_id,
                                     .own_size = rec.local_arena_size,
                                     .own_slot = rec.local_slot,
                                     .peer_id = rec.peer_arena_id,
                                     .peer_size = rec.peer_arena_size,
                                     .peer_slot = rec.peer_slot},
                                    {link.local_dmb_token, link.local_dmb_size},
                                    {link.peer_dmb_token, link.peer_dmb_size});
  } else {
    d = dev::ShmDevice::Adopt(dev::UniqueFd(rec.local_memfd),
                              {link.local_dmb_token, link.local_dmb_size},
                              dev::UniqueFd(rec.peer_memfd),
                              {link.peer_dmb_token, link.peer_dmb_size},
                              dev::UniqueFd(rec.doorbell_fd));
  }
  if (!d.ok()) return fail(d.status());

  Options o;
  o.role = rec.role;
  o.smcd_enabled = rec.smcd_enabled;
  o.eid = rec.eid;
  o.dmb_size = rec.dmb_size;
  o.clc_timeout = rec.clc_timeout;
  o.handover_timeout = rec.handover_timeout;
  std::unique_ptr<SmcSocket> s(new SmcSocket(rec.tcp_fd, o));
  std::lock_guard lock(s->mu_);
  // Until it is complete, destroying `s` must not close the app's fd.
  s->tcp_closed_ = true;
  if (Status st = s->conn_.Restore(rec.engine); !st.ok()) return fail(st);
  if (rec.tcp_cloexec) {
    if (Status st = SetCloexec(rec.tcp_fd, true); !st.ok()) return fail(st);
  }
  s->UseDevice(std::move(*d));
  std::memcpy(s->last_area_.data.data(), rec.last_area.data(),
              rec.last_area.size());
  s->last_area_.len = static_cast<uint8_t>(rec.last_area.size());
  s->peer_gone_ = rec.peer_gone;
  s->fatal_ = rec.fatal;
  NoteShared();  // a process forked before the exec may hold it too
  s->error_ = rec.error;
  // Like O_NONBLOCK, the app's SO_RCVLOWAT lives in the kernel socket,
  // which exec did not touch.
  const int fl = ::fcntl(rec.tcp_fd, F_GETFL);
  s->nonblocking_ = fl >= 0 && (fl & O_NONBLOCK);
  int lowat = 1;
  socklen_t len = sizeof lowat;
  if (::getsockopt(rec.tcp_fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, &len) != 0) {
    lowat = 1;
  }
  s->rcv_lowat_ = s->tcp_lowat_ = std::max(lowat, 1);
  s->handshake_finished_ = true;
  s->tcp_closed_ = false;
  return s;
}

}  // namespace usmc::runtime
