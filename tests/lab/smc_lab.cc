// tests/lab/smc_lab.cc: the lab's view of the Linux kernel's SMC, run
// inside a guest (tests/lab/README.md). Debian has no smc-tools, so this
// does the two things the lab needs from them:
//
//   smc_lab ueid-add EID            the kernel proposes SMC-Rv2 only with a
//                                   UEID (generic netlink SMC_GEN_NETLINK)
//   smc_lab server PORT BYTES       AF_SMC: take one connection, receive
//   smc_lab client ADDR PORT BYTES  BYTES then send BYTES (client: the
//                                   reverse), check the pattern, then ask
//                                   smc_diag what the socket really used
//   smc_lab pattern SEED BYTES      the bytes of that exchange on stdout
//                                   (client: seed 1, server: seed 2), for
//                                   a program that is not smc_lab to send
//                                   or compare (`usmc run socat`)
//
// ADDR may be IPv6 (AF_SMC with SMCPROTO_SMC6); SMC_LAB_V6 set: the server
// listens on [::]. The kernel has no SMC-Rv2 over IPv6: it falls back.
//
// server/client print one line "SMC mode=SMCR|FALLBACK|SMCD ..." and exit
// 0 for SMC-R, 2 for a TCP fallback, 3 when connect failed (a caller
// retries until the peer listens), 1 for anything else.
#include <arpa/inet.h>
#include <linux/genetlink.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/smc.h>
#include <linux/smc_diag.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/lab/bench_proto.h"

namespace {

constexpr int kAfSmc = 43;        // AF_SMC (glibc 2.36 has no name for it)
constexpr int kSmcProtoIpv4 = 0;  // SMCPROTO_SMC
constexpr int kSmcProtoIpv6 = 1;  // SMCPROTO_SMC6

int Fail(const char* what) {
  std::fprintf(stderr, "smc_lab: %s: %s\n", what, std::strerror(errno));
  return 1;
}

// ---- generic netlink: SMC_NETLINK_ADD_UEID ----

struct NlReq {
  nlmsghdr h;
  genlmsghdr g;
  char attrs[256];
};

void PutAttr(NlReq& r, uint16_t type, const void* data, uint16_t len) {
  auto* a = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(&r) +
                                      NLMSG_ALIGN(r.h.nlmsg_len));
  a->nla_type = type;
  a->nla_len = NLA_HDRLEN + len;
  std::memcpy(reinterpret_cast<char*>(a) + NLA_HDRLEN, data, len);
  r.h.nlmsg_len = NLMSG_ALIGN(r.h.nlmsg_len) + NLA_ALIGN(a->nla_len);
}

// Sends one request; returns the errno of the kernel's ACK (0 = done) and
// copies the first reply message (if any) to `reply`.
int NlCall(int fd, NlReq& r, std::vector<char>* reply) {
  r.h.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  if (::send(fd, &r, r.h.nlmsg_len, 0) < 0) return errno;
  char buf[8192];
  for (int i = 0; i < 16; ++i) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) return errno;
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, n);
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_ERROR) {
        return -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
      }
      if (reply && reply->empty()) {
        reply->assign(reinterpret_cast<char*>(h),
                      reinterpret_cast<char*>(h) + h->nlmsg_len);
      }
    }
  }
  return EPROTO;
}

// The SMC generic netlink family's id (0 if the kernel has none).
uint16_t SmcFamily(int fd) {
  NlReq r{};
  r.h.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN);
  r.h.nlmsg_type = GENL_ID_CTRL;
  r.g.cmd = CTRL_CMD_GETFAMILY;
  r.g.version = 1;
  PutAttr(r, CTRL_ATTR_FAMILY_NAME, SMC_GENL_FAMILY_NAME,
          sizeof SMC_GENL_FAMILY_NAME);
  std::vector<char> reply;
  int err = NlCall(fd, r, &reply);
  if (err != 0 || reply.empty()) {
    std::fprintf(stderr, "smc_lab: no %s family (errno %d)\n",
                 SMC_GENL_FAMILY_NAME, err);
    return 0;
  }
  uint16_t family = 0;
  auto* h = reinterpret_cast<nlmsghdr*>(reply.data());
  int len = static_cast<int>(h->nlmsg_len) - NLMSG_LENGTH(GENL_HDRLEN);
  for (auto* a = reinterpret_cast<nlattr*>(
           reinterpret_cast<char*>(NLMSG_DATA(h)) + GENL_HDRLEN);
       len >= NLA_HDRLEN && a->nla_len <= len; len -= NLA_ALIGN(a->nla_len),
             a = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(a) +
                                           NLA_ALIGN(a->nla_len))) {
    if (a->nla_type == CTRL_ATTR_FAMILY_ID) {
      std::memcpy(&family, reinterpret_cast<char*>(a) + NLA_HDRLEN, 2);
    }
  }
  return family;
}

