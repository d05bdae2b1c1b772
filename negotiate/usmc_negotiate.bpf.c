/* negotiate/usmc_negotiate.bpf.c: the SMC capability signal on the TCP
 * handshake (RFC 7609: option kind 254, length 6, ExID 0xE2D4C3D9).
 *
 * Policy only: which sockets offer SMC (opted in through a private socket
 * option), when the option goes on a SYN or SYN-ACK, and what each end
 * concluded. Loading, pinning and reading counters live in user space
 * (negotiate/loader.cc). The callback plan follows NEGOTIATION.md:
 *
 *   setsockopt(OPTIN) ......... cgroup/setsockopt: mark the socket (sk_storage)
 *   connect() / listen() ...... TCP_CONNECT_CB / TCP_LISTEN_CB: turn on the
 *                               header-option callbacks (+ TCP_SAVE_SYN)
 *   SYN / SYN-ACK ............. HDR_OPT_LEN_CB + WRITE_HDR_OPT_CB
 *   established ............... ACTIVE/PASSIVE_ESTABLISHED_CB: decide, then
 *                               turn the header callbacks off (no per-packet
 *                               cost from then on)
 *   getsockopt(STATUS) ........ cgroup/getsockopt: report the decision
 */
/* vmlinux.h must come before the libbpf headers. */
/* clang-format off */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
/* clang-format on */

#include "negotiate/negotiate_abi.h"

/* uapi macros that vmlinux.h (types only) does not carry. */
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define SOL_TCP 6
#define TCP_FASTOPEN 23
#define TCP_SAVE_SYN 27
#define TCP_FASTOPEN_CONNECT 30
#define ENOENT 2
#define ENOMEM 12
#define EINVAL 22
#define ENOSPC 28
#define EEXIST 17
#define ENOPROTOOPT 92
#define EISCONN 106
#define TCPHDR_SYN 0x02
#define TCPHDR_ACK 0x10
#define TCPOPT_FASTOPEN 34
#define TCPOPT_EXP 254

#define SMC_OPT_LEN 6

/* Several usmc programs can run for one socket: `usmc setup` on the cgroup2
 * root and another one lower down (the tests' private cgroups, a
 * `usmc setup --cgroup`). Cgroup links are BPF_F_ALLOW_MULTI, and the kernel
 * runs the programs of the socket's own cgroup first, then its ancestors'.
 * The nearest usmc program answers for the socket; the ones above defer:
 *   sock_ops     the first one stamps ctx->reply when done (unused by the
 *                kernel for the callbacks handled here; it aliases args[0],
 *                which for them is 0..2, never the stamp)
 *   setsockopt   the first one took the option: ctx->optlen is -1
 *   getsockopt   the first one answered: ctx->retval is 0
 * Otherwise two programs would both reserve and write the option and both
 * answer the status from their own socket storage. */
#define USMC_HANDLED 0x75736d63 /* "usmc" */

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Per-socket state. Cloned from a listener into its accepted sockets. */
enum {
  kFlagOptIn = 1, /* the application asked for SMC */
  kFlagTfo = 2,   /* the socket uses TCP Fast Open: never SMC */
  kFlagSent = 4,  /* our SYN carried the option */
};

struct usmc_sk_state {
  __u32 flags;
  __u32 status; /* USMC_ST_* */
};

struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
  __type(key, int);
  __type(value, struct usmc_sk_state);
} usmc_sk SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, USMC_CTR_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} usmc_counters SEC(".maps");

/* Connections whose SYN-ACK had no room for the echo. The SYN-ACK callbacks
 * run on a request sock (no sk_storage), so the server remembers the rare
 * failure by 4-tuple until PASSIVE_ESTABLISHED. */
struct usmc_conn_key {
  __u32 local[4];
  __u32 remote[4];
  __u32 local_port;
  __u32 remote_port;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 1024);
  __type(key, struct usmc_conn_key);
  __type(value, __u8);
} usmc_noecho SEC(".maps");

static __always_inline void Count(__u32 index) {
  __u64* value = bpf_map_lookup_elem(&usmc_counters, &index);
  if (value) __sync_fetch_and_add(value, 1);
}

static __always_inline struct usmc_sk_state* State(struct bpf_sock* sk,
                                                   __u64 flags) {
  if (!sk) return 0;
  return bpf_sk_storage_get(&usmc_sk, sk, 0, flags);
}

/* Does the SYN (flags = BPF_LOAD_HDR_OPT_TCP_SYN), the received segment or
 * the header written so far (flags = 0) carry the SMC option? */
static __always_inline int HasSmcOption(struct bpf_sock_ops* skops,
                                        __u64 flags) {
  __u8 opt[8] = {TCPOPT_EXP, SMC_OPT_LEN, 0xE2, 0xD4, 0xC3, 0xD9};
  long ret = bpf_load_hdr_opt(skops, opt, sizeof(opt), flags);
  return ret > 0 || ret == -ENOSPC;
}

