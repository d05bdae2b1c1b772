// dev/unique_fd.h: an owning file descriptor (closes on destruction).
//
// Every fd the shm device creates or receives is wrapped at once, so no
// error path can leak one.
//
//   usmc::dev::UniqueFd fd(memfd_create("x", MFD_CLOEXEC));
//   if (!fd) return Status::FromErrno(errno, "memfd_create");
//   int raw = fd.get();
#ifndef USMC_DEV_UNIQUE_FD_H_
#define USMC_DEV_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

namespace usmc::dev {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
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
  int Release() { return std::exchange(fd_, -1); }
  // close() is not retried on EINTR: on Linux the fd is gone either way.
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace usmc::dev

#endif  // USMC_DEV_UNIQUE_FD_H_
