// tests/lab/smcr_peer.cc: usmc's SMC-R runtime on a real RDMA device,
// without the interposer, in a lab guest (tests/lab/README.md). It meets
// the Linux kernel's SMC-R (smc_lab) across the two guests:
//
//   smcr_peer client ADDR PORT BYTES [--conns N] [--idle S] [--abort]
//                                    [--hold S] [--bench PINGS --kind K]
//   smcr_peer server PORT BYTES [--conns N] [--abort] [--hold S]
//                               [--v6 --local ADDR] [--bench PINGS --kind K]
//
// ADDR may be IPv6 (SMC-Rv2 over the IPv6 GID equal to the local address,
// usmc ↔ usmc only); an IPv6 server listens with --v6 and names its own
// address with --local (the device is opened before the first accept).
// --bench runs tests/lab/bench_proto.h's exchange instead of the pattern.
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
#include "tests/lab/bench_proto.h"
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
  bool abort = false;   // the last connection ends with an abort
  int hold_s = 0;       // keep the link groups this long before exiting
  bool v6 = false;      // server: listen on IPv6 (client: ADDR says)
  std::string local;    // the local address the device is opened for
  int bench_pings = 0;  // > 0: the benchmark exchange (bench_proto.h)
  std::string kind = "usmc";
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

// An address as 16 bytes, the form of a RoCEv2 GID: IPv4 as ::ffff:a.b.c.d.
using Addr16 = wire::Gid;

bool ParseAddr(const std::string& text, Addr16* out) {
  *out = Addr16{};
  if (::inet_pton(AF_INET6, text.c_str(), out->data()) == 1) return true;
  in_addr a{};
  if (::inet_pton(AF_INET, text.c_str(), &a) != 1) return false;
  (*out)[10] = 0xff;
  (*out)[11] = 0xff;
  std::memcpy(out->data() + 12, &a, 4);
  return true;
}

bool IsMapped(const Addr16& a) {
  return std::all_of(a.begin(), a.begin() + 10, [](uint8_t b) { return !b; }) &&
         a[10] == 0xff && a[11] == 0xff;
}

// The socket address for `a`: sockaddr_in for IPv4-mapped, else _in6.
socklen_t SockAddr(const Addr16& a, int port, sockaddr_storage* ss) {
  std::memset(ss, 0, sizeof *ss);
  if (IsMapped(a)) {
    auto* s4 = reinterpret_cast<sockaddr_in*>(ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(uint16_t(port));
    std::memcpy(&s4->sin_addr, a.data() + 12, 4);
    return sizeof *s4;
  }
  auto* s6 = reinterpret_cast<sockaddr_in6*>(ss);
  s6->sin6_family = AF_INET6;
  s6->sin6_port = htons(uint16_t(port));
  std::memcpy(&s6->sin6_addr, a.data(), 16);
  return sizeof *s6;
}

Addr16 FromSockAddr(const sockaddr_storage& ss) {
  Addr16 a{};
  if (ss.ss_family == AF_INET) {
    a[10] = a[11] = 0xff;
    std::memcpy(a.data() + 12,
                &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, 4);
  } else if (ss.ss_family == AF_INET6) {
    std::memcpy(a.data(),
                &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, 16);
  }
  return a;
}

// A GID in RFC 5952 text (IPv4-mapped as ::ffff:a.b.c.d).
std::string GidText(const wire::Gid& g) {
  char b[INET6_ADDRSTRLEN] = "?";
  ::inet_ntop(AF_INET6, g.data(), b, sizeof b);
  return b;
}

std::string AddrText(const Addr16& a) {
  char b[INET6_ADDRSTRLEN] = "?";
  if (IsMapped(a)) {
    ::inet_ntop(AF_INET, a.data() + 12, b, sizeof b);
  } else {
    ::inet_ntop(AF_INET6, a.data(), b, sizeof b);
  }
  return b;
}

std::string Hex(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", v);
  return b;
}

// One connection's exchange; returns 0 SMC-R ok, 2 TCP ok, 1 failure.
int RunConn(int fd, bool client, const Args& args, bool abort,
            runtime::LgrRegistry& reg, engine::Entropy& entropy,
            const Addr16& peer_addr) {
  const negotiate::Outcome o = negotiate::QueryOutcome(fd);
  engine::EngineParams base;
  base.role = client ? engine::Role::kClient : engine::Role::kServer;
  base.smcd_enabled = false;
  base.no_smcd_reason = wire::kReasonNoSmcdDev;
  base.eid = wire::MakeClcEid("USMC-LAB");
  base.hostname = wire::MakeClcHostname(client ? "usmc-client" : "usmc-server");
  base.smcr.rmb_size = 64 * 1024;
  // The peer's GID is its address (IPv4-mapped or IPv6): what the client
  // proposes to, for link-group reuse.
  engine::EngineParams p = reg.ConnParams(base, peer_addr);
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
  if (mode == "SMCR") {
    // The link this connection runs over, while it surely exists (the
    // peer may end the group right after the data).
    for (const runtime::LgrInfo& g : reg.Groups()) {
      if (std::optional<uint32_t>(g.id) != peer.smcr().lgr_id()) continue;
      std::printf("USMC-LINK lgr=%u local_gid=%s peer_gid=%s\n", g.id,
                  GidText(p.smcr.gid).c_str(), GidText(g.peer_gid).c_str());
    }
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
  if (args.bench_pings > 0) {
    ok = lab::RunBench(peer, client, args.kind, args.bench_pings, args.bytes);
    std::printf("BENCH-DATA %s kind=%s\n", ok ? "ok" : "BAD",
                args.kind.c_str());
  } else {
    ok = client ? send_pattern(1) && recv_pattern(2)
                : recv_pattern(1) && send_pattern(2);
    std::printf("DATA %s %llu bytes each way\n", ok ? "ok" : "BAD",
                static_cast<unsigned long long>(args.bytes));
  }
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
        " [id=%u state=%d qpn=%u peer_qpn=%u conns=%zu peer_gid=%s "
        "test_link_rx=%llu]",
        i.id, static_cast<int>(i.state), i.qpn, i.peer_qpn, i.conns,
        GidText(i.peer_gid).c_str(),
        static_cast<unsigned long long>(i.counters.test_link_received));
  }
  std::printf("\n");
}

