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
#include <string_view>
#include <vector>

#include "base/loaded_library.h"
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
       {dir / ".." / "preload" / kLibName,
        dir / ".." / "lib" / "usmc" / kLibName, dir / kLibName}) {
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

int RunMain(int argc, char** argv) {
  // Hand-parsed: everything from the program name on belongs to it, and
  // CLI11 would reorder or swallow its options.
  bool quiet = false;
  int i = 1;
  for (; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "-q" || a == "--quiet") {
      quiet = true;
    } else if (a == "-h" || a == "--help") {
      std::cout << "Usage: usmc run [-q|--quiet] [--] PROGRAM [ARGS...]\n"
                   "Runs PROGRAM with usmc: each TCP connection to a peer "
                   "that also runs usmc uses SMC-D,\nevery other one stays "
                   "plain TCP. See docs/preload.md and docs/config.md.\n";
      return 0;
    } else if (a.starts_with("-")) {
      std::cerr << "usmc run: unknown option " << a << " (usmc run --help)\n";
      return 2;
    } else {
      break;
    }
  }
  if (i >= argc) {
    std::cerr << "usmc run: no program given (usmc run --help)\n";
    return 2;
  }
  const std::string lib = FindPreload();
  if (lib.empty()) {
    std::cerr << "usmc run: " << kLibName
              << " not found (set USMC_PRELOAD_LIB to its path)\n";
    return 1;
  }
  if (!quiet && !NegotiationAvailable()) {
    std::cerr << "usmc run: the SMC negotiation program is not attached for "
                 "this cgroup (run `sudo usmc setup`); connections will "
                 "stay TCP\n";
  }
  std::string preload = lib;
  if (const char* old = std::getenv("LD_PRELOAD"); old && *old) {
    preload = std::string(old) + " " + lib;
  }
  // An ASan build of usmc (scripts/build.sh asan) has an ASan-built
  // interposer, which needs the ASan runtime loaded first in the program.
  if (std::string asan = LoadedLibrary("libasan.so"); !asan.empty()) {
    preload = asan + " " + preload;
    ::setenv("ASAN_OPTIONS", "detect_leaks=0", 0);
  }
  ::setenv("LD_PRELOAD", preload.c_str(), 1);
  ::execvp(argv[i], argv + i);
  const int err = errno;
  std::cerr << "usmc run: " << argv[i] << ": " << std::strerror(err) << "\n";
  return err == ENOENT ? 127 : 126;
}

void AddRunCommand(CLI::App& app) {
  // Listed for --help only: main() hands `usmc run ...` to RunMain first.
  app.add_subcommand(
      "run", "run a program with usmc: SMC-D to usmc peers, TCP otherwise");
}

}  // namespace usmc::tools
