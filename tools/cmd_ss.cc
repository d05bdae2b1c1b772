// tools/cmd_ss.cc: `usmc ss`, smcss for processes under `usmc run`. Reads the
// status files (runtime/publish.h); never stops or slows the processes.
//
//   usmc ss              connections (not INIT, LISTEN or CLOSED)
//   usmc ss -a           all, including INIT/CLOSED/FAILED and listeners
//   usmc ss -l           listening sockets only (see docs/observability.md)
//   usmc ss -D | -R      SMC-D | SMC-R connections only, with their details
//                        (-R: link group, QPN, peer GID, token)
//   usmc ss -d           debug details: tokens, buffers, cursors, wakeups
//   usmc ss -W           wide: do not truncate addresses
//   usmc ss --json       {"connections":[...], "link_groups":[...]}
//                        (docs/status-schema.json)
//
// SMC-R link groups follow the connections in their own section (not with
// -l or -D), as the kernel's `smcr linkgroup` lists them.
#include <ifaddrs.h>
#include <net/if.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "tools/commands.h"
#include "tools/status_json.h"

namespace usmc::tools {
namespace {

struct SsArgs {
  bool all = false;
  bool listening = false;
  bool debug = false;
  bool smcd = false;
  bool smcr = false;
  bool wide = false;
  bool json = false;
  int pid = 0;
  std::string dir;
};

bool Selected(const SsArgs& a, const runtime::ConnRecord& r) {
  const std::string state = StateOf(r);
  if (a.pid != 0 && r.pid != a.pid) return false;
  if (a.smcd && r.mode != runtime::ConnMode::kSmcd) return false;
  if (a.smcr && r.mode != runtime::ConnMode::kSmcr) return false;
  if (a.listening) return state == "LISTEN";
  if (a.all) return true;
  return state != "INIT" && state != "LISTEN" && state != "CLOSED";
}

// smcss's Intf is the interface the socket is bound to; usmc sockets are
// rarely bound, so this shows the interface that owns the local address.
class Interfaces {
 public:
  Interfaces() {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return;
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr) continue;
      sockaddr_storage ss{};
      const int fam = i->ifa_addr->sa_family;
      if (fam != AF_INET && fam != AF_INET6) continue;
      std::memcpy(&ss, i->ifa_addr,
                  fam == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
      by_ip_[Ip(ss)] = if_nametoindex(i->ifa_name);
    }
    freeifaddrs(list);
  }
  unsigned IndexOf(const sockaddr_storage& ss) const {
    auto it = by_ip_.find(Ip(ss));
    return it == by_ip_.end() ? 0 : it->second;
  }

