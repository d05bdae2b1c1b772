// dev/unique_fd.h: an owning file descriptor (closes on destruction).
//
// Every fd the shm device creates or receives is wrapped at once, so no
// error path can leak one. A held fd is marked as usmc's own
// (base/owned_fd.h): the app's close loops and close_range skip it.
//
//   usmc::dev::UniqueFd fd(memfd_create("x", MFD_CLOEXEC));
//   if (!fd) return Status::FromErrno(errno, "memfd_create");
//   int raw = fd.get();
#ifndef USMC_DEV_UNIQUE_FD_H_
#define USMC_DEV_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

#include "base/owned_fd.h"

namespace usmc::dev {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) { base::MarkOwnedFd(fd); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) Reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  // The caller owns the fd now (and closes it its own way).
  int Release() {
    base::DisownFd(fd_);
    return std::exchange(fd_, -1);
  }
  // close() is not retried on EINTR: on Linux the fd is gone either way.
  void Reset(int fd = -1) {
    if (fd_ >= 0) base::CloseOwnedFd(fd_);
    fd_ = fd;
    base::MarkOwnedFd(fd);
  }

 private:
  int fd_ = -1;
};

}  // namespace usmc::dev

#endif  // USMC_DEV_UNIQUE_FD_H_
