// tools/cmd_setup.cc: `usmc setup` loads the SMC negotiation program (the TCP
// option on SYN/SYN-ACK, negotiate/) and attaches it to a cgroup.
//
//   usmc setup                      load, pin, attach to the cgroup2 root
//   usmc setup --cgroup PATH        ... to another cgroup2 directory
//   usmc setup --status [--json]    what is attached, and the counters
//   usmc setup --remove             detach and unpin
//
// Who attached it is noted in /run/usmc-setup (tmpfs: gone at reboot, like the
// pins): $USMC_SETUP_BY (usmc.service sets it) or "usmc setup by hand".
//
// Exit codes: 0 ok; 1 failed; 3 (--status) not set up; 4 missing privilege.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
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

// Not /run/usmc: that is the status directory of root processes (usmc ss).
constexpr const char* kRunDir = "/run/usmc-setup";

// One note per pin directory: /sys/fs/bpf/usmc ->
// /run/usmc-setup/sys_fs_bpf_usmc.
std::string NotePath(const std::string& pin_dir) {
  std::string name = pin_dir;
  for (char& c : name)
    if (c == '/') c = '_';
  while (!name.empty() && name[0] == '_') name.erase(0, 1);
  return std::string(kRunDir) + "/" + name;
}

void WriteNote(const std::string& pin_dir) {
  const char* by = std::getenv("USMC_SETUP_BY");
  std::error_code ec;
  std::filesystem::create_directories(kRunDir, ec);
  std::ofstream(NotePath(pin_dir))
      << ((by != nullptr && *by) ? by : "usmc setup by hand") << "\n"
      << std::time(nullptr) << "\n";
}

// "usmc.service since 2026-12-07 07:00:00 UTC", or "" without a note.
std::string ReadNote(const std::string& pin_dir) {
  std::ifstream in(NotePath(pin_dir));
  std::string by;
  long long when = 0;
  if (!std::getline(in, by) || !(in >> when)) return {};
  char buf[64];
  const std::time_t t = static_cast<std::time_t>(when);
  std::tm tm{};
  std::strftime(buf, sizeof buf, "%F %T UTC", gmtime_r(&t, &tm));
  return by + " since " + buf;
}

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
  j["attached_by"] = st.attached ? ReadNote(st.pin_dir) : "";
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
  if (const std::string by = ReadNote(st.pin_dir); st.attached && !by.empty())
    std::cout << "  by:     " << by << "\n";
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
    std::error_code ec;
    std::filesystem::remove(NotePath(args.pin_dir), ec);
    std::cout << "SMC negotiation removed (" << args.pin_dir << ")\n";
    ExitWith(0);
  }
  negotiate::SetupOptions options;
  options.cgroup = args.cgroup;
  options.pin_dir = args.pin_dir;
  Result<negotiate::SetupReport> r = negotiate::Setup(options);
  if (!r.ok()) Fail(r.status());
  // A unit taking over a hand-made attachment becomes its owner.
  if (r->links_created != 0 || std::getenv("USMC_SETUP_BY") != nullptr ||
      ReadNote(args.pin_dir).empty())
    WriteNote(args.pin_dir);
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
  // Shown after the options by --help, and in usmc-setup(1) (generated).
  cmd->footer(
      "Exit status: 0 done; 1 failed; 3 (--status) not attached; 4 missing "
      "privilege.\nAt boot, usmc.service runs `usmc setup` (and `usmc setup "
      "--remove` when stopped);\n--status then names it in its \"by:\" "
      "line.");
  cmd->callback([args] { Run(*args); });
}

}  // namespace usmc::tools
