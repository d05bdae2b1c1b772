// tools/cmd_chk.cc: `usmc chk`, like smc_chk: does a connection to HOST PORT
// use SMC, and if not, why (in words, from the reason code)?
//
//   usmc chk HOST PORT      probe: a client under `usmc run` connects,
//                           exchanges a line, reports its published status
//   usmc chk -S [-p PORT]   a test echo server under `usmc run`
//
// The probe is this binary again (`usmc run -q -- usmc chk --probe HOST
// PORT`): it finds its own connection in the status files (read-only, so it
// never disturbs the interposer's publisher) and prints it as JSON; the
// parent turns that into the verdict. Exit: 0 SMC used, 1 not, 2 no answer.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "negotiate/negotiate.h"
#include "tools/commands.h"
#include "tools/status_json.h"

namespace usmc::tools {
namespace {

struct ChkArgs {
  std::string host;
  int port = 0;
  bool serve = false;        // -S
  bool probe = false;        // internal: the client under usmc run
  bool serve_child = false;  // internal: the server under usmc run
  int timeout_ms = 3000;
};

std::string Self() {
  std::error_code ec;
  return std::filesystem::read_symlink("/proc/self/exe", ec).string();
}

// A connected socket, or -1 with `why` saying what failed.
int Connect(const std::string& host, int port, std::string* why) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int gai =
      getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (gai != 0) {
    // The resolver's own words (errno means nothing here).
    *why = "cannot resolve " + host + ": " + gai_strerror(gai);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = res; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      close(fd);
      fd = -1;
    }
  }
  if (fd < 0) *why = "connect failed: " + std::string(strerror(errno));
  freeaddrinfo(res);
  return fd;
}

// Under `usmc run`: connect, exchange a line, print our record as JSON.
void Probe(const ChkArgs& a) {
  std::string why;
  const int fd = Connect(a.host, a.port, &why);
  if (fd < 0) {
    std::cout << nlohmann::json{{"error", why}} << "\n";
    ExitWith(2);
  }
  const char line[] = "usmc chk\n";
  (void)!send(fd, line, sizeof(line) - 1, MSG_NOSIGNAL);
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, a.timeout_ms) > 0) {
    char buf[256];
    (void)!recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
  }
  nlohmann::json out = {{"error",
                         "this connection was not published: is "
                         "the probe running under usmc run?"}};
  for (const runtime::ProcessStatus& ps : ReadProcesses(""))
    for (const runtime::ConnRecord& r : ps.connections)
      if (ps.pid == getpid() && r.fd == fd) out = ConnToJson(ps, r);
  close(fd);
  std::cout << out.dump() << "\n";
  ExitWith(0);
}

// Under `usmc run`: echo server, one thread per connection, until killed.
void Serve(const ChkArgs& a) {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(static_cast<uint16_t>(a.port));
  const int on = 1, off = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) ||
      listen(fd, 64) != 0) {
    std::cerr << "usmc chk -S: cannot listen on port " << a.port << ": "
              << strerror(errno) << "\n";
    ExitWith(1);
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::cout << "usmc chk: test server listening on port "
            << ntohs(addr.sin6_port) << " (all addresses); stop with Ctrl-C"
            << std::endl;
  for (;;) {
    const int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    std::thread([c] {
      std::array<char, 4096> buf;
      ssize_t n;
      while ((n = recv(c, buf.data(), buf.size(), 0)) > 0)
        if (send(c, buf.data(), static_cast<size_t>(n), MSG_NOSIGNAL) != n)
          break;
      close(c);
    }).detach();
  }
}

// Whether this cgroup's sockets can opt in to the SMC TCP option (the
// program `usmc setup` attaches answers).
bool NegotiationUp() {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool ok = negotiate::OptIn(fd);
  close(fd);
  return ok;
}

