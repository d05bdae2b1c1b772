// tests/negotiate_handshake_test.cc: the SMC TCP option on real handshakes
// (root only). Each test loads the program into a private cgroup that this
// process joins, so nothing else on the host is affected; tshark on lo checks
// the option bytes on the wire.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "negotiate/negotiate_abi.h"
#include "tests/negotiate_harness.h"
#include "wire/reason.h"

namespace usmc::negotiate_test {
namespace {

using negotiate::Answer;
using negotiate::Detail;

class Handshake : public ::testing::Test {
 protected:
  void SetUp() override {
    USMC_REQUIRE_ROOT();
    cg_ = std::make_unique<NegotiateCgroup>();
    ASSERT_TRUE(cg_->ok()) << cg_->error();
  }
  void TearDown() override { cg_.reset(); }

  uint64_t Delta(int counter) const {
    return cg_->Counters()[counter] - before_[counter];
  }
  void Snapshot() { before_ = cg_->Counters(); }

  std::unique_ptr<NegotiateCgroup> cg_;
  std::array<uint64_t, negotiate::kCounterCount> before_{};
};

struct MatrixCase {
  Family family;
  bool client_in;
  bool server_in;
};

void PrintTo(const MatrixCase& c, std::ostream* os) {
  *os << ToString(c.family) << " client=" << c.client_in
      << " server=" << c.server_in;
}

class HandshakeMatrix : public Handshake,
                        public ::testing::WithParamInterface<MatrixCase> {};

TEST_P(HandshakeMatrix, OptionOnWireAndVerdictOnBothEnds) {
  const MatrixCase c = GetParam();
  Listener l = Listener::Open(c.family, c.server_in);
  ASSERT_GE(l.fd, 0) << "listen failed";
  EXPECT_EQ(l.opted_in, c.server_in);
  std::string err;
  std::unique_ptr<LoCapture> cap = LoCapture::Start(l.port, &err);
  ASSERT_TRUE(cap) << err;
  Snapshot();

  PairResult r = ConnectPair(l, c.client_in);
  std::vector<Segment> segs = cap->Stop();
  l.Close();
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.client_opted_in, c.client_in);

  const bool both = c.client_in && c.server_in;
  EXPECT_EQ(r.client.answer, both ? Answer::kBothOffered : Answer::kNotBoth);
  EXPECT_EQ(r.server.answer, both ? Answer::kBothOffered : Answer::kNotBoth);
  Detail want_client = both          ? Detail::kBothOffered
                       : c.client_in ? Detail::kPeerDidNotOffer
                                     : Detail::kNotOptedIn;
  Detail want_server = both          ? Detail::kBothOffered
                       : c.server_in ? Detail::kPeerDidNotOffer
                                     : Detail::kNotOptedIn;
  EXPECT_EQ(r.client.detail, want_client) << r.client;
  EXPECT_EQ(r.server.detail, want_server) << r.server;
  EXPECT_EQ(r.client.reason, both ? 0u : wire::kReasonPeerNoSmc);
  EXPECT_EQ(r.server.reason, both ? 0u : wire::kReasonPeerNoSmc);

  // The wire: option on the SYN iff the client opted in; on the SYN-ACK iff
  // the SYN carried it and the server opted in. Never after the handshake.
  std::optional<Segment> syn = FindSyn(segs, l.port);
  std::optional<Segment> synack = FindSynAck(segs, l.port);
  ASSERT_TRUE(syn && synack) << segs.size() << " segments captured";
  EXPECT_EQ(syn->HasSmcOption(), c.client_in) << syn->options_hex;
  EXPECT_EQ(syn->exid == "0xe2d4", c.client_in) << syn->exid;
  EXPECT_EQ(synack->HasSmcOption(), both) << synack->options_hex;
  EXPECT_EQ(synack->exid == "0xe2d4", both) << synack->exid;
  for (const Segment& s : segs) {
    if (!s.syn) {
      EXPECT_FALSE(s.HasSmcOption()) << s.options_hex;
    }
  }

