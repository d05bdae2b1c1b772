// usmc run [--] CMD [ARGS...]: starts CMD with the usmc interposer
// (libusmc-preload.so in LD_PRELOAD). Every TCP connection whose peer also
// runs usmc uses SMC-D; every other one stays plain TCP.
//
// The library is found, in order: $USMC_PRELOAD_LIB, next to this binary's
// build tree (../preload/), or the install location (../lib/usmc/).
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "negotiate/negotiate.h"
#include "tools/commands.h"

namespace usmc::tools {
namespace {

namespace fs = std::filesystem;

constexpr const char* kLibName = "libusmc-preload.so";

std::string FindPreload() {
  if (const char* env = std::getenv("USMC_PRELOAD_LIB"); env && *env) {
    return env;
  }
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  const fs::path dir = self.parent_path();
  for (const fs::path& p :
       {dir / ".." / "preload" / kLibName, dir / ".." / "lib" / "usmc" / kLibName,
        dir / kLibName}) {
    if (fs::exists(p, ec)) return fs::canonical(p, ec).string();
  }
  return {};
}

// Whether sockets of this cgroup can negotiate SMC: the eBPF program
// `usmc setup` attaches answers the opt-in of a fresh TCP socket.
bool NegotiationAvailable() {
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool ok = negotiate::OptIn(fd);
  ::close(fd);
  return ok;
}

}  // namespace

void AddRunCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "run", "run a program with usmc: SMC-D to usmc peers, TCP otherwise");
  auto argv = std::make_shared<std::vector<std::string>>();
  auto quiet = std::make_shared<bool>(false);
  cmd->add_flag("-q,--quiet", *quiet, "no warning when SMC cannot be used");
  cmd->add_option("command", *argv, "the program and its arguments")
      ->required();
  cmd->prefix_command();  // everything after the program name is its own
  cmd->callback([argv, quiet] {
    const std::string lib = FindPreload();
    if (lib.empty()) {
      std::cerr << "usmc run: " << kLibName
                << " not found (set USMC_PRELOAD_LIB to its path)\n";
      ExitWith(1);
    }
    if (!*quiet && !NegotiationAvailable()) {
      std::cerr << "usmc run: the SMC negotiation program is not attached "
                   "for this cgroup (run `sudo usmc setup`); connections "
                   "will stay TCP\n";
    }
    std::string preload = lib;
    if (const char* old = std::getenv("LD_PRELOAD"); old && *old) {
      preload = std::string(old) + " " + lib;
    }
    ::setenv("LD_PRELOAD", preload.c_str(), 1);
    std::vector<char*> args;
    for (std::string& a : *argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    const int err = errno;
    std::cerr << "usmc run: " << (*argv)[0] << ": " << std::strerror(err)
              << "\n";
    ExitWith(err == ENOENT ? 127 : 126);
  });
}

}  // namespace usmc::tools
