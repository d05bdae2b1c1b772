// engine/lgr.cc: the SMC-R link group machine (engine/lgr.h).
//
// Kernel facts it follows (net/smc/smc_llc.c, smc_core.c; SMCR.md §1.6):
// every request the peer sends is answered with the first 44 bytes of the
// request echoed and the RESP flag set; responses outside our one local
// flow are dropped; ADD_LINK is rejected (client) or ignored (server) when
// max_links is 1; the peer's DELETE_LINK ALL ends the group.
#include "engine/lgr.h"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "wire/reason.h"

namespace usmc::engine {
namespace {

using wire::LlcDeleteLinkReason;
using wire::LlcMessage;

constexpr uint32_t Code(LlcDeleteLinkReason r) { return uint32_t(r); }

using S = LgrState;
using K = LgrEventKind;
constexpr LgrTransition kLgrTable[] = {
    {S::kAwaitQp, K::kQpReady, {S::kConfirmingLink}, 1},
    {S::kAwaitQp, K::kLlcReceived, {S::kAwaitQp}, 1},
    {S::kAwaitQp, K::kRxActivity, {S::kAwaitQp}, 1},
    {S::kAwaitQp, K::kTimeout, {S::kAwaitQp}, 1},
    {S::kAwaitQp, K::kConnOpen, {S::kAwaitQp}, 1},
    {S::kAwaitQp, K::kConnClosed, {S::kAwaitQp}, 1},
    {S::kAwaitQp, K::kAddPeerRtoken, {S::kAwaitQp}, 1},
    {S::kAwaitQp, K::kConfirmRkey, {S::kAwaitQp}, 1},
    {S::kAwaitQp, K::kDeleteRkey, {S::kAwaitQp}, 1},
    {S::kAwaitQp, K::kLinkFailed, {S::kEnded}, 1},
    {S::kAwaitQp, K::kTerminate, {S::kEnded}, 1},
    {S::kConfirmingLink, K::kQpReady, {S::kConfirmingLink}, 1},
    {S::kConfirmingLink,
     K::kLlcReceived,
     {S::kConfirmingLink, S::kActive, S::kEnded},
     3},
    {S::kConfirmingLink, K::kRxActivity, {S::kConfirmingLink}, 1},
    {S::kConfirmingLink, K::kTimeout, {S::kConfirmingLink, S::kEnded}, 2},
    {S::kConfirmingLink, K::kConnOpen, {S::kConfirmingLink}, 1},
    {S::kConfirmingLink, K::kConnClosed, {S::kConfirmingLink}, 1},
    {S::kConfirmingLink, K::kAddPeerRtoken, {S::kConfirmingLink}, 1},
    {S::kConfirmingLink, K::kConfirmRkey, {S::kConfirmingLink}, 1},
    {S::kConfirmingLink, K::kDeleteRkey, {S::kConfirmingLink}, 1},
    {S::kConfirmingLink, K::kLinkFailed, {S::kEnded}, 1},
    {S::kConfirmingLink, K::kTerminate, {S::kEnded}, 1},
    {S::kActive, K::kQpReady, {S::kActive}, 1},
    {S::kActive, K::kLlcReceived, {S::kActive, S::kEnded}, 2},
    {S::kActive, K::kRxActivity, {S::kActive}, 1},
    {S::kActive, K::kTimeout, {S::kActive, S::kEnded}, 2},
    {S::kActive, K::kConnOpen, {S::kActive}, 1},
    {S::kActive, K::kConnClosed, {S::kActive}, 1},
    {S::kActive, K::kAddPeerRtoken, {S::kActive}, 1},
    {S::kActive, K::kConfirmRkey, {S::kActive}, 1},
    {S::kActive, K::kDeleteRkey, {S::kActive}, 1},
    {S::kActive, K::kLinkFailed, {S::kEnded}, 1},
    {S::kActive, K::kTerminate, {S::kEnded}, 1},
    {S::kEnded, K::kQpReady, {S::kEnded}, 1},
    {S::kEnded, K::kLlcReceived, {S::kEnded}, 1},
    {S::kEnded, K::kRxActivity, {S::kEnded}, 1},
    {S::kEnded, K::kTimeout, {S::kEnded}, 1},
    {S::kEnded, K::kConnOpen, {S::kEnded}, 1},
    {S::kEnded, K::kConnClosed, {S::kEnded}, 1},
    {S::kEnded, K::kAddPeerRtoken, {S::kEnded}, 1},
    {S::kEnded, K::kConfirmRkey, {S::kEnded}, 1},
    {S::kEnded, K::kDeleteRkey, {S::kEnded}, 1},
    {S::kEnded, K::kLinkFailed, {S::kEnded}, 1},
    {S::kEnded, K::kTerminate, {S::kEnded}, 1},
};

TimePoint After(TimePoint now, Duration d) {
  return d > Duration::zero() ? now + d : TimePoint{};
}

}  // namespace

std::span<const LgrTransition> LgrTransitions() { return kLgrTable; }

LgrEventKind KindOf(const LgrEvent& e) {
  return static_cast<LgrEventKind>(e.index());
}
static_assert(std::variant_size_v<LgrEvent> ==
              size_t(LgrEventKind::kTerminate) + 1);

SystemId NewSystemId(Entropy* entropy) {
  const uint64_t r = entropy->Random64();
  SystemId id{};
  for (size_t i = 0; i < id.size(); ++i) id[i] = uint8_t(r >> (8 * i));
  id[2] |= 0x01;
  return id;
}

// One event's worth of work on an Lgr.
class LgrStep {
 public:
  LgrStep(Lgr& m, TimePoint now) : p_(m.params_), d_(m.d_), now_(now) {}

