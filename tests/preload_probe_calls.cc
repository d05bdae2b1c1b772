// tests/preload_probe_calls.cc: what usmc asks the kernel while it sets up a
// connection that stays TCP (issue 20: TCP under usmc at plain TCP's cost).
//   setup-calls  the server accepts two connections (with an address
//                buffer), the client connects (blocking); each side counts the
//                getpeername, getpid and usmc-level getsockopt calls made
//                inside its second accept() / connect() and prints them;
//                each connection carries one byte each way.
// The probe defines getpeername, getpid and getsockopt itself (exported:
// tests/preload.cmake), so usmc's own calls, which go through the dynamic
// symbol search, come here first; each forwards to the next definition
// (usmc's getsockopt wrapper, libc), so nothing else changes.
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "tests/preload_probe.h"

namespace {

std::atomic<int> g_getpeername{0}, g_getpid{0}, g_usmc_getsockopt{0};
// The level of usmc's negotiation options (negotiate/negotiate.h,
// USMC_SOL_NEGOTIATE: "usmc").
constexpr int kSolUsmc = 0x75736d63;

template <typename F>
F Next(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

void Reset() {
  g_getpeername = 0;
  g_getpid = 0;
  g_usmc_getsockopt = 0;
}

void Print(const char* what) {
  std::printf("%s getpeername=%d getpid=%d usmc_getsockopt=%d\n", what,
              g_getpeername.load(), g_getpid.load(), g_usmc_getsockopt.load());
  std::fflush(stdout);
}

}  // namespace

extern "C" {

int getpeername(int fd, sockaddr* a, socklen_t* len) {
  using Fn = int (*)(int, sockaddr*, socklen_t*);
  static Fn next = Next<Fn>("getpeername");
  g_getpeername.fetch_add(1);
  return next(fd, a, len);
}

pid_t getpid() {
  using Fn = pid_t (*)();
  static Fn next = Next<Fn>("getpid");
  g_getpid.fetch_add(1);
  return next();
}

int getsockopt(int fd, int level, int name, void* val, socklen_t* len) {
  using Fn = int (*)(int, int, int, void*, socklen_t*);
  static Fn next = Next<Fn>("getsockopt");
  if (level == kSolUsmc) g_usmc_getsockopt.fetch_add(1);
  return next(fd, level, name, val, len);
}

}  // extern "C"

namespace usmc::probe {
namespace {

// Two connections: the first also sets up what a process needs once (its
// status file); the second shows what each connection costs.
int SetupCallsServer(int lfd) {
  for (int i = 0; i < 2; ++i) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    Reset();
    int fd = accept(lfd, reinterpret_cast<sockaddr*>(&peer), &len);
    CHECK(fd >= 0, "accept");
    if (i == 1) Print("accept");
    char c = 0;
    CHECK(ReadExact(fd, &c, 1) == 0 && c == 'q', "request");
    CHECK(WriteAll(fd, "a", 1) == 0, "answer");
    RUN(ExpectEof(fd));
    close(fd);
  }
  return 0;
}

int SetupCallsClient(uint16_t port, const char*) {
  for (int i = 0; i < 2; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "socket");
    const sockaddr_in a = Loopback(port);
    Reset();
    CHECK(connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0,
          "connect");
    if (i == 1) Print("connect");
    CHECK(WriteAll(fd, "q", 1) == 0, "request");
    char c = 0;
    CHECK(ReadExact(fd, &c, 1) == 0 && c == 'a', "answer");
    close(fd);
  }
  return 0;
}

}  // namespace

void AddCallScenarios(Scenarios& s) {
  s["setup-calls"] = {SetupCallsServer, SetupCallsClient};
}

}  // namespace usmc::probe
