// tests/conformance/conform.h: the socket conformance suite's cases.
//
// A case is an ordinary socket program (plain POSIX API, no usmc headers):
// it forks its own servers, clients and workers and logs what an
// application can observe — return values, errno, readiness bits, byte
// counts and digests — as transcript lines. The driver
// (conformance_test.cc) runs every case twice, plain and under usmc, and
// requires the same transcript from both. What a case logs must therefore
// be deterministic over plain TCP (no timing-dependent counts).
//
//   CONFORM_CASE(echo_after_connect, /*smcd_min=*/2) {
//     uint16_t port;
//     int lfd = Listen(&port);
//     pid_t srv = Spawn([&] { ...; Say("srv", "read %zd", n); return 0; });
//     int fd = Connect(port);
//     CCHECK(fd >= 0, "connect");
//     Say("cli", "connected");
//     ...
//     return Reap(srv);
//   }
//
// Under usmc the driver also requires, from the processes' exit reports,
// at least `smcd_min` connection ends that were SMC-D (both ends of one
// connection count: 2 per connection) and no handshake error.
#ifndef USMC_TESTS_CONFORMANCE_CONFORM_H_
#define USMC_TESTS_CONFORMANCE_CONFORM_H_

#include <sys/types.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "tests/byte_pattern.h"

namespace usmc::conform {

// Appends "ROLE: text\n" to the transcript (stdout, in one write(2), so
// the lines of forked processes never interleave). The driver compares
// lines grouped by ROLE, in their order within each role.
void Say(const char* role, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));

// Fails the case: "FAIL file:line: what [cond] (errno)" on stderr and
// `return 1` from the enclosing function.
#define CCHECK(cond, ...)                                                     \
  do {                                                                        \
    if (!(cond)) {                                                            \
      const int e_ = errno;                                                   \
      char m_[256];                                                           \
      std::snprintf(m_, sizeof m_, __VA_ARGS__);                              \
      std::fprintf(stderr, "[pid %d] FAIL %s:%d: %s [%s] (errno %d %s)\n",    \
                   static_cast<int>(getpid()), __FILE__, __LINE__, m_, #cond, \
                   e_, strerror(e_));                                         \
      return 1;                                                               \
    }                                                                         \
  } while (0)
#define CRUN(expr)             \
  do {                         \
    if ((expr) != 0) return 1; \
  } while (0)

// ---- registry

struct Case {
  std::string name;
  int (*run)();
  int smcd_min;
};
std::vector<Case>& Cases();
struct Registrar {
  Registrar(const char* name, int (*run)(), int smcd_min);
};
#define CONFORM_CASE(NAME, SMCD_MIN)                                     \
  static int NAME##_Run();                                               \
  static ::usmc::conform::Registrar NAME##_registrar(#NAME, &NAME##_Run, \
                                                     (SMCD_MIN));        \
  static int NAME##_Run()

// ---- helpers (all blocking, EINTR retried; 0 = ok unless said otherwise)

// 127.0.0.1 listener on an ephemeral port (backlog 512), or -1.
int Listen(uint16_t* port);
// A blocking connect to 127.0.0.1:port, or -1.
int Connect(uint16_t port);
int AcceptOne(int lfd);  // -1 on error
void SetNonblock(int fd, bool on);

// Byte i of stream `seed`, as a checked pattern (tests/byte_pattern.h).
using test_pattern::Pat;
int WriteAll(int fd, const void* buf, size_t len);
int ReadExact(int fd, void* buf, size_t len);
int SendPat(int fd, uint64_t off, size_t len, int seed);
int RecvPat(int fd, uint64_t off, size_t len, int seed);  // checks each byte
int ExpectEof(int fd);

// fork(); the child runs fn and _exits with its result (flushing stdio).
pid_t Spawn(const std::function<int()>& fn);
// The child's exit code, or -1 if a signal ended it.
int Reap(pid_t pid);

// "events" as names, e.g. "IN|OUT|RDHUP" (poll and epoll share the bits),
// so transcripts read well.
std::string EventNames(uint32_t events);

}  // namespace usmc::conform

#endif  // USMC_TESTS_CONFORMANCE_CONFORM_H_
