// tests/negotiate_harness.cc: see negotiate_harness.h.
#include "tests/negotiate_harness.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace usmc::negotiate_test {
namespace {

std::atomic<int> g_serial{0};

std::string Unique(const char* prefix) {
  return std::string(prefix) + std::to_string(getpid()) + "-" +
         std::to_string(g_serial++);
}

bool WriteFile(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok =
      write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  return out;
}

bool FullIo(int fd, char* buf, size_t len, bool is_write) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = is_write ? write(fd, buf + done, len - done)
                         : read(fd, buf + done, len - done);
    if (n <= 0) return false;
    done += n;
  }
  return true;
}

}  // namespace

bool IsRoot() { return geteuid() == 0; }

CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  char err_path[] = "/tmp/usmc-negtest-errXXXXXX";
  int err_fd = mkstemp(err_path);
  if (err_fd < 0) return r;
  std::string full = command + " 2>" + err_path;
  FILE* p = popen(full.c_str(), "r");
  if (p == nullptr) {
    close(err_fd);
    unlink(err_path);
    return r;
  }
  r.out = ReadAll(fileno(p));
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = ReadAll(err_fd);
  close(err_fd);
  unlink(err_path);
  return r;
}

std::string OwnCgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  return "/";
}

bool JoinCgroup(const std::string& dir, pid_t pid) {
  return WriteFile(dir + "/cgroup.procs",
                   std::to_string(pid == 0 ? getpid() : pid));
}

NegotiateCgroup::NegotiateCgroup() {
  Result<std::string> root = negotiate::FindCgroup2Root();
  if (!root.ok()) {
    error_ = root.status().ToString();
    return;
  }
  std::string own = OwnCgroup();
  original_ = *root + (own == "/" ? "" : own);
  dir_ = *root + "/" + Unique("usmc-negtest-");
  pin_dir_ = "/sys/fs/bpf/" + Unique("usmc-negtest-");
  if (mkdir(dir_.c_str(), 0755) != 0) {
    error_ = "mkdir " + dir_ + ": " + std::strerror(errno);
    return;
  }
  negotiate::SetupOptions options;
  options.cgroup = dir_;
  options.pin_dir = pin_dir_;
  Result<negotiate::SetupReport> r = negotiate::Setup(options);
  if (!r.ok()) {
    error_ = "setup: " + r.status().ToString();
    return;
  }
  if (!JoinCgroup(dir_)) {
    error_ = "join " + dir_ + ": " + std::strerror(errno);
    return;
  }
  joined_ = true;
  if (uint32_t id = ForeignSockOps(); id != 0) {
    error_ = "a usmc negotiation program from another build (prog id " +
             std::to_string(id) +
             ") runs above the test cgroup and would answer for its sockets "
             "too: `sudo usmc setup` from this build replaces it";
    return;
  }
  ok_ = true;
}

NegotiateCgroup::~NegotiateCgroup() {
  if (joined_) JoinCgroup(original_);
  if (!pin_dir_.empty()) (void)negotiate::Remove(pin_dir_);
  if (!dir_.empty()) rmdir(dir_.c_str());
}

std::array<uint64_t, negotiate::kCounterCount> NegotiateCgroup::Counters()
    const {
  Result<negotiate::AttachStatus> st = negotiate::QueryStatus(pin_dir_);
  if (!st.ok()) return {};
  return st->counters;
}

namespace {

// The sock_ops programs in effect for cgroup `dir`, as the kernel lists
// them; empty if it cannot tell.
std::vector<uint32_t> EffectiveSockOps(const std::string& dir) {
  int cg = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) return {};
  uint32_t ids[64];
  uint32_t count = 64;
  int rc = bpf_prog_query(cg, BPF_CGROUP_SOCK_OPS, BPF_F_QUERY_EFFECTIVE,
                          nullptr, ids, &count);
  close(cg);
  if (rc != 0) return {};
  return std::vector<uint32_t>(ids, ids + count);
}

// Program `id`'s name and tag, if it can be read.
std::optional<bpf_prog_info> ProgInfo(uint32_t id) {
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return std::nullopt;
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  const bool ok = bpf_obj_get_info_by_fd(fd, &info, &len) == 0;
  close(fd);
  if (!ok) return std::nullopt;
  return info;
}

bool IsUsmcSockOps(const bpf_prog_info& info) {
  return std::string(info.name) == "usmc_sockops";
}

}  // namespace

uint32_t NegotiateCgroup::ForeignSockOps() const {
  Result<negotiate::AttachStatus> st = negotiate::QueryStatus(pin_dir_);
  uint32_t own = st.ok() ? st->programs[0].prog_id : 0;
  std::optional<bpf_prog_info> own_info =
      own != 0 ? ProgInfo(own) : std::nullopt;
  if (!own_info) return 0;
  for (uint32_t id : EffectiveSockOps(dir_)) {
    if (id == own) continue;
    // This build's program (same instructions, same tag) defers to ours,
    // the nearer one (usmc_negotiate.bpf.c USMC_HANDLED); another build's
    // may not.
    std::optional<bpf_prog_info> info = ProgInfo(id);
    if (info && IsUsmcSockOps(*info) &&
        std::memcmp(info->tag, own_info->tag, sizeof(info->tag)) != 0) {
      return id;
    }
  }
  return 0;
}

