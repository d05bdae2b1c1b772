// dev/verbs.cc: dev/rdma.h over libibverbs. The enum values of dev/rdma.h
// are verbs' own (static_asserts below), so WRs and completions convert
// field by field. Refusals the sim reports before posting (SGE count,
// inline size) are checked here too, so both implementations say the same
// thing for the same mistake; everything else is the device's verdict.
#include "dev/verbs.h"

#include <fcntl.h>
#include <ifaddrs.h>
#include <infiniband/verbs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "dev/gid_choice.h"

namespace usmc::dev::rdma {

static_assert(static_cast<int>(Mtu::k1024) == IBV_MTU_1024);
static_assert(static_cast<int>(Mtu::k4096) == IBV_MTU_4096);
static_assert(kLocalWrite == IBV_ACCESS_LOCAL_WRITE);
static_assert(kRemoteWrite == IBV_ACCESS_REMOTE_WRITE);
static_assert(kRemoteRead == IBV_ACCESS_REMOTE_READ);
static_assert(static_cast<int>(WrOpcode::kRdmaWrite) == IBV_WR_RDMA_WRITE);
static_assert(static_cast<int>(WrOpcode::kSend) == IBV_WR_SEND);
static_assert(kSendSignaled == IBV_SEND_SIGNALED);
static_assert(kSendSolicited == IBV_SEND_SOLICITED);
static_assert(kSendInline == IBV_SEND_INLINE);
static_assert(static_cast<int>(WcStatus::kSuccess) == IBV_WC_SUCCESS);
static_assert(static_cast<int>(WcStatus::kLocLenErr) == IBV_WC_LOC_LEN_ERR);
static_assert(static_cast<int>(WcStatus::kLocQpOpErr) == IBV_WC_LOC_QP_OP_ERR);
static_assert(static_cast<int>(WcStatus::kLocProtErr) == IBV_WC_LOC_PROT_ERR);
static_assert(static_cast<int>(WcStatus::kWrFlushErr) == IBV_WC_WR_FLUSH_ERR);
static_assert(static_cast<int>(WcStatus::kRemInvReqErr) ==
              IBV_WC_REM_INV_REQ_ERR);
static_assert(static_cast<int>(WcStatus::kRemAccessErr) ==
              IBV_WC_REM_ACCESS_ERR);
static_assert(static_cast<int>(WcStatus::kRemOpErr) == IBV_WC_REM_OP_ERR);
static_assert(static_cast<int>(WcStatus::kRetryExcErr) == IBV_WC_RETRY_EXC_ERR);
static_assert(static_cast<int>(WcStatus::kRnrRetryExcErr) ==
              IBV_WC_RNR_RETRY_EXC_ERR);
static_assert(static_cast<int>(WcStatus::kGeneralErr) == IBV_WC_GENERAL_ERR);
static_assert(static_cast<int>(WcOpcode::kSend) == IBV_WC_SEND);
static_assert(static_cast<int>(WcOpcode::kRdmaWrite) == IBV_WC_RDMA_WRITE);
static_assert(static_cast<int>(WcOpcode::kRecv) == IBV_WC_RECV);

namespace {

Status Errno(StatusCode code, int err, std::string what) {
  return Status(code, what + ": " + std::strerror(err), err);
}

// The class of an errno from a verbs call.
StatusCode CodeOf(int err) {
  switch (err) {
    case EINVAL:
      return StatusCode::kInvalidArgument;
    case ENOMEM:
    case ENOSPC:
      return StatusCode::kResourceExhausted;
    case EPERM:
    case EACCES:
      return StatusCode::kPermissionDenied;
    default:
      return StatusCode::kSystem;
  }
}

QpState FromIbv(ibv_qp_state s) {
  switch (s) {
    case IBV_QPS_RESET:
      return QpState::kReset;
    case IBV_QPS_INIT:
      return QpState::kInit;
    case IBV_QPS_RTR:
      return QpState::kRtr;
    case IBV_QPS_RTS:
      return QpState::kRts;
    default:  // SQD, SQE, ERR: SMC-R never asks for SQD; all are dead ends
      return QpState::kError;
  }
}

class VerbsCq;

class VerbsCompChannel final : public CompChannel {
 public:
  explicit VerbsCompChannel(ibv_comp_channel* ch) : ch_(ch) {}
  ~VerbsCompChannel() override { ibv_destroy_comp_channel(ch_); }
  int fd() const override { return ch_->fd; }
  Result<Cq*> GetEvent() override {
    ibv_cq* cq = nullptr;
    void* ctx = nullptr;
    if (ibv_get_cq_event(ch_, &cq, &ctx) != 0) {
      if (errno == EAGAIN) return static_cast<Cq*>(nullptr);
      return Errno(StatusCode::kSystem, errno, "ibv_get_cq_event");
    }
    return static_cast<Cq*>(ctx);
  }
  ibv_comp_channel* raw() const { return ch_; }

