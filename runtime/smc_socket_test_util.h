// runtime/smc_socket_test_util.h: two processes on one TCP connection, for
// runtime tests. The parent is the server, a forked child the client.
#ifndef USMC_RUNTIME_SMC_SOCKET_TEST_UTIL_H_
#define USMC_RUNTIME_SMC_SOCKET_TEST_UTIL_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

namespace usmc::runtime {
class SmcSocket;
struct Options;
}  // namespace usmc::runtime

namespace usmc::runtime::testing {

// Far above any real wakeup latency: a sleep this long with nothing
// delivered means a wakeup was lost (the test then fails instead of hanging).
inline constexpr int kWatchdogMs = 10000;

// A listening TCP socket on 127.0.0.1 with an ephemeral port.
int ListenLoopback(int* port);
// Connects to 127.0.0.1:port (blocking).
int ConnectLoopback(int port);
// Both ends of one loopback connection in this process (the listener is
// closed again).
struct LoopbackPair {
  int client = -1;
  int server = -1;
};
LoopbackPair ConnectedLoopbackPair();
// Forks; the child connects and runs `client(fd)`, exiting with its return
// value. The parent accepts and returns the accepted fd; *child gets the pid.
int ForkClient(const std::function<int(int fd)>& client, pid_t* child);
// Waits for the child and returns its exit code (128+signal if killed).
int WaitChild(pid_t child);

// Options for each role, defaults otherwise.
Options Client();
Options Server();
void SetNonblockingFd(int fd);
// SmcSocket::Start, or nullptr if it failed.
std::unique_ptr<SmcSocket> MustStart(int fd, const Options& o);

// One round of an event loop for one socket: PrepareWait, poll(2) on what
// it returned (or on the fd in TCP mode), AfterWait. Returns the bits of
// `events` that hold, 0 if the watchdog fired.
short LoopWait(SmcSocket& s, short events);
// Drives the handshake the way a loop that waits for readability does.
// false on POLLHUP/POLLERR or when the watchdog fired.
bool LoopUntilDecided(SmcSocket& s);

// memfds and memfd mappings this process holds per connection (DMBs are
// memfds). Arenas (memfd:usmc-arena) are not counted: they belong to the
// process's pair with a peer process and outlive its connections
// (docs/dev-shm.md, "Fds per connection").
int CountMemfds();

// A reproducible byte stream: both ends generate it from the same seed, so
// the receiver checks every byte without the data crossing twice.
class Stream {
 public:
  explicit Stream(uint64_t seed) : x_(seed | 1) {}
  void Fill(std::byte* p, size_t n);

 private:
  uint64_t x_;
  uint64_t word_ = 0;
  int left_ = 0;
};

}  // namespace usmc::runtime::testing

#endif  // USMC_RUNTIME_SMC_SOCKET_TEST_UTIL_H_
