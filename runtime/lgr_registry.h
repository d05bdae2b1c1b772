// runtime/lgr_registry.h: the SMC-R link groups of one usmc "process" (one
// runtime instance) over one RDMA device (dev/rdma.h: SimRdma in tests,
// verbs later), and the per-connection endpoint the executor drives.
//
// An LgrRegistry owns, per link group (SMCR.md D2, §3, §5.3): the engine's
// sans-I/O Lgr machine, a protection domain, one RC QP with its receive
// ring, and the connections on it. Per connection (SmcrConn) it owns the
// RMB (its own memory region, LOCAL_WRITE|REMOTE_WRITE only, at a random
// IOVA, deregistered when the connection leaves: D3) and the sndbuf that
// mirrors the peer's RMB (D4, a local-only region). The registry shares one
// completion channel and one send and one receive CQ among its groups, as
// the kernel does per device.
//
// The engine asks through actions (SmcrJoinLgr, SmcrStartLink,
// SmcrConfirmRkey, RdmaWrite, PostSend, SmcrLeaveLgr: runtime/executor.cc
// calls SmcrConn); what the link answers later (SmcrLinkUp, a CDC, a send
// completion, the group ending) is queued on the connection
// (SmcrConn::TakeEvents) and its wake callback runs. LLC is handled here
// entirely, by Progress(): the progress thread (runtime/smcr_progress.h) or,
// in tests, the simulation's pump calls it, so a TEST_LINK or the peer's
// CONFIRM_RKEY is answered while no application thread calls in (D5).
//
//   LgrRegistry reg(ctx, entropy, {.clock = ...});
//   engine::EngineParams p = reg.ConnParams(base, peer_gid);
//   std::unique_ptr<SmcrConn> c = reg.NewConn(p);
//   Executor x(*c, tcp, {.smcr = c.get()});       // engine actions
//   reg.Progress();                               // completions, timers
//   std::vector<engine::Event> ev = c->TakeEvents();
//
// Thread safety: every method may be called from any thread; one mutex per
// registry serialises them (LLC is rare; the data path posts under it).
#ifndef USMC_RUNTIME_LGR_REGISTRY_H_
#define USMC_RUNTIME_LGR_REGISTRY_H_

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "dev/device.h"
#include "dev/rdma.h"
#include "engine/actions.h"
#include "engine/events.h"
#include "engine/lgr.h"
#include "engine/params.h"
#include "runtime/publish.h"

namespace usmc::runtime {

class LgrRegistry;
struct LinkGroup;

struct LgrRegistryOptions {
  // Monotonic time for the link groups' timers (simulated in tests).
  std::function<engine::TimePoint()> clock;
  // Link group machine timings (engine/lgr.h defaults: the kernel's).
  engine::Duration llc_timeout = engine::kLlcWaitTime;
  engine::Duration testlink_time = engine::kTestLinkTime;
  engine::Duration idle_time = engine::kLgrIdleTime;
  // Receive ring per link (SMCR.md §2.1: 64, reposted by whoever polls).
  uint32_t recv_ring = 64;
  uint32_t send_queue = 64;
  // Keep a copy of every LLC and CDC SEND posted (tests: memory exposure).
  bool record_sends = false;
  // Publish a record per connection (AttachStatus) besides the groups'.
  // false where the connection's owner publishes it with these fields
  // (SmcrConn::StatusFields; the interposer), else `usmc ss` lists it twice.
  bool publish_connections = true;
};

// What `usmc ss`/`usmc stats` and tests see of one link group.
struct LgrInfo {
  uint32_t id = 0;
  engine::Role role = engine::Role::kClient;
  engine::LgrState state = engine::LgrState::kAwaitQp;
  engine::SystemId system_id{};
  engine::SystemId peer_system_id{};
  wire::Gid peer_gid{};
  uint32_t qpn = 0;
  uint32_t peer_qpn = 0;
  size_t conns = 0;
  std::vector<uint32_t> tokens;
  engine::LgrCounters counters{};
  uint64_t confirm_rkey_sent = 0;
  uint64_t delete_rkey_sent = 0;
  uint64_t confirm_rkey_received = 0;
  uint64_t delete_rkey_received = 0;
  bool qp_destroyed = false;
};

// One memory region as the registry registered it (tests, stats).
struct MrRecord {
  uint64_t addr = 0;  // process address behind it (never leaves the host)
  uint64_t iova = 0;
  uint64_t length = 0;
  uint32_t access = 0;
  uint32_t rkey = 0;
  bool rmb = false;  // else sndbuf
};

// One connection's SMC-R side. Its dev::Device face carries the engine's
// copy plans: MoveData writes the sndbuf mirror, ReadOwn reads the RMB.
// The SMC-D-only parts of dev::Device answer "none".
class SmcrConn final : public dev::Device {
 public:
  ~SmcrConn() override;