int UeidAdd(const char* eid_arg) {
  // The kernel takes exactly SMC_MAX_EID_LEN characters plus the NUL,
  // upper case, blank padded.
  std::string eid(eid_arg);
  for (char& c : eid) c = static_cast<char>(std::toupper(c));
  if (eid.size() > SMC_MAX_EID_LEN) eid.resize(SMC_MAX_EID_LEN);
  eid.resize(SMC_MAX_EID_LEN, ' ');

  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
  if (fd < 0) return Fail("netlink socket");
  const uint16_t family = SmcFamily(fd);
  if (family == 0) return 1;
  NlReq r{};
  r.h.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN);
  r.h.nlmsg_type = family;
  r.g.cmd = SMC_NETLINK_ADD_UEID;
  r.g.version = SMC_GENL_FAMILY_VERSION;
  PutAttr(r, SMC_NLA_EID_TABLE_ENTRY, eid.c_str(), SMC_MAX_EID_LEN + 1);
  int err = NlCall(fd, r, nullptr);
  ::close(fd);
  if (err != 0 && err != EEXIST) {
    std::fprintf(stderr, "smc_lab: ueid-add: errno %d (%s)\n", err,
                 std::strerror(err));
    return 1;
  }
  std::printf("UEID \"%s\"\n", eid.c_str());
  return 0;
}

// ---- generic netlink dumps: link groups, links, fallback counters ----

// The attributes of one nest (or message body) by type; the last wins.
struct Attrs {
  std::vector<const nlattr*> by_type = std::vector<const nlattr*>(64);
  Attrs(const void* data, int len) {
    for (auto* a = static_cast<const nlattr*>(data);
         len >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= len;
         len -= NLA_ALIGN(a->nla_len),
               a = reinterpret_cast<const nlattr*>(
                   reinterpret_cast<const char*>(a) + NLA_ALIGN(a->nla_len))) {
      const int t = a->nla_type & NLA_TYPE_MASK;
      if (t < 64) by_type[t] = a;
    }
  }
  const nlattr* get(int t) const { return by_type[t]; }
  static const void* Data(const nlattr* a) {
    return reinterpret_cast<const char*>(a) + NLA_HDRLEN;
  }
  static int Len(const nlattr* a) { return a->nla_len - NLA_HDRLEN; }
  Attrs Nest(int t) const {
    const nlattr* a = get(t);
    return a ? Attrs(Data(a), Len(a)) : Attrs(nullptr, 0);
  }
  uint64_t U(int t) const {
    const nlattr* a = get(t);
    if (!a) return 0;
    uint64_t v = 0;
    std::memcpy(&v, Data(a), std::min<int>(Len(a), 8));  // little endian
    return v;
  }
  std::string S(int t) const {
    const nlattr* a = get(t);
    if (!a) return "";
    return std::string(static_cast<const char*>(Data(a)),
                       strnlen(static_cast<const char*>(Data(a)), Len(a)));
  }
};

