#include "engine/connection.h"

#include <algorithm>
#include <cerrno>
#include <string>

#include "base/overloaded.h"
#include "engine/smcr_transport.h"
#include "wire/reason.h"

namespace usmc::engine {
namespace {

std::variant<ClcClient, ClcServer> MakeClc(const EngineParams& p,
                                           Entropy* entropy) {
  if (p.role == Role::kClient) {
    return std::variant<ClcClient, ClcServer>(std::in_place_index<0>, p,
                                              entropy);
  }
  return std::variant<ClcClient, ClcServer>(std::in_place_index<1>, p, entropy);
}

bool AllZero(const std::array<std::byte, 32>& a) {
  return std::all_of(a.begin(), a.end(),
                     [](std::byte b) { return b == std::byte{0}; });
}

}  // namespace

Connection::Connection(const EngineParams& params, Entropy* entropy)
    : params_(params), entropy_(entropy), clc_(MakeClc(params, entropy)) {}

std::string_view Connection::handshake_state() const {
  return std::visit([](const auto& m) { return ToString(m.state()); }, clc_);
}

std::optional<TimePoint> Connection::NextDeadline() const {
  if (mode_ == Mode::kSmc) return peer_close_wait_;
  if (mode_ != Mode::kHandshake) return std::nullopt;
  return std::visit([](const auto& m) { return m.NextDeadline(); }, clc_);
}

Actions Connection::OnEvent(const Event& event, TimePoint now) {
  Actions out;
  switch (mode_) {
    case Mode::kHandshake:
      OnHandshakeEvent(event, now, out);
      break;
    case Mode::kSmc:
      OnSmcdEvent(event, now, out);
      break;
    case Mode::kTcp:
    case Mode::kFailed:
      // The runtime owns the TCP socket now; a stale timer is harmless.
      if (!std::holds_alternative<Timeout>(event)) InvalidEvent(event, out);
      break;
  }
  return out;
}

// ---- handshake ----

void Connection::OnHandshakeEvent(const Event& event, TimePoint now,
                                  Actions& out) {
  std::visit(
      [&](auto& m) {
        std::visit(
            base::Overloaded{
                [&](const Start&) { m.OnStart(now, out); },
                [&](const TcpBytes& e) { m.OnTcpBytes(e.bytes, now, out); },
                [&](const TcpEof&) { m.OnTcpEof(out); },
                [&](const RecvBufferRegistered& e) {
                  if constexpr (std::is_same_v<std::decay_t<decltype(m)>,
                                               ClcServer>) {
                    m.OnDmbRegistered(e, now, out);
                  } else {
                    m.OnDmbRegistered(e, out);
                  }
                },
                [&](const RecvBufferFailed& e) {
                  m.OnDmbRegisterFailed(e, out);
                },
                [&](const PeerBufferAttached& e) {
                  if constexpr (std::is_same_v<std::decay_t<decltype(m)>,
                                               ClcServer>) {
                    m.OnPeerDmbAttached(e, now, out);
                  } else {
                    m.OnPeerDmbAttached(e, out);
                  }
                },
                [&](const PeerBufferAttachFailed& e) {
                  m.OnPeerDmbAttachFailed(e, out);
                },
                [&](const Timeout& t) {
                  m.OnTimeout(t.cut_short ? TimePoint::max() : now, out);
                },
                [&](const AppClose&) { m.OnAppClose(out); },
                [&](const AppAbort&) { m.OnAppClose(out); },
                // The peer may publish as soon as it is ACTIVE, before we
                // are: the runtime re-delivers the area after HandshakeDone.
                [&](const CdcArrived&) {},
                // SMC-R: the SEND is gone once read; keep the latest (CDCs
                // are cumulative) for when the data path exists.
                [&](const SmcrCdcReceived& e) { early_cdc_ = e.bytes; },
                [&](const SmcrSendCompleted&) {},
                [&](const SmcrLgrJoined& e) {
                  if constexpr (std::is_same_v<std::decay_t<decltype(m)>,
                                               ClcServer>) {
                    m.OnLgrJoined(e, now, out);
                  } else {
                    m.OnLgrJoined(e, out);
                  }
                },
                [&](const SmcrLgrJoinFailed& e) { m.OnLgrJoinFailed(e, out); },
                [&](const SmcrRkeyConfirmed& e) {
                  if constexpr (std::is_same_v<std::decay_t<decltype(m)>,
                                               ClcServer>) {
                    m.OnRkeyConfirmed(e, now, out);
                  } else {
                    m.OnRkeyConfirmed(e, out);
                  }
                },
                [&](const SmcrLinkUp&) { m.OnLinkUp(out); },
                [&](const SmcrLinkFailed& e) { m.OnLinkFailed(e, out); },
                [&](const auto&) { m.OnForeignEvent(EventName(event), out); },
            },
            event);
      },
      clc_);
  AfterHandshakeStep(out);
}

void Connection::AfterHandshakeStep(Actions& out) {
  const HandshakeCore& core = std::visit(
      [](const auto& m) -> const HandshakeCore& { return m.core(); }, clc_);
  const HandshakeOutcome o =
      std::visit([](const auto& m) { return m.Outcome(); }, clc_);
  if (o == HandshakeOutcome::kSmcd) {
    mode_ = Mode::kSmc;
    technology_ = Technology::kSmcd;
    link_ = core.link;
    transport_ = std::make_unique<SmcdTransport>();
    data_.emplace(DataPathConfig{link_.local_dmb_size, link_.peer_dmb_size,
                                 transport_->ring_offset()});
  } else if (o == HandshakeOutcome::kSmcr) {
    mode_ = Mode::kSmc;
    technology_ = Technology::kSmcr;
    smcr_ = core.smcr;
    // No autocork: the kernel sends a corked CDC from its completion
    // handler, but this engine runs only when the app calls in, so a corked
    // CDC waited for the app's next call: an idle sender's last bytes stayed
    // unsent, then raced its close (the lab's usmc-pair lost 8 KiB).
    transport_ = std::make_unique<SmcrTransport>(
        smcr_.local_token, smcr_.peer_token, smcr_.peer_rmb_size,
        /*autocork=*/false);
    data_.emplace(DataPathConfig{smcr_.local_rmb_size, smcr_.peer_rmb_size,
                                 transport_->ring_offset()});
    if (early_cdc_.has_value()) {
      const std::array<std::byte, 44> early = *early_cdc_;
      early_cdc_.reset();
      OnPeerCdc(early, out);
    }
  } else if (o == HandshakeOutcome::kFallback) {
    mode_ = Mode::kTcp;
  } else if (o == HandshakeOutcome::kFailed) {
    mode_ = Mode::kFailed;
    finished_ = true;
  }
}

// ---- SMC-D ----

void Connection::OnSmcdEvent(const Event& event, TimePoint now, Actions& out) {
  if (finished_) {
    // Buffers are gone; only a stale timer or late news of the peer or a
    // sibling may arrive.
    if (!std::holds_alternative<Timeout>(event) &&
        !std::holds_alternative<TcpEof>(event) &&
        !std::holds_alternative<PeerVanished>(event) &&
        !std::holds_alternative<SiblingPublished>(event)) {
      InvalidEvent(event, out);
    }
    return;
  }
  std::visit(
      base::Overloaded{
          [&](const CdcArrived& e) {
            if (technology_ != Technology::kSmcd) {
              InvalidEvent(event, out);
              return;
            }
            OnPeerCdc(e.area, out);
          },
          [&](const SmcrCdcReceived& e) {
            if (technology_ != Technology::kSmcr) {
              InvalidEvent(event, out);
              return;
            }
            OnPeerCdc(e.bytes, out);
          },
          [&](const SmcrSendCompleted&) {
            if (technology_ != Technology::kSmcr) {
              InvalidEvent(event, out);
              return;
            }
            transport_->OnSendCompleted(out);
          },
          [&](const AppSent& e) { OnAppSent(e, out); },
          [&](const AppConsumed& e) { OnAppConsumed(e, out); },
          [&](const UrgentByteCaptured& e) { data_->SetUrgentByte(e.value); },
          [&](const AppShutdown& e) {
            if (e.read) read_shut_ = true;
            if (e.write && !ApplyClose(CloseEvent::kAppShutdownWrite, out)) {
              InvalidEvent(event, out);
            }
          },
          [&](const AppClose&) {
            if (!ApplyClose(CloseEvent::kAppClose, out)) {
              InvalidEvent(event, out);
            }
          },
          [&](const AppAbort&) {
            if (!ApplyClose(CloseEvent::kAppAbort, out)) {
              InvalidEvent(event, out);
              return;
            }
            out.push_back(AbortTcp{});
            MaybeFinish(out);
          },
          [&](const DeviceFailed&) { LocalAbort("device failed", out); },
          [&](const SiblingPublished& e) {
            // Sharing a connection across processes is SMC-D only so far.
            if (technology_ != Technology::kSmcd) {
              InvalidEvent(event, out);
              return;
            }
            OnSiblingPublished(e, out);
          },
          [&](const PeerVanished&) { OnPeerVanished(out); },
          [&](const TcpEof&) { OnTcpEof(now, out); },
          [&](const TcpBytes& e) {
            if (!e.bytes.empty()) LocalAbort("TCP data during SMC-D", out);
          },
          [&](const Timeout& t) { OnSmcTimeout(t, now, out); },
          [&](const AppSentToClosedPeer&) {
            if (!SendDiscards()) {
              InvalidEvent(event, out);
              return;
            }
            // TCP: the closed peer answers these bytes with a reset, which
            // in CLOSE_WAIT is EPIPE; the next send fails with it.
            error_ = EPIPE;
            out.push_back(ReportError{EPIPE, "sent after the peer closed"});
            out.push_back(NotifyApp{true, true});
          },
          [&](const AppErrorReported&) {
            if (error_ != 0) error_seen_ = true;
          },
          [&](const auto&) { InvalidEvent(event, out); },
      },
      event);
}

bool Connection::Dead() const {
  const CloseState cs = close_.state();
  return cs == CloseState::kPeerAbortWait || cs == CloseState::kProcessAbort ||
         cs == CloseState::kClosed;
}

void Connection::OnPeerCdc(std::span<const std::byte> bytes, Actions& out) {
  // SMC-D: the peer has not written a CDC yet.
  if (std::all_of(bytes.begin(), bytes.end(),
                  [](std::byte b) { return b == std::byte{0}; })) {
    return;
  }
  if (Dead()) return;
  wire::WireResult<wire::CdcMessage> m = transport_->Decode(bytes);
  if (!m.ok()) {
    ++counters_.violations;
    LocalAbort(ToString(CdcViolation::kUndecodable), out);
    return;
  }
  // SMC-R: another connection's token or an old sequence number is
  // dropped, as the kernel does (smc_cdc_rx_handler).
  if (!transport_->Admit(*m)) return;
  const PeerCdcResult r = data_->OnPeerCdc(*m);
  if (r.violation != CdcViolation::kNone) {
    ++counters_.violations;
    LocalAbort(ToString(r.violation), out);
    return;
  }
  ++counters_.cdc_received;
  if (r.urgent_arrived) {
    // Before anything that could free the slot: copy the byte out.
    out.push_back(CaptureUrgentByte{r.urgent_offset});
    ++counters_.urgent_received;
  }
  const bool state_changed = r.new_abort || r.new_closed || r.new_done_writing;
  if (!PeerCloseFlags(r.new_abort, r.new_closed, r.new_done_writing, out)) {
    return;
  }
  if (r.send_consumer_update && !finished_) {
    Publish(out);
    ++counters_.consumer_updates;
  }
  if (r.new_bytes > 0 || r.freed_space > 0 || r.urgent_arrived ||
      state_changed) {
    out.push_back(
        NotifyApp{r.new_bytes > 0 || r.urgent_arrived || state_changed,
                  r.freed_space > 0 || state_changed});
  }
}

bool Connection::PeerCloseFlags(bool abort, bool closed, bool done_writing,
                                Actions& out) {
  if (!abort && !closed && !done_writing) return true;
  CloseEvent ev = CloseEvent::kPeerDoneWriting;
  if (abort) {
    ev = CloseEvent::kPeerAbort;
  } else if (closed) {
    ev = CloseEvent::kPeerClosed;
  }
  if (!ApplyClose(ev, out)) {
    LocalAbort("impossible close sequence from the peer", out);
    return false;
  }
  if ((abort || closed) && peer_close_wait_) {
    // The close CDC the TCP end announced came: it decided.
    peer_close_wait_.reset();
    out.push_back(CancelTimer{});
  }
  return true;
}

void Connection::OnSiblingPublished(const SiblingPublished& e, Actions& out) {
  // Nothing published yet (after exec the area matches our state already).
  if (AllZero(e.published) || Dead()) return;
  wire::WireResult<wire::CdcMessage> ours = transport_->Decode(e.published);
  wire::WireResult<wire::CdcMessage> peers{wire::CdcMessage{}};
  if (!AllZero(e.peer_area)) peers = transport_->Decode(e.peer_area);
  if (!ours.ok() || !peers.ok()) {
    ++counters_.violations;
    LocalAbort(ToString(CdcViolation::kUndecodable), out);
    return;
  }
  const CdcViolation v =
      data_->AdoptSibling(*ours, AllZero(e.peer_area) ? nullptr : &*peers);
  if (v != CdcViolation::kNone) {
    ++counters_.violations;
    LocalAbort(ToString(v), out);
  }
}

void Connection::OnTcpEof(TimePoint now, Actions& out) {
  if (close_.peer_closed() || close_.aborted()) return;
  if (technology_ == Technology::kSmcr) {
    // SMC-R: the CLC socket is only a hint once the link carries the
    // connection (the kernel never reads its CLC socket after the
    // handshake). Its close CDC, posted before its TCP close, may still be
    // on the way: it says how the peer closed (kSmcrPeerCloseWait).
    if (!peer_close_wait_) {
      peer_close_wait_ = now + kSmcrPeerCloseWait;
      out.push_back(ArmTimer{*peer_close_wait_});
    }
    return;
  }
  // SMC-D: a peer that closes TCP without closing SMC first has died (its
  // area is final, shared memory has no flight): an abort (ECONNRESET),
  // like a TCP RST.
  (void)ApplyClose(CloseEvent::kPeerAbort, out);
  out.push_back(NotifyApp{true, true});
}

void Connection::OnSmcTimeout(const Timeout& t, TimePoint now, Actions& out) {
  // Anything else is a stale handshake timer, or early.
  if (!peer_close_wait_ || (!t.cut_short && now < *peer_close_wait_)) return;
  peer_close_wait_.reset();
  if (close_.peer_closed() || close_.aborted()) return;
  // No close CDC: the peer is gone (its last CDC, and maybe bytes it
  // wrote, with it: no EOF that could hide a loss).
  (void)ApplyClose(CloseEvent::kPeerAbort, out,
                   "the peer's TCP connection ended and no SMC-R close "
                   "followed");
  out.push_back(NotifyApp{true, true});
}

void Connection::OnPeerVanished(Actions& out) {
  // Its last CDC closed or aborted: an orderly end the engine has already.
  if (finished_ || Dead() || close_.peer_closed()) return;
  // What TCP does when a process dies: its close becomes a FIN (EOF after
  // the data already here), or a reset (RST) if it left data of ours unread.
  const bool unread = !(data_->tx_producer() == data_->peer_consumer());
  data_->NotePeerVanished(unread);
  if (PeerCloseFlags(unread, !unread, false, out)) {
    out.push_back(NotifyApp{true, true});
  }
}

void Connection::OnAppSent(const AppSent& e, Actions& out) {
  if (int err = SendError(); err != 0) {
    ReportErrno(err, "send on a connection that cannot send", out);
    return;
  }
  if (!data_->CommitSend(e.len, e.wanted_more, e.urgent)) {
    InvalidEvent(Event(e), out);
    return;
  }
  counters_.bytes_sent += e.len;
  if (e.wanted_more) ++counters_.buffer_full;
  if (e.urgent && e.len > 0) ++counters_.urgent_sent;
  if (e.len > 0 || e.wanted_more != published_write_blocked_) Publish(out);
}

void Connection::OnAppConsumed(const AppConsumed& e, Actions& out) {
  if (e.len > data_->ReadableBeforeMark()) {
    InvalidEvent(Event(e), out);
    return;
  }
  counters_.bytes_received += e.len;
  if (data_->CommitRecv(e.len) || (e.confirm && e.len > 0)) {
    Publish(out);
    ++counters_.consumer_updates;
  }
}

bool Connection::ApplyClose(CloseEvent ev, Actions& out,
                            std::string_view what) {
  const bool unread = data_.has_value() && data_->Readable() > 0;
  const bool peer_fin = close_.peer_write_shut();
  const CloseStep s = close_.Handle(ev, unread);
  if (!s.valid) return false;
  bool publish = false;
  if (s.send_done_writing) {
    local_flags_.peer_done_writing = true;
    publish = true;
  }
  if (s.send_closed) {
    local_flags_.peer_conn_closed = true;
    publish = true;
  }
  if (s.send_abort) {
    local_flags_.peer_conn_abort = true;
    publish = true;
  }
  if (publish) Publish(out);
  if (s.abort_tcp) out.push_back(AbortTcp{});
  if (s.error != 0) {
    int err = s.error;
    if (err == ECONNRESET && peer_fin) {
      // TCP: a reset after the peer's FIN (CLOSE_WAIT) is EPIPE, and a recv
      // still sees the EOF.
      err = EPIPE;
      if (error_ == 0) error_ = EPIPE;
    }
    if (what.empty()) {
      what = err == ECONNABORTED ? "connection aborted"
                                 : "peer aborted the connection";
    }
    ReportErrno(err, what, out);
  }
  MaybeFinish(out);
  return true;
}

void Connection::LocalAbort(std::string_view what, Actions& out) {
  const std::string why = "connection aborted: " + std::string(what);
  (void)ApplyClose(CloseEvent::kLocalAbort, out, why);
  out.push_back(NotifyApp{true, true});
}

void Connection::InvalidEvent(const Event& event, Actions& out) {
  std::string what = "invalid event " + std::string(EventName(event)) +
                     " in mode " + std::string(ToString(mode_));
  if (mode_ == Mode::kSmc) {
    what += ", close state " + std::string(ToString(close_.state()));
  }
  out.push_back(ReportError{EINVAL, what});
  if (mode_ == Mode::kSmc && !finished_) {
    (void)ApplyClose(CloseEvent::kLocalAbort, out);
  }
}

void Connection::Publish(Actions& out) {
  if (finished_ || !data_.has_value()) return;
  const wire::CdcMessage m = data_->BuildCdc(local_flags_);
  published_write_blocked_ = m.prod_flags.write_blocked;
  transport_->Publish(m, out);
  ++counters_.cdc_published;
  ++counters_.wakeups_requested;
}

void Connection::MaybeFinish(Actions& out) {
  if (finished_ || close_.state() != CloseState::kClosed ||
      !close_.released()) {
    return;
  }
  finished_ = true;
  if (technology_ == Technology::kSmcr) {
    // DELETE_RKEY for our RMB (the kernel's smcr_buf_unuse); the group
    // stays for the next connection.
    out.push_back(SmcrLeaveLgr{smcr_.local_token, smcr_.local_rkey, true});
  } else {
    out.push_back(ReleaseBuffers{true, link_.local_dmb_token, true,
                                 link_.peer_dmb_token});
  }
  out.push_back(CloseTcp{});
}

void Connection::ReportErrno(int err, std::string_view what, Actions& out) {
  if (error_ == 0 && (err == ECONNRESET || err == ECONNABORTED)) error_ = err;
  out.push_back(ReportError{err, std::string(what)});
}

// ---- queries ----

int Connection::PendingError() const {
  if (mode_ != Mode::kSmc || error_seen_) return 0;
  return error_;
}

bool Connection::HungUp() const {
  if (mode_ != Mode::kSmc) return false;
  return error_ != 0 || finished_ ||
         (close_.peer_write_shut() && close_.write_shut());
}

int Connection::SendError() const {
  if (mode_ != Mode::kSmc) return ENOTCONN;
  if (error_ != 0) return error_seen_ ? EPIPE : error_;
  if (close_.write_shut() || close_.aborted()) return EPIPE;
  return 0;
}

bool Connection::SendDiscards() const {
  return mode_ == Mode::kSmc && error_ == 0 && !finished_ &&
         close_.peer_closed() && !close_.write_shut() && !close_.aborted();
}

uint32_t Connection::SendSpace() const {
  return SendError() == 0 && !SendDiscards() ? data_->SendSpace() : 0;
}

CopyPlan Connection::PlanSend(size_t want) const {
  if (SendError() != 0 || SendDiscards()) return CopyPlan{};
  return data_->PlanSend(want);
}

RecvStatus Connection::RecvState() const {
  RecvStatus s;
  if (mode_ != Mode::kSmc) {
    s.error = ENOTCONN;
    return s;
  }
  s.read_closed =
      error_ != 0 || finished_ || read_shut_ || close_.peer_write_shut();
  if (finished_) {
    s.eof = true;
    return s;
  }
  // A local abort does not trust the ring any more; a peer's reset leaves
  // what it wrote before readable (TCP reads queued bytes before the RST).
  if (error_ != ECONNABORTED) s.readable = data_->ReadableBeforeMark();
  if (s.readable > 0) return s;
  // TCP's order once nothing is queued: EOF if the peer's FIN came first,
  // else the pending error, else (error reported) EOF.
  if (error_ != 0 && !error_seen_ && error_ != EPIPE) {
    s.error = error_;
    return s;
  }
  s.eof = (error_ != 0 || data_->Readable() == 0) && s.read_closed;
  return s;
}

CopyPlan Connection::PlanRecv(size_t max) const {
  if (mode_ != Mode::kSmc || error_ == ECONNABORTED || finished_) {
    return CopyPlan{};
  }
  return data_->PlanRecv(max);
}

bool Connection::WaitAllSatisfied(size_t n) const {
  const RecvStatus s = RecvState();
  if (s.error != 0 || s.eof || close_.peer_write_shut()) return true;
  if (data_->ReadableBeforeMark() < data_->Readable()) return true;  // mark
  return s.readable >= n || s.readable == data_->local_ring_size();
}

bool Connection::AtUrgentMark() const {
  return mode_ == Mode::kSmc && data_->AtUrgentMark();
}

int Connection::ReadUrgent(bool peek, std::byte* out) {
  if (mode_ != Mode::kSmc) return EINVAL;
  return data_->ReadUrgent(peek, out);
}

ConnectionStats Connection::Stats() const {
  ConnectionStats s;
  s.role = params_.role;
  s.mode = mode_;
  s.technology = technology_;
  s.handshake_state = handshake_state();
  s.close_state = close_.state();
  const HandshakeCore& core = std::visit(
      [](const auto& m) -> const HandshakeCore& { return m.core(); }, clc_);
  s.local_reason = core.local_reason;
  s.peer_reason = core.peer_reason;
  s.error = error_;
  if (data_.has_value()) {
    const bool r = technology_ == Technology::kSmcr;
    s.local_dmb_size = r ? smcr_.local_rmb_size : link_.local_dmb_size;
    s.peer_dmb_size = r ? smcr_.peer_rmb_size : link_.peer_dmb_size;
    s.tx_producer = data_->tx_producer();
    s.peer_consumer = data_->peer_consumer();
    s.rx_consumer = data_->rx_consumer();
    s.peer_producer = data_->peer_producer();
  }
  s.counters = counters_;
  return s;
}

}  // namespace usmc::engine
