#include "engine/snapshot.h"

#include <cerrno>
#include <string>

#include "engine/clc_common.h"

namespace usmc::engine {
namespace {

DataPathConfig ConfigFor(const SmcdLink& link) {
  return DataPathConfig{.local_dmb_size = link.local_dmb_size,
                        .peer_dmb_size = link.peer_dmb_size,
                        .ring_offset = wire::kSmcdCdcLen};
}

}  // namespace

std::string_view CheckSnapshot(const ConnectionSnapshot& s) {
  if (s.role != Role::kClient && s.role != Role::kServer) {
    return "role out of range";
  }
  // Sizes as CLC announced them: also what keeps the rings non-empty.
  if (!ValidSmcdDmbSize(s.link.local_dmb_size) ||
      !ValidSmcdDmbSize(s.link.peer_dmb_size)) {
    return "DMB size not an SMC-D size";
  }
  if (s.link.local_dmb_token == 0 || s.link.peer_dmb_token == 0) {
    return "DMB token 0";
  }
  std::string_view why = DataPath::CheckState(ConfigFor(s.link), s.data);
  if (!why.empty()) return why;
  why = CloseMachine::CheckState(s.close);
  if (!why.empty()) return why;
  if (s.error != 0 && s.error != ECONNRESET && s.error != ECONNABORTED &&
      s.error != EPIPE) {
    return "error not ECONNRESET, ECONNABORTED or EPIPE";
  }
  if (s.error_seen && s.error == 0) return "error seen but no error";
  if (s.finished &&
      !(s.close.state == CloseState::kClosed && s.close.released)) {
    return "finished before the close completed";
  }
  return {};
}

Result<ConnectionSnapshot> Connection::Snapshot() const {
  if (mode_ != Mode::kSmc || !data_.has_value() ||
      technology_ != Technology::kSmcd) {
    return Status(StatusCode::kFailedPrecondition,
                  "no snapshot of a connection in mode " +
                      std::string(ToString(mode_)) + " (SMC-D only)");
  }
  ConnectionSnapshot s;
  s.role = params_.role;
  s.link = link_;
  s.data = data_->SaveState();
  s.close = close_.SaveState();
  s.local_flags = local_flags_;
  s.published_write_blocked = published_write_blocked_;
  s.read_shut = read_shut_;
  s.finished = finished_;
  s.error = error_;
  s.error_seen = error_seen_;
  s.counters = counters_;
  return s;
}

Status Connection::Restore(const ConnectionSnapshot& s) {
  const bool fresh = mode_ == Mode::kHandshake &&
                     std::visit(
                         [](const auto& m) {
                           using S = std::decay_t<decltype(m.state())>;
                           return m.state() == S::kInit;
                         },
                         clc_);
  if (!fresh) {
    return Status(StatusCode::kFailedPrecondition,
                  "restore into a connection that already started");
  }
  if (std::string_view why = CheckSnapshot(s); !why.empty()) {
    return Status(StatusCode::kInvalidArgument,
                  "impossible snapshot: " + std::string(why));
  }
  if (s.role != params_.role) {
    return Status(StatusCode::kInvalidArgument, "snapshot of the other role");
  }
  if (!(s.link.local_device == params_.device)) {
    // Our DMB lives on one kernel: its GID must be this host's.
    return Status(StatusCode::kInvalidArgument,
                  "snapshot names another device than this host's");
  }
  if (params_.role == Role::kClient) {
    clc_.emplace<ClcClient>(params_, entropy_, ClcClientState::kActive, s.link,
                            /*own_registered=*/true);
  } else {
    clc_.emplace<ClcServer>(params_, entropy_, ClcServerState::kActive, s.link,
                            /*own_registered=*/true);
  }
  mode_ = Mode::kSmc;
  link_ = s.link;
  transport_ = std::make_unique<SmcdTransport>();
  data_.emplace(ConfigFor(link_), s.data);
  close_ = CloseMachine(s.close);
  local_flags_ = s.local_flags;
  published_write_blocked_ = s.published_write_blocked;
  read_shut_ = s.read_shut;
  finished_ = s.finished;
  error_ = s.error;
  error_seen_ = s.error_seen;
  counters_ = s.counters;
  return OkStatus();
}

}  // namespace usmc::engine
