// dev/verbs_module.cc: libusmc-verbs.so, dev/verbs (libibverbs) as a
// module the interposer loads with dlopen only when the host has an RDMA
// device (runtime/smcr_process.cc, for preload/smcr.cc). So libusmc-preload.so
// itself adds no library to a program (preload/CMakeLists.txt), and a host
// without RDMA never loads libibverbs at all.
#include <cstdint>
#include <memory>

#include "dev/verbs.h"

extern "C" __attribute__((visibility("default"))) usmc::dev::rdma::Context*
usmc_verbs_open(uint32_t ipv4_host_order, int* code) {
  usmc::Result<std::unique_ptr<usmc::dev::rdma::Context>> c =
      usmc::dev::rdma::VerbsContext::Open(ipv4_host_order);
  if (!c.ok()) {
    if (code != nullptr) *code = static_cast<int>(c.status().code());
    return nullptr;
  }
  if (code != nullptr) *code = 0;
  return c->release();
}