 private:
  ibv_comp_channel* ch_;
};

class VerbsCq final : public Cq {
 public:
  ~VerbsCq() override { ibv_destroy_cq(cq_); }
  void Init(ibv_cq* cq) { cq_ = cq; }
  Result<size_t> Poll(std::span<WorkCompletion> out) override {
    std::array<ibv_wc, 16> wc;
    size_t got = 0;
    while (got < out.size()) {
      const int want =
          static_cast<int>(std::min<size_t>(wc.size(), out.size() - got));
      const int n = ibv_poll_cq(cq_, want, wc.data());
      if (n < 0) return Status(StatusCode::kDataLoss, "ibv_poll_cq failed");
      for (int i = 0; i < n; ++i) {
        WorkCompletion& o = out[got + i];
        o.wr_id = wc[i].wr_id;
        o.status = static_cast<WcStatus>(wc[i].status);
        o.opcode = static_cast<WcOpcode>(wc[i].opcode);
        o.byte_len = wc[i].byte_len;
        o.qp_num = wc[i].qp_num;
        o.solicited = false;  // verbs does not report it
      }
      got += n;
      if (n < want) break;
    }
    return got;
  }
  Status RequestNotify(bool solicited_only) override {
    const int rc = ibv_req_notify_cq(cq_, solicited_only ? 1 : 0);
    if (rc != 0) return Errno(CodeOf(rc), rc, "ibv_req_notify_cq");
    return OkStatus();
  }
  void AckEvents(unsigned n) override { ibv_ack_cq_events(cq_, n); }
  ibv_cq* raw() const { return cq_; }

 private:
  ibv_cq* cq_ = nullptr;
};

class VerbsMr final : public Mr {
 public:
  explicit VerbsMr(ibv_mr* mr, uint64_t iova, uint32_t access)
      : mr_(mr), iova_(iova), access_(access) {}
  ~VerbsMr() override { ibv_dereg_mr(mr_); }
  uint32_t lkey() const override { return mr_->lkey; }
  uint32_t rkey() const override { return mr_->rkey; }
  uint64_t iova() const override { return iova_; }
  uint64_t length() const override { return mr_->length; }
  uint32_t access() const override { return access_; }

 private:
  ibv_mr* mr_;
  uint64_t iova_;
  uint32_t access_;
};

class VerbsQp final : public Qp {
 public:
  VerbsQp(ibv_qp* qp, const QpCaps& caps, uint8_t port, uint8_t gid_index)
      : qp_(qp), caps_(caps), port_(port), gid_index_(gid_index) {}
  ~VerbsQp() override { ibv_destroy_qp(qp_); }

  uint32_t qpn() const override { return qp_->qp_num; }
  // Asks the device: a QP moves to ERROR by itself on a fatal completion.
  QpState state() const override {
    ibv_qp_attr a{};
    ibv_qp_init_attr ia{};
    if (ibv_query_qp(qp_, &a, IBV_QP_STATE, &ia) != 0) return QpState::kError;
    return FromIbv(a.qp_state);
  }
  QpCaps caps() const override { return caps_; }

