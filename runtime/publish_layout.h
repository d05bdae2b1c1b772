// runtime/publish_layout.h: the fixed layout of a status file (internal to
// runtime/publish*.cc; tools use the reader API in publish.h).
//
// Everything in the mapping is plain data or a lock-free std::atomic (both
// address-free, so two processes may share them). Host byte order: writer
// and reader run on the same host.
//
//   [Header: magic, version, sizes, pid, start time, uid, comm, counters]
//   [Slot 0][Slot 1] ... [Slot kStatusSlots-1]
//
// A slot's record is guarded by a seqlock: the writer makes `seq` odd,
// stores the record words, makes `seq` even again; a reader copies the words
// between two loads of `seq` and retries if they differ or are odd.
#ifndef USMC_RUNTIME_PUBLISH_LAYOUT_H_
#define USMC_RUNTIME_PUBLISH_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "runtime/publish.h"

namespace usmc::runtime::publish_internal {

using A64 = std::atomic<uint64_t>;
using A32 = std::atomic<uint32_t>;
static_assert(A64::is_always_lock_free && A32::is_always_lock_free,
              "shared-memory counters must be lock-free (address-free)");

struct FallbackEntry {
  A32 reason;  // 0 = free; claimed once with a CAS, never changed after
  uint32_t pad;
  A64 count;
};

struct SharedCounters {
  A64 smc_ok[2][2];  // [role][version-1]
  A64 fallbacks[2];
  A64 handshake_errors[2];
  FallbackEntry fallback[2][kFallbackEntries];
  A64 fallback_overflow;
  A64 rx_buf_hist[kHistBuckets];
  A64 tx_buf_hist[kHistBuckets];
  A64 slot_overflow;
  // Retired from released slots (live slots hold the rest).
  A64 bytes_smc_in, bytes_smc_out, bytes_tcp_in, bytes_tcp_out;
  A64 rx_payload_hist[kHistBuckets];
  A64 tx_payload_hist[kHistBuckets];
  A64 tx_buffer_full;
};

struct alignas(64) Header {
  uint32_t magic;
  uint32_t version;
  uint32_t header_size;
  uint32_t slot_size;
  uint32_t slot_count;
  uint32_t uid;
  int32_t pid;
  uint32_t pad;
  uint64_t start_time;  // /proc/PID/stat field 22
  char comm[32];
  A32 ready;       // 1 once the fields above are written (release)
  A32 high_water;  // slots [0, high_water) have ever been used
  A32 next_hint;   // where Acquire starts looking
  A32 in_use;      // slots in use now
  SharedCounters c;
};

inline constexpr size_t kRecordWords = sizeof(ConnRecord) / 8;
static_assert(sizeof(ConnRecord) % 8 == 0);
static_assert(std::is_trivially_copyable_v<ConnRecord>);

struct alignas(64) Slot {
  A32 in_use;  // 0 free, 1 owned (claimed with a CAS)
  A32 seq;     // seqlock: odd while the record is being written
  uint64_t words[kRecordWords];  // the ConnRecord (pid 0: not yet filled)
  // Data-path counters on their own cache line(s): the writer of the
  // record and the threads adding bytes do not share a line with readers'
  // seq polls more than needed.
  alignas(64) A64 bytes_smc_in;
  A64 bytes_smc_out;
  A64 bytes_tcp_in;
  A64 bytes_tcp_out;
  A64 rx_payload_hist[kHistBuckets];
  A64 tx_payload_hist[kHistBuckets];
};

struct FileLayout {
  Header h;
  Slot slots[kStatusSlots];
};

// Seqlock copy of a slot's record into `out`. false: the writer kept the
// slot busy for all tries (the reader gives up on this slot, never waits).
bool ReadRecord(const Slot& s, ConnRecord& out);

// Process totals (retired + live slots) and, if `conns` is set, the live
// connection records with their byte counters filled in.
// Link-group records go to `lgrs` if set.
ProcessCounters Collect(const FileLayout& f, std::vector<ConnRecord>* conns,
                        std::vector<ConnRecord>* lgrs);

}  // namespace usmc::runtime::publish_internal

#endif  // USMC_RUNTIME_PUBLISH_LAYOUT_H_
