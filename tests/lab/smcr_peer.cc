// tests/lab/smcr_peer.cc: usmc's SMC-R runtime on a real RDMA device,
// without the interposer, in a lab guest (tests/lab/README.md). It meets
// the Linux kernel's SMC-R (smc_lab) across the two guests:
//
//   smcr_peer client ADDR PORT BYTES [--conns N] [--idle S] [--abort]
//                                    [--hold S]
//   smcr_peer server PORT BYTES [--conns N] [--abort] [--hold S]
//
// One process: one LgrRegistry on dev/verbs with its SmcrProgress thread;
// per connection a TCP socket that offers the RFC 7609 option the way the
// interposer does (negotiate::OptIn; `usmc setup` attached the eBPF
// program), an engine::Connection and an Executor on the registry's
// SmcrConn. Connections are sequential; --abort makes the last one end
// abortively, --hold keeps the link groups S seconds before the exit, --idle
// sleeps S seconds with the link up before the client sends. The exchange
// is smc_lab's: the client sends BYTES of pattern 1,
// the server answers BYTES of pattern 2, each checked byte by byte. Then the
// client closes (the server waits for its EOF, then closes), and at exit
// TerminateAll (DELETE_LINK to the kernel).
//
// This driver sleeps in its own poll(2), not SmcrConn::Wait, on the TCP socket
// and an eventfd that the SmcrConn's wake callback writes, bounded by the
// engine's next deadline and a 100 ms cap (a lost wakeup costs 100 ms).
//
// Output lines the lab checks: "USMC mode=SMCR|TCP reason=0x..",
// "DATA ok|BAD ...", "USMC-LGR n=.. qpn=.. conns=..", "CLOSE ...",
// "PEER-CLOSE eof|error=..." (server: how the client closed).
// Exit 0: every connection used SMC-R and its data was intact; 2: TCP
// (fallback) with intact data; 1: anything else.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "dev/verbs.h"
#include "engine/connection.h"
#include "engine/params.h"
#include "negotiate/negotiate.h"
#include "runtime/executor.h"
#include "runtime/lgr_registry.h"
#include "runtime/smcr_progress.h"
#include "wire/clc.h"

namespace {

using namespace usmc;  // NOLINT: a test driver
using Clock = std::chrono::steady_clock;

engine::TimePoint Now() {
  return std::chrono::duration_cast<engine::TimePoint>(
      Clock::now().time_since_epoch());
}

uint8_t PatternByte(uint64_t i, uint8_t seed) {  // smc_lab's pattern
  return static_cast<uint8_t>(seed + i * 7 + (i >> 9));
}

struct Args {
  bool client = false;
  std::string addr;
  int port = 0;
  uint64_t bytes = 0;
  int conns = 1;
  int idle_s = 0;
  bool abort = false;  // the last connection ends with an abort
  int hold_s = 0;      // keep the link groups this long before exiting
};

// One connection: the engine on a real TCP socket and the registry's
// SmcrConn, driven by this thread (like runtime/sim_pair.cc's SimPair, one
// side, with real I/O).
class Peer final : public runtime::TcpSide {
 public:
  Peer(int fd, runtime::LgrRegistry& reg, const engine::EngineParams& p,
       engine::Entropy& entropy)
      : fd_(fd), reg_(&reg), conn_(p, &entropy) {
    wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    smcr_ = reg.NewConn(p);
    const int wfd = wake_;
    smcr_->SetWake([wfd] {
      const uint64_t one = 1;
      (void)!::write(wfd, &one, sizeof one);
    });
    exec_.emplace(*smcr_, *this, runtime::ExecutorOptions{.smcr = smcr_.get()});
  }
  ~Peer() override {
    exec_.reset();
    smcr_.reset();
    if (wake_ >= 0) ::close(wake_);
    if (fd_ >= 0) ::close(fd_);
  }