  Status ModifyToInit(const InitAttr& in) override {
    if (Status s = Expect(QpState::kReset, "INIT"); !s.ok()) return s;
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_INIT;
    a.pkey_index = in.pkey_index;
    a.port_num = in.port;
    a.qp_access_flags = in.access;
    return Modify(
        a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS,
        "INIT");
  }

  Status ModifyToRtr(const RtrAttr& in) override {
    if (Status s = Expect(QpState::kInit, "RTR"); !s.ok()) return s;
    if (in.dest_qpn > kQpnMask || in.rq_psn > kPsnMask ||
        MtuBytes(in.path_mtu) == 0) {
      return Status(StatusCode::kInvalidArgument,
                    "RTR: QPN, PSN or path MTU out of range", EINVAL);
    }
    // Only the GID Open chose is SMC-R's (SMCR.md §1.5).
    if (in.sgid_index != gid_index_) {
      return Status(StatusCode::kInvalidArgument,
                    "RTR: sgid_index is not the device's RoCEv2 GID", EINVAL);
    }
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = static_cast<ibv_mtu>(in.path_mtu);
    a.dest_qp_num = in.dest_qpn;
    a.rq_psn = in.rq_psn;
    a.max_dest_rd_atomic = in.max_dest_rd_atomic;
    a.min_rnr_timer = in.min_rnr_timer;
    // RoCE: always a GRH; uverbs resolves the destination MAC from the
    // GID (no dmac here, SMCR.md §1.5).
    a.ah_attr.is_global = 1;
    std::memcpy(a.ah_attr.grh.dgid.raw, in.dgid.data(), 16);
    a.ah_attr.grh.sgid_index = in.sgid_index;
    a.ah_attr.grh.hop_limit = in.hop_limit;
    a.ah_attr.port_num = port_;
    return Modify(a,
                  IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                      IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
                      IBV_QP_MIN_RNR_TIMER,
                  "RTR");
  }

  Status ModifyToRts(const RtsAttr& in) override {
    if (Status s = Expect(QpState::kRtr, "RTS"); !s.ok()) return s;
    if (in.sq_psn > kPsnMask || in.timeout > 31 || in.retry_cnt > 7 ||
        in.rnr_retry > 7) {
      return Status(StatusCode::kInvalidArgument,
                    "RTS: PSN, timeout or retry count out of range", EINVAL);
    }
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_RTS;
    a.sq_psn = in.sq_psn;
    a.timeout = in.timeout;
    a.retry_cnt = in.retry_cnt;
    a.rnr_retry = in.rnr_retry;
    a.max_rd_atomic = in.max_rd_atomic;
    return Modify(a,
                  IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT |
                      IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                      IBV_QP_MAX_QP_RD_ATOMIC,
                  "RTS");
  }

  Status ModifyToError() override {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_ERR;
    return Modify(a, IBV_QP_STATE, "ERROR");
  }

  Status ModifyToReset() override {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_RESET;
    return Modify(a, IBV_QP_STATE, "RESET");
  }

  Status PostSend(std::span<const SendWr> wrs, size_t* posted) override {
    if (posted) *posted = 0;
    // Checked here as the sim does, so `posted` names the same WR on both.
    size_t ok = 0;
    Status refused;
    for (; ok < wrs.size(); ++ok) {
      const SendWr& w = wrs[ok];
      if (w.num_sge > caps_.max_send_sge || w.num_sge > kMaxSge) {
        refused = Status(StatusCode::kInvalidArgument, "too many SGEs", EINVAL);
        break;
      }
      if (w.flags & kSendInline) {
        uint64_t len = 0;
        for (const Sge& s : w.sges()) len += s.length;
        if (len > caps_.max_inline_data) {
          refused = Status(StatusCode::kInvalidArgument,
                           "inline payload above max_inline_data", EINVAL);
          break;
        }
      }
    }
    if (ok == 0) return refused.ok() ? OkStatus() : refused;
    std::vector<ibv_send_wr> v(ok);
    std::vector<ibv_sge> sg(ok * kMaxSge);
    for (size_t i = 0; i < ok; ++i) {
      const SendWr& w = wrs[i];
      ibv_send_wr& o = v[i];
      o.wr_id = w.wr_id;
      o.next = i + 1 < ok ? &v[i + 1] : nullptr;
      o.opcode = static_cast<ibv_wr_opcode>(w.opcode);
      o.send_flags = w.flags;
      o.sg_list = &sg[i * kMaxSge];
      o.num_sge = w.num_sge;
      for (uint8_t j = 0; j < w.num_sge; ++j) {
        sg[i * kMaxSge + j] = {w.sg[j].addr, w.sg[j].length, w.sg[j].lkey};
      }
      if (w.opcode == WrOpcode::kRdmaWrite) {
        o.wr.rdma.remote_addr = w.remote_addr;
        o.wr.rdma.rkey = w.rkey;
      }
    }
    ibv_send_wr* bad = nullptr;
    const int rc = ibv_post_send(qp_, v.data(), &bad);
    if (rc != 0) {
      if (posted) *posted = bad ? static_cast<size_t>(bad - v.data()) : 0;
      return PostError(rc, "ibv_post_send", /*send=*/true);
    }
    if (posted) *posted = ok;
    return refused;
  }

