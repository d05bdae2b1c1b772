// tests/preload_probe.cc: the program that tests/preload_test.cc runs under
// LD_PRELOAD=libusmc-preload.so. It is NOT linked with the interposer and
// uses only the plain socket API: one scenario per subcommand, a server part
// and a client part each, checking bytes (patterns), errno values and event
// bits itself. Exit code 0 = the scenario held; anything else is printed to
// stderr as "probe-xxx: FAIL file:line: what".
//
//   preload_probe pair SCEN            # listen, fork: child server, parent
//                                      # client (both under the preload)
//   preload_probe server SCEN          # prints "PORT n", serves one run
//   preload_probe client SCEN PORT [ARG]
//   preload_probe silent-server        # opts in, never sends CLC (no preload)
//   preload_probe silent-server-eof    # the same; wants EOF (close-undecided)
//   preload_probe silent-client PORT MODE
//   preload_probe clc-server SCRIPT     # scripted CLC peer (no preload),
//   preload_probe clc-client SCRIPT PORT  # see preload_probe_clc.cc
//
// The processes name themselves (prctl PR_SET_NAME) probe-srv, probe-cli,
// probe-cli2 (forked child), probe-exec (after exec): the exit report line
// of each process carries that name, so the test can tell them apart.
#include "tests/preload_probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

namespace usmc::probe {

char g_name[16] = "probe";
const char* Name() { return g_name; }
void SetName(const char* n) {
  std::snprintf(g_name, sizeof g_name, "%s", n);
  prctl(PR_SET_NAME, g_name, 0, 0, 0);
}

int WriteAll(int fd, const void* buf, size_t len) {
  const char* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    CHECK(n > 0, "write fd %d: %zd", fd, n);
    p += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}
int ReadExact(int fd, void* buf, size_t len) {
  char* p = static_cast<char*>(buf);
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    CHECK(n > 0, "read fd %d returned %zd with %zu bytes left", fd, n, len);
    p += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}
int SendPat(int fd, uint64_t off, size_t len, int seed) {
  std::vector<char> v = Pattern(off, len, seed);
  return WriteAll(fd, v.data(), v.size());
}
int RecvPat(int fd, uint64_t off, size_t len, int seed) {
  std::vector<char> v(len);
  RUN(ReadExact(fd, v.data(), len));
  long bad = Mismatch(v.data(), off, len, seed);
  CHECK(bad < 0, "byte %lu of stream %d differs", off + bad, seed);
  return 0;
}
int ExpectEof(int fd) {
  char c;
  ssize_t n;
  do {
    n = read(fd, &c, 1);
  } while (n < 0 && errno == EINTR);
  CHECK(n == 0, "expected EOF, read returned %zd", n);
  return 0;
}
int Ack(int fd, char c) { return WriteAll(fd, &c, 1); }
int WaitAck(int fd) {
  char c;
  return ReadExact(fd, &c, 1);
}

int Listen(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  if (listen(fd, 16) != 0) return -1;
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}
sockaddr_in Loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}
int Connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = Loopback(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::fprintf(stderr, "%s: connect: %s\n", Name(), strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}
int AcceptOne(int lfd) {
  int fd;
  do {
    fd = accept(lfd, nullptr, nullptr);
  } while (fd < 0 && errno == EINTR);
  return fd;
}
void SetNonblock(int fd, bool on) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

}  // namespace usmc::probe

namespace {

using namespace usmc::probe;

int Usage() {
  std::fprintf(stderr,
               "usage: preload_probe pair|server SCEN | client SCEN PORT "
               "[ARG] | exec-child FD FD2 | silent-server | silent-client "
               "PORT talk|idle\n");
  return 2;
}

int ProbeMain(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) return Usage();
  const std::string mode = argv[1];
  if (mode == "exec-child" && argc == 4) {
    return ExecChild(std::atoi(argv[2]), std::atoi(argv[3]));
  }
  if (mode == "exec-stdio-child") return ExecStdioChild();
  if (mode == "silent-server") return SilentServerMain();
  if (mode == "silent-server-eof") return SilentServerEofMain();
  if (mode == "silent-client" && argc == 4) {
    return SilentClientMain(static_cast<uint16_t>(std::atoi(argv[2])), argv[3]);
  }
  if (mode == "clc-server" || (mode == "clc-client" && argc == 4)) {
    if (argc < 3) return Usage();
    return ClcPeerMain(
        mode, argv[2],
        argc == 4 ? static_cast<uint16_t>(std::atoi(argv[3])) : 0);
  }
  if (argc < 3) return Usage();
  Scenarios all;
  AddDataScenarios(all);
  AddEventScenarios(all);
  AddCloseScenarios(all);
  AddWakeScenarios(all);
  AddEarlyEpollScenarios(all);
  AddExecScenarios(all);
  AddPassScenarios(all);
  AddClcScenarios(all);
  AddCallScenarios(all);
  AddPassThruScenarios(all);
  auto it = all.find(argv[2]);
  if (it == all.end()) return Usage();
  const Scenario& s = it->second;
  if (mode == "client" && argc >= 4) {
    SetName("probe-cli");
    return s.client(static_cast<uint16_t>(std::atoi(argv[3])),
                    argc >= 5 ? argv[4] : "");
  }
  uint16_t port = 0;
  int lfd = Listen(&port);
  CHECK(lfd >= 0, "listen");
  if (mode == "server") {
    SetName("probe-srv");
    std::printf("PORT %u\n", port);
    std::fflush(stdout);
    return s.server(lfd);
  }
  if (mode != "pair") return Usage();
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    SetName("probe-srv");
    exit(s.server(lfd));
  }
  close(lfd);
  SetName("probe-cli");
  int rc = s.client(port, argc >= 4 ? argv[3] : "");
  int st = 0;
  if (rc != 0) kill(pid, SIGKILL);  // the server may wait for us forever
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  CHECK(rc == 0, "client part failed");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server part failed (%#x)", st);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ProbeMain(argc, argv); }
