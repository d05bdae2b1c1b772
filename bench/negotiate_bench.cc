// bench/negotiate_bench.cc: what the SMC negotiation program costs.
//
// connect() latency on loopback in three modes, measured in the same run,
// interleaved round by round (medians over rounds of each round's p50/p99):
//   none      sockets in a cgroup without the program
//   attached  program attached to the socket's cgroup, socket not opted in
//   opted-in  both ends opted in (option on SYN and SYN-ACK)
// Then the per-packet cost after establishment: bulk transfer throughput per
// mode, and the sock_ops program's run_cnt (kernel.bpf_stats_enabled=1)
// across a bulk transfer on an established opted-in connection.
//
// Root only (loads the program into private cgroups, nothing global):
//   negotiate_bench [--rounds 7] [--connects 2000] [--bulk-mib 512]
#include <bpf/bpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "negotiate/loader.h"
#include "negotiate/negotiate.h"

namespace {

using Clock = std::chrono::steady_clock;

enum Mode { kNone, kAttached, kOptedIn, kModeCount };
const char* kModeNames[kModeCount] = {"none", "attached", "opted-in"};

bool WriteFile(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == ssize_t(text.size());
  close(fd);
  return ok;
}

std::string ReadLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

bool Join(const std::string& cgroup) {
  return WriteFile(cgroup + "/cgroup.procs", std::to_string(getpid()));
}

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sin;
}

int OpenListener(bool opt_in, uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (opt_in) usmc::negotiate::OptIn(fd);
  sockaddr_in sin = Loopback(0);
  socklen_t len = sizeof(sin);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sin), len) != 0 ||
      listen(fd, 4096) != 0) {
    std::perror("listen");
    std::exit(1);
  }
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  *port = ntohs(sin.sin_port);
  return fd;
}

struct Percentiles {
  double p50_us, p99_us;
};

