// runtime/smc_socket_exec_test_util.h: what the exec handover test and its
// helper program (the image that adopts the socket) share: the byte
// streams, addressed by absolute position so that the new image continues
// exactly where the old one stopped, and exact-length send/receive.
//
//   SendStream(s, kClientSeed, /*from=*/30000, /*len=*/200000);
//   RecvStream(s, kServerSeed, /*from=*/5000, /*len=*/315000);  // -1: bad byte
#ifndef USMC_RUNTIME_SMC_SOCKET_EXEC_TEST_UTIL_H_
#define USMC_RUNTIME_SMC_SOCKET_EXEC_TEST_UTIL_H_

#include <sys/socket.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/smc_socket.h"

namespace usmc::runtime::testing {

inline constexpr uint64_t kClientSeed = 0xC11E;
inline constexpr uint64_t kServerSeed = 0x5E4E;

// Byte `i` of stream `seed` (a hash of the position: any window can be
// produced without the bytes before it).
inline std::byte StreamByte(uint64_t seed, uint64_t i) {
  uint64_t x = (seed << 40) ^ (i >> 3);
  x *= 0x9E3779B97F4A7C15ULL;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 32;
  return static_cast<std::byte>(x >> (8 * (i & 7)));
}

// Sends bytes [from, from+len) of the stream. 0 or the failing errno.
inline int SendStream(SmcSocket& s, uint64_t seed, uint64_t from,
                      uint64_t len) {
  std::vector<std::byte> buf(64 * 1024);
  uint64_t done = 0;
  while (done < len) {
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(buf.size(), len - done));
    for (size_t i = 0; i < n; ++i) buf[i] = StreamByte(seed, from + done + i);
    size_t off = 0;
    while (off < n) {
      ssize_t r = s.Send(buf.data() + off, n - off, MSG_NOSIGNAL);
      if (r < 0) return errno;
      off += static_cast<size_t>(r);
    }
    done += n;
  }
  return 0;
}

// Receives exactly bytes [from, from+len) of the stream and checks each.
// 0; -1 a byte differs; -2 EOF too early; else the errno.
inline int RecvStream(SmcSocket& s, uint64_t seed, uint64_t from,
                      uint64_t len) {
  std::vector<std::byte> buf(48 * 1024);
  uint64_t done = 0;
  while (done < len) {
    const size_t want =
        static_cast<size_t>(std::min<uint64_t>(buf.size(), len - done));
    ssize_t r = s.Recv(buf.data(), want, 0);
    if (r < 0) return errno;
    if (r == 0) return -2;
    for (ssize_t i = 0; i < r; ++i) {
      if (buf[static_cast<size_t>(i)] != StreamByte(seed, from + done + i)) {
        return -1;
      }
    }
    done += static_cast<uint64_t>(r);
  }
  return 0;
}

}  // namespace usmc::runtime::testing

#endif  // USMC_RUNTIME_SMC_SOCKET_EXEC_TEST_UTIL_H_