  engine::Connection& conn() { return conn_; }
  // The peer's TCP end came before its close CDC (the race the engine's
  // kSmcrPeerCloseWait covers): reported with PEER-CLOSE.
  bool tcp_first() const { return tcp_first_; }
  runtime::Executor& exec() { return *exec_; }
  runtime::SmcrConn& smcr() { return *smcr_; }

  void Feed(const engine::Event& e) {
    const engine::Actions a = conn_.OnEvent(e, Now());
    std::vector<engine::Event> answers;
    exec_->Execute(a, answers);
    for (engine::Event& x : answers) answers_.push_back(std::move(x));
  }

  // Feeds what is pending without waiting; true if anything was fed.
  bool Step() {
    if (!answers_.empty()) {
      engine::Event e = answers_.front();
      answers_.pop_front();
      Feed(e);
      return true;
    }
    if (smcr_->HasEvents()) {
      for (engine::Event& e : smcr_->TakeEvents()) answers_.push_back(e);
      return true;
    }
    const std::optional<engine::TimePoint>& d = exec_->deadline();
    if (d && *d <= Now()) {
      exec_->TimerFired();
      Feed(engine::Timeout{});
      return true;
    }
    return false;
  }

  // Feeds everything pending, then sleeps at most `max_ms` for the TCP
  // socket (during the handshake and SMC-R: CLC bytes, the peer's FIN), the
  // link (the wake eventfd) or the engine's deadline, and feeds what came.
  void Pump(int max_ms) {
    for (int i = 0; i < 100000 && Step(); ++i) {
    }
    const engine::Mode m = conn_.mode();
    const bool watch_tcp =
        fd_ >= 0 && !tcp_eof_ && !tcp_closed_ &&
        (m == engine::Mode::kHandshake || m == engine::Mode::kSmc);
    int timeout = std::min(max_ms, 100);
    if (const auto& d = exec_->deadline()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(*d - Now());
      timeout = std::clamp<int>(static_cast<int>(left.count()) + 1, 0, timeout);
    }
    pollfd p[2] = {{wake_, POLLIN, 0}, {watch_tcp ? fd_ : -1, POLLIN, 0}};
    ::poll(p, 2, timeout);
    if (p[0].revents & POLLIN) {
      uint64_t v;
      (void)!::read(wake_, &v, sizeof v);
    }
    if (watch_tcp && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        const auto* b = reinterpret_cast<const std::byte*>(buf);
        rx_.insert(rx_.end(), b, b + n);
        Feed(engine::TcpBytes{rx_});
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        tcp_eof_ = true;
        // As SmcSocket::OnSmcrTcpEnded: take what the link brought, then
        // TcpEof, which over SMC-R only starts the engine's bounded wait
        // for the peer's close CDC (engine::kSmcrPeerCloseWait; its
        // Timeout comes from the executor's deadline or the registry).
        (void)reg_->Progress();
        for (int i = 0; i < 100000 && Step(); ++i) {
        }
        tcp_first_ = conn_.mode() == engine::Mode::kSmc && !conn_.PeerClosed();
        Feed(engine::TcpEof{});
      }
    }
    for (int i = 0; i < 100000 && Step(); ++i) {
    }
  }

  // Runs the handshake to its decision, bounded.
  void Handshake() {
    Feed(engine::Start{});
    const auto end = Clock::now() + std::chrono::seconds(20);
    while (conn_.mode() == engine::Mode::kHandshake && Clock::now() < end) {
      Pump(100);
    }
    if (conn_.mode() == engine::Mode::kSmc) ring_space_ = conn_.SendSpace();
  }

  // Until the peer has consumed everything sent (its cursor updates give
  // back the whole ring), bounded: an abort then loses no byte the test
  // counts on.
  void WaitPeerConsumed() {
    const auto end = Clock::now() + std::chrono::seconds(10);
    while (conn_.mode() == engine::Mode::kSmc &&
           conn_.SendSpace() < ring_space_ && Clock::now() < end) {
      Pump(50);
    }
  }

