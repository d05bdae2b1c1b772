// runtime/smcr_process.h: one process's SMC-R: the RDMA device (through
// libusmc-verbs.so, dlopen'ed: dev/verbs_module.cc), its link-group
// registry and the registry's progress thread. The interposer keeps one
// (preload/smcr.h).
//
//   auto a = SmcrLocalAddress(local_sockaddr);   // ::ffff:10.0.0.1, fd00::1
//   auto p = SmcrProcess::Open(dir + "/libusmc-verbs.so", *a, {});
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
#include "wire/llc.h"

struct sockaddr_storage;

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

// The local address of a TCP socket as SMC-R serves it, the 16 bytes
// SmcrProcess::Open takes (and dev/gid_choice.h chooses a GID for): IPv4
// as ::ffff:a.b.c.d (an IPv4-mapped address of a dual-stack socket is that
// already), IPv6 as itself (usmc <-> usmc only: the Linux kernel has no
// SMC-Rv2 over IPv6 GIDs); all zero for a wildcard (0.0.0.0, ::,
// ::ffff:0.0.0.0). nullopt for what SMC-R never serves: loopback (SMC-D's),
// link-local and multicast IPv6 (a link-local address means nothing without
// its interface), other families.
std::optional<wire::Gid> SmcrLocalAddress(const sockaddr_storage& ss);
// Whether such an address is IPv4 (::ffff:a.b.c.d).
bool SmcrAddressIsIpv4(const wire::Gid& a);

class SmcrProcess {
 public:
  // Loads the module (once per process: it stays loaded) and opens the
  // device with the RoCEv2 GID for `local_address` (SmcrLocalAddress;
  // dev/gid_choice.h): for IPv4 one in its subnet, for IPv6 the GID equal to
  // it (or of its prefix); all zero: the first IPv4-mapped GID.
  // kUnavailable: no module or no device; kNotFound: no GID serves it.
  static Result<std::unique_ptr<SmcrProcess>> Open(
      const std::string& module_path, const wire::Gid& local_address,
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