  LgrActions Finish() {
    SyncTimer();
    return std::move(out_);
  }

  void Handle(const LgrQpReady&) {
    if (d_.state != S::kAwaitQp) return;
    d_.state = S::kConfirmingLink;
    if (p_.role == Role::kServer) {
      // The server numbers the link (smc_core.c: first link id 1).
      d_.link_num = 1;
      d_.link_uid = p_.lgr_id + d_.link_num;
      SendConfirmLink(/*response=*/false);
      d_.flow_deadline = After(now_, p_.llc_timeout);
    } else {
      d_.flow_deadline = After(now_, p_.first_link_timeout);
    }
  }

  void Handle(const LgrLlcReceived& e) {
    if (d_.state == S::kEnded || d_.state == S::kAwaitQp) {
      ++d_.counters.llc_ignored;
      return;
    }
    ++d_.counters.llc_rx;
    d_.last_rx = now_;
    wire::WireResult<LlcMessage> r = wire::DecodeLlc(e.bytes);
    if (!r.ok()) {
      // Short, bad length, or a byte 0 the kernel has no handler for
      // (smc_llc_rx_handler, smc_wr_rx_demultiplex): dropped.
      ++d_.counters.llc_ignored;
      return;
    }
    if (!wire::HeaderOf(*r).v2) {
      // usmc speaks V2 only; a V1 message in a V2 group is a broken peer.
      ProtocolViolation();
      return;
    }
    std::visit([this](const auto& m) { Rx(m); }, *r);
  }

  void Handle(const LgrRxActivity&) {
    if (d_.state != S::kEnded) d_.last_rx = now_;
  }

  void Handle(const LgrTimeout&) {
    if (d_.state == S::kConfirmingLink) {
      if (Due(d_.flow_deadline)) FirstContactFailed(wire::kReasonTimeoutCl);
      return;
    }
    if (d_.state != S::kActive) return;
    if (d_.flow.flow != LgrLocalFlow::kNone && Due(d_.flow_deadline)) {
      CompleteFlow(false);  // no answer in time: the flow ends (kernel)
    }
    if (Due(d_.test_deadline)) {
      if (d_.test_outstanding) {
        // smc_llc_testlink_work: no answer in time -> link down; with one
        // link the group ends. Nothing is sent over a dead link.
        End(Code(LlcDeleteLinkReason::kLostPath), /*send=*/false, false);
        return;
      }
      const TimePoint quiet_until = d_.last_rx + p_.testlink_time;
      if (now_ >= quiet_until) {
        wire::LlcTestLink m;
        m.hdr.v2 = true;
        Send(m);
        ++d_.counters.test_link_sent;
        d_.test_outstanding = true;
        d_.test_deadline = After(now_, p_.llc_timeout);
      } else {
        d_.test_deadline = quiet_until;
      }
    }
    if (Due(d_.idle_deadline)) {
      if (d_.num_tokens != 0) {
        d_.idle_deadline = {};
      } else if (d_.flow.flow != LgrLocalFlow::kNone) {
        d_.idle_deadline = d_.flow_deadline;  // look again when it ends
      } else {
        // smc_lgr_free_work: DELETE_LINK ALL ORDERLY, PROG_INIT_TERM.
        End(Code(LlcDeleteLinkReason::kProgInitTerm), /*send=*/true,
            /*orderly=*/true);
      }
    }
  }

