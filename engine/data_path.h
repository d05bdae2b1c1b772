// engine/data_path.h: the SMC-D data path over the peer's DMB, no-copy.
//
// Each side owns a DMB: a 32-byte CDC area at offset 0, then the receive ring
// (PROTOCOL.md §5.2). The sender writes app bytes straight into the PEER's
// ring at its producer cursor (at most two chunks: the ring may wrap), then
// publishes a CDC into the peer's CDC area. The receiver reads its own CDC
// area, validates every value the peer wrote, and reads app bytes out of its
// own ring. The engine never touches the memory: it hands out copy plans
// (offset/length chunks) and the runtime does the memcpy, then commits.
//
//   DataPath dp({.local_dmb_size = 65536, .peer_dmb_size = 65536});
//   CopyPlan p = dp.PlanSend(n);            // where to memcpy in the peer DMB
//   /* memcpy per p.chunks */
//   dp.CommitSend(p.total, /*wanted_more=*/false, /*urgent=*/false);
//   wire::CdcMessage cdc = dp.BuildCdc(flags);  // publish it at peer offset 0
//
// Not thread-safe: the runtime serialises all calls for one connection, and
// must not change state between a Plan* call and its Commit*.
#ifndef USMC_ENGINE_DATA_PATH_H_
#define USMC_ENGINE_DATA_PATH_H_

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string_view>

#include "wire/cdc.h"

namespace usmc::engine {

// A byte range inside a DMB; offset counts from the DMB start (so it already
// includes the 32-byte CDC area).
struct RingChunk {
  uint32_t offset = 0;
  uint32_t len = 0;
};

// Up to two chunks (the second only when the ring wraps).
struct CopyPlan {
  RingChunk chunks[2];
  uint8_t count = 0;
  uint32_t total = 0;
};

struct DataPathConfig {
  uint32_t local_dmb_size = 0;  // our DMB, CDC area included
  uint32_t peer_dmb_size = 0;   // the peer's DMB, CDC area included
  uint32_t ring_offset = wire::kSmcdCdcLen;
};

// Why a peer's CDC was rejected. Each one aborts the connection.
enum class CdcViolation : uint8_t {
  kNone,
  kUndecodable,        // the area does not decode (type byte, length)
  kProducerRange,      // producer.count outside our ring
  kProducerBackwards,  // producer moved back
  kProducerOverrun,    // producer more than one ring ahead of our consumer
  kConsumerRange,      // consumer.count outside the peer ring
  kConsumerBackwards,  // consumer moved back
  kConsumerOverrun,    // consumer beyond what we produced
  kFlagCleared,        // a connection-state flag was set and is now clear
  kDataAfterClose,     // producer moved after done-writing/closed/abort
  kBadUrgent,          // urgent flag with no byte to point at
  kBadFlags,           // a flag SMC-D never uses (failover validation)
  kSiblingImpossible,  // a sibling's CDC (fork) gives cursors no state has
};

std::string_view ToString(CdcViolation v);
std::ostream& operator<<(std::ostream& os, CdcViolation v);

// What a validated peer CDC changed.
struct PeerCdcResult {
  CdcViolation violation = CdcViolation::kNone;
  uint32_t new_bytes = 0;         // readable bytes that appeared
  uint32_t freed_space = 0;       // send space the peer gave back
  bool urgent_arrived = false;    // a new urgent byte: capture it now
  uint32_t urgent_offset = 0;     // its DMB offset (valid if urgent_arrived)
  bool new_done_writing = false;  // connection-state flags newly set
  bool new_closed = false;
  bool new_abort = false;
  bool send_consumer_update = false;  // answer with our consumer cursor
};

// State of the urgent (MSG_OOB) byte on the receive side (§4.3).
enum class UrgentState : uint8_t {
  kNone,     // no urgent byte announced
  kPending,  // announced (urg_data_pending) but not arrived
  kValid,    // arrived and not yet read with MSG_OOB
  kRead,     // read with MSG_OOB (a second MSG_OOB read gives EINVAL)
};
std::string_view ToString(UrgentState s);
std::ostream& operator<<(std::ostream& os, UrgentState s);

// Everything a DataPath knows beyond its config, for the exec handover
// (engine/snapshot.h). Field names follow the members they save.
struct DataPathState {
  wire::Cursor tx_producer;
  wire::Cursor peer_consumer;
  bool write_blocked = false;
  bool urg_tx_present = false;
  bool urg_tx_wait = false;
  wire::Cursor rx_consumer;
  wire::Cursor rx_consumer_confirmed;
  wire::Cursor peer_producer;
  bool peer_write_blocked = false;
  bool peer_cons_upd_req = false;
  bool force_update = false;
  wire::CdcConnStateFlags peer_state;
  UrgentState urgent_state = UrgentState::kNone;
  wire::Cursor urgent_mark;
  bool urgent_byte_skipped = true;
  bool have_urgent_mark = false;
  std::byte urgent_byte{0};
  bool operator==(const DataPathState&) const = default;
};

class DataPath {
 public:
  explicit DataPath(const DataPathConfig& config);
  // Rebuilds a data path saved by SaveState; CheckState(config, state) must
  // be "".
  DataPath(const DataPathConfig& config, const DataPathState& state);
  DataPathState SaveState() const;
  // "" if `state` is one the data path can be in with `config` (cursors in
  // their rings and in order, the urgent mark inside the readable bytes),
  // else what is wrong. A state that passes keeps every copy plan inside
  // the DMBs.
  static std::string_view CheckState(const DataPathConfig& config,
                                     const DataPathState& state);

