// dev/verbs_module.cc: libusmc-verbs.so, dev/verbs (libibverbs) as a
// module the interposer loads with dlopen only when the host has an RDMA
// device (runtime/smcr_process.cc, for preload/smcr.cc). So libusmc-preload.so
// itself adds no library to a program (preload/CMakeLists.txt), and a host
// without RDMA never loads libibverbs at all.
#include <cstdint>
#include <cstring>
#include <memory>

#include "dev/verbs.h"

// `address`: 16 bytes, the TCP connection's local address, IPv4 as
// ::ffff:a.b.c.d, all zero for any (VerbsContext::Open(const Gid&)).
extern "C" __attribute__((visibility("default"))) usmc::dev::rdma::Context*
usmc_verbs_open_addr(const uint8_t* address, int* code) {
  usmc::dev::rdma::Gid a{};
  std::memcpy(a.data(), address, a.size());
  usmc::Result<std::unique_ptr<usmc::dev::rdma::Context>> c =
      usmc::dev::rdma::VerbsContext::Open(a);
  if (!c.ok()) {
    if (code != nullptr) *code = static_cast<int>(c.status().code());
    return nullptr;
  }
  if (code != nullptr) *code = 0;
  return c->release();
}
