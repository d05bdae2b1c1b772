// engine/lgr.h: the SMC-R link group (LGR) as a sans-I/O state machine.
//
// One Lgr per link group: SMC-Rv2 release 1, one link, max_links = 1
// (../shared/design/SMCR.md D1, D2, §1.4, §1.6, §1.7, §3). It owns the
// group's identity (role, a fresh random system ID, the link and its peer),
// the alert tokens of its connections, the table of the peer's rtokens, the
// LLC flows (one local request at a time, the peer's requests answered at
// once) and its timers (LLC answers, TEST_LINK keepalive, idle free).
//
// Input is one LgrEvent plus `now`; output is a list of LgrActions the owner
// carries out in order. It never does I/O, reads a clock or draws
// randomness itself (engine::Entropy, at construction only). LLC bytes are
// decoded and encoded with wire/llc.h; every message it sends is 44 bytes.
// docs/engine.md ("The SMC-R link group machine") has the tables.
//
//   Lgr lgr(params, &entropy);                       // kAwaitQp
//   LgrActions a = lgr.OnEvent(LgrQpReady{}, now);   // server: CONFIRM_LINK
//   a = lgr.OnEvent(LgrLlcReceived{bytes}, now);     // its response
//   // a == {LgrLinkUp, LgrArmTimer}; lgr.state() == LgrState::kActive
#ifndef USMC_ENGINE_LGR_H_
#define USMC_ENGINE_LGR_H_

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/common.h"
#include "engine/params.h"
#include "engine/transition_table.h"
#include "wire/llc.h"

