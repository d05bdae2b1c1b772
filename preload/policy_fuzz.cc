// preload/policy_fuzz.cc: ParsePolicyText on arbitrary bytes. When a parse
// succeeds:
//   1. the canonical text (Policy::ToString) parses again, to the same
//      canonical rules (a fixed point);
//   2. both policies give the same decision for a few queries built from the
//      input (so matching runs on every parsed rule too).
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "preload/policy.h"

using usmc::preload::Endpoint;
using usmc::preload::IpAddress;
using usmc::preload::Policy;
using usmc::preload::Query;
using usmc::preload::Role;

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

// Queries taken from the first bytes of the input, so the fuzzer can steer
// addresses and ports into the rules' ranges.
Query MakeQuery(const uint8_t* data, size_t size, int i) {
  std::array<uint8_t, 16> b{};
  for (size_t k = 0; k < 16 && k < size; ++k) b[k] = data[(k + i) % size];
  Query q;
  q.role = (i & 1) ? Role::kServer : Role::kClient;
  IpAddress a =
      (i & 2) ? IpAddress::V6(b) : IpAddress::V4({b[0], b[1], b[2], b[3]});
  uint16_t port = static_cast<uint16_t>(b[4] << 8 | b[5]);
  q.local = Endpoint{a, port};
  q.remote = Endpoint{a, port};
  q.exe_name = std::string_view(reinterpret_cast<const char*>(data),
                                size < 8 ? size : 8);
  return q;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  usmc::Result<Policy> p = usmc::preload::ParsePolicyText(text, "fuzz");
  if (!p.ok()) {
    // Every error names the origin and line.
    Check(p.status().message().rfind("fuzz:", 0) == 0);
    return 0;
  }
  std::string canon = p->ToString();
  usmc::Result<Policy> again = usmc::preload::ParsePolicyText(canon, "c");
  Check(again.ok());
  Check(again->rules().size() == p->rules().size());
  for (size_t i = 0; i < p->rules().size(); ++i) {
    Check(again->rules()[i].ToString() == p->rules()[i].ToString());
  }
  for (int i = 0; i < 4 && size > 0; ++i) {
    Query q = MakeQuery(data, size, i);
    Check(p->Allows(q).allow == again->Allows(q).allow);
    Check(p->Allows(q).rule == again->Allows(q).rule);
  }
  return 0;
}