// Runs one dump command; calls `each` with every message's attributes.
template <typename F>
int Dump(uint8_t cmd, F each) {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
  if (fd < 0) return Fail("netlink socket");
  const uint16_t family = SmcFamily(fd);
  if (family == 0) return ::close(fd), 1;
  NlReq r{};
  r.h.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN);
  r.h.nlmsg_type = family;
  r.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  r.g.cmd = cmd;
  r.g.version = SMC_GENL_FAMILY_VERSION;
  if (::send(fd, &r, r.h.nlmsg_len, 0) < 0) return ::close(fd), Fail("send");
  static char buf[65536];
  int rc = 0;
  for (bool done = false; !done;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, n);
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        done = true;
        break;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        rc = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
        done = true;
        break;
      }
      each(Attrs(reinterpret_cast<char*>(NLMSG_DATA(h)) + GENL_HDRLEN,
                 static_cast<int>(h->nlmsg_len) - NLMSG_LENGTH(GENL_HDRLEN)));
    }
  }
  ::close(fd);
  if (rc != 0) std::fprintf(stderr, "smc_lab: dump %u: errno %d\n", cmd, rc);
  return rc == 0 ? 0 : 1;
}

// Prints "LGR ..." per SMC-R link group and "LINK ..." per link; returns
// the number of link groups (-1 on error).
int DumpLgrs(bool print) {
  int n = 0;
  if (Dump(SMC_NETLINK_GET_LGR_SMCR, [&](const Attrs& m) {
        const Attrs l = m.Nest(SMC_GEN_LGR_SMCR);
        const Attrs v2 = l.Nest(SMC_NLA_LGR_R_V2_COMMON);
        ++n;
        if (!print) return;
        std::printf(
            "LGR id=%llu role=%s type=%llu conns=%llu v2=%d ver=%llu "
            "rel=%llu os=%llu eid=\"%s\" peer_host=\"%s\"\n",
            static_cast<unsigned long long>(l.U(SMC_NLA_LGR_R_ID)),
            l.U(SMC_NLA_LGR_R_ROLE) ? "SERVER" : "CLIENT",
            static_cast<unsigned long long>(l.U(SMC_NLA_LGR_R_TYPE)),
            static_cast<unsigned long long>(l.U(SMC_NLA_LGR_R_CONNS_NUM)),
            l.get(SMC_NLA_LGR_R_V2_COMMON) && v2.U(SMC_NLA_LGR_V2_VER) == 2,
            static_cast<unsigned long long>(v2.U(SMC_NLA_LGR_V2_VER)),
            static_cast<unsigned long long>(v2.U(SMC_NLA_LGR_V2_REL)),
            static_cast<unsigned long long>(v2.U(SMC_NLA_LGR_V2_OS)),
            v2.S(SMC_NLA_LGR_V2_NEG_EID).c_str(),
            v2.S(SMC_NLA_LGR_V2_PEER_HOST).c_str());
      }) != 0) {
    return -1;
  }
  if (print) {
    Dump(SMC_NETLINK_GET_LINK_SMCR, [&](const Attrs& m) {
      // The dump also sends each group's own record: links only.
      if (!m.get(SMC_GEN_LINK_SMCR)) return;
      const Attrs k = m.Nest(SMC_GEN_LINK_SMCR);
      std::printf(
          "LINK id=%llu ibdev=%s port=%llu gid=%s peer_gid=%s conns=%llu "
          "state=%llu\n",
          static_cast<unsigned long long>(k.U(SMC_NLA_LINK_ID)),
          k.S(SMC_NLA_LINK_IB_DEV).c_str(),
          static_cast<unsigned long long>(k.U(SMC_NLA_LINK_IB_PORT)),
          k.S(SMC_NLA_LINK_GID).c_str(), k.S(SMC_NLA_LINK_PEER_GID).c_str(),
          static_cast<unsigned long long>(k.U(SMC_NLA_LINK_CONN_CNT)),
          static_cast<unsigned long long>(k.U(SMC_NLA_LINK_STATE)));
    });
    std::printf("LGRS n=%d\n", n);
  }
  return n;
}

// "FBACK server|client reason=0x... count=N" per fallback reason counted.
int DumpFallbacks() {
  return Dump(SMC_NETLINK_GET_FBACK_STATS, [&](const Attrs& m) {
    const Attrs f = m.Nest(SMC_GEN_FBACK_STATS);
    if (!f.get(SMC_NLA_FBACK_STATS_RSN_CODE)) {
      std::printf(
          "FBACK totals server=%llu client=%llu\n",
          static_cast<unsigned long long>(f.U(SMC_NLA_FBACK_STATS_SRV_CNT)),
          static_cast<unsigned long long>(f.U(SMC_NLA_FBACK_STATS_CLNT_CNT)));
      return;
    }
    // TYPE is the kernel's is_srv flag.
    std::printf(
        "FBACK %s reason=0x%08llx count=%llu\n",
        f.U(SMC_NLA_FBACK_STATS_TYPE) ? "server" : "client",
        static_cast<unsigned long long>(f.U(SMC_NLA_FBACK_STATS_RSN_CODE)),
        static_cast<unsigned long long>(f.U(SMC_NLA_FBACK_STATS_RSN_CNT)));
  });
}

