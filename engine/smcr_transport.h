// engine/smcr_transport.h: the SMC-R CdcTransport (SMCR.md §2, §5.1).
//
// The peer's RMBE is the whole ring (ring_offset 0). Publishing a CDC means:
// the app bytes written into our sndbuf (the mirror of the peer's RMB, D4)
// since the last CDC go out as at most two RDMA WRITEs (two when the ring
// wraps), then the 44-byte CDC as a SEND, with the next sequence number
// (from 1, +1 per CDC: smc_cdc_msg_send) and the peer's alert token.
// Received CDCs must carry our token and a sequence number not before the
// last one seen (smc_cdc_rx_handler); others are dropped.
//
// Corking (the kernel's smc_should_autocork): while a CDC of ours is still
// in flight (no SmcrSendCompleted yet), a CDC that only moves the producer
// by at most min(peer RMB / 2, 64 KiB) unsent bytes waits; the next
// completion, or any CDC that changes something else (consumer cursor,
// flags, write_blocked), sends the latest state at once.
//
//   SmcrTransport t(/*local_token=*/1, /*peer_token=*/1, /*peer_rmb=*/65536);
//   t.Publish(cdc, out);   // RdmaWrite{0, 100}, PostSend{44 bytes}
#ifndef USMC_ENGINE_SMCR_TRANSPORT_H_
#define USMC_ENGINE_SMCR_TRANSPORT_H_

#include <cstdint>
#include <optional>
#include <span>

#include "engine/actions.h"
#include "engine/transport.h"
#include "wire/cdc.h"

namespace usmc::engine {

struct SmcrTransportCounters {
  uint64_t cdc_sent = 0;
  uint64_t rdma_writes = 0;
  uint64_t corked = 0;         // CDCs held back by autocork
  uint64_t dropped_token = 0;  // received with another alert token
  uint64_t dropped_seqno = 0;  // received with an old sequence number
};

class SmcrTransport final : public CdcTransport {
 public:
  SmcrTransport(uint32_t local_token, uint32_t peer_token,
                uint32_t peer_rmb_size, bool autocork = true)
      : local_token_(local_token),
        peer_token_(peer_token),
        peer_ring_(peer_rmb_size),
        autocork_(autocork) {}

  uint32_t ring_offset() const override { return 0; }
  void Publish(const wire::CdcMessage& m, Actions& out) override;
  wire::WireResult<wire::CdcMessage> Decode(
      std::span<const std::byte> bytes) const override;
  bool Admit(const wire::CdcMessage& m) override;
  void OnSendCompleted(Actions& out) override;

  uint16_t tx_seqno() const { return tx_seqno_; }
  uint32_t in_flight() const { return in_flight_; }
  bool corked() const { return pending_.has_value(); }
  const SmcrTransportCounters& counters() const { return counters_; }

 private:
  bool ShouldCork(const wire::CdcMessage& m) const;
  void Send(const wire::CdcMessage& m, Actions& out);

  uint32_t local_token_;
  uint32_t peer_token_;
  uint32_t peer_ring_;
  bool autocork_;
  uint16_t tx_seqno_ = 0;
  bool rx_seen_ = false;
  uint16_t rx_seqno_ = 0;
  uint32_t in_flight_ = 0;
  wire::Cursor written_{};  // producer of the last CDC sent: bytes before it
                            // went by RDMA WRITE already
  std::optional<wire::CdcMessage> last_sent_;
  std::optional<wire::CdcMessage> pending_;
  SmcrTransportCounters counters_;
};

}  // namespace usmc::engine

#endif  // USMC_ENGINE_SMCR_TRANSPORT_H_
