// usmc: the command-line tool (run, setup, ss, stats, chk, bench, demo).
#include <CLI/CLI.hpp>
#include <cstdio>

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
  CLI::App app{
      "usmc: Shared Memory Communications (SMC-D/SMC-R) in user space"};
  app.require_subcommand(1);
  usmc::tools::AddDemoCommand(app);
  usmc::tools::AddSetupCommand(app);
  usmc::tools::AddBenchCommand(app);
  usmc::tools::AddSsCommand(app);
  usmc::tools::AddStatsCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const usmc::tools::Exit& e) {
    std::fflush(stdout);
    return e.code;
  }
  return 0;
}
