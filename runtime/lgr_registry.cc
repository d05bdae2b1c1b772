#include "runtime/lgr_registry.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <utility>
#include <variant>

#include "base/overloaded.h"
#include "wire/cdc.h"
#include "wire/llc.h"
#include "wire/reason.h"

namespace usmc::runtime {

namespace rdma = dev::rdma;
using engine::Event;

namespace {

// wr_id = kind << 56 | token (CDC, WRITE) or ring slot (receives).
enum WrKind : uint64_t { kWrLlc = 1, kWrCdc = 2, kWrWrite = 3, kWrRecv = 4 };
constexpr uint64_t WrId(WrKind k, uint32_t low) {
  return (uint64_t{k} << 56) | low;
}
constexpr WrKind KindOf(uint64_t wr_id) { return WrKind(wr_id >> 56); }
constexpr uint32_t LowOf(uint64_t wr_id) { return uint32_t(wr_id); }

// A receive slot holds one 44-byte message (SMCR.md §2.1: 48 B slots); a
// longer V2 LLC (ADD_LINK, 88 B) continues in the link's spill buffer.
constexpr size_t kSlot = 48;
constexpr size_t kSpill = 8192;
constexpr size_t kPage = 4096;

std::byte* PageAlign(std::vector<std::byte>& mem, size_t size) {
  mem.assign(size + kPage, std::byte{0});
  const auto p = reinterpret_cast<uintptr_t>(mem.data());
  return reinterpret_cast<std::byte*>((p + kPage - 1) & ~uintptr_t{kPage - 1});
}

uint32_t Be32(const std::byte* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) |
         (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

}  // namespace

// One link group: the engine's machine and what it runs on.
struct LinkGroup {
  uint32_t id = 0;
  engine::Role role = engine::Role::kClient;
  std::optional<engine::Lgr> lgr;
  std::unique_ptr<rdma::Pd> pd;
  std::unique_ptr<rdma::Qp> qp;
  uint32_t qpn = 0;
  uint32_t psn = 0;
  std::vector<std::byte> ring_mem, spill_mem;
  std::byte* ring = nullptr;
  std::byte* spill = nullptr;
  std::unique_ptr<rdma::Mr> ring_mr, spill_mr;
  std::vector<SmcrConn*> conns;
  std::vector<SmcrConn*> waiting;  // Joins deferred until the link is up
  std::optional<engine::TimePoint> deadline;
  bool ended = false;
  // A group we end ourselves (DELETE_LINK ALL) keeps its QP, receiving,
  // until the peer's own DELETE_LINK ALL arrived or this passed: the kernel
  // answers with one and frees its group only once that send completed
  // (SMC_LLC_WAIT_TIME); a QP gone before makes it wait the full 2 s.
  std::optional<engine::TimePoint> linger_until;
  bool peer_deleted = false;  // the peer's DELETE_LINK arrived
  // LLC that arrived while the Lgr still awaited its QP: a client writes
  // its CLC Confirm before it starts the link, and the server's
  // CONFIRM_LINK may be polled (progress thread) in between. Fed to the
  // Lgr after LgrQpReady, as the kernel's LLC queue keeps it.
  std::vector<std::vector<std::byte>> early_llc;
  bool failed = false;       // ended by an error: nothing to wait for
  uint32_t outstanding = 0;  // signaled sends posted, not completed
  // Sends that found the send queue full, in order (an inline payload is
  // kept here until posted).
  struct Backlog {
    rdma::SendWr wr;
    std::array<std::byte, wire::kCdcMsgLen> payload{};
  };
  std::deque<Backlog> backlog;
  // What the last LGR call answered (Join reads it).
  uint32_t added_token = 0;
  bool rtoken_ok = true;
  uint64_t confirm_rkey_sent = 0, delete_rkey_sent = 0;
  uint64_t confirm_rkey_received = 0, delete_rkey_received = 0;
};

namespace {
bool InFirstContact(const LinkGroup& x) {
  return !x.ended && x.lgr && x.lgr->state() != engine::LgrState::kActive &&
         x.lgr->state() != engine::LgrState::kEnded;
}
}  // namespace

// ---- SmcrConn ----

SmcrConn::SmcrConn(LgrRegistry& reg, const engine::EngineParams& params,
                   const wire::Gid& peer_gid)
    : reg_(reg),
      params_(params),
      peer_gid_(peer_gid),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

SmcrConn::~SmcrConn() {
  {
    std::lock_guard<std::mutex> lock(reg_.mu_);
    if (deferred_on_ != nullptr) {
      std::erase(deferred_on_->waiting, this);
      deferred_on_ = nullptr;
    }
    reg_.ReleaseConn(*this);
    std::erase(reg_.conns_, this);
    reg_.PublishLocked();
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

namespace {
// A group whose first contact is still running (SMCR.md §3: a second
// connection to the same peer waits for it instead of making another).
bool InFirstContact(const LinkGroup& x);
}  // namespace

void SmcrConn::Join(const engine::SmcrJoinLgr& a, std::vector<Event>& answers) {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  LgrRegistry::Republish republish{reg_};
  joined_once_ = true;
  const engine::SmcrLink& l = a.link;
  if (!a.first_contact || params_.role == engine::Role::kServer) {
    // The group this Join must use may still be in its first contact (the
    // peer answered a second connection before our link came up): wait
    // for it, as the kernel's lgr_pending mutex makes its joins wait.
    for (auto& x : reg_.groups_) {
      if (x->role == params_.role && InFirstContact(*x) &&
          x->lgr->params().peer_system_id == l.peer_system_id &&
          x->lgr->params().peer_gid == l.peer_gid) {
        deferred_join_ = a;
        deferred_on_ = x.get();
        x->waiting.push_back(this);
        return;
      }
    }
  }
  JoinLocked(a, answers);
}

void SmcrConn::JoinLocked(const engine::SmcrJoinLgr& a,
                          std::vector<Event>& answers) {
  LinkGroup* g = nullptr;
  bool first = a.first_contact;
  const engine::SmcrLink& l = a.link;
  auto live = [](const LinkGroup& x) {
    return !x.ended && x.lgr && x.lgr->state() == engine::LgrState::kActive;
  };
  if (params_.role == engine::Role::kClient) {
    if (!first) {
      // smcr_lgr_match: the Accept's system ID, the link's peer QPN, GID.
      for (auto& x : reg_.groups_) {
        if (x->role == engine::Role::kClient && live(*x) &&
            x->lgr->params().peer_system_id == l.peer_system_id &&
            x->lgr->params().peer_qpn == l.peer_qpn &&
            x->lgr->params().peer_gid == l.peer_gid) {
          g = x.get();
          break;
        }
      }
      if (g == nullptr) {
        answers.push_back(engine::SmcrLgrJoinFailed{wire::kReasonSyncErr});
        return;
      }
    } else {
      g = reg_.NewGroup(engine::Role::kClient, l, params_.smcr_system_id,
                        answers);
      if (g == nullptr) return;
    }
  } else {
    for (auto& x : reg_.groups_) {
      if (x->role == engine::Role::kServer && live(*x) &&
          x->lgr->params().peer_system_id == l.peer_system_id &&
          x->lgr->params().peer_gid == l.peer_gid &&
          x->lgr->data().num_tokens < x->lgr->params().max_conns) {
        g = x.get();
        break;
      }
    }
    first = g == nullptr;
    if (first) {
      engine::SystemId fresh = engine::NewSystemId(&reg_.entropy_);
      g = reg_.NewGroup(engine::Role::kServer, l, fresh, answers);
      if (g == nullptr) return;
    }
  }
  group_ = g;
  g->conns.push_back(this);
  auto fail = [&](uint32_t reason) {
    reg_.ReleaseConn(*this);
    answers.push_back(engine::SmcrLgrJoinFailed{reason});
  };
  if (!reg_.RegisterRmb(*this)) return fail(wire::kReasonMem);
  g->added_token = 0;
  reg_.RunLgr(*g, engine::LgrConnOpen{});
  token_ = g->added_token;
  if (token_ == 0) return fail(wire::kReasonMaxConnErr);
  if (params_.role == engine::Role::kClient) {
    g->rtoken_ok = true;
    reg_.RunLgr(*g, engine::LgrAddPeerRtoken{l.peer_rkey, l.peer_vaddr});
    if (!g->rtoken_ok) return fail(wire::kReasonErrRtok);
  }
  answers.push_back(engine::SmcrLgrJoined{first, token_, g->lgr->system_id(),
                                          g->qpn, g->psn, rmb_mr_->rkey(),
                                          rmb_mr_->iova()});
}

void SmcrConn::StartLink(const engine::SmcrStartLink& a,
                         std::vector<Event>& answers) {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  LgrRegistry::Republish republish{reg_};
  LinkGroup* g = group_;
  if (g == nullptr || g->ended) {
    answers.push_back(engine::SmcrLinkFailed{wire::kReasonTimeoutCl});
    return;
  }
  if (g->role == engine::Role::kServer) {
    // The Confirm names the client's QP: RTR and RTS now (the kernel
    // server's order), then CONFIRM_LINK.
    engine::LgrParams p = g->lgr->params();
    p.peer_qpn = a.link.peer_qpn;
    p.peer_mac = a.link.peer_mac;
    const engine::LgrData d = g->lgr->data();
    g->lgr.emplace(p, d);
    Status s = g->qp->ModifyToRtr({.path_mtu = rdma::Mtu(a.link.mtu),
                                   .dest_qpn = a.link.peer_qpn,
                                   .rq_psn = a.link.peer_psn,
                                   .dgid = a.link.peer_gid,
                                   .sgid_index = reg_.ctx_.attr().gid_index});
    if (s.ok()) s = g->qp->ModifyToRts({.sq_psn = g->psn});
    if (!s.ok()) {
      answers.push_back(engine::SmcrLinkFailed{wire::kReasonTimeoutCl});
      return;
    }
    reg_.RunLgr(*g,
                engine::LgrAddPeerRtoken{a.link.peer_rkey, a.link.peer_vaddr});
  }
  awaiting_link_ = true;
  reg_.RunLgr(*g, engine::LgrQpReady{});
  std::vector<std::vector<std::byte>> early = std::move(g->early_llc);
  g->early_llc.clear();
  for (const std::vector<std::byte>& m : early) {
    if (g->ended) break;
    reg_.RunLgr(*g, engine::LgrLlcReceived{std::span(m.data(), m.size())});
  }
}

void SmcrConn::ConfirmRkey(const engine::SmcrConfirmRkey& a,
                           std::vector<Event>& answers) {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  LgrRegistry::Republish republish{reg_};
  if (group_ == nullptr || group_->ended) {
    answers.push_back(engine::SmcrRkeyConfirmed{false});
    return;
  }
  awaiting_rkey_ = true;
  reg_.RunLgr(*group_, engine::LgrConfirmRkey{a.rkey, a.vaddr});
}

void SmcrConn::HandshakeDone(const engine::SmcrLink& link) {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  LgrRegistry::Republish republish{reg_};
  peer_rkey_ = link.peer_rkey;
  peer_vaddr_ = link.peer_vaddr;
  peer_rmb_size_ = link.peer_rmb_size;
  if (group_ == nullptr || group_->pd == nullptr) return;
  // D4: the sndbuf mirrors the peer's RMB; a local-only region, so WRITEs
  // can read it, at a random IOVA like every other region.
  std::vector<std::byte> mem;
  std::byte* p = PageAlign(mem, peer_rmb_size_);
  sndbuf_ = std::move(mem);
  sndbuf_base_ = p;
  Result<std::unique_ptr<rdma::Mr>> mr = group_->pd->RegisterMr(
      p, peer_rmb_size_, rdma::kLocalWrite, reg_.RandomIova(peer_rmb_size_));
  if (mr.ok()) sndbuf_mr_ = std::move(*mr);
}

void SmcrConn::Write(const engine::RdmaWrite& a) {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  if (!sndbuf_mr_ || uint64_t{a.offset} + a.len > peer_rmb_size_) return;
  rdma::SendWr w;
  w.wr_id = WrId(kWrWrite, token_);
  w.opcode = rdma::WrOpcode::kRdmaWrite;
  w.sg[0] = {sndbuf_mr_->iova() + a.offset, a.len, sndbuf_mr_->lkey()};
  w.num_sge = 1;
  w.remote_addr = peer_vaddr_ + a.offset;
  w.rkey = peer_rkey_;
  pending_writes_.push_back(w);
}

void SmcrConn::Send(const engine::PostSend& a) {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  std::vector<rdma::SendWr> wrs = std::move(pending_writes_);
  pending_writes_.clear();
  if (group_ == nullptr || group_->ended || group_->qp == nullptr) return;
  rdma::SendWr s;
  s.wr_id = WrId(kWrCdc, token_);
  s.opcode = rdma::WrOpcode::kSend;
  s.flags = rdma::kSendSignaled | rdma::kSendSolicited | rdma::kSendInline;
  s.sg[0] = {reinterpret_cast<uint64_t>(a.bytes.data()),
             uint32_t(a.bytes.size()), 0};
  s.num_sge = 1;
  wrs.push_back(s);
  if (reg_.opts_.record_sends) {
    reg_.sends_.emplace_back(a.bytes.begin(), a.bytes.end());
  }
  reg_.PostSends(*group_, wrs);
}

void SmcrConn::Leave(const engine::SmcrLeaveLgr& a) {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  LgrRegistry::Republish republish{reg_};
  LinkGroup* g = group_;
  if (g != nullptr && !g->ended && a.token == token_) {
    reg_.RunLgr(*g, engine::LgrConnClosed{a.token});
    if (a.announced && !g->ended) {
      reg_.RunLgr(*g, engine::LgrDeleteRkey{a.rkey});
    }
    if (a.end_group && !g->ended) {
      reg_.RunLgr(*g, engine::LgrTerminate{/*orderly=*/false});
    }
  }
  reg_.ReleaseConn(*this);
}

std::vector<Event> SmcrConn::TakeEvents() {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  std::vector<Event> out(events_.begin(), events_.end());
  events_.clear();
  return out;
}

bool SmcrConn::HasEvents() const {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  return !events_.empty();
}

void SmcrConn::SetWake(std::function<void()> wake) {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  wake_ = std::move(wake);
}

void SmcrConn::WakeAt(std::optional<engine::TimePoint> deadline) {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  wake_at_ = deadline;
  // The progress thread may sleep past it otherwise.
  if (deadline && reg_.kick_) reg_.kick_();
}

uint32_t SmcrConn::token() const {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  return token_;
}

std::optional<uint32_t> SmcrConn::lgr_id() const {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  if (group_ == nullptr) return std::nullopt;
  return group_->id;
}

SmcrRecord SmcrConn::StatusFields() const {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  SmcrRecord r;
  r.token = token_;
  if (group_ == nullptr) return r;
  r.lgr_id = group_->id;
  r.qpn = group_->qpn;
  if (group_->lgr) {
    r.peer_qpn = group_->lgr->params().peer_qpn;
    std::memcpy(r.peer_gid, group_->lgr->params().peer_gid.data(),
                sizeof(r.peer_gid));
  }
  return r;
}

std::vector<MrRecord> SmcrConn::Regions() const {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  std::vector<MrRecord> out;
  auto add = [&](const rdma::Mr* mr, const std::byte* p, bool rmb) {
    if (mr == nullptr) return;
    out.push_back({reinterpret_cast<uint64_t>(p), mr->iova(), mr->length(),
                   mr->access(), mr->rkey(), rmb});
  };
  add(rmb_mr_.get(), rmb_, true);
  add(sndbuf_mr_.get(), sndbuf_base_, false);
  return out;
}

Result<dev::BufferInfo> SmcrConn::RegisterBuffer(const dev::RegisterRequest&) {
  return Status(StatusCode::kFailedPrecondition,
                "SMC-R registers its RMB when it joins a link group");
}

bool SmcrConn::registered() const {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  return rmb_mr_ != nullptr;
}

dev::BufferInfo SmcrConn::own() const {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  return {token_, rmb_size_};
}

Status SmcrConn::ReadOwn(uint64_t offset, std::span<std::byte> out) const {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  if (rmb_ == nullptr || offset > rmb_size_ || out.size() > rmb_size_ - offset)
    return Status(StatusCode::kInvalidArgument, "outside the RMB");
  std::memcpy(out.data(), rmb_ + offset, out.size());
  return Status();
}

Result<dev::BufferInfo> SmcrConn::AttachPeerBuffer(const dev::AttachRequest&) {
  return Status(StatusCode::kFailedPrecondition,
                "SMC-R writes the peer's RMB through the link");
}

bool SmcrConn::attached() const {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  return sndbuf_mr_ != nullptr;
}

dev::BufferInfo SmcrConn::peer() const {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  return {peer_rkey_, peer_rmb_size_};
}

Status SmcrConn::MoveData(uint64_t offset, std::span<const std::byte> data) {
  std::lock_guard<std::mutex> lock(reg_.mu_);
  if (sndbuf_base_ == nullptr || offset > peer_rmb_size_ ||
      data.size() > peer_rmb_size_ - offset)
    return Status(StatusCode::kInvalidArgument, "outside the sndbuf");
  std::memcpy(sndbuf_base_ + offset, data.data(), data.size());
  return Status();
}

dev::WaitResult SmcrConn::Wait(dev::ReadyFn ready,
                               std::chrono::nanoseconds timeout,
                               const dev::WaitOptions& opts) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  const bool forever = timeout >= std::chrono::nanoseconds::max() / 4;
  for (;;) {
    if (ready()) return dev::WaitResult::kReady;
    int ms = -1;
    if (!forever) {
      const auto left = timeout - (Clock::now() - start);
      if (left <= std::chrono::nanoseconds::zero())
        return dev::WaitResult::kTimedOut;
      ms = int(std::min<int64_t>(
          std::chrono::ceil<std::chrono::milliseconds>(left).count(), 1 << 30));
    }
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {opts.extra_fd, POLLIN, 0}};
    const int n = ::poll(fds, opts.extra_fd >= 0 ? 2 : 1, ms);
    if (n < 0 && errno == EINTR) {
      if (opts.return_on_signal) return dev::WaitResult::kInterrupted;
      continue;
    }
    if (n > 0 && (fds[0].revents & POLLIN)) {
      uint64_t v = 0;
      (void)!::read(wake_fd_, &v, sizeof v);
      continue;  // ready() decides
    }
    if (n > 0 && opts.extra_fd >= 0 && fds[1].revents != 0) {
      if (ready()) return dev::WaitResult::kReady;
      return dev::WaitResult::kExtraFdReady;
    }
  }
}

bool SmcrConn::Drain(bool, bool) {
  // Events queued before this read are taken by the caller's next look
  // (SmcSocket::Refresh follows every Drain); each later one writes again.
  uint64_t v = 0;
  (void)!::read(wake_fd_, &v, sizeof v);
  return true;
}

Status SmcrConn::ExportFds(std::array<int, 4>&) const {
  return Status(StatusCode::kFailedPrecondition,
                "SMC-R connections do not move between processes");
}

// ---- LgrRegistry ----

LgrRegistry::LgrRegistry(rdma::Context& ctx, engine::Entropy& entropy,
                         const LgrRegistryOptions& options)
    : ctx_(ctx), entropy_(entropy), opts_(options) {
  if (auto ch = ctx_.CreateCompChannel(); ch.ok()) channel_ = std::move(*ch);
  if (auto cq = ctx_.CreateCq(1024, channel_.get()); cq.ok())
    send_cq_ = std::move(*cq);
  if (auto cq = ctx_.CreateCq(1024, channel_.get()); cq.ok())
    recv_cq_ = std::move(*cq);
  if (send_cq_) (void)send_cq_->RequestNotify(false);
  if (recv_cq_) (void)recv_cq_->RequestNotify(true);
}

LgrRegistry::~LgrRegistry() {
  std::lock_guard<std::mutex> lock(mu_);
  if (status_) {
    for (const auto& [key, slot] : slots_) status_->release(slot);
    slots_.clear();
  }
  // verbs' order: QPs, MRs, CQs, the channel, then the PDs.
  for (auto& g : groups_) g->qp.reset();
  for (SmcrConn* c : conns_) {
    c->rmb_mr_.reset();
    c->sndbuf_mr_.reset();
    c->group_ = nullptr;
  }
  for (auto& g : groups_) {
    g->ring_mr.reset();
    g->spill_mr.reset();
  }
  // Events the channel still holds were raised for these CQs.
  if (channel_) {
    for (int i = 0; i < 4096; ++i) {
      Result<rdma::Cq*> cq = channel_->GetEvent();
      if (!cq.ok() || *cq == nullptr) break;
      (*cq)->AckEvents(1);
    }
  }
  send_cq_.reset();
  recv_cq_.reset();
  channel_.reset();
  groups_.clear();
}

engine::EngineParams LgrRegistry::ConnParams(const engine::EngineParams& base,
                                             const wire::Gid& peer_gid) {
  std::lock_guard<std::mutex> lock(mu_);
  engine::EngineParams p = base;
  const rdma::DeviceAttr& a = ctx_.attr();
  p.smcr_enabled = true;
  p.smcr.gid = a.gid;
  p.smcr.mac = a.mac;
  p.smcr.mtu = uint8_t(a.active_mtu);
  p.smcr.rmb_rkey = 0;  // registered on the group's PD at Join
  p.smcr.rmb_iova = 0;
  if (p.role == engine::Role::kClient) {
    // The peer finds our group by the Proposal's system ID: propose the one
    // we have with it, or the fresh one a first contact will take.
    for (auto& g : groups_) {
      if (g->role == engine::Role::kClient && !g->ended && g->lgr &&
          g->lgr->params().peer_gid == peer_gid) {
        p.smcr_system_id = g->lgr->system_id();
        return p;
      }
    }
    // A first contact to this peer already proposed (its Accept not yet
    // here): propose its system ID too, so that the peer answers this one
    // on the same group and our Join waits for it (SMCR.md §3).
    for (const SmcrConn* c : conns_) {
      if (c->params_.role == engine::Role::kClient && !c->joined_once_ &&
          c->peer_gid_ == peer_gid && peer_gid != wire::Gid{}) {
        p.smcr_system_id = c->params_.smcr_system_id;
        return p;
      }
    }
    p.smcr_system_id = engine::NewSystemId(&entropy_);
  }
  return p;
}

std::unique_ptr<SmcrConn> LgrRegistry::NewConn(
    const engine::EngineParams& params, const wire::Gid& peer_gid) {
  std::unique_ptr<SmcrConn> c(new SmcrConn(*this, params, peer_gid));
  std::lock_guard<std::mutex> lock(mu_);
  conns_.push_back(c.get());
  return c;
}

uint64_t LgrRegistry::RandomIova(uint64_t length) {
  // D3: page-aligned, random, in the upper half (never a user-space
  // address of any process), far from wrapping.
  (void)length;
  return (entropy_.Random64() & 0x3ffffffffffff000ULL) | 0x8000000000000000ULL;
}

bool LgrRegistry::RegisterRmb(SmcrConn& c) {
  LinkGroup& g = *c.group_;
  const uint32_t size = c.params_.smcr.rmb_size;
  c.rmb_ = PageAlign(c.rmb_mem_, size);
  c.rmb_size_ = size;
  Result<std::unique_ptr<rdma::Mr>> mr = g.pd->RegisterMr(
      c.rmb_, size, rdma::kLocalWrite | rdma::kRemoteWrite, RandomIova(size));
  if (!mr.ok()) return false;
  c.rmb_mr_ = std::move(*mr);
  return true;
}

LinkGroup* LgrRegistry::NewGroup(engine::Role role,
                                 const engine::SmcrLink& link,
                                 const engine::SystemId& system_id,
                                 std::vector<Event>& answers) {
  auto fail = [&]() -> LinkGroup* {
    answers.push_back(engine::SmcrLgrJoinFailed{wire::kReasonNoSmcrDev});
    return nullptr;
  };
  if (!send_cq_ || !recv_cq_) return fail();
  auto g = std::make_unique<LinkGroup>();
  g->role = role;
  next_lgr_id_ += 0x100;  // smc_lgr_list.num += 256
  g->id = next_lgr_id_;
  auto pd = ctx_.AllocPd();
  if (!pd.ok()) return fail();
  g->pd = std::move(*pd);
  const rdma::QpCaps caps{.max_send_wr = opts_.send_queue,
                          .max_recv_wr = opts_.recv_ring,
                          .max_send_sge = 2,
                          .max_recv_sge = 2,
                          .max_inline_data = 64};
  auto qp = g->pd->CreateRcQp(*send_cq_, *recv_cq_, caps);
  if (!qp.ok()) {
    g->pd.reset();
    return fail();
  }
  g->qp = std::move(*qp);
  g->qpn = g->qp->qpn();
  g->psn = uint32_t(entropy_.Random64()) & rdma::kPsnMask;
  g->ring = PageAlign(g->ring_mem, kSlot * opts_.recv_ring);
  g->spill = PageAlign(g->spill_mem, kSpill);
  auto rmr = g->pd->RegisterMr(g->ring, kSlot * opts_.recv_ring,
                               rdma::kLocalWrite, RandomIova(0));
  auto smr =
      g->pd->RegisterMr(g->spill, kSpill, rdma::kLocalWrite, RandomIova(0));
  // INIT: the QP takes remote writes only (SMCR.md §1.5, §4); the receive
  // ring goes in before any peer can send.
  Status s = rmr.ok() && smr.ok() ? g->qp->ModifyToInit({}) : rmr.status();
  if (rmr.ok()) g->ring_mr = std::move(*rmr);
  if (smr.ok()) g->spill_mr = std::move(*smr);
  for (uint32_t i = 0; s.ok() && i < opts_.recv_ring; ++i) RepostRecv(*g, i);
  if (s.ok() && role == engine::Role::kClient) {
    // The Accept named the server's QP: RTR now, RTS at CONFIRM_LINK.
    s = g->qp->ModifyToRtr({.path_mtu = rdma::Mtu(link.mtu),
                            .dest_qpn = link.peer_qpn,
                            .rq_psn = link.peer_psn,
                            .dgid = link.peer_gid,
                            .sgid_index = ctx_.attr().gid_index});
  }
  if (!s.ok()) {
    g->qp.reset();
    g->ring_mr.reset();
    g->spill_mr.reset();
    g->pd.reset();
    return fail();
  }
  engine::LgrParams p;
  p.role = role;
  p.local_mac = ctx_.attr().mac;
  p.local_gid = ctx_.attr().gid;
  p.local_qpn = g->qpn;
  p.peer_system_id = link.peer_system_id;
  p.peer_gid = link.peer_gid;
  p.peer_mac = link.peer_mac;
  p.peer_qpn = link.peer_qpn;
  p.lgr_id = g->id;
  p.max_links = link.max_links != 0 ? link.max_links : 1;
  p.max_conns = link.max_conns != 0 ? link.max_conns : 255;
  p.llc_timeout = opts_.llc_timeout;
  p.first_link_timeout = 2 * opts_.llc_timeout;
  p.testlink_time = opts_.testlink_time;
  p.idle_time = opts_.idle_time;
  engine::LgrData d;
  d.system_id = system_id;
  g->lgr.emplace(p, d);
  groups_.push_back(std::move(g));
  return groups_.back().get();
}

void LgrRegistry::RepostRecv(LinkGroup& g, uint32_t slot) {
  if (!g.qp || !g.ring_mr || !g.spill_mr) return;
  rdma::RecvWr r;
  r.wr_id = WrId(kWrRecv, slot);
  r.sg[0] = {g.ring_mr->iova() + uint64_t{slot} * kSlot, kSlot,
             g.ring_mr->lkey()};
  r.sg[1] = {g.spill_mr->iova(), kSpill, g.spill_mr->lkey()};
  r.num_sge = 2;
  (void)g.qp->PostRecv({&r, 1});
}

void LgrRegistry::RunLgr(LinkGroup& g, const engine::LgrEvent& e) {
  if (!g.lgr) return;
  RunLgrActions(g, g.lgr->OnEvent(e, Now()));
}

void LgrRegistry::RunLgrActions(LinkGroup& g,
                                const engine::LgrActions& actions) {
  auto conn_by_token = [&](uint32_t token) -> SmcrConn* {
    for (SmcrConn* c : g.conns) {
      if (c->token_ == token) return c;
    }
    return nullptr;
  };
  bool deferred = false;  // the first contact ended: deferred Joins run
  for (const engine::LgrAction& action : actions) {
    std::visit(
        base::Overloaded{
            [&](const engine::LgrSendLlc& a) {
              if (!a.response && a.type == wire::LlcType::kConfirmRkey)
                ++g.confirm_rkey_sent;
              if (!a.response && a.type == wire::LlcType::kDeleteRkey)
                ++g.delete_rkey_sent;
              PostLlc(g, a.bytes);
            },
            [&](const engine::LgrQpToRts&) {
              if (g.qp) (void)g.qp->ModifyToRts({.sq_psn = g.psn});
            },
            [&](const engine::LgrLinkUp&) {
              for (SmcrConn* c : g.conns) {
                if (!c->awaiting_link_) continue;
                c->awaiting_link_ = false;
                Queue(*c, engine::SmcrLinkUp{});
              }
              deferred = true;
            },
            [&](const engine::LgrFirstContactFailed& a) {
              for (SmcrConn* c : g.conns) {
                if (!c->awaiting_link_) continue;
                c->awaiting_link_ = false;
                Queue(*c, engine::SmcrLinkFailed{a.clc_reason});
              }
              deferred = true;
            },
            [&](const engine::LgrConnAdded& a) { g.added_token = a.token; },
            [&](const engine::LgrConnRefused&) { g.added_token = 0; },
            [&](const engine::LgrPeerRtokenAdded& a) { g.rtoken_ok = a.ok; },
            [&](const engine::LgrRkeyConfirmed& a) {
              for (SmcrConn* c : g.conns) {
                if (c->awaiting_rkey_ && c->rmb_mr_ &&
                    c->rmb_mr_->rkey() == a.rkey) {
                  c->awaiting_rkey_ = false;
                  Queue(*c, engine::SmcrRkeyConfirmed{a.ok});
                  break;
                }
              }
            },
            [&](const engine::LgrRkeyDeleted&) {},
            [&](const engine::LgrArmTimer& a) {
              g.deadline = a.deadline;
              if (kick_) kick_();
            },
            [&](const engine::LgrCancelTimer&) { g.deadline.reset(); },
            [&](const engine::LgrEnded& a) {
              g.ended = true;
              g.deadline.reset();
              if (!g.peer_deleted && !g.failed && g.qp) {
                g.linger_until = Now() + opts_.llc_timeout;
              }
              // smc_conn_kill: every connection of the group aborts.
              for (uint32_t t : a.abort_tokens) {
                if (SmcrConn* c = conn_by_token(t)) {
                  if (!c->aborted_) {
                    c->aborted_ = true;
                    Queue(*c, engine::DeviceFailed{});
                  }
                }
              }
              for (SmcrConn* c : g.conns) {
                if (c->awaiting_rkey_) {
                  c->awaiting_rkey_ = false;
                  Queue(*c, engine::SmcrRkeyConfirmed{false});
                }
                if (c->awaiting_link_) {
                  c->awaiting_link_ = false;
                  Queue(*c, engine::SmcrLinkFailed{wire::kReasonTimeoutCl});
                }
              }
              deferred = true;
            },
        },
        action);
  }
  if (deferred && !g.waiting.empty()) RunDeferredJoins(g);
}

void LgrRegistry::Queue(SmcrConn& c, const Event& e) {
  c.events_.push_back(e);
  if (c.wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(c.wake_fd_, &one, sizeof one);
  }
  if (c.wake_) c.wake_();
}

void LgrRegistry::RunDeferredJoins(LinkGroup& g) {
  std::vector<SmcrConn*> waiting = std::move(g.waiting);
  g.waiting.clear();
  for (SmcrConn* c : waiting) {
    if (c->deferred_on_ != &g || !c->deferred_join_) continue;
    const engine::SmcrJoinLgr a = *c->deferred_join_;
    c->deferred_join_.reset();
    c->deferred_on_ = nullptr;
    std::vector<Event> answers;
    c->JoinLocked(a, answers);
    for (const Event& e : answers) Queue(*c, e);
  }
}

void LgrRegistry::PostLlc(LinkGroup& g, std::span<const std::byte> bytes) {
  if (!g.qp) return;
  rdma::SendWr s;
  s.wr_id = WrId(kWrLlc, 0);
  s.opcode = rdma::WrOpcode::kSend;
  s.flags = rdma::kSendSignaled | rdma::kSendSolicited | rdma::kSendInline;
  s.sg[0] = {reinterpret_cast<uint64_t>(bytes.data()), uint32_t(bytes.size()),
             0};
  s.num_sge = 1;
  if (opts_.record_sends) sends_.emplace_back(bytes.begin(), bytes.end());
  PostSends(g, {&s, 1});
}

bool LgrRegistry::PostSends(LinkGroup& g, std::span<const rdma::SendWr> wrs) {
  size_t i = 0;
  if (g.backlog.empty() && g.qp) {
    for (; i < wrs.size(); ++i) {
      const Status s = g.qp->PostSend({&wrs[i], 1});
      if (s.code() == StatusCode::kResourceExhausted) break;
      if (!s.ok()) {
        LinkFailed(g);
        return false;
      }
      if (wrs[i].flags & rdma::kSendSignaled) ++g.outstanding;
    }
  }
  // The send queue is full: keep the rest, in order (inline payloads
  // copied now, as verbs would have).
  for (; i < wrs.size(); ++i) {
    LinkGroup::Backlog b;
    b.wr = wrs[i];
    if (b.wr.flags & rdma::kSendInline) {
      const size_t n = std::min<size_t>(b.wr.sg[0].length, b.payload.size());
      std::memcpy(b.payload.data(),
                  reinterpret_cast<const void*>(b.wr.sg[0].addr), n);
      b.wr.sg[0].length = uint32_t(n);
    }
    g.backlog.push_back(b);
  }
  return true;
}

void LgrRegistry::FlushBacklog(LinkGroup& g) {
  while (!g.backlog.empty() && g.qp && !g.ended) {
    LinkGroup::Backlog& b = g.backlog.front();
    rdma::SendWr w = b.wr;
    if (w.flags & rdma::kSendInline)
      w.sg[0].addr = reinterpret_cast<uint64_t>(b.payload.data());
    const Status s = g.qp->PostSend({&w, 1});
    if (s.code() == StatusCode::kResourceExhausted) return;
    if (!s.ok()) {
      LinkFailed(g);
      return;
    }
    if (w.flags & rdma::kSendSignaled) ++g.outstanding;
    g.backlog.pop_front();
  }
}

void LgrRegistry::LinkFailed(LinkGroup& g) {
  g.failed = true;
  g.linger_until.reset();
  if (g.ended) return;
  RunLgr(g, engine::LgrLinkFailed{});
  g.ended = true;
  g.backlog.clear();
  if (g.qp) (void)g.qp->ModifyToError();
}

LinkGroup* LgrRegistry::GroupByQpn(uint32_t qpn) {
  for (auto& g : groups_) {
    if (g->qp && g->qpn == qpn) return g.get();
  }
  return nullptr;
}

LinkGroup* LgrRegistry::GroupById(uint32_t id) {
  for (auto& g : groups_) {
    if (g->id == id) return g.get();
  }
  return nullptr;
}

void LgrRegistry::HandleSendWc(const rdma::WorkCompletion& wc) {
  LinkGroup* g = GroupByQpn(wc.qp_num);
  if (g == nullptr) return;
  const WrKind kind = KindOf(wc.wr_id);
  if ((kind == kWrLlc || kind == kWrCdc) && g->outstanding > 0)
    --g->outstanding;
  if (wc.status != rdma::WcStatus::kSuccess) {
    // A remote access error, a peer that stopped answering: the link and
    // with it this group (one link per group) are gone.
    LinkFailed(*g);
    return;
  }
  if (kind == kWrCdc) {
    for (SmcrConn* c : g->conns) {
      if (c->token_ == LowOf(wc.wr_id)) {
        Queue(*c, engine::SmcrSendCompleted{});
        break;
      }
    }
  }
  FlushBacklog(*g);
}

void LgrRegistry::HandleRecvWc(const rdma::WorkCompletion& wc) {
  LinkGroup* g = GroupByQpn(wc.qp_num);
  if (g == nullptr) return;
  if (wc.status != rdma::WcStatus::kSuccess) {
    LinkFailed(*g);
    return;
  }
  const uint32_t slot = LowOf(wc.wr_id);
  if (slot >= opts_.recv_ring) return;
  std::array<std::byte, kSlot + kSpill> msg{};
  const size_t len = std::min<size_t>(wc.byte_len, msg.size());
  std::memcpy(msg.data(), g->ring + size_t{slot} * kSlot, std::min(len, kSlot));
  if (len > kSlot) std::memcpy(msg.data() + kSlot, g->spill, len - kSlot);
  RepostRecv(*g, slot);
  if (len >= 1 && uint8_t(msg[0]) == wire::kCdcType) {
    RunLgr(*g, engine::LgrRxActivity{});
    // smc_cdc_rx_handler: too short is dropped; the token picks the
    // connection (the engine checks it again, with the sequence number).
    if (len < wire::kCdcMinReceiveLen) return;
    const uint32_t token = Be32(msg.data() + 4);
    for (SmcrConn* c : g->conns) {
      if (c->token_ == token && !c->aborted_) {
        engine::SmcrCdcReceived e;
        std::memcpy(e.bytes.data(), msg.data(), std::min(len, e.bytes.size()));
        Queue(*c, e);
        break;
      }
    }
    return;
  }
  if (len >= 4 && !(uint8_t(msg[3]) & 0x80)) {
    const uint8_t type = uint8_t(msg[0]) & 0x0f;
    if (type == uint8_t(wire::LlcType::kConfirmRkey))
      ++g->confirm_rkey_received;
    if (type == uint8_t(wire::LlcType::kDeleteRkey)) ++g->delete_rkey_received;
  }
  if (len >= 1 &&
      (uint8_t(msg[0]) & 0x0f) == uint8_t(wire::LlcType::kDeleteLink)) {
    // The peer is done with the link (request or response): an ended
    // group need not linger.
    g->peer_deleted = true;
    g->linger_until.reset();
  }
  if (g->lgr && g->lgr->state() == engine::LgrState::kAwaitQp) {
    if (g->early_llc.size() < 8)
      g->early_llc.emplace_back(msg.data(), msg.data() + len);
    return;
  }
  RunLgr(*g, engine::LgrLlcReceived{std::span(msg.data(), len)});
}

void LgrRegistry::ReleaseConn(SmcrConn& c) {
  // D3: the RMB's region goes with the connection; a late write with its
  // rkey now fails at the device (and ends only that group).
  c.rmb_mr_.reset();
  c.sndbuf_mr_.reset();
  c.pending_writes_.clear();
  c.awaiting_link_ = c.awaiting_rkey_ = false;
  if (c.group_ != nullptr) {
    LinkGroup& g = *c.group_;
    if (!g.ended && c.token_ != 0 && g.lgr && g.lgr->HasToken(c.token_)) {
      RunLgr(g, engine::LgrConnClosed{c.token_});
    }
    std::erase(g.conns, &c);
    c.group_ = nullptr;
  }
}

void LgrRegistry::FreeEndedGroups() {
  for (auto it = groups_.begin(); it != groups_.end();) {
    LinkGroup& g = **it;
    // The QP goes once its last sends (a DELETE_LINK) completed; the PD
    // once no connection's region is left on it.
    if (g.ended && g.qp && g.outstanding == 0 &&
        (!g.linger_until || Now() >= *g.linger_until)) {
      g.qp.reset();
    }
    if (g.ended && !g.qp && g.conns.empty()) {
      g.ring_mr.reset();
      g.spill_mr.reset();
      g.pd.reset();
      it = groups_.erase(it);
      continue;
    }
    ++it;
  }
}

bool LgrRegistry::Progress() {
  std::lock_guard<std::mutex> lock(mu_);
  Republish republish{*this};
  bool any = false;
  if (channel_) {
    for (int i = 0; i < 64; ++i) {
      Result<rdma::Cq*> cq = channel_->GetEvent();
      if (!cq.ok() || *cq == nullptr) break;
      (*cq)->AckEvents(1);
    }
  }
  std::array<rdma::WorkCompletion, 16> wcs;
  for (int round = 0; round < 2; ++round) {
    bool polled = true;
    while (polled) {
      polled = false;
      if (send_cq_) {
        Result<size_t> n = send_cq_->Poll(wcs);
        if (n.ok() && *n > 0) {
          polled = any = true;
          for (size_t i = 0; i < *n; ++i) HandleSendWc(wcs[i]);
        }
      }
      if (recv_cq_) {
        Result<size_t> n = recv_cq_->Poll(wcs);
        if (n.ok() && *n > 0) {
          polled = any = true;
          for (size_t i = 0; i < *n; ++i) HandleRecvWc(wcs[i]);
        }
      }
    }
    // Arm, then poll once more: a completion before the arm raised no
    // event (dev/rdma.h).
    if (round == 0) {
      if (send_cq_) (void)send_cq_->RequestNotify(false);
      if (recv_cq_) (void)recv_cq_->RequestNotify(true);
    }
  }
  const engine::TimePoint now = Now();
  for (size_t i = 0; i < groups_.size(); ++i) {
    LinkGroup& g = *groups_[i];
    if (g.deadline && *g.deadline <= now) {
      g.deadline.reset();
      RunLgr(g, engine::LgrTimeout{});
      any = true;
    }
  }
  for (SmcrConn* c : conns_) {
    if (c->wake_at_ && *c->wake_at_ <= now) {
      c->wake_at_.reset();
      Queue(*c, engine::Timeout{});
      any = true;
    }
  }
  const size_t before = groups_.size();
  FreeEndedGroups();
  return any || groups_.size() != before;
}

std::optional<engine::TimePoint> LgrRegistry::NextDeadline() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<engine::TimePoint> out;
  for (const SmcrConn* c : conns_) {
    if (c->wake_at_ && (!out || *c->wake_at_ < *out)) out = c->wake_at_;
  }
  for (const auto& g : groups_) {
    if (g->deadline && (!out || *g->deadline < *out)) out = g->deadline;
    if (g->ended && g->qp && g->linger_until &&
        (!out || *g->linger_until < *out)) {
      out = g->linger_until;
    }
  }
  return out;
}

int LgrRegistry::fd() const { return channel_ ? channel_->fd() : -1; }

void LgrRegistry::TerminateAll() {
  std::lock_guard<std::mutex> lock(mu_);
  Republish republish{*this};
  for (auto& g : groups_) {
    if (!g->ended) RunLgr(*g, engine::LgrTerminate{});
  }
}

bool LgrRegistry::DrainTerminated(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    (void)Progress();
    {
      std::lock_guard<std::mutex> lock(mu_);
      bool sent = true;
      for (const auto& g : groups_) sent = sent && g->qp == nullptr;
      if (sent) return true;
    }
    const auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return false;
    pollfd p = {fd(), POLLIN, 0};
    ::poll(
        &p, p.fd >= 0 ? 1 : 0,
        int(std::min<int64_t>(
            std::chrono::ceil<std::chrono::milliseconds>(left).count(), 10)));
  }
}