// Runs `usmc run -q -- usmc chk ARGS...`; returns its stdout.
std::string UnderUsmc(const std::vector<std::string>& args, int* status) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return "";
  const std::string self = Self();
  std::vector<std::string> argv = {self, "run", "-q", "--", self, "chk"};
  argv.insert(argv.end(), args.begin(), args.end());
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], STDOUT_FILENO);
    std::vector<char*> v;
    for (std::string& s : argv) v.push_back(s.data());
    v.push_back(nullptr);
    execv(v[0], v.data());
    _exit(127);
  }
  close(p[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof(buf))) > 0) out.append(buf, n);
  close(p[0]);
  waitpid(pid, status, 0);
  return out;
}

void Run(const ChkArgs& a) {
  if (a.probe) Probe(a);
  if (a.serve_child) Serve(a);
  if (a.serve) {
    // Foreground: exec the server under usmc run.
    const std::string self = Self();
    const std::string port = std::to_string(a.port);
    execl(self.c_str(), self.c_str(), "run", "--", self.c_str(), "chk",
          "--serve-child", "-p", port.c_str(), static_cast<char*>(nullptr));
    std::cerr << "usmc chk -S: " << strerror(errno) << "\n";
    ExitWith(1);
  }
  if (a.host.empty() || a.port <= 0) {
    std::cerr << "usmc chk: HOST PORT needed (or -S)\n";
    ExitWith(2);
  }
  int status = 0;
  const std::string out = UnderUsmc({"--probe", a.host, std::to_string(a.port),
                                     "--timeout", std::to_string(a.timeout_ms)},
                                    &status);
  const nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    std::cerr << "usmc chk: the probe gave no answer (exit status " << status
              << "): " << out << "\n";
    ExitWith(2);
  }
  // A string "error" is the probe's own failure; a connection record has
  // a numeric "error" (the errno the app sees) and gets a verdict.
  const bool probe_failed = j.contains("error") && j["error"].is_string();
  // The probe's own failure to resolve or connect is said as it is: the
  // missing negotiation program explains only an unpublished connection.
  const bool no_connection =
      probe_failed &&
      (j["error"].get<std::string>().rfind("connect failed", 0) == 0 ||
       j["error"].get<std::string>().rfind("cannot resolve", 0) == 0);
  if (probe_failed && !no_connection && !NegotiationUp()) {
    // The interposer leaves sockets alone when it cannot opt in.
    std::cout << "usmc chk " << a.host << " " << a.port
              << ": Failed (TCP), SMC negotiation is not set up here, so "
                 "usmc left the connection to TCP (as reason "
              << Hex32(wire::kReasonPeerNoSmc) << " "
              << ReasonText(wire::kReasonPeerNoSmc)
              << "). Fix: sudo usmc setup\n";
    ExitWith(1);
  }
  if (probe_failed) {
    std::cout << "usmc chk " << a.host << " " << a.port << ": "
              << j["error"].get<std::string>() << "\n";
    ExitWith(2);
  }
  const ChkVerdict v = VerdictOf(j);
  std::cout << "usmc chk " << a.host << " " << a.port << ": " << v.text << "\n";
  ExitWith(v.code);
}

}  // namespace

void AddChkCommand(CLI::App& app) {
  auto a = std::make_shared<ChkArgs>();
  CLI::App* cmd = app.add_subcommand(
      "chk", "does a connection to HOST PORT use SMC? (like smc_chk)");
  cmd->add_option("HOST", a->host, "server to probe");
  cmd->add_option("PORT", a->port, "its port")->check(CLI::Range(1, 65535));
  cmd->add_flag("-S,--server", a->serve,
                "start a test echo server under usmc run");
  cmd->add_option("-p,--port", a->port, "-S: port (default: any free port)");
  cmd->add_option("--timeout", a->timeout_ms, "ms to wait for the echo")
      ->check(CLI::Range(1, 60000));
  cmd->add_flag("--probe", a->probe)->group("");
  cmd->add_flag("--serve-child", a->serve_child)->group("");
  cmd->callback([a] { Run(*a); });
}

}  // namespace usmc::tools