  // ---- the engine's SMC-R actions (runtime/executor.cc) ----
  void Join(const engine::SmcrJoinLgr& a, std::vector<engine::Event>& answers);
  void StartLink(const engine::SmcrStartLink& a,
                 std::vector<engine::Event>& answers);
  void ConfirmRkey(const engine::SmcrConfirmRkey& a,
                   std::vector<engine::Event>& answers);
  void HandshakeDone(const engine::SmcrLink& link);
  void Write(const engine::RdmaWrite& a);
  void Send(const engine::PostSend& a);
  void Leave(const engine::SmcrLeaveLgr& a);

  // Events the link produced for this connection since the last call, in
  // order (SmcrLinkUp, SmcrCdcReceived, SmcrSendCompleted, DeviceFailed...).
  std::vector<engine::Event> TakeEvents();
  bool HasEvents() const;
  // Runs (under the registry's lock: it must not call back) whenever an
  // event is queued: the socket's wakeup.
  void SetWake(std::function<void()> wake);
  // Queues engine::Timeout for this connection once the registry's clock
  // reaches `deadline` (Progress fires it; NextDeadline includes it), or
  // forgets an earlier one (nullopt). The engine's clock must be the
  // registry's. For the engine's SMC-R mode timer (the executor calls it).
  void WakeAt(std::optional<engine::TimePoint> deadline);

  uint32_t token() const;
  std::optional<uint32_t> lgr_id() const;
  // Its link group's fields and its token, for its owner's status record.
  SmcrRecord StatusFields() const;
  // This connection's RMB and sndbuf regions (empty before Join/Done).
  std::vector<MrRecord> Regions() const;

  // ---- dev::Device ----
  Result<dev::BufferInfo> RegisterBuffer(const dev::RegisterRequest&) override;
  bool registered() const override;
  dev::BufferInfo own() const override;
  void UnregisterBuffer() override {}
  Status ReadOwn(uint64_t offset, std::span<std::byte> out) const override;
  Result<dev::BufferInfo> AttachPeerBuffer(const dev::AttachRequest&) override;
  bool attached() const override;
  dev::BufferInfo peer() const override;
  void DetachPeerBuffer() override {}
  Status MoveData(uint64_t offset, std::span<const std::byte> data) override;
  int AttachFd() const override { return -1; }
  void EndHandshake() override {}
  void PostCdc(std::span<const std::byte>) override {}
  dev::CdcBytes LoadCdc() const override { return {}; }
  bool LoadForeignPost(dev::CdcBytes&) override { return false; }
  void Signal() override {}
  // The wakeup: one eventfd per connection (wake_fd_), written whenever
  // the link queues an event for it (a CDC, a send completion, the link
  // up, the group's end), by the progress thread or whichever thread
  // polled the completion queue. It stays readable while events wait, so
  // poll/epoll see SMC-R readiness exactly as SMC-D's doorbell.
  dev::WaitResult Wait(dev::ReadyFn ready, std::chrono::nanoseconds timeout,
                       const dev::WaitOptions& opts) override;
  bool Arm(dev::ReadyFn ready, uint64_t) override { return !ready(); }
  void Disarm() override {}
  int WaitFd() const override { return wake_fd_; }
  // Reads the eventfd; it is written again for every later event.
  bool Drain(bool, bool) override;
  uint64_t PeerPostedNs() const override { return 0; }
  dev::DoorbellStats wait_stats() const override { return {}; }
  dev::DoorbellStats signal_stats() const override { return {}; }
  uint32_t* Shared(dev::SharedWord) override { return nullptr; }
  Status ExportFds(std::array<int, 4>&) const override;

