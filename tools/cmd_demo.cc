// usmc demo: two processes on this host talk over SMC-D next to TCP, with
// the numbers. The README's first command runs it.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <string>

#include "bench/pair_bench.h"
#include "runtime/smc_socket.h"
#include "tools/commands.h"
#include "wire/reason.h"

namespace usmc::tools {
namespace {

std::string Describe(const runtime::SmcSocket& s) {
  runtime::SocketStatus st = s.status();
  const engine::ConnectionStats& e = st.engine;
  if (e.mode != engine::Mode::kSmc) {
    return fmt::format(
        "TCP (fallback: local {}, peer {})", wire::FormatReason(e.local_reason),
        e.peer_reason ? wire::FormatReason(e.peer_reason) : "none");
  }
  return fmt::format(
      "SMC-D, own DMB {} KiB (token {:016x}), peer DMB {} KiB (token "
      "{:016x}), {} bytes in, {} bytes out",
      e.local_dmb_size / 1024, st.local_dmb_token, e.peer_dmb_size / 1024,
      st.peer_dmb_token, e.counters.bytes_received, e.counters.bytes_sent);
}

// One connection between this process (server) and a forked client: the
// client sends a greeting, the server answers; both print what they ran on.
bool Conversation(bool server_allows_smc) {
  int port = 0;
  int lfd = bench::ListenLoopback(&port);
  if (lfd < 0) return false;
  std::cout.flush();  // the child must not print our buffered lines again
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(lfd);
    int fd = bench::ConnectLoopback(port);
    if (fd < 0) ::_exit(1);
    auto s = runtime::SmcSocket::Upgrade(fd, {.role = engine::Role::kClient});
    if (!s.ok()) ::_exit(1);
    const std::string hello = "hello from the client";
    (*s)->Send(hello.data(), hello.size(), 0);
    char reply[64] = {};
    ssize_t n = (*s)->Recv(reply, sizeof reply - 1, 0);
    std::cout << fmt::format("  client (pid {}) got \"{}\" over {}\n", getpid(),
                             std::string(reply, n > 0 ? n : 0), Describe(**s))
              << std::flush;
    ::_exit(0);
  }
  int fd = bench::AcceptNoDelay(lfd);
  ::close(lfd);
  auto s = runtime::SmcSocket::Upgrade(
      fd, {.role = engine::Role::kServer, .smcd_enabled = server_allows_smc});
  if (!s.ok()) return false;
  char buf[64] = {};
  ssize_t n = (*s)->Recv(buf, sizeof buf - 1, 0);
  const std::string reply = "hello from the server";
  (*s)->Send(reply.data(), reply.size(), 0);
  std::cout << fmt::format("  server (pid {}) got \"{}\" over {}\n", getpid(),
                           std::string(buf, n > 0 ? n : 0), Describe(**s))
            << std::flush;
  int st = 0;
  ::waitpid(pid, &st, 0);
  (*s)->Close();
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

}  // namespace

void AddDemoCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "demo", "two processes talk over SMC-D next to TCP, with the numbers");
  cmd->callback([] {
    std::cout << "usmc demo: two processes on this host, one TCP connection "
                 "each, upgraded to SMC-D\n(shared memory) when both ends "
                 "agree, plain TCP otherwise.\n\n";
    std::cout << "1. Both ends run usmc: the CLC handshake picks SMC-D.\n";
    if (!Conversation(true)) ExitWith(1);
    std::cout << "\n2. The server refuses SMC: the same program falls back "
                 "to TCP, nothing lost.\n";
    if (!Conversation(false)) ExitWith(1);
    std::cout << "\n3. The numbers (usmc bench --quick; `usmc bench` for the "
                 "full run):\n   "
              << bench::DescribeMachine() << "\n\n";
    bench::Config cfg;
    cfg.repeats = 1;
    cfg.pingpong_sizes = {64, 16384};
    cfg.pingpong_rounds = 5000;
    cfg.stream_bytes = 512 << 20;
    cfg.setup_connections = 50;
    Result<bench::Report> r = bench::PairBench(cfg).Run();
    if (!r.ok()) {
      std::cerr << "usmc demo: " << r.status() << "\n";
      ExitWith(1);
    }
    bench::PrintTable(*r, std::cout);
    ExitWith(0);
  });
}

}  // namespace usmc::tools
