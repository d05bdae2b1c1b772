// The C API (runtime/usmc.h) over SmcSocket.
#include <cerrno>
#include <memory>

#include "runtime/smc_socket.h"
#include "runtime/usmc.h"

struct usmc_socket {
  std::unique_ptr<usmc::runtime::SmcSocket> impl;
};

using usmc::runtime::SmcSocket;

extern "C" {

int usmc_upgrade(int fd, int role, usmc_socket** out) {
  if (out == nullptr ||
      (role != USMC_ROLE_CLIENT && role != USMC_ROLE_SERVER)) {
    errno = EINVAL;
    return -1;
  }
  usmc::runtime::Options o;
  o.role = role == USMC_ROLE_CLIENT ? usmc::engine::Role::kClient
                                    : usmc::engine::Role::kServer;
  auto s = SmcSocket::Upgrade(fd, o);
  if (!s.ok()) {
    errno = s.status().sys_errno() ? s.status().sys_errno() : ECONNABORTED;
    return -1;
  }
  *out = new usmc_socket{std::move(*s)};
  return 0;
}

ssize_t usmc_send(usmc_socket* s, const void* buf, size_t len, int flags) {
  return s->impl->Send(buf, len, flags);
}

ssize_t usmc_recv(usmc_socket* s, void* buf, size_t len, int flags) {
  return s->impl->Recv(buf, len, flags);
}

short usmc_poll(usmc_socket* s, short events) { return s->impl->Poll(events); }

short usmc_wait(usmc_socket* s, short events, int timeout_ms) {
  return s->impl->Wait(events, timeout_ms);
}

int usmc_poll_fd(usmc_socket* s) { return s->impl->PollFd(); }

int usmc_set_nonblocking(usmc_socket* s, int on) {
  s->impl->SetNonblocking(on != 0);
  return 0;
}

int usmc_readable(usmc_socket* s) { return s->impl->Readable(); }
int usmc_at_mark(usmc_socket* s) { return s->impl->AtMark() ? 1 : 0; }
int usmc_shutdown(usmc_socket* s, int how) { return s->impl->Shutdown(how); }

int usmc_close(usmc_socket* s) {
  int r = s->impl->Close();
  delete s;
  return r;
}

void usmc_abort(usmc_socket* s) {
  s->impl->Abort();
  delete s;
}

int usmc_status(const usmc_socket* s, struct usmc_status* out) {
  if (s == nullptr || out == nullptr) {
    errno = EINVAL;
    return -1;
  }
  usmc::runtime::SocketStatus st = s->impl->status();
  const auto& e = st.engine;
  out->mode = e.mode == usmc::engine::Mode::kSmc  ? USMC_MODE_SMCD
              : e.mode == usmc::engine::Mode::kTcp ? USMC_MODE_TCP
                                                   : USMC_MODE_HANDSHAKE;
  out->local_reason = e.local_reason;
  out->peer_reason = e.peer_reason;
  out->local_dmb_size = e.local_dmb_size;
  out->peer_dmb_size = e.peer_dmb_size;
  out->bytes_sent = e.counters.bytes_sent;
  out->bytes_received = e.counters.bytes_received;
  out->wakeups_sent = st.peer_doorbell.wakeups_sent;
  out->wakeups_received = st.doorbell.wakeups_received;
  return 0;
}

}  // extern "C"
