#include "runtime/late_clc.h"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <span>

#include "wire/clc.h"
#include "wire/clc_frame.h"

namespace usmc::runtime {

LateClc DropLateClc(int fd, bool wait) {
  if (wait) {
    // A blocking peek sleeps as the app's read would: SO_RCVTIMEO, signals
    // (restarted by the kernel under SA_RESTART) and EOF alike.
    char c;
    if (::recv(fd, &c, 1, MSG_PEEK) < 0) {
      if (errno == EINTR) return LateClc::kInterrupted;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return LateClc::kWouldBlock;
      return LateClc::kDone;  // the app's read reports the error
    }
  }
  std::array<std::byte, wire::kClcMaxMessageLen> buf;
  ssize_t n;
  do {
    n = ::recv(fd, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return LateClc::kWouldBlock;
  }
  if (n <= 0) return LateClc::kDone;  // EOF or error: the app's read says
  const std::span<const std::byte> bytes(buf.data(), static_cast<size_t>(n));
  // Only a whole message with a CLC header and trailer is the handshake's.
  const wire::ClcFramePeek p = wire::PeekClcFrame(bytes);
  if (p.status != wire::ClcFramePeek::Status::kComplete || !p.trailer_ok) {
    return LateClc::kDone;
  }
  size_t left = p.length;
  while (left > 0) {
    ssize_t m = ::recv(fd, buf.data(), left, MSG_DONTWAIT);
    if (m < 0 && errno == EINTR) continue;
    if (m <= 0) break;  // they were peeked: only a reset gets here
    left -= static_cast<size_t>(m);
  }
  return LateClc::kDone;
}

}  // namespace usmc::runtime
