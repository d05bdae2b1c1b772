// fuzz/smcr_conn_fuzz.cc: a Connection in SMC-R mode (client or server) and
// its link group (engine/lgr), wired as the runtime wires them, fed an
// arbitrary sequence from a hostile peer: CLC bytes (raw, or an SMC-R
// Proposal/Accept/Confirm/Decline with fuzzed fields), LLC SENDs (raw),
// CDC SENDs (raw, or well-formed with fuzzed cursors, flags, seqno, token),
// registry answers, app sends and reads, timer expiries.
// Checks: no crash or out-of-bounds access (ASan); no action list
// overflows; every RDMA WRITE and copy plan stays inside the RMBs; every
// SEND is 44 bytes; once the link group ended, the connection is not a
// live SMC-R connection any more.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include "base/overloaded.h"
#include "engine/clc_common.h"
#include "engine/clc_smcr.h"
#include "engine/connection.h"
#include "engine/lgr.h"
#include "fuzz/fuzz_input.h"
#include "wire/cdc.h"
#include "wire/clc.h"
#include "wire/llc.h"
#include "wire/reason.h"

using namespace usmc::engine;
namespace wire = usmc::wire;

namespace {

using usmc::fuzz::Input;

// Raw input bytes where a message is expected (the Make* builders return
// owned bytes too).
std::vector<std::byte> Raw(Input& in, size_t len) {
  std::span<const std::byte> s = in.Take(len);
  return {s.begin(), s.end()};
}

EngineParams Params(Role role) {
  EngineParams p;
  p.role = role;
  p.smcd_enabled = false;
  p.smcr_enabled = true;
  p.eid = wire::MakeClcEid("FUZZ");
  p.smcr.gid = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2};
  p.smcr.mac = {2, 0, 0, 0, 0, 2};
  p.smcr.rmb_rkey = 0x55;
  p.smcr.rmb_iova = 0x1000;
  p.smcr.rmb_size = 16 * 1024;
  p.smcr_system_id = {1, 2, 3, 4, 5, 6, 7, 8};
  return p;
}

struct Driver {
  explicit Driver(Role role) : params(Params(role)), conn(params, &entropy) {}

  SeededEntropy entropy{7};
  EngineParams params;
  Connection conn;
  std::optional<Lgr> lgr;
  uint32_t token = 0;
  bool lgr_ended = false;
  uint32_t peer_rmb = 0;
  TimePoint now{};
  int depth = 0;

  void Feed(const Event& e) {
    if (++depth > 50) {  // answers feed answers: bounded
      --depth;
      return;
    }
    Execute(conn.OnEvent(e, now));
    --depth;
  }

  void Execute(const Actions& a) {
    FUZZ_CHECK(a.dropped() == 0);
    std::vector<Event> answers;
    for (const Action& x : a) {
      std::visit(
          usmc::base::Overloaded{
              [&](const HandshakeDone& d) { peer_rmb = d.smcr.peer_rmb_size; },
              [&](const SmcrJoinLgr& j) {
                if (lgr.has_value() && lgr->state() == LgrState::kEnded) {
                  lgr.reset();
                }
                const bool first = j.first_contact || !lgr.has_value();
                if (params.role == Role::kClient && !j.first_contact &&
                    !lgr.has_value()) {
                  answers.push_back(SmcrLgrJoinFailed{wire::kReasonSyncErr});
                  return;
                }
                if (first) {
                  LgrParams lp;
                  lp.role = params.role;
                  lp.peer_qpn = j.link.peer_qpn;
                  lp.max_links = j.link.max_links ? j.link.max_links : 1;
                  lgr.emplace(lp, &entropy);
                  lgr_ended = false;
                }
                token = 0;
                RunLgr(lgr->OnEvent(LgrConnOpen{}, now), answers);
                if (token == 0) {
                  answers.push_back(SmcrLgrJoinFailed{wire::kReasonMaxConnErr});
                  return;
                }
                answers.push_back(
                    SmcrLgrJoined{first, token, lgr->system_id(), 0x11, 0x22});
              },
              [&](const SmcrStartLink&) {
                if (lgr) RunLgr(lgr->OnEvent(LgrQpReady{}, now), answers);
              },
              [&](const SmcrConfirmRkey& c) {
                if (lgr) {
                  RunLgr(lgr->OnEvent(LgrConfirmRkey{c.rkey, c.vaddr}, now),
                         answers);
                }
              },
              [&](const SmcrLeaveLgr& l) {
                if (lgr)
                  RunLgr(lgr->OnEvent(LgrConnClosed{l.token}, now), answers);
              },
              [&](const RdmaWrite& w) {
                FUZZ_CHECK(peer_rmb != 0);
                FUZZ_CHECK(uint64_t{w.offset} + w.len <= peer_rmb);
              },
              [&](const CaptureUrgentByte& c) {
                FUZZ_CHECK(c.buffer_offset < params.smcr.rmb_size);
              },
              [&](const auto&) {},
          },
          x);
    }
    for (const Event& e : answers) Feed(e);
  }

