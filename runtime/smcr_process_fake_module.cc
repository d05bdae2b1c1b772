// runtime/smcr_process_fake_module.cc: a stand-in for libusmc-verbs.so
// (dev/verbs_module.cc) for smcr_process_test.cc: it opens nothing and
// records the address it was asked to serve.
#include <cstdint>
#include <cstring>

#include "base/status.h"

namespace {
uint8_t g_last[16];
}  // namespace

extern "C" __attribute__((visibility("default"))) void* usmc_verbs_open_addr(
    const uint8_t* address, int* code) {
  std::memcpy(g_last, address, sizeof g_last);
  *code = static_cast<int>(usmc::StatusCode::kNotFound);
  return nullptr;
}

extern "C" __attribute__((visibility("default"))) const uint8_t*
fake_last_address() {
  return g_last;
}
