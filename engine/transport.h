// engine/transport.h: where the engine's CDCs go and where the peer's come
// from, so the data path is written once for SMC-D and (later) SMC-R.
//
// SMC-D: a CDC is the 32-byte area at offset 0 of the peer's DMB (host byte
// order, no sequence number), and the ring starts at offset 32. SMC-R
// (engine/smcr_transport.h): the ring is the whole RMBE, the data goes by
// RDMA WRITE and the CDC is a 44-byte SEND with seqno and alert token.
//
//   SmcdTransport t;
//   t.Publish(cdc, out);   // PostCdc{area}, SignalPeer
#ifndef USMC_ENGINE_TRANSPORT_H_
#define USMC_ENGINE_TRANSPORT_H_

#include <cstdint>
#include <span>

#include "engine/actions.h"
#include "wire/cdc.h"

namespace usmc::engine {

class CdcTransport {
 public:
  virtual ~CdcTransport() = default;
  // Offset of the data ring inside a receive buffer.
  virtual uint32_t ring_offset() const = 0;
  // Emits the actions that deliver `m` to the peer and wake it if needed.
  virtual void Publish(const wire::CdcMessage& m, Actions& out) = 0;
  // Decodes what the peer delivered (the SMC-D area, the SMC-R SEND).
  virtual wire::WireResult<wire::CdcMessage> Decode(
      std::span<const std::byte> bytes) const = 0;
  // Whether a decoded CDC is for this connection and new (SMC-R: alert
  // token and sequence number); a CDC not admitted is dropped, as the
  // kernel drops it, without a violation.
  virtual bool Admit(const wire::CdcMessage&) { return true; }
  // One of our CDC SENDs completed (SMC-R): a corked CDC may go now.
  virtual void OnSendCompleted(Actions&) {}
};

class SmcdTransport final : public CdcTransport {
 public:
  uint32_t ring_offset() const override { return wire::kSmcdCdcLen; }
  void Publish(const wire::CdcMessage& m, Actions& out) override {
    PostCdc p;
    (void)wire::EncodeSmcdCdc(m, p.area);  // cannot fail: 32-byte buffer
    out.push_back(p);
    out.push_back(SignalPeer{});
  }
  wire::WireResult<wire::CdcMessage> Decode(
      std::span<const std::byte> bytes) const override {
    return wire::DecodeSmcdCdc(bytes);
  }
};

}  // namespace usmc::engine

#endif  // USMC_ENGINE_TRANSPORT_H_
