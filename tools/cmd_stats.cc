// tools/cmd_stats.cc: `usmc stats`, the kernel's `smcd stats` and `smcr
// stats` in one for processes under `usmc run`: connections summary (SMC-D
// and SMC-R together), RX/TX bytes and histograms, fallback reasons. Sums
// every live process (or one with -p).
//
//   usmc stats                 since the last --reset
//   usmc stats -a              absolute values (ignore the reset baseline)
//   usmc stats --reset         print, then start counting from zero
//   usmc stats --json          docs/status-schema.json ("stats")
//
// SMC-R link groups (their LLC counters) are listed as they are now; the
// --reset baseline does not apply to them.
//
// The processes' counters are never written by this tool (that would race
// the writers): --reset stores a baseline next to the status files, as
// smc-tools keeps its deltas in a file, and later runs subtract it.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "tools/commands.h"
#include "tools/status_json.h"

namespace usmc::tools {
namespace {

struct StatsArgs {
  bool json = false;
  bool reset = false;
  bool absolute = false;
  int pid = 0;
  std::string dir;
};

using runtime::kHistBuckets;
using runtime::ProcessCounters;

// SMC connections of `p` open now (SMC-D or SMC-R).
uint64_t LiveSmc(const runtime::ProcessStatus& p) {
  uint64_t n = 0;
  for (const runtime::ConnRecord& r : p.connections)
    n += r.mode == runtime::ConnMode::kSmcd ||
         r.mode == runtime::ConnMode::kSmcr;
  return n;
}

// SMC-D and SMC-R connections of `procs` open now: the counters below mix
// both technologies, the records tell them apart.
struct OpenNow {
  uint64_t smcd = 0, smcr = 0;
};
OpenNow OpenByTechnology(const std::vector<runtime::ProcessStatus>& procs) {
  OpenNow n;
  for (const runtime::ProcessStatus& p : procs) {
    for (const runtime::ConnRecord& r : p.connections) {
      n.smcd += r.mode == runtime::ConnMode::kSmcd;
      n.smcr += r.mode == runtime::ConnMode::kSmcr;
    }
  }
  return n;
}

// ---- baseline (raw counters by process) ----

nlohmann::json Raw(const ProcessCounters& c) {
  auto hist = [](const uint64_t(&h)[kHistBuckets]) {
    return std::vector<uint64_t>(h, h + kHistBuckets);
  };
  nlohmann::json reasons = nlohmann::json::array();
  for (int role = 0; role < 2; ++role)
    for (const runtime::FallbackCount& f : c.fallback_reasons[role])
      reasons.push_back({role, f.reason, f.count});
  return {{"smc_ok",
           {c.smc_ok[0][0], c.smc_ok[0][1], c.smc_ok[1][0], c.smc_ok[1][1]}},
          {"fallbacks", {c.fallbacks[0], c.fallbacks[1]}},
          {"handshake_errors", {c.handshake_errors[0], c.handshake_errors[1]}},
          {"reasons", reasons},
          {"scalars",
           {c.fallback_overflow, c.bytes_smc_in, c.bytes_smc_out,
            c.bytes_tcp_in, c.bytes_tcp_out, c.rx_calls, c.tx_calls,
            c.rx_buffer_full, c.tx_buffer_full, c.slot_overflow}},
          {"hists",
           {hist(c.rx_buf_hist), hist(c.tx_buf_hist), hist(c.rx_payload_hist),
            hist(c.tx_payload_hist)}}};
}

ProcessCounters FromRaw(const nlohmann::json& j) {
  ProcessCounters c;
  for (int i = 0; i < 4; ++i) c.smc_ok[i / 2][i % 2] = j.at("smc_ok").at(i);
  for (int r = 0; r < 2; ++r) {
    c.fallbacks[r] = j.at("fallbacks").at(r);
    c.handshake_errors[r] = j.at("handshake_errors").at(r);
  }
  for (const nlohmann::json& e : j.at("reasons"))
    c.fallback_reasons[e.at(0).get<int>() & 1].push_back(
        {e.at(1).get<uint32_t>(), e.at(2).get<uint64_t>()});
  uint64_t* scalars[] = {&c.fallback_overflow, &c.bytes_smc_in,
                         &c.bytes_smc_out,     &c.bytes_tcp_in,
                         &c.bytes_tcp_out,     &c.rx_calls,
                         &c.tx_calls,          &c.rx_buffer_full,
                         &c.tx_buffer_full,    &c.slot_overflow};
  for (size_t i = 0; i < std::size(scalars); ++i)
    *scalars[i] = j.at("scalars").at(i);
  uint64_t(*hists[])[kHistBuckets] = {&c.rx_buf_hist, &c.tx_buf_hist,
                                      &c.rx_payload_hist, &c.tx_payload_hist};
  for (size_t h = 0; h < std::size(hists); ++h)
    for (int b = 0; b < kHistBuckets; ++b)
      (*hists[h])[b] = j.at("hists").at(h).at(b);
  return c;
}

std::string Key(const runtime::ProcessStatus& p) {
  return fmt::format("{}-{}", p.pid, p.start_time);
}

std::string BaselinePath(const std::string& dir) {
  return (dir.empty() ? runtime::StatusDir() : dir) + "/stats-baseline.json";
}

nlohmann::json LoadBaseline(const std::string& path) {
  std::ifstream in(path);
  if (!in) return nlohmann::json::object();
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  return j.is_object() ? j : nlohmann::json::object();
}

// Sets the baseline of `reset` (the shown processes), keeps the other live
// processes' entries, drops those of processes that are gone.
Status SaveBaseline(const std::string& dir,
                    const std::vector<runtime::ProcessStatus>& reset,
                    const std::vector<runtime::ProcessStatus>& live) {
  const std::string d = dir.empty() ? runtime::StatusDir() : dir;
  USMC_RETURN_IF_ERROR(runtime::EnsureStatusDir(d));
  const nlohmann::json old = LoadBaseline(BaselinePath(dir));
  nlohmann::json j = nlohmann::json::object();
  for (const runtime::ProcessStatus& p : live)
    if (auto it = old.find(Key(p)); it != old.end()) j[Key(p)] = *it;
  for (const runtime::ProcessStatus& p : reset) {
    j[Key(p)] = Raw(p.counters);
    // Connections open at the reset serve requests after it without a
    // handshake in the window (usmc stats divides by them too).
    j[Key(p)]["live_smc"] = LiveSmc(p);
  }
  // Write a temporary file, then rename: a concurrent reader sees the old
  // or the new baseline, never half of one.
  const std::string path = BaselinePath(dir);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump() << "\n";
    if (!out) return Status::FromErrno(errno, "write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return Status::FromErrno(errno, "rename " + tmp);
  return OkStatus();
}

// ---- text output ----

std::string Human(uint64_t bytes) {
  const char* units[] = {"", "K", "M", "G", "T", "P"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{}", bytes)
                : fmt::format("{:.1f}{}", v, units[u]);
}

void PrintHist(const char* title, const uint64_t (&h)[kHistBuckets]) {
  std::string head = fmt::format("  {:<22}", title);
  std::string vals = fmt::format("  {:<22}", "");
  for (int b = 0; b < kHistBuckets; ++b) {
    head += fmt::format(" {:>8}", std::string(runtime::HistLabel(b)) + "B");
    vals += fmt::format(" {:>8}", h[b]);
  }
  std::cout << head << "\n" << vals << "\n";
}

// `smc_served`: the SMC connections that could carry the requests counted
// (see Run), the divisor of the average.
// The summary counts SMC-D and SMC-R together (`smcd stats` and `smcr
// stats` are two commands of the kernel's); `open` splits the live ones.
void PrintStats(const ProcessCounters& c, uint64_t smc_served, OpenNow open,
                size_t processes, bool since_reset) {
  const uint64_t smc = SmcConnections(c);
  const uint64_t requests = c.rx_calls + c.tx_calls;
  std::cout << fmt::format(
      "SMC Connections Summary ({} process{} under usmc{})\n", processes,
      processes == 1 ? "" : "es", since_reset ? ", since reset" : "");
  std::cout << fmt::format("  {:<30} {:>12}\n", "Total connections handled",
                           TotalConnections(c));
  std::cout << fmt::format("  {:<30} {:>12}\n", "SMC connections", smc);
  std::cout << fmt::format(
      "  {:<30} {:>12}\n", "  client v1/v2",
      fmt::format("{}/{}", c.smc_ok[0][0], c.smc_ok[0][1]));
  std::cout << fmt::format(
      "  {:<30} {:>12}\n", "  server v1/v2",
      fmt::format("{}/{}", c.smc_ok[1][0], c.smc_ok[1][1]));
  std::cout << fmt::format("  {:<30} {:>12}\n", "  open now SMC-D/SMC-R",
                           fmt::format("{}/{}", open.smcd, open.smcr));
  std::cout << fmt::format("  {:<30} {:>12}  (client {}, server {})\n",
                           "Handshake errors",
                           c.handshake_errors[0] + c.handshake_errors[1],
                           c.handshake_errors[0], c.handshake_errors[1]);
  std::cout << fmt::format(
      "  {:<30} {:>12.1f}\n", "Avg requests per SMC conn",
      smc_served == 0
          ? 0.0
          : static_cast<double>(requests) / static_cast<double>(smc_served));
  std::cout << fmt::format("  {:<30} {:>12}  (client {}, server {})\n",
                           "TCP fallback", c.fallbacks[0] + c.fallbacks[1],
                           c.fallbacks[0], c.fallbacks[1]);
  if (c.slot_overflow != 0)
    std::cout << fmt::format("  {:<30} {:>12}\n",
                             "Not shown (all slots in use)", c.slot_overflow);
  for (int dir = 0; dir < 2; ++dir) {
    const bool rx = dir == 0;
    std::cout << "\n" << (rx ? "RX Stats" : "TX Stats") << "\n";
    const uint64_t bytes = rx ? c.bytes_smc_in : c.bytes_smc_out;
    std::cout << fmt::format("  {:<30} {:>12}  ({})\n",
                             "Data transmitted (Bytes)", bytes, Human(bytes));
    std::cout << fmt::format("  {:<30} {:>12}\n", "Total requests",
                             rx ? c.rx_calls : c.tx_calls);
    if (!rx)
      std::cout << fmt::format("  {:<30} {:>12}\n", "Buffer full (remote)",
                               c.tx_buffer_full);
    const uint64_t tcp = rx ? c.bytes_tcp_in : c.bytes_tcp_out;
    std::cout << fmt::format("  {:<30} {:>12}  ({})\n", "TCP fallback bytes",
                             tcp, Human(tcp));
    PrintHist("Buffer size", rx ? c.rx_buf_hist : c.tx_buf_hist);
    PrintHist("Payload size", rx ? c.rx_payload_hist : c.tx_payload_hist);
  }
  std::cout << "\nFallback reasons\n";
  for (int role = 0; role < 2; ++role) {
    std::cout << (role == 0 ? "  Client" : "  Server") << "\n";
    if (c.fallback_reasons[role].empty()) std::cout << "    (none)\n";
    for (const runtime::FallbackCount& f : c.fallback_reasons[role])
      std::cout << fmt::format("    {} {:<12} {:>10}  {}\n", Hex32(f.reason),
                               wire::ReasonName(f.reason), f.count,
                               wire::ReasonMeaning(f.reason));
  }
  if (c.fallback_overflow != 0)
    std::cout << fmt::format("  (and {} fallbacks with reasons not listed)\n",
                             c.fallback_overflow);
}

// The link groups of the shown processes, with their LLC counters.
void PrintLinkGroups(const std::vector<runtime::ProcessStatus>& procs) {
  size_t n = 0;
  for (const runtime::ProcessStatus& p : procs) n += p.link_groups.size();
  if (n == 0) return;
  std::cout << fmt::format("\nSMC-R Link Groups ({})\n", n);
  for (const runtime::ProcessStatus& p : procs) {
    for (const runtime::ConnRecord& g : p.link_groups) {
      const runtime::SmcrRecord& m = g.smcr;
      std::cout << fmt::format(
          "  {:08x} {} {:<8} qpn {} peer {} qpn {}, {} connection{}, pid {} "
          "({})\n",
          m.lgr_id, g.role == engine::Role::kClient ? "client" : "server",
          StateOf(g), m.qpn, GidText(m.peer_gid), m.peer_qpn, m.conns,
          m.conns == 1 ? "" : "s", g.pid, p.comm);
      std::cout << fmt::format(
          "    LLC sent {} received {}; CONFIRM_RKEY sent {} received {}; "
          "DELETE_RKEY sent {} received {}; TEST_LINK sent {} received {}\n",
          m.llc_sent, m.llc_received, m.confirm_rkey_sent,
          m.confirm_rkey_received, m.delete_rkey_sent, m.delete_rkey_received,
          m.test_link_sent, m.test_link_received);
    }
  }
}

void Run(const StatsArgs& a) {
  const std::vector<runtime::ProcessStatus> live = ReadProcesses(a.dir);
  std::vector<runtime::ProcessStatus> procs = live;
  if (a.pid != 0)
    std::erase_if(
        procs, [&](const runtime::ProcessStatus& p) { return p.pid != a.pid; });
  const nlohmann::json base =
      a.absolute ? nlohmann::json::object() : LoadBaseline(BaselinePath(a.dir));
  ProcessCounters total;
  uint64_t smc_served = 0;
  nlohmann::json per_process = nlohmann::json::array();
  nlohmann::json groups = nlohmann::json::array();
  bool any_baseline = false;
  for (const runtime::ProcessStatus& p : procs) {
    ProcessCounters c = p.counters;
    uint64_t live_at_reset = 0;
    if (auto it = base.find(Key(p)); it != base.end()) {
      try {
        c = c.Minus(FromRaw(*it));
        live_at_reset = it->value("live_smc", uint64_t{0});
        any_baseline = true;
      } catch (const nlohmann::json::exception&) {
        // A damaged baseline entry: show absolute values for this process.
      }
    }
    // The requests counted were served by the SMC connections handshaked
    // in the window, by those open at its start (the average was 0.0 after
    // a --reset on a busy server: no handshake since), and at least by
    // those open now (a fork child or a worker handed its connections
    // handshakes none of them).
    smc_served += std::max(SmcConnections(c) + live_at_reset, LiveSmc(p));
    total += c;
    for (const runtime::ConnRecord& g : p.link_groups)
      groups.push_back(LgrToJson(p, g));
    per_process.push_back({{"pid", p.pid},
                           {"comm", p.comm},
                           {"start_time", p.start_time},
                           {"uid", p.uid},
                           {"connections_now", p.connections.size()},
                           {"counters", CountersToJson(c)}});
  }
  if (a.json) {
    std::cout << nlohmann::json{{"since_reset", any_baseline},
                                {"processes", per_process},
                                {"total", CountersToJson(total)},
                                {"link_groups", groups}}
                     .dump(2)
              << "\n";
  } else {
    PrintStats(total, smc_served, OpenByTechnology(procs), procs.size(),
               any_baseline);
    PrintLinkGroups(procs);
  }
  if (a.reset) {
    Status s = SaveBaseline(a.dir, procs, live);
    if (!s.ok()) {
      std::cerr << "usmc stats: reset failed: " << s << "\n";
      ExitWith(1);
    }
    if (!a.json) std::cout << "\nStatistics reset.\n";
  }
  ExitWith(0);
}

}  // namespace

void AddStatsCommand(CLI::App& app) {
  auto a = std::make_shared<StatsArgs>();
  CLI::App* cmd = app.add_subcommand(
      "stats",
      "SMC statistics of the processes under `usmc run` (like smcd stats)");
  cmd->add_flag("--json", a->json, "print JSON");
  CLI::Option* reset = cmd->add_flag(
      "--reset", a->reset, "print, then count from zero for later runs");
  CLI::Option* absolute = cmd->add_flag(
      "-a,--absolute", a->absolute, "ignore the baseline of the last --reset");
  reset->excludes(absolute);
  cmd->add_option("-p,--pid", a->pid, "only this process");
  cmd->add_option("--status-dir", a->dir,
                  "read this status directory (default: as `usmc ss`)");
  cmd->callback([a] { Run(*a); });
}

}  // namespace usmc::tools
