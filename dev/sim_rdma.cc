// dev/sim_rdma.cc: the fabric behind dev/sim_rdma.h.
//
// Every object the API hands out is a handle that registers itself with the
// fabric and unregisters when destroyed; objects find each other by id or
// key through the fabric, never by a pointer kept across calls, so any
// destruction order is safe (and the ones verbs refuses are recorded in
// misuse()).
//
// The transport, per RC QP pair (IBA ch. 9, as rxe implements it):
// requester: each send WR gets a PSN range at post time (one PSN per
// path-MTU packet); Step() transmits WRs in order; an ACK completes every
// WR up to its PSN; a NAK names the PSN it refuses. An ACK timeout or a
// sequence NAK costs one of retry_cnt and resends from the oldest
// unacknowledged WR (go-back-N); an RNR NAK costs one of rnr_retry (7:
// none) and waits the responder's RNR timer. Responder: executes the
// request whose PSN is the expected one, ACKs duplicates again without
// executing them, NAKs the first request past a gap and ignores the rest
// until the expected one comes.
#include "dev/sim_rdma.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <utility>

namespace usmc::dev::rdma {

using std::chrono::nanoseconds;

namespace {

constexpr size_t kMaxStepsPerRun = 20'000'000;
constexpr size_t kMaxTimerHops = 20'000'000;
constexpr uint64_t kMaxMessage = 1ull << 31;  // IB message length limit

Status Refuse(StatusCode code, std::string msg, int err = EINVAL) {
  return Status(code, std::move(msg), err);
}

enum class AckType : uint8_t {
  kAck,
  kRnrNak,
  kSeqNak,
  kRemAccessNak,  // R_Key violation
  kInvReqNak,     // invalid request (no REMOTE_WRITE on the QP, length)
  kRemOpNak,      // the responder could not do it (bad receive buffer)
};

struct Packet {
  bool is_ack = false;
  uint32_t to_dev = 0;
  uint32_t to_qpn = 0;
  uint32_t psn = 0;
  // Requests.
  WrOpcode op = WrOpcode::kSend;
  uint32_t npkts = 1;
  bool solicited = false;
  uint64_t raddr = 0;
  uint32_t rkey = 0;
  std::vector<std::byte> payload;
  // ACKs and NAKs.
  AckType ack = AckType::kAck;
  uint8_t rnr_timer = 0;
};

struct Link {
  LinkMode mode = LinkMode::kPass;
  std::deque<Packet> q;
};

struct CqEntry {
  WorkCompletion wc;
  uint64_t qp_id = 0;
  bool is_send = false;
  uint64_t send_seq = 0;  // send CQEs: frees the QP's slots up to this WR
};

}  // namespace

class SimCtx;
class SimPd;
class SimMr;
class SimCq;
class SimChannel;
class SimQp;

struct SimRdma::Fabric {
  explicit Fabric(SimClock& c, uint64_t seed) : clock(c), rng(seed) {}

  SimClock& clock;
  uint64_t rng;
  uint64_t next_id = 1;
  std::vector<std::unique_ptr<SimCtx>> devices;
  std::map<uint64_t, SimPd*> pds;
  std::map<uint64_t, SimQp*> qps;  // creation order: Step's scan order
  std::map<uint64_t, SimCq*> cqs;
  std::map<uint64_t, SimChannel*> channels;
  std::map<std::pair<uint32_t, uint32_t>, Link> links;
  std::vector<std::string> misuse;
  SimRdmaStats stats;

  nanoseconds now() const { return clock.now(); }
  uint64_t Random64() {
    // splitmix64: deterministic keys and QPNs per seed.
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  int DeviceByGid(const Gid& gid) const;
  void Send(uint32_t from_dev, Packet p);
  void Deliver(Packet& p);
  void PushCqe(uint64_t cq_id, const CqEntry& e);
  void Raise(uint64_t channel_id, uint64_t cq_id);
};

// ---- objects ----

class SimCtx final : public Context {
 public:
  SimCtx(SimRdma::Fabric& f, uint32_t index, DeviceAttr attr)
      : f_(f), index_(index), attr_(std::move(attr)) {
    next_qpn_ = 17 + static_cast<uint32_t>(f_.Random64() % 0x10000);
  }

  const DeviceAttr& attr() const override { return attr_; }
  Result<std::unique_ptr<Pd>> AllocPd() override;
  Result<std::unique_ptr<CompChannel>> CreateCompChannel() override;
  Result<std::unique_ptr<Cq>> CreateCq(uint32_t cqe,
                                       CompChannel* channel) override;

  uint32_t index() const { return index_; }
  bool dead = false;
  std::map<uint32_t, SimQp*> qps;
  std::map<uint32_t, SimMr*> by_lkey;
  std::map<uint32_t, SimMr*> by_rkey;

  SimQp* FindQp(uint32_t qpn) const {
    auto it = qps.find(qpn);
    return it == qps.end() ? nullptr : it->second;
  }
  SimMr* FindLkey(uint32_t k) const {
    auto it = by_lkey.find(k);
    return it == by_lkey.end() ? nullptr : it->second;
  }
  SimMr* FindRkey(uint32_t k) const {
    auto it = by_rkey.find(k);
    return it == by_rkey.end() ? nullptr : it->second;
  }
  // A key used by no live MR as lkey or rkey, so an lkey never works as
  // an rkey by accident (rxe uses one value for both; the sim is stricter
  // so that a caller mixing them up fails).
  uint32_t NewKey() {
    for (;;) {
      const uint32_t k = static_cast<uint32_t>(f_.Random64());
      if (k != 0 && !by_lkey.count(k) && !by_rkey.count(k)) return k;
    }
  }
  uint32_t NewQpn() {
    for (;;) {
      const uint32_t q = next_qpn_++ & kQpnMask;
      if (q > 1 && !qps.count(q)) return q;  // 0, 1: special QPs
    }
  }