  EXPECT_EQ(Delta(USMC_CTR_OPTIONS_WRITTEN), (c.client_in ? 1u : 0u) + both);
  EXPECT_EQ(Delta(USMC_CTR_OFFERS_SEEN), both ? 1u : 0u);
  EXPECT_EQ(Delta(USMC_CTR_ECHOES), both ? 1u : 0u);
  EXPECT_EQ(Delta(USMC_CTR_SMC_ACTIVE), both ? 1u : 0u);
  EXPECT_EQ(Delta(USMC_CTR_SMC_PASSIVE), both ? 1u : 0u);
  EXPECT_EQ(Delta(USMC_CTR_RESERVE_FAILURES), 0u);
}

std::vector<MatrixCase> AllCases() {
  std::vector<MatrixCase> cases;
  for (Family f : {Family::kV4, Family::kV6, Family::kV4Mapped})
    for (bool client : {true, false})
      for (bool server : {true, false}) cases.push_back({f, client, server});
  return cases;
}

std::string CaseName(const ::testing::TestParamInfo<MatrixCase>& info) {
  const MatrixCase& c = info.param;
  std::string who = c.client_in && c.server_in ? "Both"
                    : c.client_in              ? "ClientOnly"
                    : c.server_in              ? "ServerOnly"
                                               : "Neither";
  return std::string(ToString(c.family)) + "_" + who;
}

INSTANTIATE_TEST_SUITE_P(AllFamilies, HandshakeMatrix,
                         ::testing::ValuesIn(AllCases()), CaseName);

TEST_F(Handshake, OptInAfterConnectIsRefusedAndTheSocketStillWorks) {
  Listener l = Listener::Open(Family::kV4, true);
  ASSERT_GE(l.fd, 0);
  int c = ClientSocket(Family::kV4, false, nullptr);
  ASSERT_TRUE(ConnectLoopback(c, Family::kV4, l.port));
  int one = 1;
  EXPECT_NE(setsockopt(c, USMC_SOL_NEGOTIATE, USMC_SO_OPTIN, &one, sizeof(one)),
            0);
  EXPECT_EQ(errno, EISCONN);
  errno = 0;
  EXPECT_FALSE(negotiate::OptIn(c));
  EXPECT_EQ(errno, 0);
  int a = accept(l.fd, nullptr, nullptr);
  ASSERT_GE(a, 0);
  EXPECT_EQ(write(c, "x", 1), 1);
  char got = 0;
  EXPECT_EQ(read(a, &got, 1), 1);
  EXPECT_EQ(negotiate::QueryOutcome(c).detail, Detail::kNotOptedIn);
  EXPECT_EQ(negotiate::QueryOutcome(a).detail, Detail::kPeerDidNotOffer);
  close(a);
  close(c);
  l.Close();
}

TEST_F(Handshake, ListenerReadsPendingAndOptOutWithdrawsTheOffer) {
  Listener l = Listener::Open(Family::kV4, true);
  ASSERT_GE(l.fd, 0);
  negotiate::Outcome listener = negotiate::QueryOutcome(l.fd);
  EXPECT_EQ(listener.answer, Answer::kNotBoth);
  EXPECT_EQ(listener.detail, Detail::kPending);

  int c = ClientSocket(Family::kV4, true, nullptr);
  int zero = 0;
  ASSERT_EQ(
      setsockopt(c, USMC_SOL_NEGOTIATE, USMC_SO_OPTIN, &zero, sizeof(zero)), 0);
  EXPECT_EQ(negotiate::QueryOutcome(c).detail, Detail::kNotOptedIn);
  Snapshot();
  ASSERT_TRUE(ConnectLoopback(c, Family::kV4, l.port));
  int a = accept(l.fd, nullptr, nullptr);
  ASSERT_GE(a, 0);
  EXPECT_EQ(negotiate::QueryOutcome(c).detail, Detail::kNotOptedIn);
  EXPECT_EQ(negotiate::QueryOutcome(a).detail, Detail::kPeerDidNotOffer);
  EXPECT_EQ(Delta(USMC_CTR_OPTIONS_WRITTEN), 0u);
  close(a);
  close(c);
  l.Close();
}

TEST_F(Handshake, OtherSocketOptionsPassThroughUntouched) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  int v = 12345;
  ASSERT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof(v)), 0);
  int got = 0;
  socklen_t len = sizeof(got);
  ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &got, &len), 0);
  EXPECT_EQ(got, 12345);
  // An unknown option at the private level is still "no such option".
  EXPECT_NE(getsockopt(fd, USMC_SOL_NEGOTIATE, 99, &got, &len), 0);
  close(fd);
}

