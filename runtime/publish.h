// runtime/publish.h: each process under usmc publishes its SMC connections
// and counters in a small shared file that `usmc ss` / `usmc stats` read.
//
// One file per process in StatusDir(), named "<pid>-<start time>.usmc",
// mmap'ed MAP_SHARED. Every connection owns a slot; the slot's record is
// written under a seqlock (the app never waits for a reader, a reader just
// retries), its byte counters are relaxed atomics (the data path pays two
// uncontended adds). The file is unlinked at normal exit; the file of a
// crashed process is recognised by readers (pid dead, or reused with another
// start time, or no longer mapping the file) and removed. See
// docs/observability.md.
//
//   StatusPublisher* pub = StatusPublisher::Process();   // nullptr: no-op
//   SlotId id = pub ? pub->Acquire() : kNoSlot;
//   ConnRecord rec = RecordFrom(sock->status(), fd);
//   pub->Update(id, rec);                 // after each state change
//   pub->CountHandshake(rec);             // once, when the handshake ends
//   pub->AddBytes(id, n_read, 0, sock->is_smc());   // data path
//   pub->Release(id);                     // at close
//
//   for (const ProcessStatus& p : ReadAllStatus(StatusDir())) ...
#ifndef USMC_RUNTIME_PUBLISH_H_
#define USMC_RUNTIME_PUBLISH_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "engine/common.h"

