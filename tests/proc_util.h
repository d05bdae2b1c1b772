// tests/proc_util.h: a child process (and its process group) with its
// stdout and stderr captured, for the black-box drivers (preload_test,
// conformance_test). A process still running at its deadline is killed with
// its whole group; if gdb is installed, the report names where it hung.
//
//   Proc p({"/bin/prog", "arg"}, {{"LD_PRELOAD", lib}});
//   Exit e = p.Wait(20000);
//   ASSERT_TRUE(e.ok()) << e;   // exit code, stdout and stderr
#ifndef USMC_TESTS_PROC_UTIL_H_
#define USMC_TESTS_PROC_UTIL_H_

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "base/loaded_library.h"

namespace usmc::test_proc {

struct Exit {
  int code = -1;  // exit code, or -1 (signal / timeout)
  bool timed_out = false;
  std::string out, err;
  bool ok() const { return code == 0 && !timed_out; }
};
std::ostream& operator<<(std::ostream& os, const Exit& e);

// Where the processes of group `pgid` hang (gdb, if installed).
std::string StacksOfGroup(pid_t pgid);

// Environment overrides. The child gets ours without LD_PRELOAD and USMC_*
// (the caller names those it wants), plus these.
using EnvMap = std::map<std::string, std::string>;

constexpr int kDefaultTimeoutMs = 20000;  // a hang becomes a failure

// Leak checks off in an ASan build (LeakSanitizer at exit needs /proc,
// which a chrooted child does not have); nothing otherwise.
inline void AddAsanOptions(EnvMap& env) {
  static const std::string asan = LoadedLibrary("libasan.so");
  if (!asan.empty()) env["ASAN_OPTIONS"] = "detect_leaks=0";
}

// LD_PRELOAD of a process under usmc: `lib` (libusmc-preload.so), after the
// ASan runtime in an ASan build (the sanitizer must come first).
inline void AddPreload(EnvMap& env, const std::string& lib) {
  static const std::string asan = LoadedLibrary("libasan.so");
  env["LD_PRELOAD"] = asan.empty() ? lib : asan + " " + lib;
  AddAsanOptions(env);
}

class Proc {
 public:
  Proc(const std::vector<std::string>& args, const EnvMap& env);
  ~Proc();
  Proc(const Proc&) = delete;
  Proc& operator=(const Proc&) = delete;

  // The next line on stdout (without '\n'); nullopt on EOF or timeout.
  std::optional<std::string> ReadLine(int timeout_ms);
  // Waits for the process to exit (killing its group at the deadline).
  Exit Wait(int timeout_ms = kDefaultTimeoutMs);

 private:
  using Clock = std::chrono::steady_clock;
  static int MsLeft(Clock::time_point deadline);
  // Reads what is there (waiting up to timeout_ms); false if both closed.
  bool Pump(int timeout_ms);

  pid_t pid_ = -1;
  bool reaped_ = false;
  int out_fd_ = -1, err_fd_ = -1;
  size_t line_pos_ = 0;
  Exit exit_;
};

}  // namespace usmc::test_proc

#endif  // USMC_TESTS_PROC_UTIL_H_
