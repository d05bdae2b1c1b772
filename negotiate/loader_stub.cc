// negotiate/loader_stub.cc: the loader in a build without the eBPF program
// (USMC_BPF=OFF or its tools missing): every operation says so.
#include "negotiate/loader.h"

namespace usmc::negotiate {
namespace {
Status NotBuilt() {
  return Status(StatusCode::kUnavailable,
                "usmc was built without the eBPF negotiation program "
                "(USMC_BPF=OFF, or clang/bpftool/libbpf/kernel BTF missing at "
                "build time); every connection stays TCP");
}
}  // namespace

Result<SetupReport> Setup(const SetupOptions&) { return NotBuilt(); }
Result<AttachStatus> QueryStatus(const std::string&) { return NotBuilt(); }
Status Remove(const std::string&) { return NotBuilt(); }

}  // namespace usmc::negotiate