 private:
  friend class LgrRegistry;
  SmcrConn(LgrRegistry& reg, const engine::EngineParams& params,
           const wire::Gid& peer_gid);
  // Join's work, with the lock held; Join defers it while the group it
  // must join is still in its first contact (see LgrRegistry::ConnParams).
  void JoinLocked(const engine::SmcrJoinLgr& a,
                  std::vector<engine::Event>& answers);

  LgrRegistry& reg_;
  const engine::EngineParams params_;
  const wire::Gid peer_gid_;  // client: the GID we proposed to (else zero)
  int wake_fd_ = -1;
  // Everything below is guarded by reg_.mu_.
  LinkGroup* group_ = nullptr;
  uint32_t token_ = 0;
  std::vector<std::byte> rmb_mem_;
  std::byte* rmb_ = nullptr;  // page-aligned inside rmb_mem_
  uint32_t rmb_size_ = 0;
  std::unique_ptr<dev::rdma::Mr> rmb_mr_;
  std::vector<std::byte> sndbuf_;
  std::byte* sndbuf_base_ = nullptr;  // page-aligned inside sndbuf_
  std::unique_ptr<dev::rdma::Mr> sndbuf_mr_;
  uint32_t peer_rkey_ = 0;
  uint64_t peer_vaddr_ = 0;
  uint32_t peer_rmb_size_ = 0;
  bool awaiting_link_ = false;
  bool awaiting_rkey_ = false;
  bool aborted_ = false;      // its group ended under it
  bool joined_once_ = false;  // Join ran (a proposal is no longer pending)
  // A Join waiting for this group's first contact to end.
  std::optional<engine::SmcrJoinLgr> deferred_join_;
  LinkGroup* deferred_on_ = nullptr;
  std::vector<dev::rdma::SendWr> pending_writes_;
  std::deque<engine::Event> events_;
  std::function<void()> wake_;
  std::optional<engine::TimePoint> wake_at_;  // WakeAt
};

class LgrRegistry {
 public:
  LgrRegistry(dev::rdma::Context& ctx, engine::Entropy& entropy,
              const LgrRegistryOptions& options);
  ~LgrRegistry();
  LgrRegistry(const LgrRegistry&) = delete;
  LgrRegistry& operator=(const LgrRegistry&) = delete;

  // The SMC-R fields of a connection's engine parameters: this device's
  // GID, MAC and MTU, the RMB size, and (client) the system ID to propose
  // to `peer_gid`: that of our live client group with it, else a fresh one
  // (D2) that a first contact will give the new group.
  engine::EngineParams ConnParams(const engine::EngineParams& base,
                                  const wire::Gid& peer_gid);
  // `peer_gid`: the client's peer (what ConnParams was given): while this
  // connection's first contact is pending, another connection to the same
  // peer proposes the same system ID and its Join waits for the group
  // (SMCR.md §3: one link group per peer, first contacts serialised).
  std::unique_ptr<SmcrConn> NewConn(const engine::EngineParams& params,
                                    const wire::Gid& peer_gid = {});

  // Drains the completion queues (LLC to the groups, CDCs and send
  // completions to the connections, errors end the group), reposts
  // receives, fires due timers and frees ended groups. true if anything
  // happened.
  bool Progress();
  // The earliest timer of any group or connection (SmcrConn::WakeAt).
  std::optional<engine::TimePoint> NextDeadline() const;
  // The registry's clock (LgrRegistryOptions::clock).
  engine::TimePoint now() const { return opts_.clock(); }
  // The completion channel's fd (readable when a solicited SEND or an
  // error completed, once armed by Progress()).
  int fd() const;