  bool Send(const uint8_t* data, size_t len) {
    const auto end = Clock::now() + std::chrono::seconds(60);
    for (size_t off = 0; off < len;) {
      if (conn_.mode() == engine::Mode::kTcp) {
        const ssize_t w = ::send(fd_, data + off, len - off, MSG_NOSIGNAL);
        if (w < 0) return Fail("send (TCP)");
        off += size_t(w);
        continue;
      }
      if (conn_.SendError() != 0) {
        errno = conn_.SendError();
        return Fail("send (SMC-R)");
      }
      const engine::CopyPlan plan = conn_.PlanSend(len - off);
      if (plan.total == 0) {
        if (Clock::now() > end) return Note("send: no room for 60 s");
        Pump(100);
        continue;
      }
      if (!exec_->CopyToPeer(plan,
                             reinterpret_cast<const std::byte*>(data) + off)) {
        return Note("send: copy plan outside the sndbuf");
      }
      Feed(engine::AppSent{plan.total, plan.total < len - off, false});
      off += plan.total;
    }
    return true;
  }

  // Reads exactly len bytes (false on EOF/error/timeout).
  bool Recv(uint8_t* out, size_t len) {
    const auto end = Clock::now() + std::chrono::seconds(60);
    size_t off = 0;
    if (conn_.mode() == engine::Mode::kTcp && !rx_.empty()) {
      // Bytes read with the CLC messages that belong to the app.
      const size_t n = std::min(len, rx_.size());
      std::memcpy(out, rx_.data(), n);
      rx_.erase(rx_.begin(), rx_.begin() + std::ptrdiff_t(n));
      off = n;
    }
    while (off < len) {
      if (conn_.mode() == engine::Mode::kTcp) {
        const ssize_t r = ::recv(fd_, out + off, len - off, 0);
        if (r <= 0) return r == 0 ? Note("recv: EOF (TCP)") : Fail("recv");
        off += size_t(r);
        continue;
      }
      const engine::RecvStatus st = conn_.RecvState();
      if (st.readable > 0) {
        const engine::CopyPlan plan = conn_.PlanRecv(len - off);
        if (!exec_->CopyFromOwn(plan, reinterpret_cast<std::byte*>(out) + off))
          return Note("recv: copy plan outside the RMB");
        Feed(engine::AppConsumed{plan.total});
        off += plan.total;
        continue;
      }
      if (st.error != 0) {
        errno = st.error;
        return Fail("recv (SMC-R)");
      }
      if (st.eof) {
        errno = 0;  // not the EAGAIN of the last poll's recv
        return Note("recv: EOF (SMC-R)");
      }
      if (Clock::now() > end) return Note("recv: nothing for 60 s");
      Pump(100);
    }
    return true;
  }

  // Orderly close (or abort); waits, bounded, until the engine closed TCP.
  void Close(bool abort) {
    if (conn_.mode() == engine::Mode::kTcp) {
      if (abort) {
        linger l{1, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      }
      ::close(fd_);
      fd_ = -1;
      std::printf("CLOSE tcp %s\n", abort ? "abort" : "orderly");
      return;
    }
    Feed(abort ? engine::Event(engine::AppAbort{})
               : engine::Event(engine::AppClose{}));
    const auto end = Clock::now() + std::chrono::seconds(10);
    while (!tcp_closed_ && Clock::now() < end) Pump(100);
    std::printf("CLOSE smcr %s %s state=%d\n", abort ? "abort" : "orderly",
                tcp_closed_ ? "done" : "TIMEOUT",
                static_cast<int>(conn_.close_state()));
  }

  static bool Fail(const char* what) {
    std::printf("smcr_peer: %s: %s\n", what, std::strerror(errno));
    return false;
  }
  static bool Note(const char* what) {
    std::printf("smcr_peer: %s\n", what);
    return false;
  }

 private:
  // runtime::TcpSide
  void SendClc(std::span<const std::byte> bytes) override {
    // CLC messages are small; the TCP send buffer takes them at once.
    size_t off = 0;
    for (int i = 0; off < bytes.size() && i < 1000; ++i) {
      const ssize_t w =
          ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (w > 0) {
        off += size_t(w);
      } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        Fail("send CLC");
        return;
      }
    }
  }
  void ConsumeClc(size_t len) override {
    rx_.erase(rx_.begin(),
              rx_.begin() + std::ptrdiff_t(std::min(len, rx_.size())));
  }
  void ResetTcp() override {
    if (fd_ < 0) return;
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd_);
    fd_ = -1;
    tcp_closed_ = true;
  }
  void CloseTcp() override {
    if (fd_ < 0) return;
    ::close(fd_);
    fd_ = -1;
    tcp_closed_ = true;
  }

  int fd_;
  runtime::LgrRegistry* reg_;
  int wake_ = -1;
  engine::Connection conn_;
  std::unique_ptr<runtime::SmcrConn> smcr_;
  std::optional<runtime::Executor> exec_;
  std::deque<engine::Event> answers_;
  std::vector<std::byte> rx_;
  bool tcp_eof_ = false;
  bool tcp_first_ = false;
  bool tcp_closed_ = false;
  uint32_t ring_space_ = 0;  // SendSpace() of the empty ring
};