void LgrRegistry::SetKick(std::function<void()> kick) {
  std::lock_guard<std::mutex> lock(mu_);
  kick_ = std::move(kick);
}

void LgrRegistry::AttachStatus(StatusSink sink) {
  std::lock_guard<std::mutex> lock(mu_);
  status_ = std::move(sink);
  PublishLocked();
}

namespace {
void SetRecordState(ConnRecord& r, std::string_view state) {
  const size_t n = std::min(state.size(), sizeof(r.state) - 1);
  std::memcpy(r.state, state.data(), n);
}
}  // namespace

void LgrRegistry::PublishLocked() {
  if (!status_) return;
  std::map<const void*, SlotId> next;
  auto put = [&](const void* key, const ConnRecord& r) {
    auto it = slots_.find(key);
    SlotId id = kNoSlot;
    if (it != slots_.end()) {
      id = it->second;
      slots_.erase(it);
    } else {
      id = status_->acquire();
    }
    status_->update(id, r);
    next[key] = id;
  };
  const uint32_t uid = geteuid();
  for (const auto& g : groups_) {
    ConnRecord r;
    r.kind = RecordKind::kLinkGroup;
    r.mode = ConnMode::kSmcr;
    r.role = g->role;
    r.uid = uid;
    SmcrRecord& m = r.smcr;
    m.lgr_id = g->id;
    m.qpn = g->qpn;
    m.conns = static_cast<uint32_t>(g->conns.size());
    m.confirm_rkey_sent = g->confirm_rkey_sent;
    m.confirm_rkey_received = g->confirm_rkey_received;
    m.delete_rkey_sent = g->delete_rkey_sent;
    m.delete_rkey_received = g->delete_rkey_received;
    if (g->lgr) {
      SetRecordState(r, g->ended ? std::string_view("ENDED")
                                 : engine::ToString(g->lgr->state()));
      const engine::LgrParams& p = g->lgr->params();
      m.peer_qpn = p.peer_qpn;
      std::memcpy(m.peer_gid, p.peer_gid.data(), sizeof(m.peer_gid));
      std::memcpy(m.system_id, g->lgr->system_id().data(), sizeof(m.system_id));
      std::memcpy(m.peer_system_id, p.peer_system_id.data(),
                  sizeof(m.peer_system_id));
      const engine::LgrCounters& c = g->lgr->data().counters;
      m.llc_sent = c.llc_tx;
      m.llc_received = c.llc_rx;
      m.test_link_sent = c.test_link_sent;
      m.test_link_received = c.test_link_received;
    } else {
      SetRecordState(r, g->ended ? "ENDED" : "NEW");
    }
    put(g.get(), r);
  }
  for (const SmcrConn* c : conns_) {
    if (!opts_.publish_connections) break;  // their owners publish them
    const LinkGroup* g = c->group_;
    if (g == nullptr && !c->aborted_) continue;  // not joined (or left)
    ConnRecord r;
    r.mode = ConnMode::kSmcr;
    r.role = c->params_.role;
    r.uid = uid;
    SetRecordState(r, c->aborted_         ? "LGR_ENDED"
                      : c->awaiting_link_ ? "LINK_WAIT"
                      : c->awaiting_rkey_ ? "RKEY_WAIT"
                      : c->sndbuf_mr_     ? "ACTIVE"
                                          : "JOINED");
    r.dmb_size = c->rmb_size_;
    r.peer_dmb_size = c->peer_rmb_size_;
    r.smcr.token = c->token_;
    if (g != nullptr) {
      r.smcr.lgr_id = g->id;
      r.smcr.qpn = g->qpn;
      if (g->lgr) {
        r.smcr.peer_qpn = g->lgr->params().peer_qpn;
        std::memcpy(r.smcr.peer_gid, g->lgr->params().peer_gid.data(),
                    sizeof(r.smcr.peer_gid));
      }
    }
    put(c, r);
  }
  for (const auto& [key, slot] : slots_) status_->release(slot);
  slots_ = std::move(next);
}

