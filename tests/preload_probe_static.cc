// tests/preload_probe_static.cc: the static program of the exec-static
// scenario (tests/preload_probe_data.cc). The loader never loads usmc into
// it, so the SMC socket it inherits must be dead, not a silent idle TCP
// socket. Prints what write and read did; exit 0 if the socket failed.
//
// The pass-static scenario (tests/preload_probe_pass.cc) gives it the
// socket over a Unix socket instead: it says it is ready (one byte), then
// receives the fd with SCM_RIGHTS.
//
//   preload_probe_static FD
//   preload_probe_static recv UNIX_FD
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

int ReceiveFd(int unix_fd) {
  if (write(unix_fd, "r", 1) != 1) return -1;
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof ctl;
  if (recvmsg(unix_fd, &mh, 0) != 1) return -1;
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  prctl(PR_SET_NAME, "probe-static", 0, 0, 0);
  signal(SIGPIPE, SIG_IGN);
  int fd;
  if (argc == 3 && std::strcmp(argv[1], "recv") == 0) {
    fd = ReceiveFd(std::atoi(argv[2]));
    if (fd < 0) return 3;
  } else if (argc == 2) {
    fd = std::atoi(argv[1]);
  } else {
    return 2;
  }
  ssize_t w = write(fd, "plain bytes", 11);
  int werr = errno;
  struct pollfd p = {fd, POLLIN, 0};
  poll(&p, 1, 5000);
  char c;
  ssize_t r = read(fd, &c, 1);
  int rerr = errno;
  std::printf("write=%zd errno=%d read=%zd errno=%d\n", w, w < 0 ? werr : 0, r,
              r < 0 ? rerr : 0);
  return (w < 0 || r < 0) ? 0 : 1;
}