namespace usmc::runtime {

struct SocketStatus;

inline constexpr uint32_t kStatusMagic = 0x534d5355;  // "USMS" little-endian
// 2: records carry a kind (connection or SMC-R link group) and SMC-R fields.
// A reader refuses a file of another version with a message naming both.
inline constexpr uint32_t kStatusVersion = 2;
// A process's live connections that `usmc ss` can show: 10,000 held by
// one process fit (issue 21; 4,096 left 5,904 of them out). 832 bytes a
// slot: the file is 13 MiB, sparse (a slot's page is touched when used).
inline constexpr uint32_t kStatusSlots = 16384;
inline constexpr int kFallbackEntries = 30;  // per role, like the kernel
// Size histograms: bucket i (0..7) holds sizes up to 8 KiB << i, bucket 8
// holds everything above 1 MiB. Labels as smcd stats prints them.
inline constexpr int kHistBuckets = 9;
int HistBucket(uint64_t size);
std::string_view HistLabel(int bucket);  // "8K" ... "1024K", ">1024K"

// What carries the connection's bytes, as `usmc ss` names it.
enum class ConnMode : uint8_t { kHandshake, kSmcd, kSmcr, kTcp };
std::string_view ToString(ConnMode m);  // "HANDSHAKE" "SMCD" "SMCR" "TCP"
std::ostream& operator<<(std::ostream& os, ConnMode m);
// The engine's Mode; kFailed (handshake abandoned) shows as HANDSHAKE with
// state "FAILED".
ConnMode ToConnMode(engine::Mode m, engine::Technology t);

// What a slot describes.
enum class RecordKind : uint8_t { kConnection = 0, kLinkGroup = 1 };

// The SMC-R part of a record. A connection (mode SMCR) fills its link
// group's id, QPN and peer GID and its own alert token; a link group fills
// everything but `token`. No address or rkey of a buffer is published: a
// process address never leaves the process, and an rkey would let a
// reader of the file name the RMB to the fabric.
struct SmcrRecord {
  uint32_t lgr_id = 0;
  uint32_t qpn = 0;
  uint32_t peer_qpn = 0;
  uint32_t token = 0;  // connection: its alert token in the group
  uint8_t peer_gid[16] = {};
  uint8_t system_id[8] = {};  // link group: ours, and the peer's
  uint8_t peer_system_id[8] = {};
  uint32_t conns = 0;  // link group: connections on it now
  uint32_t pad = 0;
  // Link group: LLC messages (RFC 7609 3.1), all kinds and per kind.
  uint64_t llc_sent = 0;
  uint64_t llc_received = 0;
  uint64_t confirm_rkey_sent = 0;
  uint64_t confirm_rkey_received = 0;
  uint64_t delete_rkey_sent = 0;
  uint64_t delete_rkey_received = 0;
  uint64_t test_link_sent = 0;
  uint64_t test_link_received = 0;  // the peer's requests we answered
};

struct CursorValue {
  uint32_t wrap = 0;
  uint32_t count = 0;
};

// One connection as published. Plain data (it is copied into the shared
// file as is). bytes_in/out are NOT taken from Update(): they are counted by
// AddBytes() and filled in by the reader.
struct ConnRecord {
  char state[24] = {};  // NUL-terminated: "ACTIVE", "APPCLW1", "CLC_WAIT"...
  ConnMode mode = ConnMode::kHandshake;
  engine::Role role = engine::Role::kClient;
  RecordKind kind = RecordKind::kConnection;
  uint8_t reserved[5] = {};
  sockaddr_storage local{};  // family AF_UNSPEC if unknown
  sockaddr_storage peer{};
  uint32_t local_reason = 0;  // wire/reason.h; 0 = none
  uint32_t peer_reason = 0;
  uint32_t uid = 0;  // owner of the TCP socket
  int32_t pid = 0;
  int32_t fd = -1;
  int32_t error = 0;   // errno the app sees, 0 if none
  uint64_t inode = 0;  // of the TCP socket (as in /proc/PID/fd, ss -e)
  uint32_t dmb_size = 0;
  uint32_t peer_dmb_size = 0;
  uint64_t dmb_token = 0;
  uint64_t peer_dmb_token = 0;
  CursorValue tx_producer, peer_consumer;  // in the peer's DMB
  CursorValue rx_consumer, peer_producer;  // in our DMB
  uint64_t wakeups_sent = 0;               // doorbell rings that woke the peer
  uint64_t wakeups_received = 0;
  uint64_t buffer_full = 0;  // sends that found the peer's DMB full
  uint64_t cdc_sent = 0;
  uint64_t cdc_received = 0;
  uint64_t bytes_in = 0;  // reader output only (see above)
  uint64_t bytes_out = 0;
  uint64_t bytes_smc_in = 0;
  uint64_t bytes_smc_out = 0;
  SmcrRecord smcr;  // mode SMCR, or kind kLinkGroup
};

// Fills what the runtime knows: mode, role, state, reasons, DMB sizes,
// tokens, cursors, doorbell and engine counters; then pid, and from `fd`
// the addresses (getsockname/getpeername), inode and uid (fstat). fd -1:
// none of those (no system call), the caller has them.
ConnRecord RecordFrom(const SocketStatus& s, int fd);
// Only the fd part (TCP connections that never had an SmcSocket).
void FillFromFd(ConnRecord& r, int fd);
// The same for a caller that knows more, a connection of the interposer:
// the peer's address when `peer` is not null (what accept() or the
// connect's getpeername already said), and no pid (left as it is: the
// publisher's Update puts the process's own in a record without one). Two
// system calls fewer for each connection, which for a connection that stays
// TCP are most of what usmc costs it.
void FillFromFdKnown(ConnRecord& r, int fd, const sockaddr* peer,
                     socklen_t peer_len);
// A listening socket that offers SMC-D (opted in to the SMC TCP option):
// state LISTEN, role server, mode SMCD, no peer; the rest from `fd`.
ConnRecord ListenRecord(int fd);
void SetState(ConnRecord& r, std::string_view state);

// Per-process counters, kernel `smcd stats` style. Values are snapshots.
struct FallbackCount {
  uint32_t reason = 0;
  uint64_t count = 0;
};
struct ProcessCounters {
  // [role][version-1]: SMC handshakes (SMC-D or SMC-R) that succeeded.
  uint64_t smc_ok[2][2] = {};
  uint64_t fallbacks[2] = {};         // per role, all reasons
  uint64_t handshake_errors[2] = {};  // per role: failed after commit
  std::vector<FallbackCount> fallback_reasons[2];  // per role, by count
  uint64_t fallback_overflow = 0;  // reasons that found the table full
  uint64_t bytes_smc_in = 0, bytes_smc_out = 0;
  uint64_t bytes_tcp_in = 0, bytes_tcp_out = 0;
  uint64_t rx_calls = 0, tx_calls = 0;  // SMC recv/send calls with bytes
  uint64_t rx_buffer_full = 0;          // unused for now (peer-side view)
  uint64_t tx_buffer_full = 0;          // sends that found the peer DMB full
  uint64_t rx_buf_hist[kHistBuckets] = {};  // our DMB sizes
  uint64_t tx_buf_hist[kHistBuckets] = {};  // the peer's DMB sizes
  uint64_t rx_payload_hist[kHistBuckets] = {};
  uint64_t tx_payload_hist[kHistBuckets] = {};
  uint64_t slot_overflow = 0;  // connections not shown: all slots in use

  ProcessCounters& operator+=(const ProcessCounters& o);
  // this - base, clamped at 0 (for `usmc stats` after --reset).
  ProcessCounters Minus(const ProcessCounters& base) const;
};

using SlotId = int32_t;
inline constexpr SlotId kNoSlot = -1;

// Acquire / Update / Release of a publisher, as callables.
struct StatusSink {
  std::function<SlotId()> acquire;
  std::function<void(SlotId, const ConnRecord&)> update;
  std::function<void(SlotId)> release;
};

namespace publish_internal {
struct FileLayout;
}

class StatusPublisher {
 public:
  // The process's publisher, created on first use (file in StatusDir()).
  // nullptr if the file cannot be created (then publishing is off; the
  // reason is in ProcessError()). After fork() the child gets its own file.
  static StatusPublisher* Process();
  static Status ProcessError();

  // A publisher with its own file in `dir` (tests; Process() uses it).
  static Result<StatusPublisher*> Create(const std::string& dir);
  ~StatusPublisher();  // unmaps and unlinks the file
  StatusPublisher(const StatusPublisher&) = delete;
  StatusPublisher& operator=(const StatusPublisher&) = delete;