// Polls the link-group table until it is empty: 0 and the time it took,
// or 1 after `ms`.
int LgrWaitEmpty(int ms) {
  for (int waited = 0;; waited += 50) {
    const int n = DumpLgrs(false);
    if (n == 0) {
      std::printf("LGR-EMPTY after %d ms\n", waited);
      return 0;
    }
    if (n < 0 || waited >= ms) {
      DumpLgrs(true);
      std::printf("LGR-NOT-EMPTY after %d ms\n", waited);
      return 1;
    }
    ::usleep(50 * 1000);
  }
}

// ---- smc_diag: what the kernel says a socket used ----

const char* ModeName(int m) {
  switch (m) {
    case SMC_DIAG_MODE_SMCR:
      return "SMCR";
    case SMC_DIAG_MODE_FALLBACK_TCP:
      return "FALLBACK";
    case SMC_DIAG_MODE_SMCD:
      return "SMCD";
  }
  return "?";
}

// Prints the diag line of the AF_SMC socket whose TCP ports are
// (sport, dport); returns its mode, -1 if not found.
int Diag(uint16_t sport, uint16_t dport) {
  const int fd =
      ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return Fail("sock_diag socket"), -1;
  struct {
    nlmsghdr h;
    smc_diag_req r;
  } req{};
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.r.diag_family = kAfSmc;
  req.r.diag_ext = (1 << (SMC_DIAG_LGRINFO - 1)) |
                   (1 << (SMC_DIAG_FALLBACK - 1)) |
                   (1 << (SMC_DIAG_CONNINFO - 1));
  if (::send(fd, &req, sizeof req, 0) < 0) return Fail("diag send"), -1;
  int mode = -1;
  static char buf[65536];
  for (bool done = false; !done;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, n);
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
        done = true;
        break;
      }
      const auto* m = reinterpret_cast<const smc_diag_msg*>(NLMSG_DATA(h));
      if (m->id.idiag_sport != htons(sport) ||
          m->id.idiag_dport != htons(dport) || mode >= 0) {
        continue;
      }
      mode = m->diag_mode;
      std::string line = std::string("SMC mode=") + ModeName(mode);
      char tmp[256];
      int len = static_cast<int>(h->nlmsg_len) -
                NLMSG_LENGTH(NLMSG_ALIGN(sizeof(smc_diag_msg)));
      for (auto* a = reinterpret_cast<rtattr*>(
               reinterpret_cast<char*>(NLMSG_DATA(h)) +
               NLMSG_ALIGN(sizeof(smc_diag_msg)));
           RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type == SMC_DIAG_FALLBACK) {
          const auto* f = static_cast<const smc_diag_fallback*>(RTA_DATA(a));
          std::snprintf(tmp, sizeof tmp, " reason=0x%08x peer=0x%08x",
                        f->reason, f->peer_diagnosis);
          line += tmp;
        } else if (a->rta_type == SMC_DIAG_LGRINFO) {
          const auto* l = static_cast<const smc_diag_lgrinfo*>(RTA_DATA(a));
          std::snprintf(tmp, sizeof tmp,
                        " role=%s ibdev=%.*s port=%u gid=%.40s peer_gid=%.40s",
                        l->role ? "SERVER" : "CLIENT", IB_DEVICE_NAME_MAX,
                        reinterpret_cast<const char*>(l->lnk[0].ibname),
                        l->lnk[0].ibport,
                        reinterpret_cast<const char*>(l->lnk[0].gid),
                        reinterpret_cast<const char*>(l->lnk[0].peer_gid));
          line += tmp;
        } else if (a->rta_type == SMC_DIAG_CONNINFO) {
          const auto* c = static_cast<const smc_diag_conninfo*>(RTA_DATA(a));
          std::snprintf(tmp, sizeof tmp, " rmbe=%u tx_prod=%u/%u rx_prod=%u/%u",
                        c->rmbe_size, c->tx_prod.wrap, c->tx_prod.count,
                        c->rx_prod.wrap, c->rx_prod.count);
          line += tmp;
        }
      }
      std::printf("%s\n", line.c_str());
    }
  }
  ::close(fd);
  if (mode < 0) std::printf("SMC mode=? (socket not in smc_diag)\n");
  return mode;
}

