// tools/commands.h: the subcommands of the usmc CLI. Each lives in its own
// cmd_NAME.cc and registers itself on the root CLI::App.
#ifndef USMC_TOOLS_COMMANDS_H_
#define USMC_TOOLS_COMMANDS_H_

#include <CLI/CLI.hpp>

namespace usmc::tools {

// Each Add*Command adds one subcommand. The callback sets the process exit
// code through ExitWith(): CLI11 callbacks have no return value.
void AddRunCommand(CLI::App& app);
// `usmc run ...` bypasses CLI11 (argv[0] is "run"); returns the exit code
// if the program could not be started.
int RunMain(int argc, char** argv);
void AddDemoCommand(CLI::App& app);
void AddSetupCommand(CLI::App& app);
void AddBenchCommand(CLI::App& app);
void AddSsCommand(CLI::App& app);
void AddStatsCommand(CLI::App& app);
void AddChkCommand(CLI::App& app);

// Ends the current subcommand with this exit code (0 = success).
[[noreturn]] void ExitWith(int code);

}  // namespace usmc::tools

#endif  // USMC_TOOLS_COMMANDS_H_
