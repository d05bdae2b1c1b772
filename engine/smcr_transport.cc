#include "engine/smcr_transport.h"

#include <algorithm>

namespace usmc::engine {
namespace {

// The kernel corks up to min(sndbuf / 2, 64 KiB) (smc_should_autocork).
constexpr uint32_t kAutocorkMax = 64 * 1024;

bool SameExceptProducer(const wire::CdcMessage& a, const wire::CdcMessage& b) {
  return a.consumer == b.consumer && a.prod_flags == b.prod_flags &&
         a.conn_state == b.conn_state;
}

}  // namespace

bool SmcrTransport::ShouldCork(const wire::CdcMessage& m) const {
  if (!autocork_ || in_flight_ == 0 || !last_sent_.has_value()) return false;
  // Only pure data moves wait: a consumer update, a flag (urgent,
  // write_blocked, close) must reach the peer now.
  if (!SameExceptProducer(m, *last_sent_) || m.prod_flags.write_blocked) {
    return false;
  }
  const uint32_t unsent =
      wire::CursorDiffLarge(peer_ring_, written_, m.producer);
  return unsent <= std::min(peer_ring_ / 2, kAutocorkMax);
}

void SmcrTransport::Publish(const wire::CdcMessage& m, Actions& out) {
  if (ShouldCork(m)) {
    pending_ = m;
    ++counters_.corked;
    return;
  }
  pending_.reset();
  Send(m, out);
}

void SmcrTransport::OnSendCompleted(Actions& out) {
  if (in_flight_ > 0) --in_flight_;
  if (pending_.has_value()) {
    const wire::CdcMessage m = *pending_;
    pending_.reset();
    Send(m, out);
  }
}

void SmcrTransport::Send(const wire::CdcMessage& m, Actions& out) {
  // The bytes between the last producer sent and this one: at most one ring
  // (the data path never produces more), in one or two pieces.
  uint32_t len = wire::CursorDiffLarge(peer_ring_, written_, m.producer);
  uint32_t off = written_.count;
  while (len > 0 && peer_ring_ > 0) {
    const uint32_t piece = std::min(len, peer_ring_ - off);
    out.push_back(RdmaWrite{off, piece});
    ++counters_.rdma_writes;
    len -= piece;
    off = (off + piece) % peer_ring_;
  }
  written_ = m.producer;
  wire::CdcMessage cdc = m;
  cdc.seqno = ++tx_seqno_;
  cdc.alert_token = peer_token_;
  PostSend p;
  (void)wire::EncodeCdc(cdc, p.bytes);  // cannot fail: 44-byte buffer
  out.push_back(p);
  ++in_flight_;
  ++counters_.cdc_sent;
  last_sent_ = m;
}

wire::WireResult<wire::CdcMessage> SmcrTransport::Decode(
    std::span<const std::byte> bytes) const {
  return wire::DecodeCdc(bytes);
}

bool SmcrTransport::Admit(const wire::CdcMessage& m) {
  if (m.alert_token != local_token_) {
    ++counters_.dropped_token;
    return false;
  }
  if (rx_seen_ && wire::SeqnoBefore(m.seqno, rx_seqno_)) {
    ++counters_.dropped_seqno;
    return false;
  }
  rx_seen_ = true;
  rx_seqno_ = m.seqno;
  return true;
}

}  // namespace usmc::engine