// ---- the transfer ----

uint8_t PatternByte(uint64_t i, uint8_t seed) {
  return static_cast<uint8_t>(seed + i * 7 + (i >> 9));
}

bool SendPattern(int fd, uint64_t bytes, uint8_t seed) {
  std::vector<uint8_t> buf(65536);
  for (uint64_t off = 0; off < bytes;) {
    const size_t n = std::min<uint64_t>(buf.size(), bytes - off);
    for (size_t i = 0; i < n; ++i) buf[i] = PatternByte(off + i, seed);
    for (size_t done = 0; done < n;) {
      const ssize_t w = ::send(fd, buf.data() + done, n - done, MSG_NOSIGNAL);
      if (w < 0) return Fail("send"), false;
      done += w;
    }
    off += n;
  }
  return true;
}

// `smc_lab pattern`: the same bytes on stdout (a pipe or a file).
int WritePattern(uint64_t bytes, uint8_t seed) {
  std::vector<uint8_t> buf(65536);
  for (uint64_t off = 0; off < bytes;) {
    const size_t n = std::min<uint64_t>(buf.size(), bytes - off);
    for (size_t i = 0; i < n; ++i) buf[i] = PatternByte(off + i, seed);
    for (size_t done = 0; done < n;) {
      const ssize_t w = ::write(1, buf.data() + done, n - done);
      if (w < 0) return Fail("write");
      done += w;
    }
    off += n;
  }
  return 0;
}

bool RecvPattern(int fd, uint64_t bytes, uint8_t seed) {
  std::vector<uint8_t> buf(65536);
  for (uint64_t off = 0; off < bytes;) {
    const ssize_t r =
        ::recv(fd, buf.data(), std::min<uint64_t>(buf.size(), bytes - off), 0);
    if (r < 0) return Fail("recv"), false;
    if (r == 0) {
      std::fprintf(stderr, "smc_lab: EOF after %llu of %llu bytes\n",
                   static_cast<unsigned long long>(off),
                   static_cast<unsigned long long>(bytes));
      return false;
    }
    for (ssize_t i = 0; i < r; ++i) {
      if (buf[i] != PatternByte(off + i, seed)) {
        std::fprintf(stderr, "smc_lab: byte %llu differs\n",
                     static_cast<unsigned long long>(off + i));
        return false;
      }
    }
    off += r;
  }
  return true;
}

int Exchange(int fd, bool client, uint64_t bytes) {
  sockaddr_in self{}, peer{};
  socklen_t sl = sizeof self, pl = sizeof peer;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &sl);
  ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl);
  // Client sends first, then the server answers with its own pattern.
  const bool ok = client
                      ? SendPattern(fd, bytes, 1) && RecvPattern(fd, bytes, 2)
                      : RecvPattern(fd, bytes, 1) && SendPattern(fd, bytes, 2);
  std::printf("DATA %s %llu bytes each way\n", ok ? "ok" : "BAD",
              static_cast<unsigned long long>(bytes));
  const int mode = Diag(ntohs(self.sin_port), ntohs(peer.sin_port));
  if (!client || std::getenv("SMC_LAB_WAIT_CLOSE") != nullptr) {
    // How the peer ends the connection: EOF (orderly) or an error
    // (ECONNRESET: abort). The server always waits for the client's close.
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c;
    const ssize_t r = ::recv(fd, &c, 1, 0);
    if (r == 0) {
      // An abort CDC sets the socket's error (ECONNRESET) and shuts it
      // down: the kernel's recv then says EOF; SO_ERROR tells the two apart.
      int err = 0;
      socklen_t el = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
      if (err != 0) {
        std::printf("PEER-CLOSE eof so_error=%s\n", strerrorname_np(err));
      } else {
        std::printf("PEER-CLOSE eof\n");
      }
    } else if (r < 0) {
      std::printf("PEER-CLOSE error=%s\n", strerrorname_np(errno));
    } else {
      std::printf("PEER-CLOSE byte\n");
    }
  }
  if (std::getenv("SMC_LAB_ABORT") != nullptr) {
    // An abortive close (SO_LINGER 0), as an application resets TCP.
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    std::printf("CLOSE abort\n");
  }
  ::close(fd);
  if (!ok) return 1;
  return mode == SMC_DIAG_MODE_SMCR           ? 0
         : mode == SMC_DIAG_MODE_FALLBACK_TCP ? 2
                                              : 1;
}

