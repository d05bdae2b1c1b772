#include "base/owned_fd.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace usmc::base {
namespace {

// One bit per fd below 2^20 (the usual hard limit), 128 KiB of zeroed
// memory the kernel maps only where used. Atomic words: marks come from
// any thread, and the close wrappers read them without a lock.
constexpr unsigned kMaxFds = 1u << 20;
constexpr unsigned kWords = kMaxFds / 64;
std::atomic<uint64_t> g_bits[kWords];
// One past the highest fd ever marked: bounds the range scans.
std::atomic<unsigned> g_limit{0};

bool InRange(int fd) { return fd >= 0 && static_cast<unsigned>(fd) < kMaxFds; }

}  // namespace

void MarkOwnedFd(int fd) {
  if (!InRange(fd)) return;
  const unsigned u = static_cast<unsigned>(fd);
  g_bits[u / 64].fetch_or(uint64_t{1} << (u % 64), std::memory_order_release);
  unsigned cur = g_limit.load(std::memory_order_relaxed);
  while (cur < u + 1 && !g_limit.compare_exchange_weak(
                            cur, u + 1, std::memory_order_release)) {
  }
}

void DisownFd(int fd) {
  if (!InRange(fd)) return;
  const unsigned u = static_cast<unsigned>(fd);
  g_bits[u / 64].fetch_and(~(uint64_t{1} << (u % 64)),
                           std::memory_order_release);
}

bool IsOwnedFd(int fd) {
  if (!InRange(fd)) return false;
  const unsigned u = static_cast<unsigned>(fd);
  return (g_bits[u / 64].load(std::memory_order_acquire) >> (u % 64)) & 1;
}

int OwnFd(int fd) {
  if (fd < 0) return fd;
  if (fd < kOwnedFdFloor) {
    const int err = errno;
    const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, kOwnedFdFloor);
    if (high >= 0) {
      ::close(fd);
      fd = high;
    }
    errno = err;  // a limit below the floor: the fd stays where it is
  }
  MarkOwnedFd(fd);
  return fd;
}

int CloseOwnedFd(int fd) {
  if (fd < 0) return 0;
  DisownFd(fd);
  return ::close(fd);
}

int ForEachUnownedRange(unsigned first, unsigned last,
                        int (*fn)(unsigned lo, unsigned hi, void* arg),
                        void* arg) {
  if (first > last) return fn(first, last, arg);  // the kernel's EINVAL
  const unsigned limit = g_limit.load(std::memory_order_acquire);
  unsigned lo = first;
  for (unsigned fd = first; fd < limit && fd <= last; ++fd) {
    if ((fd % 64) == 0 &&
        g_bits[fd / 64].load(std::memory_order_acquire) == 0) {
      fd += 63;  // a word with no owned fd
      continue;
    }
    if (!IsOwnedFd(static_cast<int>(fd))) continue;
    if (fd > lo) {
      if (int r = fn(lo, fd - 1, arg); r != 0) return r;
    }
    if (fd == last) return 0;
    lo = fd + 1;
  }
  return fn(lo, last, arg);
}

}  // namespace usmc::base
