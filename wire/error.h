// wire/error.h: the typed error every wire decoder and encoder returns.
//
// A WireError names the rule that failed and the field it failed on. Field
// names are string literals, so building an error never allocates.
//
//   if (len != kDeclineV1Len) return WireError{WireErrc::kBadLength,
//   "clc.length"};
#ifndef USMC_WIRE_ERROR_H_
#define USMC_WIRE_ERROR_H_

#include <cstddef>
#include <ostream>
#include <string>
#include <string_view>

#include "base/expected.h"

namespace usmc::wire {

enum class WireErrc {
  kTruncated,       // fewer bytes than the field or the stated length needs
  kBadEyecatcher,   // header eyecatcher is neither SMCR nor SMCD
  kBadTrailer,      // trailer eyecatcher is neither SMCR nor SMCD
  kBadType,         // message type unknown or not allowed here
  kBadVersion,      // version unknown or inconsistent with the layout
  kBadLength,       // a length field disagrees with the layout
  kBadCount,        // a count exceeds what the protocol allows
  kBadOffset,       // an offset points outside or inside a fixed part
  kBadValue,        // a field holds a value the protocol forbids
  kBufferTooSmall,  // encode: the output buffer cannot hold the message
};

std::string_view ToString(WireErrc code);
std::ostream& operator<<(std::ostream& os, WireErrc code);

struct WireError {
  WireErrc code;
  const char*
      field;  // a string literal such as "clc.proposal.ipv6_prefix_count"

  bool operator==(const WireError& other) const {
    return code == other.code && std::string_view(field) == other.field;
  }
  std::string ToString() const;
};

std::ostream& operator<<(std::ostream& os, const WireError& e);

template <typename T>
using WireResult = Expected<T, WireError>;

}  // namespace usmc::wire

#endif  // USMC_WIRE_ERROR_H_