Percentiles Summarize(std::vector<double>& v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// connect() latencies (µs) of n connections in the given mode. The socket
// call and the opt-in are outside the timed region; the client closes with
// RST (SO_LINGER 0) so no TIME_WAIT piles up across rounds.
std::vector<double> ConnectLatencies(int listener, uint16_t port, bool opt_in,
                                     int n) {
  std::vector<double> out;
  out.reserve(n);
  sockaddr_in sin = Loopback(port);
  linger lg{1, 0};
  for (int i = 0; i < n; ++i) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (opt_in) usmc::negotiate::OptIn(c);
    auto t0 = Clock::now();
    if (connect(c, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) {
      std::perror("connect");
      std::exit(1);
    }
    auto t1 = Clock::now();
    out.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    int a = accept(listener, nullptr, nullptr);
    setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(c);
    close(a);
  }
  return out;
}

// One connection, `mib` MiB from client to server; returns Gbit/s.
// Calls between() after establishment and before the transfer (stats).
template <typename F>
double Bulk(int listener, uint16_t port, bool opt_in, int mib, F between) {
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (opt_in) usmc::negotiate::OptIn(c);
  sockaddr_in sin = Loopback(port);
  if (connect(c, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  int a = accept(listener, nullptr, nullptr);
  between();
  const size_t total = size_t(mib) << 20;
  auto t0 = Clock::now();
  std::thread reader([a, total] {
    std::vector<char> buf(1 << 16);
    size_t got = 0;
    while (got < total) {
      ssize_t n = read(a, buf.data(), buf.size());
      if (n <= 0) break;
      got += n;
    }
  });
  std::vector<char> buf(1 << 16, 'x');
  for (size_t sent = 0; sent < total;) {
    ssize_t n = write(c, buf.data(), std::min(buf.size(), total - sent));
    if (n <= 0) break;
    sent += n;
  }
  reader.join();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  between();
  close(c);
  close(a);
  return total * 8.0 / secs / 1e9;
}

uint64_t RunCount(uint32_t prog_id) {
  int fd = bpf_prog_get_fd_by_id(prog_id);
  if (fd < 0) return 0;
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  uint64_t cnt =
      bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.run_cnt : 0;
  close(fd);
  return cnt;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 7, connects = 2000, bulk_mib = 512;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    int v = std::atoi(argv[i + 1]);
    if (k == "--rounds")
      rounds = v;
    else if (k == "--connects")
      connects = v;
    else if (k == "--bulk-mib")
      bulk_mib = v;
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "negotiate_bench: needs root (loads eBPF)\n");
    return 2;
  }
  auto root = usmc::negotiate::FindCgroup2Root();
  if (!root.ok()) {
    std::fprintf(stderr, "%s\n", root.status().ToString().c_str());
    return 1;
  }
  std::ifstream cg_in("/proc/self/cgroup");
  std::string line, original = *root;
  while (std::getline(cg_in, line))
    if (line.rfind("0::", 0) == 0 && line != "0::/") original += line.substr(3);
  const std::string tag = std::to_string(getpid());
  const std::string off_cg = *root + "/usmc-bench-off-" + tag;
  const std::string on_cg = *root + "/usmc-bench-on-" + tag;
  const std::string pins = "/sys/fs/bpf/usmc-bench-" + tag;
  mkdir(off_cg.c_str(), 0755);
  mkdir(on_cg.c_str(), 0755);
  usmc::negotiate::SetupOptions opts;
  opts.cgroup = on_cg;
  opts.pin_dir = pins;
  auto setup = usmc::negotiate::Setup(opts);
  if (!setup.ok()) {
    std::fprintf(stderr, "setup: %s\n", setup.status().ToString().c_str());
    return 1;
  }

  // One listener per mode, created in its mode's cgroup.
  int listener[kModeCount];
  uint16_t port[kModeCount];
  for (int m = 0; m < kModeCount; ++m) {
    Join(m == kNone ? off_cg : on_cg);
    listener[m] = OpenListener(m == kOptedIn, &port[m]);
  }

  std::array<std::vector<double>, kModeCount> p50, p99;
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < kModeCount; ++k) {
      int m = (r + k) % kModeCount;  // rotate the order between rounds
      Join(m == kNone ? off_cg : on_cg);
      ConnectLatencies(listener[m], port[m], m == kOptedIn, connects / 10);
      std::vector<double> lat =
          ConnectLatencies(listener[m], port[m], m == kOptedIn, connects);
      Percentiles p = Summarize(lat);
      p50[m].push_back(p.p50_us);
      p99[m].push_back(p.p99_us);
    }
  }
  std::printf(
      "connect() on 127.0.0.1, %d rounds x %d connects, medians of "
      "per-round percentiles\n\n",
      rounds, connects);
  std::printf(
      "| mode | p50 (us) | p99 (us) | p50 vs none |\n|---|---|---|---|\n");
  for (int m = 0; m < kModeCount; ++m)
    std::printf("| %s | %.1f | %.1f | %+.1f us |\n", kModeNames[m],
                Median(p50[m]), Median(p99[m]),
                Median(p50[m]) - Median(p50[kNone]));

  // Per-packet cost after establishment.
  auto status = usmc::negotiate::QueryStatus(pins);
  uint32_t sockops_id = status.ok() ? status->programs[0].prog_id : 0;
  std::string stats_before = ReadLine("/proc/sys/kernel/bpf_stats_enabled");
  WriteFile("/proc/sys/kernel/bpf_stats_enabled", "1");
  std::array<std::vector<double>, kModeCount> gbps;
  uint64_t runs_during_bulk = 0;
  for (int r = 0; r < std::max(3, rounds / 2); ++r) {
    for (int k = 0; k < kModeCount; ++k) {
      int m = (r + k) % kModeCount;
      Join(m == kNone ? off_cg : on_cg);
      uint64_t marks[2] = {0, 0};
      int mark = 0;
      gbps[m].push_back(Bulk(listener[m], port[m], m == kOptedIn, bulk_mib,
                             [&] { marks[mark++] = RunCount(sockops_id); }));
      if (m == kOptedIn) runs_during_bulk += marks[1] - marks[0];
    }
  }
  // Control: the same counter does move during opted-in handshakes.
  Join(on_cg);
  uint64_t before_connects = RunCount(sockops_id);
  ConnectLatencies(listener[kOptedIn], port[kOptedIn], true, 100);
  uint64_t runs_per_100_connects = RunCount(sockops_id) - before_connects;
  WriteFile("/proc/sys/kernel/bpf_stats_enabled",
            stats_before.empty() ? "0" : stats_before);
  std::printf("\nbulk transfer, %d MiB per connection, median of %zu runs\n\n",
              bulk_mib, gbps[0].size());
  std::printf("| mode | Gbit/s |\n|---|---|\n");
  for (int m = 0; m < kModeCount; ++m)
    std::printf("| %s | %.2f |\n", kModeNames[m], Median(gbps[m]));
  std::printf(
      "\nsock_ops run_cnt increase during the opted-in bulk transfers "
      "(after establishment): %llu\n",
      static_cast<unsigned long long>(runs_during_bulk));
  std::printf(
      "sock_ops run_cnt increase during 100 opted-in connects "
      "(control): %llu\n",
      static_cast<unsigned long long>(runs_per_100_connects));

  for (int m = 0; m < kModeCount; ++m) close(listener[m]);
  Join(original);
  (void)usmc::negotiate::Remove(pins);
  rmdir(off_cg.c_str());
  rmdir(on_cg.c_str());
  return 0;
}