 private:
  SimRdma::Fabric& f_;
  const uint32_t index_;
  const DeviceAttr attr_;
  uint32_t next_qpn_;
};

class SimPd final : public Pd {
 public:
  SimPd(SimRdma::Fabric& f, SimCtx& ctx) : f_(f), ctx_(ctx), id_(f.next_id++) {
    f_.pds[id_] = this;
  }
  ~SimPd() override {
    if (live_mrs || live_qps)
      f_.misuse.push_back("PD destroyed with " + std::to_string(live_mrs) +
                          " MRs and " + std::to_string(live_qps) +
                          " QPs (verbs: EBUSY)");
    f_.pds.erase(id_);
  }
  Result<std::unique_ptr<Mr>> RegisterMr(void* addr, size_t length,
                                         uint32_t access,
                                         uint64_t iova) override;
  Result<std::unique_ptr<Qp>> CreateRcQp(Cq& send_cq, Cq& recv_cq,
                                         const QpCaps& caps) override;

  uint64_t id() const { return id_; }
  int live_mrs = 0;
  int live_qps = 0;

 private:
  SimRdma::Fabric& f_;
  SimCtx& ctx_;
  const uint64_t id_;
};

class SimMr final : public Mr {
 public:
  SimMr(SimRdma::Fabric& f, SimCtx& ctx, SimPd& pd, void* addr, uint64_t length,
        uint32_t access, uint64_t iova)
      : f_(f),
        ctx_(ctx),
        pd_id_(pd.id()),
        base_(static_cast<std::byte*>(addr)),
        length_(length),
        access_(access),
        iova_(iova) {
    lkey_ = ctx_.NewKey();
    ctx_.by_lkey[lkey_] = this;
    rkey_ = ctx_.NewKey();
    ctx_.by_rkey[rkey_] = this;
    ++pd.live_mrs;
  }
  ~SimMr() override {
    ctx_.by_lkey.erase(lkey_);
    ctx_.by_rkey.erase(rkey_);
    if (auto it = f_.pds.find(pd_id_); it != f_.pds.end())
      --it->second->live_mrs;
  }
  uint32_t lkey() const override { return lkey_; }
  uint32_t rkey() const override { return rkey_; }
  uint64_t iova() const override { return iova_; }
  uint64_t length() const override { return length_; }
  uint32_t access() const override { return access_; }

  uint64_t pd_id() const { return pd_id_; }
  SimMrInfo info() const {
    return {reinterpret_cast<uint64_t>(base_),
            iova_,
            length_,
            access_,
            lkey_,
            rkey_};
  }
  // [addr, addr + len) lies inside the region (no overflow on any input).
  bool Contains(uint64_t addr, uint64_t len) const {
    return addr >= iova_ && len <= length_ && addr - iova_ <= length_ - len;
  }
  std::byte* At(uint64_t addr) const { return base_ + (addr - iova_); }

 private:
  SimRdma::Fabric& f_;
  SimCtx& ctx_;
  const uint64_t pd_id_;
  std::byte* const base_;
  const uint64_t length_;
  const uint32_t access_;
  const uint64_t iova_;
  uint32_t lkey_ = 0;
  uint32_t rkey_ = 0;
};

class SimChannel final : public CompChannel {
 public:
  explicit SimChannel(SimRdma::Fabric& f, int efd)
      : f_(f), id_(f.next_id++), efd_(efd) {
    f_.channels[id_] = this;
  }
  ~SimChannel() override {
    if (live_cqs)
      f_.misuse.push_back("completion channel destroyed with " +
                          std::to_string(live_cqs) + " CQs (verbs: EBUSY)");
    f_.channels.erase(id_);
    ::close(efd_);
  }
  int fd() const override { return efd_; }
  Result<Cq*> GetEvent() override;

  uint64_t id() const { return id_; }
  // The eventfd is readable exactly while `events_` is not empty.
  void Raise(uint64_t cq_id) {
    events_.push_back(cq_id);
    if (events_.size() == 1) {
      const uint64_t one = 1;
      if (::write(efd_, &one, sizeof one) < 0) {
      }  // cannot fail: the counter is 0 or 1
    }
  }
  int live_cqs = 0;

 private:
  SimRdma::Fabric& f_;
  const uint64_t id_;
  const int efd_;
  std::deque<uint64_t> events_;
};

class SimCq final : public Cq {
 public:
  SimCq(SimRdma::Fabric& f, SimCtx& ctx, uint32_t capacity, SimChannel* channel)
      : f_(f),
        ctx_(ctx),
        id_(f.next_id++),
        capacity_(capacity),
        channel_id_(channel ? channel->id() : 0) {
    f_.cqs[id_] = this;
    if (channel) ++channel->live_cqs;
  }
  ~SimCq() override {
    if (live_qps)
      f_.misuse.push_back("CQ destroyed with " + std::to_string(live_qps) +
                          " QPs (verbs: EBUSY)");
    if (unacked_)
      f_.misuse.push_back("CQ destroyed with " + std::to_string(unacked_) +
                          " unacknowledged events (verbs: hangs)");
    f_.cqs.erase(id_);
    if (auto it = f_.channels.find(channel_id_); it != f_.channels.end())
      --it->second->live_cqs;
  }
  Result<size_t> Poll(std::span<WorkCompletion> out) override;
  Status RequestNotify(bool solicited_only) override {
    if (overrun_) return Refuse(StatusCode::kDataLoss, "CQ overran", EIO);
    if (arm_ != Arm::kAll) arm_ = solicited_only ? Arm::kSolicited : Arm::kAll;
    return OkStatus();
  }
  void AckEvents(unsigned n) override {
    if (n > unacked_) {
      f_.misuse.push_back("AckEvents acknowledges more events than returned");
      n = unacked_;
    }
    unacked_ -= n;
  }