  void RunLgr(const LgrActions& a, std::vector<Event>& answers) {
    for (const LgrAction& x : a) {
      if (const auto* s = std::get_if<LgrSendLlc>(&x)) {
        FUZZ_CHECK(s->bytes.size() == 44);
      } else if (std::holds_alternative<LgrLinkUp>(x)) {
        answers.push_back(SmcrLinkUp{});
      } else if (const auto* f = std::get_if<LgrFirstContactFailed>(&x)) {
        answers.push_back(SmcrLinkFailed{f->clc_reason});
      } else if (const auto* c = std::get_if<LgrConnAdded>(&x)) {
        token = c->token;
      } else if (const auto* r = std::get_if<LgrRkeyConfirmed>(&x)) {
        answers.push_back(SmcrRkeyConfirmed{r->ok});
      } else if (std::holds_alternative<LgrEnded>(x)) {
        lgr_ended = true;
        // The runtime tells every connection of the group: a live one
        // aborts, one still in its handshake falls back.
        if (conn.mode() == Mode::kSmc) answers.push_back(DeviceFailed{});
        if (conn.mode() == Mode::kHandshake) {
          answers.push_back(SmcrLinkFailed{wire::kReasonTimeoutCl});
        }
      }
    }
  }

  void CheckPlans() {
    if (conn.mode() != Mode::kSmc) return;
    const CopyPlan s = conn.PlanSend(1 << 20);
    for (uint8_t i = 0; i < s.count; ++i) {
      FUZZ_CHECK(uint64_t{s.chunks[i].offset} + s.chunks[i].len <= peer_rmb);
    }
    const CopyPlan r = conn.PlanRecv(1 << 20);
    for (uint8_t i = 0; i < r.count; ++i) {
      FUZZ_CHECK(uint64_t{r.chunks[i].offset} + r.chunks[i].len <=
                 params.smcr.rmb_size);
    }
  }
};

std::vector<std::byte> Encode(const wire::ClcMessage& m) {
  std::array<std::byte, wire::kClcMaxMessageLen> buf;
  wire::WireResult<size_t> n = wire::EncodeClc(m, buf);
  if (!n.ok()) return {};
  return std::vector<std::byte>(buf.begin(), buf.begin() + *n);
}

// A well-formed SMC-R CLC message of the kind the peer would send, fields
// from the input.
std::vector<std::byte> MakeClc(Input& in, Role our_role) {
  const uint8_t kind = in.U8() % 3;
  const uint8_t flags = in.U8();
  if (kind == 2) {
    wire::ClcDecline d = BuildDecline(in.U32());
    d.out_of_sync = flags & 1;
    return Encode(d);
  }
  if (our_role == Role::kServer && kind == 0) {
    EngineParams peer = Params(Role::kClient);
    peer.smcr_max_conns = in.U8();
    peer.smcr_max_links = in.U8() % 4;
    if (flags & 2) peer.eid = wire::MakeClcEid("OTHER");
    return Encode(BuildProposal(peer));
  }
  EngineParams peer =
      Params(our_role == Role::kClient ? Role::kServer : Role::kClient);
  SmcrLink l;
  l.first_contact = flags & 1;
  l.local_qpn = in.U32() & 0xFFFFFF;
  l.local_token = in.U32();
  l.local_rmb_size = 16u * 1024 << (in.U8() % 4);
  l.max_conns = in.U8();
  l.max_links = in.U8() % 4;
  l.mtu = in.U8() % 6;
  const wire::ClcType t = our_role == Role::kClient ? wire::ClcType::kAccept
                                                    : wire::ClcType::kConfirm;
  wire::ClcSmcrAccept a = BuildSmcrAccept(t, peer, l);
  if (flags & 4) a.eid = wire::MakeClcEid("OTHER");
  return Encode(a);
}

