// engine/snapshot.h: one SMC-D connection's engine state as plain data, so
// a new program image can carry on after exec(2) (runtime/exec_record.h
// puts it in bytes, runtime/smc_socket_exec.cc moves the buffers).
//
// Only SMC-D connections after the handshake have a snapshot, in any close
// state: the state is the negotiated link, the data path's cursors and
// flags, the close machine and the counters. Restore checks a snapshot
// before trusting it (CheckSnapshot): a corrupted one is an error, and one
// that passes keeps every copy plan inside the two DMBs.
//
//   Result<ConnectionSnapshot> s = conn.Snapshot();   // old image
//   Connection fresh(params, &entropy);                 // new image
//   USMC_RETURN_IF_ERROR(fresh.Restore(*s));            // same SMC-D state
#ifndef USMC_ENGINE_SNAPSHOT_H_
#define USMC_ENGINE_SNAPSHOT_H_

#include <string_view>

#include "engine/close.h"
#include "engine/common.h"
#include "engine/connection.h"
#include "engine/data_path.h"
#include "engine/params.h"
#include "engine/stats.h"
#include "wire/cdc.h"

namespace usmc::engine {

struct ConnectionSnapshot {
  Role role = Role::kClient;
  SmcdLink link;  // DMB tokens and sizes, devices, link id, UEID
  DataPathState data;
  CloseMachineState close;
  wire::CdcConnStateFlags local_flags;  // cumulative flags we publish
  bool published_write_blocked = false;
  bool read_shut = false;
  bool finished = false;
  int error = 0;            // 0, ECONNRESET, ECONNABORTED or EPIPE
  bool error_seen = false;  // the app got `error` once
  ConnectionCounters counters;
  bool operator==(const ConnectionSnapshot&) const = default;
};

// "" if `s` is a state an SMC-D connection can be in, else what is wrong
// with it (sizes, cursors, enums, flags).
std::string_view CheckSnapshot(const ConnectionSnapshot& s);

}  // namespace usmc::engine

#endif  // USMC_ENGINE_SNAPSHOT_H_
