#include "preload/status.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>

#include "base/sandbox.h"
#include "preload/conn.h"
#include "preload/real.h"
#include "preload/smcr.h"

namespace usmc::preload {
namespace {

struct Counters {
  std::atomic<uint64_t> smcd{0}, tcp{0}, handshake_errors{0}, smcr{0};
  std::atomic<uint64_t> smcd_in{0}, smcd_out{0}, tcp_in{0}, tcp_out{0};
  // Fallback reasons: a small open-addressed table (few distinct codes).
  std::array<std::atomic<uint32_t>, 32> reason{};
  std::array<std::atomic<uint64_t>, 32> reason_count{};
  std::atomic<bool> reported{false};
};

Counters& C() {
  static Counters* c = new Counters();  // used from atexit
  return *c;
}

void CountReason(uint32_t reason) {
  Counters& c = C();
  for (size_t i = 0; i < c.reason.size(); ++i) {
    uint32_t cur = c.reason[i].load(std::memory_order_relaxed);
    if (cur == 0) {
      uint32_t expected = 0;
      // Slot 0 holds reason 0 as "none" too: store reason+1 internally.
      if (c.reason[i].compare_exchange_strong(expected, reason + 1) ||
          expected == reason + 1) {
        c.reason_count[i].fetch_add(1, std::memory_order_relaxed);
        return;
      }
      continue;
    }
    if (cur == reason + 1) {
      c.reason_count[i].fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
}

std::string Comm() {
  char buf[64] = {};
  int fd = ::open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "?";
  ssize_t n = real().read(fd, buf, sizeof buf - 1);
  real().close(fd);
  std::string s(buf, n > 0 ? static_cast<size_t>(n) : 0);
  while (!s.empty() && s.back() == '\n') s.pop_back();
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) >= 0x20) out += ch;
  }
  return out;
}

}  // namespace

void NoteSmcd(engine::Role) {
  C().smcd.fetch_add(1, std::memory_order_relaxed);
}

void NoteSmcr() { C().smcr.fetch_add(1, std::memory_order_relaxed); }

void NoteFallback(engine::Role, uint32_t reason) {
  C().tcp.fetch_add(1, std::memory_order_relaxed);
  CountReason(reason);
}

void NoteHandshakeError(engine::Role) {
  C().handshake_errors.fetch_add(1, std::memory_order_relaxed);
}

void NoteClosed(const Conn& conn) {
  Counters& c = C();
  const uint64_t in = conn.bytes_in.load(std::memory_order_relaxed);
  const uint64_t out = conn.bytes_out.load(std::memory_order_relaxed);
  if (conn.counted_smc()) {
    c.smcd_in.fetch_add(in, std::memory_order_relaxed);
    c.smcd_out.fetch_add(out, std::memory_order_relaxed);
  } else {
    c.tcp_in.fetch_add(in, std::memory_order_relaxed);
    c.tcp_out.fetch_add(out, std::memory_order_relaxed);
  }
}

// Read when the library is loaded: nginx (and other daemons) clear their
// workers' environment before those exit. A copy that is never freed: the
// report is written after the C++ globals' destructors ran.
const char* const g_exit_report = [] {
  const char* v = std::getenv("USMC_EXIT_REPORT");
  return v != nullptr ? ::strdup(v) : nullptr;
}();

void WriteExitReport() {
  Inside in;
  const char* path = g_exit_report;
  if (path == nullptr || *path == '\0') return;
  // A sandboxed process (seccomp) may be killed for the open: no line.
  if (base::SyscallFilterActive()) return;
  Counters& c = C();
  if (c.reported.exchange(true)) return;
  // Connections still open count too (a process may exit without closing).
  uint64_t smcd_in = c.smcd_in, smcd_out = c.smcd_out, tcp_in = c.tcp_in,
           tcp_out = c.tcp_out;
  std::set<const Conn*> seen;  // a dup'ed connection counts once
  table().ForEach([&](int fd, const std::shared_ptr<Conn>& conn) {
    // What the fd's pass-through calls counted (ConnTable::CountPassIn):
    // per fd, so each of a dup'ed connection's fds adds its own.
    const auto [pass_in, pass_out] = table().PassBytes(fd);
    tcp_in += pass_in;
    tcp_out += pass_out;
    if (!seen.insert(conn.get()).second) return;
    const uint64_t i = conn->bytes_in.load(std::memory_order_relaxed);
    const uint64_t o = conn->bytes_out.load(std::memory_order_relaxed);
    (conn->counted_smc() ? smcd_in : tcp_in) += i;
    (conn->counted_smc() ? smcd_out : tcp_out) += o;
  });
  // A process (or image, before exec) that moved nothing and made no
  // connection says nothing: shells, helpers, a vfork child's exec.
  if (c.smcd == 0 && c.tcp == 0 && c.handshake_errors == 0 && smcd_in == 0 &&
      smcd_out == 0 && tcp_in == 0 && tcp_out == 0) {
    c.reported = false;
    return;
  }
  std::string reasons;
  for (size_t i = 0; i < c.reason.size(); ++i) {
    uint32_t r = c.reason[i].load(std::memory_order_relaxed);
    if (r == 0) break;
    char item[64];
    std::snprintf(item, sizeof item, "%s\"0x%08x\":%llu",
                  reasons.empty() ? "" : ",", r - 1,
                  static_cast<unsigned long long>(c.reason_count[i].load()));
    reasons += item;
  }
  char line[1024];
  int n =
      std::snprintf(line, sizeof line,
                    "{\"pid\":%d,\"comm\":\"%s\",\"smcd\":%llu,\"tcp\":%llu,"
                    "\"handshake_errors\":%llu,\"fallback_reasons\":{%s},"
                    "\"bytes_smcd_in\":%llu,\"bytes_smcd_out\":%llu,"
                    "\"bytes_tcp_in\":%llu,\"bytes_tcp_out\":%llu,"
                    "\"smcr\":%llu,\"smcr_devices\":%llu}\n",
                    static_cast<int>(::getpid()), Comm().c_str(),
                    static_cast<unsigned long long>(c.smcd.load()),
                    static_cast<unsigned long long>(c.tcp.load()),
                    static_cast<unsigned long long>(c.handshake_errors.load()),
                    reasons.c_str(), static_cast<unsigned long long>(smcd_in),
                    static_cast<unsigned long long>(smcd_out),
                    static_cast<unsigned long long>(tcp_in),
                    static_cast<unsigned long long>(tcp_out),
                    static_cast<unsigned long long>(c.smcr.load()),
                    static_cast<unsigned long long>(SmcrDevicesOpened()));
  if (n <= 0) return;
  int fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  // One write with O_APPEND: lines of concurrent processes do not mix.
  (void)real().write(fd, line,
                     std::min<size_t>(static_cast<size_t>(n), sizeof line - 1));
  real().close(fd);
}

void ResetAfterFork() {
  Counters& c = C();
  c.smcd = 0;
  c.smcr = 0;
  c.tcp = 0;
  c.handshake_errors = 0;
  c.smcd_in = c.smcd_out = c.tcp_in = c.tcp_out = 0;
  for (size_t i = 0; i < c.reason.size(); ++i) {
    c.reason[i] = 0;
    c.reason_count[i] = 0;
  }
  c.reported = false;
}

}  // namespace usmc::preload