/* Returns the raw helper result: > 0 found, -ENOENT no SYN (cookie). */
static __always_inline long LoadSynSmcOption(struct bpf_sock_ops* skops) {
  __u8 opt[8] = {TCPOPT_EXP, SMC_OPT_LEN, 0xE2, 0xD4, 0xC3, 0xD9};
  long ret =
      bpf_load_hdr_opt(skops, opt, sizeof(opt), BPF_LOAD_HDR_OPT_TCP_SYN);
  return ret == -ENOSPC ? 1 : ret;
}

/* TCP Fast Open: kind 34, or the experimental form (254, ExID 0xF989). */
static __always_inline int HasTfoOption(struct bpf_sock_ops* skops,
                                        __u64 flags) {
  __u8 opt[20] = {TCPOPT_FASTOPEN, 0};
  long ret = bpf_load_hdr_opt(skops, opt, sizeof(opt), flags);
  if (ret > 0 || ret == -ENOSPC) return 1;
  __u8 exp[20] = {TCPOPT_EXP, 4, 0xF9, 0x89};
  ret = bpf_load_hdr_opt(skops, exp, sizeof(exp), flags);
  return ret > 0 || ret == -ENOSPC;
}

/* Loads one ctx field as its own instruction: clang would otherwise merge
 * loads from both branches into one through a computed ctx pointer, which
 * the verifier rejects. */
#define CTX_LOAD(field)          \
  ({                             \
    __u32 v_ = (field);          \
    asm volatile("" : "+r"(v_)); \
    v_;                          \
  })

static __always_inline void ConnKey(struct bpf_sock_ops* skops,
                                    struct usmc_conn_key* key) {
  /* IPv4 as v4-mapped, the way a dual-stack child socket sees it. */
  if (CTX_LOAD(skops->family) == AF_INET) {
    key->local[2] = bpf_htonl(0xffff);
    key->local[3] = CTX_LOAD(skops->local_ip4);
    key->remote[2] = bpf_htonl(0xffff);
    key->remote[3] = CTX_LOAD(skops->remote_ip4);
  } else {
    key->local[0] = CTX_LOAD(skops->local_ip6[0]);
    key->local[1] = CTX_LOAD(skops->local_ip6[1]);
    key->local[2] = CTX_LOAD(skops->local_ip6[2]);
    key->local[3] = CTX_LOAD(skops->local_ip6[3]);
    key->remote[0] = CTX_LOAD(skops->remote_ip6[0]);
    key->remote[1] = CTX_LOAD(skops->remote_ip6[1]);
    key->remote[2] = CTX_LOAD(skops->remote_ip6[2]);
    key->remote[3] = CTX_LOAD(skops->remote_ip6[3]);
  }
  key->local_port = CTX_LOAD(skops->local_port);
  key->remote_port = CTX_LOAD(skops->remote_port);
}

static __always_inline void HeaderCallbacks(struct bpf_sock_ops* skops,
                                            int on) {
  __u32 flags = skops->bpf_sock_ops_cb_flags;
  if (on)
    flags |= BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG;
  else
    flags &= ~BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG;
  bpf_sock_ops_cb_flags_set(skops, flags);
}

static __always_inline void OnConnect(struct bpf_sock_ops* skops) {
  struct usmc_sk_state* st = State(skops->sk, 0);
  if (!st || !(st->flags & kFlagOptIn)) return;
  st->flags &= ~kFlagSent; /* a socket may connect() again after a failure */
  if (st->flags & kFlagTfo) {
    st->status = USMC_ST_TFO;
    Count(USMC_CTR_TFO_SKIPPED);
    return;
  }
  st->status = USMC_ST_PENDING;
  HeaderCallbacks(skops, 1);
}

static __always_inline void OnListen(struct bpf_sock_ops* skops) {
  struct usmc_sk_state* st = State(skops->sk, 0);
  if (!st || !(st->flags & kFlagOptIn)) return;
  if (st->flags & kFlagTfo) {
    Count(USMC_CTR_TFO_SKIPPED);
    return;
  }
  int one = 1;
  /* PASSIVE_ESTABLISHED can reach the SYN only as the listener's saved SYN. */
  bpf_setsockopt(skops, SOL_TCP, TCP_SAVE_SYN, &one, sizeof(one));
  HeaderCallbacks(skops, 1); /* inherited by request and child sockets */
}

/* The server echoes only on a SYN that offered, never on a SYN cookie
 * SYN-ACK (nothing would remember it) and never for TFO. */