uint32_t EffectiveUsmcSockOps(const std::string& dir) {
  for (uint32_t id : EffectiveSockOps(dir)) {
    std::optional<bpf_prog_info> info = ProgInfo(id);
    if (info && IsUsmcSockOps(*info)) return id;
  }
  return 0;
}

const char* ToString(Family f) {
  switch (f) {
    case Family::kV4:
      return "IPv4";
    case Family::kV6:
      return "IPv6";
    case Family::kV4Mapped:
      return "V4Mapped";
  }
  return "?";
}

std::ostream& operator<<(std::ostream& os, Family f) {
  return os << ToString(f);
}

namespace {

int DomainOf(Family f) { return f == Family::kV4 ? AF_INET : AF_INET6; }

socklen_t LoopbackAddr(Family f, uint16_t port, sockaddr_storage* ss,
                       bool for_bind) {
  std::memset(ss, 0, sizeof(*ss));
  if (f == Family::kV4) {
    auto* sin = reinterpret_cast<sockaddr_in*>(ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof(*sin);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  if (f == Family::kV6)
    sin6->sin6_addr = in6addr_loopback;
  else if (for_bind)
    sin6->sin6_addr = in6addr_any;  // dual-stack listener
  else
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6->sin6_addr);
  return sizeof(*sin6);
}

}  // namespace

Listener Listener::Open(Family family, bool opt_in, int tfo_queue) {
  Listener l;
  l.family = family;
  l.fd = socket(DomainOf(family), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l.fd < 0) return l;
  int one = 1, zero = 0;
  setsockopt(l.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (family == Family::kV4Mapped)
    setsockopt(l.fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  if (tfo_queue > 0)
    setsockopt(l.fd, IPPROTO_TCP, TCP_FASTOPEN, &tfo_queue, sizeof(tfo_queue));
  if (opt_in) l.opted_in = negotiate::OptIn(l.fd);
  sockaddr_storage ss;
  socklen_t len = LoopbackAddr(family, 0, &ss, true);
  if (bind(l.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      listen(l.fd, 64) != 0) {
    l.Close();
    return l;
  }
  len = sizeof(ss);
  getsockname(l.fd, reinterpret_cast<sockaddr*>(&ss), &len);
  l.port = ntohs(family == Family::kV4
                     ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                     : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return l;
}

void Listener::Close() {
  if (fd >= 0) close(fd);
  fd = -1;
}

int ClientSocket(Family family, bool opt_in, bool* opted_in) {
  int fd = socket(DomainOf(family), SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool in = fd >= 0 && opt_in && negotiate::OptIn(fd);
  if (opted_in != nullptr) *opted_in = in;
  return fd;
}

bool ConnectLoopback(int fd, Family family, uint16_t port) {
  sockaddr_storage ss;
  socklen_t len = LoopbackAddr(family, port, &ss, false);
  return connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0;
}

PairResult ConnectPair(const Listener& l, bool client_opt_in) {
  PairResult r;
  int c = ClientSocket(l.family, client_opt_in, &r.client_opted_in);
  if (c < 0 || !ConnectLoopback(c, l.family, l.port)) {
    r.error = std::string("connect: ") + std::strerror(errno);
    if (c >= 0) close(c);
    return r;
  }
  int a = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (a < 0) {
    r.error = std::string("accept: ") + std::strerror(errno);
    close(c);
    return r;
  }
  r.client = negotiate::QueryOutcome(c);
  r.server = negotiate::QueryOutcome(a);
  // The connection must work as TCP whatever the verdict.
  char ping[4] = {'p', 'i', 'n', 'g'}, got[4] = {};
  char pong[4] = {'p', 'o', 'n', 'g'};
  r.ok = FullIo(c, ping, 4, true) && FullIo(a, got, 4, false) &&
         std::memcmp(got, ping, 4) == 0 && FullIo(a, pong, 4, true) &&
         FullIo(c, got, 4, false) && std::memcmp(got, pong, 4) == 0;
  if (!r.ok) r.error = "bytes did not cross";
  close(a);
  close(c);
  return r;
}

bool Segment::HasSmcOption() const {
  // Kind 254, length 6, ExID E2D4C3D9, as bytes anywhere in the options.
  return options_hex.find("fe06e2d4c3d9") != std::string::npos;
}

std::unique_ptr<LoCapture> LoCapture::Start(uint16_t tcp_port,
                                            std::string* error) {
  std::unique_ptr<LoCapture> cap(new LoCapture());
  // Two bound UDP sockets give the probe ports (kept open: no ICMP noise).
  for (auto [fd, port] : {std::pair{&cap->probe_fd_, &cap->probe_port_},
                          std::pair{&cap->end_fd_, &cap->end_port_}}) {
    *fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sin);
    bind(*fd, reinterpret_cast<sockaddr*>(&sin), len);
    getsockname(*fd, reinterpret_cast<sockaddr*>(&sin), &len);
    *port = ntohs(sin.sin_port);
  }
  std::string filter = "tcp port " + std::to_string(tcp_port) +
                       " or udp port " + std::to_string(cap->probe_port_) +
                       " or udp port " + std::to_string(cap->end_port_);
  std::vector<std::string> args = {"tshark", "-i",
                                   "lo",     "-l",
                                   "-n",     "-Q",
                                   "-f",     filter,
                                   "-T",     "fields",
                                   "-E",     "separator=/t",
                                   "-e",     "udp.dstport",
                                   "-e",     "tcp.srcport",
                                   "-e",     "tcp.dstport",
                                   "-e",     "tcp.flags.syn",
                                   "-e",     "tcp.flags.ack",
                                   "-e",     "tcp.options.experimental.exid",
                                   "-e",     "tcp.options"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return nullptr;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  int rc =
      posix_spawnp(&cap->pid_, "tshark", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  if (rc != 0) {
    close(out[0]);
    *error = std::string("spawn tshark: ") + std::strerror(rc);
    return nullptr;
  }
  cap->out_fd_ = out[0];
  LoCapture* self = cap.get();
  cap->reader_ = std::thread([self] {
    std::string buf;
    char chunk[4096];
    ssize_t n;
    while ((n = read(self->out_fd_, chunk, sizeof(chunk))) > 0) {
      buf.append(chunk, n);
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        std::lock_guard<std::mutex> lock(self->mu_);
        self->lines_.push_back(buf.substr(0, nl));
        buf.erase(0, nl + 1);
      }
    }
  });
  // "Capturing on lo" is printed before the capture filter is live: only a
  // probe that comes back through tshark proves it is really capturing.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    cap->SendProbe(cap->probe_port_);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (cap->SawUdpPort(cap->probe_port_)) return cap;
  }
  *error = "tshark did not start capturing within 60 s";
  return nullptr;
}

void LoCapture::SendProbe(uint16_t port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sendto(probe_fd_, "probe", 5, 0, reinterpret_cast<sockaddr*>(&sin),
         sizeof(sin));
}

bool LoCapture::SawUdpPort(uint16_t port) {
  std::string want = std::to_string(port) + "\t";
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& line : lines_)
    if (line.rfind(want, 0) == 0) return true;
  return false;
}

std::vector<Segment> LoCapture::Stop() {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline &&
         !SawUdpPort(end_port_)) {
    SendProbe(end_port_);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::vector<Segment> segs;
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& line : lines_) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, '\t')) f.push_back(field);
    f.resize(7);
    if (!f[0].empty() || f[1].empty()) continue;  // a probe, not TCP
    Segment s;
    s.sport = static_cast<uint16_t>(std::stoi(f[1]));
    s.dport = static_cast<uint16_t>(std::stoi(f[2]));
    s.syn = f[3] == "1" || f[3] == "True";
    s.ack = f[4] == "1" || f[4] == "True";
    s.exid = f[5];
    s.options_hex = f[6];
    segs.push_back(s);
  }
  return segs;
}

