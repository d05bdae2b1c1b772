// preload/status.h: what the interposer counts and reports about itself.
//
// Process counters (SMC-D connections, fallbacks by reason, bytes) and,
// when USMC_EXIT_REPORT names a file, one JSON line appended there at exit,
// so that tests of short-lived programs (curl, redis-benchmark) can assert
// what really happened after the process is gone. The live view of running
// processes is `usmc ss` (runtime/publish.h).
#ifndef USMC_PRELOAD_STATUS_H_
#define USMC_PRELOAD_STATUS_H_

#include <cstdint>

#include "engine/common.h"

namespace usmc::preload {

class Conn;

void NoteSmcd(engine::Role role);
// Of those, one that runs over SMC-R (the exit report's "smcr").
void NoteSmcr();
void NoteFallback(engine::Role role, uint32_t reason);
void NoteHandshakeError(engine::Role role);
// Bytes of a connection that ended (added to the process totals).
void NoteClosed(const Conn& c);

// Writes the USMC_EXIT_REPORT line (once; also called from exec wrappers,
// since exec ends this image without running atexit).
void WriteExitReport();
// The child of a fork starts with zero counters of its own.
void ResetAfterFork();

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_STATUS_H_
