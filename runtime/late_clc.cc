#include "preload/late_clc.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <span>

#include "preload/real.h"
#include "wire/clc.h"

namespace usmc::preload {
namespace {

// Could `b` be the start of a CLC header? Both eyecatchers ("SMCR" and
// "SMCD" in EBCDIC) share the first three bytes.
bool CouldBeClc(std::span<const std::byte> b) {
  constexpr unsigned char kHead[] = {0xE2, 0xD4, 0xC3};
  for (size_t i = 0; i < b.size() && i < 4; ++i) {
    const auto v = static_cast<unsigned char>(b[i]);
    if (i < 3 && v != kHead[i]) return false;
    if (i == 3 && v != 0xD9 && v != 0xC4) return false;
  }
  return true;
}

// Waits for more bytes than the `have` already peeked. The socket is
// readable already, so poll(2) cannot tell; the peer sent the message in
// one piece, so the rest is a loopback hop away.
LateClc WaitForMore(int fd, size_t have) {
  const int lowat = static_cast<int>(have) + 1;
  int old = 1;
  socklen_t len = sizeof old;
  (void)::getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &old, &len);
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
  pollfd p{fd, POLLIN, 0};
  const int r = real().poll(&p, 1, -1);
  const int err = errno;
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &old, sizeof old);
  if (r < 0 && err == EINTR) {
    errno = EINTR;
    return LateClc::kInterrupted;
  }
  return LateClc::kWouldBlock;  // look again
}

}  // namespace

LateClc DropLateClc(int fd, bool wait) {
  std::array<std::byte, wire::kClcMaxMessageLen> buf;
  for (;;) {
    ssize_t n =
        real().recv(fd, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait) return LateClc::kWouldBlock;
      pollfd p{fd, POLLIN, 0};
      if (real().poll(&p, 1, -1) < 0 && errno == EINTR) {
        return LateClc::kInterrupted;
      }
      continue;
    }
    if (n <= 0) return LateClc::kDone;  // EOF or error: the app's read says
    std::span<const std::byte> bytes(buf.data(), static_cast<size_t>(n));
    if (!CouldBeClc(bytes)) return LateClc::kDone;
    size_t need = wire::kClcHeaderLen;
    if (bytes.size() >= need) {
      wire::WireResult<wire::ClcHeader> h = wire::DecodeClcHeader(bytes);
      if (!h.ok() || h->length > wire::kClcMaxMessageLen) return LateClc::kDone;
      need = h->length;
    }
    if (bytes.size() < need) {
      if (!wait) {
        errno = EAGAIN;
        return LateClc::kWouldBlock;
      }
      if (WaitForMore(fd, bytes.size()) == LateClc::kInterrupted) {
        return LateClc::kInterrupted;
      }
      continue;
    }
    wire::ClcFrameDecoder d(/*decode_body=*/false);
    if (d.Feed(bytes.first(need)).status !=
        wire::ClcFrameDecoder::Status::kFrame) {
      return LateClc::kDone;
    }
    size_t left = need;
    while (left > 0) {
      ssize_t m = real().recv(fd, buf.data(), left, MSG_DONTWAIT);
      if (m < 0 && errno == EINTR) continue;
      if (m <= 0) break;  // they were peeked: only a reset gets here
      left -= static_cast<size_t>(m);
    }
    return LateClc::kDone;
  }
}

}  // namespace usmc::preload
