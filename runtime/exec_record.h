// runtime/exec_record.h: the bytes one SMC-D socket becomes across exec(2)
// (SmcSocket::ExportForExec writes them, AdoptAfterExec reads them).
//
// A record is versioned and length-prefixed; every field has a fixed width
// (big-endian), so the decoder is a bounds-checked walk with no
// allocation but the UEID string. Layout, version 3 (docs/engine.md, "exec
// handover"; version 1 had two doorbell fds, version 2 no arena fields):
//
//   header  u32 magic "USXR" | u16 version 3 | u16 flags 0 | u32 body length
//   body    fds (4 x i32) | options | socket state | engine snapshot |
//           arenas: u64 x 6 (local id, size, slot; peer id, size, slot)
//
// With arenas (docs/dev-shm.md, "Arenas") the two memfd fields name the
// arenas' memfds: every record of a pair names the same two fds (in exec
// the fd numbers are the record set's de-duplicated fd list), and the
// slots say where in them the connection's DMBs are. Sizes 0: DMBs of
// their own (the memfds are the DMBs). Other versions are refused.
//
// The decoder trusts nothing: magic, version, exact body length, enum
// ranges, bools 0/1, unused bits zero, fds >= 0 and distinct, then
// engine::CheckSnapshot. It does not touch the fds (AdoptAfterExec does).
//
//   std::string blob;
//   AppendExecRecord(record, blob);
//   std::string_view in = blob;
//   Result<ExecRecord> r = DecodeExecRecord(in);   // in advanced past it
#ifndef USMC_RUNTIME_EXEC_RECORD_H_
#define USMC_RUNTIME_EXEC_RECORD_H_

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "engine/snapshot.h"

namespace usmc::runtime {

inline constexpr uint32_t kExecRecordMagic = 0x55535852;  // "USXR"
inline constexpr uint16_t kExecRecordVersion = 3;
inline constexpr size_t kExecRecordHeaderLen = 12;
inline constexpr size_t kExecRecordBodyLen = 381;  // version 3
inline constexpr size_t kExecRecordMaxEid = 32;

struct ExecRecord {
  // Fds that stay open across exec (their FD_CLOEXEC is cleared).
  int32_t tcp_fd = -1;
  int32_t local_memfd = -1;  // our DMB
  int32_t peer_memfd = -1;   // the peer's DMB
  // Our end of the doorbell socket: we wait on it and ring the peer on it.
  int32_t doorbell_fd = -1;
  // The socket's Options.
  engine::Role role = engine::Role::kClient;
  bool smcd_enabled = true;
  std::string eid;  // at most kExecRecordMaxEid bytes
  uint32_t dmb_size = 0;
  std::chrono::milliseconds clc_timeout{0};
  std::chrono::milliseconds handover_timeout{0};
  // The socket's own state around the engine.
  bool peer_gone = false;
  bool fatal = false;
  bool tcp_cloexec = false;  // tcp_fd had FD_CLOEXEC before the export
  int32_t error = 0;         // sticky errno
  std::array<std::byte, 32>
      last_area{};  // the peer's CDC area as last fed to the engine
  engine::ConnectionSnapshot engine;
  // Arena slots (version 3); all 0 for DMBs of their own.
  uint64_t local_arena_id = 0;
  uint64_t local_arena_size = 0;
  uint64_t local_slot = 0;
  uint64_t peer_arena_id = 0;
  uint64_t peer_arena_size = 0;
  uint64_t peer_slot = 0;
  bool in_arena() const { return local_arena_size != 0; }
  bool operator==(const ExecRecord&) const = default;
};

// Appends the record's bytes to `out`.
void AppendExecRecord(const ExecRecord& r, std::string& out);

// Decodes the record at the front of `in`. On success `in` is advanced past
// it. On failure (kInvalidArgument naming the field) `in` is advanced past
// the record if its header was sound and complete, else emptied: either
// way a caller's loop over records ends.
Result<ExecRecord> DecodeExecRecord(std::string_view& in);

}  // namespace usmc::runtime

#endif  // USMC_RUNTIME_EXEC_RECORD_H_
