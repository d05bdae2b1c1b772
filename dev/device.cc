#include "dev/device.h"

namespace usmc::dev {

std::string_view ToString(WaitResult r) {
  switch (r) {
    case WaitResult::kReady:
      return "READY";
    case WaitResult::kTimedOut:
      return "TIMED_OUT";
    case WaitResult::kPeerGone:
      return "PEER_GONE";
    case WaitResult::kExtraFdReady:
      return "EXTRA_FD_READY";
    case WaitResult::kInterrupted:
      return "INTERRUPTED";
  }
  return "?";
}
std::ostream& operator<<(std::ostream& os, WaitResult r) {
  return os << ToString(r);
}

}  // namespace usmc::dev
