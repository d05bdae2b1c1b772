// ToString / operator<< for the engine's vocabulary (common.h, events.h,
// actions.h).
#include <ostream>
#include <type_traits>
#include <variant>

#include "engine/actions.h"
#include "engine/common.h"
#include "engine/events.h"

namespace usmc::engine {

std::string_view ToString(Role r) {
  return r == Role::kClient ? "client" : "server";
}

std::string_view ToString(Mode m) {
  switch (m) {
    case Mode::kHandshake:
      return "handshake";
    case Mode::kSmc:
      return "SMC";
    case Mode::kTcp:
      return "TCP";
    case Mode::kFailed:
      return "failed";
  }
  return "unknown";
}

std::string_view ToString(Technology t) {
  return t == Technology::kSmcd ? "SMC-D" : "SMC-R";
}

std::ostream& operator<<(std::ostream& os, Role r) { return os << ToString(r); }
std::ostream& operator<<(std::ostream& os, Technology t) {
  return os << ToString(t);
}
std::ostream& operator<<(std::ostream& os, Mode m) { return os << ToString(m); }

std::string_view EventName(const Event& e) {
  static constexpr std::string_view kNames[] = {"Start",
                                                "TcpBytes",
                                                "TcpEof",
                                                "RecvBufferRegistered",
                                                "RecvBufferFailed",
                                                "PeerBufferAttached",
                                                "PeerBufferAttachFailed",
                                                "CdcArrived",
                                                "UrgentByteCaptured",
                                                "AppSent",
                                                "AppConsumed",
                                                "AppShutdown",
                                                "AppClose",
                                                "AppAbort",
                                                "Timeout",
                                                "DeviceFailed",
                                                "AppSentToClosedPeer",
                                                "AppErrorReported",
                                                "SiblingPublished",
                                                "PeerVanished",
                                                "SmcrLgrJoined",
                                                "SmcrLgrJoinFailed",
                                                "SmcrLinkUp",
                                                "SmcrLinkFailed",
                                                "SmcrRkeyConfirmed",
                                                "SmcrCdcReceived",
                                                "SmcrSendCompleted"};
  static_assert(std::size(kNames) == std::variant_size_v<Event>);
  return kNames[e.index()];
}

std::ostream& operator<<(std::ostream& os, const Event& e) {
  return os << EventName(e);
}

std::string_view ActionName(const Action& a) {
  static constexpr std::string_view kNames[] = {
      "SendTcp",           "TcpConsumed", "RegisterRecvBuffer",
      "AttachPeerBuffer",  "PostCdc",     "SignalPeer",
      "CaptureUrgentByte", "NotifyApp",   "HandshakeDone",
      "Fallback",          "ArmTimer",    "CancelTimer",
      "ReportError",       "AbortTcp",    "ReleaseBuffers",
      "CloseTcp",          "SmcrJoinLgr", "SmcrStartLink",
      "SmcrConfirmRkey",   "RdmaWrite",   "PostSend",
      "SmcrLeaveLgr"};
  static_assert(std::size(kNames) == std::variant_size_v<Action>);
  return kNames[a.index()];
}

std::ostream& operator<<(std::ostream& os, const Action& a) {
  os << ActionName(a);
  std::visit(
      [&os](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, SendTcp>) {
          os << "{" << x.type << ", " << x.bytes.size() << " bytes}";
        } else if constexpr (std::is_same_v<T, TcpConsumed>) {
          os << "{" << x.len << "}";
        } else if constexpr (std::is_same_v<T, RegisterRecvBuffer>) {
          os << "{" << x.size << "}";
        } else if constexpr (std::is_same_v<T, AttachPeerBuffer>) {
          os << "{token " << x.token << ", " << x.size << "}";
        } else if constexpr (std::is_same_v<T, Fallback>) {
          os << std::hex << "{local 0x" << x.local_reason << ", peer 0x"
             << x.peer_reason << "}" << std::dec;
        } else if constexpr (std::is_same_v<T, ReportError>) {
          os << "{" << x.err << ", " << x.what << "}";
        } else if constexpr (std::is_same_v<T, CaptureUrgentByte>) {
          os << "{" << x.buffer_offset << "}";
        } else if constexpr (std::is_same_v<T, RdmaWrite>) {
          os << "{" << x.offset << ", " << x.len << "}";
        } else if constexpr (std::is_same_v<T, SmcrJoinLgr>) {
          os << (x.first_contact ? "{first contact}" : "{reuse}");
        } else if constexpr (std::is_same_v<T, SmcrLeaveLgr>) {
          os << "{token " << x.token << (x.end_group ? ", end group}" : "}");
        }
      },
      a);
  return os;
}

std::ostream& operator<<(std::ostream& os, const Actions& a) {
  os << "[";
  for (size_t i = 0; i < a.size(); ++i) os << (i ? ", " : "") << a[i];
  return os << "]";
}

}  // namespace usmc::engine
