// engine/smcr_test_util.h: a test stand-in for the runtime's SMC-R side
// (its link-group registry and RDMA executor), for engine tests only.
//
// SmcrSide wraps one Connection and the link group (engine/lgr) of its
// process: it carries out the connection's SMC-R actions by driving the
// Lgr (SmcrJoinLgr -> LgrConnOpen..., SmcrStartLink -> LgrQpReady) and feeds
// the answers back, as the runtime will. What goes out is recorded: CLC
// bytes, LLC SENDs, CDC SENDs, RDMA WRITEs (applied to the peer's RMB by
// SmcrWire). Memory: `sndbuf` mirrors the peer's RMB, `rmb` is ours.
//
//   SmcrSide c(ClientParams(), &entropy), s(ServerParams(), &entropy2);
//   SmcrWire w(c, s);
//   c.Feed(Start{}, now);
//   w.Pump(now);   // CLC, LLC and CDC both ways until nothing moves
#ifndef USMC_ENGINE_SMCR_TEST_UTIL_H_
#define USMC_ENGINE_SMCR_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "base/overloaded.h"
#include "engine/connection.h"
#include "engine/lgr.h"
#include "wire/reason.h"

namespace usmc::engine::testing {

inline wire::ClcGid V4MappedGid(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return wire::ClcGid{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d};
}

// usmc-to-usmc SMC-R parameters for one side (no SMC-D).
inline EngineParams SmcrParams(Role role, uint8_t host) {
  EngineParams p;
  p.role = role;
  p.smcd_enabled = false;
  p.smcr_enabled = true;
  p.eid = wire::MakeClcEid("USMC-TEST");
  p.hostname = wire::MakeClcHostname(role == Role::kClient ? "c" : "s");
  p.smcr.gid = V4MappedGid(10, 0, 0, host);
  p.smcr.mac = {0x52, 0x54, 0, 0, 0, host};
  p.smcr.mtu = 3;
  p.smcr.rmb_rkey = 0x100 + host;
  p.smcr.rmb_iova = 0x7000000000ULL + (uint64_t{host} << 24);
  p.smcr.rmb_size = 64 * 1024;
  p.smcr_system_id = {0x10, host, 0x01, 0, 0, 0, 0, host};
  return p;
}

class SmcrSide {
 public:
  SmcrSide(const EngineParams& p, Entropy* e) : params(p), conn(p, e) {}

  EngineParams params;
  Connection conn;
  // The process's link group (one peer in these tests).
  std::optional<Lgr> lgr;
  bool lgr_owner_first_contact = false;
  // The link's QP (ours) as the registry would create it.
  uint32_t qpn = 0x11;
  uint32_t psn = 0xabcdef;
  // Test knobs: the system ID a new group gets (else the Proposal's / a
  // random one); a client that knows no group (SYNCERR path).
  std::optional<SystemId> system_id;
  bool auto_send_completions = true;

  // Recorded output.
  std::deque<std::vector<std::byte>> tcp_out;      // CLC bytes to the peer
  std::deque<std::array<std::byte, 44>> send_out;  // LLC and CDC SENDs
  std::vector<Action> actions;                     // every engine action
  std::vector<LgrAction> lgr_actions;
  std::optional<Fallback> fallback;
  std::optional<HandshakeDone> done;
  bool tcp_closed = false;
  std::optional<TimePoint> lgr_deadline;
  std::vector<std::byte> sndbuf, rmb;
  // RDMA WRITEs not yet applied to the peer (SmcrWire applies them before
  // the SEND that follows: RC order).
  std::deque<std::pair<RdmaWrite, size_t>> writes;  // write, send_out index
  size_t sends_total = 0;

  void Feed(const Event& e, TimePoint now) {
    Execute(conn.OnEvent(e, now), now);
  }

  void FeedLlc(std::span<const std::byte> bytes, TimePoint now) {
    if (!lgr) return;
    RunLgr(lgr->OnEvent(LgrLlcReceived{bytes}, now), now);
  }

  void LgrTick(TimePoint now) {
    if (lgr) RunLgr(lgr->OnEvent(LgrTimeout{}, now), now);
  }

