/* negotiate/negotiate_abi.h: numbers shared by the eBPF program and user space.
 *
 * Plain C macros only (no types), so both the BPF object (built against the
 * kernel's vmlinux.h) and the C++ side can include it. An application socket
 * talks to the program through a private socket option level:
 *
 *   int one = 1;
 *   setsockopt(fd, USMC_SOL_NEGOTIATE, USMC_SO_OPTIN, &one, sizeof(one));
 *   ...connect() or listen()/accept()...
 *   int st; socklen_t len = sizeof(st);
 *   getsockopt(fd, USMC_SOL_NEGOTIATE, USMC_SO_STATUS, &st, &len);
 *
 * Without the cgroup hooks the kernel answers ENOPROTOOPT / EOPNOTSUPP.
 */
#ifndef USMC_NEGOTIATE_NEGOTIATE_ABI_H_
#define USMC_NEGOTIATE_NEGOTIATE_ABI_H_

/* Private level: ASCII "usmc". Far above every SOL_* the kernel knows, so a
 * socket without the hooks always gets ENOPROTOOPT, never a real option. */
#define USMC_SOL_NEGOTIATE 0x75736d63
#define USMC_SO_OPTIN 1  /* set, int: 1 = offer SMC on this socket */
#define USMC_SO_STATUS 2 /* get, int: one of USMC_ST_* */

/* The per-socket result, as USMC_SO_STATUS returns it. */
#define USMC_ST_NOT_OPTED_IN 0 /* the socket never opted in */
#define USMC_ST_PENDING                                                   \
  1                   /* opted in, handshake not finished (or a listener) \
                       */
#define USMC_ST_SMC 2 /* both SYN and SYN-ACK carried the option */
#define USMC_ST_PEER_NO_SMC 3 /* the peer did not offer (or did not echo) */
#define USMC_ST_TFO 4         /* TCP Fast Open socket: never SMC */
#define USMC_ST_SYN_COOKIE 5  /* the server answered with a SYN cookie */
#define USMC_ST_NO_ROOM 6     /* the option did not fit in the TCP header */

/* Counters: indices into the "usmc_counters" array map (u64 each). */
#define USMC_CTR_OPTIONS_WRITTEN 0 /* option stored into a SYN or SYN-ACK */
#define USMC_CTR_OFFERS_SEEN                                             \
  1                       /* SYN with the option at an opted-in listener \
                           */
#define USMC_CTR_ECHOES 2 /* SYN-ACK with the option at an opted-in client */
#define USMC_CTR_RESERVE_FAILURES 3 /* no room for the option in the header */
#define USMC_CTR_COOKIE_FALLBACKS \
  4                            /* opted-in connection made from a SYN cookie */
#define USMC_CTR_TFO_SKIPPED 5 /* opted-in socket that uses TCP Fast Open */
#define USMC_CTR_SMC_ACTIVE 6  /* client connections that agreed on SMC */
#define USMC_CTR_SMC_PASSIVE 7 /* server connections that agreed on SMC */
#define USMC_CTR_COUNT 8

#endif /* USMC_NEGOTIATE_NEGOTIATE_ABI_H_ */
