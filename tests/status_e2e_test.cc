// tests/status_e2e_test.cc: `usmc ss`, `usmc stats` and `usmc chk` against
// real processes under `usmc run` (issue 6). Each test joins a private
// cgroup with the negotiation program attached (private pins, never the
// cgroup2 root), runs tests/status_peer.cc or `usmc chk -S` under `usmc
// run` (or plain, as the non-usmc side), and asserts that what the tools
// print equals what the test did: the listener while it is open, every
// connection's fields, the counters, the bytes, and chk's verdicts.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/negotiate_harness.h"
#include "tests/status_schema.h"
#include "wire/cdc.h"
#include "wire/reason.h"

namespace usmc::status_test {
namespace {

namespace fs = std::filesystem;
using negotiate_test::NegotiateCgroup;

constexpr int kTimeoutMs = 30000;  // a hang becomes a failure, not a wait
constexpr uint64_t kDmb = 65536;   // USMC_DMB_SIZE of every process
// Per connection, each way: 1200 x 256 B one at a time, then 1 MiB at once
// (tests/status_peer.cc).
constexpr uint64_t kBytes = 1200 * 256 + (1 << 20);

// A child process (own process group) with stdin and stdout piped; stderr
// goes to a file that failure messages show.
class Proc {
 public:
  // `in_child` runs in the child just before exec (uid, environment).
  Proc(const std::vector<std::string>& args, const std::string& err_file,
       const std::function<void()>& in_child = {})
      : err_file_(err_file) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return;
    std::vector<std::string> store = args;
    std::vector<char*> argv;
    for (std::string& s : store) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      dup2(in[0], 0);
      dup2(out[1], 1);
      const int err =
          open(err_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (err >= 0) dup2(err, 2);
      if (in_child) in_child();
      execv(argv[0], argv.data());
      _exit(127);
    }
    setpgid(pid_, pid_);
    close(in[0]);
    close(out[1]);
    in_ = in[1];
    out_ = out[0];
  }
  ~Proc() {
    CloseStdin();
    if (pid_ > 0 && !reaped_) {
      kill(-pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) close(out_);
  }
  pid_t pid() const { return pid_; }

  // The next stdout line; nullopt on EOF or after timeout_ms.
  std::optional<std::string> ReadLine(int timeout_ms = kTimeoutMs) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      pollfd p{out_, POLLIN, 0};
      if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0)
        return std::nullopt;
      char b[4096];
      const ssize_t n = read(out_, b, sizeof(b));
      if (n <= 0) return std::nullopt;
      buf_.append(b, static_cast<size_t>(n));
    }
  }
  void Send(const std::string& line) {
    (void)!write(in_, line.data(), line.size());
  }
  void CloseStdin() {
    if (in_ >= 0) close(in_);
    in_ = -1;
  }
  // Exit code after stdin EOF; -1 if killed at the deadline.
  int Wait(int timeout_ms = kTimeoutMs) {
    CloseStdin();
    for (int waited = 0; waited < timeout_ms; waited += 10) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        reaped_ = true;
        kill(-pid_, SIGKILL);  // helpers it left behind
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
      usleep(10000);
    }
    return -1;
  }
  std::string Stderr() const {
    std::ifstream in(err_file_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  std::string err_file_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int in_ = -1, out_ = -1;
  std::string buf_;
};

struct Output {
  int code = -1;
  std::string out;
};

// The `usmc` binary with the test's environment (set in SetUp).
Output Usmc(const std::string& args) {
  Output o;
  FILE* p = popen((std::string(USMC_BIN) + " " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return o;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0)
    o.out.append(buf.data(), n);
  const int st = pclose(p);
  o.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return o;
}

std::string Hex(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof(b), "0x%08x", v);
  return b;
}

uint64_t U(const json& j) {
  return j.is_number_unsigned() ? j.get<uint64_t>() : ~uint64_t{0};
}

// A cursor as one position in the byte stream. The ring is the DMB after
// its SMC-D CDC area.
uint64_t Pos(const json& cursor) {
  return U(cursor["wrap"]) * (kDmb - wire::kSmcdCdcLen) + U(cursor["count"]);
}

std::string SocketLink(pid_t pid, int fd) {
  std::error_code ec;
  return fs::read_symlink(
             "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd), ec)
      .string();
}

class StatusE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    USMC_REQUIRE_ROOT();
    cg_ = std::make_unique<NegotiateCgroup>();
    ASSERT_TRUE(cg_->ok()) << cg_->error();
    char tmpl[] = "/tmp/usmc-status-e2e-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    status_ = dir_ + "/status";
    report_ = dir_ + "/exit-report.jsonl";
    // Inherited by every child (the test process itself never loads usmc).
    for (const auto& [k, v] : std::map<std::string, std::string>{
             {"USMC_STATUS_DIR", status_},
             {"USMC_EXIT_REPORT", report_},
             {"USMC_PRELOAD_LIB", USMC_PRELOAD_LIB},
             {"USMC_DMB_SIZE", std::to_string(kDmb)},
             // No spin before sleeping: waits sleep, so wakeups happen.
             {"USMC_SPIN_US", "0"},
             {"USMC_CLC_TIMEOUT_MS", "20000"},
             {"USMC_CONF", ""}})
      setenv(k.c_str(), v.c_str(), 1);
    unsetenv("LD_PRELOAD");
  }
  void TearDown() override {
    for (const char* k :
         {"USMC_STATUS_DIR", "USMC_EXIT_REPORT", "USMC_PRELOAD_LIB",
          "USMC_DMB_SIZE", "USMC_SPIN_US", "USMC_CLC_TIMEOUT_MS", "USMC_CONF"})
      unsetenv(k);
    cg_.reset();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  std::unique_ptr<Proc> Start(const std::vector<std::string>& args,
                              bool under_usmc,
                              const std::function<void()>& in_child = {}) {
    std::vector<std::string> v;
    if (under_usmc) v = {USMC_BIN, "run", "-q", "--"};
    v.insert(v.end(), args.begin(), args.end());
    return std::make_unique<Proc>(v,
                                  dir_ + "/stderr-" +
                                      args[0].substr(args[0].rfind('/') + 1) +
                                      std::to_string(++n_procs_),
                                  in_child);
  }
  // status_peer serve; its port.
  std::unique_ptr<Proc> StartServer(bool under_usmc, int* port) {
    auto p = Start({USMC_STATUS_PEER, "serve"}, under_usmc);
    std::optional<std::string> line = p->ReadLine();
    *port =
        line && line->rfind("PORT ", 0) == 0 ? std::stoi(line->substr(5)) : 0;
    EXPECT_NE(*port, 0) << (line ? *line : "(no line)") << "\n" << p->Stderr();
    return p;
  }

  json UsmcJson(const std::string& args) { return UsmcJsonIn(status_, args); }
  json UsmcJsonIn(const std::string& dir, const std::string& args) {
    Output o = Usmc(args + " --status-dir " + dir);
    EXPECT_EQ(o.code, 0) << o.out;
    json j = json::parse(o.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << o.out;
    EXPECT_EQ(LoadSchema().Check(j), "") << o.out;
    return j;
  }

  std::vector<json> Reports() const {
    std::vector<json> v;
    std::ifstream in(report_);
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) v.push_back(json::parse(line, nullptr, false));
    return v;
  }

  std::unique_ptr<NegotiateCgroup> cg_;
  std::string dir_, status_, report_;
  int n_procs_ = 0;
};

TEST_F(StatusE2e, ListenerIsShownWhileItIsOpen) {
  int port = 0;
  auto server = StartServer(/*under_usmc=*/true, &port);
  ASSERT_NE(port, 0);

  json l = UsmcJson("ss --json -l")["connections"];
  ASSERT_EQ(l.size(), 1u) << l.dump(2);
  EXPECT_EQ(l[0]["state"], "LISTEN");
  EXPECT_EQ(l[0]["local"], "[::]:" + std::to_string(port));
  EXPECT_EQ(l[0]["peer"], "*");
  EXPECT_EQ(l[0]["role"], "server");
  EXPECT_EQ(l[0]["pid"], server->pid());
  EXPECT_EQ(l[0]["comm"], "status_peer");
  EXPECT_EQ(l[0]["uid"], geteuid());
  EXPECT_EQ(SocketLink(server->pid(), l[0]["fd"].get<int>()),
            "socket:[" + std::to_string(U(l[0]["inode"])) + "]");
  // smcss: without -l or -a, listeners are not shown.
  EXPECT_TRUE(UsmcJson("ss --json")["connections"].empty());
  EXPECT_EQ(UsmcJson("ss --json -a")["connections"].size(), 1u);
  Output text = Usmc("ss -l --status-dir " + status_);
  EXPECT_NE(text.out.find("LISTEN"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("[::]:" + std::to_string(port)), std::string::npos)
      << text.out;
  EXPECT_NE(Usmc("ss -l -a --status-dir " + status_).code, 0)
      << "smcss refuses --listening with --all";

  // A fork child holds the listener too, and shows it in its own file. The
  // line comes from the child once its fork() returned, by when usmc has
  // published what it inherited (the parent's fork() does not wait for it).
  server->Send("fork\n");
  std::optional<std::string> child_line = server->ReadLine();
  ASSERT_TRUE(child_line && child_line->rfind("CHILD ", 0) == 0)
      << server->Stderr();
  const int child = std::stoi(child_line->substr(6));
  json both = UsmcJson("ss --json -l")["connections"];
  ASSERT_EQ(both.size(), 2u) << both.dump(2);
  EXPECT_EQ(both[0]["pid"], std::min<int>(server->pid(), child));
  EXPECT_EQ(both[1]["pid"], std::max<int>(server->pid(), child));
  EXPECT_EQ(both[0]["inode"], both[1]["inode"]);

  // Closed in the parent: only the child's is left.
  server->Send("close-listener\n");
  ASSERT_EQ(server->ReadLine(), "CLOSED") << server->Stderr();
  l = UsmcJson("ss --json -l")["connections"];
  ASSERT_EQ(l.size(), 1u) << l.dump(2);
  EXPECT_EQ(l[0]["pid"], child);
  // kill() only queues the signal: the child is dead when its pidfd says
  // so (it is not our child, waitpid cannot tell).
  const int child_fd = static_cast<int>(syscall(SYS_pidfd_open, child, 0));
  ASSERT_GE(child_fd, 0) << std::strerror(errno);
  kill(child, SIGKILL);
  pollfd dead{child_fd, POLLIN, 0};
  EXPECT_EQ(poll(&dead, 1, kTimeoutMs), 1) << "child " << child << " lives";
  close(child_fd);
  EXPECT_EQ(server->Wait(), 0) << server->Stderr();
  // The child was SIGKILLed: its file is recognised as stale.
  EXPECT_TRUE(UsmcJson("ss --json -l")["connections"].empty());
}

// Neither app calls into its socket after accept() / the connect: the
// progress threads of both ends finish the handshake, and `usmc ss` shows
// SMC-D at once, not at the apps' next call (a server whose accept loop
// runs ahead of its work, a pool that connects ahead of use).
TEST_F(StatusE2e, HandshakesNoCallDrivesAreShownDecided) {
  auto server = Start({USMC_STATUS_PEER, "hold"}, true);
  std::optional<std::string> line = server->ReadLine();
  ASSERT_TRUE(line && line->rfind("PORT ", 0) == 0) << server->Stderr();
  const std::string port = line->substr(5);
  auto client = Start({USMC_STATUS_PEER, "idle", "127.0.0.1", port}, true);
  ASSERT_EQ(client->ReadLine(), "CONNECTED") << client->Stderr();

  // Waits for the outcome, bounded: the threads start 20 ms after the
  // apps' last calls.
  json cc;
  for (int i = 0; i < 500; ++i) {
    cc = UsmcJson("ss --json")["connections"];
    int smcd = 0;
    for (const json& c : cc) smcd += c["mode"] == "SMCD";
    if (smcd == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(cc.size(), 2u) << cc.dump(2);
  for (const json& c : cc) {
    EXPECT_EQ(c["mode"], "SMCD") << c.dump(2);
    EXPECT_EQ(c["local_reason"], 0) << c.dump(2);
    EXPECT_EQ(c["pid"], c["role"] == "server" ? server->pid() : client->pid());
  }
  EXPECT_EQ(client->Wait(), 0) << client->Stderr();
  EXPECT_EQ(server->Wait(), 0) << server->Stderr();
}

size_t Count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos;
       at = hay.find(needle, at + 1))
    ++n;
  return n;
}

// A status directory that others may write to is refused by every process
// under usmc (runtime::EnsureStatusDir): each says so once on stderr, and
// `usmc ss` says why it shows nothing. Before, both were silent: the
// connections were just missing.
TEST_F(StatusE2e, AGroupWritableStatusDirIsRefusedAloud) {
  ASSERT_EQ(mkdir(status_.c_str(), 0700), 0);
  ASSERT_EQ(chmod(status_.c_str(), 0770), 0);
  int port = 0;
  auto server = StartServer(/*under_usmc=*/true, &port);
  ASSERT_NE(port, 0);
  auto client = Start({USMC_STATUS_PEER, "client", std::to_string(kBytes),
                       "127.0.0.1", std::to_string(port), "1"},
                      true);
  ASSERT_EQ(client->ReadLine(), "DONE") << client->Stderr();
  const std::string why = "status directory " + status_ +
                          " is writable by group or others; chmod 700 it";
  Output o = Usmc("ss --status-dir " + status_);
  EXPECT_EQ(o.code, 0) << o.out;
  EXPECT_NE(o.out.find("usmc ss: " + why), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("none of their connections is shown"), std::string::npos)
      << o.out;
  EXPECT_EQ(client->Wait(), 0) << client->Stderr();
  EXPECT_EQ(server->Wait(), 0) << server->Stderr();
  EXPECT_EQ(Count(client->Stderr(), why), 1u) << client->Stderr();
  EXPECT_EQ(Count(server->Stderr(), why), 1u) << server->Stderr();
  // And it really was refused: nothing was published there.
  EXPECT_TRUE(fs::is_empty(status_));
}

TEST_F(StatusE2e, ChkSaysSmcdAgainstItsOwnServer) {
  auto server = Start({USMC_BIN, "chk", "-S", "-p", "0"}, false);
  std::optional<std::string> line = server->ReadLine();
  ASSERT_TRUE(line) << server->Stderr();
  const std::string key = "listening on port ";
  const size_t at = line->find(key);
  ASSERT_NE(at, std::string::npos) << *line;
  const std::string port =
      std::to_string(std::stoi(line->substr(at + key.size())));

  // The chk server's listener is published too.
  json l = UsmcJson("ss --json -l")["connections"];
  ASSERT_EQ(l.size(), 1u) << l.dump(2);
  EXPECT_EQ(l[0]["local"], "[::]:" + port);
  EXPECT_EQ(l[0]["pid"], server->pid());

  for (const char* host : {"127.0.0.1", "::1"}) {
    Output o = Usmc(std::string("chk ") + host + " " + port);
    EXPECT_EQ(o.code, 0) << o.out;
    EXPECT_NE(o.out.find(": Success, using SMC-D (our DMB 65536 bytes, peer "
                         "DMB 65536 bytes)"),
              std::string::npos)
        << o.out;
  }
}

TEST_F(StatusE2e, ChkSaysPeerNoSmcAgainstAPlainServer) {
  int port = 0;
  auto plain = StartServer(/*under_usmc=*/false, &port);
  ASSERT_NE(port, 0);
  Output o = Usmc("chk 127.0.0.1 " + std::to_string(port));
  EXPECT_EQ(o.code, 1) << o.out;
  EXPECT_NE(
      o.out.find("Failed (TCP fallback), reason 0x03010000 PEERNOSMC: " +
                 std::string(wire::ReasonMeaning(wire::kReasonPeerNoSmc))),
      std::string::npos)
      << o.out;
  EXPECT_NE(o.out.find("does not run under `usmc run`"), std::string::npos)
      << o.out;
  EXPECT_EQ(plain->Wait(), 0) << plain->Stderr();
}

TEST_F(StatusE2e, ChkOnAClosedPortIsAClearError) {
  // A port that was free a moment ago: bound, never listened on.
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  socklen_t len = sizeof(a);
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  Output o = Usmc("chk 127.0.0.1 " + std::to_string(ntohs(a.sin_port)));
  close(s);
  EXPECT_EQ(o.code, 2) << o.out;
  EXPECT_NE(o.out.find("connect failed: Connection refused"), std::string::npos)
      << o.out;
}

// A name the resolver cannot find is the resolver's error, not an errno
// left over from elsewhere (it used to say ENOENT).
TEST_F(StatusE2e, ChkOnAnUnknownHostSaysTheResolverFailed) {
  Output o = Usmc("chk no-such-host.invalid 80");
  EXPECT_EQ(o.code, 2) << o.out;
  EXPECT_NE(o.out.find("cannot resolve no-such-host.invalid: "),
            std::string::npos)
      << o.out;
  EXPECT_EQ(o.out.find("No such file"), std::string::npos) << o.out;
}

// Usage errors exit 2 in every subcommand (CLI11's own codes were 105-109).
TEST_F(StatusE2e, UsageErrorsExitTwo) {
  for (const char* args : {"ss --bogus", "stats --bogus", "chk --bogus",
                           "ss extra-argument", "setup --bogus"}) {
    Output o = Usmc(args);
    EXPECT_EQ(o.code, 2) << args << "\n" << o.out;
  }
  EXPECT_EQ(Usmc("ss --help").code, 0);
}

// A sibling cgroup without the negotiation program (a host where `usmc
// setup` was not done for the app's cgroup), joined by the test process
// (and so by the processes it starts) while it lives.
struct NoProgramCgroup {
  std::string dir, back;
  bool ok = false;
  explicit NoProgramCgroup(std::string back_to) : back(std::move(back_to)) {
    Result<std::string> root = negotiate::FindCgroup2Root();
    if (!root.ok()) return;
    dir = *root + "/usmc-noprog-" + std::to_string(getpid());
    ok = (mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST) &&
         negotiate_test::JoinCgroup(dir);
  }
  ~NoProgramCgroup() {
    negotiate_test::JoinCgroup(back);
    rmdir(dir.c_str());
  }
};

// Without the negotiation program every connection stays TCP, and says
// why: `usmc ss`, `usmc chk` and the exit report name NONEGOTIATION (they
// showed nothing at all: the interposer made no connection of its own).
TEST_F(StatusE2e, WithoutTheNegotiationProgramConnectionsSayWhy) {
  NoProgramCgroup plain(cg_->dir());
  ASSERT_TRUE(plain.ok) << plain.dir;
  int port = 0;
  auto server = StartServer(/*under_usmc=*/true, &port);
  ASSERT_NE(port, 0);
  auto client = Start({USMC_STATUS_PEER, "client", std::to_string(kBytes),
                       "127.0.0.1", std::to_string(port), "1"},
                      true);
  ASSERT_EQ(client->ReadLine(), "DONE") << client->Stderr();

  const std::string text =
      "NONEGOTIATION: " +
      std::string(wire::ReasonMeaning(wire::kReasonNoNegotiation));
  json cc = UsmcJson("ss --json")["connections"];
  ASSERT_EQ(cc.size(), 2u) << cc.dump(2);
  for (const json& c : cc) {
    SCOPED_TRACE(c.dump(2));
    EXPECT_EQ(c["mode"], "TCP");
    EXPECT_EQ(c["local_reason"], wire::kReasonNoNegotiation);
    EXPECT_EQ(c["local_reason_text"], text);
    EXPECT_EQ(c["pid"], c["role"] == "server" ? server->pid() : client->pid());
    EXPECT_EQ(c["bytes_in"], kBytes);
    EXPECT_EQ(c["bytes_out"], kBytes);
    EXPECT_EQ(c["bytes_smc_in"], 0);
  }
  EXPECT_TRUE(UsmcJson("ss --json -l")["connections"].empty())
      << "a listener that offers nothing is not shown as offering SMC";

  Output chk = Usmc("chk 127.0.0.1 " + std::to_string(port));
  EXPECT_EQ(chk.code, 1) << chk.out;
  EXPECT_NE(chk.out.find("reason 0x03000001 " + text), std::string::npos)
      << chk.out;
  EXPECT_NE(chk.out.find("Fix: sudo usmc setup"), std::string::npos) << chk.out;
  // The resolver's failure stays the resolver's (it was hidden behind
  // "negotiation is not set up here").
  Output unknown = Usmc("chk no-such-host.invalid 80");
  EXPECT_EQ(unknown.code, 2) << unknown.out;
  EXPECT_NE(unknown.out.find("cannot resolve no-such-host.invalid: "),
            std::string::npos)
      << unknown.out;

  EXPECT_EQ(client->Wait(), 0) << client->Stderr();
  EXPECT_EQ(server->Wait(), 0) << server->Stderr();
  int clients = 0, servers = 0;
  for (const json& r : Reports()) {
    SCOPED_TRACE(r.dump());
    EXPECT_EQ(r["smcd"], 0);
    EXPECT_EQ(r["fallback_reasons"],
              json({{Hex(wire::kReasonNoNegotiation), r["tcp"]}}));
    if (r["pid"] == client->pid()) {
      ++clients;
      EXPECT_EQ(r["tcp"], 1);
      EXPECT_EQ(r["bytes_tcp_in"], kBytes);
      EXPECT_EQ(r["bytes_tcp_out"], kBytes);
    }
    if (r["pid"] == server->pid()) {
      ++servers;
      EXPECT_EQ(r["tcp"], 2);  // the client's and chk's
    }
  }
  EXPECT_EQ(clients, 1);
  EXPECT_EQ(servers, 1);
}

// A client of another user and a server whose DMB budget is too small: the
// server declines (no memory for a DMB), and both ends show why, in codes
// and words. (The other uid alone no longer declines: the handover rests on
// the tokens, docs/dev-shm.md.)
TEST_F(StatusE2e, DeclinedConnectionShowsBothEndsReasons) {
  auto server = Start({USMC_STATUS_PEER, "serve"}, /*under_usmc=*/true,
                      [] { setenv("USMC_DMB_BUDGET", "4096", 1); });
  std::optional<std::string> line = server->ReadLine();
  const int port =
      line && line->rfind("PORT ", 0) == 0 ? std::stoi(line->substr(5)) : 0;
  ASSERT_NE(port, 0) << server->Stderr();
  char tmpl[] = "/tmp/usmc-status-e2e-nobody-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string nobody_dir = tmpl;
  struct RemoveAtEnd {
    std::string dir;
    ~RemoveAtEnd() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } remove_at_end{nobody_dir};
  ASSERT_EQ(chown(tmpl, 65534, 65534), 0);
  auto client = Start({USMC_STATUS_PEER, "client", std::to_string(kBytes),
                       "127.0.0.1", std::to_string(port), "1"},
                      true, [&] {
                        setenv("USMC_STATUS_DIR", nobody_dir.c_str(), 1);
                        unsetenv("USMC_EXIT_REPORT");
                        if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 ||
                            setuid(65534) != 0)
                          _exit(126);
                      });
  ASSERT_EQ(client->ReadLine(), "DONE") << client->Stderr();

  json cc = UsmcJsonIn(nobody_dir, "ss --json -a")["connections"];
  ASSERT_EQ(cc.size(), 1u) << cc.dump(2);
  const json& c = cc[0];
  EXPECT_EQ(c["pid"], client->pid());
  EXPECT_EQ(c["uid"], 65534);
  EXPECT_EQ(c["mode"], "TCP");
  EXPECT_EQ(c["role"], "client");
  EXPECT_EQ(c["local_reason"], wire::kReasonPeerDecl);
  EXPECT_EQ(
      c["local_reason_text"],
      "PEERDECL: " + std::string(wire::ReasonMeaning(wire::kReasonPeerDecl)));
  const uint32_t why = c["peer_reason"];
  EXPECT_NE(why, 0u);
  EXPECT_EQ(c["peer_reason_text"], std::string(wire::ReasonName(why)) + ": " +
                                       std::string(wire::ReasonMeaning(why)));
  EXPECT_EQ(c["bytes_in"], kBytes);
  EXPECT_EQ(c["bytes_out"], kBytes);
  EXPECT_EQ(c["bytes_smc_in"], 0);

  // The server's end: its own reason is what the client heard.
  json sc = UsmcJson("ss --json -p " + std::to_string(server->pid()));
  ASSERT_EQ(sc["connections"].size(), 1u) << sc.dump(2);
  const json& s = sc["connections"][0];
  EXPECT_EQ(s["mode"], "TCP");
  EXPECT_EQ(s["role"], "server");
  EXPECT_EQ(s["local_reason"], why);
  EXPECT_EQ(s["uid"], geteuid());
  EXPECT_EQ(s["bytes_in"], kBytes);
  json st = UsmcJson("stats --json -p " + std::to_string(server->pid()));
  const json& counters = st["processes"][0]["counters"];
  EXPECT_EQ(counters["connections"]["tcp_fallback"]["server"], 1);
  ASSERT_EQ(counters["fallback_reasons"].size(), 1u);
  EXPECT_EQ(counters["fallback_reasons"][0]["code"], why);

  Output text = Usmc("ss -d --status-dir " + nobody_dir);
  EXPECT_NE(text.out.find("TCP 0x05000000/" + std::string(Hex(why))),
            std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("; peer: " + std::string(wire::ReasonName(why))),
            std::string::npos)
      << text.out;
  EXPECT_EQ(client->Wait(), 0) << client->Stderr();
  EXPECT_EQ(server->Wait(), 0) << server->Stderr();
}

// N connections between two `usmc run` processes and K to a plain server,
// kBytes each way on each: the tools show exactly that.
TEST_F(StatusE2e, CountersAndConnectionsEqualWhatTheTestDid) {
  constexpr uint64_t kSmc = 3, kPlain = 2;
  int sport = 0, pport = 0;
  auto server = StartServer(/*under_usmc=*/true, &sport);
  auto plain = StartServer(/*under_usmc=*/false, &pport);
  ASSERT_NE(sport, 0);
  ASSERT_NE(pport, 0);
  const std::string sp = std::to_string(sport), pp = std::to_string(pport);
  // One SMC-D connection over IPv4, two over IPv6; the plain ones IPv4.
  auto client =
      Start({USMC_STATUS_PEER, "client", std::to_string(kBytes), "127.0.0.1",
             sp, "1", "::1", sp, "2", "127.0.0.1", pp, std::to_string(kPlain)},
            true);
  ASSERT_EQ(client->ReadLine(), "DONE") << client->Stderr();
  const pid_t cpid = client->pid(), spid = server->pid();

  // ---- usmc stats: per process and in total ----
  const std::string reason_text =
      "PEERNOSMC: " + std::string(wire::ReasonMeaning(wire::kReasonPeerNoSmc));
  json cs = UsmcJson("stats --json -a -p " + std::to_string(cpid));
  ASSERT_EQ(cs["processes"].size(), 1u) << cs.dump(2);
  {
    const json& c = cs["processes"][0]["counters"];
    SCOPED_TRACE("client counters " + c.dump(2));
    EXPECT_EQ(c["connections"]["total"], kSmc + kPlain);
    EXPECT_EQ(c["connections"]["smc"]["client_v2"], kSmc);
    EXPECT_EQ(c["connections"]["smc"]["client_v1"], 0);
    EXPECT_EQ(c["connections"]["smc"]["server_v2"], 0);
    EXPECT_EQ(c["connections"]["tcp_fallback"]["client"], kPlain);
    EXPECT_EQ(c["connections"]["tcp_fallback"]["server"], 0);
    EXPECT_EQ(c["connections"]["handshake_errors"]["client"], 0);
    ASSERT_EQ(c["fallback_reasons"].size(), 1u);
    EXPECT_EQ(c["fallback_reasons"][0]["role"], "client");
    EXPECT_EQ(c["fallback_reasons"][0]["hex"], "0x03010000");
    EXPECT_EQ(c["fallback_reasons"][0]["text"], reason_text);
    EXPECT_EQ(c["fallback_reasons"][0]["count"], kPlain);
    for (const char* dir : {"rx", "tx"}) {
      EXPECT_EQ(c[dir]["bytes_smc"], kSmc * kBytes) << dir;
      EXPECT_EQ(c[dir]["bytes_tcp"], kPlain * kBytes) << dir;
      EXPECT_EQ(c[dir]["buffer_size_hist"]["64K"], kSmc) << dir;
    }
    // Every SMC send moved all its bytes in one call: 1200 small, 1 large.
    EXPECT_EQ(c["tx"]["requests"], kSmc * 1201);
    EXPECT_EQ(c["tx"]["payload_size_hist"]["8K"], kSmc * 1200);
    EXPECT_EQ(c["tx"]["payload_size_hist"]["1024K"], kSmc);
    // Each 1 MiB send into a 64 KiB DMB found it full at least once.
    EXPECT_GE(U(c["tx"]["buffer_full"]), kSmc);
  }
  json ss = UsmcJson("stats --json -a -p " + std::to_string(spid));
  ASSERT_EQ(ss["processes"].size(), 1u);
  {
    const json& c = ss["processes"][0]["counters"];
    SCOPED_TRACE("server counters " + c.dump(2));
    EXPECT_EQ(c["connections"]["total"], kSmc);
    EXPECT_EQ(c["connections"]["smc"]["server_v2"], kSmc);
    EXPECT_EQ(c["connections"]["tcp_fallback"]["server"], 0);
    EXPECT_EQ(c["rx"]["bytes_smc"], kSmc * kBytes);
    EXPECT_EQ(c["tx"]["bytes_smc"], kSmc * kBytes);
    EXPECT_EQ(c["rx"]["bytes_tcp"], 0);
    EXPECT_EQ(c["rx"]["buffer_size_hist"]["64K"], kSmc);
  }
  json total = UsmcJson("stats --json -a")["total"];
  EXPECT_EQ(total["connections"]["total"], 2 * kSmc + kPlain);
  EXPECT_EQ(total["rx"]["bytes_smc"], 2 * kSmc * kBytes);
  EXPECT_EQ(total["tx"]["bytes_tcp"], kPlain * kBytes);

  // ---- usmc ss: every field of every connection ----
  json cc = UsmcJson("ss --json -a -p " + std::to_string(cpid))["connections"];
  json sc = UsmcJson("ss --json -a -p " + std::to_string(spid))["connections"];
  ASSERT_EQ(cc.size(), kSmc + kPlain) << cc.dump(2);
  ASSERT_EQ(sc.size(), kSmc + 1) << sc.dump(2);  // and the listener
  std::map<std::string, json> server_by_peer;
  for (const json& s : sc)
    if (s["state"] != "LISTEN") server_by_peer[s["peer"]] = s;
  uint64_t wakeups = 0, smc_seen = 0, v4 = 0, v6 = 0;
  for (const json& c : cc) {
    SCOPED_TRACE(c.dump(2));
    EXPECT_EQ(c["pid"], cpid);
    EXPECT_EQ(c["comm"], "status_peer");
    EXPECT_EQ(c["uid"], geteuid());
    EXPECT_EQ(c["role"], "client");
    EXPECT_EQ(c["error"], 0);
    EXPECT_EQ(SocketLink(cpid, c["fd"].get<int>()),
              "socket:[" + std::to_string(U(c["inode"])) + "]");
    EXPECT_NE(c["state"], "INIT");
    EXPECT_EQ(c["bytes_in"], kBytes);
    EXPECT_EQ(c["bytes_out"], kBytes);
    const std::string local = c["local"], peer = c["peer"];
    if (c["mode"] == "TCP") {
      EXPECT_EQ(peer, "127.0.0.1:" + pp);
      EXPECT_EQ(local.rfind("127.0.0.1:", 0), 0u);
      EXPECT_EQ(c["local_reason"], wire::kReasonPeerNoSmc);
      EXPECT_EQ(c["local_reason_text"], reason_text);
      EXPECT_EQ(c["bytes_smc_in"], 0);
      EXPECT_EQ(c["dmb_size"], 0);
      continue;
    }
    ASSERT_EQ(c["mode"], "SMCD");
    ++smc_seen;
    if (peer == "127.0.0.1:" + sp) {
      ++v4;
      EXPECT_EQ(local.rfind("127.0.0.1:", 0), 0u);
    } else {
      ++v6;
      EXPECT_EQ(peer, "[::1]:" + sp);
      EXPECT_EQ(local.rfind("[::1]:", 0), 0u);
    }
    EXPECT_EQ(c["local_reason"], 0);
    EXPECT_EQ(c["peer_reason"], 0);
    EXPECT_EQ(c["bytes_smc_in"], kBytes);
    EXPECT_EQ(c["bytes_smc_out"], kBytes);
    EXPECT_EQ(c["dmb_size"], kDmb);
    EXPECT_EQ(c["peer_dmb_size"], kDmb);
    EXPECT_NE(c["dmb_token"], 0);
    EXPECT_NE(c["peer_dmb_token"], 0);
    // Published at our shutdown, after the whole echo was read.
    const json& cur = c["cursors"];
    EXPECT_EQ(Pos(cur["tx_producer"]), kBytes);
    EXPECT_EQ(Pos(cur["rx_consumer"]), kBytes);
    EXPECT_EQ(Pos(cur["peer_producer"]), kBytes);
    EXPECT_LE(Pos(cur["peer_consumer"]), kBytes);
    EXPECT_GE(U(c["buffer_full"]), 1u);
    EXPECT_GT(U(c["cdc_sent"]), 0u);
    EXPECT_GT(U(c["cdc_received"]), 0u);
    wakeups += U(c["wakeups_sent"]) + U(c["wakeups_received"]);

    // The server's end of the same connection.
    std::string speer = local;
    if (local.rfind("127.0.0.1:", 0) == 0)
      speer = "[::ffff:" + local.substr(0, local.find(':')) + "]" +
              local.substr(local.find(':'));
    ASSERT_EQ(server_by_peer.count(speer), 1u) << speer;
    const json& s = server_by_peer[speer];
    SCOPED_TRACE(s.dump(2));
    EXPECT_EQ(s["mode"], "SMCD");
    EXPECT_EQ(s["role"], "server");
    EXPECT_EQ(s["pid"], spid);
    EXPECT_EQ(SocketLink(spid, s["fd"].get<int>()),
              "socket:[" + std::to_string(U(s["inode"])) + "]");
    EXPECT_EQ(s["bytes_smc_in"], kBytes);
    EXPECT_EQ(s["bytes_smc_out"], kBytes);
    EXPECT_EQ(s["dmb_token"], c["peer_dmb_token"]);
    EXPECT_EQ(s["peer_dmb_token"], c["dmb_token"]);
    EXPECT_EQ(Pos(s["cursors"]["tx_producer"]), kBytes);
    EXPECT_EQ(Pos(s["cursors"]["rx_consumer"]), kBytes);
    wakeups += U(s["wakeups_sent"]) + U(s["wakeups_received"]);
  }
  EXPECT_EQ(smc_seen, kSmc);
  EXPECT_EQ(v4, 1u);
  EXPECT_EQ(v6, 2u);
  // 1200 round trips without spinning: the waiting side sleeps and is woken.
  EXPECT_GT(wakeups, 0u);

  // Intf: loopback's index (1) for every connection of the dual-stack
  // server, also the IPv4 ones it sees as ::ffff:127.0.0.1.
  Output stext =
      Usmc("ss -W -p " + std::to_string(spid) + " --status-dir " + status_);
  EXPECT_NE(stext.out.find("[::ffff:127.0.0.1]:" + sp), std::string::npos)
      << stext.out;
  size_t smcd_lines = 0;
  for (size_t at = stext.out.find(" 0001 SMCD"); at != std::string::npos;
       at = stext.out.find(" 0001 SMCD", at + 1))
    ++smcd_lines;
  EXPECT_EQ(smcd_lines, kSmc) << stext.out;

  Output debug =
      Usmc("ss -d -p " + std::to_string(cpid) + " --status-dir " + status_);
  EXPECT_NE(debug.out.find("fallback: " + reason_text), std::string::npos)
      << debug.out;

  // ---- the exit report keeps the counts after the process is gone ----
  ASSERT_EQ(client->Wait(), 0) << client->Stderr();
  EXPECT_EQ(server->Wait(), 0) << server->Stderr();
  EXPECT_EQ(plain->Wait(), 0) << plain->Stderr();
  std::map<int, json> by_pid;
  for (const json& r : Reports()) by_pid[r.value("pid", 0)] = r;
  ASSERT_EQ(by_pid.count(cpid), 1u);
  const json& r = by_pid[cpid];
  EXPECT_EQ(r["smcd"], kSmc);
  EXPECT_EQ(r["tcp"], kPlain);
  EXPECT_EQ(r["fallback_reasons"], json({{"0x03010000", kPlain}}));
  EXPECT_EQ(r["bytes_smcd_in"], kSmc * kBytes);
  EXPECT_EQ(r["bytes_smcd_out"], kSmc * kBytes);
  EXPECT_EQ(r["bytes_tcp_in"], kPlain * kBytes);
  EXPECT_EQ(r["bytes_tcp_out"], kPlain * kBytes);
  ASSERT_EQ(by_pid.count(spid), 1u);
  EXPECT_EQ(by_pid[spid]["smcd"], kSmc);
  EXPECT_EQ(by_pid[spid]["bytes_smcd_in"], kSmc * kBytes);
  // Both processes are gone, and so are their status files.
  EXPECT_TRUE(UsmcJson("ss --json -a")["connections"].empty());
}

}  // namespace
}  // namespace usmc::status_test
