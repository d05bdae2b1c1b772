#include "base/status.h"

#include <cerrno>
#include <cstring>

namespace usmc {

std::string_view ToString(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case StatusCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case StatusCode::kNotFound:
      return "NOT_FOUND";
    case StatusCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case StatusCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case StatusCode::kDataLoss:
      return "DATA_LOSS";
    case StatusCode::kInternal:
      return "INTERNAL";
    case StatusCode::kSystem:
      return "SYSTEM";
  }
  return "UNKNOWN";
}

std::ostream& operator<<(std::ostream& os, StatusCode code) {
  return os << ToString(code);
}

Status Status::FromErrno(int err, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  StatusCode code = StatusCode::kSystem;
  if (err == EPERM || err == EACCES) code = StatusCode::kPermissionDenied;
  if (err == ENOMEM || err == EMFILE || err == ENFILE)
    code = StatusCode::kResourceExhausted;
  return Status(code, std::move(msg), err);
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s(usmc::ToString(code_));
  s += ": ";
  s += message_;
  return s;
}

std::ostream& operator<<(std::ostream& os, const Status& s) {
  return os << s.ToString();
}

}  // namespace usmc