// SYN queue overflow is simulated by always answering with SYN cookies
// (tcp_syncookies=2) inside a network namespace: no echo, both TCP.
TEST_F(Handshake, SynCookiesMeanTcpOnBothEnds) {
  NetNs ns({"net.ipv4.tcp_syncookies=2"});
  ASSERT_TRUE(ns.ok()) << ns.error();
  Snapshot();
  PairResult r;
  std::vector<Segment> segs;
  uint16_t port = 0;
  std::string err;
  ns.Run([&] {
    Listener l = Listener::Open(Family::kV4, true);
    if (l.fd < 0) return;
    port = l.port;
    std::unique_ptr<LoCapture> cap = LoCapture::Start(l.port, &err);
    if (!cap) return;
    r = ConnectPair(l, true);
    segs = cap->Stop();
    l.Close();
  });
  ASSERT_NE(port, 0) << ns.error();
  ASSERT_TRUE(err.empty()) << err;
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.client.answer, Answer::kNotBoth);
  EXPECT_EQ(r.client.detail, Detail::kPeerDidNotOffer);
  EXPECT_EQ(r.server.answer, Answer::kNotBoth);
  EXPECT_EQ(r.server.detail, Detail::kSynCookie);
  EXPECT_EQ(r.server.reason, wire::kReasonPeerNoSmc);
  std::optional<Segment> syn = FindSyn(segs, port);
  std::optional<Segment> synack = FindSynAck(segs, port);
  ASSERT_TRUE(syn && synack);
  EXPECT_TRUE(syn->HasSmcOption());
  EXPECT_FALSE(synack->HasSmcOption());
  EXPECT_EQ(Delta(USMC_CTR_OFFERS_SEEN), 1u);
  EXPECT_EQ(Delta(USMC_CTR_COOKIE_FALLBACKS), 1u);
  EXPECT_EQ(Delta(USMC_CTR_SMC_ACTIVE) + Delta(USMC_CTR_SMC_PASSIVE), 0u);
}

// TCP Fast Open: data in the SYN goes out before any CLC, so a TFO socket
// never negotiates SMC, whichever way TFO is switched on.
enum class TfoStyle { kConnectOption, kSendtoFlag };
void PrintTo(TfoStyle s, std::ostream* os) {
  *os << (s == TfoStyle::kConnectOption ? "TCP_FASTOPEN_CONNECT"
                                        : "MSG_FASTOPEN");
}

struct TfoRun {
  PairResult pair;
  bool syn_data_acked =
      false;  // the client's SYN carried data (TFO really used)
};

TfoRun TfoConnect(const Listener& l, TfoStyle style) {
  TfoRun run;
  PairResult& r = run.pair;
  int c = ClientSocket(Family::kV4, true, &r.client_opted_in);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(l.port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool sent = false;
  if (style == TfoStyle::kConnectOption) {
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one));
    sent = connect(c, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0 &&
           write(c, "hello", 5) == 5;
  } else {
    sent = sendto(c, "hello", 5, MSG_FASTOPEN,
                  reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 5;
  }
  int a = accept(l.fd, nullptr, nullptr);
  char got[5] = {};
  r.ok = sent && a >= 0 && read(a, got, 5) == 5 &&
         std::memcmp(got, "hello", 5) == 0;
  r.client = negotiate::QueryOutcome(c);
  if (a >= 0) r.server = negotiate::QueryOutcome(a);
  tcp_info info{};
  socklen_t len = sizeof(info);
  if (getsockopt(c, IPPROTO_TCP, TCP_INFO, &info, &len) == 0)
    run.syn_data_acked = (info.tcpi_options & TCPI_OPT_SYN_DATA) != 0;
  if (a >= 0) close(a);
  close(c);
  return run;
}

class HandshakeTfo : public Handshake,
                     public ::testing::WithParamInterface<TfoStyle> {};

TEST_P(HandshakeTfo, FastOpenSocketsAreNeverSmc) {
  NetNs ns({"net.ipv4.tcp_fastopen=3"});
  ASSERT_TRUE(ns.ok()) << ns.error();
  Snapshot();
  TfoRun first, second;
  std::vector<Segment> segs;
  uint16_t port = 0;
  std::string err;
  ns.Run([&] {
    Listener l = Listener::Open(Family::kV4, true, /*tfo_queue=*/16);
    if (l.fd < 0) return;
    port = l.port;
    std::unique_ptr<LoCapture> cap = LoCapture::Start(l.port, &err);
    if (!cap) return;
    first = TfoConnect(l, GetParam());   // fetches the cookie
    second = TfoConnect(l, GetParam());  // data in the SYN
    segs = cap->Stop();
    l.Close();
  });
  ASSERT_NE(port, 0) << ns.error();
  ASSERT_TRUE(err.empty()) << err;
  for (const TfoRun* run : {&first, &second}) {
    ASSERT_TRUE(run->pair.ok);
    EXPECT_EQ(run->pair.client.answer, Answer::kNotBoth) << run->pair.client;
    EXPECT_EQ(run->pair.client.detail, Detail::kFastOpen) << run->pair.client;
    EXPECT_EQ(run->pair.client.reason, wire::kReasonOptUnsupp);
    EXPECT_EQ(run->pair.server.answer, Answer::kNotBoth) << run->pair.server;
    EXPECT_EQ(run->pair.server.detail, Detail::kFastOpen) << run->pair.server;
  }
  EXPECT_TRUE(second.syn_data_acked) << "TFO was not used: test is void";
  for (const Segment& s : segs) {
    EXPECT_FALSE(s.HasSmcOption()) << s.options_hex;
  }
  EXPECT_GE(Delta(USMC_CTR_TFO_SKIPPED), 2u);
  EXPECT_EQ(Delta(USMC_CTR_SMC_ACTIVE) + Delta(USMC_CTR_SMC_PASSIVE), 0u);
}

INSTANTIATE_TEST_SUITE_P(Styles, HandshakeTfo,
                         ::testing::Values(TfoStyle::kConnectOption,
                                           TfoStyle::kSendtoFlag),
                         [](const ::testing::TestParamInfo<TfoStyle>& i) {
                           return i.param == TfoStyle::kConnectOption
                                      ? std::string("TcpFastOpenConnect")
                                      : std::string("MsgFastOpen");
                         });

// A plain opted-in client against an opted-in TFO listener: still TCP.
TEST_F(Handshake, FastOpenListenerIsNeverSmc) {
  Listener l = Listener::Open(Family::kV4, true, /*tfo_queue=*/16);
  ASSERT_GE(l.fd, 0);
  PairResult r = ConnectPair(l, true);
  l.Close();
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.client.detail, Detail::kPeerDidNotOffer) << r.client;
  EXPECT_EQ(r.server.detail, Detail::kFastOpen) << r.server;
}

