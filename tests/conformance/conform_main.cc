// tests/conformance/conform_main.cc: the conformance cases' program.
//   conform_probe list        one case name a line
//   conform_probe smcd-min NAME  the case's minimum of SMC-D ends
//   conform_probe run NAME    runs one case: transcript on stdout, exit 0
//                             when the case's own checks held
// It uses only the plain socket API; the driver runs it with and without
// libusmc-preload.so in LD_PRELOAD.
#include <signal.h>

#include <cstdio>
#include <cstring>

#include "tests/conformance/conform.h"

int main(int argc, char** argv) {
  using usmc::conform::Cases;
  // A peer that resets must show as EPIPE/ECONNRESET, as the case logs it.
  signal(SIGPIPE, SIG_IGN);
  if (argc == 2 && std::strcmp(argv[1], "list") == 0) {
    for (const auto& c : Cases()) std::printf("%s\n", c.name.c_str());
    return 0;
  }
  if (argc == 3 && std::strcmp(argv[1], "smcd-min") == 0) {
    for (const auto& c : Cases()) {
      if (c.name == argv[2]) return std::printf("%d\n", c.smcd_min) < 0;
    }
    return 2;
  }
  if (argc == 3 && std::strcmp(argv[1], "run") == 0) {
    for (const auto& c : Cases()) {
      if (c.name == argv[2]) return c.run();
    }
    std::fprintf(stderr, "no case %s\n", argv[2]);
    return 2;
  }
  std::fprintf(stderr, "usage: %s list | run NAME\n", argv[0]);
  return 2;
}