  Status PostRecv(std::span<const RecvWr> wrs, size_t* posted) override {
    if (posted) *posted = 0;
    size_t ok = 0;
    Status refused;
    for (; ok < wrs.size(); ++ok) {
      if (wrs[ok].num_sge > caps_.max_recv_sge || wrs[ok].num_sge > kMaxSge) {
        refused = Status(StatusCode::kInvalidArgument, "too many SGEs", EINVAL);
        break;
      }
    }
    if (ok == 0) return refused.ok() ? OkStatus() : refused;
    std::vector<ibv_recv_wr> v(ok);
    std::vector<ibv_sge> sg(ok * kMaxSge);
    for (size_t i = 0; i < ok; ++i) {
      const RecvWr& w = wrs[i];
      v[i].wr_id = w.wr_id;
      v[i].next = i + 1 < ok ? &v[i + 1] : nullptr;
      v[i].sg_list = &sg[i * kMaxSge];
      v[i].num_sge = w.num_sge;
      for (uint8_t j = 0; j < w.num_sge; ++j) {
        sg[i * kMaxSge + j] = {w.sg[j].addr, w.sg[j].length, w.sg[j].lkey};
      }
    }
    ibv_recv_wr* bad = nullptr;
    const int rc = ibv_post_recv(qp_, v.data(), &bad);
    if (rc != 0) {
      if (posted) *posted = bad ? static_cast<size_t>(bad - v.data()) : 0;
      return PostError(rc, "ibv_post_recv", /*send=*/false);
    }
    if (posted) *posted = ok;
    return refused;
  }

 private:
  // A transition from the wrong state is the caller's mistake; verbs would
  // say EINVAL, the interface says kFailedPrecondition (as the sim).
  Status Expect(QpState want, const char* to) const {
    if (state() == want) return OkStatus();
    return Status(
        StatusCode::kFailedPrecondition,
        std::string("QP not in ") + std::string(ToString(want)) + " for " + to,
        EINVAL);
  }
  Status Modify(ibv_qp_attr& a, int mask, const char* to) {
    const int rc = ibv_modify_qp(qp_, &a, mask);
    if (rc != 0) {
      return Errno(CodeOf(rc), rc, std::string("ibv_modify_qp ") + to);
    }
    return OkStatus();
  }
  // EINVAL from a post is a QP in the wrong state (rxe: send before RTS,
  // receive in RESET); the state is asked only on this error path.
  Status PostError(int rc, const char* what, bool send) const {
    if (rc == EINVAL) {
      const QpState s = state();
      const bool wrong = send ? (s != QpState::kRts && s != QpState::kError)
                              : s == QpState::kReset;
      if (wrong) {
        return Status(StatusCode::kFailedPrecondition,
                      std::string(what) + ": QP in " + std::string(ToString(s)),
                      EINVAL);
      }
    }
    return Errno(CodeOf(rc), rc, what);
  }