// Takes `count` connections, each in a child of its own (so that several
// clients at once each have theirs); exits with the worst child's code.
int Server(int port, uint64_t bytes, int count) {
  const bool v6 = std::getenv("SMC_LAB_V6") != nullptr;
  const int ls = ::socket(kAfSmc, SOCK_STREAM | SOCK_CLOEXEC,
                          v6 ? kSmcProtoIpv6 : kSmcProtoIpv4);
  if (ls < 0) return Fail("socket(AF_SMC)");
  const int one = 1;
  ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  sockaddr_in6 a6{};
  a6.sin6_family = AF_INET6;
  a6.sin6_port = htons(port);
  if ((v6 ? ::bind(ls, reinterpret_cast<sockaddr*>(&a6), sizeof a6)
          : ::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a)) < 0) {
    return Fail("bind");
  }
  if (::listen(ls, 8) < 0) return Fail("listen");
  std::printf("LISTEN %d\n", port);
  std::fflush(stdout);
  int worst = 0;
  int children = 0;
  for (int i = 0; i < count; ++i) {
    const int fd = ::accept(ls, nullptr, nullptr);
    if (fd < 0) return Fail("accept");
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(ls);
      std::_Exit(Exchange(fd, false, bytes));
    }
    ::close(fd);
    if (pid > 0) ++children;
  }
  ::close(ls);
  for (; children > 0; --children) {
    int st = 0;
    if (::wait(&st) < 0) break;
    const int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    if (rc == 1 || (rc == 2 && worst == 0)) worst = rc;
  }
  return worst;
}

int Client(const char* addr, int port, uint64_t bytes) {
  const bool v6 = std::strchr(addr, ':') != nullptr;
  const int fd = ::socket(kAfSmc, SOCK_STREAM | SOCK_CLOEXEC,
                          v6 ? kSmcProtoIpv6 : kSmcProtoIpv4);
  if (fd < 0) return Fail("socket(AF_SMC)");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  sockaddr_in6 a6{};
  a6.sin6_family = AF_INET6;
  a6.sin6_port = htons(port);
  if ((v6 ? ::inet_pton(AF_INET6, addr, &a6.sin6_addr)
          : ::inet_pton(AF_INET, addr, &a.sin_addr)) != 1) {
    std::fprintf(stderr, "smc_lab: bad address %s\n", addr);
    return 1;
  }
  if ((v6 ? ::connect(fd, reinterpret_cast<sockaddr*>(&a6), sizeof a6)
          : ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a)) < 0) {
    Fail("connect");
    ::close(fd);
    return 3;  // a caller retries until the server listens
  }
  return Exchange(fd, true, bytes);
}

// ---- the lab's benchmark (bench_proto.h) ----

struct FdIo {
  int fd;
  bool Send(const uint8_t* p, size_t n) {
    for (size_t off = 0; off < n;) {
      const ssize_t w = ::send(fd, p + off, n - off, MSG_NOSIGNAL);
      if (w < 0) return Fail("send"), false;
      off += size_t(w);
    }
    return true;
  }
  bool Recv(uint8_t* p, size_t n) {
    for (size_t off = 0; off < n;) {
      const ssize_t r = ::recv(fd, p + off, n - off, 0);
      if (r <= 0)
        return r == 0 ? (std::fprintf(stderr, "smc_lab: EOF\n"), false)
                      : (Fail("recv"), false);
      off += size_t(r);
    }
    return true;
  }
};