std::vector<LgrInfo> LgrRegistry::Groups() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<LgrInfo> out;
  for (const auto& g : groups_) {
    LgrInfo i;
    i.id = g->id;
    i.role = g->role;
    i.qpn = g->qpn;
    i.qp_destroyed = g->qp == nullptr;
    i.conns = g->conns.size();
    for (const SmcrConn* c : g->conns) i.tokens.push_back(c->token_);
    if (g->lgr) {
      i.state = g->lgr->state();
      i.system_id = g->lgr->system_id();
      i.peer_system_id = g->lgr->params().peer_system_id;
      i.peer_gid = g->lgr->params().peer_gid;
      i.peer_qpn = g->lgr->params().peer_qpn;
      i.counters = g->lgr->data().counters;
    }
    i.confirm_rkey_sent = g->confirm_rkey_sent;
    i.delete_rkey_sent = g->delete_rkey_sent;
    i.confirm_rkey_received = g->confirm_rkey_received;
    i.delete_rkey_received = g->delete_rkey_received;
    out.push_back(std::move(i));
  }
  return out;
}

std::vector<MrRecord> LgrRegistry::Regions() const {
  std::vector<MrRecord> out;
  std::vector<SmcrConn*> conns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    conns = conns_;
  }
  for (const SmcrConn* c : conns) {
    std::vector<MrRecord> r = c->Regions();
    out.insert(out.end(), r.begin(), r.end());
  }
  return out;
}

std::vector<std::vector<std::byte>> LgrRegistry::RecordedSends() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sends_;
}

rdma::Qp* LgrRegistry::QpForTest(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  LinkGroup* g = GroupById(id);
  return g ? g->qp.get() : nullptr;
}

}  // namespace usmc::runtime