  // A free slot, or kNoSlot when all are used (counted in slot_overflow).
  // Every call below accepts kNoSlot and then does nothing.
  SlotId Acquire();
  // Replaces the slot's record. Writers of one slot take turns (a writer
  // that finds another one mid-record waits for it, or after ~1000 yields
  // drops its update); readers never make a writer wait.
  void Update(SlotId id, const ConnRecord& r);
  // Data path: bytes the app moved through this connection (one call per
  // send/recv that moved bytes). Two relaxed loads and stores on the slot's
  // own cache line, no locked instruction: calls for the same direction
  // (in, or out) of one slot must not run concurrently, e.g. make them
  // while the connection's send (recv) path is serialised. If they do race,
  // an increment may be lost; nothing worse happens.
  void AddBytes(SlotId id, uint64_t in, uint64_t out, bool smc);
  // The slot's TCP byte counters themselves (in, out), for a caller that
  // adds to them as AddBytes(id, ..., smc=false) would, without the call
  // (the interposer's pass-through of plain TCP connections); nullptr for
  // kNoSlot. Valid as long as the publisher lives; the same rules as
  // AddBytes (relaxed load and store, one writer per direction).
  std::pair<std::atomic<uint64_t>*, std::atomic<uint64_t>*> TcpByteCounters(
      SlotId id);
  // The slot's byte counters move into the process totals; slot freed.
  void Release(SlotId id);

  // Counts one finished handshake from its record (mode, role, reasons,
  // DMB sizes): SMC-D ok by role/version, or a fallback with its reason,
  // or a handshake error (mode HANDSHAKE with state FAILED).
  void CountHandshake(const ConnRecord& r, int smc_version = 2);
  // A handshake that failed without leaving a record (Upgrade error).
  void CountHandshakeError(engine::Role role);

  ProcessCounters counters() const;  // process totals incl. live slots
  // Zeroes the counters (adds racing with it may be lost).
  void Reset();

  const std::string& path() const { return path_; }

  // The three calls above as a StatusSink (for publishers in libraries
  // that do not link this one: runtime/lgr_registry.h).
  StatusSink AsSink();

 private:
  StatusPublisher(std::string path, int fd, publish_internal::FileLayout* f);
  static void CountFallback(publish_internal::FileLayout* f, int role,
                            uint32_t reason);

  std::string path_;
  int fd_;
  pid_t owner_pid_;
  publish_internal::FileLayout* f_;
};

// The status directory: env USMC_STATUS_DIR, else /run/usmc for euid 0,
// else ${XDG_RUNTIME_DIR:-/tmp}/usmc-<uid>.
std::string StatusDir();
// Creates `dir` (mode 0700) if missing; fails if it is not a directory we
// own, or if others may write to it.
Status EnsureStatusDir(const std::string& dir);
// Why processes refuse the existing directory `dir` (OK if it is fine or
// does not exist yet). `as_owner`: also that it is ours (what a publisher
// needs); without it only what every publisher refuses (`usmc ss`, which
// root may run on another user's directory).
Status StatusDirProblem(const std::string& dir, bool as_owner);
// At load (one thread): says once per `usmc run` (SayOnce) why this
// process's connections will not be published, if its directory is one
// EnsureStatusDir refuses. Before, they were silently missing from `usmc ss`.
void SayStatusDirProblemOnce();

// This process's start time in clock ticks since boot (/proc/PID/stat field
// 22); 0 if unknown.
uint64_t ProcessStartTime(pid_t pid);

// The directories a reader scans: USMC_STATUS_DIR if set, else StatusDir(),
// and for root also every user's ${XDG_RUNTIME_DIR}/usmc-UID under /run/user
// and /tmp/usmc-UID.
std::vector<std::string> StatusDirsToRead();

// What a reader found for one live process.
struct ProcessStatus {
  int32_t pid = 0;
  uint64_t start_time = 0;
  uint32_t uid = 0;
  std::string comm;
  std::string path;
  ProcessCounters counters;
  std::vector<ConnRecord> connections;  // bytes_* filled in
  // SMC-R link groups (kind kLinkGroup): state, role, pid and `smcr`.
  std::vector<ConnRecord> link_groups;
};

struct ReadOptions {
  bool remove_stale = true;  // unlink files of dead processes we may remove
  // If set, ReadAllStatus adds a sentence per file it could not read for a
  // reason the user should hear (another usmc version wrote it).
  std::vector<std::string>* problems = nullptr;
};
// Every live process's status in `dir`, by pid. Never blocks on a writer:
// a slot being written is retried a bounded number of times, then skipped.
std::vector<ProcessStatus> ReadAllStatus(const std::string& dir,
                                         const ReadOptions& opts = {});
// One file (tests): error if it is not a valid live status file.
Result<ProcessStatus> ReadStatusFile(const std::string& path,
                                     const ReadOptions& opts = {});

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_PUBLISH_H_
