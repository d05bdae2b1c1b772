// tests/lab/bench_proto.h: the lab's benchmark exchange (scenario bench,
// tests/lab/README.md), shared by smc_lab (kernel TCP or AF_SMC) and
// smcr_peer (usmc's SMC-R runtime), so every pairing runs the same bytes:
//
//   1. ping-pong: the client sends kPingSize bytes, the server echoes them;
//      kPingWarmup rounds, then `pings` timed rounds (round trip each);
//   2. stream: the client sends `bytes`, the server answers one byte once
//      all arrived; the client times first send → that byte.
//
// Each side measures its CPU over each phase: the process's getrusage
// (user+sys, every thread: usmc's progress thread included) and the
// guest's /proc/stat busy time (everything but idle and iowait: softirq
// and kernel threads too, where rxe and the kernel's SMC do their work;
// the guest has one vCPU and runs nothing else). Lines printed:
//
//   BENCH kind=K role=client|server phase=ping n=N p50_us=.. p90_us=..
//         cpu_us=.. guest_us=..
//   BENCH kind=K role=.. phase=stream bytes=B secs=.. mbps=.. cpu_us=..
//         guest_us=..
//
// (p50/p90/secs/mbps from the client only.) Io: bool Send(const uint8_t*,
// size_t), bool Recv(uint8_t*, size_t) (exactly len bytes).
#ifndef USMC_TESTS_LAB_BENCH_PROTO_H_
#define USMC_TESTS_LAB_BENCH_PROTO_H_

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace usmc::lab {

inline constexpr size_t kPingSize = 64;
inline constexpr int kPingWarmup = 20;
inline constexpr size_t kStreamChunk = 64 * 1024;

struct CpuMark {
  double proc_us = 0;
  double guest_us = 0;
};

inline CpuMark CpuNow() {
  CpuMark m;
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  m.proc_us = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
              double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  if (FILE* f = std::fopen("/proc/stat", "r")) {
    unsigned long long v[10] = {};
    if (std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
                    &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
                    &v[8], &v[9]) >= 8) {
      // user nice system idle iowait irq softirq steal (guest time is
      // already in user): busy = all but idle and iowait.
      const unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
      m.guest_us = double(busy) * 1e6 / double(::sysconf(_SC_CLK_TCK));
    }
    std::fclose(f);
  }
  return m;
}

inline double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size())))];
}

template <typename Io>
bool RunBench(Io& io, bool client, const std::string& kind, int pings,
              uint64_t bytes) {
  using Clock = std::chrono::steady_clock;
  const char* role = client ? "client" : "server";
  std::vector<uint8_t> msg(kPingSize, 0x5a);
  std::vector<double> rtt;
  CpuMark c0{};
  for (int i = 0; i < kPingWarmup + pings; ++i) {
    if (i == kPingWarmup) c0 = CpuNow();
    const auto t0 = Clock::now();
    if (client) {
      msg[0] = uint8_t(i);
      if (!io.Send(msg.data(), msg.size()) || !io.Recv(msg.data(), msg.size()))
        return false;
      if (msg[0] != uint8_t(i)) return false;
      if (i >= kPingWarmup) {
        rtt.push_back(
            std::chrono::duration<double, std::micro>(Clock::now() - t0)
                .count());
      }
    } else if (!io.Recv(msg.data(), msg.size()) ||
               !io.Send(msg.data(), msg.size())) {
      return false;
    }
  }
  CpuMark c1 = CpuNow();
  std::printf(
      "BENCH kind=%s role=%s phase=ping n=%d p50_us=%.1f p90_us=%.1f "
      "cpu_us=%.0f guest_us=%.0f\n",
      kind.c_str(), role, pings, Pct(rtt, 0.5), Pct(rtt, 0.9),
      c1.proc_us - c0.proc_us, c1.guest_us - c0.guest_us);
  std::vector<uint8_t> buf(kStreamChunk);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = uint8_t(i * 7 + 1);
  c0 = CpuNow();
  const auto t0 = Clock::now();
  uint8_t done = 0;
  if (client) {
    for (uint64_t off = 0; off < bytes;) {
      const size_t n = size_t(std::min<uint64_t>(buf.size(), bytes - off));
      if (!io.Send(buf.data(), n)) return false;
      off += n;
    }
    if (!io.Recv(&done, 1) || done != 0xd0) return false;
  } else {
    for (uint64_t off = 0; off < bytes;) {
      const size_t n = size_t(std::min<uint64_t>(buf.size(), bytes - off));
      if (!io.Recv(buf.data(), n)) return false;
      off += n;
    }
    done = 0xd0;
    if (!io.Send(&done, 1)) return false;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  c1 = CpuNow();
  std::printf(
      "BENCH kind=%s role=%s phase=stream bytes=%llu secs=%.3f mbps=%.2f "
      "cpu_us=%.0f guest_us=%.0f\n",
      kind.c_str(), role, static_cast<unsigned long long>(bytes), secs,
      double(bytes) / secs / 1e6, c1.proc_us - c0.proc_us,
      c1.guest_us - c0.guest_us);
  return true;
}

}  // namespace usmc::lab

#endif  // USMC_TESTS_LAB_BENCH_PROTO_H_