static __always_inline int EchoWanted(struct bpf_sock_ops* skops) {
  if (skops->args[0] == BPF_WRITE_HDR_TCP_SYNACK_COOKIE) return 0;
  return HasSmcOption(skops, BPF_LOAD_HDR_OPT_TCP_SYN) &&
         !HasTfoOption(skops, BPF_LOAD_HDR_OPT_TCP_SYN);
}

static __always_inline void OnHeaderLen(struct bpf_sock_ops* skops) {
  __u8 tcp_flags = skops->skb_tcp_flags;
  if (!(tcp_flags & TCPHDR_SYN)) return;
  if (skops->args[0] == BPF_WRITE_HDR_TCP_CURRENT_MSS) return;
  if (tcp_flags & TCPHDR_ACK) {
    if (!HasSmcOption(skops, BPF_LOAD_HDR_OPT_TCP_SYN)) return;
    Count(USMC_CTR_OFFERS_SEEN);
    if (skops->args[0] == BPF_WRITE_HDR_TCP_SYNACK_COOKIE) {
      Count(USMC_CTR_COOKIE_FALLBACKS);
      return;
    }
    if (HasTfoOption(skops, BPF_LOAD_HDR_OPT_TCP_SYN)) return;
    if (bpf_reserve_hdr_opt(skops, SMC_OPT_LEN, 0) != 0) {
      struct usmc_conn_key key = {};
      __u8 one = 1;
      Count(USMC_CTR_RESERVE_FAILURES);
      ConnKey(skops, &key);
      bpf_map_update_elem(&usmc_noecho, &key, &one, BPF_ANY);
    }
    return;
  }
  struct usmc_sk_state* st = State(skops->sk, 0);
  if (!st || (st->flags & (kFlagOptIn | kFlagTfo)) != kFlagOptIn) return;
  if (bpf_reserve_hdr_opt(skops, SMC_OPT_LEN, 0) != 0) {
    Count(USMC_CTR_RESERVE_FAILURES);
    st->status = USMC_ST_NO_ROOM;
  }
}

static __always_inline void OnHeaderWrite(struct bpf_sock_ops* skops) {
  const __u8 opt[SMC_OPT_LEN] = {TCPOPT_EXP, SMC_OPT_LEN, 0xE2,
                                 0xD4,       0xC3,        0xD9};
  __u8 tcp_flags = skops->skb_tcp_flags;
  if (!(tcp_flags & TCPHDR_SYN)) return;
  if (tcp_flags & TCPHDR_ACK) {
    if (EchoWanted(skops) && bpf_store_hdr_opt(skops, opt, sizeof(opt), 0) == 0)
      Count(USMC_CTR_OPTIONS_WRITTEN);
    return;
  }
  struct usmc_sk_state* st = State(skops->sk, 0);
  if (!st || (st->flags & (kFlagOptIn | kFlagTfo)) != kFlagOptIn) return;
  if (st->status == USMC_ST_NO_ROOM) return;
  /* sendto(MSG_FASTOPEN) shows up only here: the kernel's TFO option is
   * already in the header. The reserved bytes stay NOPs. */
  if (HasTfoOption(skops, 0)) {
    st->flags |= kFlagTfo;
    st->status = USMC_ST_TFO;
    Count(USMC_CTR_TFO_SKIPPED);
    return;
  }
  long ret = bpf_store_hdr_opt(skops, opt, sizeof(opt), 0);
  if (ret == 0) Count(USMC_CTR_OPTIONS_WRITTEN);
  if (ret == 0 || ret == -EEXIST) st->flags |= kFlagSent;
}

static __always_inline void OnActiveEstablished(struct bpf_sock_ops* skops) {
  struct usmc_sk_state* st = State(skops->sk, 0);
  if (!st || !(st->flags & kFlagOptIn)) return;
  HeaderCallbacks(skops, 0);
  if (st->status != USMC_ST_PENDING) return; /* TFO or no room: final */
  /* skb is the SYN-ACK. */
  if ((st->flags & kFlagSent) && HasSmcOption(skops, 0)) {
    st->status = USMC_ST_SMC;
    Count(USMC_CTR_ECHOES);
    Count(USMC_CTR_SMC_ACTIVE);
  } else {
    st->status = USMC_ST_PEER_NO_SMC;
  }
}

