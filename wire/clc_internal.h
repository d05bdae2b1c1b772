// wire/clc_internal.h: helpers shared by the CLC codec files (not public API).
//
// Framing checks common to every message type (header, exact size, trailer),
// byte-array copies, and the First Contact Extension codec used by both the
// SMC-R and SMC-D Accept/Confirm.
//
//   WireResult<MessageFrame> f = CheckFrame(bytes, ClcType::kDecline);
#ifndef USMC_WIRE_CLC_INTERNAL_H_
#define USMC_WIRE_CLC_INTERNAL_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "base/endian.h"
#include "wire/clc.h"
#include "wire/error.h"

namespace usmc::wire::clc_internal {

// Header byte 7 bit layout: version 7-4, typev2 3-2, typev1 1-0.
inline constexpr uint8_t kFirstContactBit = 0x08;  // also Decline out-of-sync
inline constexpr uint8_t kHeaderBit2 = 0x04;

template <size_t N>
void CopyIn(const std::byte* p, std::array<uint8_t, N>& a) {
  std::memcpy(a.data(), p, N);
}

template <size_t N>
void CopyOut(std::byte* p, const std::array<uint8_t, N>& a) {
  std::memcpy(p, a.data(), N);
}

// Writes eyecatcher, type, length and byte 7.
void WriteHeader(std::byte* out, ClcEyecatcher eyecatcher, ClcType type,
                 size_t length, uint8_t byte7);
void WriteEyecatcher(std::byte* p, ClcEyecatcher e);

// A message whose header, exact size and trailer have been checked.
struct MessageFrame {
  ClcHeader header;
  ClcEyecatcher trailer = ClcEyecatcher::kSmcr;
  uint8_t byte7 = 0;
};

// Checks the header (DecodeClcHeader), that bytes.size() equals the stated
// length, that the type is `expected` (or either Accept/Confirm when
// expected is kAccept and accept_or_confirm), and the trailer eyecatcher.
WireResult<MessageFrame> CheckFrame(std::span<const std::byte> bytes,
                                    ClcType expected,
                                    bool accept_or_confirm = false);

// Validates the common encode inputs: version fits 4 bits and is >= 1, and
// `out` holds `length` bytes.
WireResult<size_t> CheckEncode(uint8_t version, size_t length,
                               std::span<std::byte> out);

// First Contact Extension (PROTOCOL.md §2.5).
size_t FceLen(const ClcFirstContactExt& f);
void DecodeFce(const std::byte* p, bool long_form, ClcFirstContactExt& f);
WireResult<size_t> CheckFce(const ClcFirstContactExt& f);
void EncodeFce(const ClcFirstContactExt& f, std::byte* p);

}  // namespace usmc::wire::clc_internal

#endif  // USMC_WIRE_CLC_INTERNAL_H_
