// libFuzzer target for the CLC decoders: DecodeClc and the typed decoders
// must never crash on hostile bytes, and whatever decodes must re-encode to
// exactly the input bytes (no field is dropped or reinterpreted).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "wire/clc.h"

using namespace usmc::wire;

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

template <typename T>
void ReEncodeEquals(const T& m, std::span<const std::byte> in) {
  std::byte out[kClcMaxMessageLen];
  WireResult<size_t> n = EncodeClc(ClcMessage(m), out);
  Check(n.ok());
  Check(*n == in.size());
  Check(std::memcmp(out, in.data(), in.size()) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  WireResult<ClcMessage> m = DecodeClc(in);
  if (m) {
    std::visit([&](const auto& msg) { ReEncodeEquals(msg, in); }, *m);
    WireResult<ClcMessage> again = DecodeClc(in);
    Check(again.ok() && *again == *m);
    Check(!DescribeClc(*m).empty());
  }
  // The typed decoders agree with the dispatcher.
  WireResult<ClcProposal> p = DecodeClcProposal(in);
  if (p) Check(m && std::get<ClcProposal>(*m) == *p);
  WireResult<ClcSmcrAccept> r = DecodeClcSmcrAccept(in);
  if (r) Check(m && std::get<ClcSmcrAccept>(*m) == *r);
  WireResult<ClcSmcdAccept> d = DecodeClcSmcdAccept(in);
  if (d) Check(m && std::get<ClcSmcdAccept>(*m) == *d);
  WireResult<ClcDecline> c = DecodeClcDecline(in);
  if (c) Check(m && std::get<ClcDecline>(*m) == *c);
  WireResult<ClcHeader> h = DecodeClcHeader(in);
  if (m) Check(h.ok() && h->length == size);
  return 0;
}
