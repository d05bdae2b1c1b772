/* A C program using runtime/usmc.h: a forked client and this server upgrade
 * one TCP loopback connection, check it is SMC-D and move bytes. Exit 0 on
 * success. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/usmc.h"

static int fail(const char* what) {
  fprintf(stderr, "c_api_test: %s\n", what);
  return 1;
}

int main(void) {
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(lfd, (struct sockaddr*)&a, sizeof a) || listen(lfd, 1) ||
      getsockname(lfd, (struct sockaddr*)&a, &len))
    return fail("listen");
  pid_t pid = fork();
  if (pid == 0) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    usmc_socket* s;
    if (connect(fd, (struct sockaddr*)&a, sizeof a) ||
        usmc_upgrade(fd, USMC_ROLE_CLIENT, &s))
      _exit(2);
    struct usmc_status st;
    if (usmc_status(s, &st) || st.mode != USMC_MODE_SMCD) _exit(3);
    if (usmc_send(s, "from C", 6, 0) != 6) _exit(4);
    _exit(usmc_close(s) == 0 ? 0 : 5);
  }
  int fd = accept(lfd, NULL, NULL);
  usmc_socket* s;
  if (fd < 0 || usmc_upgrade(fd, USMC_ROLE_SERVER, &s)) return fail("upgrade");
  struct usmc_status st;
  if (usmc_status(s, &st) || st.mode != USMC_MODE_SMCD)
    return fail("not SMC-D");
  char buf[8] = {0};
  if (usmc_recv(s, buf, 6, MSG_WAITALL) != 6 || memcmp(buf, "from C", 6))
    return fail("recv");
  if (usmc_recv(s, buf, sizeof buf, 0) != 0) return fail("EOF");
  if (usmc_status(s, &st) || st.bytes_received != 6) return fail("counters");
  usmc_close(s);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return fail("client");
  printf("c_api_test: SMC-D upgrade, 6 bytes, EOF: ok\n");
  return 0;
}
