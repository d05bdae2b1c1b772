// base/status.h: one error type for usmc above the wire layer.
//
// A Status is a small canonical code plus a message. A peer's "no" (a CLC
// Decline, a fallback to TCP) is data carried in actions and counters, not a
// Status. Result<T> holds either a value or a non-OK Status.
//
//   usmc::Result<int> r = OpenThing();
//   if (!r.ok()) return r.status();
//   USMC_RETURN_IF_ERROR(DoOther());
#ifndef USMC_BASE_STATUS_H_
#define USMC_BASE_STATUS_H_

#include <cassert>
#include <cerrno>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace usmc {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the caller passed something wrong
  kFailedPrecondition,  // wrong state for this call
  kNotFound,
  kPermissionDenied,   // missing privilege or capability
  kUnavailable,        // the system lacks a facility (no bpffs, no device)
  kResourceExhausted,  // memory budget, fd limits
  kDataLoss,           // a peer broke the protocol
  kInternal,
  kSystem,  // an errno from a system call; see Status::sys_errno()
};

std::string_view ToString(StatusCode code);
std::ostream& operator<<(std::ostream& os, StatusCode code);

class [[nodiscard]] Status final {
 public:
  Status() = default;
  Status(StatusCode code, std::string message, int sys_errno = 0)
      : code_(code), message_(std::move(message)), errno_(sys_errno) {}

  // A Status for a failed system call: keeps errno and says which call.
  static Status FromErrno(int err, std::string_view what);

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  int sys_errno() const { return errno_; }
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  int errno_ = 0;
};

std::ostream& operator<<(std::ostream& os, const Status& s);

inline Status OkStatus() { return Status(); }

// Whether `s` is a system call that found the fd table full (EMFILE, the
// process; ENFILE, the system): a fallback names that cause (NOFD), not
// memory.
inline bool OutOfFds(const Status& s) {
  return s.sys_errno() == EMFILE || s.sys_errno() == ENFILE;
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok());
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace usmc

#define USMC_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::usmc::Status usmc_status_ = (expr);        \
    if (!usmc_status_.ok()) return usmc_status_; \
  } while (0)

#endif  // USMC_BASE_STATUS_H_
