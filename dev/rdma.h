// dev/rdma.h: the RDMA verbs seam: the part of libibverbs SMC-R needs, as
// an interface that two implementations share: dev/sim_rdma.h (an
// in-process fabric for tests) and dev/verbs.h (libibverbs, e.g. over
// Soft-RoCE; dev/verbs.cc is the only file that includes
// <infiniband/verbs.h>). dev/rdma_contract_test.h holds the rules both
// keep, as one test suite.
//
// The shape is verbs' own, cut to what SMC-R uses (../docs/dev-rdma.md,
// SMCR.md §1.5, §2.1, §5.2): one RoCEv2 port per device, reliable
// connected (RC) queue pairs only, SEND (inline, solicited) and RDMA WRITE
// on the send queue, plain receives, completion queues and one completion
// channel (a pollable fd). No RDMA READ, atomics, immediate data, SRQ,
// memory windows or UD.
//
//   std::unique_ptr<Context> ctx = ...;  // SimRdma::AddDevice, VerbsContext::Open
//   auto pd = *ctx->AllocPd();
//   auto ch = *ctx->CreateCompChannel();
//   auto cq = *ctx->CreateCq(256, ch.get());
//   auto mr = *pd->RegisterMr(rmb, size, kLocalWrite | kRemoteWrite, iova);
//   auto qp = *pd->CreateRcQp(*cq, *cq, caps);
//   qp->ModifyToInit({.access = kRemoteWrite});
//   qp->ModifyToRtr({.path_mtu = ..., .dest_qpn = peer_qpn, ...});
//   qp->ModifyToRts({.sq_psn = own_psn});
//   qp->PostSend(wrs);                           // WRITE x<=2, then SEND
//   cq->RequestNotify(false);  poll(ch->fd()) ... ch->GetEvent();
//   cq->Poll(wcs);
//
// Numeric values of the enums equal verbs' (IBV_MTU_*, IBV_ACCESS_*,
// IBV_SEND_*, IBV_WC_*) so the verbs implementation can static_assert them
// instead of translating. Calls return Status like the verbs calls return
// errno: the code says the class, sys_errno() the errno verbs would give.
// Objects are destroyed in the order verbs requires: QPs, MRs, CQs, the
// completion channel, the PD, then the context.
#ifndef USMC_DEV_RDMA_H_
#define USMC_DEV_RDMA_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace usmc::dev::rdma {

// A port GID; SMC-Rv2 uses the RoCEv2 IPv4-mapped one (::ffff:a.b.c.d).
using Gid = std::array<uint8_t, 16>;
Gid GidFromIpv4(uint32_t ipv4_host_order);
std::string ToString(const Gid& gid);

// PSNs and QPNs are 24-bit on the wire.
inline constexpr uint32_t kPsnMask = 0xffffff;
inline constexpr uint32_t kQpnMask = 0xffffff;

enum class Mtu : uint8_t {  // IBV_MTU_*; SMC's CLC carries this number
  k256 = 1,
  k512 = 2,
  k1024 = 3,
  k2048 = 4,
  k4096 = 5,
};
// Bytes of a valid Mtu; 0 for any other value.
uint32_t MtuBytes(Mtu m);

// Memory region / QP access flags (IBV_ACCESS_*). REMOTE_WRITE needs
// LOCAL_WRITE on an MR, as in verbs.
inline constexpr uint32_t kLocalWrite = 1;
inline constexpr uint32_t kRemoteWrite = 2;
inline constexpr uint32_t kRemoteRead = 4;

// What a device offers (ibv_query_device/port/gid, cut down).
struct DeviceAttr {
  std::string name;  // "rxe0", "sim1"
  Gid gid{};         // the RoCEv2 GID SMC-R uses
  uint8_t gid_index = 0;
  std::array<uint8_t, 6> mac{};  // of the netdev under the GID
  Mtu active_mtu = Mtu::k1024;
  uint32_t max_inline = 0;  // largest QpCaps::max_inline_data
  uint32_t max_qp_wr = 0;   // largest max_send_wr / max_recv_wr
  uint32_t max_sge = 0;     // largest max_send_sge / max_recv_sge
  uint32_t max_cqe = 0;
};

enum class QpState : uint8_t { kReset, kInit, kRtr, kRts, kError };
std::string_view ToString(QpState s);

// What a QP is created with (ibv_qp_cap). The queue sizes bound what is
// outstanding: a send WR occupies its slot until its completion, or a later
// signaled one of the same QP, has been polled.
struct QpCaps {
  uint32_t max_send_wr = 64;
  uint32_t max_recv_wr = 64;
  uint32_t max_send_sge = 2;
  uint32_t max_recv_sge = 2;
  uint32_t max_inline_data = 64;
};

