#include "engine/data_path.h"

#include <algorithm>
#include <cerrno>

namespace usmc::engine {
namespace {

using wire::Cursor;

// Linux: max(rmb_len / 10, SOCK_MIN_SNDBUF / 2); SOCK_MIN_SNDBUF / 2 is about
// 2.3 KB on 64-bit kernels (PROTOCOL.md §4.2, value approximate).
constexpr uint32_t kMinUpdateLimit = 2304;

// Bytes `to` is ahead of `from` in a ring of `size`, or -1 if `to` is behind
// `from` or more than one lap ahead. Cursors must already be range-checked.
int64_t AheadBy(Cursor from, Cursor to, uint32_t size) {
  const uint16_t laps = static_cast<uint16_t>(to.wrap - from.wrap);
  if (laps == 0 && to.count >= from.count) {
    return wire::CursorDiff(size, from, to);
  }
  if (laps == 1 && to.count <= from.count) {
    return wire::CursorDiff(size, from, to);
  }
  return -1;
}

CopyPlan MakePlan(uint32_t ring_offset, uint32_t ring_size, Cursor at,
                  uint32_t n) {
  CopyPlan p;
  if (n == 0) return p;
  const uint32_t first = std::min(n, ring_size - at.count);
  p.chunks[0] = RingChunk{ring_offset + at.count, first};
  p.count = 1;
  if (n > first) {
    p.chunks[1] = RingChunk{ring_offset, n - first};
    p.count = 2;
  }
  p.total = n;
  return p;
}

}  // namespace

DataPath::DataPath(const DataPathConfig& config)
    : local_ring_(config.local_dmb_size - config.ring_offset),
      peer_ring_(config.peer_dmb_size - config.ring_offset),
      ring_offset_(config.ring_offset),
      update_limit_(std::max(local_ring_ / 10, kMinUpdateLimit)) {}

DataPath::DataPath(const DataPathConfig& config, const DataPathState& s)
    : DataPath(config) {
  tx_prod_ = s.tx_producer;
  peer_cons_ = s.peer_consumer;
  write_blocked_ = s.write_blocked;
  urg_tx_present_ = s.urg_tx_present;
  urg_tx_wait_ = s.urg_tx_wait;
  rx_cons_ = s.rx_consumer;
  rx_cons_confirmed_ = s.rx_consumer_confirmed;
  peer_prod_ = s.peer_producer;
  peer_write_blocked_ = s.peer_write_blocked;
  peer_cons_upd_req_ = s.peer_cons_upd_req;
  force_update_ = s.force_update;
  peer_state_ = s.peer_state;
  urg_state_ = s.urgent_state;
  urg_mark_ = s.urgent_mark;
  urg_byte_skipped_ = s.urgent_byte_skipped;
  have_urg_mark_ = s.have_urgent_mark;
  urg_byte_ = s.urgent_byte;
}

DataPathState DataPath::SaveState() const {
  return DataPathState{.tx_producer = tx_prod_,
                       .peer_consumer = peer_cons_,
                       .write_blocked = write_blocked_,
                       .urg_tx_present = urg_tx_present_,
                       .urg_tx_wait = urg_tx_wait_,
                       .rx_consumer = rx_cons_,
                       .rx_consumer_confirmed = rx_cons_confirmed_,
                       .peer_producer = peer_prod_,
                       .peer_write_blocked = peer_write_blocked_,
                       .peer_cons_upd_req = peer_cons_upd_req_,
                       .force_update = force_update_,
                       .peer_state = peer_state_,
                       .urgent_state = urg_state_,
                       .urgent_mark = urg_mark_,
                       .urgent_byte_skipped = urg_byte_skipped_,
                       .have_urgent_mark = have_urg_mark_,
                       .urgent_byte = urg_byte_};
}

std::string_view DataPath::CheckState(const DataPathConfig& c,
                                      const DataPathState& s) {
  if (c.local_dmb_size <= c.ring_offset || c.peer_dmb_size <= c.ring_offset) {
    return "DMB not larger than its CDC area";
  }
  const uint32_t local = c.local_dmb_size - c.ring_offset;
  const uint32_t peer = c.peer_dmb_size - c.ring_offset;
  if (!wire::CursorValid(s.tx_producer, peer) ||
      !wire::CursorValid(s.peer_consumer, peer) ||
      !wire::CursorValid(s.rx_consumer, local) ||
      !wire::CursorValid(s.rx_consumer_confirmed, local) ||
      !wire::CursorValid(s.peer_producer, local) ||
      !wire::CursorValid(s.urgent_mark, local)) {
    return "cursor outside its ring";
  }
  // Each pair at most one ring apart, in this order: what SendSpace,
  // Readable and the copy plans assume.
  if (AheadBy(s.peer_consumer, s.tx_producer, peer) < 0) {
    return "tx producer not within one ring after the peer's consumer";
  }
  if (AheadBy(s.rx_consumer_confirmed, s.rx_consumer, local) < 0 ||
      AheadBy(s.rx_consumer, s.peer_producer, local) < 0) {
    return "rx cursors out of order";
  }
  if (static_cast<uint8_t>(s.urgent_state) >
      static_cast<uint8_t>(UrgentState::kRead)) {
    return "urgent state out of range";
  }
  if (!s.urgent_byte_skipped) {
    // The byte is still ahead: rx_consumer never rests on it, so the mark
    // (just after it) is at least 2 bytes ahead, and within what arrived.
    if (!s.have_urgent_mark) return "urgent byte pending without a mark";
    if (AheadBy(s.rx_consumer, s.urgent_mark, local) < 2 ||
        AheadBy(s.urgent_mark, s.peer_producer, local) < 0 ||
        AheadBy(s.rx_consumer, s.peer_producer, local) <
            AheadBy(s.rx_consumer, s.urgent_mark, local)) {
      return "urgent mark outside the readable bytes";
    }
  }
  return {};
}

// ---- sending ----

uint32_t DataPath::SendSpace() const {
  if (urg_tx_wait_) return 0;
  return peer_ring_ - wire::CursorDiff(peer_ring_, peer_cons_, tx_prod_);
}

CopyPlan DataPath::PlanSend(size_t want) const {
  const uint32_t n = static_cast<uint32_t>(std::min<size_t>(want, SendSpace()));
  return MakePlan(ring_offset_, peer_ring_, tx_prod_, n);
}

bool DataPath::CommitSend(uint32_t len, bool wanted_more, bool urgent) {
  if (len > SendSpace()) return false;
  tx_prod_ = wire::CursorAdd(tx_prod_, len, peer_ring_);
  write_blocked_ = wanted_more;
  if (len > 0) {
    // The urgent flag stays set in our CDC area until new data moves the
    // producer: the peer may see only the latest area, never each update.
    urg_tx_present_ = urgent;
    urg_tx_wait_ = urgent;
  }
  return true;
}

// ---- receiving ----

uint32_t DataPath::Readable() const {
  const uint32_t avail = wire::CursorDiff(local_ring_, rx_cons_, peer_prod_);
  return urg_byte_skipped_ ? avail : avail - 1;
}

uint32_t DataPath::ReadableBeforeMark() const {
  const uint32_t avail = wire::CursorDiff(local_ring_, rx_cons_, peer_prod_);
  if (urg_byte_skipped_) return avail;
  // rx_cons never rests on the urgent byte (SkipUrgentIfAtByte), so the mark
  // is at least 2 bytes ahead here.
  return wire::CursorDiff(local_ring_, rx_cons_, urg_mark_) - 1;
}

CopyPlan DataPath::PlanRecv(size_t max) const {
  const uint32_t n =
      static_cast<uint32_t>(std::min<size_t>(max, ReadableBeforeMark()));
  return MakePlan(ring_offset_, local_ring_, rx_cons_, n);
}

void DataPath::SkipUrgentIfAtByte() {
  if (urg_byte_skipped_) return;
  if (wire::CursorAdd(rx_cons_, 1, local_ring_) == urg_mark_) {
    // Without SO_OOBINLINE the urgent byte is not part of the stream.
    rx_cons_ = urg_mark_;
    urg_byte_skipped_ = true;
    force_update_ = true;  // the sender waits for everything to be consumed
  }
}

bool DataPath::CommitRecv(uint32_t len) {
  if (len > ReadableBeforeMark()) return false;
  rx_cons_ = wire::CursorAdd(rx_cons_, len, local_ring_);
  SkipUrgentIfAtByte();
  const uint32_t to_confirm = UnconfirmedConsumed();
  if (to_confirm == 0) return false;
  if (peer_cons_upd_req_ || force_update_) return true;
  const uint32_t in_use =
      wire::CursorDiffLarge(local_ring_, rx_cons_confirmed_, peer_prod_);
  const uint32_t sender_free = local_ring_ - in_use;
  return to_confirm > update_limit_ &&
         (sender_free <= local_ring_ / 2 || peer_write_blocked_);
}

uint32_t DataPath::UnconfirmedConsumed() const {
  return wire::CursorDiff(local_ring_, rx_cons_confirmed_, rx_cons_);
}

bool DataPath::AtUrgentMark() const {
  return have_urg_mark_ && urg_byte_skipped_ && rx_cons_ == urg_mark_ &&
         (urg_state_ == UrgentState::kValid ||
          urg_state_ == UrgentState::kRead);
}

int DataPath::ReadUrgent(bool peek, std::byte* out) {
  switch (urg_state_) {
    case UrgentState::kValid:
      *out = urg_byte_;
      if (!peek) urg_state_ = UrgentState::kRead;
      return 0;
    case UrgentState::kPending:
      return EAGAIN;
    default:
      return EINVAL;
  }
}

// ---- CDC ----

PeerCdcResult DataPath::OnPeerCdc(const wire::CdcMessage& m) {
  PeerCdcResult r;
  auto fail = [&r](CdcViolation v) {
    r = PeerCdcResult{};
    r.violation = v;
    return r;
  };
  // Validate everything before changing anything.
  if (m.prod_flags.failover_validation) return fail(CdcViolation::kBadFlags);
  if (!wire::CursorValid(m.producer, local_ring_)) {
    return fail(CdcViolation::kProducerRange);
  }
  const int64_t old_ahead = AheadBy(rx_cons_, peer_prod_, local_ring_);
  const int64_t ahead = AheadBy(rx_cons_, m.producer, local_ring_);
  if (ahead < 0) {
    return fail(wire::CursorOrder(peer_prod_, m.producer) < 0
                    ? CdcViolation::kProducerBackwards
                    : CdcViolation::kProducerOverrun);
  }
  if (ahead < old_ahead) return fail(CdcViolation::kProducerBackwards);
  const uint32_t new_bytes = static_cast<uint32_t>(ahead - old_ahead);
  if (new_bytes > 0 &&
      (peer_state_.peer_done_writing || peer_state_.peer_conn_closed ||
       peer_state_.peer_conn_abort)) {
    return fail(CdcViolation::kDataAfterClose);
  }
  if (!wire::CursorValid(m.consumer, peer_ring_)) {
    return fail(CdcViolation::kConsumerRange);
  }
  const int64_t freed = AheadBy(peer_cons_, m.consumer, peer_ring_);
  if (freed < 0) {
    return fail(wire::CursorOrder(peer_cons_, m.consumer) < 0
                    ? CdcViolation::kConsumerBackwards
                    : CdcViolation::kConsumerOverrun);
  }
  if (freed > wire::CursorDiff(peer_ring_, peer_cons_, tx_prod_)) {
    return fail(CdcViolation::kConsumerOverrun);
  }
  const wire::CdcConnStateFlags& s = m.conn_state;
  if ((peer_state_.peer_done_writing && !s.peer_done_writing) ||
      (peer_state_.peer_conn_closed && !s.peer_conn_closed) ||
      (peer_state_.peer_conn_abort && !s.peer_conn_abort)) {
    return fail(CdcViolation::kFlagCleared);
  }
  const bool new_urgent = m.prod_flags.urg_data_present &&
                          !(have_urg_mark_ && m.producer == urg_mark_);
  if (new_urgent && ahead == 0) return fail(CdcViolation::kBadUrgent);

  // Apply.
  peer_prod_ = m.producer;
  peer_cons_ = m.consumer;
  if (urg_tx_wait_ && peer_cons_ == tx_prod_) urg_tx_wait_ = false;
  const bool was_blocked = peer_write_blocked_;
  peer_write_blocked_ = m.prod_flags.write_blocked;
  peer_cons_upd_req_ = m.prod_flags.cons_curs_upd_req;
  r.new_bytes = new_bytes;
  r.freed_space = static_cast<uint32_t>(freed);
  r.new_abort = s.peer_conn_abort && !peer_state_.peer_conn_abort;
  r.new_closed = s.peer_conn_closed && !peer_state_.peer_conn_closed;
  r.new_done_writing = s.peer_done_writing && !peer_state_.peer_done_writing;
  peer_state_ = s;
  if (new_urgent) {
    urg_mark_ = m.producer;
    have_urg_mark_ = true;
    urg_byte_skipped_ = false;
    urg_state_ = UrgentState::kValid;
    r.urgent_arrived = true;
    const Cursor byte_at =
        wire::CursorAdd(m.producer, local_ring_ - 1, local_ring_);
    r.urgent_offset = RecvOffset(byte_at);
    SkipUrgentIfAtByte();
  } else if (m.prod_flags.urg_data_pending &&
             urg_state_ != UrgentState::kValid) {
    urg_state_ = UrgentState::kPending;
  }
  const uint32_t unconfirmed = UnconfirmedConsumed();
  r.send_consumer_update =
      unconfirmed > 0 &&
      (peer_cons_upd_req_ || force_update_ ||
       (peer_write_blocked_ && !was_blocked && Readable() == 0));
  return r;
}

wire::CdcMessage DataPath::BuildCdc(const wire::CdcConnStateFlags& conn_state) {
  wire::CdcMessage m;
  m.producer = tx_prod_;
  m.consumer = rx_cons_;
  m.prod_flags.write_blocked = write_blocked_;
  m.prod_flags.urg_data_present = urg_tx_present_;
  m.conn_state = conn_state;
  rx_cons_confirmed_ = rx_cons_;
  peer_cons_upd_req_ = false;
  force_update_ = false;
  return m;
}

CdcViolation DataPath::AdoptSibling(const wire::CdcMessage& published,
                                    const wire::CdcMessage* peer_latest) {
  DataPathState s = SaveState();
  s.tx_producer = published.producer;
  s.rx_consumer_confirmed = published.consumer;
  if (wire::CursorIsAhead(s.rx_consumer, published.consumer)) {
    s.rx_consumer = published.consumer;
  }
  if (wire::CursorIsAhead(s.peer_producer, s.rx_consumer)) {
    s.peer_producer = s.rx_consumer;
  }
  if (peer_latest != nullptr &&
      wire::CursorIsAhead(s.peer_consumer, peer_latest->consumer)) {
    s.peer_consumer = peer_latest->consumer;
  }
  if (!s.urgent_byte_skipped && wire::CursorValid(s.rx_consumer, local_ring_) &&
      wire::CursorValid(s.urgent_mark, local_ring_)) {
    // The sibling read up to or past the urgent byte: it is behind us too
    // (rx_consumer never rests on it, see SkipUrgentIfAtByte).
    const Cursor mark = s.urgent_mark;
    const Cursor byte_at =
        mark.count > 0
            ? Cursor{mark.wrap, mark.count - 1}
            : Cursor{static_cast<uint16_t>(mark.wrap - 1), local_ring_ - 1};
    if (wire::CursorOrder(byte_at, s.rx_consumer) >= 0) {
      if (s.rx_consumer == byte_at) s.rx_consumer = s.urgent_mark;
      s.urgent_byte_skipped = true;
    }
  }
  const DataPathConfig config{local_ring_ + ring_offset_,
                              peer_ring_ + ring_offset_, ring_offset_};
  if (!CheckState(config, s).empty()) return CdcViolation::kSiblingImpossible;
  if (s.urgent_byte_skipped && !urg_byte_skipped_) force_update_ = true;
  tx_prod_ = s.tx_producer;
  peer_cons_ = s.peer_consumer;
  rx_cons_ = s.rx_consumer;
  rx_cons_confirmed_ = s.rx_consumer_confirmed;
  peer_prod_ = s.peer_producer;
  urg_byte_skipped_ = s.urgent_byte_skipped;
  return CdcViolation::kNone;
}

void DataPath::NotePeerVanished(bool abort) {
  (abort ? peer_state_.peer_conn_abort : peer_state_.peer_conn_closed) = true;
}

std::string_view ToString(CdcViolation v) {
  switch (v) {
    case CdcViolation::kNone:
      return "none";
    case CdcViolation::kUndecodable:
      return "undecodable CDC area";
    case CdcViolation::kProducerRange:
      return "producer cursor out of range";
    case CdcViolation::kProducerBackwards:
      return "producer cursor moved back";
    case CdcViolation::kProducerOverrun:
      return "producer cursor more than one ring ahead";
    case CdcViolation::kConsumerRange:
      return "consumer cursor out of range";
    case CdcViolation::kConsumerBackwards:
      return "consumer cursor moved back";
    case CdcViolation::kConsumerOverrun:
      return "consumer cursor beyond what we produced";
    case CdcViolation::kFlagCleared:
      return "connection flag cleared";
    case CdcViolation::kDataAfterClose:
      return "data after close";
    case CdcViolation::kBadUrgent:
      return "urgent flag without a byte";
    case CdcViolation::kBadFlags:
      return "flag not used by SMC-D";
    case CdcViolation::kSiblingImpossible:
      return "impossible cursors published by a sibling process";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, CdcViolation v) {
  return os << ToString(v);
}

std::string_view ToString(UrgentState s) {
  switch (s) {
    case UrgentState::kNone:
      return "none";
    case UrgentState::kPending:
      return "pending";
    case UrgentState::kValid:
      return "valid";
    case UrgentState::kRead:
      return "read";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, UrgentState s) {
  return os << ToString(s);
}

}  // namespace usmc::engine