// A process outside the attached cgroup has no hooks: "unknown", plain TCP.
TEST_F(Handshake, ProcessOutsideTheCgroupGetsUnknownAndTcp) {
  // With `usmc setup` on the cgroup2 root every cgroup has a program; the
  // one it attached answers outside the test cgroup (not what this tests).
  if (uint32_t id = EffectiveUsmcSockOps(cg_->original()); id != 0)
    GTEST_SKIP() << "usmc_sockops (prog id " << id << ") runs for "
                 << cg_->original() << " (`usmc setup`): no cgroup is "
                 << "without the program";
  Listener l = Listener::Open(Family::kV4, true);
  ASSERT_GE(l.fd, 0);
  ASSERT_TRUE(l.opted_in);
  std::string err;
  std::unique_ptr<LoCapture> cap = LoCapture::Start(l.port, &err);
  ASSERT_TRUE(cap) << err;
  int report[2];
  ASSERT_EQ(pipe(report), 0);
  // The child only makes system calls (no allocation): the parent has
  // threads (the capture reader), so malloc's lock may be held at fork.
  const std::string procs = cg_->original() + "/cgroup.procs";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // child: leave the attached cgroup, then connect
    int result[4] = {-1, -1, -1, -1};
    int procs_fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    // "0" moves the writing process itself.
    if (procs_fd >= 0 && write(procs_fd, "0", 1) == 1) {
      bool opted = false;
      int c = ClientSocket(Family::kV4, true, &opted);
      result[0] = opted;
      result[1] = ConnectLoopback(c, Family::kV4, l.port);
      negotiate::Outcome o = negotiate::QueryOutcome(c);
      result[2] = static_cast<int>(o.answer);
      result[3] = static_cast<int>(o.reason == wire::kReasonPeerNoSmc);
      if (write(c, "x", 1) != 1) result[1] = 0;
    }
    (void)!write(report[1], result, sizeof(result));
    _exit(0);
  }
  close(report[1]);
  int a = accept(l.fd, nullptr, nullptr);
  ASSERT_GE(a, 0);
  char got = 0;
  EXPECT_EQ(read(a, &got, 1), 1);
  negotiate::Outcome server = negotiate::QueryOutcome(a);
  int result[4] = {};
  EXPECT_EQ(read(report[0], result, sizeof(result)),
            static_cast<ssize_t>(sizeof(result)));
  waitpid(pid, nullptr, 0);
  close(report[0]);
  close(a);
  std::vector<Segment> segs = cap->Stop();
  l.Close();
  EXPECT_EQ(result[0], 0) << "opt-in outside the cgroup must fail soft";
  EXPECT_EQ(result[1], 1) << "connect from outside failed";
  EXPECT_EQ(result[2], static_cast<int>(Answer::kUnknown));
  EXPECT_EQ(result[3], 1) << "reason must be PEERNOSMC";
  EXPECT_EQ(server.answer, Answer::kNotBoth);
  EXPECT_EQ(server.detail, Detail::kPeerDidNotOffer);
  std::optional<Segment> syn = FindSyn(segs, l.port);
  std::optional<Segment> synack = FindSynAck(segs, l.port);
  ASSERT_TRUE(syn && synack);
  EXPECT_FALSE(syn->HasSmcOption());
  EXPECT_FALSE(synack->HasSmcOption());
}

}  // namespace
}  // namespace usmc::negotiate_test