// RESET -> INIT (IBV_QP_STATE|PKEY_INDEX|PORT|ACCESS_FLAGS).
struct InitAttr {
  uint16_t pkey_index = 0;
  uint8_t port = 1;
  uint32_t access = kRemoteWrite;  // remote operations this QP accepts
};

// INIT -> RTR (AV, PATH_MTU, DEST_QPN, RQ_PSN, MAX_DEST_RD_ATOMIC,
// MIN_RNR_TIMER). SMC-R: path_mtu = min(ours, the CLC's), dest_qpn and
// rq_psn from the peer's CLC Accept/Confirm, hop_limit 1.
struct RtrAttr {
  Mtu path_mtu = Mtu::k1024;
  uint32_t dest_qpn = 0;
  uint32_t rq_psn = 0;
  Gid dgid{};
  uint8_t sgid_index = 0;
  uint8_t hop_limit = 1;
  uint8_t max_dest_rd_atomic = 0;
  uint8_t min_rnr_timer = 5;  // IB encoding; 5 = 0.06 ms
};

// RTR -> RTS (SQ_PSN, MAX_QP_RD_ATOMIC, RETRY_CNT, RNR_RETRY, TIMEOUT).
// The kernel's values (SMCR.md §1.5): timeout 15 (4.096 us * 2^15 = 134 ms
// per try), retry_cnt 7 (8 tries), rnr_retry 7 (retry forever).
struct RtsAttr {
  uint32_t sq_psn = 0;
  uint8_t timeout = 15;  // 0: never time out
  uint8_t retry_cnt = 7;
  uint8_t rnr_retry = 7;  // 7: infinite
  uint8_t max_rd_atomic = 0;
};

// A gather/scatter element: `addr` is in the MR's IOVA space (what the MR
// was registered at), except for inline sends, where it is a plain process
// address and `lkey` is ignored (verbs copies inline data at post time).
struct Sge {
  uint64_t addr = 0;
  uint32_t length = 0;
  uint32_t lkey = 0;
};
inline constexpr size_t kMaxSge = 2;  // SMC uses at most two either way

enum class WrOpcode : uint8_t {  // IBV_WR_*
  kRdmaWrite = 0,
  kSend = 2,
};

// IBV_SEND_*. SOLICITED is meaningful on SEND only.
inline constexpr uint32_t kSendSignaled = 2;
inline constexpr uint32_t kSendSolicited = 4;
inline constexpr uint32_t kSendInline = 8;

struct SendWr {
  uint64_t wr_id = 0;
  WrOpcode opcode = WrOpcode::kSend;
  uint32_t flags = 0;
  std::array<Sge, kMaxSge> sg{};
  uint8_t num_sge = 0;
  uint64_t remote_addr = 0;  // RDMA WRITE: in the peer MR's IOVA space
  uint32_t rkey = 0;         // RDMA WRITE

  std::span<const Sge> sges() const { return {sg.data(), num_sge}; }
};

struct RecvWr {
  uint64_t wr_id = 0;
  std::array<Sge, kMaxSge> sg{};
  uint8_t num_sge = 0;

  std::span<const Sge> sges() const { return {sg.data(), num_sge}; }
};

enum class WcStatus : uint8_t {  // IBV_WC_* (the ones SMC meets)
  kSuccess = 0,
  kLocLenErr = 1,
  kLocQpOpErr = 2,
  kLocProtErr = 4,
  kWrFlushErr = 5,
  kRemInvReqErr = 9,
  kRemAccessErr = 10,
  kRemOpErr = 11,
  kRetryExcErr = 12,
  kRnrRetryExcErr = 13,
  kGeneralErr = 21,
};
std::string_view ToString(WcStatus s);
std::ostream& operator<<(std::ostream& os, WcStatus s);

enum class WcOpcode : uint8_t {  // IBV_WC_*
  kSend = 0,
  kRdmaWrite = 1,
  kRecv = 128,
};

// One completion (ibv_wc). As in verbs, only wr_id, status and qp_num are
// valid when status != kSuccess. byte_len is valid for receives only.
struct WorkCompletion {
  uint64_t wr_id = 0;
  WcStatus status = WcStatus::kSuccess;
  WcOpcode opcode = WcOpcode::kSend;
  uint32_t byte_len = 0;
  uint32_t qp_num = 0;
  // The SEND carried the solicited-event bit (receives). Verbs does not
  // report it per completion; dev/verbs leaves it false: it explains a
  // completion event in tests, never decide protocol on it.
  bool solicited = false;
};

class CompChannel;

// A completion queue (ibv_cq).
class Cq {
 public:
  virtual ~Cq() = default;
  // Moves up to out.size() completions out, oldest first; returns how
  // many. Error: the CQ overran (verbs: IBV_EVENT_CQ_ERR) and is unusable.
  virtual Result<size_t> Poll(std::span<WorkCompletion> out) = 0;
  // One shot (ibv_req_notify_cq): the next completion added makes the
  // channel readable; solicited_only: only a receive of a solicited SEND or
  // an error completion does. Arm, then poll again before sleeping: a
  // completion added before the arm raises no event.
  virtual Status RequestNotify(bool solicited_only) = 0;
  // ibv_ack_cq_events: every event CompChannel::GetEvent returned for this
  // CQ must be acked before the CQ is destroyed.
  virtual void AckEvents(unsigned n) = 0;
};