  uint32_t local_ring_size() const { return local_ring_; }
  uint32_t peer_ring_size() const { return peer_ring_; }

  // ---- sending (into the peer's DMB) ----
  // Bytes that may be written now. 0 while the ring is full, and after an
  // urgent byte until the peer has consumed everything (Linux rule).
  uint32_t SendSpace() const;
  // Where to copy up to `want` bytes (clipped to SendSpace()).
  CopyPlan PlanSend(size_t want) const;
  // The runtime copied `len` bytes per PlanSend. `wanted_more`: the app had
  // more to send than fitted (sets write_blocked). `urgent`: the last of
  // these bytes is an urgent byte (MSG_OOB). Returns false if len is larger
  // than the space (a runtime bug; nothing changes).
  bool CommitSend(uint32_t len, bool wanted_more, bool urgent);

  // ---- receiving (from our DMB) ----
  // Readable bytes, urgent byte excluded (FIONREAD).
  uint32_t Readable() const;
  // Bytes a recv may return now: stops before the urgent byte (TCP).
  uint32_t ReadableBeforeMark() const;
  // Where to read up to `max` bytes (MSG_PEEK: plan without committing).
  CopyPlan PlanRecv(size_t max) const;
  // The runtime consumed `len` bytes per PlanRecv. Returns true if a CDC
  // with our consumer cursor should be published now (§4.2 update rule).
  bool CommitRecv(uint32_t len);
  // SIOCATMARK: all data before the urgent byte has been read.
  bool AtUrgentMark() const;
  UrgentState urgent_state() const { return urg_state_; }
  // MSG_OOB read: 0 and the byte, EAGAIN (announced, not arrived) or EINVAL.
  int ReadUrgent(bool peek, std::byte* out);
  // The runtime copied the urgent byte out of our DMB (CaptureUrgentByte).
  void SetUrgentByte(std::byte b) { urg_byte_ = b; }

  // ---- CDC ----
  // Validates and applies the peer's CDC area (already decoded).
  PeerCdcResult OnPeerCdc(const wire::CdcMessage& m);
  // Our CDC for the peer's CDC area, with the given connection-state flags
  // (cumulative). Records our consumer cursor as confirmed.
  wire::CdcMessage BuildCdc(const wire::CdcConnStateFlags& conn_state);

  // ---- another process shares the connection (fork) ----
  // Takes over what a sibling published to the peer: the producer exactly
  // (every send publishes), the consumer as the sibling confirmed it (bytes
  // it read without confirming are read again here); the peer's producer
  // and consumer (from `peer_latest`, if any) never move back. kNone, or
  // kSiblingImpossible if the result is no state the data path can be in
  // (then nothing changes): the peer can write that memory too.
  CdcViolation AdoptSibling(const wire::CdcMessage& published,
                            const wire::CdcMessage* peer_latest);
  // The peer's process died: record the close its death implies (abort:
  // it left data of ours unread), as if its last CDC had said so.
  void NotePeerVanished(bool abort);

  // ---- observation ----
  wire::Cursor tx_producer() const { return tx_prod_; }
  wire::Cursor peer_consumer() const { return peer_cons_; }
  wire::Cursor rx_consumer() const { return rx_cons_; }
  wire::Cursor peer_producer() const { return peer_prod_; }
  bool write_blocked() const { return write_blocked_; }
  bool peer_write_blocked() const { return peer_write_blocked_; }
  // Connection-state flags of the peer's last accepted CDC.
  const wire::CdcConnStateFlags& peer_state() const { return peer_state_; }
  // Unconfirmed consumption (what a consumer update would give back).
  uint32_t UnconfirmedConsumed() const;

 private:
  uint32_t RecvOffset(wire::Cursor c) const { return ring_offset_ + c.count; }
  void SkipUrgentIfAtByte();

  uint32_t local_ring_;
  uint32_t peer_ring_;
  uint32_t ring_offset_;
  uint32_t update_limit_;

  // Sender side: positions in the peer's ring.
  wire::Cursor tx_prod_;    // how far we wrote
  wire::Cursor peer_cons_;  // how far the peer consumed (from its CDC)
  bool write_blocked_ = false;
  bool urg_tx_present_ = false;  // our last CDC announced an urgent byte
  bool urg_tx_wait_ = false;     // no new data until the peer consumed all

  // Receiver side: positions in our ring.
  wire::Cursor rx_cons_;            // how far the app consumed
  wire::Cursor rx_cons_confirmed_;  // what our last CDC told the peer
  wire::Cursor peer_prod_;          // validated producer cursor of the peer
  bool peer_write_blocked_ = false;
  bool peer_cons_upd_req_ = false;
  bool force_update_ = false;  // urgent byte passed: confirm at once
  wire::CdcConnStateFlags peer_state_;

  UrgentState urg_state_ = UrgentState::kNone;
  wire::Cursor urg_mark_;         // cursor just after the urgent byte
  bool urg_byte_skipped_ = true;  // the urgent byte was passed in the stream
  bool have_urg_mark_ = false;
  std::byte urg_byte_{0};
};

}  // namespace usmc::engine

#endif  // USMC_ENGINE_DATA_PATH_H_
