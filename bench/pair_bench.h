// bench/pair_bench.h: TCP and usmc side by side, two processes on one host.
//
// Each measurement forks a client process; the calling process is the
// server. Both are pinned to different CPUs (as a benchmark of two
// programs on one host is normally run), run the same workload once over a
// plain TCP loopback connection and once over the same kind of connection
// upgraded to SMC-D, and report wall time and the CPU time of both ends.
// An SMC run whose connection fell back to TCP is an error, not a number.
//
//   PairBench b({.repeats = 5});
//   Result<Report> r = b.Run();
//   PrintTable(*r, std::cout);
#ifndef USMC_BENCH_PAIR_BENCH_H_
#define USMC_BENCH_PAIR_BENCH_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "base/status.h"

namespace usmc::bench {

enum class Transport { kTcp, kSmcd };
std::string_view ToString(Transport t);

struct Config {
  int repeats = 5;  // medians over this many runs
  std::vector<uint32_t> pingpong_sizes = {64, 1024, 16384};
  int pingpong_rounds = 20000;
  uint64_t stream_bytes = uint64_t{2} << 30;
  uint32_t stream_write = 64 * 1024;
  // More write sizes for the stream workload (throughput against message
  // size, `usmc bench --plot`); empty: stream_write only.
  std::vector<uint32_t> stream_writes;
  int setup_connections = 200;
  uint32_t dmb_size = 1024 * 1024;  // SMC-D maximum: 1 MiB
  int client_cpu = 0;               // -1: no pinning
  int server_cpu = 1;
};

// One workload on one transport, medians over the repeats.
struct Measurement {
  std::string workload;  // "pingpong 64B", "stream 64KiB", "setup"
  Transport transport = Transport::kTcp;
  double p50_us = 0;  // latency workloads: round trip / setup time
  double p99_us = 0;
  double gbytes_per_s = 0;     // stream
  double cpu_s_per_gib = 0;    // stream: both ends together
  double cpu_us_per_op = 0;    // pingpong/setup: both ends per operation
  uint32_t message_bytes = 0;  // pingpong: message size; stream: write size
  // pingpong: the latency distribution, kQuantiles points from the fastest
  // (0) to the slowest (kQuantiles - 1) round trip, evenly spaced in rank;
  // medians over the repeats point by point. Empty for other workloads.
  std::vector<double> quantiles_us;
};
inline constexpr int kQuantiles = 401;  // fits the client's report pipe write

struct Report {
  Config config;
  std::string machine;  // CPU model, cores, kernel
  std::vector<Measurement> results;
};

class PairBench {
 public:
  explicit PairBench(Config c) : config_(std::move(c)) {}
  Result<Report> Run();
  // One workload, one transport, one repeat (for tests and the demo).
  Result<Measurement> PingPong(Transport t, uint32_t size, int rounds);
  Result<Measurement> Stream(Transport t, uint64_t bytes, uint32_t write);
  Result<Measurement> Setup(Transport t, int connections);

 private:
  Config config_;
};

// TCP loopback helpers shared by the benchmark and `usmc demo`: a listener
// on 127.0.0.1 with an ephemeral port (-1 on failure), and TCP_NODELAY
// client and accepted sockets.
int ListenLoopback(int* port);
int ConnectLoopback(int port);
int AcceptNoDelay(int lfd);

// "TCP | usmc | ratio" table, one line per workload.
void PrintTable(const Report& r, std::ostream& os);
nlohmann::json ToJson(const Report& r);
// Latency CDFs (TCP and SMC-D side by side, one panel per message size) and
// throughput against write size, with gnuplot: DIR/latency-cdf.{png,svg},
// DIR/throughput.{png,svg} and the data files they are drawn from.
Status WritePlots(const Report& r, const std::string& dir);
std::string DescribeMachine();

}  // namespace usmc::bench

#endif  // USMC_BENCH_PAIR_BENCH_H_