 private:
  static std::string Ip(sockaddr_storage ss) {
    // A dual-stack server sees IPv4 peers as ::ffff:a.b.c.d; the interface
    // holds a.b.c.d.
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (ss.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      sockaddr_in v4{};
      v4.sin_family = AF_INET;
      std::memcpy(&v4.sin_addr, &v6->sin6_addr.s6_addr[12], 4);
      ss = {};
      std::memcpy(&ss, &v4, sizeof(v4));
    }
    // Port 0 so that only the address is compared.
    if (ss.ss_family == AF_INET)
      reinterpret_cast<sockaddr_in*>(&ss)->sin_port = 0;
    else if (ss.ss_family == AF_INET6)
      reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = 0;
    return FormatAddr(ss);
  }
  std::map<std::string, unsigned> by_ip_;
};

// smcss's Mode column: SMCD, SMCR, "TCP 0x<local>[/0x<peer>]".
std::string ModeColumn(const runtime::ConnRecord& r) {
  if (r.mode != runtime::ConnMode::kTcp) return std::string(ToString(r.mode));
  std::string s = "TCP " + Hex32(r.local_reason);
  if (r.peer_reason != 0) s += "/" + Hex32(r.peer_reason);
  return s;
}

std::string Fit(const std::string& s, size_t width, bool wide) {
  if (wide || s.size() <= width) return s;
  return s.substr(0, width - 1) + "~";
}

std::string Cursor(const runtime::CursorValue& c) {
  return fmt::format("{:04x}:{:08x}", c.wrap, c.count);
}

void PrintTable(const SsArgs& a,
                const std::vector<runtime::ProcessStatus>& procs) {
  const Interfaces ifs;
  constexpr size_t kAddrWidth = 23;
  std::string head =
      fmt::format("{:<16} {:>5} {:>8} {:<23} {:<23} {:>4} {:<24} {:>7} {:<15}",
                  "State", "UID", "Inode", "Local Address", "Peer Address",
                  "Intf", "Mode", "PID", "Comm");
  if (a.smcd || a.smcr) head += fmt::format(" {:<4}", "Role");
  if (a.smcr)
    head += fmt::format(" {:>8} {:>8} {:<39} {:>8} {:>8} {:>8}", "Lgr-Id",
                        "QPN", "Peer-GID", "Token", "Rcvbuf", "Peerbuf");
  if (a.smcd || a.debug)
    head += fmt::format(" {:>16} {:>16} {:>8} {:>8}", "Token", "Peer-Token",
                        "Rcvbuf", "Peerbuf");
  if (a.debug)
    head += fmt::format(
        " {:<13} {:<13} {:<13} {:<13} {:>8} {:>8} {:>8} {:>12} {:>12}",
        "rxprod-Cursor", "rxcons-Cursor", "txprod-Cursor", "txcons-Cursor",
        "Wk-sent", "Wk-recv", "Buf-full", "Bytes-in", "Bytes-out");
  std::cout << head << "\n";
  for (const runtime::ProcessStatus& p : procs) {
    for (const runtime::ConnRecord& r : p.connections) {
      if (!Selected(a, r)) continue;
      std::string line = fmt::format(
          "{:<16} {:>5} {:>8} {:<23} {:<23} {:>04x} {:<24} {:>7} {:<15}",
          StateOf(r), r.uid, r.inode,
          Fit(FormatAddr(r.local), kAddrWidth, a.wide),
          Fit(FormatAddr(r.peer), kAddrWidth, a.wide), ifs.IndexOf(r.local),
          ModeColumn(r), r.pid, p.comm);
      if (a.smcd || a.smcr)
        line += fmt::format(" {:<4}",
                            r.role == engine::Role::kClient ? "CLNT" : "SERV");
      if (a.smcr)
        line += fmt::format(" {:08x} {:>8} {:<39} {:>08x} {:>8} {:>8}",
                            r.smcr.lgr_id, r.smcr.qpn, GidText(r.smcr.peer_gid),
                            r.smcr.token, r.dmb_size, r.peer_dmb_size);
      if (a.smcd || a.debug)
        line += fmt::format(" {:>16x} {:>16x} {:>8} {:>8}", r.dmb_token,
                            r.peer_dmb_token, r.dmb_size, r.peer_dmb_size);
      if (a.debug)
        line += fmt::format(
            " {:<13} {:<13} {:<13} {:<13} {:>8} {:>8} {:>8} {:>12} {:>12}",
            Cursor(r.peer_producer), Cursor(r.rx_consumer),
            Cursor(r.tx_producer), Cursor(r.peer_consumer), r.wakeups_sent,
            r.wakeups_received, r.buffer_full, r.bytes_in, r.bytes_out);
      std::cout << line << "\n";
      if (a.debug && r.mode == runtime::ConnMode::kSmcr)
        std::cout << fmt::format(
            "    smc-r: link group {:08x} qpn {} peer qpn {} peer gid {} "
            "token {:08x}\n",
            r.smcr.lgr_id, r.smcr.qpn, r.smcr.peer_qpn,
            GidText(r.smcr.peer_gid), r.smcr.token);
      if (a.debug && r.mode == runtime::ConnMode::kTcp)
        std::cout << "    fallback: " << ReasonText(r.local_reason)
                  << (r.peer_reason ? "; peer: " + ReasonText(r.peer_reason)
                                    : std::string())
                  << "\n";
    }
  }
}

bool LgrSelected(const SsArgs& a, const runtime::ConnRecord& g) {
  return (a.pid == 0 || g.pid == a.pid) && !a.listening && !a.smcd;
}

// The SMC-R link groups, after the connections (only if there are any).
void PrintLinkGroups(const SsArgs& a,
                     const std::vector<runtime::ProcessStatus>& procs) {
  bool any = false;
  for (const runtime::ProcessStatus& p : procs)
    for (const runtime::ConnRecord& g : p.link_groups)
      any = any || LgrSelected(a, g);
  if (!any) return;
  std::cout << "\nSMC-R link groups\n"
            << fmt::format(
                   "{:<8} {:<4} {:<10} {:>8} {:>8} {:<39} {:<16} {:>5} {:>8} "
                   "{:>8} {:>13} {:>13} {:>13} {:>7} {:<15}",
                   "Lgr-Id", "Role", "State", "QPN", "Peer-QPN", "Peer-GID",
                   "Peer-System-Id", "Conns", "LLC-sent", "LLC-recv",
                   "CfmRkey-s/r", "DelRkey-s/r", "TestLink-s/r", "PID", "Comm")
            << "\n";
  for (const runtime::ProcessStatus& p : procs) {
    for (const runtime::ConnRecord& g : p.link_groups) {
      if (!LgrSelected(a, g)) continue;
      const runtime::SmcrRecord& m = g.smcr;
      std::cout << fmt::format(
                       "{:08x} {:<4} {:<10} {:>8} {:>8} {:<39} {:<16} {:>5} "
                       "{:>8} {:>8} {:>13} {:>13} {:>13} {:>7} {:<15}",
                       m.lgr_id,
                       g.role == engine::Role::kClient ? "CLNT" : "SERV",
                       StateOf(g), m.qpn, m.peer_qpn, GidText(m.peer_gid),
                       SystemIdText(m.peer_system_id), m.conns, m.llc_sent,
                       m.llc_received,
                       fmt::format("{}/{}", m.confirm_rkey_sent,
                                   m.confirm_rkey_received),
                       fmt::format("{}/{}", m.delete_rkey_sent,
                                   m.delete_rkey_received),
                       fmt::format("{}/{}", m.test_link_sent,
                                   m.test_link_received),
                       g.pid, p.comm)
                << "\n";
    }
  }
}

// A directory every publisher refuses shows nothing: say why (stderr, so
// that --json stays one document), not an empty list alone.
void SayRefusedDirs(const SsArgs& a) {
  const std::vector<std::string> dirs = a.dir.empty()
                                            ? runtime::StatusDirsToRead()
                                            : std::vector<std::string>{a.dir};
  for (const std::string& d : dirs) {
    const Status s = runtime::StatusDirProblem(d, /*as_owner=*/false);
    if (!s.ok())
      std::cerr << "usmc ss: " << s.message()
                << "; processes under usmc do not publish there, so none of "
                   "their connections is shown\n";
  }
}

void Run(const SsArgs& a) {
  SayRefusedDirs(a);
  const std::vector<runtime::ProcessStatus> procs = ReadProcesses(a.dir);
  if (a.json) {
    nlohmann::json conns = nlohmann::json::array();
    nlohmann::json groups = nlohmann::json::array();
    for (const runtime::ProcessStatus& p : procs) {
      for (const runtime::ConnRecord& r : p.connections)
        if (Selected(a, r)) conns.push_back(ConnToJson(p, r));
      for (const runtime::ConnRecord& g : p.link_groups)
        if (LgrSelected(a, g)) groups.push_back(LgrToJson(p, g));
    }
    std::cout << nlohmann::json{{"connections", conns}, {"link_groups", groups}}
                     .dump(2)
              << "\n";
  } else {
    PrintTable(a, procs);
    PrintLinkGroups(a, procs);
  }
  ExitWith(0);
}

}  // namespace