  // Ends every group (DELETE_LINK ALL ORDERLY, as at process exit).
  void TerminateAll();
  // After TerminateAll: pumps completions until every DELETE_LINK left
  // (its send completed, the QP gone) or `timeout` passed on the real
  // clock. true if every group is gone. For process exit.
  bool DrainTerminated(std::chrono::milliseconds timeout);
  // Runs (under the lock) whenever a group arms a timer: the progress
  // thread's Kick, so a deadline armed by an application thread is not
  // slept through.
  void SetKick(std::function<void()> kick);

  std::vector<LgrInfo> Groups() const;
  // Live memory regions of connections, in registration order.
  std::vector<MrRecord> Regions() const;
  // Every SEND payload posted (record_sends), in order.
  std::vector<std::vector<std::byte>> RecordedSends() const;
  // Publishes every link group and every SMC-R connection that joined one
  // as status records (what `usmc ss` and `usmc stats` read), refreshed
  // whenever the registry is called; a record leaves when its group or
  // connection does. Optional: without it nothing is published. Call
  // before the first connection; the sink must outlive the registry.
  void AttachStatus(StatusSink sink);
  // Tests: the QP of group `id` (a hostile peer posts on it).
  dev::rdma::Qp* QpForTest(uint32_t id);
  const dev::rdma::DeviceAttr& attr() const { return ctx_.attr(); }

 private:
  friend class SmcrConn;
  engine::TimePoint Now() const { return opts_.clock(); }
  LinkGroup* NewGroup(engine::Role role, const engine::SmcrLink& link,
                      const engine::SystemId& system_id,
                      std::vector<engine::Event>& answers);
  bool RegisterRmb(SmcrConn& c);
  uint64_t RandomIova(uint64_t length);
  void RunLgr(LinkGroup& g, const engine::LgrEvent& e);
  void RunLgrActions(LinkGroup& g, const engine::LgrActions& actions);
  void PostLlc(LinkGroup& g, std::span<const std::byte> bytes);
  bool PostSends(LinkGroup& g, std::span<const dev::rdma::SendWr> wrs);
  void FlushBacklog(LinkGroup& g);
  void LinkFailed(LinkGroup& g);
  void Queue(SmcrConn& c, const engine::Event& e);
  // The group's first contact ended (active, or failed): the Joins that
  // waited for it run now; their answers are queued as events.
  void RunDeferredJoins(LinkGroup& g);
  void HandleSendWc(const dev::rdma::WorkCompletion& wc);
  void HandleRecvWc(const dev::rdma::WorkCompletion& wc);
  void RepostRecv(LinkGroup& g, uint32_t slot);
  void ReleaseConn(SmcrConn& c);
  void FreeEndedGroups();
  LinkGroup* GroupByQpn(uint32_t qpn);
  LinkGroup* GroupById(uint32_t id);
  // Brings the published records in line with groups_ and conns_.
  void PublishLocked();
  // Declared after a method's lock: republishes when the method returns,
  // still under the lock.
  struct Republish {
    LgrRegistry& reg;
    ~Republish() { reg.PublishLocked(); }
  };

  dev::rdma::Context& ctx_;
  engine::Entropy& entropy_;
  const LgrRegistryOptions opts_;
  mutable std::mutex mu_;
  std::unique_ptr<dev::rdma::CompChannel> channel_;
  std::unique_ptr<dev::rdma::Cq> send_cq_;
  std::unique_ptr<dev::rdma::Cq> recv_cq_;
  std::vector<std::unique_ptr<LinkGroup>> groups_;
  uint32_t next_lgr_id_ = 0;
  std::vector<SmcrConn*> conns_;
  std::vector<std::vector<std::byte>> sends_;
  std::optional<StatusSink> status_;
  std::map<const void*, SlotId> slots_;  // group or connection -> its slot
  std::function<void()> kick_;
};

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_LGR_REGISTRY_H_