// A well-formed V2 LLC message the peer might send, fields from the input.
std::vector<std::byte> MakeLlc(Input& in) {
  const uint8_t kind = in.U8();
  wire::LlcMessage m;
  switch (kind % 6) {
    case 0: {
      wire::LlcConfirmLink x;
      x.no_rmbe_eyecatcher = kind & 0x40;
      x.link_num = in.U8() % 3;
      x.link_uid = in.U32();
      x.max_links = in.U8() % 3;
      m = x;
      break;
    }
    case 1: {
      wire::LlcTestLink x;
      m = x;
      break;
    }
    case 2: {
      wire::LlcDeleteLink x;
      x.all = kind & 0x40;
      x.orderly = kind & 0x20;
      x.link_num = in.U8() % 3;
      x.reason = in.U32();
      m = x;
      break;
    }
    case 3: {
      wire::LlcConfirmRkey x;
      x.rtokens[0].rkey = in.U32();
      x.rtokens[0].vaddr = in.U32();
      m = x;
      break;
    }
    case 4: {
      wire::LlcDeleteRkey x;
      x.num_rkeys = 1;
      x.rkeys[0] = in.U32();
      m = x;
      break;
    }
    default: {
      wire::LlcAddLink x;
      m = x;
      break;
    }
  }
  std::visit(
      [&](auto& x) {
        x.hdr.v2 = true;
        x.hdr.response = kind & 0x80;
      },
      m);
  std::array<std::byte, 256> buf{};
  wire::WireResult<size_t> n = wire::EncodeLlc(m, buf);
  if (!n.ok()) return {};
  return std::vector<std::byte>(buf.begin(), buf.begin() + *n);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  Driver d(in.U8() & 1 ? Role::kServer : Role::kClient);
  d.Feed(Start{});
  std::vector<std::byte> tcp;  // peer bytes not yet consumed
  uint16_t seqno = 0;
  for (int step = 0; step < 200 && !in.empty(); ++step) {
    const uint8_t op = in.U8();
    d.now += std::chrono::milliseconds(in.U8() * 40);
    switch (op % 10) {
      case 0:
      case 1: {  // CLC bytes on TCP
        std::vector<std::byte> b =
            op & 0x80 ? MakeClc(in, d.params.role) : Raw(in, in.U8());
        tcp.insert(tcp.end(), b.begin(), b.end());
        if (d.conn.mode() == Mode::kHandshake) {
          const Actions a = d.conn.OnEvent(TcpBytes{tcp}, d.now);
          size_t consumed = 0;
          for (const Action& x : a) {
            if (const auto* c = std::get_if<TcpConsumed>(&x))
              consumed += c->len;
          }
          FUZZ_CHECK(consumed <= tcp.size());
          tcp.erase(tcp.begin(), tcp.begin() + consumed);
          d.Execute(a);
        }
        break;
      }
      case 2: {  // LLC SEND from the peer
        std::vector<std::byte> b =
            op & 0x80 ? MakeLlc(in) : Raw(in, in.U8() % 100);
        if (d.lgr) {
          std::vector<Event> answers;
          d.RunLgr(d.lgr->OnEvent(LgrLlcReceived{b}, d.now), answers);
          for (const Event& e : answers) d.Feed(e);
        }
        break;
      }
      case 3: {  // CDC SEND, raw
        SmcrCdcReceived e;
        std::span<const std::byte> b = in.Take(44);
        std::copy(b.begin(), b.end(), e.bytes.begin());
        d.Feed(e);
        break;
      }
      case 4: {  // CDC SEND, well-formed, fuzzed fields
        wire::CdcMessage m;
        m.seqno = op & 0x80 ? ++seqno : uint16_t(in.U32());
        m.alert_token = op & 0x40 ? d.token : in.U32();
        m.producer = {uint16_t(in.U8() % 3), in.U32() % (1u << 17)};
        m.consumer = {uint16_t(in.U8() % 3), in.U32() % (1u << 17)};
        m.prod_flags = wire::DecodeCdcProducerFlags(in.U8());
        m.conn_state = wire::DecodeCdcConnStateFlags(in.U8());
        SmcrCdcReceived e;
        (void)wire::EncodeCdc(m, e.bytes);
        d.Feed(e);
        break;
      }
      case 5: {  // app send
        const CopyPlan p = d.conn.PlanSend(in.U32() % (1u << 17));
        d.Feed(AppSent{p.total, bool(op & 0x80), bool(op & 0x40)});
        break;
      }
      case 6: {  // app read
        const CopyPlan p = d.conn.PlanRecv(in.U32() % (1u << 17));
        d.Feed(AppConsumed{p.total, bool(op & 0x80)});
        break;
      }
      case 7: {  // timers
        d.Feed(Timeout{});
        if (d.lgr) {
          std::vector<Event> answers;
          d.RunLgr(d.lgr->OnEvent(LgrTimeout{}, d.now), answers);
          for (const Event& e : answers) d.Feed(e);
        }
        break;
      }
      case 8: {  // registry answers out of turn, completions
        switch (in.U8() % 6) {
          case 0:
            d.Feed(
                SmcrLgrJoined{bool(op & 1), in.U32(), {}, in.U32(), in.U32()});
            break;
          case 1:
            d.Feed(SmcrLgrJoinFailed{in.U32()});
            break;
          case 2:
            d.Feed(SmcrLinkUp{});
            break;
          case 3:
            d.Feed(SmcrLinkFailed{in.U32()});
            break;
          case 4:
            d.Feed(SmcrRkeyConfirmed{bool(op & 1)});
            break;
          default:
            d.Feed(SmcrSendCompleted{});
        }
        break;
      }
      default: {  // close / abort / shutdown / link failure
        switch (in.U8() % 4) {
          case 0:
            d.Feed(AppClose{});
            break;
          case 1:
            d.Feed(AppAbort{});
            break;
          case 2:
            d.Feed(AppShutdown{bool(op & 1), true});
            break;
          default:
            if (d.lgr) {
              std::vector<Event> answers;
              d.RunLgr(d.lgr->OnEvent(LgrLinkFailed{}, d.now), answers);
              for (const Event& e : answers) d.Feed(e);
            }
        }
      }
    }
    d.CheckPlans();
    // The group ended: the connection is no live SMC-R connection.
    if (d.lgr_ended && d.conn.mode() == Mode::kSmc) {
      FUZZ_CHECK(d.conn.SendError() != 0);
    }
  }
  return 0;
}