  void Execute(const Actions& a, TimePoint now) {
    EXPECT_EQ(a.dropped(), 0u);
    std::vector<Event> answers;
    for (const Action& x : a) {
      actions.push_back(x);
      std::visit(
          base::Overloaded{
              [&](const SendTcp& s) { tcp_out.push_back(s.bytes); },
              [&](const Fallback& f) { fallback = f; },
              [&](const HandshakeDone& d) {
                done = d;
                sndbuf.assign(d.smcr.peer_rmb_size, std::byte{0});
                rmb.assign(d.smcr.local_rmb_size, std::byte{0});
              },
              [&](const CloseTcp&) { tcp_closed = true; },
              [&](const SmcrJoinLgr& j) { Join(j, now, answers); },
              [&](const SmcrStartLink& s) { StartLink(s, now, answers); },
              [&](const SmcrConfirmRkey& c) {
                if (!lgr) {
                  answers.push_back(SmcrRkeyConfirmed{false});
                  return;
                }
                pending_rkey_ = true;
                RunLgr(lgr->OnEvent(LgrConfirmRkey{c.rkey, c.vaddr}, now), now,
                       &answers);
              },
              [&](const RdmaWrite& w) {
                writes.push_back({w, sends_total});
              },
              [&](const PostSend& p) {
                send_out.push_back(p.bytes);
                ++sends_total;
                if (auto_send_completions)
                  answers.push_back(SmcrSendCompleted{});
              },
              [&](const SmcrLeaveLgr& l) {
                if (!lgr) return;
                RunLgr(lgr->OnEvent(LgrConnClosed{l.token}, now), now,
                       &answers);
                if (l.announced) {
                  RunLgr(lgr->OnEvent(LgrDeleteRkey{l.rkey}, now), now,
                         &answers);
                }
              },
              [&](const auto&) {},
          },
          x);
    }
    for (const Event& e : answers) Feed(e, now);
  }

  void RunLgr(const LgrActions& a, TimePoint now,
              std::vector<Event>* answers_in = nullptr) {
    std::vector<Event> local;
    std::vector<Event>& answers = answers_in ? *answers_in : local;
    for (const LgrAction& x : a) {
      lgr_actions.push_back(x);
      std::visit(
          base::Overloaded{
              [&](const LgrSendLlc& s) {
                std::array<std::byte, 44> b;
                std::copy(s.bytes.begin(), s.bytes.end(), b.begin());
                send_out.push_back(b);
                ++sends_total;
              },
              [&](const LgrLinkUp&) { answers.push_back(SmcrLinkUp{}); },
              [&](const LgrFirstContactFailed& f) {
                answers.push_back(SmcrLinkFailed{f.clc_reason});
              },
              [&](const LgrConnAdded& c) { token_ = c.token; },
              [&](const LgrRkeyConfirmed& r) {
                if (pending_rkey_) {
                  pending_rkey_ = false;
                  answers.push_back(SmcrRkeyConfirmed{r.ok});
                }
              },
              [&](const LgrEnded& e) {
                if (conn.mode() == Mode::kSmc &&
                    std::find(e.abort_tokens.begin(), e.abort_tokens.end(),
                              my_token()) != e.abort_tokens.end()) {
                  answers.push_back(DeviceFailed{});
                }
              },
              [&](const LgrArmTimer& t) { lgr_deadline = t.deadline; },
              [&](const LgrCancelTimer&) { lgr_deadline.reset(); },
              [&](const auto&) {},
          },
          x);
    }
    if (!answers_in) {
      for (const Event& e : local) Feed(e, now);
    }
  }

  uint32_t my_token() const { return token_; }

 private:
  LgrParams MakeLgrParams(const SmcrLink& l) const {
    LgrParams p;
    p.role = params.role;
    p.local_mac = params.smcr.mac;
    p.local_gid = params.smcr.gid;
    p.local_qpn = qpn;
    p.peer_system_id = l.peer_system_id;
    p.peer_gid = l.peer_gid;
    p.peer_mac = l.peer_mac;
    p.peer_qpn = l.peer_qpn;
    p.max_links = l.max_links != 0 ? l.max_links : params.smcr_max_links;
    p.max_conns = l.max_conns != 0 ? l.max_conns : params.smcr_max_conns;
    return p;
  }

  void NewLgr(const SmcrLink& l) {
    LgrData d;
    if (system_id) {
      d.system_id = *system_id;
    } else if (params.role == Role::kClient) {
      d.system_id = params.smcr_system_id;  // what the Proposal said
    } else {
      d.system_id = {0x20, 0x22, 0x01, 0, 0, 0, 0, 0x01};
    }
    lgr.emplace(MakeLgrParams(l), d);
  }

  void Join(const SmcrJoinLgr& j, TimePoint now, std::vector<Event>& answers) {
    bool first = j.first_contact;
    if (params.role == Role::kClient && !first) {
      // smcr_lgr_match: system ID, the link's peer QPN and GID.
      if (!lgr || lgr->state() != LgrState::kActive ||
          lgr->params().peer_system_id != j.link.peer_system_id ||
          lgr->params().peer_qpn != j.link.peer_qpn ||
          lgr->params().peer_gid != j.link.peer_gid) {
        answers.push_back(SmcrLgrJoinFailed{wire::kReasonSyncErr});
        return;
      }
    }
    if (params.role == Role::kServer) {
      first = !(lgr && lgr->state() == LgrState::kActive &&
                lgr->params().peer_system_id == j.link.peer_system_id &&
                lgr->params().peer_gid == j.link.peer_gid);
    }
    if (first) NewLgr(j.link);
    token_ = 0;
    RunLgr(lgr->OnEvent(LgrConnOpen{}, now), now, &answers);
    if (token_ == 0) {
      answers.push_back(SmcrLgrJoinFailed{wire::kReasonMaxConnErr});
      return;
    }
    if (params.role == Role::kClient) {
      RunLgr(lgr->OnEvent(LgrAddPeerRtoken{j.link.peer_rkey, j.link.peer_vaddr},
                          now),
             now, &answers);
    }
    answers.push_back(SmcrLgrJoined{first, token_, lgr->system_id(), qpn, psn});
  }