  ibv_qp* qp_;
  QpCaps caps_;
  uint8_t port_;
  uint8_t gid_index_;
};

class VerbsPd final : public Pd {
 public:
  VerbsPd(ibv_pd* pd, const DeviceAttr& attr, uint8_t port)
      : pd_(pd), attr_(attr), port_(port) {}
  ~VerbsPd() override { ibv_dealloc_pd(pd_); }

  Result<std::unique_ptr<Mr>> RegisterMr(void* addr, size_t length,
                                         uint32_t access,
                                         uint64_t iova) override {
    if (length == 0 || iova + length < iova ||
        ((access & (kRemoteWrite | kRemoteRead)) && !(access & kLocalWrite))) {
      return Status(StatusCode::kInvalidArgument,
                    "MR: empty, wrapping, or remote access without "
                    "LOCAL_WRITE",
                    EINVAL);
    }
    ibv_mr* mr = ibv_reg_mr_iova2(pd_, addr, length, iova,
                                  static_cast<unsigned>(access));
    if (!mr) return Errno(CodeOf(errno), errno, "ibv_reg_mr_iova2");
    return std::unique_ptr<Mr>(new VerbsMr(mr, iova, access));
  }

  Result<std::unique_ptr<Qp>> CreateRcQp(Cq& send_cq, Cq& recv_cq,
                                         const QpCaps& caps) override {
    if (caps.max_inline_data > attr_.max_inline ||
        caps.max_send_sge > kMaxSge || caps.max_recv_sge > kMaxSge) {
      return Status(StatusCode::kInvalidArgument,
                    "QP caps above what the device offers", EINVAL);
    }
    ibv_qp_init_attr ia{};
    ia.send_cq = static_cast<VerbsCq&>(send_cq).raw();
    ia.recv_cq = static_cast<VerbsCq&>(recv_cq).raw();
    ia.qp_type = IBV_QPT_RC;
    ia.sq_sig_all = 0;  // unsignaled WRITEs (SMCR.md §2.1)
    ia.cap.max_send_wr = caps.max_send_wr;
    ia.cap.max_recv_wr = caps.max_recv_wr;
    ia.cap.max_send_sge = caps.max_send_sge;
    ia.cap.max_recv_sge = caps.max_recv_sge;
    ia.cap.max_inline_data = caps.max_inline_data;
    ibv_qp* qp = ibv_create_qp(pd_, &ia);
    if (!qp) return Errno(CodeOf(errno), errno, "ibv_create_qp");
    // What the device granted (>= what was asked).
    const QpCaps got{.max_send_wr = ia.cap.max_send_wr,
                     .max_recv_wr = ia.cap.max_recv_wr,
                     .max_send_sge = ia.cap.max_send_sge,
                     .max_recv_sge = ia.cap.max_recv_sge,
                     .max_inline_data = ia.cap.max_inline_data};
    return std::unique_ptr<Qp>(new VerbsQp(qp, got, port_, attr_.gid_index));
  }

 private:
  ibv_pd* pd_;
  const DeviceAttr& attr_;
  uint8_t port_;
};

class VerbsContextImpl final : public Context {
 public:
  VerbsContextImpl(ibv_context* ctx, DeviceAttr attr, uint8_t port)
      : ctx_(ctx), attr_(std::move(attr)), port_(port) {}
  ~VerbsContextImpl() override { ibv_close_device(ctx_); }

