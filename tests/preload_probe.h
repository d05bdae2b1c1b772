// tests/preload_probe.h: what the parts of the probe program share (see
// tests/preload_probe.cc): checks that print "name: FAIL file:line: what"
// and return 1, byte patterns, blocking I/O helpers, and the scenario table.
//
//   int MyServer(int lfd) {
//     int fd = AcceptOne(lfd);
//     CHECK(fd >= 0, "accept");
//     RUN(RecvPat(fd, 0, 4096, /*seed=*/1));  // checks every byte
//     return 0;
//   }
#ifndef USMC_TESTS_PRELOAD_PROBE_H_
#define USMC_TESTS_PRELOAD_PROBE_H_

#include <netinet/in.h>
#include <sys/types.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tests/byte_pattern.h"

namespace usmc::probe {

#define CHECK(cond, ...)                                                      \
  do {                                                                        \
    if (!(cond)) {                                                            \
      const int e_ = errno;                                                   \
      char m_[256];                                                           \
      std::snprintf(m_, sizeof m_, __VA_ARGS__);                              \
      std::fprintf(stderr, "%s: FAIL %s:%d: %s [%s] (errno %d %s)\n", Name(), \
                   __FILE__, __LINE__, m_, #cond, e_, strerror(e_));          \
      return 1;                                                               \
    }                                                                         \
  } while (0)
#define RUN(expr)              \
  do {                         \
    if ((expr) != 0) return 1; \
  } while (0)

// This process's name (also its comm, which the exit report carries).
const char* Name();
void SetName(const char* n);

// Byte i of stream `seed`; a run of it; the first index that differs (-1).
using test_pattern::Mismatch;
using test_pattern::Pat;
using test_pattern::Pattern;

// Blocking helpers on top of read/write (EINTR retried); 0 = ok.
int WriteAll(int fd, const void* buf, size_t len);
int ReadExact(int fd, void* buf, size_t len);
int SendPat(int fd, uint64_t off, size_t len, int seed);
int RecvPat(int fd, uint64_t off, size_t len, int seed);
int ExpectEof(int fd);
int Ack(int fd, char c = 'k');
int WaitAck(int fd);

// 127.0.0.1 sockets. Listen returns the listener (port filled) or -1.
int Listen(uint16_t* port);
sockaddr_in Loopback(uint16_t port);
int Connect(uint16_t port);
int AcceptOne(int lfd);
void SetNonblock(int fd, bool on);

// One scenario: the server part gets the listener, the client part the
// port and an optional argument.
struct Scenario {
  std::function<int(int)> server;
  std::function<int(uint16_t, const char*)> client;
};
using Scenarios = std::map<std::string, Scenario>;

// tests/preload_probe_data.cc: data path, dup, fork, exec, wrapped calls.
void AddDataScenarios(Scenarios& s);
int ServeBasic(int fd);  // 1 MiB in, 512 KiB out, EOF
int BasicClient(uint16_t port, const char* arg);
int ExecChild(int fd, int fd2);  // the image after the exec scenario
// tests/preload_probe_events.cc: readiness, flags, signals, silent peers.
void AddEventScenarios(Scenarios& s);
int SilentServerMain();
int SilentServerEofMain();
int SilentClientMain(uint16_t port, const std::string& mode);
// tests/preload_probe_close.cc: how a close or reset reaches the other side.
void AddCloseScenarios(Scenarios& s);
// tests/preload_probe_wake.cc: wakeups across many connections of a set.
void AddWakeScenarios(Scenarios& s);
// tests/preload_probe_early_epoll.cc: epoll registrations made before
// connect() or listen().
void AddEarlyEpollScenarios(Scenarios& s);
// tests/preload_probe_exec.cc: exec after closing every other fd.
void AddExecScenarios(Scenarios& s);
int ExecStdioChild();  // the image after "exec-stdio"
// tests/preload_probe_pass.cc: connections passed to a worker (SCM_RIGHTS).
void AddPassScenarios(Scenarios& s);
// tests/preload_probe_clc.cc: a scripted CLC peer forcing fallbacks.
void AddClcScenarios(Scenarios& s);
int ClcPeerMain(const std::string& mode, const std::string& script,
                uint16_t port);
// tests/preload_probe_calls.cc: usmc's calls while setting up a TCP one.
void AddCallScenarios(Scenarios& s);
// tests/preload_probe_passthru.cc: fd numbers of TCP-for-good connections
// reused (close, dup2, dup3, pipe) and inherited (fork).
void AddPassThruScenarios(Scenarios& s);

}  // namespace usmc::probe

#endif  // USMC_TESTS_PRELOAD_PROBE_H_