int Main(const Args& args) {
  Addr16 peer_addr{};
  int ls = -1;
  if (args.client) {
    if (!ParseAddr(args.addr, &peer_addr)) return Peer::Note("bad ADDR"), 1;
  } else {
    const int family = args.v6 ? AF_INET6 : AF_INET;
    ls = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    negotiate::OptIn(ls);
    // The wildcard address: :: for IPv6, else 0.0.0.0 (as ::ffff:0.0.0.0).
    Addr16 any{};
    if (!args.v6) any[10] = any[11] = 0xff;
    sockaddr_storage a{};
    const socklen_t al = SockAddr(any, args.port, &a);
    if (::bind(ls, reinterpret_cast<sockaddr*>(&a), al) < 0 ||
        ::listen(ls, 16) < 0) {
      return Peer::Fail("bind/listen"), 1;
    }
    std::printf("LISTEN %d%s\n", args.port, args.v6 ? " ipv6" : "");
  }
  // The device: opened for the address TCP uses towards the peer. Until a
  // connection exists, the client asks a UDP socket for its source; the
  // server takes --local (zero: the first IPv4-mapped GID).
  Addr16 local{};
  if (args.client) {
    const int u = ::socket(IsMapped(peer_addr) ? AF_INET : AF_INET6,
                           SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_storage d{}, self{};
    const socklen_t dl = SockAddr(peer_addr, 9, &d);
    socklen_t sl = sizeof self;
    if (::connect(u, reinterpret_cast<sockaddr*>(&d), dl) == 0 &&
        ::getsockname(u, reinterpret_cast<sockaddr*>(&self), &sl) == 0) {
      local = FromSockAddr(self);
    }
    ::close(u);
  }
  if (!args.local.empty() && !ParseAddr(args.local, &local))
    return Peer::Note("bad --local"), 1;
  if (const char* e = std::getenv("USMC_VERBS_IPV4")) ParseAddr(e, &local);
  auto ctx = dev::rdma::VerbsContext::Open(local);
  if (!ctx.ok()) {
    std::printf("smcr_peer: no RDMA device: %s\n",
                ctx.status().ToString().c_str());
    return 1;
  }
  std::printf("USMC-DEVICE %s gid=%s index=%u for %s\n",
              (*ctx)->attr().name.c_str(), GidText((*ctx)->attr().gid).c_str(),
              unsigned((*ctx)->attr().gid_index), AddrText(local).c_str());
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
      const int family = IsMapped(peer_addr) ? AF_INET : AF_INET6;
      fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      negotiate::OptIn(fd);
      sockaddr_storage a{};
      const socklen_t al = SockAddr(peer_addr, args.port, &a);
      int tries = 0;
      while (::connect(fd, reinterpret_cast<sockaddr*>(&a), al) < 0) {
        // The server may not listen yet: a fresh socket per try.
        ::close(fd);
        if (++tries > 100) return Peer::Fail("connect"), 1;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        negotiate::OptIn(fd);
      }
    } else {
      sockaddr_storage pa{};
      socklen_t pl = sizeof pa;
      fd = ::accept4(ls, reinterpret_cast<sockaddr*>(&pa), &pl, SOCK_CLOEXEC);
      if (fd < 0) return Peer::Fail("accept"), 1;
      peer_addr = FromSockAddr(pa);
    }
    std::printf("CONN %d peer=%s\n", c + 1, AddrText(peer_addr).c_str());
    const int rc =
        RunConn(fd, args.client, args, args.abort && c == args.conns - 1, *reg,
                entropy, peer_addr);
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
                 "[--idle S] [--abort] [--bench PINGS --kind K] | server "
                 "PORT BYTES [--conns N] [--abort] [--v6 --local ADDR] "
                 "[--bench PINGS --kind K]\n");
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
    } else if (o == "--v6") {
      a.v6 = true;
    } else if (o == "--local" && i + 1 < argc) {
      a.local = argv[++i];
    } else if (o == "--bench" && i + 1 < argc) {
      a.bench_pings = std::atoi(argv[++i]);
    } else if (o == "--kind" && i + 1 < argc) {
      a.kind = argv[++i];
    } else {
      std::fprintf(stderr, "smcr_peer: unknown option %s\n", o.c_str());
      return 1;
    }
  }
  return Main(a);
}
