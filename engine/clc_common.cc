#include "engine/clc_common.h"

#include <algorithm>
#include <array>

#include "wire/bufsize.h"
#include "wire/clc_frame.h"
#include "wire/reason.h"

namespace usmc::engine {

uint32_t ReasonForBadClc(const wire::WireError& e) {
  return e.code == wire::WireErrc::kBadVersion ? wire::kReasonVersMismat
                                               : wire::kReasonCnfErr;
}

std::string_view ToString(HandshakeEvent e) {
  switch (e) {
    case HandshakeEvent::kStart:
      return "Start";
    case HandshakeEvent::kClcMessage:
      return "ClcMessage";
    case HandshakeEvent::kClcError:
      return "ClcError";
    case HandshakeEvent::kDmbRegistered:
      return "RecvBufferRegistered";
    case HandshakeEvent::kDmbRegisterFailed:
      return "RecvBufferFailed";
    case HandshakeEvent::kPeerDmbAttached:
      return "PeerBufferAttached";
    case HandshakeEvent::kPeerDmbAttachFailed:
      return "PeerBufferAttachFailed";
    case HandshakeEvent::kTimeout:
      return "Timeout";
    case HandshakeEvent::kTcpEof:
      return "TcpEof";
    case HandshakeEvent::kAppClose:
      return "AppClose";
    case HandshakeEvent::kLgrJoined:
      return "SmcrLgrJoined";
    case HandshakeEvent::kLgrJoinFailed:
      return "SmcrLgrJoinFailed";
    case HandshakeEvent::kRkeyConfirmed:
      return "SmcrRkeyConfirmed";
    case HandshakeEvent::kLinkUp:
      return "SmcrLinkUp";
    case HandshakeEvent::kLinkFailed:
      return "SmcrLinkFailed";
  }
  return "Unknown";
}

std::ostream& operator<<(std::ostream& os, HandshakeEvent e) {
  return os << ToString(e);
}

std::string_view ToString(HandshakeOutcome o) {
  switch (o) {
    case HandshakeOutcome::kRunning:
      return "running";
    case HandshakeOutcome::kSmcd:
      return "smcd";
    case HandshakeOutcome::kSmcr:
      return "smcr";
    case HandshakeOutcome::kFallback:
      return "fallback";
    case HandshakeOutcome::kFailed:
      return "failed";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, HandshakeOutcome o) {
  return os << ToString(o);
}

wire::ClcProposal BuildProposal(const EngineParams& params) {
  wire::ClcProposal p;
  p.eyecatcher = wire::ClcEyecatcher::kSmcr;  // as Linux sends it
  p.trailer = wire::ClcEyecatcher::kSmcr;
  p.version = 2;
  p.typev1 = wire::SmcType::kNone;  // no SMC v1 path
  const bool d = params.smcd_enabled;
  const bool r = params.smcr_enabled;
  // SMC-Dv2 over the emulated ISM, SMC-Rv2, or both (type B).
  p.typev2 = d && r ? wire::SmcType::kBoth
                    : (r ? wire::SmcType::kR : wire::SmcType::kD);
  p.has_smcd_area = true;
  p.release = wire::kSmcRelease21;
  p.feature_mask = wire::kClcFeatureEmulatedIsm;
  p.eid_count = 1;
  p.eids[0] = params.eid;
  if (r) {
    // SMCR.md §1.2: our link group's system ID (D2), the MAC under our
    // RoCEv2 GID, and the v2.1 limits we accept.
    p.peer_id = params.smcr_system_id;
    p.mac = params.smcr.mac;
    p.roce_v2_gid = params.smcr.gid;
    p.max_conns = params.smcr_max_conns;
    p.max_links = params.smcr_max_links;
  }
  if (d || !r) {
    p.ism_device_count = 1;
    p.ism_devices[0] = wire::ClcIsmDevice{params.device.gid, params.device.chid,
                                          params.device.gid_ext};
  }
  return p;
}

wire::ClcSmcdAccept BuildSmcdAccept(wire::ClcType type,
                                    const EngineParams& params,
                                    uint64_t dmb_token, uint32_t dmb_size,
                                    uint32_t link_id) {
  wire::ClcSmcdAccept a;
  a.type = type;
  a.eyecatcher = wire::ClcEyecatcher::kSmcd;
  a.trailer = wire::ClcEyecatcher::kSmcd;
  a.version = 2;
  a.first_contact = true;  // every usmc connection has its own DMB pair
  a.gid = params.device.gid;
  a.dmb_token = dmb_token;
  a.dmbe_idx = 0;
  a.dmbe_size = wire::CompressBufSize(dmb_size, wire::kSmcdMaxCompressed);
  a.link_id = link_id;
  a.chid = params.device.chid;
  a.eid = params.eid;
  a.gid_ext = params.device.gid_ext;
  a.fce.long_form = true;
  a.fce.os_type = wire::kClcOsLinux;
  a.fce.release = wire::kSmcRelease21;
  a.fce.hostname = params.hostname;
  a.fce.feature_mask = wire::kClcFeatureEmulatedIsm;
  return a;
}

wire::ClcDecline BuildDecline(uint32_t reason) {
  wire::ClcDecline d;
  d.version = 2;
  d.peer_diagnosis = reason;
  d.os_type = wire::kClcOsLinux;
  return d;
}

uint32_t CheckProposal(const wire::ClcProposal& p, const EngineParams& params) {
  if (p.version < 2) return wire::kReasonVersMismat;
  if (!p.HasV2Extension()) return wire::kReasonNoV2Ext;
  if (!wire::SmcdIndicated(p.typev2) || !p.HasSmcdV2Extension()) {
    return wire::kReasonNoV2DExt;
  }
  if (!params.smcd_enabled) return params.no_smcd_reason;
  bool eid_match = false;
  for (size_t i = 0; i < p.eid_count && i < p.eids.size(); ++i) {
    if (p.eids[i] == params.eid) eid_match = true;
  }
  if (!eid_match) return wire::kReasonNoUeid;
  const wire::ClcIsmDevice ours{params.device.gid, params.device.chid,
                                params.device.gid_ext};
  for (size_t i = 0; i < p.ism_device_count && i < p.ism_devices.size(); ++i) {
    if (p.ism_devices[i] == ours) return 0;
  }
  return wire::kReasonNoSmcd2Dev;
}

uint32_t CheckSmcdAccept(const wire::ClcSmcdAccept& a,
                         const EngineParams& params) {
  if (a.version < 2) return wire::kReasonVersMismat;
  if (a.gid != params.device.gid || a.gid_ext != params.device.gid_ext ||
      a.chid != params.device.chid) {
    return wire::kReasonNoSmcd2Dev;
  }
  if (a.eid != params.eid) return wire::kReasonNoUeid;
  if (a.dmbe_size > wire::kSmcdMaxCompressed) return wire::kReasonCnfErr;
  return 0;
}

SendTcp EncodeForTcp(const wire::ClcMessage& m) {
  std::array<std::byte, wire::kClcMaxMessageLen> buf;
  SendTcp s;
  s.type = wire::TypeOf(m);
  wire::WireResult<size_t> n = wire::EncodeClc(m, buf);
  if (n.ok()) s.bytes.assign(buf.begin(), buf.begin() + *n);
  return s;
}

bool ValidSmcdDmbSize(uint32_t size) { return SmcdDmbSizeFor(size) == size; }

uint32_t SmcdDmbSizeFor(uint32_t wanted) {
  return static_cast<uint32_t>(wire::UncompressBufSize(
      wire::CompressBufSize(wanted, wire::kSmcdMaxCompressed)));
}

// ---- HandshakeCore ----

wire::ClcFrameDecoder::Status HandshakeCore::Feed(
    std::span<const std::byte> bytes, Actions& out) {
  // Nothing is consumed until the bytes hold a whole message, as Linux peeks
  // the header first: a peer that echoed the TCP option but speaks no CLC
  // keeps every byte it sent for the app after the fallback. The runtime
  // feeds the same (peeked) bytes again once more have arrived.
  using St = wire::ClcFrameDecoder::Status;
  const wire::ClcFramePeek p = wire::PeekClcFrame(bytes);
  if (p.status == wire::ClcFramePeek::Status::kNeedMore) return St::kNeedMore;
  peer_spoke_clc_ = p.status == wire::ClcFramePeek::Status::kComplete;
  if (!peer_spoke_clc_) {
    // Not CLC at all: those bytes are the app's.
    frame_len_ = 0;
    decode_error_ = p.error;
    return St::kError;
  }
  // A whole message with a CLC header is the handshake's, valid or not.
  frame_len_ = p.length;
  out.push_back(TcpConsumed{p.length});
  wire::WireResult<wire::ClcMessage> m = wire::DecodeClc(bytes.first(p.length));
  if (!m) {
    decode_error_ = m.error();
    return St::kError;
  }
  message_ = std::move(*m);
  return St::kFrame;
}

std::optional<uint32_t> HandshakeCore::DeclineBehindFrame(
    std::span<const std::byte> bytes, Actions& out) {
  if (frame_len_ == 0 || frame_len_ >= bytes.size()) return std::nullopt;
  std::span<const std::byte> rest = bytes.subspan(frame_len_);
  const wire::ClcFramePeek p = wire::PeekClcFrame(rest);
  if (p.status != wire::ClcFramePeek::Status::kComplete ||
      p.header.type != wire::ClcType::kDecline) {
    return std::nullopt;
  }
  wire::WireResult<wire::ClcMessage> m = wire::DecodeClc(rest.first(p.length));
  if (!m) return std::nullopt;
  const auto* decline = std::get_if<wire::ClcDecline>(&*m);
  if (decline == nullptr) return std::nullopt;
  out.push_back(TcpConsumed{p.length});
  return decline->peer_diagnosis;
}

void HandshakeCore::ArmTimer(TimePoint now, Actions& out) {
  deadline_ = now + params_.clc_timeout;
  out.push_back(engine::ArmTimer{*deadline_});
}

void HandshakeCore::CancelTimer(Actions& out) {
  if (!deadline_.has_value()) return;
  deadline_.reset();
  out.push_back(engine::CancelTimer{});
}

void HandshakeCore::ReleaseBuffers(Actions& out) {
  if (lgr_joined) {
    out.push_back(SmcrLeaveLgr{smcr.local_token, smcr.local_rkey,
                               rkey_announced, peer_out_of_sync});
    lgr_joined = false;
    rkey_announced = false;
  }
  if (!own_registered && !peer_attached) return;
  out.push_back(engine::ReleaseBuffers{own_registered, link.local_dmb_token,
                                       peer_attached, link.peer_dmb_token});
  own_registered = false;
  peer_attached = false;
}

void HandshakeCore::FallBack(uint32_t local, uint32_t peer, bool send_decline,
                             Actions& out, bool out_of_sync) {
  if (finished_) return;
  finished_ = true;
  CancelTimer(out);
  if (send_decline) {
    wire::ClcDecline d = BuildDecline(local);
    d.out_of_sync = out_of_sync;
    out.push_back(EncodeForTcp(d));
  }
  ReleaseBuffers(out);
  local_reason = local;
  peer_reason = peer;
  out.push_back(Fallback{local, peer, send_decline});
}

void HandshakeCore::Fail(int err, std::string_view what, bool abort_tcp,
                         Actions& out) {
  if (finished_) return;
  finished_ = true;
  CancelTimer(out);
  ReleaseBuffers(out);
  if (abort_tcp) out.push_back(AbortTcp{});
  if (err != 0) out.push_back(ReportError{err, std::string(what)});
}

void HandshakeCore::TakeLgrJoined(const SmcrLgrJoined& e) {
  lgr_joined = true;
  smcr.local_token = e.token;
  smcr.local_system_id = e.system_id;
  smcr.local_qpn = e.qpn;
  smcr.local_psn = e.psn;
  if (e.rmb_rkey != 0 || e.rmb_iova != 0) {
    smcr.local_rkey = e.rmb_rkey;
    smcr.local_iova = e.rmb_iova;
  }
}

HandshakeDone HandshakeCore::SmcrFirstContactDone() {
  rkey_announced = true;
  return HandshakeDone{Technology::kSmcr, {}, smcr};
}

}  // namespace usmc::engine