class RandomEntropy final : public engine::Entropy {
 public:
  uint64_t Random64() override { return rng_(); }

 private:
  std::mt19937_64 rng_{std::random_device{}()};
};

wire::Gid MappedGid(uint32_t ipv4_host_order) {
  wire::Gid g{};
  g[10] = 0xff;
  g[11] = 0xff;
  g[12] = uint8_t(ipv4_host_order >> 24);
  g[13] = uint8_t(ipv4_host_order >> 16);
  g[14] = uint8_t(ipv4_host_order >> 8);
  g[15] = uint8_t(ipv4_host_order);
  return g;
}

std::string Hex(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", v);
  return b;
}

// One connection's exchange; returns 0 SMC-R ok, 2 TCP ok, 1 failure.
int RunConn(int fd, bool client, const Args& args, bool abort,
            runtime::LgrRegistry& reg, engine::Entropy& entropy,
            uint32_t peer_ip) {
  const negotiate::Outcome o = negotiate::QueryOutcome(fd);
  engine::EngineParams base;
  base.role = client ? engine::Role::kClient : engine::Role::kServer;
  base.smcd_enabled = false;
  base.no_smcd_reason = wire::kReasonNoSmcdDev;
  base.eid = wire::MakeClcEid("USMC-LAB");
  base.hostname = wire::MakeClcHostname(client ? "usmc-client" : "usmc-server");
  base.smcr.rmb_size = 64 * 1024;
  engine::EngineParams p = reg.ConnParams(base, MappedGid(peer_ip));
  Peer peer(fd, reg, p, entropy);
  std::string mode = "TCP";
  uint32_t reason = 0, peer_reason = 0;
  if (o.both_offered()) {
    peer.Handshake();
    if (peer.conn().mode() == engine::Mode::kSmc) {
      mode = "SMCR";
    } else if (const auto& f = peer.exec().fallback()) {
      reason = f->local_reason;
      peer_reason = f->peer_reason;
    }
  } else {
    reason = o.reason;
    // Without the option the engine never speaks: TCP from the start.
    peer.Feed(engine::Start{});
  }
  std::printf("USMC mode=%s reason=%s peer_reason=%s option=%s engine=%d\n",
              mode.c_str(), Hex(reason).c_str(), Hex(peer_reason).c_str(),
              std::string(negotiate::ToString(o.detail)).c_str(),
              static_cast<int>(peer.conn().mode()));
  if (peer.conn().mode() != engine::Mode::kSmc &&
      peer.conn().mode() != engine::Mode::kTcp) {
    return 1;
  }
  std::vector<uint8_t> buf(args.bytes);
  bool ok = true;
  auto send_pattern = [&](uint8_t seed) {
    for (uint64_t i = 0; i < args.bytes; ++i) buf[i] = PatternByte(i, seed);
    return peer.Send(buf.data(), buf.size());
  };
  auto recv_pattern = [&](uint8_t seed) {
    std::fill(buf.begin(), buf.end(), 0);
    if (!peer.Recv(buf.data(), buf.size())) return false;
    for (uint64_t i = 0; i < args.bytes; ++i) {
      if (buf[i] != PatternByte(i, seed)) {
        std::printf("smcr_peer: byte %llu differs\n",
                    static_cast<unsigned long long>(i));
        return false;
      }
    }
    return true;
  };
  if (client && args.idle_s > 0) {
    // Idle with the link up: the kernel's TEST_LINK must be answered by
    // the progress thread while this thread sleeps.
    std::printf("IDLE %d s\n", args.idle_s);
    std::this_thread::sleep_for(std::chrono::seconds(args.idle_s));
  }
  ok = client ? send_pattern(1) && recv_pattern(2)
              : recv_pattern(1) && send_pattern(2);
  std::printf("DATA %s %llu bytes each way\n", ok ? "ok" : "BAD",
              static_cast<unsigned long long>(args.bytes));
  if (!client && !abort) {
    // Server: the client closes first (smc_lab closes after its diag).
    // An orderly close is EOF, an abort an error (ECONNRESET).
    std::vector<uint8_t> one(1);
    errno = 0;
    const bool more = peer.Recv(one.data(), 1);
    const int err = errno;
    const char* first = peer.tcp_first() ? " tcp_first=1" : "";
    if (more) {
      std::printf("PEER-CLOSE byte\n");
    } else if (peer.conn().mode() == engine::Mode::kSmc &&
               peer.conn().RecvState().error != 0) {
      std::printf("PEER-CLOSE error=%s%s\n",
                  strerrorname_np(peer.conn().RecvState().error), first);
    } else {
      std::printf("PEER-CLOSE eof%s%s%s\n", err ? " errno=" : "",
                  err ? strerrorname_np(err) : "", first);
    }
  }
  if (abort) peer.WaitPeerConsumed();
  peer.Close(abort);
  for (int i = 0; i < 20; ++i) peer.Pump(10);
  if (!ok) return 1;
  return mode == "SMCR" ? 0 : 2;
}

