// usmc run [--] CMD [ARGS...]: starts CMD with the usmc interposer
// (libusmc-preload.so in LD_PRELOAD). Every TCP connection whose peer also
// runs usmc uses SMC-D; every other one stays plain TCP.
//
// The library is found, in order: $USMC_PRELOAD_LIB, next to this binary's
// build tree (../preload/), or where `cmake --install` put it
// (tools/install_paths.h: /usr/lib/<multiarch>/usmc/ for the package).
#include <elf.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
#include "tools/install_paths.h"

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
  // The build tree: build/tools/usmc beside build/preload/.
  if (const fs::path p = dir / ".." / "preload" / kLibName; fs::exists(p, ec))
    return fs::canonical(p, ec).string();
  if (fs::exists(kInstalledPreloadLib, ec)) return kInstalledPreloadLib;
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

// The file execvp would run for `prog` ("" if none is found).
std::string ResolveProgram(const std::string& prog) {
  if (prog.find('/') != std::string::npos) return prog;
  const char* path = std::getenv("PATH");
  std::string_view rest = path != nullptr ? path : "/usr/bin:/bin";
  while (true) {
    const size_t colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    std::string candidate = (dir.empty() ? "." : dir) + "/" + prog;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) return {};
    rest.remove_prefix(colon + 1);
  }
}

// Why the dynamic loader will not load the interposer into `file`, or "":
// a static executable has no loader, and a set-id one ignores LD_PRELOAD
// (for a user other than its owner).
std::string WhyNotInterposable(const std::string& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string why;
  struct stat st {};
  Elf64_Ehdr eh{};
  if (::fstat(fd, &st) == 0 && (st.st_mode & (S_ISUID | S_ISGID)) &&
      st.st_uid != ::geteuid()) {
    why = "is set-user-ID or set-group-ID: the loader ignores LD_PRELOAD";
  } else if (::pread(fd, &eh, sizeof eh, 0) == sizeof eh &&
             std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
             eh.e_ident[EI_CLASS] == ELFCLASS64 &&
             (eh.e_type == ET_EXEC || eh.e_type == ET_DYN)) {
    bool interp = false, dynamic = false;
    for (int k = 0; k < eh.e_phnum; ++k) {
      Elf64_Phdr ph{};
      const off_t off = static_cast<off_t>(eh.e_phoff) + k * eh.e_phentsize;
      if (::pread(fd, &ph, sizeof ph, off) != sizeof ph) break;
      interp = interp || ph.p_type == PT_INTERP;
      dynamic = dynamic || ph.p_type == PT_DYNAMIC;
    }
    // No interpreter: linked statically (ET_EXEC), or a static-pie (ET_DYN
    // with its own dynamic section). A shared library has neither.
    if (!interp && (eh.e_type == ET_EXEC || dynamic)) {
      why = "is statically linked: no loader runs it, so nothing interposes";
    }
  }
  ::close(fd);
  return why;
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
      // Laid out as CLI11 lays out the other subcommands' help: the man
      // page and the completion are generated from it (packaging/).
      std::cout
          << "run a program with usmc: SMC-D to usmc peers, TCP otherwise\n"
             "Usage: usmc run [OPTIONS] [--] PROGRAM [ARGS...]\n\n"
             "Positionals:\n"
             "  PROGRAM [ARGS...]           the program to start, as execvp "
             "finds it, and its arguments\n\n"
             "Options:\n"
             "  -h,--help                   Print this help message and exit\n"
             "  -q,--quiet                  no warning when the negotiation "
             "program is not attached\n\n"
             "Each TCP connection to a peer that also runs usmc uses SMC-D, "
             "every other one stays plain TCP.\n"
             "The interposer is $USMC_PRELOAD_LIB if set, else the installed "
             "libusmc-preload.so.\n"
             "Which sockets may use SMC: usmc.conf(5); the interposer: "
             "docs/preload.md.\n";
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
  if (const std::string why = WhyNotInterposable(ResolveProgram(argv[i]));
      !why.empty()) {
    // Said even with -q: the user asked for usmc and gets none.
    std::cerr << "usmc run: " << argv[i] << " " << why
              << "; its connections stay plain TCP\n";
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
