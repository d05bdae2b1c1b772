#include "dev/shm_identity.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <iomanip>
#include <sstream>
#include <string>

namespace usmc::dev {
namespace {

// Domain separators so the GID words are unrelated to other hashes of the
// same boot_id (arbitrary odd constants).
constexpr uint64_t kGidSalt = 0x75736d632d676964ULL;     // "usmc-gid"
constexpr uint64_t kGidExtSalt = 0x75736d632d657874ULL;  // "usmc-ext"

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

uint64_t Mix64(uint64_t x) {
  // Two rounds of xor-shift-multiply: every input bit affects every output
  // bit, and the map is a bijection (odd multipliers, invertible shifts).
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ULL;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dULL;
  x ^= x >> 33;
  return x;
}

std::ostream& operator<<(std::ostream& os, const ShmGid& g) {
  std::ostringstream s;
  s << std::hex << std::setfill('0') << std::setw(16) << g.gid << ':'
    << std::setw(16) << g.gid_ext;
  return os << s.str();
}

Result<ShmGid> DeriveShmGid(std::string_view boot_id, uint64_t netns_id) {
  uint64_t hi = 0, lo = 0;
  int digits = 0;
  for (char c : boot_id) {
    if (c == '-' || c == '\n') continue;
    int v = HexValue(c);
    if (v < 0 || digits == 32) {
      return Status(StatusCode::kInvalidArgument, "boot_id is not a UUID");
    }
    uint64_t& word = digits < 16 ? hi : lo;
    word = (word << 4) | static_cast<uint64_t>(v);
    ++digits;
  }
  if (digits != 32) {
    return Status(StatusCode::kInvalidArgument, "boot_id is not a UUID");
  }
  ShmGid g;
  g.gid = Mix64(Mix64(kGidSalt ^ hi) ^ lo);
  g.gid_ext = Mix64(Mix64(Mix64(kGidExtSalt ^ lo) ^ hi) ^ netns_id);
  // Zero reads as "no GID" in CLC; never hand it out.
  if (g.gid == 0) g.gid = 1;
  if (g.gid_ext == 0) g.gid_ext = 1;
  return g;
}

namespace {

Result<ShmGid> ComputeLocalShmGid() {
  // open/read, not a stream: the errno (EMFILE) must reach the caller.
  const int fd =
      ::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::FromErrno(errno, "open /proc/sys/kernel/random/boot_id");
  }
  char buf[64];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf);
  } while (n < 0 && errno == EINTR);
  const int err = errno;
  ::close(fd);
  if (n <= 0) {
    return Status(StatusCode::kUnavailable,
                  "cannot read /proc/sys/kernel/random/boot_id",
                  n < 0 ? err : 0);
  }
  const std::string boot_id(buf, static_cast<size_t>(n));
  // Different network namespaces cannot reach each other's abstract
  // handover sockets, so they must not look like one ISM device. Without
  // the ns file (no /proc/self/ns) all processes fall back to one value.
  struct stat st {};
  uint64_t netns = 0;
  if (::stat("/proc/self/ns/net", &st) == 0) {
    netns = (static_cast<uint64_t>(st.st_dev) << 32) ^ st.st_ino;
  }
  return DeriveShmGid(boot_id, netns);
}

}  // namespace

Result<ShmGid> LocalShmGid() {
  // Only a success is kept: a failure may pass (a process out of fds at
  // its first connection kept NOSMCDDEV for every later one).
  static std::atomic<int> state{0};  // 0 none, 1 storing, 2 stored
  static ShmGid stored;
  if (state.load(std::memory_order_acquire) == 2) return stored;
  Result<ShmGid> g = ComputeLocalShmGid();
  int none = 0;
  if (g.ok() && state.compare_exchange_strong(none, 1)) {
    stored = *g;
    state.store(2, std::memory_order_release);
  }
  return g;
}

Result<uint64_t> NewDmbToken() {
  for (;;) {
    uint64_t token = 0;
    ssize_t n = ::getrandom(&token, sizeof token, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "getrandom");
    if (n != static_cast<ssize_t>(sizeof token)) continue;
    if (token != 0) return token;  // 0 means "no DMB"
  }
}

uint64_t SipHash24(uint64_t k0, uint64_t k1, const void* data, size_t len) {
  // libsodium's SipHash-2-4: the key is k0 then k1, little-endian; the tag
  // is the little-endian u64 the paper's test vectors give.
  static const bool ready = sodium_init() >= 0;
  (void)ready;  // crypto_shorthash needs no more than sodium_init ran
  unsigned char key[crypto_shorthash_siphash24_KEYBYTES];
  for (int i = 0; i < 8; ++i) {
    key[i] = static_cast<unsigned char>(k0 >> (8 * i));
    key[8 + i] = static_cast<unsigned char>(k1 >> (8 * i));
  }
  unsigned char tag[crypto_shorthash_siphash24_BYTES];
  crypto_shorthash_siphash24(tag, static_cast<const unsigned char*>(data), len,
                             key);
  sodium_memzero(key, sizeof key);
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{tag[i]} << (8 * i);
  return v;
}

}  // namespace usmc::dev