  void StartLink(const SmcrStartLink& s, TimePoint now,
                 std::vector<Event>& answers) {
    if (!lgr) return;
    if (params.role == Role::kServer) {
      // The server learns the client's QPN from the Confirm.
      LgrParams p = lgr->params();
      p.peer_qpn = s.link.peer_qpn;
      p.peer_mac = s.link.peer_mac;
      LgrData d = lgr->data();
      lgr.emplace(p, d);
      RunLgr(lgr->OnEvent(LgrAddPeerRtoken{s.link.peer_rkey, s.link.peer_vaddr},
                          now),
             now, &answers);
    }
    RunLgr(lgr->OnEvent(LgrQpReady{}, now), now, &answers);
  }

  uint32_t token_ = 0;
  bool pending_rkey_ = false;
};

// Carries what each side sends to the other: CLC bytes (all at once),
// SENDs (LLC to the Lgr, CDC to the connection), RDMA WRITEs (into the
// peer's RMB, before the SEND that followed them).
class SmcrWire {
 public:
  SmcrWire(SmcrSide& a, SmcrSide& b) : a_(a), b_(b) {}
  bool drop_llc_a_to_b = false;
  bool drop_llc_b_to_a = false;

  // Moves everything queued until nothing moves (bounded).
  void Pump(TimePoint now) {
    for (int i = 0; i < 1000; ++i) {
      if (!Step(a_, b_, now, drop_llc_a_to_b) &&
          !Step(b_, a_, now, drop_llc_b_to_a)) {
        return;
      }
    }
    ADD_FAILURE() << "the wire never settled";
  }

 private:
  bool Step(SmcrSide& from, SmcrSide& to, TimePoint now, bool drop_llc) {
    if (!from.tcp_out.empty()) {
      std::vector<std::byte> b = std::move(from.tcp_out.front());
      from.tcp_out.pop_front();
      to_tcp_[&to].insert(to_tcp_[&to].end(), b.begin(), b.end());
      FeedTcp(to, now);
      return true;
    }
    if (!from.send_out.empty()) {
      // RDMA WRITEs posted before this SEND land first.
      while (!from.writes.empty() &&
             from.writes.front().second <= sent_[&from]) {
        const RdmaWrite w = from.writes.front().first;
        from.writes.pop_front();
        if (w.offset + w.len <= from.sndbuf.size() &&
            w.offset + w.len <= to.rmb.size()) {
          std::memcpy(to.rmb.data() + w.offset, from.sndbuf.data() + w.offset,
                      w.len);
        } else {
          ADD_FAILURE() << "RDMA WRITE outside the RMB";
        }
      }
      const std::array<std::byte, 44> s = from.send_out.front();
      from.send_out.pop_front();
      ++sent_[&from];
      if (s[0] == std::byte{0xFE}) {
        to.Feed(SmcrCdcReceived{s}, now);
      } else if (!drop_llc) {
        to.FeedLlc(s, now);
      }
      return true;
    }
    return false;
  }

  void FeedTcp(SmcrSide& to, TimePoint now) {
    std::vector<std::byte>& in = to_tcp_[&to];
    if (to.conn.mode() != Mode::kHandshake) return;  // the app's now
    const Actions a = to.conn.OnEvent(TcpBytes{in}, now);
    size_t consumed = 0;
    for (const Action& x : a) {
      if (const auto* c = std::get_if<TcpConsumed>(&x)) consumed += c->len;
    }
    in.erase(in.begin(), in.begin() + std::min(consumed, in.size()));
    to.Execute(a, now);
  }

 public:
  // Bytes on the TCP stream to `side` not consumed by CLC (the app's).
  std::vector<std::byte>& TcpTo(SmcrSide& side) { return to_tcp_[&side]; }

 private:
  SmcrSide& a_;
  SmcrSide& b_;
  std::map<SmcrSide*, std::vector<std::byte>> to_tcp_;
  std::map<SmcrSide*, size_t> sent_;
};

}  // namespace usmc::engine::testing

#endif  // USMC_ENGINE_SMCR_TEST_UTIL_H_