  void Handle(const LgrConnOpen&) {
    const size_t limit = std::min<size_t>(p_.max_conns, kLgrMaxConns);
    if (d_.state == S::kEnded || d_.num_tokens >= limit) {
      out_.push_back(LgrConnRefused{});
      return;
    }
    // Count up, skipping 0 and tokens in use (smc_lgr_register_conn). At
    // most num_tokens + 1 tries.
    uint32_t t = d_.last_token;
    do {
      ++t;
    } while (t == 0 || HasToken(t));
    d_.tokens[d_.num_tokens++] = t;
    d_.last_token = t;
    d_.idle_deadline = {};
    out_.push_back(LgrConnAdded{t});
  }

  void Handle(const LgrConnClosed& e) {
    if (d_.state == S::kEnded) return;
    for (uint16_t i = 0; i < d_.num_tokens; ++i) {
      if (d_.tokens[i] != e.token) continue;
      d_.tokens[i] = d_.tokens[--d_.num_tokens];
      d_.tokens[d_.num_tokens] = 0;
      if (d_.num_tokens == 0 && d_.state == S::kActive) {
        d_.idle_deadline = After(now_, p_.idle_time);
      }
      return;
    }
  }

  void Handle(const LgrAddPeerRtoken& e) {
    const bool ok = d_.state != S::kEnded && AddRtoken(e.rkey, e.vaddr);
    out_.push_back(LgrPeerRtokenAdded{e.rkey, ok});
  }

  void Handle(const LgrConfirmRkey& e) {
    Enqueue({LgrLocalFlow::kConfirmRkey, e.rkey, e.vaddr});
  }

  void Handle(const LgrDeleteRkey& e) {
    Enqueue({LgrLocalFlow::kDeleteRkey, e.rkey, 0});
  }

  void Handle(const LgrLinkFailed&) {
    if (d_.state == S::kEnded) return;
    if (d_.state == S::kAwaitQp) {
      out_.push_back(LgrFirstContactFailed{wire::kReasonErrRdyLnk});
    } else if (d_.state == S::kConfirmingLink) {
      out_.push_back(LgrFirstContactFailed{wire::kReasonTimeoutCl});
    }
    End(Code(LlcDeleteLinkReason::kLostPath), /*send=*/false, false);
  }

  void Handle(const LgrTerminate& e) {
    if (d_.state == S::kEnded) return;
    if (d_.state != S::kActive) {
      out_.push_back(LgrFirstContactFailed{wire::kReasonTimeoutCl});
    }
    End(e.reason, /*send=*/true, e.orderly);
  }

 private:
  // ---- received messages ----

  void Rx(const wire::LlcTestLink& m) {
    if (m.hdr.response) {
      if (d_.test_outstanding) {
        d_.test_outstanding = false;
        d_.test_deadline = After(now_, p_.testlink_time);
      } else {
        ++d_.counters.llc_ignored;
      }
      return;
    }
    if (!CanSend()) return Ignore();
    ++d_.counters.test_link_received;
    wire::LlcTestLink reply = m;  // user data echoed
    reply.hdr.response = true;
    Send(reply);
  }

  void Rx(const wire::LlcConfirmLink& m) {
    if (d_.state != S::kConfirmingLink) return Ignore();
    const bool server = p_.role == Role::kServer;
    if (server != m.hdr.response) return Ignore();  // server waits for RESP
    if (!m.no_rmbe_eyecatcher) {
      // Neither eyecatcher bit: RMBE eyecatchers are not supported.
      FirstContactFailed(wire::kReasonRmbeEc);
      return;
    }
    d_.peer_link_uid = m.link_uid;
    if (!server) {
      d_.link_num = m.link_num;  // the server assigns it
      d_.link_uid = p_.lgr_id + d_.link_num;
      out_.push_back(LgrQpToRts{});
      SendConfirmLink(/*response=*/true);
    }
    Activate();
  }

