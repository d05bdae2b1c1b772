// tests/negotiate_harness.h: helpers for the root-only negotiation tests:
// a private cgroup with the program attached, a tshark capture on lo, a
// network namespace, and a client/server pair on loopback.
//
//   NegotiateCgroup cg;                   // load + attach + join (root)
//   Listener l = Listener::Open(Family::kV4, /*opt_in=*/true);
//   auto cap = LoCapture::Start(l.port);  // returns when tshark really
//   captures PairResult r = ConnectPair(l, /*opt_in=*/true);
//   std::vector<Segment> segs = cap->Stop();
#ifndef USMC_TESTS_NEGOTIATE_HARNESS_H_
#define USMC_TESTS_NEGOTIATE_HARNESS_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "negotiate/loader.h"
#include "negotiate/negotiate.h"

namespace usmc::negotiate_test {

bool IsRoot();
#define USMC_REQUIRE_ROOT()                                                 \
  do {                                                                      \
    if (!::usmc::negotiate_test::IsRoot())                                  \
      GTEST_SKIP() << "needs root (CAP_BPF + CAP_NET_ADMIN to load the "    \
                      "eBPF program, ip netns, tshark on lo): run as root"; \
  } while (0)

// Runs a command through /bin/sh; returns the exit code and the output.
struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
CommandResult RunCommand(const std::string& command);

// The cgroup2 path (relative to the cgroup2 root) this process is in.
std::string OwnCgroup();
// Moves the calling process into cgroup directory dir (absolute path).
bool JoinCgroup(const std::string& dir, pid_t pid = 0);

// The id of a usmc_sockops program that runs for sockets of cgroup dir
// (attached there or above, e.g. by `usmc setup`), or 0.
uint32_t EffectiveUsmcSockOps(const std::string& dir);

// A fresh child cgroup under the cgroup2 root with the negotiation program
// attached (private pins), which this process joins. Undone in reverse.
class NegotiateCgroup {
 public:
  NegotiateCgroup();
  ~NegotiateCgroup();
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  const std::string& dir() const { return dir_; }
  const std::string& pin_dir() const { return pin_dir_; }
  const std::string& original() const { return original_; }
  std::array<uint64_t, negotiate::kCounterCount> Counters() const;
  // A usmc_sockops program of another build that also runs for sockets in
  // dir() (e.g. an older `usmc setup` on the cgroup2 root): its id, or 0.
  // This build's program there defers to ours (the nearer one), so the
  // tests pass with or without `usmc setup`; another build's might answer
  // for these sockets too, so ok() is false then.
  uint32_t ForeignSockOps() const;

 private:
  bool ok_ = false;
  bool joined_ = false;
  std::string error_;
  std::string dir_;
  std::string pin_dir_;
  std::string original_;  // absolute path of the cgroup we came from
};

enum class Family { kV4, kV6, kV4Mapped };
const char* ToString(Family f);
std::ostream& operator<<(std::ostream& os, Family f);

struct Listener {
  int fd = -1;
  uint16_t port = 0;
  Family family = Family::kV4;
  bool opted_in = false;  // OptIn() returned true
  static Listener Open(Family family, bool opt_in, int tfo_queue = 0);
  void Close();
};

// Client socket to the listener's port (loopback address for its family).
int ClientSocket(Family family, bool opt_in, bool* opted_in);
bool ConnectLoopback(int fd, Family family, uint16_t port);

struct PairResult {
  bool ok = false;  // connected, accepted, bytes both ways
  std::string error;
  bool client_opted_in = false;  // OptIn() on the client returned true
  negotiate::Outcome client;
  negotiate::Outcome server;
};
PairResult ConnectPair(const Listener& l, bool client_opt_in);

// One TCP segment as tshark decoded it.
struct Segment {
  uint16_t sport = 0, dport = 0;
  bool syn = false, ack = false;
  std::string exid;         // tcp.options.experimental.exid, e.g. "0xe2d4"
  std::string options_hex;  // tcp.options, all option bytes in hex
  bool HasSmcOption() const;
};

// tshark on lo (in the calling thread's network namespace). Start() returns
// once tshark has demonstrably captured a probe datagram.
class LoCapture {
 public:
  static std::unique_ptr<LoCapture> Start(uint16_t tcp_port,
                                          std::string* error);
  ~LoCapture();
  // Waits until an end probe is seen, stops tshark, returns the TCP segments.
  std::vector<Segment> Stop();

 private:
  LoCapture() = default;
  bool SawUdpPort(uint16_t port);
  void SendProbe(uint16_t port);
  pid_t pid_ = -1;
  int out_fd_ = -1;
  uint16_t probe_port_ = 0, end_port_ = 0;
  int probe_fd_ = -1, end_fd_ = -1;
  std::thread reader_;
  std::mutex mu_;
  std::vector<std::string> lines_;
};

// SYN / SYN-ACK for this port among the segments (the first of each).
std::optional<Segment> FindSyn(const std::vector<Segment>& segs, uint16_t port);
std::optional<Segment> FindSynAck(const std::vector<Segment>& segs,
                                  uint16_t port);

// A network namespace with lo up; sysctls set inside it.
class NetNs {
 public:
  explicit NetNs(const std::vector<std::string>& sysctls);
  ~NetNs();
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  // Runs fn on a thread that joined the namespace.
  void Run(const std::function<void()>& fn);

 private:
  bool ok_ = false;
  std::string error_;
  std::string name_;
};

}  // namespace usmc::negotiate_test

#endif  // USMC_TESTS_NEGOTIATE_HARNESS_H_