static __always_inline void OnPassiveEstablished(struct bpf_sock_ops* skops) {
  struct usmc_sk_state* st = State(skops->sk, 0); /* cloned from the listener */
  if (!st || !(st->flags & kFlagOptIn)) return;
  HeaderCallbacks(skops, 0);
  if (st->flags & kFlagTfo) {
    st->status = USMC_ST_TFO;
    return;
  }
  /* Recompute the decision the SYN-ACK callbacks made on the request sock. */
  long ret = LoadSynSmcOption(skops);
  if (ret == -ENOENT) { /* no saved SYN: the connection came from a cookie */
    st->status = USMC_ST_SYN_COOKIE;
    return;
  }
  if (ret <= 0) {
    st->status = USMC_ST_PEER_NO_SMC;
    return;
  }
  if (HasTfoOption(skops, BPF_LOAD_HDR_OPT_TCP_SYN)) {
    st->status = USMC_ST_TFO;
    return;
  }
  struct usmc_conn_key key = {};
  ConnKey(skops, &key);
  if (bpf_map_lookup_elem(&usmc_noecho, &key)) {
    bpf_map_delete_elem(&usmc_noecho, &key);
    st->status = USMC_ST_NO_ROOM;
    return;
  }
  st->status = USMC_ST_SMC;
  Count(USMC_CTR_SMC_PASSIVE);
}

SEC("sockops")
int usmc_sockops(struct bpf_sock_ops* skops) {
  switch (skops->op) {
    case BPF_SOCK_OPS_TCP_CONNECT_CB:
    case BPF_SOCK_OPS_TCP_LISTEN_CB:
    case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
    case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
    case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
    case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
      if (skops->reply == USMC_HANDLED) return 1; /* a nearer usmc program */
      break;
    default:
      return 1;
  }
  switch (skops->op) {
    case BPF_SOCK_OPS_TCP_CONNECT_CB:
      OnConnect(skops);
      break;
    case BPF_SOCK_OPS_TCP_LISTEN_CB:
      OnListen(skops);
      break;
    case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
      OnHeaderLen(skops);
      break;
    case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
      OnHeaderWrite(skops);
      break;
    case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
      OnActiveEstablished(skops);
      break;
    case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
      OnPassiveEstablished(skops);
      break;
    default:
      break;
  }
  /* Stamped only now: the handlers above still read args[0]. */
  skops->reply = USMC_HANDLED;
  return 1;
}

static __always_inline int IsTcp(struct bpf_sock* sk) {
  return (sk->family == AF_INET || sk->family == AF_INET6) &&
         sk->type == SOCK_STREAM && sk->protocol == IPPROTO_TCP;
}

static __always_inline int Refuse(long err) {
  bpf_set_retval(err);
  return 0;
}

SEC("cgroup/setsockopt")
int usmc_setsockopt(struct bpf_sockopt* ctx) {
  struct bpf_sock* sk = ctx->sk;
  if (!sk) return 1;
  if (ctx->level == USMC_SOL_NEGOTIATE) {
    int* value = ctx->optval;
    /* A nearer usmc program took it (or refused it): defer. */
    if (ctx->optlen == -1 || bpf_get_retval() != 0) return 1;
    if (ctx->optname != USMC_SO_OPTIN || !IsTcp(sk))
      return Refuse(-ENOPROTOOPT);
    if ((void*)(value + 1) > ctx->optval_end) return Refuse(-EINVAL);
    /* The option must be decided before the SYN is built. */
    if (sk->state != BPF_TCP_CLOSE) return Refuse(-EISCONN);
    struct usmc_sk_state* st = State(sk, BPF_SK_STORAGE_GET_F_CREATE);
    if (!st) return Refuse(-ENOMEM);
    if (*value) {
      st->flags |= kFlagOptIn;
      st->status = USMC_ST_PENDING;
    } else {
      st->flags &= ~kFlagOptIn;
      st->status = USMC_ST_NOT_OPTED_IN;
    }
    ctx->optlen = -1; /* handled here: the kernel never sees this level */
    return 1;
  }
  if (ctx->level == SOL_TCP &&
      (ctx->optname == TCP_FASTOPEN || ctx->optname == TCP_FASTOPEN_CONNECT)) {
    int* value = ctx->optval;
    if ((void*)(value + 1) > ctx->optval_end || !*value) return 1;
    struct usmc_sk_state* st = State(sk, BPF_SK_STORAGE_GET_F_CREATE);
    if (st) st->flags |= kFlagTfo;
  }
  return 1; /* everything else: untouched, the kernel handles it */
}

SEC("cgroup/getsockopt")
int usmc_getsockopt(struct bpf_sockopt* ctx) {
  if (ctx->level != USMC_SOL_NEGOTIATE || ctx->optname != USMC_SO_STATUS)
    return 1;
  struct bpf_sock* sk = ctx->sk;
  int* value = ctx->optval;
  if (!sk) return 1;
  if (ctx->retval == 0) return 1; /* a nearer usmc program answered */
  if ((void*)(value + 1) > ctx->optval_end) {
    ctx->retval = -EINVAL;
    return 1;
  }
  struct usmc_sk_state* st = State(sk, 0);
  *value = st ? (int)st->status : USMC_ST_NOT_OPTED_IN;
  ctx->optlen = sizeof(*value);
  ctx->retval = 0;
  return 1;
}
