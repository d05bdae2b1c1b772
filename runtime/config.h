// runtime/config.h: every tuning value of a usmc process, read once.
//
// The environment is read in one place, once per process (ProcessConfig),
// validated, and handed down: the interposer builds its socket Options from
// it, and the runtime sets the device's process-wide values (the DMB budget,
// the doorbell spin) from it, so dev/ reads no environment itself. A bad
// value is one line on stderr naming the variable and what is allowed, and
// the default is used: a typo in a tuning knob must not stop the app.
// Which sockets use SMC at all is the policy's (preload/policy.h,
// docs/config.md), read by the interposer.
//
//   const runtime::Config& c = runtime::ProcessConfig();
//   opts.clc_timeout = c.clc_timeout;
#ifndef USMC_RUNTIME_CONFIG_H_
#define USMC_RUNTIME_CONFIG_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace usmc::runtime {

// The interposer's CLC timeout (USMC_CLC_TIMEOUT_MS's default). Shorter
// than the kernel's CLC_WAIT_TIME (engine::kClcTimeout, 6 s) on purpose: it
// is the longest a peer that echoed the SMC TCP option but never speaks CLC
// holds the app's blocking connect() or first read before the connection
// is plain TCP. A usmc or kernel peer answers within a few round trips.
inline constexpr std::chrono::milliseconds kInterposerClcTimeout{2000};

// The DMB size the interposer offers when USMC_DMB_SIZE is unset and the
// process is past its roomy budget (runtime::Options::roomy_*).
inline constexpr uint32_t kDefaultDmbSize = 256 * 1024;

// Memory that follows use (issue 21): with USMC_DMB_SIZE unset, the DMB a
// new connection offers shrinks as the process holds more DMB bytes
// (`held`, dev::DmbBudget::Process().used()): kDefaultDmbSize while it
// holds less than 64 MiB (its first ~250 connections, which stream best
// with room), 64 KiB up to 128 MiB (~1,000 more), then SMC-D's smallest,
// 16 KiB. An SMC-D DMB keeps its size for its connection's life, so a
// process with thousands held (a server's idle keep-alive clients) gives
// each new one what an idle or request/response connection needs; 10,000
// then fit in ~300 MiB of (mostly untouched) DMB files.
uint32_t HeldDmbSize(uint64_t held);

// USMC_DMB_BUDGET's default: an eighth of the machine's RAM, at least
// 256 MiB and at most 4 GiB. A DMB's pages are only allocated where bytes
// were written, so the budget caps what the process could come to hold,
// not what it holds; 10,000 connections need ~300 MiB of it (HeldDmbSize).
uint64_t DefaultDmbBudgetFor(uint64_t ram_bytes);
uint64_t DefaultDmbBudget();  // for this machine (sysinfo)

struct Config {
  // USMC_CLC_TIMEOUT_MS, 10..60000.
  std::chrono::milliseconds clc_timeout = kInterposerClcTimeout;
  // USMC_DMB_SIZE, 16384..1048576 bytes; unset: kDefaultDmbSize with the
  // roomy first DMBs (preload/conn.cc).
  std::optional<uint32_t> dmb_size;
  // USMC_DMB_BUDGET: bytes, optional K/M/G suffix (dev::ParseByteSize);
  // unset: DefaultDmbBudget().
  uint64_t dmb_budget;
  // USMC_SPIN_US, 0..100000.
  uint32_t spin_us;
  // USMC_EPOLL_SCAN, 0 or 1.
  bool epoll_scan = true;
  // USMC_PROGRESS_THREAD, 0 or 1.
  bool progress_thread = true;
  // USMC_SHM_ARENA, 0 or 1: DMBs in per-peer-process arenas
  // (dev/shm_device.h); 0 gives each DMB its own memfd.
  bool shm_arena = true;
  // USMC_SMCR, 0 or 1: offer and accept SMC-R where an RDMA device with a
  // RoCEv2 GID serves the connection's local address (preload/smcr.h).
  bool smcr = true;

  Config();
};

// One tuning variable: its name, default and allowed values as text (the
// error messages and docs/config.md say the same).
struct ConfigVar {
  const char* name;
  const char* default_text;
  const char* allowed;
};
std::span<const ConfigVar> ConfigVars();

// Reads every variable through `getenv` (unset or empty: the default).
// Each bad value adds one line to `errors` ("USMC_SPIN_US=-1: ... allowed:
// 0..100000; using 20") and leaves that field at its default.
using EnvLookup = std::function<const char*(const char*)>;
Config LoadConfig(const EnvLookup& getenv, std::vector<std::string>* errors);

// The process's Config: loaded from the environment on the first call
// (errors to stderr, "usmc: " first), which also sets the device's
// process-wide values (dev::SetProcessDmbBudget, dev::SetDefaultSpinUs).
// The interposer calls it when it is loaded (nginx clears its workers'
// environment before they connect); the runtime before its first socket.
const Config& ProcessConfig();

// Prints "usmc: LINE" on stderr once per `usmc run`: a wrapper script's
// every exec'd image loads usmc and would repeat the same complaint (dozens
// of identical lines). The hashes of the lines said are kept in the
// environment (USMC_SAID), which the images started later inherit. Call it
// while the process has one thread (it sets the environment): the library's
// constructor.
void SayOnce(std::string_view line);

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_CONFIG_H_