  void Rx(const wire::LlcAddLink& m) {
    // smc_llc_cli_add_link / smc_llc_srv_add_link with max_links <= 1: the
    // client rejects the server's request, the server ignores the client's
    // suggestion; responses outside an ADD_LINK flow are dropped.
    if (m.hdr.response || p_.role == Role::kServer || !CanSend()) {
      return Ignore();
    }
    wire::LlcAddLink reply = m;  // the first 44 bytes, echoed
    reply.hdr.response = true;
    reply.rejected = true;
    reply.reject_reason = 0;  // V2: length_v2 overwrote the V1 nibble
    reply.has_v2_ext = false;
    reply.v2_direct = false;
    reply.client_target_gid = {};
    reply.num_rkeys = 0;
    reply.rkeys = {};
    Send(reply);
  }

  void Rx(const wire::LlcReqAddLink& m) {
    // Server: smc_llc_send_req_add_link_response, RESP and the data zeroed.
    if (m.hdr.response || p_.role != Role::kServer || !CanSend()) {
      return Ignore();
    }
    wire::LlcReqAddLink reply;
    reply.hdr.v2 = true;
    reply.hdr.response = true;
    Send(reply);
  }

  void Rx(const wire::LlcDeleteLink& m) {
    if (m.hdr.response) return Ignore();  // we never wait for one
    const bool ours = m.all || (d_.link_num != 0 && m.link_num == d_.link_num);
    const bool server = p_.role == Role::kServer;
    if (!ours) {
      // Client: "link not found" response (smc_llc_process_cli_delete_link);
      // server: ignored (asymmetric link already gone).
      if (server || !CanSend()) return Ignore();
      wire::LlcDeleteLink reply = m;
      reply.hdr.response = true;
      reply.reason = Code(LlcDeleteLinkReason::kNoLnk);
      Send(reply);
      return;
    }
    if (d_.state == S::kConfirmingLink) {
      out_.push_back(LgrFirstContactFailed{wire::kReasonTimeoutCl});
    }
    if (!CanSend()) {
      End(m.reason, /*send=*/false, false);
      return;
    }
    if (m.all && server) {
      // smc_llc_process_srv_delete_link: DELETE_LINK ALL ORDERLY with the
      // peer's reason, then the group terminates.
      End(m.reason, /*send=*/true, /*orderly=*/true, m.reason);
    } else if (m.all) {
      // Client: the group terminates; smc_lgr_cleanup sends its own
      // DELETE_LINK ALL, not orderly, PROG_INIT_TERM [cap f258 -> f260].
      End(m.reason, /*send=*/true, /*orderly=*/false,
          Code(LlcDeleteLinkReason::kProgInitTerm));
    } else {
      // Our one link: client answers (RESP, reason 0), server sends the
      // request back; with no link left the group ends.
      wire::LlcDeleteLink reply = m;
      if (!server) {
        reply.hdr.response = true;
        reply.reason = 0;
      }
      Send(reply);
      End(m.reason, /*send=*/false, false);
    }
  }

  void Rx(const wire::LlcConfirmRkey& m) {
    if (m.hdr.response) {
      if (d_.flow.flow != LgrLocalFlow::kConfirmRkey) return Ignore();
      CompleteFlow(!m.negative);
      return;
    }
    if (!CanSend()) return Ignore();
    // smc_llc_rmt_conf_rkey: more than 3 entries or no free rtoken slot ->
    // NEG|RETRY; rtokens for other links are ignored (we have one).
    const bool ok = m.num_other_rtokens <= 3 &&
                    AddRtoken(m.rtokens[0].rkey, m.rtokens[0].vaddr);
    wire::LlcConfirmRkey reply = m;
    reply.hdr.response = true;
    if (!ok) {
      reply.negative = true;
      reply.retry = true;
    }
    Send(reply);
  }