  const DeviceAttr& attr() const override { return attr_; }
  Result<std::unique_ptr<Pd>> AllocPd() override {
    ibv_pd* pd = ibv_alloc_pd(ctx_);
    if (!pd) return Errno(CodeOf(errno), errno, "ibv_alloc_pd");
    return std::unique_ptr<Pd>(new VerbsPd(pd, attr_, port_));
  }
  Result<std::unique_ptr<CompChannel>> CreateCompChannel() override {
    ibv_comp_channel* ch = ibv_create_comp_channel(ctx_);
    if (!ch) return Errno(CodeOf(errno), errno, "ibv_create_comp_channel");
    // GetEvent never blocks: the caller polls the fd.
    const int fl = ::fcntl(ch->fd, F_GETFL);
    if (fl < 0 || ::fcntl(ch->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
      const int err = errno;
      ibv_destroy_comp_channel(ch);
      return Errno(StatusCode::kSystem, err, "fcntl(comp channel)");
    }
    return std::unique_ptr<CompChannel>(new VerbsCompChannel(ch));
  }
  Result<std::unique_ptr<Cq>> CreateCq(uint32_t cqe,
                                       CompChannel* channel) override {
    auto cq = std::make_unique<VerbsCq>();
    ibv_cq* raw = ibv_create_cq(
        ctx_, static_cast<int>(cqe), static_cast<Cq*>(cq.get()),
        channel ? static_cast<VerbsCompChannel*>(channel)->raw() : nullptr, 0);
    if (!raw) return Errno(CodeOf(errno), errno, "ibv_create_cq");
    cq->Init(raw);
    return std::unique_ptr<Cq>(std::move(cq));
  }

  // The largest inline payload a QP gets here: verbs has no query for it,
  // so one throwaway QP per size is tried, from rxe's 512 down.
  uint32_t ProbeMaxInline() {
    ibv_pd* pd = ibv_alloc_pd(ctx_);
    ibv_cq* cq = ibv_create_cq(ctx_, 4, nullptr, nullptr, 0);
    uint32_t found = 0;
    for (uint32_t want = 1024; pd && cq && want >= 16 && !found; want /= 2) {
      ibv_qp_init_attr ia{};
      ia.send_cq = cq;
      ia.recv_cq = cq;
      ia.qp_type = IBV_QPT_RC;
      ia.cap = {.max_send_wr = 1,
                .max_recv_wr = 1,
                .max_send_sge = 1,
                .max_recv_sge = 1,
                .max_inline_data = want};
      if (ibv_qp* qp = ibv_create_qp(pd, &ia)) {
        found = ia.cap.max_inline_data;
        ibv_destroy_qp(qp);
      }
    }
    if (cq) ibv_destroy_cq(cq);
    if (pd) ibv_dealloc_pd(pd);
    return found;
  }
  DeviceAttr& mutable_attr() { return attr_; }

 private:
  ibv_context* ctx_;
  DeviceAttr attr_;
  uint8_t port_;
};

// Every local interface address, IPv4 as ::ffff:a.b.c.d (prefix + 96).
std::vector<IfAddr> LocalAddrs() {
  std::vector<IfAddr> out;
  ifaddrs* ifs = nullptr;
  if (::getifaddrs(&ifs) != 0) return out;
  for (ifaddrs* i = ifs; i; i = i->ifa_next) {
    if (!i->ifa_addr || !i->ifa_netmask) continue;
    IfAddr a;
    a.ifindex = static_cast<int>(::if_nametoindex(i->ifa_name));
    if (i->ifa_addr->sa_family == AF_INET) {
      a.addr = GidFromIpv4(
          ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr));
      a.prefix_len =
          96 +
          std::popcount(
              reinterpret_cast<sockaddr_in*>(i->ifa_netmask)->sin_addr.s_addr);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      std::memcpy(a.addr.data(),
                  &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, 16);
      const auto* m = reinterpret_cast<const uint8_t*>(
          &reinterpret_cast<sockaddr_in6*>(i->ifa_netmask)->sin6_addr);
      for (int k = 0; k < 16; ++k) a.prefix_len += std::popcount(m[k]);
    } else {
      continue;
    }
    out.push_back(a);
  }
  ::freeifaddrs(ifs);
  return out;
}

std::array<uint8_t, 6> MacOf(int ifindex) {
  std::array<uint8_t, 6> mac{};
  char name[IF_NAMESIZE] = {};
  if (!::if_indextoname(ifindex, name)) return mac;
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return mac;
  ifreq r{};
  std::memcpy(r.ifr_name, name,
              IF_NAMESIZE);  // NUL-terminated by if_indextoname
  if (::ioctl(fd, SIOCGIFHWADDR, &r) == 0) {
    std::memcpy(mac.data(), r.ifr_hwaddr.sa_data, 6);
  }
  ::close(fd);
  return mac;
}

}  // namespace

Result<std::unique_ptr<Context>> VerbsContext::Open(uint32_t ipv4) {
  return Open(ipv4 == 0 ? Gid{} : GidFromIpv4(ipv4));
}

Result<std::unique_ptr<Context>> VerbsContext::Open(const Gid& local) {
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  if (!list || n == 0) {
    if (list) ibv_free_device_list(list);
    return Status(StatusCode::kUnavailable,
                  "no RDMA device (ibv_get_device_list found none; "
                  "`rdma link add rxe0 type rxe netdev eth0` makes one)");
  }
  const std::vector<IfAddr> addrs = LocalAddrs();
  // Every device's RoCEv2 GIDs in one table; dev/gid_choice picks.
  struct Where {
    int dev;
    ibv_gid_entry entry;
  };
  std::vector<GidEntry> table;
  std::vector<Where> where;
  std::string seen;
  for (int d = 0; d < n; ++d) {
    ibv_context* c = ibv_open_device(list[d]);
    if (!c) continue;
    seen +=
        std::string(seen.empty() ? "" : ", ") + ibv_get_device_name(list[d]);
    ibv_device_attr da{};
    if (ibv_query_device(c, &da) == 0) {
      std::vector<ibv_gid_entry> gids(256);
      const ssize_t k = ibv_query_gid_table(c, gids.data(), gids.size(), 0);
      for (ssize_t i = 0; i < k; ++i) {
        const ibv_gid_entry& e = gids[i];
        ibv_port_attr pa{};
        GidEntry g;
        std::memcpy(g.gid.data(), e.gid.raw, 16);
        g.roce_v2 = e.gid_type == IBV_GID_TYPE_ROCE_V2;
        g.port_active = ibv_query_port(c, e.port_num, &pa) == 0 &&
                        pa.link_layer == IBV_LINK_LAYER_ETHERNET &&
                        pa.state == IBV_PORT_ACTIVE;
        g.ifindex = static_cast<int>(e.ndev_ifindex);
        table.push_back(g);
        where.push_back({d, e});
      }
    }
    ibv_close_device(c);
  }
  const std::optional<size_t> pick = ChooseGid(table, local, addrs);
  if (!pick) {
    ibv_free_device_list(list);
    return Status(StatusCode::kNotFound,
                  "no active RoCEv2 GID for " + ToString(local) + " on " +
                      (seen.empty() ? std::string("any device") : seen));
  }
  const struct {
    int dev;
    uint8_t port;
    ibv_gid_entry gid;
  } best = {where[*pick].dev, static_cast<uint8_t>(where[*pick].entry.port_num),
            where[*pick].entry};
  ibv_context* c = ibv_open_device(list[best.dev]);
  DeviceAttr a;
  a.name = ibv_get_device_name(list[best.dev]);
  ibv_free_device_list(list);
  if (!c) return Errno(CodeOf(errno), errno, "ibv_open_device");
  ibv_device_attr da{};
  ibv_port_attr pa{};
  if (ibv_query_device(c, &da) != 0 || ibv_query_port(c, best.port, &pa) != 0) {
    const int err = errno;
    ibv_close_device(c);
    return Errno(StatusCode::kSystem, err, "ibv_query_device/port");
  }
  std::memcpy(a.gid.data(), best.gid.gid.raw, 16);
  a.gid_index = static_cast<uint8_t>(best.gid.gid_index);
  a.mac = MacOf(static_cast<int>(best.gid.ndev_ifindex));
  a.active_mtu = static_cast<Mtu>(pa.active_mtu);
  a.max_qp_wr = static_cast<uint32_t>(da.max_qp_wr);
  a.max_sge = static_cast<uint32_t>(da.max_sge);
  a.max_cqe = static_cast<uint32_t>(da.max_cqe);
  auto ctx = std::make_unique<VerbsContextImpl>(c, std::move(a), best.port);
  ctx->mutable_attr().max_inline = ctx->ProbeMaxInline();
  return std::unique_ptr<Context>(std::move(ctx));
}

}  // namespace usmc::dev::rdma
