#include "wire/error.h"

namespace usmc::wire {

std::string_view ToString(WireErrc code) {
  switch (code) {
    case WireErrc::kTruncated:
      return "truncated";
    case WireErrc::kBadEyecatcher:
      return "bad eyecatcher";
    case WireErrc::kBadTrailer:
      return "bad trailer";
    case WireErrc::kBadType:
      return "bad type";
    case WireErrc::kBadVersion:
      return "bad version";
    case WireErrc::kBadLength:
      return "bad length";
    case WireErrc::kBadCount:
      return "bad count";
    case WireErrc::kBadOffset:
      return "bad offset";
    case WireErrc::kBadValue:
      return "bad value";
    case WireErrc::kBufferTooSmall:
      return "buffer too small";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, WireErrc code) {
  return os << ToString(code);
}

std::string WireError::ToString() const {
  std::string s(wire::ToString(code));
  s += " in ";
  s += field;
  return s;
}

std::ostream& operator<<(std::ostream& os, const WireError& e) {
  return os << e.ToString();
}

}  // namespace usmc::wire