  uint64_t id() const { return id_; }
  const SimCtx& ctx() const { return ctx_; }
  void Push(const CqEntry& e) {
    if (overrun_) return;
    if (q_.size() >= capacity_) {
      // Verbs: IBV_EVENT_CQ_ERR, the CQ is unusable from now on.
      overrun_ = true;
      f_.misuse.push_back("CQ overran (" + std::to_string(capacity_) +
                          " entries)");
      return;
    }
    q_.push_back(e);
    if (arm_ == Arm::kNone) return;
    if (arm_ == Arm::kAll || e.wc.solicited ||
        e.wc.status != WcStatus::kSuccess) {
      arm_ = Arm::kNone;
      f_.Raise(channel_id_, id_);
    }
  }
  void GotEvent() { ++unacked_; }
  int live_qps = 0;

 private:
  enum class Arm { kNone, kAll, kSolicited };
  SimRdma::Fabric& f_;
  SimCtx& ctx_;
  const uint64_t id_;
  const uint32_t capacity_;
  const uint64_t channel_id_;
  std::deque<CqEntry> q_;
  bool overrun_ = false;
  Arm arm_ = Arm::kNone;
  unsigned unacked_ = 0;
};

class SimQp final : public Qp {
 public:
  SimQp(SimRdma::Fabric& f, SimCtx& ctx, SimPd& pd, SimCq& scq, SimCq& rcq,
        const QpCaps& caps)
      : f_(f),
        ctx_(ctx),
        id_(f.next_id++),
        pd_id_(pd.id()),
        send_cq_(scq.id()),
        recv_cq_(rcq.id()),
        caps_(caps),
        qpn_(ctx.NewQpn()) {
    f_.qps[id_] = this;
    ctx_.qps[qpn_] = this;
    ++pd.live_qps;
    ++scq.live_qps;
    ++rcq.live_qps;
  }
  ~SimQp() override {
    f_.qps.erase(id_);
    ctx_.qps.erase(qpn_);
    if (auto it = f_.pds.find(pd_id_); it != f_.pds.end())
      --it->second->live_qps;
    for (uint64_t c : {send_cq_, recv_cq_})
      if (auto it = f_.cqs.find(c); it != f_.cqs.end()) --it->second->live_qps;
  }

  uint32_t qpn() const override { return qpn_; }
  QpState state() const override { return state_; }
  QpCaps caps() const override { return caps_; }
  Status ModifyToInit(const InitAttr& a) override;
  Status ModifyToRtr(const RtrAttr& a) override;
  Status ModifyToRts(const RtsAttr& a) override;
  Status ModifyToError() override;
  Status ModifyToReset() override;
  Status PostSend(std::span<const SendWr> wrs, size_t* posted) override;
  Status PostRecv(std::span<const RecvWr> wrs, size_t* posted) override;

  // Driven by the fabric.
  bool CanTransmit() const;
  void Transmit();
  bool FireDueTimer(nanoseconds now);
  std::optional<nanoseconds> Deadline() const;
  void OnRequest(const Packet& p);
  void OnAck(const Packet& p);
  void Kill() {
    EnterError();
    killed_ = true;
  }
  bool killed() const { return killed_; }
  void Retire(uint64_t seq) { retired_ = std::max(retired_, seq + 1); }

 private:
  struct SendWqe {
    uint64_t seq = 0;
    SendWr wr;
    std::vector<std::byte> inline_data;
    uint64_t len = 0;
    uint32_t psn = 0;
    uint32_t npkts = 1;
    bool local_err = false;  // its buffer failed the lkey check
    uint32_t last_psn() const { return (psn + npkts - 1) & kPsnMask; }
  };

  Status CheckModify(QpState from, std::string_view to) const;
  bool Gather(const SendWqe& w, std::vector<std::byte>& out) const;
  void CompleteSend(const SendWqe& w, WcStatus st);
  void CompleteRecv(const RecvWr& r, WcStatus st, uint32_t len, bool sol);
  bool AckUpTo(uint32_t psn, bool inclusive);
  void ArmAckTimer();
  void Fail(WcStatus st);
  void ResponderFail(AckType t, uint32_t psn);
  void SendAck(AckType t, uint32_t psn, uint8_t rnr_timer = 0);
  void EnterError();

  SimRdma::Fabric& f_;
  SimCtx& ctx_;
  const uint64_t id_;
  const uint64_t pd_id_;
  const uint64_t send_cq_;
  const uint64_t recv_cq_;
  const QpCaps caps_;
  const uint32_t qpn_;
  QpState state_ = QpState::kReset;
  bool killed_ = false;
  InitAttr init_;
  RtrAttr rtr_;
  RtsAttr rts_;

  // Requester. sq_[0, sent_) went out at least once and wait for an ACK;
  // next_tx_ <= sent_ after a rewind, == sent_ otherwise.
  std::deque<SendWqe> sq_;
  size_t sent_ = 0;
  size_t next_tx_ = 0;
  uint32_t next_psn_ = 0;
  uint64_t posted_ = 0;   // send WRs ever posted
  uint64_t retired_ = 0;  // of those, slots freed by a polled completion
  uint8_t retry_left_ = 0;
  uint8_t rnr_left_ = 0;
  std::optional<nanoseconds> ack_deadline_;
  std::optional<nanoseconds> rnr_until_;

