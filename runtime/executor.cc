#include "runtime/executor.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <variant>

#include "base/overloaded.h"
#include "runtime/lgr_registry.h"
#include "wire/reason.h"

namespace usmc::runtime {
void Executor::Execute(const engine::Actions& actions,
                       std::vector<engine::Event>& answers) {
  log_.max_actions = std::max(log_.max_actions, actions.size());
  log_.dropped_actions += actions.dropped();
  for (const engine::Action& action : actions) {
    std::visit(
        base::Overloaded{
            [&](const engine::SendTcp& a) {
              log_.clc_sent.push_back(a.type);
              tcp_.SendClc(a.bytes);
            },
            [&](const engine::TcpConsumed& a) { tcp_.ConsumeClc(a.len); },
            [&](const engine::RegisterRecvBuffer& a) {
              Result<dev::BufferInfo> b =
                  dev_->RegisterBuffer({.size = a.size});
              if (!b.ok()) {
                answers.push_back(engine::RecvBufferFailed{
                    OutOfFds(b.status()) ? wire::kReasonNoFd
                    : b.status().code() == StatusCode::kResourceExhausted
                        ? wire::kReasonMem
                        : wire::kReasonErrRegBuf});
                return;
              }
              answers.push_back(
                  engine::RecvBufferRegistered{b->token, b->size});
            },
            [&](const engine::AttachPeerBuffer& a) {
              Result<dev::BufferInfo> b =
                  dev_->AttachPeerBuffer({.token = a.token,
                                          .size = a.size,
                                          .timeout = opts_.attach_timeout});
              if (!b.ok()) {
                answers.push_back(engine::PeerBufferAttachFailed{
                    OutOfFds(b.status()) ? wire::kReasonNoFd
                                         : wire::kReasonErrRtok});
                return;
              }
              answers.push_back(engine::PeerBufferAttached{});
            },
            [&](const engine::PostCdc& a) { dev_->PostCdc(a.area); },
            [&](const engine::SignalPeer&) {
              ++log_.signals;
              dev_->Signal();
            },
            [&](const engine::CaptureUrgentByte& a) {
              std::byte b{0};
              (void)dev_->ReadOwn(a.buffer_offset, {&b, 1});
              answers.push_back(engine::UrgentByteCaptured{b});
            },
            [&](const engine::NotifyApp&) { ++log_.notifies; },
            [&](const engine::HandshakeDone& a) {
              done_ = a;
              if (smcr_ && a.technology == engine::Technology::kSmcr) {
                smcr_->HandshakeDone(a.smcr);
              }
              dev_->EndHandshake();
              // This process is the connection's only holder so far.
              if (uint32_t* refs =
                      dev_->Shared(dev::SharedWord::kProcessRefs)) {
                std::atomic_ref<uint32_t>(*refs).store(
                    1, std::memory_order_release);
              }
            },
            [&](const engine::Fallback& a) {
              fallback_ = a;
              dev_->EndHandshake();
            },
            [&](const engine::ArmTimer& a) {
              deadline_ = a.deadline;
              // SMC-R mode's timer (the wait for the peer's close CDC):
              // the registry queues Timeout on the connection when it is
              // due, so every sleeper on the link (a blocked call, poll,
              // epoll) wakes for it as for a CDC.
              if (smcr_ && dev_ == smcr_ && done_) smcr_->WakeAt(a.deadline);
            },
            [&](const engine::CancelTimer&) {
              deadline_.reset();
              if (smcr_ && dev_ == smcr_ && done_) smcr_->WakeAt(std::nullopt);
            },
            [&](const engine::ReportError& a) {
              log_.errors.push_back(a);
              if (a.err != 0 && error_ == 0) error_ = a.err;
            },
            [&](const engine::AbortTcp&) {
              aborted_ = true;
              tcp_.ResetTcp();
            },
            [&](const engine::ReleaseBuffers& a) {
              if (a.own_registered) dev_->UnregisterBuffer();
              if (a.peer_attached) dev_->DetachPeerBuffer();
              dev_->EndHandshake();
            },
            [&](const engine::CloseTcp&) {
              closed_ = true;
              tcp_.CloseTcp();
            },
            // SMC-R: the process's link-group registry carries them out
            // (runtime/lgr_registry.h); without one the connection fails
            // rather than waiting for an answer nobody will give.
            [&](const engine::SmcrJoinLgr& a) {
              if (!smcr_) return NotExecutable();
              if (dev_ != smcr_) {
                // SMC-R chosen: the SMC-D device (a server's handover
                // listener) is done with; the data moves over the link.
                dev_->EndHandshake();
                dev_ = smcr_;
              }
              smcr_->Join(a, answers);
            },
            [&](const engine::SmcrStartLink& a) {
              if (!smcr_) return NotExecutable();
              smcr_->StartLink(a, answers);
            },
            [&](const engine::SmcrConfirmRkey& a) {
              if (!smcr_) return NotExecutable();
              smcr_->ConfirmRkey(a, answers);
            },
            [&](const engine::RdmaWrite& a) {
              if (!smcr_) return NotExecutable();
              smcr_->Write(a);
            },
            [&](const engine::PostSend& a) {
              if (!smcr_) return NotExecutable();
              smcr_->Send(a);
            },
            [&](const engine::SmcrLeaveLgr& a) {
              if (!smcr_) return NotExecutable();
              smcr_->Leave(a);
            },
        },
        action);
  }
}

void Executor::NotExecutable() {
  if (error_ == 0) error_ = EPROTONOSUPPORT;
  if (!aborted_) {
    aborted_ = true;
    tcp_.ResetTcp();
  }
}

bool Executor::CopyToPeer(const engine::CopyPlan& plan, const std::byte* src) {
  size_t done = 0;
  for (uint8_t i = 0; i < plan.count; ++i) {
    const engine::RingChunk& c = plan.chunks[i];
    if (!dev_->MoveData(c.offset, {src + done, c.len}).ok()) return false;
    done += c.len;
  }
  return true;
}

bool Executor::CopyFromOwn(const engine::CopyPlan& plan, std::byte* dst) const {
  size_t done = 0;
  for (uint8_t i = 0; i < plan.count; ++i) {
    const engine::RingChunk& c = plan.chunks[i];
    if (!dev_->ReadOwn(c.offset, {dst + done, c.len}).ok()) return false;
    done += c.len;
  }
  return true;
}

}  // namespace usmc::runtime