  void Rx(const wire::LlcDeleteRkey& m) {
    if (m.hdr.response) {
      if (d_.flow.flow != LgrLocalFlow::kDeleteRkey) return Ignore();
      CompleteFlow(!m.negative);
      return;
    }
    if (!CanSend()) return Ignore();
    // smc_llc_rmt_delete_rkey (V2): RESP, the count kept, the rkeys
    // zeroed, byte 5 = how many were unknown, NEG if any [cap f244/f246].
    uint8_t unknown = 0;
    for (size_t i = 0; i < m.num_rkeys; ++i) {
      if (!DeleteRtoken(m.rkeys[i])) ++unknown;
    }
    wire::LlcDeleteRkey reply;
    reply.hdr.v2 = true;
    reply.hdr.response = true;
    reply.negative = unknown != 0;
    std::array<std::byte, wire::kLlcMsgLen> bytes{};
    if (!Encode(reply, bytes)) return;
    // Only the first 44 bytes go back, whatever num_rkeys says, so the
    // counts are written after encoding an empty list.
    bytes[4] = std::byte{m.num_rkeys};
    bytes[5] = std::byte{unknown};
    Push(bytes, wire::LlcType::kDeleteRkey, true);
  }

  // V1-only types never decode as V2; HandleLlc ended the group already.
  void Rx(const wire::LlcAddLinkCont&) { ProtocolViolation(); }
  void Rx(const wire::LlcConfirmRkeyCont&) { ProtocolViolation(); }

  // ---- helpers ----

  bool Due(TimePoint t) const { return t != TimePoint{} && now_ >= t; }

  bool CanSend() const {
    // The client's QP is RTR until the CONFIRM_LINK request arrives.
    return d_.state == S::kActive ||
           (d_.state == S::kConfirmingLink && p_.role == Role::kServer);
  }

  void Ignore() { ++d_.counters.llc_ignored; }

  bool HasToken(uint32_t t) const {
    for (uint16_t i = 0; i < d_.num_tokens; ++i) {
      if (d_.tokens[i] == t) return true;
    }
    return false;
  }

  // smc_rtoken_add: an equal (rkey, vaddr) entry is reused; else a free
  // slot; none -> false.
  bool AddRtoken(uint32_t rkey, uint64_t vaddr) {
    LgrRtoken* free_slot = nullptr;
    for (LgrRtoken& t : d_.rtokens) {
      if (t.used && t.rkey == rkey && t.vaddr == vaddr) return true;
      if (!t.used && free_slot == nullptr) free_slot = &t;
    }
    if (free_slot == nullptr) return false;
    *free_slot = {rkey, vaddr, true};
    ++d_.num_rtokens;
    return true;
  }

  // smc_rtoken_delete: false if no entry has this rkey.
  bool DeleteRtoken(uint32_t rkey) {
    for (LgrRtoken& t : d_.rtokens) {
      if (t.used && t.rkey == rkey) {
        t = {};
        --d_.num_rtokens;
        return true;
      }
    }
    return false;
  }

  template <typename M>
  bool Encode(const M& m, std::array<std::byte, wire::kLlcMsgLen>& bytes) {
    wire::WireResult<size_t> n = wire::EncodeLlc(m, bytes);
    // Everything this machine sends fits 44 bytes; anything else would be
    // a bug, and is dropped rather than sent truncated.
    return n.ok() && *n == wire::kLlcMsgLen;
  }

  void Push(const std::array<std::byte, wire::kLlcMsgLen>& bytes,
            wire::LlcType type, bool response) {
    out_.push_back(LgrSendLlc{bytes, type, response});
    ++d_.counters.llc_tx;
  }

  template <typename M>
  void Send(const M& m) {
    std::array<std::byte, wire::kLlcMsgLen> bytes{};
    if (!Encode(m, bytes)) return;
    Push(bytes, wire::TypeOf(LlcMessage{m}), m.hdr.response);
  }

  void SendConfirmLink(bool response) {
    wire::LlcConfirmLink m;
    m.hdr.v2 = true;
    m.hdr.response = response;
    m.no_rmbe_eyecatcher = true;
    m.sender_mac = p_.local_mac;
    m.sender_gid = p_.local_gid;
    m.sender_qpn = p_.local_qpn;
    m.link_num = d_.link_num;
    m.link_uid = d_.link_uid;
    m.max_links = p_.max_links;
    m.max_conns = p_.max_conns;
    Send(m);
  }

  void Activate() {
    d_.state = S::kActive;
    d_.flow_deadline = {};
    d_.last_rx = now_;
    out_.push_back(LgrLinkUp{d_.link_num, d_.link_uid, d_.peer_link_uid});
    d_.test_deadline = After(now_, p_.testlink_time);
    if (d_.num_tokens == 0) d_.idle_deadline = After(now_, p_.idle_time);
    StartNextFlow();
  }