  // Responder.
  std::deque<RecvWr> rq_;
  uint32_t epsn_ = 0;
  bool nak_sent_ = false;  // NAKed; ignore requests past the gap till filled
};

// ---- fabric ----

int SimRdma::Fabric::DeviceByGid(const Gid& gid) const {
  for (size_t i = 0; i < devices.size(); ++i)
    if (devices[i]->attr().gid == gid) return static_cast<int>(i);
  return -1;
}

void SimRdma::Fabric::Send(uint32_t from_dev, Packet p) {
  Link& l = links[{from_dev, p.to_dev}];
  if (l.mode == LinkMode::kDrop) {
    ++stats.dropped;
    return;
  }
  l.q.push_back(std::move(p));
}

void SimRdma::Fabric::Deliver(Packet& p) {
  ++stats.delivered;
  SimCtx& ctx = *devices[p.to_dev];
  SimQp* qp = ctx.dead ? nullptr : ctx.FindQp(p.to_qpn);
  if (qp == nullptr || qp->killed()) {
    ++stats.discarded;
    return;
  }
  const QpState s = qp->state();
  if (p.is_ack) {
    if (s != QpState::kRts) {
      ++stats.discarded;
      return;
    }
    qp->OnAck(p);
    return;
  }
  if (s != QpState::kRtr && s != QpState::kRts) {
    ++stats.discarded;  // RESET/INIT/ERR drop requests silently
    return;
  }
  qp->OnRequest(p);
}

void SimRdma::Fabric::PushCqe(uint64_t cq_id, const CqEntry& e) {
  if (auto it = cqs.find(cq_id); it != cqs.end()) it->second->Push(e);
}

void SimRdma::Fabric::Raise(uint64_t channel_id, uint64_t cq_id) {
  if (auto it = channels.find(channel_id); it != channels.end())
    it->second->Raise(cq_id);
}

// ---- context, PD, MR, CQ, channel ----

Result<std::unique_ptr<Pd>> SimCtx::AllocPd() {
  return std::unique_ptr<Pd>(std::make_unique<SimPd>(f_, *this));
}

Result<std::unique_ptr<CompChannel>> SimCtx::CreateCompChannel() {
  const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) return Status::FromErrno(errno, "eventfd");
  return std::unique_ptr<CompChannel>(std::make_unique<SimChannel>(f_, efd));
}

Result<std::unique_ptr<Cq>> SimCtx::CreateCq(uint32_t cqe,
                                             CompChannel* channel) {
  if (cqe == 0 || cqe > attr_.max_cqe)
    return Refuse(StatusCode::kInvalidArgument, "CQ size out of range");
  SimChannel* ch = nullptr;
  if (channel != nullptr) {
    ch = dynamic_cast<SimChannel*>(channel);
    if (ch == nullptr || !f_.channels.count(ch->id()) ||
        f_.channels[ch->id()] != ch)
      return Refuse(StatusCode::kInvalidArgument, "foreign channel");
  }
  return std::unique_ptr<Cq>(std::make_unique<SimCq>(f_, *this, cqe, ch));
}

Result<std::unique_ptr<Mr>> SimPd::RegisterMr(void* addr, size_t length,
                                              uint32_t access, uint64_t iova) {
  if (addr == nullptr || length == 0)
    return Refuse(StatusCode::kInvalidArgument, "empty memory region");
  if (access & ~(kLocalWrite | kRemoteWrite | kRemoteRead))
    return Refuse(StatusCode::kInvalidArgument, "unknown access flags");
  if ((access & kRemoteWrite) && !(access & kLocalWrite))
    return Refuse(StatusCode::kInvalidArgument,
                  "REMOTE_WRITE needs LOCAL_WRITE");
  if (iova + length < iova)
    return Refuse(StatusCode::kInvalidArgument, "IOVA range wraps");
  return std::unique_ptr<Mr>(
      std::make_unique<SimMr>(f_, ctx_, *this, addr, length, access, iova));
}

Result<std::unique_ptr<Qp>> SimPd::CreateRcQp(Cq& send_cq, Cq& recv_cq,
                                              const QpCaps& caps) {
  auto* scq = dynamic_cast<SimCq*>(&send_cq);
  auto* rcq = dynamic_cast<SimCq*>(&recv_cq);
  if (scq == nullptr || rcq == nullptr || &scq->ctx() != &ctx_ ||
      &rcq->ctx() != &ctx_)
    return Refuse(StatusCode::kInvalidArgument, "CQ of another device");
  const DeviceAttr& d = ctx_.attr();
  const uint32_t max_sge = std::min<uint32_t>(d.max_sge, kMaxSge);
  if (caps.max_send_wr == 0 || caps.max_send_wr > d.max_qp_wr ||
      caps.max_recv_wr == 0 || caps.max_recv_wr > d.max_qp_wr ||
      caps.max_send_sge > max_sge || caps.max_recv_sge > max_sge ||
      caps.max_inline_data > d.max_inline)
    return Refuse(StatusCode::kInvalidArgument, "QP caps above the device's");
  return std::unique_ptr<Qp>(
      std::make_unique<SimQp>(f_, ctx_, *this, *scq, *rcq, caps));
}

Result<Cq*> SimChannel::GetEvent() {
  while (!events_.empty()) {
    const uint64_t cq_id = events_.front();
    events_.pop_front();
    if (events_.empty()) {
      uint64_t v;
      if (::read(efd_, &v, sizeof v) < 0) {
      }  // EAGAIN cannot happen: Raise wrote 1
    }
    auto it = f_.cqs.find(cq_id);
    if (it == f_.cqs.end()) continue;  // the CQ is gone
    it->second->GotEvent();
    return static_cast<Cq*>(it->second);
  }
  return static_cast<Cq*>(nullptr);
}

Result<size_t> SimCq::Poll(std::span<WorkCompletion> out) {
  if (overrun_) return Refuse(StatusCode::kDataLoss, "CQ overran", EIO);
  size_t n = 0;
  while (n < out.size() && !q_.empty()) {
    const CqEntry& e = q_.front();
    out[n++] = e.wc;
    if (e.is_send)
      if (auto it = f_.qps.find(e.qp_id); it != f_.qps.end())
        it->second->Retire(e.send_seq);
    q_.pop_front();
  }
  return n;
}

// ---- QP: state transitions ----

Status SimQp::CheckModify(QpState from, std::string_view to) const {
  if (killed_) return Refuse(StatusCode::kFailedPrecondition, "QP was killed");
  if (state_ != from)
    return Refuse(StatusCode::kFailedPrecondition,
                  std::string("modify QP ") + std::string(ToString(state_)) +
                      " -> " + std::string(to));
  return OkStatus();
}

Status SimQp::ModifyToInit(const InitAttr& a) {
  USMC_RETURN_IF_ERROR(CheckModify(QpState::kReset, "INIT"));
  if (a.port != 1 || a.pkey_index != 0 ||
      (a.access & ~(kLocalWrite | kRemoteWrite | kRemoteRead)))
    return Refuse(StatusCode::kInvalidArgument, "INIT attributes");
  init_ = a;
  state_ = QpState::kInit;
  return OkStatus();
}

Status SimQp::ModifyToRtr(const RtrAttr& a) {
  USMC_RETURN_IF_ERROR(CheckModify(QpState::kInit, "RTR"));
  const uint32_t mtu = MtuBytes(a.path_mtu);
  if (mtu == 0 || mtu > MtuBytes(ctx_.attr().active_mtu))
    return Refuse(StatusCode::kInvalidArgument, "path MTU above the port's");
  if (a.dest_qpn == 0 || a.dest_qpn > kQpnMask || a.rq_psn > kPsnMask ||
      a.min_rnr_timer > 31)
    return Refuse(StatusCode::kInvalidArgument, "RTR attributes");
  if (a.sgid_index != ctx_.attr().gid_index)
    return Refuse(StatusCode::kInvalidArgument, "no such source GID index");
  rtr_ = a;
  epsn_ = a.rq_psn;
  nak_sent_ = false;
  state_ = QpState::kRtr;
  return OkStatus();
}

Status SimQp::ModifyToRts(const RtsAttr& a) {
  USMC_RETURN_IF_ERROR(CheckModify(QpState::kRtr, "RTS"));
  if (a.sq_psn > kPsnMask || a.timeout > 31 || a.retry_cnt > 7 ||
      a.rnr_retry > 7)
    return Refuse(StatusCode::kInvalidArgument, "RTS attributes");
  rts_ = a;
  next_psn_ = a.sq_psn;
  retry_left_ = a.retry_cnt;
  rnr_left_ = a.rnr_retry;
  state_ = QpState::kRts;
  return OkStatus();
}

Status SimQp::ModifyToError() {
  if (killed_) return OkStatus();  // already there, for good
  EnterError();
  return OkStatus();
}

Status SimQp::ModifyToReset() {
  if (killed_) return Refuse(StatusCode::kFailedPrecondition, "QP was killed");
  sq_.clear();
  rq_.clear();
  sent_ = next_tx_ = 0;
  retired_ = posted_;
  ack_deadline_.reset();
  rnr_until_.reset();
  nak_sent_ = false;
  state_ = QpState::kReset;
  return OkStatus();
}

void SimQp::EnterError() {
  state_ = QpState::kError;
  ack_deadline_.reset();
  rnr_until_.reset();
  sent_ = next_tx_ = 0;
  // Flushed in posting order: the send queue, then the receive queue.
  while (!sq_.empty()) {
    CompleteSend(sq_.front(), WcStatus::kWrFlushErr);
    sq_.pop_front();
  }
  while (!rq_.empty()) {
    CompleteRecv(rq_.front(), WcStatus::kWrFlushErr, 0, false);
    rq_.pop_front();
  }
}

// ---- QP: posting ----

Status SimQp::PostSend(std::span<const SendWr> wrs, size_t* posted) {
  if (posted) *posted = 0;
  if (state_ != QpState::kRts && state_ != QpState::kError)
    return Refuse(StatusCode::kFailedPrecondition,
                  std::string("post send in ") + std::string(ToString(state_)));
  constexpr uint32_t kKnownFlags =
      1 /* FENCE */ | kSendSignaled | kSendSolicited | kSendInline;
  for (const SendWr& wr : wrs) {
    if (wr.opcode != WrOpcode::kSend && wr.opcode != WrOpcode::kRdmaWrite)
      return Refuse(StatusCode::kInvalidArgument, "opcode");
    if (wr.num_sge > caps_.max_send_sge || wr.num_sge > kMaxSge)
      return Refuse(StatusCode::kInvalidArgument, "too many SGEs");
    if (wr.flags & ~kKnownFlags)
      return Refuse(StatusCode::kInvalidArgument, "send flags");
    uint64_t len = 0;
    for (const Sge& s : wr.sges()) len += s.length;
    if ((wr.flags & kSendInline) && len > caps_.max_inline_data)
      return Refuse(StatusCode::kInvalidArgument,
                    "inline payload above max_inline_data");
    if (len > kMaxMessage)
      return Refuse(StatusCode::kInvalidArgument, "message too long");
    if (posted_ - retired_ >= caps_.max_send_wr)
      return Refuse(StatusCode::kResourceExhausted, "send queue full", ENOMEM);

    SendWqe w;
    w.seq = posted_++;
    w.wr = wr;
    w.len = len;
    if (wr.flags & kSendInline) {
      // Copied now, from plain process addresses (lkey not checked).
      w.inline_data.resize(len);
      size_t off = 0;
      for (const Sge& s : wr.sges()) {
        if (s.length == 0) continue;
        std::memcpy(w.inline_data.data() + off,
                    reinterpret_cast<const void*>(s.addr), s.length);
        off += s.length;
      }
    }
    if (state_ == QpState::kError) {
      CompleteSend(w, WcStatus::kWrFlushErr);
    } else {
      const uint32_t mtu = MtuBytes(rtr_.path_mtu);
      w.npkts =
          std::max<uint32_t>(1, static_cast<uint32_t>((len + mtu - 1) / mtu));
      w.psn = next_psn_;
      next_psn_ = (next_psn_ + w.npkts) & kPsnMask;
      sq_.push_back(std::move(w));
    }
    if (posted) ++*posted;
  }
  return OkStatus();
}

Status SimQp::PostRecv(std::span<const RecvWr> wrs, size_t* posted) {
  if (posted) *posted = 0;
  if (state_ == QpState::kReset)
    return Refuse(StatusCode::kFailedPrecondition, "post recv in RESET");
  for (const RecvWr& wr : wrs) {
    if (wr.num_sge > caps_.max_recv_sge || wr.num_sge > kMaxSge)
      return Refuse(StatusCode::kInvalidArgument, "too many SGEs");
    if (rq_.size() >= caps_.max_recv_wr)
      return Refuse(StatusCode::kResourceExhausted, "receive queue full",
                    ENOMEM);
    if (state_ == QpState::kError)
      CompleteRecv(wr, WcStatus::kWrFlushErr, 0, false);
    else
      rq_.push_back(wr);
    if (posted) ++*posted;
  }
  return OkStatus();
}

// ---- QP: completions ----

void SimQp::CompleteSend(const SendWqe& w, WcStatus st) {
  // Successful unsignaled WRs complete silently; errors always report.
  if (st == WcStatus::kSuccess && !(w.wr.flags & kSendSignaled)) return;
  CqEntry e;
  e.wc.wr_id = w.wr.wr_id;
  e.wc.status = st;
  e.wc.opcode =
      w.wr.opcode == WrOpcode::kSend ? WcOpcode::kSend : WcOpcode::kRdmaWrite;
  e.wc.qp_num = qpn_;
  e.qp_id = id_;
  e.is_send = true;
  e.send_seq = w.seq;
  f_.PushCqe(send_cq_, e);
}

void SimQp::CompleteRecv(const RecvWr& r, WcStatus st, uint32_t len, bool sol) {
  CqEntry e;
  e.wc.wr_id = r.wr_id;
  e.wc.status = st;
  e.wc.opcode = WcOpcode::kRecv;
  e.wc.byte_len = st == WcStatus::kSuccess ? len : 0;
  e.wc.qp_num = qpn_;
  e.wc.solicited = sol;
  e.qp_id = id_;
  f_.PushCqe(recv_cq_, e);
}

// ---- QP: requester ----

bool SimQp::CanTransmit() const {
  if (state_ != QpState::kRts || ctx_.dead || rnr_until_) return false;
  if (next_tx_ >= sq_.size()) return false;
  // A WR whose buffer failed its check waits until it is the oldest.
  return next_tx_ == 0 || !sq_[next_tx_].local_err;
}

bool SimQp::Gather(const SendWqe& w, std::vector<std::byte>& out) const {
  if (w.wr.flags & kSendInline) {
    out = w.inline_data;
    return true;
  }
  out.clear();
  out.reserve(w.len);
  for (const Sge& s : w.wr.sges()) {
    if (s.length == 0) continue;
    const SimMr* mr = ctx_.FindLkey(s.lkey);
    if (mr == nullptr || mr->pd_id() != pd_id_ ||
        !mr->Contains(s.addr, s.length))
      return false;
    const std::byte* p = mr->At(s.addr);
    out.insert(out.end(), p, p + s.length);
  }
  return true;
}

void SimQp::Transmit() {
  SendWqe& w = sq_[next_tx_];
  Packet p;
  if (!Gather(w, p.payload)) {
    if (next_tx_ == 0) {
      Fail(WcStatus::kLocProtErr);
    } else {
      w.local_err = true;
    }
    return;
  }
  const bool retransmit = next_tx_ < sent_;
  ++next_tx_;
  if (!retransmit) ++sent_;
  ++f_.stats.requests_sent;
  if (retransmit) ++f_.stats.retransmits;
  ArmAckTimer();

  const int to = f_.DeviceByGid(rtr_.dgid);
  if (to < 0) {
    ++f_.stats.dropped;  // no route: nobody answers, the timer will fire
    return;
  }
  p.to_dev = static_cast<uint32_t>(to);
  p.to_qpn = rtr_.dest_qpn;
  p.psn = w.psn;
  p.npkts = w.npkts;
  p.op = w.wr.opcode;
  p.solicited = w.wr.opcode == WrOpcode::kSend && (w.wr.flags & kSendSolicited);
  p.raddr = w.wr.remote_addr;
  p.rkey = w.wr.rkey;
  f_.Send(ctx_.index(), std::move(p));
}

void SimQp::ArmAckTimer() {
  const uint64_t t = AckTimeoutNs(rts_.timeout);
  if (t != 0 && !ack_deadline_) ack_deadline_ = f_.now() + nanoseconds(t);
}

bool SimQp::AckUpTo(uint32_t psn, bool inclusive) {
  bool progress = false;
  while (sent_ > 0) {
    const int32_t d = PsnDiff(sq_.front().last_psn(), psn);
    if (inclusive ? d > 0 : d >= 0) break;
    CompleteSend(sq_.front(), WcStatus::kSuccess);
    sq_.pop_front();
    --sent_;
    if (next_tx_ > 0) --next_tx_;
    progress = true;
  }
  if (progress) {
    // Forward progress renews both retry budgets, as IBA says.
    retry_left_ = rts_.retry_cnt;
    rnr_left_ = rts_.rnr_retry;
    ack_deadline_.reset();
    if (sent_ > 0) ArmAckTimer();
  }
  return progress;
}

void SimQp::Fail(WcStatus st) {
  if (!sq_.empty()) {
    CompleteSend(sq_.front(), st);
    sq_.pop_front();
  }
  EnterError();
}

void SimQp::OnAck(const Packet& p) {
  switch (p.ack) {
    case AckType::kAck:
      AckUpTo(p.psn, true);
      return;
    case AckType::kRnrNak:
      AckUpTo(p.psn, false);
      if (sent_ == 0 || sq_.front().psn != p.psn) return;  // stale
      if (rts_.rnr_retry != 7) {
        if (rnr_left_ == 0) return Fail(WcStatus::kRnrRetryExcErr);
        --rnr_left_;
      }
      next_tx_ = 0;
      ack_deadline_.reset();
      rnr_until_ = f_.now() + nanoseconds(RnrTimerNs(p.rnr_timer));
      return;
    case AckType::kSeqNak:
      AckUpTo(p.psn, false);
      if (sent_ == 0) return;
      if (retry_left_ == 0) return Fail(WcStatus::kRetryExcErr);
      --retry_left_;
      next_tx_ = 0;
      ack_deadline_.reset();
      return;
    case AckType::kRemAccessNak:
    case AckType::kInvReqNak:
    case AckType::kRemOpNak:
      AckUpTo(p.psn, false);
      if (sent_ == 0) return;
      return Fail(p.ack == AckType::kRemAccessNak ? WcStatus::kRemAccessErr
                  : p.ack == AckType::kInvReqNak  ? WcStatus::kRemInvReqErr
                                                  : WcStatus::kRemOpErr);
  }
}

std::optional<nanoseconds> SimQp::Deadline() const {
  if (state_ != QpState::kRts) return std::nullopt;
  if (rnr_until_) return rnr_until_;
  return ack_deadline_;
}

bool SimQp::FireDueTimer(nanoseconds now) {
  if (state_ != QpState::kRts) return false;
  if (rnr_until_) {
    if (now < *rnr_until_) return false;
    rnr_until_.reset();  // go on sending, from the refused WR
    return true;
  }
  if (!ack_deadline_ || now < *ack_deadline_) return false;
  ack_deadline_.reset();
  ++f_.stats.ack_timeouts;
  if (sent_ == 0) return true;
  if (retry_left_ == 0) {
    Fail(WcStatus::kRetryExcErr);
    return true;
  }
  --retry_left_;
  next_tx_ = 0;
  return true;
}

// ---- QP: responder ----

void SimQp::SendAck(AckType t, uint32_t psn, uint8_t rnr_timer) {
  if (t == AckType::kAck) ++f_.stats.acks;
  const int to = f_.DeviceByGid(rtr_.dgid);
  if (to < 0) {
    ++f_.stats.dropped;
    return;
  }
  Packet a;
  a.is_ack = true;
  a.to_dev = static_cast<uint32_t>(to);
  a.to_qpn = rtr_.dest_qpn;
  a.psn = psn;
  a.ack = t;
  a.rnr_timer = rnr_timer;
  f_.Send(ctx_.index(), std::move(a));
}

void SimQp::ResponderFail(AckType t, uint32_t psn) {
  // RC class C: NAK the request, then this QP goes to error too.
  ++f_.stats.access_naks;
  SendAck(t, psn);
  EnterError();
}

void SimQp::OnRequest(const Packet& p) {
  const int32_t d = PsnDiff(p.psn, epsn_);
  if (d < 0) {  // a duplicate: ACK again, do not execute again
    SendAck(AckType::kAck, (epsn_ - 1) & kPsnMask);
    return;
  }
  if (d > 0) {  // a gap: NAK once, then wait for the expected PSN
    if (!nak_sent_) {
      nak_sent_ = true;
      ++f_.stats.seq_naks;
      SendAck(AckType::kSeqNak, epsn_);
    }
    return;
  }
  const uint64_t len = p.payload.size();
  if (p.op == WrOpcode::kRdmaWrite) {
    if (!(init_.access & kRemoteWrite))
      return ResponderFail(AckType::kInvReqNak, p.psn);
    if (len > 0) {  // a zero-length WRITE checks no key
      SimMr* mr = ctx_.FindRkey(p.rkey);
      if (mr == nullptr || mr->pd_id() != pd_id_ ||
          !(mr->access() & kRemoteWrite) || !mr->Contains(p.raddr, len))
        return ResponderFail(AckType::kRemAccessNak, p.psn);
      std::memcpy(mr->At(p.raddr), p.payload.data(), len);
    }
  } else {
    if (rq_.empty()) {
      nak_sent_ = true;
      ++f_.stats.rnr_naks;
      SendAck(AckType::kRnrNak, p.psn, rtr_.min_rnr_timer);
      return;
    }
    const RecvWr r = rq_.front();
    rq_.pop_front();
    uint64_t room = 0;
    for (const Sge& s : r.sges()) room += s.length;
    if (room < len) {
      CompleteRecv(r, WcStatus::kLocLenErr, 0, false);
      return ResponderFail(AckType::kInvReqNak, p.psn);
    }
    // Check every buffer the message lands in before writing any.
    struct Piece {
      std::byte* dst;
      uint32_t n;
    };
    std::array<Piece, kMaxSge> pieces{};
    size_t np = 0;
    uint64_t left = len;
    for (const Sge& s : r.sges()) {
      if (left == 0) break;
      if (s.length == 0) continue;
      const uint32_t n =
          static_cast<uint32_t>(std::min<uint64_t>(left, s.length));
      const SimMr* mr = ctx_.FindLkey(s.lkey);
      if (mr == nullptr || mr->pd_id() != pd_id_ ||
          !(mr->access() & kLocalWrite) || !mr->Contains(s.addr, n)) {
        CompleteRecv(r, WcStatus::kLocProtErr, 0, false);
        return ResponderFail(AckType::kRemOpNak, p.psn);
      }
      pieces[np++] = {mr->At(s.addr), n};
      left -= n;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < np; ++i) {
      std::memcpy(pieces[i].dst, p.payload.data() + off, pieces[i].n);
      off += pieces[i].n;
    }
    CompleteRecv(r, WcStatus::kSuccess, static_cast<uint32_t>(len),
                 p.solicited);
  }
  nak_sent_ = false;
  epsn_ = (epsn_ + p.npkts) & kPsnMask;
  SendAck(AckType::kAck, (p.psn + p.npkts - 1) & kPsnMask);
}

// ---- SimRdma ----

SimRdma::SimRdma(SimClock& clock, uint64_t seed)
    : f_(std::make_unique<Fabric>(clock, seed)) {}

SimRdma::~SimRdma() = default;

Context& SimRdma::AddDevice(const SimDeviceConfig& c) {
  DeviceAttr a;
  a.name = c.name;
  a.gid = c.gid ? *c.gid : GidFromIpv4(c.ipv4);
  a.gid_index = c.gid_index;
  // A locally administered unicast MAC derived from the address.
  a.mac = {0x02,
           0x00,
           static_cast<uint8_t>(c.ipv4 >> 24),
           static_cast<uint8_t>(c.ipv4 >> 16),
           static_cast<uint8_t>(c.ipv4 >> 8),
           static_cast<uint8_t>(c.ipv4)};
  a.active_mtu = c.active_mtu;
  a.max_inline = c.max_inline;
  a.max_qp_wr = c.max_qp_wr;
  a.max_sge = c.max_sge;
  a.max_cqe = c.max_cqe;
  const auto index = static_cast<uint32_t>(f_->devices.size());
  f_->devices.push_back(std::make_unique<SimCtx>(*f_, index, std::move(a)));
  return *f_->devices.back();
}

void SimRdma::SetLink(const Context& from, const Context& to, LinkMode mode) {
  auto* a = dynamic_cast<const SimCtx*>(&from);
  auto* b = dynamic_cast<const SimCtx*>(&to);
  if (a == nullptr || b == nullptr) {
    f_->misuse.push_back("SetLink on a foreign context");
    return;
  }
  f_->links[{a->index(), b->index()}].mode = mode;
}

size_t SimRdma::InFlight(const Context& from, const Context& to) const {
  auto* a = dynamic_cast<const SimCtx*>(&from);
  auto* b = dynamic_cast<const SimCtx*>(&to);
  if (a == nullptr || b == nullptr) return 0;
  auto it = f_->links.find({a->index(), b->index()});
  return it == f_->links.end() ? 0 : it->second.q.size();
}

bool SimRdma::Step() {
  Fabric& f = *f_;
  for (auto& [key, link] : f.links) {
    if (link.mode == LinkMode::kHold || link.q.empty()) continue;
    Packet p = std::move(link.q.front());
    link.q.pop_front();
    f.Deliver(p);
    return true;
  }
  for (auto& [id, qp] : f.qps) {
    if (qp->CanTransmit()) {
      qp->Transmit();
      return true;
    }
  }
  for (auto& [id, qp] : f.qps)
    if (qp->FireDueTimer(f.now())) return true;
  return false;
}

size_t SimRdma::RunUntilIdle() {
  size_t n = 0;
  while (Step()) {
    if (++n >= kMaxStepsPerRun) {
      f_->misuse.push_back("RunUntilIdle did not settle");
      break;
    }
  }
  return n;
}

std::optional<nanoseconds> SimRdma::NextDeadline() const {
  std::optional<nanoseconds> best;
  for (const auto& [id, qp] : f_->qps) {
    const auto d = qp->Deadline();
    if (d && (!best || *d < *best)) best = d;
  }
  return best;
}

void SimRdma::RunFor(nanoseconds d) {
  const nanoseconds end = f_->now() + d;
  RunUntilIdle();
  for (size_t hops = 0;; ++hops) {
    const auto next = NextDeadline();
    if (!next || *next > end) break;
    if (hops >= kMaxTimerHops) {
      f_->misuse.push_back("RunFor: too many timer expiries");
      break;
    }
    f_->clock.Set(*next);
    RunUntilIdle();
  }
  f_->clock.Set(end);
  RunUntilIdle();
}

void SimRdma::Kill(Qp& qp) {
  auto* q = dynamic_cast<SimQp*>(&qp);
  if (q == nullptr) {
    f_->misuse.push_back("Kill on a foreign QP");
    return;
  }
  q->Kill();
}

void SimRdma::KillDevice(Context& ctx) {
  auto* c = dynamic_cast<SimCtx*>(&ctx);
  if (c == nullptr) {
    f_->misuse.push_back("KillDevice on a foreign context");
    return;
  }
  c->dead = true;
  for (auto& [qpn, qp] : c->qps) qp->Kill();
}

std::vector<SimMrInfo> SimRdma::RegisteredMrs(const Context& ctx) const {
  std::vector<SimMrInfo> out;
  if (auto* c = dynamic_cast<const SimCtx*>(&ctx))
    for (const auto& [rkey, mr] : c->by_rkey) out.push_back(mr->info());
  return out;
}

const std::vector<std::string>& SimRdma::misuse() const { return f_->misuse; }
const SimRdmaStats& SimRdma::stats() const { return f_->stats; }

}  // namespace usmc::dev::rdma
