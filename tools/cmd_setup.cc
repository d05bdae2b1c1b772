// tools/cmd_setup.cc: `usmc setup` loads the SMC negotiation program (the TCP
// option on SYN/SYN-ACK, negotiate/) and attaches it to a cgroup.
//
//   usmc setup                      load, pin, attach to the cgroup2 root
//   usmc setup --cgroup PATH        ... to another cgroup2 directory
//   usmc setup --status [--json]    what is attached, and the counters
//   usmc setup --remove             detach and unpin
//
// Exit codes: 0 ok; 1 failed; 3 (--status) not set up; 4 missing privilege.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "negotiate/loader.h"
#include "tools/commands.h"

namespace usmc::tools {
namespace {

constexpr int kExitFailed = 1;
constexpr int kExitNotSetUp = 3;
constexpr int kExitNoPrivilege = 4;

struct SetupArgs {
  std::string cgroup;
  std::string pin_dir = std::string(negotiate::kDefaultPinDir);
  bool status = false;
  bool remove = false;
  bool json = false;
};

[[noreturn]] void Fail(const Status& s) {
  std::cerr << "usmc setup: " << s.message();
  if (s.sys_errno() != 0) std::cerr << ": " << std::strerror(s.sys_errno());
  std::cerr << "\n";
  ExitWith(s.code() == StatusCode::kPermissionDenied ? kExitNoPrivilege
                                                     : kExitFailed);
}

nlohmann::json ToJson(const negotiate::AttachStatus& st) {
  nlohmann::json j;
  j["loaded"] = st.loaded;
  j["attached"] = st.attached;
  j["pin_dir"] = st.pin_dir;
  j["cgroup"] = st.cgroup;
  j["cgroup_id"] = st.cgroup_id;
  j["programs"] = nlohmann::json::array();
  for (const negotiate::ProgramAttachment& p : st.programs)
    j["programs"].push_back({{"name", p.name},
                             {"prog_id", p.prog_id},
                             {"link_id", p.link_id},
                             {"cgroup_id", p.cgroup_id}});
  for (int i = 0; i < negotiate::kCounterCount; ++i)
    j["counters"][std::string(negotiate::CounterNames()[i])] = st.counters[i];
  return j;
}

void PrintStatus(const negotiate::AttachStatus& st) {
  if (!st.loaded) {
    std::cout << "SMC negotiation: not set up (pins: " << st.pin_dir
              << ")\nEvery connection stays TCP (reason PEERNOSMC). "
                 "Fix: sudo usmc setup\n";
    return;
  }
  std::cout << "SMC negotiation: "
            << (st.attached ? "attached" : "loaded but NOT attached") << "\n"
            << "  pins:   " << st.pin_dir << "\n";
  if (st.attached)
    std::cout << "  cgroup: " << (st.cgroup.empty() ? "?" : st.cgroup)
              << " (id " << st.cgroup_id << ")\n";
  for (const negotiate::ProgramAttachment& p : st.programs) {
    std::printf("  %-10s prog id %u, ", p.name.c_str(), p.prog_id);
    if (p.link_id != 0)
      std::printf("link id %u\n", p.link_id);
    else
      std::printf("not attached\n");
  }
  std::cout << "counters:\n";
  for (int i = 0; i < negotiate::kCounterCount; ++i)
    std::printf("  %-17s %llu\n",
                std::string(negotiate::CounterNames()[i]).c_str(),
                static_cast<unsigned long long>(st.counters[i]));
  std::fflush(stdout);
}

void Run(const SetupArgs& args) {
  if (args.status) {
    Result<negotiate::AttachStatus> st = negotiate::QueryStatus(args.pin_dir);
    if (!st.ok()) Fail(st.status());
    if (args.json)
      std::cout << ToJson(*st).dump(2) << "\n";
    else
      PrintStatus(*st);
    ExitWith(st->attached ? 0 : kExitNotSetUp);
  }
  if (args.remove) {
    Status s = negotiate::Remove(args.pin_dir);
    if (!s.ok()) Fail(s);
    std::cout << "SMC negotiation removed (" << args.pin_dir << ")\n";
    ExitWith(0);
  }
  negotiate::SetupOptions options;
  options.cgroup = args.cgroup;
  options.pin_dir = args.pin_dir;
  Result<negotiate::SetupReport> r = negotiate::Setup(options);
  if (!r.ok()) Fail(r.status());
  if (r->links_created == 0)
    std::cout << "SMC negotiation already attached to " << r->cgroup << "\n";
  else
    std::cout << "SMC negotiation " << (r->loaded ? "loaded and " : "")
              << "attached to " << r->cgroup
              << (r->links_replaced ? " (moved from another cgroup)" : "")
              << "\n";
  ExitWith(0);
}

}  // namespace

void AddSetupCommand(CLI::App& app) {
  auto args = std::make_shared<SetupArgs>();
  CLI::App* cmd = app.add_subcommand(
      "setup",
      "Load the SMC negotiation eBPF program (TCP option on SYN/SYN-ACK) and "
      "attach it to a cgroup (root: CAP_BPF + CAP_NET_ADMIN)");
  cmd->add_option("--cgroup", args->cgroup,
                  "cgroup2 directory to attach to (default: the cgroup2 root)");
  cmd->add_option("--pin-dir", args->pin_dir, "bpffs directory for the pins")
      ->capture_default_str();
  CLI::Option* status =
      cmd->add_flag("--status", args->status, "show attachment and counters");
  CLI::Option* remove =
      cmd->add_flag("--remove", args->remove, "detach and unpin");
  cmd->add_flag("--json", args->json, "with --status: print JSON");
  status->excludes(remove);
  cmd->callback([args] { Run(*args); });
}

}  // namespace usmc::tools
