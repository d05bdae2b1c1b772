// usmc: the command-line tool (run, setup, ss, stats, chk, bench, demo).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>

#include "tools/commands.h"

namespace usmc::tools {

namespace {
struct Exit {
  int code;
};
}  // namespace

void ExitWith(int code) { throw Exit{code}; }

}  // namespace usmc::tools

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "run") == 0) {
    return usmc::tools::RunMain(argc - 1, argv + 1);
  }
  CLI::App app{
      "usmc: Shared Memory Communications (SMC-D/SMC-R) in user space"};
  app.require_subcommand(1);
  usmc::tools::AddRunCommand(app);
  usmc::tools::AddDemoCommand(app);
  usmc::tools::AddSetupCommand(app);
  usmc::tools::AddBenchCommand(app);
  usmc::tools::AddSsCommand(app);
  usmc::tools::AddStatsCommand(app);
  usmc::tools::AddChkCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Help prints and exits 0; every usage error exits 2, as `run` and
    // `setup` do (not CLI11's own codes, 105-109).
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const usmc::tools::Exit& e) {
    std::fflush(stdout);
    return e.code;
  }
  return 0;
}
