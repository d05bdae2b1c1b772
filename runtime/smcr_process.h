// runtime/smcr_process.h: one process's SMC-R: the RDMA device (through
// libusmc-verbs.so, dlopen'ed: dev/verbs_module.cc), its link-group
// registry and the registry's progress thread. The interposer keeps one
// (preload/smcr.h).
//
//   auto p = SmcrProcess::Open(dir + "/libusmc-verbs.so", 0x0a000001, {});
//   if (p) opts.smcr = &(*p)->registry();
//   ...
//   (*p)->Terminate(500ms);   // process exit: DELETE_LINK on every group
#ifndef USMC_RUNTIME_SMCR_PROCESS_H_
#define USMC_RUNTIME_SMCR_PROCESS_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/status.h"
#include "runtime/publish.h"

namespace usmc::runtime {

class LgrRegistry;

struct SmcrProcessOptions {
  // Runs first on the progress thread.
  std::function<void()> on_thread_start;
  // Where link groups are published (usmc ss); their connections too
  // unless their owner publishes them (the interposer: SocketStatus::smcr).
  std::optional<StatusSink> status;
  bool publish_connections = true;
};

class SmcrProcess {
 public:
  // Loads the module (once per process: it stays loaded) and opens the
  // device whose RoCEv2 GID is in the subnet of `ipv4` (host order).
  // kUnavailable: no module or no device; kNotFound: no GID serves ipv4.
  static Result<std::unique_ptr<SmcrProcess>> Open(
      const std::string& module_path, uint32_t ipv4,
      SmcrProcessOptions options);
  ~SmcrProcess();
  SmcrProcess(const SmcrProcess&) = delete;
  SmcrProcess& operator=(const SmcrProcess&) = delete;

  LgrRegistry& registry();
  // DELETE_LINK (orderly) on every group, then waits up to `wait` for
  // those sends; stops the progress thread.
  void Terminate(std::chrono::milliseconds wait);

 private:
  struct Impl;
  explicit SmcrProcess(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_SMCR_PROCESS_H_