LoCapture::~LoCapture() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  if (reader_.joinable()) reader_.join();
  if (out_fd_ >= 0) close(out_fd_);
  if (probe_fd_ >= 0) close(probe_fd_);
  if (end_fd_ >= 0) close(end_fd_);
}

std::optional<Segment> FindSyn(const std::vector<Segment>& segs,
                               uint16_t port) {
  for (const Segment& s : segs)
    if (s.syn && !s.ack && s.dport == port) return s;
  return std::nullopt;
}

std::optional<Segment> FindSynAck(const std::vector<Segment>& segs,
                                  uint16_t port) {
  for (const Segment& s : segs)
    if (s.syn && s.ack && s.sport == port) return s;
  return std::nullopt;
}

NetNs::NetNs(const std::vector<std::string>& sysctls) {
  std::string name = Unique("usmc-negtest-");
  CommandResult r = RunCommand("ip netns add " + name);
  if (r.exit_code != 0) {
    error_ = "ip netns add: " + r.err;
    return;
  }
  name_ = name;
  r = RunCommand("ip -n " + name + " link set lo up");
  if (r.exit_code != 0) {
    error_ = "lo up: " + r.err;
    return;
  }
  for (const std::string& s : sysctls) {
    r = RunCommand("ip netns exec " + name + " sysctl -qw " + s);
    if (r.exit_code != 0) {
      error_ = "sysctl " + s + ": " + r.err;
      return;
    }
  }
  ok_ = true;
}

NetNs::~NetNs() {
  if (!name_.empty()) (void)RunCommand("ip netns del " + name_);
}

void NetNs::Run(const std::function<void()>& fn) {
  std::thread t([&] {
    int fd = open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
      error_ = std::string("setns: ") + std::strerror(errno);
      if (fd >= 0) close(fd);
      return;
    }
    close(fd);
    fn();
  });
  t.join();
}

}  // namespace usmc::negotiate_test