// A completion channel (ibv_comp_channel): one fd for many CQs.
class CompChannel {
 public:
  virtual ~CompChannel() = default;
  // Non-blocking; readable while an event is pending.
  virtual int fd() const = 0;
  // The CQ of the next pending event, nullptr if none (never blocks).
  virtual Result<Cq*> GetEvent() = 0;
};

// A registered memory region (ibv_mr). Deregistered when destroyed; a
// later access with its keys fails (remote: kRemAccessErr at the writer).
class Mr {
 public:
  virtual ~Mr() = default;
  virtual uint32_t lkey() const = 0;
  virtual uint32_t rkey() const = 0;
  virtual uint64_t iova() const = 0;  // what keys address; not a pointer
  virtual uint64_t length() const = 0;
  virtual uint32_t access() const = 0;
};

// A reliable connected queue pair (ibv_qp, IBV_QPT_RC).
class Qp {
 public:
  virtual ~Qp() = default;
  virtual uint32_t qpn() const = 0;
  virtual QpState state() const = 0;
  // The caps the device granted (>= those asked for).
  virtual QpCaps caps() const = 0;

  // The transitions SMC-R uses. Each checks the current state and the
  // attributes; on error nothing changes (as ibv_modify_qp).
  virtual Status ModifyToInit(const InitAttr& a) = 0;  // from RESET
  virtual Status ModifyToRtr(const RtrAttr& a) = 0;    // from INIT
  virtual Status ModifyToRts(const RtsAttr& a) = 0;    // from RTR
  // From any state: outstanding WRs complete with kWrFlushErr.
  virtual Status ModifyToError() = 0;
  // From any state: outstanding WRs are dropped without completions.
  virtual Status ModifyToReset() = 0;

  // ibv_post_send: posts in order and stops at the first WR that cannot be
  // posted; `posted` (if given) says how many went in. Refused: a QP not in
  // RTS or ERROR (kFailedPrecondition, EINVAL), too many SGEs or an inline
  // payload above caps().max_inline_data (kInvalidArgument, EINVAL), a full
  // send queue (kResourceExhausted, ENOMEM). In ERROR, WRs are accepted and
  // complete with kWrFlushErr. Inline payloads are copied now; other
  // buffers are read later and must stay until the WR completes.
  virtual Status PostSend(std::span<const SendWr> wrs,
                          size_t* posted = nullptr) = 0;
  // ibv_post_recv: as PostSend; refused in RESET; flushed in ERROR.
  virtual Status PostRecv(std::span<const RecvWr> wrs,
                          size_t* posted = nullptr) = 0;
};

// A protection domain (ibv_pd): keys of its MRs work only on its QPs.
class Pd {
 public:
  virtual ~Pd() = default;
  // ibv_reg_mr_iova2: `length` bytes at `addr`, addressed through the keys
  // as [iova, iova + length). access: kLocalWrite, kRemoteWrite,
  // kRemoteRead; remote write or read needs kLocalWrite.
  virtual Result<std::unique_ptr<Mr>> RegisterMr(void* addr, size_t length,
                                                 uint32_t access,
                                                 uint64_t iova) = 0;
  virtual Result<std::unique_ptr<Qp>> CreateRcQp(Cq& send_cq, Cq& recv_cq,
                                                 const QpCaps& caps) = 0;
};

// An opened device (ibv_context on one port).
class Context {
 public:
  virtual ~Context() = default;
  virtual const DeviceAttr& attr() const = 0;
  virtual Result<std::unique_ptr<Pd>> AllocPd() = 0;
  virtual Result<std::unique_ptr<CompChannel>> CreateCompChannel() = 0;
  // A CQ of at least `cqe` entries; `channel` may be nullptr (no events).
  virtual Result<std::unique_ptr<Cq>> CreateCq(uint32_t cqe,
                                               CompChannel* channel) = 0;
};

// Wire helpers shared by both implementations.
// PSN a - b as a signed 24-bit distance (RC sequence comparison).
int32_t PsnDiff(uint32_t a, uint32_t b);
// IB local ACK timeout: 4.096 us * 2^timeout; 0 means none (returns 0).
uint64_t AckTimeoutNs(uint8_t timeout);
// IB RNR NAK timer encoding (0..31) to nanoseconds (0 = 655.36 ms).
uint64_t RnrTimerNs(uint8_t encoded);

}  // namespace usmc::dev::rdma

#endif  // USMC_DEV_RDMA_H_
