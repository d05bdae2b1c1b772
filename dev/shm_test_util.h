// dev/shm_test_util.h: helpers for multi-process shm device tests and the
// doorbell bench: TCP loopback pairs, the CLC stand-in (tokens over TCP), a
// full two-sided handover, fork/wait, and fd/mapping counters for leak
// checks. Test-only; not part of usmc_dev_shm.
//
//   uint16_t port; UniqueFd l = *TcpListenLoopback(&port);
//   pid_t pid = fork();  // child: ShmPair c = *SetupShmPair(false,
//   *TcpConnectLoopback(port), n); ShmPair s = *SetupShmPair(true,
//   *TcpAccept(l.get()), n);
#ifndef USMC_DEV_SHM_TEST_UTIL_H_
#define USMC_DEV_SHM_TEST_UTIL_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string_view>

#include "base/status.h"
#include "dev/shm_dmb.h"
#include "dev/unique_fd.h"

namespace usmc::dev::testing {

Result<UniqueFd> TcpListenLoopback(uint16_t* port);
Result<UniqueFd> TcpConnectLoopback(uint16_t port);
Result<UniqueFd> TcpAccept(int listen_fd);

// Blocking full-length I/O on a socket (or pipe).
Status WriteAll(int fd, const void* data, size_t len);
Status ReadAll(int fd, void* data, size_t len);
Status WriteU64(int fd, uint64_t v);
Result<uint64_t> ReadU64(int fd);

// Both ends of one shm connection in this process.
struct ShmPair {
  UniqueFd tcp;
  LocalDmb local;
  PeerDmb peer;
};

// Registers a DMB of dmb_size, swaps token and size with the peer over the
// TCP socket (what CLC Accept/Confirm carry), then runs the handover as
// server (Listen + Accept) or client (ConnectHandover).
Result<ShmPair> SetupShmPair(
    bool server, UniqueFd tcp, uint64_t dmb_size,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

// Open fds of this process, and lines in /proc/self/maps containing `what`.
int CountOpenFds();
int CountMappings(std::string_view what);

// waitpid until the child exits; returns the raw wait status (-1 on error).
int WaitChild(pid_t pid);

// Closes every fd >= 3 except `keep` (for a forked "third party").
void CloseFdsExcept(int keep);

// 64-bit FNV-1a, continued from `h`.
uint64_t Fnv1a(uint64_t h, const std::byte* p, size_t n);
inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;

// A deterministic byte stream (xorshift64*), for ring checksums.
class ByteStream {
 public:
  explicit ByteStream(uint64_t seed) : s_(seed | 1) {}
  void Fill(std::byte* p, size_t n);

 private:
  uint64_t s_;
  uint64_t word_ = 0;
  int left_ = 0;
};

}  // namespace usmc::dev::testing

#endif  // USMC_DEV_SHM_TEST_UTIL_H_