void PrintGroups(runtime::LgrRegistry& reg) {
  const std::vector<runtime::LgrInfo> g = reg.Groups();
  std::printf("USMC-LGR n=%zu", g.size());
  for (const runtime::LgrInfo& i : g) {
    std::printf(
        " [id=%u state=%d qpn=%u peer_qpn=%u conns=%zu test_link_rx=%llu]",
        i.id, static_cast<int>(i.state), i.qpn, i.peer_qpn, i.conns,
        static_cast<unsigned long long>(i.counters.test_link_received));
  }
  std::printf("\n");
}

int Main(const Args& args) {
  sockaddr_in self{};
  uint32_t peer_ip = 0;
  int ls = -1;
  if (args.client) {
    in_addr a{};
    if (::inet_pton(AF_INET, args.addr.c_str(), &a) != 1) return 1;
    peer_ip = ntohl(a.s_addr);
  } else {
    ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    negotiate::OptIn(ls);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(args.port));
    if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
        ::listen(ls, 16) < 0) {
      return Peer::Fail("bind/listen"), 1;
    }
    std::printf("LISTEN %d\n", args.port);
  }
  // The device: opened for the address TCP uses towards the peer. Until a
  // connection exists, the client asks a UDP socket for its source.
  uint32_t local_ip = 0;
  {
    const int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in d{};
    d.sin_family = AF_INET;
    d.sin_port = htons(9);
    d.sin_addr.s_addr = htonl(peer_ip != 0 ? peer_ip : 0x0a000001);
    socklen_t sl = sizeof self;
    if (args.client &&
        ::connect(u, reinterpret_cast<sockaddr*>(&d), sizeof d) == 0 &&
        ::getsockname(u, reinterpret_cast<sockaddr*>(&self), &sl) == 0) {
      local_ip = ntohl(self.sin_addr.s_addr);
    }
    ::close(u);
  }
  if (const char* e = std::getenv("USMC_VERBS_IPV4")) {
    in_addr a{};
    if (::inet_pton(AF_INET, e, &a) == 1) local_ip = ntohl(a.s_addr);
  }
  auto ctx = dev::rdma::VerbsContext::Open(local_ip);
  if (!ctx.ok()) {
    std::printf("smcr_peer: no RDMA device: %s\n",
                ctx.status().ToString().c_str());
    return 1;
  }
  RandomEntropy entropy;
  runtime::LgrRegistryOptions ro;
  ro.clock = Now;
  auto reg = std::make_unique<runtime::LgrRegistry>(**ctx, entropy, ro);
  auto progress = std::make_unique<runtime::SmcrProgress>(
      *reg, runtime::SmcrProgressOptions{});
  int worst = 0;
  for (int c = 0; c < args.conns; ++c) {
    int fd = -1;
    if (args.client) {
      fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      negotiate::OptIn(fd);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(uint16_t(args.port));
      a.sin_addr.s_addr = htonl(peer_ip);
      int tries = 0;
      while (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
        // The server may not listen yet: a fresh socket per try.
        ::close(fd);
        if (++tries > 100) return Peer::Fail("connect"), 1;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        negotiate::OptIn(fd);
      }
    } else {
      sockaddr_in pa{};
      socklen_t pl = sizeof pa;
      fd = ::accept4(ls, reinterpret_cast<sockaddr*>(&pa), &pl, SOCK_CLOEXEC);
      if (fd < 0) return Peer::Fail("accept"), 1;
      peer_ip = ntohl(pa.sin_addr.s_addr);
    }
    std::printf("CONN %d\n", c + 1);
    const int rc =
        RunConn(fd, args.client, args, args.abort && c == args.conns - 1, *reg,
                entropy, peer_ip);
    progress->Kick();
    PrintGroups(*reg);
    if (rc == 1 || (rc == 2 && worst == 0)) worst = rc;
    if (rc == 1) break;
  }
  if (ls >= 0) ::close(ls);
  if (args.hold_s > 0) {
    std::printf("HOLD %d s\n", args.hold_s);
    std::this_thread::sleep_for(std::chrono::seconds(args.hold_s));
    PrintGroups(*reg);
  }
  // Process exit: every group ends with DELETE_LINK (what the interposer
  // will do at exit), then the progress thread stops.
  reg->TerminateAll();
  progress->Kick();
  // The groups go once the peer's DELETE_LINK came back (the registry keeps
  // each QP until then, llc_timeout at most): bounded.
  for (int i = 0; i < 300 && !reg->Groups().empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  progress.reset();
  reg->Progress();
  PrintGroups(*reg);
  std::printf("USMC-EXIT rc=%d\n", worst);
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  Args a;
  int i = 1;
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "client" && argc >= 5) {
    a.client = true;
    a.addr = argv[2];
    a.port = std::atoi(argv[3]);
    a.bytes = std::strtoull(argv[4], nullptr, 0);
    i = 5;
  } else if (cmd == "server" && argc >= 4) {
    a.port = std::atoi(argv[2]);
    a.bytes = std::strtoull(argv[3], nullptr, 0);
    i = 4;
  } else {
    std::fprintf(stderr,
                 "usage: smcr_peer client ADDR PORT BYTES [--conns N] "
                 "[--idle S] [--abort] | server PORT BYTES [--conns N] "
                 "[--abort]\n");
    return 1;
  }
  for (; i < argc; ++i) {
    const std::string o = argv[i];
    if (o == "--conns" && i + 1 < argc) {
      a.conns = std::atoi(argv[++i]);
    } else if (o == "--idle" && i + 1 < argc) {
      a.idle_s = std::atoi(argv[++i]);
    } else if (o == "--hold" && i + 1 < argc) {
      a.hold_s = std::atoi(argv[++i]);
    } else if (o == "--abort") {
      a.abort = true;
    } else {
      std::fprintf(stderr, "smcr_peer: unknown option %s\n", o.c_str());
      return 1;
    }
  }
  return Main(a);
}