  void Enqueue(const LgrQueued& q) {
    if (d_.state == S::kEnded || d_.queue_len == kLgrLocalQueue) {
      Report(q, false);
      return;
    }
    d_.queue[(d_.queue_head + d_.queue_len) % kLgrLocalQueue] = q;
    ++d_.queue_len;
    StartNextFlow();
  }

  void StartNextFlow() {
    if (d_.state != S::kActive || d_.flow.flow != LgrLocalFlow::kNone ||
        d_.queue_len == 0) {
      return;
    }
    d_.flow = d_.queue[d_.queue_head];
    d_.queue[d_.queue_head] = {};
    d_.queue_head = uint16_t((d_.queue_head + 1) % kLgrLocalQueue);
    --d_.queue_len;
    if (d_.flow.flow == LgrLocalFlow::kConfirmRkey) {
      // smc_llc_send_confirm_rkey: rtoken[0] for this link, count 0.
      wire::LlcConfirmRkey m;
      m.hdr.v2 = true;
      m.rtokens[0].rkey = d_.flow.rkey;
      m.rtokens[0].vaddr = d_.flow.vaddr;
      Send(m);
    } else {
      wire::LlcDeleteRkey m;  // smc_llc_send_delete_rkey: one rkey
      m.hdr.v2 = true;
      m.num_rkeys = 1;
      m.rkeys[0] = d_.flow.rkey;
      Send(m);
    }
    d_.flow_deadline = After(now_, p_.llc_timeout);
  }

  void Report(const LgrQueued& q, bool ok) {
    if (q.flow == LgrLocalFlow::kConfirmRkey) {
      out_.push_back(LgrRkeyConfirmed{q.rkey, ok});
    } else if (q.flow == LgrLocalFlow::kDeleteRkey) {
      out_.push_back(LgrRkeyDeleted{q.rkey, ok});
    }
  }

  void CompleteFlow(bool ok) {
    Report(d_.flow, ok);
    d_.flow = {};
    d_.flow_deadline = {};
    StartNextFlow();
  }

  void FirstContactFailed(uint32_t clc_reason) {
    out_.push_back(LgrFirstContactFailed{clc_reason});
    End(clc_reason == wire::kReasonRmbeEc
            ? Code(LlcDeleteLinkReason::kProtViol)
            : Code(LlcDeleteLinkReason::kLostPath),
        /*send=*/false, false);
  }

  // smc_llc_protocol_violation: terminate with PROT_VIOL; the cleanup
  // sends DELETE_LINK ALL (not orderly) with that reason.
  void ProtocolViolation() {
    if (d_.state == S::kConfirmingLink) {
      out_.push_back(LgrFirstContactFailed{wire::kReasonTimeoutCl});
    }
    End(Code(LlcDeleteLinkReason::kProtViol), /*send=*/true, false);
  }

  // Ends the group. send: a DELETE_LINK ALL (when the QP can send) with
  // `wire_reason` (default: `reason`).
  void End(uint32_t reason, bool send, bool orderly, uint32_t wire_reason = 0) {
    if (send && CanSend()) {
      wire::LlcDeleteLink m;
      m.hdr.v2 = true;
      m.all = true;
      m.orderly = orderly;
      m.reason = wire_reason != 0 ? wire_reason : reason;
      Send(m);
    }
    if (d_.flow.flow != LgrLocalFlow::kNone) Report(d_.flow, false);
    for (uint16_t i = 0; i < d_.queue_len; ++i) {
      Report(d_.queue[(d_.queue_head + i) % kLgrLocalQueue], false);
    }
    d_.flow = {};
    d_.queue = {};
    d_.queue_head = d_.queue_len = 0;
    LgrEnded ended;
    ended.reason = reason;
    ended.abort_tokens.assign(d_.tokens.begin(),
                              d_.tokens.begin() + d_.num_tokens);
    out_.push_back(std::move(ended));
    d_.tokens = {};
    d_.num_tokens = 0;
    d_.state = S::kEnded;
    d_.end_reason = reason;
    d_.flow_deadline = d_.test_deadline = d_.idle_deadline = {};
    d_.test_outstanding = false;
  }

