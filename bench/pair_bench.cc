#include "bench/pair_bench.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iomanip>
#include <memory>
#include <sstream>
#include <thread>

#include "runtime/smc_socket.h"

namespace usmc::bench {
namespace {

using Clock = std::chrono::steady_clock;

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

void Pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

double Median(std::vector<double> v) { return Percentile(v, 0.5); }

// One end of a benchmark connection: raw syscalls for TCP, the runtime for
// SMC-D, so the TCP baseline carries no usmc code at all.
class Conn {
 public:
  static std::unique_ptr<Conn> Make(int fd, Transport t, engine::Role role,
                                    uint32_t dmb_size, std::string* err) {
    auto c = std::unique_ptr<Conn>(new Conn(fd));
    if (t == Transport::kTcp) return c;
    auto s =
        runtime::SmcSocket::Upgrade(fd, {.role = role, .dmb_size = dmb_size});
    if (!s.ok()) {
      *err = s.status().ToString();
      return nullptr;
    }
    if (!(*s)->is_smc()) {
      *err = "fell back to TCP";
      return nullptr;
    }
    c->smc_ = std::move(*s);
    return c;
  }
  ~Conn() {
    if (smc_) {
      smc_->Close();
    } else {
      ::close(fd_);
    }
  }
  bool SendAll(const void* p, size_t n) {
    auto* b = static_cast<const char*>(p);
    while (n > 0) {
      ssize_t r = smc_ ? smc_->Send(b, n, MSG_NOSIGNAL)
                       : ::send(fd_, b, n, MSG_NOSIGNAL);
      if (r <= 0) return false;
      b += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
  bool RecvAll(void* p, size_t n) {
    ssize_t r =
        smc_ ? smc_->Recv(p, n, MSG_WAITALL) : ::recv(fd_, p, n, MSG_WAITALL);
    return r == static_cast<ssize_t>(n);
  }
  // Up to n bytes; 0 at EOF.
  ssize_t RecvSome(void* p, size_t n) {
    return smc_ ? smc_->Recv(p, n, 0) : ::recv(fd_, p, n, 0);
  }

 private:
  explicit Conn(int fd) : fd_(fd) {}
  int fd_;
  std::unique_ptr<runtime::SmcSocket> smc_;
};

}  // namespace

int ListenLoopback(int* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, 512) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

int ConnectLoopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int AcceptNoDelay(int lfd) {
  int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  int one = 1;
  if (fd >= 0) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

namespace {

// What the client process reports to the server process.
struct ClientReport {
  int status = 0;  // 0 ok
  char error[120] = {};
  double wall_s = 0;
  double cpu_s = 0;
  double p50_us = 0;
  double p99_us = 0;
  double quantiles_us[kQuantiles] = {};  // pingpong only
};
static_assert(sizeof(ClientReport) <= PIPE_BUF, "one atomic pipe write");

// Forks the client, pins both ends, runs `client(port)` in the child and
// `server(lfd)` here; returns the child's report. The server returns its
// CPU seconds (or a negative value on failure).
Result<std::pair<ClientReport, double>> RunPair(
    const Config& cfg, const std::function<ClientReport(int port)>& client,
    const std::function<double(int lfd, std::string* err)>& server) {
  int port = 0;
  int lfd = ListenLoopback(&port);
  if (lfd < 0) return Status::FromErrno(errno, "listen on 127.0.0.1");
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    ::close(lfd);
    return Status::FromErrno(errno, "pipe2");
  }
  cpu_set_t saved;
  sched_getaffinity(0, sizeof saved, &saved);
  std::fflush(stdout);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(lfd);
    ::close(pipefd[0]);
    Pin(cfg.client_cpu);
    ClientReport r = client(port);
    (void)!::write(pipefd[1], &r, sizeof r);
    ::_exit(0);
  }
  ::close(pipefd[1]);
  Pin(cfg.server_cpu);
  std::string err;
  double server_cpu = server(lfd, &err);
  sched_setaffinity(0, sizeof saved, &saved);
  ::close(lfd);
  ClientReport r;
  ssize_t got = ::read(pipefd[0], &r, sizeof r);
  ::close(pipefd[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (got != sizeof r) {
    return Status(StatusCode::kInternal, "benchmark client died");
  }
  if (r.status != 0) {
    return Status(StatusCode::kInternal, std::string("client: ") + r.error);
  }
  if (server_cpu < 0) {
    return Status(StatusCode::kInternal, "server: " + err);
  }
  return std::make_pair(r, server_cpu);
}

ClientReport Fail(const std::string& what) {
  ClientReport r;
  r.status = 1;
  std::snprintf(r.error, sizeof r.error, "%s", what.c_str());
  return r;
}

}  // namespace

std::string_view ToString(Transport t) {
  return t == Transport::kTcp ? "TCP" : "SMC-D";
}

Result<Measurement> PairBench::PingPong(Transport t, uint32_t size,
                                        int rounds) {
  const uint32_t dmb = config_.dmb_size;
  auto client = [&](int port) -> ClientReport {
    std::string err;
    int fd = ConnectLoopback(port);
    if (fd < 0) return Fail("connect");
    auto c = Conn::Make(fd, t, engine::Role::kClient, dmb, &err);
    if (!c) return Fail(err);
    std::vector<char> buf(size, 'p');
    std::vector<double> lat;
    lat.reserve(static_cast<size_t>(rounds));
    const double cpu0 = CpuSeconds();
    const auto start = Clock::now();
    for (int i = 0; i < rounds; ++i) {
      auto t0 = Clock::now();
      if (!c->SendAll(buf.data(), size) || !c->RecvAll(buf.data(), size))
        return Fail("ping-pong I/O");
      lat.push_back(Seconds(Clock::now() - t0) * 1e6);
    }
    ClientReport r;
    r.wall_s = Seconds(Clock::now() - start);
    r.cpu_s = CpuSeconds() - cpu0;
    r.p50_us = Percentile(lat, 0.50);
    r.p99_us = Percentile(lat, 0.99);
    std::sort(lat.begin(), lat.end());
    for (int q = 0; q < kQuantiles; ++q)
      r.quantiles_us[q] =
          lat[static_cast<size_t>(static_cast<double>(q) / (kQuantiles - 1) *
                                  static_cast<double>(lat.size() - 1))];
    return r;
  };
  auto server = [&](int lfd, std::string* err) -> double {
    auto c = Conn::Make(AcceptNoDelay(lfd), t, engine::Role::kServer, dmb, err);
    if (!c) return -1;
    std::vector<char> buf(size);
    const double cpu0 = CpuSeconds();
    for (int i = 0; i < rounds; ++i) {
      if (!c->RecvAll(buf.data(), size) || !c->SendAll(buf.data(), size)) {
        *err = "ping-pong I/O";
        return -1;
      }
    }
    return CpuSeconds() - cpu0;
  };
  auto res = RunPair(config_, client, server);
  if (!res.ok()) return res.status();
  const auto& [cr, server_cpu] = *res;
  Measurement m;
  m.workload = size >= 1024 ? fmt::format("pingpong {}KiB", size / 1024)
                            : fmt::format("pingpong {}B", size);
  m.transport = t;
  m.p50_us = cr.p50_us;
  m.p99_us = cr.p99_us;
  m.cpu_us_per_op = (cr.cpu_s + server_cpu) / rounds * 1e6;
  m.message_bytes = size;
  m.quantiles_us.assign(cr.quantiles_us, cr.quantiles_us + kQuantiles);
  return m;
}

Result<Measurement> PairBench::Stream(Transport t, uint64_t bytes,
                                      uint32_t write) {
  const uint32_t dmb = config_.dmb_size;
  auto client = [&](int port) -> ClientReport {
    std::string err;
    int fd = ConnectLoopback(port);
    if (fd < 0) return Fail("connect");
    auto c = Conn::Make(fd, t, engine::Role::kClient, dmb, &err);
    if (!c) return Fail(err);
    std::vector<char> buf(write, 's');
    const double cpu0 = CpuSeconds();
    const auto start = Clock::now();
    for (uint64_t sent = 0; sent < bytes;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(write, bytes - sent));
      if (!c->SendAll(buf.data(), n)) return Fail("stream send");
      sent += n;
    }
    char ack;
    if (!c->RecvAll(&ack, 1)) return Fail("stream ack");
    ClientReport r;
    r.wall_s = Seconds(Clock::now() - start);
    r.cpu_s = CpuSeconds() - cpu0;
    return r;
  };
  auto server = [&](int lfd, std::string* err) -> double {
    auto c = Conn::Make(AcceptNoDelay(lfd), t, engine::Role::kServer, dmb, err);
    if (!c) return -1;
    std::vector<char> buf(write);
    const double cpu0 = CpuSeconds();
    for (uint64_t got = 0; got < bytes;) {
      ssize_t n = c->RecvSome(buf.data(), buf.size());
      if (n <= 0) {
        *err = "stream recv";
        return -1;
      }
      got += static_cast<uint64_t>(n);
    }
    if (!c->SendAll("k", 1)) return -1;
    return CpuSeconds() - cpu0;
  };
  auto res = RunPair(config_, client, server);
  if (!res.ok()) return res.status();
  const auto& [cr, server_cpu] = *res;
  Measurement m;
  m.workload = fmt::format("stream {}KiB writes", write / 1024);
  m.message_bytes = write;
  m.transport = t;
  const double gib = static_cast<double>(bytes) / (1 << 30);
  m.gbytes_per_s = static_cast<double>(bytes) / cr.wall_s / 1e9;
  m.cpu_s_per_gib = (cr.cpu_s + server_cpu) / gib;
  return m;
}

Result<Measurement> PairBench::Setup(Transport t, int connections) {
  const uint32_t dmb = config_.dmb_size;
  auto client = [&](int port) -> ClientReport {
    std::vector<double> lat;
    const double cpu0 = CpuSeconds();
    for (int i = 0; i < connections; ++i) {
      std::string err;
      auto t0 = Clock::now();
      int fd = ConnectLoopback(port);
      if (fd < 0) return Fail("connect");
      auto c = Conn::Make(fd, t, engine::Role::kClient, dmb, &err);
      if (!c) return Fail(err);
      lat.push_back(Seconds(Clock::now() - t0) * 1e6);
      char done;
      if (!c->RecvAll(&done, 1)) return Fail("setup sync");
    }
    ClientReport r;
    r.cpu_s = CpuSeconds() - cpu0;
    r.p50_us = Percentile(lat, 0.50);
    r.p99_us = Percentile(lat, 0.99);
    return r;
  };
  auto server = [&](int lfd, std::string* err) -> double {
    const double cpu0 = CpuSeconds();
    for (int i = 0; i < connections; ++i) {
      auto c =
          Conn::Make(AcceptNoDelay(lfd), t, engine::Role::kServer, dmb, err);
      if (!c || !c->SendAll("d", 1)) return -1;
    }
    return CpuSeconds() - cpu0;
  };
  auto res = RunPair(config_, client, server);
  if (!res.ok()) return res.status();
  const auto& [cr, server_cpu] = *res;
  Measurement m;
  m.workload = "setup (connect + CLC)";
  m.transport = t;
  m.p50_us = cr.p50_us;
  m.p99_us = cr.p99_us;
  m.cpu_us_per_op = (cr.cpu_s + server_cpu) / connections * 1e6;
  return m;
}

Result<Report> PairBench::Run() {
  Report report;
  report.config = config_;
  report.machine = DescribeMachine();
  // Each workload alternates TCP and SMC-D inside every repeat, so both see
  // the same machine state; the medians over the repeats are reported.
  auto collect =
      [&](const std::function<Result<Measurement>(Transport)>& f) -> Status {
    std::vector<Measurement> runs[2];
    for (int r = 0; r < config_.repeats; ++r) {
      for (Transport t : {Transport::kTcp, Transport::kSmcd}) {
        Result<Measurement> m = f(t);
        if (!m.ok()) return m.status();
        runs[t == Transport::kSmcd].push_back(*m);
      }
    }
    for (auto& v : runs) {
      Measurement med = v.front();
      auto field = [&](double Measurement::*p) {
        std::vector<double> xs;
        for (const auto& m : v) xs.push_back(m.*p);
        med.*p = Median(xs);
      };
      field(&Measurement::p50_us);
      field(&Measurement::p99_us);
      field(&Measurement::gbytes_per_s);
      field(&Measurement::cpu_s_per_gib);
      field(&Measurement::cpu_us_per_op);
      for (size_t q = 0; q < med.quantiles_us.size(); ++q) {
        std::vector<double> xs;
        for (const auto& m : v)
          if (q < m.quantiles_us.size()) xs.push_back(m.quantiles_us[q]);
        med.quantiles_us[q] = Median(xs);
      }
      report.results.push_back(med);
    }
    return OkStatus();
  };
  for (uint32_t size : config_.pingpong_sizes) {
    USMC_RETURN_IF_ERROR(collect([&](Transport t) {
      return PingPong(t, size, config_.pingpong_rounds);
    }));
  }
  std::vector<uint32_t> writes = config_.stream_writes;
  if (writes.empty()) writes.push_back(config_.stream_write);
  for (uint32_t write : writes) {
    USMC_RETURN_IF_ERROR(collect(
        [&](Transport t) { return Stream(t, config_.stream_bytes, write); }));
  }
  USMC_RETURN_IF_ERROR(collect(
      [&](Transport t) { return Setup(t, config_.setup_connections); }));
  return report;
}

void PrintTable(const Report& r, std::ostream& os) {
  os << fmt::format(
      "{:<24} {:>12} {:>12} {:>10}   {}\n", "workload", "TCP", "SMC-D",
      "SMC-D/TCP",
      r.config.repeats == 1
          ? std::string("(one run)")
          : "(medians of " + std::to_string(r.config.repeats) + " runs)");
  for (size_t i = 0; i + 1 < r.results.size(); i += 2) {
    const Measurement& tcp = r.results[i];
    const Measurement& smc = r.results[i + 1];
    auto row = [&](const std::string& name, double a, double b,
                   const char* unit) {
      os << fmt::format("{:<24} {:>9.2f} {:<2} {:>9.2f} {:<2} {:>9.2f}x\n",
                        name, a, unit, b, unit, a > 0 ? b / a : 0.0);
    };
    if (tcp.gbytes_per_s > 0) {
      row(tcp.workload, tcp.gbytes_per_s, smc.gbytes_per_s, "GB/s");
      row("  CPU s per GiB", tcp.cpu_s_per_gib, smc.cpu_s_per_gib, "s");
    } else {
      row(tcp.workload + " p50", tcp.p50_us, smc.p50_us, "us");
      row(tcp.workload + " p99", tcp.p99_us, smc.p99_us, "us");
      row("  CPU per op", tcp.cpu_us_per_op, smc.cpu_us_per_op, "us");
    }
  }
}

nlohmann::json ToJson(const Report& r) {
  nlohmann::json j;
  j["machine"] = r.machine;
  j["repeats"] = r.config.repeats;
  j["pingpong_rounds"] = r.config.pingpong_rounds;
  j["stream_bytes"] = r.config.stream_bytes;
  j["dmb_size"] = r.config.dmb_size;
  for (const Measurement& m : r.results) {
    j["results"].push_back({{"workload", m.workload},
                            {"transport", ToString(m.transport)},
                            {"p50_us", m.p50_us},
                            {"p99_us", m.p99_us},
                            {"gbytes_per_s", m.gbytes_per_s},
                            {"cpu_s_per_gib", m.cpu_s_per_gib},
                            {"cpu_us_per_op", m.cpu_us_per_op},
                            {"message_bytes", m.message_bytes},
                            {"quantiles_us", m.quantiles_us}});
  }
  return j;
}

std::string DescribeMachine() {
  std::string model = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  utsname u{};
  uname(&u);
  return fmt::format("{}, {} CPUs, Linux {}", model,
                     std::thread::hardware_concurrency(), u.release);
}

}  // namespace usmc::bench