void AddSsCommand(CLI::App& app) {
  auto a = std::make_shared<SsArgs>();
  CLI::App* cmd = app.add_subcommand(
      "ss", "SMC sockets of the processes under `usmc run` (like smcss)");
  CLI::Option* all = cmd->add_flag(
      "-a,--all", a->all, "all sockets, also INIT, LISTEN, CLOSED and FAILED");
  CLI::Option* l =
      cmd->add_flag("-l,--listening", a->listening, "listening sockets only");
  CLI::Option* dbg =
      cmd->add_flag("-d,--debug", a->debug,
                    "details: tokens, buffer sizes, cursors, wakeups, bytes");
  CLI::Option* d =
      cmd->add_flag("-D,--smcd", a->smcd, "SMC-D sockets only, with details");
  CLI::Option* r = cmd->add_flag("-R,--smcr", a->smcr, "SMC-R sockets only");
  d->excludes(r);
  // As smcss: a listener has no connection details to select or show.
  l->excludes(all)->excludes(dbg)->excludes(d)->excludes(r);
  cmd->add_flag("-W,--wide", a->wide, "do not truncate addresses");
  cmd->add_flag("--json", a->json,
                "JSON: {\"connections\": [...], \"link_groups\": [...]}");
  cmd->add_option("-p,--pid", a->pid, "only this process");
  cmd->add_option("--status-dir", a->dir,
                  "read this status directory (default: USMC_STATUS_DIR, "
                  "/run/usmc for root, else $XDG_RUNTIME_DIR/usmc-UID)");
  cmd->callback([a] { Run(*a); });
}

}  // namespace usmc::tools