  void SyncTimer() {
    TimePoint want{};
    for (TimePoint t : {d_.flow_deadline, d_.test_deadline, d_.idle_deadline}) {
      if (t != TimePoint{} && (want == TimePoint{} || t < want)) want = t;
    }
    if (want == d_.armed) return;
    d_.armed = want;
    if (want == TimePoint{}) {
      out_.push_back(LgrCancelTimer{});
    } else {
      out_.push_back(LgrArmTimer{want});
    }
  }

  const LgrParams& p_;
  LgrData& d_;
  TimePoint now_;
  LgrActions out_;
};

Lgr::Lgr(const LgrParams& params, Entropy* entropy) : params_(params) {
  d_.system_id = NewSystemId(entropy);
}

Lgr::Lgr(const LgrParams& params, const LgrData& data)
    : params_(params), d_(data) {}

LgrActions Lgr::OnEvent(const LgrEvent& event, TimePoint now) {
  LgrStep step(*this, now);
  std::visit([&step](const auto& e) { step.Handle(e); }, event);
  return step.Finish();
}

bool Lgr::HasToken(uint32_t token) const {
  for (uint16_t i = 0; i < d_.num_tokens; ++i) {
    if (d_.tokens[i] == token) return true;
  }
  return false;
}

int Lgr::FindRtoken(uint32_t rkey) const {
  for (size_t i = 0; i < d_.rtokens.size(); ++i) {
    if (d_.rtokens[i].used && d_.rtokens[i].rkey == rkey) return int(i);
  }
  return -1;
}

// ---- names ----

std::string_view ToString(LgrState s) {
  switch (s) {
    case S::kAwaitQp:
      return "AWAIT_QP";
    case S::kConfirmingLink:
      return "CONFIRMING_LINK";
    case S::kActive:
      return "ACTIVE";
    case S::kEnded:
      return "ENDED";
  }
  return "?";
}

std::ostream& operator<<(std::ostream& os, LgrState s) {
  return os << ToString(s);
}

std::string_view ToString(LgrEventKind k) {
  static constexpr std::string_view kNames[] = {
      "QpReady",    "LlcReceived", "RxActivity",    "Timeout",
      "ConnOpen",   "ConnClosed",  "AddPeerRtoken", "ConfirmRkey",
      "DeleteRkey", "LinkFailed",  "Terminate"};
  const size_t i = size_t(k);
  return i < std::size(kNames) ? kNames[i] : "?";
}

std::string_view LgrActionName(const LgrAction& a) {
  static constexpr std::string_view kNames[] = {
      "SendLlc",     "QpToRts",     "LinkUp",          "FirstContactFailed",
      "ConnAdded",   "ConnRefused", "PeerRtokenAdded", "RkeyConfirmed",
      "RkeyDeleted", "ArmTimer",    "CancelTimer",     "Ended"};
  static_assert(std::size(kNames) == std::variant_size_v<LgrAction>);
  return kNames[a.index()];
}

std::ostream& operator<<(std::ostream& os, const LgrAction& a) {
  os << LgrActionName(a);
  std::visit(
      [&os](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, LgrSendLlc>) {
          os << "{" << x.type << (x.response ? " resp" : " req") << "}";
        } else if constexpr (std::is_same_v<T, LgrLinkUp>) {
          os << "{link " << int(x.link_num) << "}";
        } else if constexpr (std::is_same_v<T, LgrFirstContactFailed>) {
          os << "{0x" << std::hex << x.clc_reason << std::dec << "}";
        } else if constexpr (std::is_same_v<T, LgrConnAdded>) {
          os << "{" << x.token << "}";
        } else if constexpr (std::is_same_v<T, LgrPeerRtokenAdded> ||
                             std::is_same_v<T, LgrRkeyConfirmed> ||
                             std::is_same_v<T, LgrRkeyDeleted>) {
          os << "{0x" << std::hex << x.rkey << std::dec
             << (x.ok ? " ok" : " failed") << "}";
        } else if constexpr (std::is_same_v<T, LgrArmTimer>) {
          os << "{" << x.deadline.count() << "ns}";
        } else if constexpr (std::is_same_v<T, LgrEnded>) {
          os << "{" << wire::LlcDeleteLinkReasonName(x.reason) << ", "
             << x.abort_tokens.size() << " conns}";
        }
      },
      a);
  return os;
}

}  // namespace usmc::engine