namespace usmc::engine {

// Kernel values (SMCR.md §1.7).
inline constexpr Duration kLlcWaitTime =
    std::chrono::seconds(2);  // SMC_LLC_WAIT_TIME
inline constexpr Duration kTestLinkTime = std::chrono::seconds(30);
inline constexpr Duration kLgrIdleTime =
    std::chrono::seconds(30);                  // SMCR.md §3.2
inline constexpr size_t kLgrMaxRtokens = 255;  // SMC_RMBS_PER_LGR_MAX
inline constexpr size_t kLgrMaxConns = 255;    // max_conns is a u8
inline constexpr size_t kLgrLocalQueue = 512;  // queued local RKEY requests

using SystemId = std::array<uint8_t, 8>;

// What the owner knows when it creates the group (after the CLC Accept).
struct LgrParams {
  Role role = Role::kClient;
  // Our end of the link: the RoCE port's MAC and GID, our QP number.
  wire::Mac local_mac{};
  wire::Gid local_gid{};
  uint32_t local_qpn = 0;
  // The peer, from the CLC Accept (client) or Proposal/Confirm (server).
  SystemId peer_system_id{};
  wire::Gid peer_gid{};
  wire::Mac peer_mac{};
  uint32_t peer_qpn = 0;
  // LGR number (the registry counts in steps of 256, like the kernel's
  // smc_lgr_list.num); link_uid = lgr_id + link_num (debug only).
  uint32_t lgr_id = 0x100;
  uint8_t max_links = 1;    // negotiated; 1 for usmc (D1), 2 replays kernels
  uint8_t max_conns = 255;  // negotiated, 16..255
  Duration llc_timeout = kLlcWaitTime;
  // The client waits twice as long for the first CONFIRM_LINK request
  // (af_smc.c:smcr_clnt_conf_first_link, 2 * SMC_LLC_WAIT_TIME).
  Duration first_link_timeout = 2 * kLlcWaitTime;
  Duration testlink_time = kTestLinkTime;  // 0: no keepalive
  Duration idle_time = kLgrIdleTime;       // 0: never freed when idle
};

// ---- Events ---------------------------------------------------------------

// Our QP is ready for first contact. Server: RTS (after the CLC Confirm):
// send CONFIRM_LINK. Client: RTR, receives posted, CLC Confirm sent: wait
// for the peer's CONFIRM_LINK.
struct LgrQpReady {};
// One received SEND that carried LLC (byte 0 is not 0xFE). Borrowed.
struct LgrLlcReceived {
  std::span<const std::byte> bytes;
};
// Any other receive completion on the link (a CDC): the link is alive.
struct LgrRxActivity {};
// The deadline of the last LgrArmTimer passed.
struct LgrTimeout {};
// A new connection joins the group: answered LgrConnAdded or LgrConnRefused.
struct LgrConnOpen {};
// The connection with this alert token left the group (its token is free).
struct LgrConnClosed {
  uint32_t token = 0;
};
// The peer announced an RMB in a CLC Accept/Confirm: add its rtoken
// (answered LgrPeerRtokenAdded).
struct LgrAddPeerRtoken {
  uint32_t rkey = 0;
  uint64_t vaddr = 0;
};
// Announce / withdraw one of OUR RMBs (local flows; answered
// LgrRkeyConfirmed / LgrRkeyDeleted, possibly after other events).
struct LgrConfirmRkey {
  uint32_t rkey = 0;
  uint64_t vaddr = 0;
};
struct LgrDeleteRkey {
  uint32_t rkey = 0;
};
// The device reports the link dead (QP error, failed completion).
struct LgrLinkFailed {};
// The owner ends the group (process exit, operator): DELETE_LINK ALL.
struct LgrTerminate {
  bool orderly = true;
  uint32_t reason = uint32_t(wire::LlcDeleteLinkReason::kProgInitTerm);
};

using LgrEvent =
    std::variant<LgrQpReady, LgrLlcReceived, LgrRxActivity, LgrTimeout,
                 LgrConnOpen, LgrConnClosed, LgrAddPeerRtoken, LgrConfirmRkey,
                 LgrDeleteRkey, LgrLinkFailed, LgrTerminate>;

// The event kinds, for the declared transition table.
enum class LgrEventKind : uint8_t {
  kQpReady,
  kLlcReceived,
  kRxActivity,
  kTimeout,
  kConnOpen,
  kConnClosed,
  kAddPeerRtoken,
  kConfirmRkey,
  kDeleteRkey,
  kLinkFailed,
  kTerminate,
};
LgrEventKind KindOf(const LgrEvent& e);

// ---- Actions --------------------------------------------------------------

// Post this 44-byte LLC message as a SEND on the link.
struct LgrSendLlc {
  std::array<std::byte, wire::kLlcMsgLen> bytes{};
  wire::LlcType type = wire::LlcType::kTestLink;  // for logs and tests
  bool response = false;
  friend bool operator==(const LgrSendLlc&, const LgrSendLlc&) = default;
};
// Client, first contact: move the QP to RTS now (before the next action,
// which sends the CONFIRM_LINK response).
struct LgrQpToRts {
  friend bool operator==(const LgrQpToRts&, const LgrQpToRts&) = default;
};
// First contact done: the link is ACTIVE (client: connect() may finish;
// server: the accept completes).
struct LgrLinkUp {
  uint8_t link_num = 0;
  uint32_t link_uid = 0;
  uint32_t peer_link_uid = 0;
  friend bool operator==(const LgrLinkUp&, const LgrLinkUp&) = default;
};
// First contact failed: decline the CLC handshake with this reason
// (wire::kReasonTimeoutCl, kReasonRmbeEc) and fall back to TCP. An LgrEnded
// follows.
struct LgrFirstContactFailed {
  uint32_t clc_reason = 0;
  friend bool operator==(const LgrFirstContactFailed&,
                         const LgrFirstContactFailed&) = default;
};
struct LgrConnAdded {
  uint32_t token = 0;  // the connection's alert token, nonzero, unique
  friend bool operator==(const LgrConnAdded&, const LgrConnAdded&) = default;
};
// Group full (max_conns) or ended: the connection cannot join it.
struct LgrConnRefused {
  friend bool operator==(const LgrConnRefused&,
                         const LgrConnRefused&) = default;
};
// ok false: the table is full (CLC decline ERR_RTOK 0x09990001).
struct LgrPeerRtokenAdded {
  uint32_t rkey = 0;
  bool ok = false;
  friend bool operator==(const LgrPeerRtokenAdded&,
                         const LgrPeerRtokenAdded&) = default;
};
// The peer's answer to our CONFIRM_RKEY (ok false: negative, no answer in
// time, queue full, or the group ended: decline ERR_REGBUF 0x09990003).
struct LgrRkeyConfirmed {
  uint32_t rkey = 0;
  bool ok = false;
  friend bool operator==(const LgrRkeyConfirmed&,
                         const LgrRkeyConfirmed&) = default;
};
struct LgrRkeyDeleted {
  uint32_t rkey = 0;
  bool ok = false;
  friend bool operator==(const LgrRkeyDeleted&,
                         const LgrRkeyDeleted&) = default;
};
// Deliver LgrTimeout once `deadline` has passed (replaces an earlier one).
struct LgrArmTimer {
  TimePoint deadline{};
  friend bool operator==(const LgrArmTimer&, const LgrArmTimer&) = default;
};
struct LgrCancelTimer {
  friend bool operator==(const LgrCancelTimer&,
                         const LgrCancelTimer&) = default;
};
// The group is over: abort these connections (ECONNABORTED, as the
// kernel's smc_conn_kill), then destroy the QP once the sends already
// posted (a DELETE_LINK just before this action) completed. `reason` is an
// LlcDeleteLinkReason code.
struct LgrEnded {
  uint32_t reason = 0;
  std::vector<uint32_t> abort_tokens;
  friend bool operator==(const LgrEnded&, const LgrEnded&) = default;
};

using LgrAction =
    std::variant<LgrSendLlc, LgrQpToRts, LgrLinkUp, LgrFirstContactFailed,
                 LgrConnAdded, LgrConnRefused, LgrPeerRtokenAdded,
                 LgrRkeyConfirmed, LgrRkeyDeleted, LgrArmTimer, LgrCancelTimer,
                 LgrEnded>;
// LLC is not the data path: a plain vector is fine here.
using LgrActions = std::vector<LgrAction>;

std::string_view LgrActionName(const LgrAction& a);
std::ostream& operator<<(std::ostream& os, const LgrAction& a);

// ---- State ----------------------------------------------------------------

enum class LgrState : uint8_t {
  kAwaitQp,         // created; our QP is not ready yet
  kConfirmingLink,  // CONFIRM_LINK exchange (server: waits for the
                    // response; client: for the request)
  kActive,          // the link is ACTIVE
  kEnded,           // terminated; every event is ignored or refused
};
std::string_view ToString(LgrState s);
std::string_view ToString(LgrEventKind k);
std::ostream& operator<<(std::ostream& os, LgrState s);

// The declared (state, event) pairs and where each may lead.
using LgrTransition = Transition<LgrState, LgrEventKind>;
std::span<const LgrTransition> LgrTransitions();

// Our own outstanding LLC request (one at a time; SMCR.md §1.6).
enum class LgrLocalFlow : uint8_t { kNone, kConfirmRkey, kDeleteRkey };

struct LgrRtoken {
  uint32_t rkey = 0;
  uint64_t vaddr = 0;
  bool used = false;
  friend bool operator==(const LgrRtoken&, const LgrRtoken&) = default;
};

struct LgrQueued {
  LgrLocalFlow flow = LgrLocalFlow::kNone;
  uint32_t rkey = 0;
  uint64_t vaddr = 0;
  friend bool operator==(const LgrQueued&, const LgrQueued&) = default;
};

// Counters for `usmc ss` / stats.
struct LgrCounters {
  uint64_t llc_rx = 0;       // LLC messages received
  uint64_t llc_tx = 0;       // LLC messages sent
  uint64_t llc_ignored = 0;  // received and dropped (malformed, stale)
  uint64_t test_link_sent = 0;
  uint64_t test_link_received = 0;  // the peer's requests we answered
  friend bool operator==(const LgrCounters&, const LgrCounters&) = default;
};

// Everything the machine knows; public so tests build a state directly
// (fizz style) and compare the next one.
struct LgrData {
  LgrState state = LgrState::kAwaitQp;
  SystemId system_id{};  // ours, random per group (D2)
  // The link.
  uint8_t link_num = 0;  // server: 1; client: the server's choice
  uint32_t link_uid = 0;
  uint32_t peer_link_uid = 0;
  // Connections: alert tokens in use.
  std::array<uint32_t, kLgrMaxConns> tokens{};
  uint16_t num_tokens = 0;
  uint32_t last_token = 0;  // tokens count up from here, skipping 0
  // The peer's RMBs on our link.
  std::array<LgrRtoken, kLgrMaxRtokens> rtokens{};
  uint16_t num_rtokens = 0;
  // Local flow and its queue (a ring).
  LgrQueued flow{};  // flow.flow == kNone: idle
  std::array<LgrQueued, kLgrLocalQueue> queue{};
  uint16_t queue_head = 0;
  uint16_t queue_len = 0;
  // Timers; TimePoint{} = not running.
  TimePoint flow_deadline{};  // local flow or first-contact wait
  TimePoint test_deadline{};  // next keepalive check, or answer due
  bool test_outstanding = false;
  TimePoint idle_deadline{};
  TimePoint last_rx{};
  TimePoint armed{};  // what the owner's timer is set to
  uint32_t end_reason = 0;
  LgrCounters counters{};
  friend bool operator==(const LgrData&, const LgrData&) = default;
};

// Bit 0x01 of byte 2 set: a "multicast MAC", which no kernel system ID
// (2 bytes + the port's unicast MAC) can carry (SMCR.md D2, §3.3).
SystemId NewSystemId(Entropy* entropy);

class Lgr {
 public:
  // A new group: a fresh system ID from `entropy`.
  Lgr(const LgrParams& params, Entropy* entropy);
  // A group rebuilt from a state (tests).
  Lgr(const LgrParams& params, const LgrData& data);

  LgrActions OnEvent(const LgrEvent& event, TimePoint now);

  const LgrParams& params() const { return params_; }
  const LgrData& data() const { return d_; }
  LgrState state() const { return d_.state; }
  const SystemId& system_id() const { return d_.system_id; }
  bool HasToken(uint32_t token) const;
  // Index of the peer rtoken with this rkey, or -1.
  int FindRtoken(uint32_t rkey) const;

 private:
  friend class LgrStep;
  LgrParams params_;
  LgrData d_;
};

}  // namespace usmc::engine

#endif  // USMC_ENGINE_LGR_H_