// smc_lab bench-server|bench-client ...: the benchmark over AF_SMC ("smc")
// or plain kernel TCP ("tcp"). Exit as server/client (0 = SMC-R, or TCP
// asked for and used; 2 = AF_SMC fell back; 3 = connect failed).
int Bench(bool client, const char* addr, int port, uint64_t bytes, int pings,
          const std::string& family, const std::string& kind) {
  const bool tcp = family == "tcp";
  const auto open = [&] {
    return ::socket(tcp ? AF_INET : kAfSmc, SOCK_STREAM | SOCK_CLOEXEC,
                    tcp ? 0 : kSmcProtoIpv4);
  };
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  int fd = -1;
  if (client) {
    if (::inet_pton(AF_INET, addr, &a.sin_addr) != 1) return 1;
    fd = open();
    if (fd < 0) return Fail("socket");
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
      ::close(fd);
      return 3;
    }
  } else {
    const int ls = open();
    if (ls < 0) return Fail("socket");
    const int one = 1;
    ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
        ::listen(ls, 8) < 0) {
      return Fail("bind/listen");
    }
    std::printf("LISTEN %d\n", port);
    fd = ::accept(ls, nullptr, nullptr);
    ::close(ls);
    if (fd < 0) return Fail("accept");
  }
  const int one = 1;
  // Small messages go out at once, as ping-pong benchmarks set (AF_SMC
  // takes it too: it turns its autocorking off).
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  FdIo io{fd};
  const bool ok = usmc::lab::RunBench(io, client, kind, pings, bytes);
  std::printf("BENCH-DATA %s kind=%s\n", ok ? "ok" : "BAD", kind.c_str());
  int mode = SMC_DIAG_MODE_SMCR;
  if (!tcp) {
    sockaddr_in self{}, peer{};
    socklen_t sl = sizeof self, pl = sizeof peer;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &sl);
    ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl);
    mode = Diag(ntohs(self.sin_port), ntohs(peer.sin_port));
  }
  if (!client) {
    // The client closes first; wait for its EOF so its last reads finish.
    char c;
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)::recv(fd, &c, 1, 0);
  }
  ::close(fd);
  if (!ok) return 1;
  return mode == SMC_DIAG_MODE_SMCR ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "ueid-add" && argc == 3) return UeidAdd(argv[2]);
  if (cmd == "lgr" && argc == 2) return DumpLgrs(true) < 0;
  if (cmd == "fback" && argc == 2) return DumpFallbacks();
  if (cmd == "lgr-wait-empty" && argc == 3)
    return LgrWaitEmpty(std::atoi(argv[2]));
  if (cmd == "pattern" && argc == 4) {
    return WritePattern(std::strtoull(argv[3], nullptr, 0),
                        static_cast<uint8_t>(std::atoi(argv[2])));
  }
  if (cmd == "server" && (argc == 4 || argc == 5)) {
    return Server(std::atoi(argv[2]), std::strtoull(argv[3], nullptr, 0),
                  argc == 5 ? std::atoi(argv[4]) : 1);
  }
  if (cmd == "client" && argc == 5) {
    return Client(argv[2], std::atoi(argv[3]),
                  std::strtoull(argv[4], nullptr, 0));
  }
  if ((cmd == "bench-server" && argc == 7) ||
      (cmd == "bench-client" && argc == 8)) {
    // bench-server PORT BYTES PINGS tcp|smc KIND
    // bench-client ADDR PORT BYTES PINGS tcp|smc KIND
    const bool c = cmd == "bench-client";
    const int k = c ? 3 : 2;
    return Bench(c, c ? argv[2] : nullptr, std::atoi(argv[k]),
                 std::strtoull(argv[k + 1], nullptr, 0), std::atoi(argv[k + 2]),
                 argv[k + 3], argv[k + 4]);
  }
  std::fprintf(stderr,
               "usage: smc_lab ueid-add EID | lgr | fback | lgr-wait-empty MS |"
               " server PORT BYTES [COUNT] | client ADDR PORT BYTES |"
               " pattern SEED BYTES |"
               " bench-server PORT BYTES PINGS tcp|smc KIND |"
               " bench-client ADDR PORT BYTES PINGS tcp|smc KIND\n");
  return 1;
}
