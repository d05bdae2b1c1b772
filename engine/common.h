// engine/common.h: small shared vocabulary of the sans-I/O engine.
//
// Time is an input: the runtime passes `now` (a monotonic TimePoint it reads
// itself) with each event, and the engine hands back deadlines. The engine
// never reads a clock.
//
//   usmc::engine::TimePoint now{std::chrono::seconds(5)};
//   TimePoint deadline = now + kClcTimeout;   // 11 s
//   std::cout << Role::kClient;               // "client"
#ifndef USMC_ENGINE_COMMON_H_
#define USMC_ENGINE_COMMON_H_

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string_view>

namespace usmc::engine {

// Monotonic time since an epoch the runtime picks (e.g. CLOCK_MONOTONIC).
using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::nanoseconds;

// How long each CLC wait may take: the Linux kernel's CLC_WAIT_TIME,
// "(6 * HZ)" in net/smc/smc_clc.h, from the first SMC version to the newest
// read (torvalds/linux 07e5c4eb, with the v2.1 First Contact Extension).
// The engine's and runtime::Options' default; the interposer waits less
// (runtime::kInterposerClcTimeout, 2 s, runtime/config.h says why).
inline constexpr Duration kClcTimeout = std::chrono::seconds(6);

// SMC-R: how long the peer's close CDC may come after its TCP connection
// ended (FIN or RST on the CLC socket). The kernel ignores its CLC socket
// after the handshake and closes it right behind posting its close CDC,
// so the TCP segment can overtake the CDC still in the RDMA send queue or
// in our completion queue (the lab: SO_LINGER 0's RST before the CDC).
// 500 ms is the CDC's first try plus two retransmissions at the kernel's
// QP timeout (4.096 us * 2^15 = 134 ms each, SMCR.md §1.5) with room for
// a loaded host; past it the peer is taken as gone (ECONNRESET), as a
// process whose link stays silent cannot be told from one that died.
inline constexpr Duration kSmcrPeerCloseWait = std::chrono::milliseconds(500);

enum class Role { kClient, kServer };

// Which SMC: SMC-D (a DMB on an ISM device, here dev/shm) or SMC-R (an RMB
// over RDMA). The data path, close machine and cursor arithmetic are the
// same; the technology picks the CDC transport and the device.
enum class Technology { kSmcd, kSmcr };

// What carries the connection's bytes right now.
enum class Mode {
  kHandshake,  // CLC in progress; no app byte may move yet
  kSmc,        // SMC (Connection::technology()): app bytes go through the
               // peer's receive buffer
  kTcp,        // fallback: the app uses the TCP socket directly
  kFailed,     // handshake abandoned (app closed, or aborted after Confirm)
};

std::string_view ToString(Role r);
std::string_view ToString(Mode m);
std::string_view ToString(Technology t);
std::ostream& operator<<(std::ostream& os, Role r);
std::ostream& operator<<(std::ostream& os, Mode m);
std::ostream& operator<<(std::ostream& os, Technology t);

}  // namespace usmc::engine

#endif  // USMC_ENGINE_COMMON_H_
