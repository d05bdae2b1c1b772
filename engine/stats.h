// engine/stats.h: a plain snapshot of one connection for `usmc ss`/`stats`.
//
// Counters live in the engine (STYLE.md #24); a snapshot is plain data, so
// tools never read engine internals.
//
//   ConnectionStats s = conn.Stats();
//   std::cout << s.mode << " " << wire::FormatReason(s.local_reason);
#ifndef USMC_ENGINE_STATS_H_
#define USMC_ENGINE_STATS_H_

#include <cstdint>
#include <string_view>

#include "engine/close.h"
#include "engine/common.h"
#include "wire/cdc.h"

namespace usmc::engine {

struct ConnectionCounters {
  uint64_t bytes_sent = 0;         // app bytes written into the peer's DMB
  uint64_t bytes_received = 0;     // app bytes consumed from our DMB
  uint64_t cdc_published = 0;      // CDC areas written to the peer
  uint64_t cdc_received = 0;       // peer CDC areas accepted
  uint64_t consumer_updates = 0;   // CDCs sent only to move our consumer
  uint64_t buffer_full = 0;        // sends that found the peer ring full
  uint64_t wakeups_requested = 0;  // SignalPeer actions
  uint64_t urgent_sent = 0;
  uint64_t urgent_received = 0;
  uint64_t violations = 0;  // peer CDCs rejected (connection aborted)
  bool operator==(const ConnectionCounters&) const = default;
};

struct ConnectionStats {
  Role role = Role::kClient;
  Mode mode = Mode::kHandshake;
  Technology technology = Technology::kSmcd;  // meaningful in Mode::kSmc
  std::string_view handshake_state;  // ClcClientState / ClcServerState name
  CloseState close_state = CloseState::kActive;
  uint32_t local_reason = 0;  // fallback reason (wire/reason.h), 0 if none
  uint32_t peer_reason = 0;   // the peer's Decline diagnosis, 0 if none
  int error = 0;              // errno the app sees, 0 if none
  uint32_t local_dmb_size = 0;
  uint32_t peer_dmb_size = 0;
  wire::Cursor tx_producer;    // in the peer's ring
  wire::Cursor peer_consumer;  // in the peer's ring
  wire::Cursor rx_consumer;    // in our ring
  wire::Cursor peer_producer;  // in our ring
  ConnectionCounters counters;
};

}  // namespace usmc::engine

#endif  // USMC_ENGINE_STATS_H_
