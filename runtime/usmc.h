/* runtime/usmc.h: the usmc library API for C (and any language with a C
 * FFI). A thin layer over usmc::runtime::SmcSocket (runtime/smc_socket.h).
 *
 * Upgrade a connected TCP socket once both ends agreed to try SMC (the TCP
 * option negotiation, negotiate/), then use the usmc_* calls instead of the
 * socket calls. A Decline is not an error: the socket then runs over TCP and
 * usmc_status() tells why. Calls return -1 and set errno like the socket
 * calls they mirror.
 *
 *   usmc_socket *s;
 *   if (usmc_upgrade(fd, USMC_ROLE_CLIENT, &s) != 0) { close(fd); ... }
 *   usmc_send(s, "hi", 2, 0);
 *   usmc_close(s);              // also closes fd
 */
#ifndef USMC_RUNTIME_USMC_H_
#define USMC_RUNTIME_USMC_H_

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct usmc_socket usmc_socket;

enum usmc_role { USMC_ROLE_CLIENT = 0, USMC_ROLE_SERVER = 1 };
enum usmc_mode {
  USMC_MODE_HANDSHAKE = 0,
  USMC_MODE_SMCD = 1,
  USMC_MODE_TCP = 2
};

struct usmc_status {
  int mode;                /* enum usmc_mode */
  uint32_t local_reason;   /* fallback reason code, 0 if none */
  uint32_t peer_reason;    /* the peer's Decline diagnosis, 0 if none */
  uint32_t local_dmb_size; /* bytes, CDC area included */
  uint32_t peer_dmb_size;
  uint64_t bytes_sent;
  uint64_t bytes_received;
  uint64_t wakeups_sent;
  uint64_t wakeups_received;
};

/* Runs the CLC handshake on connected TCP socket fd (blocking, bounded by
 * the CLC timeout). On success *out owns fd. Fails (-1, errno) only when
 * the connection is unusable. */
int usmc_upgrade(int fd, int role, usmc_socket** out);

ssize_t usmc_send(usmc_socket* s, const void* buf, size_t len, int flags);
ssize_t usmc_recv(usmc_socket* s, void* buf, size_t len, int flags);

/* poll(2) bits that hold now; usmc_wait blocks up to timeout_ms (-1:
 * forever) for one of events. */
short usmc_poll(usmc_socket* s, short events);
short usmc_wait(usmc_socket* s, short events, int timeout_ms);

/* The kernel object that becomes readable when the peer signals this
 * connection (its doorbell); -1 in TCP mode (poll the TCP fd then). */
int usmc_poll_fd(usmc_socket* s);

int usmc_set_nonblocking(usmc_socket* s, int on);
int usmc_readable(usmc_socket* s); /* FIONREAD */
int usmc_at_mark(usmc_socket* s);  /* SIOCATMARK */
int usmc_shutdown(usmc_socket* s, int how);
/* Close (usmc_close) or reset (usmc_abort) the connection, close the TCP
 * socket and free s. */
int usmc_close(usmc_socket* s);
void usmc_abort(usmc_socket* s);
int usmc_status(const usmc_socket* s, struct usmc_status* out);

#ifdef __cplusplus
}
#endif

#endif /* USMC_RUNTIME_USMC_H_ */
