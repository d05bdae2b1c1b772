// tests/preload_probe_static.cc: the static program of the exec-static
// scenario (tests/preload_probe_data.cc). The loader never loads usmc into
// it, so the SMC socket it inherits must be dead, not a silent idle TCP
// socket. Prints what write and read did; exit 0 if the socket failed.
//
//   preload_probe_static FD
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  prctl(PR_SET_NAME, "probe-static", 0, 0, 0);
  signal(SIGPIPE, SIG_IGN);
  if (argc != 2) return 2;
  const int fd = std::atoi(argv[1]);
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
