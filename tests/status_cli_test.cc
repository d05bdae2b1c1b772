// `usmc ss` and `usmc stats` against a status directory this test fills
// through the real publisher: the numbers printed equal what was published,
// the JSON validates against docs/status-schema.json, --reset subtracts, and
// a SIGKILLed process disappears.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>

#include "runtime/publish.h"
#include "tests/status_schema.h"
#include "tools/status_json.h"
#include "wire/reason.h"

namespace usmc {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using runtime::ConnMode;
using runtime::ConnRecord;
using runtime::StatusPublisher;
using status_test::LoadSchema;
using status_test::Validator;

// ---- running the tool ----

struct Output {
  int code = -1;
  std::string out;
};

Output Usmc(const std::string& args) {
  Output o;
  const std::string cmd = std::string(USMC_BIN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return o;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0)
    o.out.append(buf.data(), n);
  const int st = pclose(p);
  o.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return o;
}

json UsmcJson(const std::string& args) {
  Output o = Usmc(args);
  EXPECT_EQ(o.code, 0) << o.out;
  json j = json::parse(o.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << o.out;
  return j;
}

class StatusCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/usmc-status-cli-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Result<StatusPublisher*> r = StatusPublisher::Create(dir_);
    ASSERT_TRUE(r.ok()) << r.status();
    pub_.reset(*r);
  }
  void TearDown() override {
    pub_.reset();
    fs::remove_all(dir_);
  }
  std::string Dir() const { return " --status-dir " + dir_; }

  static sockaddr_storage Addr(const char* ip, uint16_t port) {
    sockaddr_storage ss{};
    if (std::string(ip).find(':') != std::string::npos) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(port);
      inet_pton(AF_INET6, ip, &a->sin6_addr);
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(port);
      inet_pton(AF_INET, ip, &a->sin_addr);
    }
    return ss;
  }

  // One connection as the interposer would publish it.
  runtime::SlotId Publish(ConnMode mode, engine::Role role, const char* local,
                          const char* peer, uint32_t reason,
                          uint32_t peer_reason = 0) {
    ConnRecord r;
    runtime::SetState(r, "ACTIVE");
    r.mode = mode;
    r.role = role;
    r.local = Addr(local, 5000);
    r.peer = Addr(peer, 6000);
    r.local_reason = reason;
    r.peer_reason = peer_reason;
    r.fd = 7;
    r.inode = 4242;
    r.uid = geteuid();
    r.dmb_size = mode == ConnMode::kSmcd ? 65536 : 0;
    r.peer_dmb_size = mode == ConnMode::kSmcd ? 131072 : 0;
    runtime::SlotId id = pub_->Acquire();
    pub_->Update(id, r);
    pub_->CountHandshake(r);
    return id;
  }

  std::string dir_;
  std::unique_ptr<StatusPublisher> pub_;
};

TEST_F(StatusCli, SsJsonShowsWhatWasPublishedAndValidates) {
  auto a = Publish(ConnMode::kSmcd, engine::Role::kClient, "127.0.0.1",
                   "127.0.0.1", 0);
  auto b = Publish(ConnMode::kTcp, engine::Role::kServer, "::1", "::1",
                   wire::kReasonPeerDecl, wire::kReasonNoUeid);
  pub_->AddBytes(a, 3000, 0, true);
  pub_->AddBytes(a, 0, 5000, true);
  pub_->AddBytes(b, 11, 13, false);

  json j = UsmcJson("ss --json" + Dir());
  EXPECT_EQ(LoadSchema().Check(j), "");
  ASSERT_EQ(j["connections"].size(), 2u);
  const json& c = j["connections"][0];
  EXPECT_EQ(c["pid"], getpid());
  EXPECT_EQ(c["mode"], "SMCD");
  EXPECT_EQ(c["role"], "client");
  EXPECT_EQ(c["local"], "127.0.0.1:5000");
  EXPECT_EQ(c["peer"], "127.0.0.1:6000");
  EXPECT_EQ(c["bytes_in"], 3000);
  EXPECT_EQ(c["bytes_out"], 5000);
  EXPECT_EQ(c["dmb_size"], 65536);
  EXPECT_EQ(c["peer_dmb_size"], 131072);
  EXPECT_EQ(c["inode"], 4242);
  EXPECT_EQ(c["fd"], 7);
  EXPECT_EQ(c["local_reason"], 0);
  EXPECT_EQ(c["local_reason_text"], "");
  const json& t = j["connections"][1];
  EXPECT_EQ(t["mode"], "TCP");
  EXPECT_EQ(t["role"], "server");
  EXPECT_EQ(t["local"], "[::1]:5000");
  EXPECT_EQ(t["local_reason"], wire::kReasonPeerDecl);
  EXPECT_EQ(t["peer_reason"], wire::kReasonNoUeid);
  EXPECT_EQ(
      t["local_reason_text"],
      "PEERDECL: " + std::string(wire::ReasonMeaning(wire::kReasonPeerDecl)));
  EXPECT_EQ(t["bytes_in"], 11);
  EXPECT_EQ(t["bytes_smc_in"], 0);

  // Filters: -D keeps SMC-D only; the text table has smcss's Mode column.
  EXPECT_EQ(UsmcJson("ss --json -D" + Dir())["connections"].size(), 1u);
  Output text = Usmc("ss" + Dir());
  EXPECT_EQ(text.code, 0);
  EXPECT_NE(text.out.find("TCP 0x05000000/0x03030008"), std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("SMCD"), std::string::npos);
  Output debug = Usmc("ss -d" + Dir());
  EXPECT_NE(debug.out.find("fallback: PEERDECL"), std::string::npos)
      << debug.out;
}

TEST_F(StatusCli, SsHidesInitUnlessAll) {
  pub_->Acquire();  // acquired, never updated: state INIT
  EXPECT_EQ(UsmcJson("ss --json" + Dir())["connections"].size(), 0u);
  json all = UsmcJson("ss --json -a" + Dir());
  ASSERT_EQ(all["connections"].size(), 1u);
  EXPECT_EQ(all["connections"][0]["state"], "INIT");
  EXPECT_EQ(all["connections"][0]["mode"], "HANDSHAKE");
  EXPECT_EQ(LoadSchema().Check(all), "");
}

TEST_F(StatusCli, ListenersOnlyWithListeningOrAll) {
  Publish(ConnMode::kSmcd, engine::Role::kClient, "127.0.0.1", "127.0.0.1", 0);
  ConnRecord l;
  runtime::SetState(l, "LISTEN");
  l.mode = ConnMode::kSmcd;
  l.role = engine::Role::kServer;
  l.local = Addr("::", 7070);
  l.fd = 3;
  l.inode = 777;
  l.uid = geteuid();
  pub_->Update(pub_->Acquire(), l);

  json conns = UsmcJson("ss --json" + Dir())["connections"];
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_EQ(conns[0]["state"], "ACTIVE");
  json listening = UsmcJson("ss --json -l" + Dir());
  EXPECT_EQ(LoadSchema().Check(listening), "");
  ASSERT_EQ(listening["connections"].size(), 1u);
  const json& j = listening["connections"][0];
  EXPECT_EQ(j["state"], "LISTEN");
  EXPECT_EQ(j["local"], "[::]:7070");
  EXPECT_EQ(j["peer"], "*");
  EXPECT_EQ(j["role"], "server");
  EXPECT_EQ(j["inode"], 777);
  EXPECT_EQ(j["pid"], getpid());
  EXPECT_EQ(UsmcJson("ss --json -a" + Dir())["connections"].size(), 2u);

  Output text = Usmc("ss -l" + Dir());
  EXPECT_EQ(text.code, 0);
  EXPECT_NE(text.out.find("LISTEN"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("[::]:7070"), std::string::npos) << text.out;
  EXPECT_EQ(text.out.find("ACTIVE"), std::string::npos) << text.out;
}

TEST_F(StatusCli, StatsCountersEqualWhatTheTestDid) {
  constexpr int kSmc = 3, kFallbacks = 4;
  constexpr uint64_t kBytes = 100000;  // per SMC connection, each way
  for (int i = 0; i < kSmc; ++i) {
    auto id = Publish(ConnMode::kSmcd, engine::Role::kClient, "127.0.0.1",
                      "127.0.0.1", 0);
    pub_->AddBytes(id, kBytes, 0, true);
    pub_->AddBytes(id, 0, kBytes, true);
    if (i == 0) pub_->Release(id);  // closed ones still count
  }
  for (int i = 0; i < kFallbacks; ++i)
    Publish(ConnMode::kTcp, engine::Role::kServer, "127.0.0.1", "127.0.0.1",
            i < 3 ? wire::kReasonPeerNoSmc : wire::kReasonNoSmcdDev);

  json j = UsmcJson("stats --json" + Dir());
  EXPECT_EQ(LoadSchema().Check(j), "");
  ASSERT_EQ(j["processes"].size(), 1u);
  const json& t = j["total"];
  EXPECT_EQ(t["connections"]["total"], kSmc + kFallbacks);
  EXPECT_EQ(t["connections"]["smc"]["client_v2"], kSmc);
  EXPECT_EQ(t["connections"]["tcp_fallback"]["server"], kFallbacks);
  EXPECT_EQ(t["rx"]["bytes_smc"], kSmc * kBytes);
  EXPECT_EQ(t["tx"]["bytes_smc"], kSmc * kBytes);
  EXPECT_EQ(t["rx"]["requests"], kSmc);
  EXPECT_EQ(t["rx"]["payload_size_hist"]["128K"], kSmc);  // 64K < 100000
  EXPECT_EQ(t["rx"]["buffer_size_hist"]["64K"], kSmc);
  EXPECT_EQ(t["tx"]["buffer_size_hist"]["128K"], kSmc);
  ASSERT_EQ(t["fallback_reasons"].size(), 2u);
  EXPECT_EQ(t["fallback_reasons"][0]["hex"], "0x03010000");
  EXPECT_EQ(t["fallback_reasons"][0]["name"], "PEERNOSMC");
  EXPECT_EQ(t["fallback_reasons"][0]["role"], "server");
  EXPECT_EQ(t["fallback_reasons"][0]["count"], 3);
  EXPECT_EQ(t["fallback_reasons"][1]["code"], wire::kReasonNoSmcdDev);
  EXPECT_EQ(t["fallback_reasons"][1]["count"], 1);
  EXPECT_EQ(j["processes"][0]["connections_now"], kSmc - 1 + kFallbacks);

  Output text = Usmc("stats" + Dir());
  EXPECT_NE(text.out.find("SMC Connections Summary"), std::string::npos);
  EXPECT_NE(text.out.find("PEERNOSMC"), std::string::npos) << text.out;
}

// The summary counts SMC-R connections as well as SMC-D ones: its title
// names neither alone (it said "SMC-D Connections Summary" over an SMC-R
// connection), and the open ones are split by technology.
TEST_F(StatusCli, StatsSummaryCoversSmcdAndSmcr) {
  Publish(ConnMode::kSmcd, engine::Role::kClient, "127.0.0.1", "127.0.0.1", 0);
  Publish(ConnMode::kSmcr, engine::Role::kServer, "127.0.0.1", "127.0.0.1", 0);
  Publish(ConnMode::kSmcr, engine::Role::kClient, "127.0.0.1", "127.0.0.1", 0);
  Output text = Usmc("stats" + Dir());
  EXPECT_EQ(text.code, 0) << text.out;
  EXPECT_EQ(text.out.find("SMC-D Connections Summary"), std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("SMC Connections Summary (1 process under usmc)"),
            std::string::npos)
      << text.out;
  EXPECT_TRUE(
      std::regex_search(text.out, std::regex("\n  SMC connections +3\n")))
      << text.out;
  EXPECT_TRUE(std::regex_search(
      text.out, std::regex("\n    open now SMC-D/SMC-R +1/2\n")))
      << text.out;
}

TEST_F(StatusCli, ResetSubtractsAndAbsoluteIgnoresIt) {
  auto id = Publish(ConnMode::kSmcd, engine::Role::kServer, "127.0.0.1",
                    "127.0.0.1", 0);
  pub_->AddBytes(id, 500, 0, true);
  Output r = Usmc("stats --reset" + Dir());
  ASSERT_EQ(r.code, 0) << r.out;
  json j = UsmcJson("stats --json" + Dir());
  EXPECT_TRUE(j["since_reset"]);
  EXPECT_EQ(j["total"]["rx"]["bytes_smc"], 0);
  EXPECT_EQ(j["total"]["connections"]["total"], 0);
  pub_->AddBytes(id, 70, 0, true);
  Publish(ConnMode::kTcp, engine::Role::kClient, "127.0.0.1", "127.0.0.1",
          wire::kReasonPeerNoSmc);
  j = UsmcJson("stats --json" + Dir());
  EXPECT_EQ(j["total"]["rx"]["bytes_smc"], 70);
  EXPECT_EQ(j["total"]["connections"]["total"], 1);
  EXPECT_EQ(j["total"]["connections"]["tcp_fallback"]["client"], 1);
  j = UsmcJson("stats --json -a" + Dir());
  EXPECT_FALSE(j["since_reset"]);
  EXPECT_EQ(j["total"]["rx"]["bytes_smc"], 570);
  EXPECT_EQ(j["total"]["connections"]["total"], 2);
}

// After a --reset, a busy server's requests go over connections made before
// it: the average divides by them (it said 0.0 after 13k requests/s on 68
// connections: no handshake since the reset).
TEST_F(StatusCli, AverageRequestsCountsConnectionsOpenAtTheReset) {
  std::vector<runtime::SlotId> ids;
  for (int i = 0; i < 4; ++i)
    ids.push_back(Publish(ConnMode::kSmcd, engine::Role::kServer, "127.0.0.1",
                          "127.0.0.1", 0));
  ASSERT_EQ(Usmc("stats --reset" + Dir()).code, 0);
  for (runtime::SlotId id : ids)
    for (int i = 0; i < 10; ++i) pub_->AddBytes(id, 64, 64, true);  // 20 each
  Output text = Usmc("stats" + Dir());
  EXPECT_EQ(text.code, 0) << text.out;
  EXPECT_TRUE(std::regex_search(
      text.out, std::regex("Avg requests per SMC conn +20\\.0\n")))
      << text.out;
  // One more connection after the reset, and one of the old ones closed:
  // 5 connections carried 80 + 8 requests.
  auto id = Publish(ConnMode::kSmcd, engine::Role::kServer, "127.0.0.1",
                    "127.0.0.1", 0);
  for (int i = 0; i < 4; ++i) pub_->AddBytes(id, 64, 64, true);
  pub_->Release(ids[0]);
  text = Usmc("stats" + Dir());
  EXPECT_TRUE(std::regex_search(
      text.out, std::regex("Avg requests per SMC conn +17\\.6\n")))
      << text.out;
  // Absolute: handshakes counted since the start (5).
  text = Usmc("stats -a" + Dir());
  EXPECT_TRUE(std::regex_search(
      text.out, std::regex("Avg requests per SMC conn +17\\.6\n")))
      << text.out;
}

TEST_F(StatusCli, SigkilledProcessDisappearsFromSs) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  const pid_t child = fork();
  if (child == 0) {
    close(p[0]);
    Result<StatusPublisher*> r = StatusPublisher::Create(dir_);
    if (!r.ok()) _exit(2);
    ConnRecord rec;
    runtime::SetState(rec, "ACTIVE");
    rec.mode = ConnMode::kSmcd;
    (*r)->Update((*r)->Acquire(), rec);
    (void)!write(p[1], "x", 1);
    pause();
    _exit(0);
  }
  close(p[1]);
  char c;
  ASSERT_EQ(read(p[0], &c, 1), 1);
  close(p[0]);
  auto pids = [&] {
    std::set<int> s;
    const json all = UsmcJson("ss --json" + Dir());
    for (const json& conn : all["connections"])
      s.insert(conn["pid"].get<int>());
    return s;
  };
  EXPECT_EQ(pids().count(child), 1u);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_EQ(pids().count(child), 0u);
  EXPECT_EQ(UsmcJson("stats --json" + Dir())["processes"].size(), 1u)
      << "only this test process is left";
}

// An SMC-R connection and its link group as runtime/lgr_registry.cc
// publishes them: `usmc ss` (text, -R, -d, --json) and `usmc stats` show
// the link-group id, QPNs, peer GID, token and LLC counters published.
TEST_F(StatusCli, SmcrConnectionAndLinkGroupAreShownInTextAndJson) {
  const uint8_t gid[16] = {0xfe, 0x80, 0,    0,    0,    0,    0,    0,
                           0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55};
  const uint8_t sys[8] = {0x80, 1, 2, 3, 4, 5, 6, 7};
  const uint8_t peer_sys[8] = {0x80, 9, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf};
  ConnRecord c;
  runtime::SetState(c, "ACTIVE");
  c.mode = ConnMode::kSmcr;
  c.role = engine::Role::kClient;
  c.uid = geteuid();
  c.fd = -1;
  c.dmb_size = 65536;
  c.peer_dmb_size = 65536;
  c.smcr.lgr_id = 0x2a;
  c.smcr.qpn = 17;
  c.smcr.peer_qpn = 23;
  c.smcr.token = 0x1003;
  std::memcpy(c.smcr.peer_gid, gid, 16);
  pub_->Update(pub_->Acquire(), c);
  ConnRecord g;
  runtime::SetState(g, "ACTIVE");
  g.kind = runtime::RecordKind::kLinkGroup;
  g.mode = ConnMode::kSmcr;
  g.role = engine::Role::kClient;
  g.uid = geteuid();
  g.smcr.lgr_id = 0x2a;
  g.smcr.qpn = 17;
  g.smcr.peer_qpn = 23;
  std::memcpy(g.smcr.peer_gid, gid, 16);
  std::memcpy(g.smcr.system_id, sys, 8);
  std::memcpy(g.smcr.peer_system_id, peer_sys, 8);
  g.smcr.conns = 1;
  g.smcr.llc_sent = 31;
  g.smcr.llc_received = 37;
  g.smcr.confirm_rkey_sent = 3;
  g.smcr.confirm_rkey_received = 5;
  g.smcr.delete_rkey_sent = 7;
  g.smcr.delete_rkey_received = 11;
  g.smcr.test_link_sent = 13;
  g.smcr.test_link_received = 17;
  pub_->Update(pub_->Acquire(), g);

  json j = UsmcJson("ss --json" + Dir());
  EXPECT_EQ(LoadSchema().Check(j), "");
  ASSERT_EQ(j["connections"].size(), 1u) << j.dump();
  const json& cj = j["connections"][0];
  EXPECT_EQ(cj["mode"], "SMCR");
  EXPECT_EQ(cj["smcr"], json({{"lgr_id", 0x2a},
                              {"qpn", 17},
                              {"peer_qpn", 23},
                              {"peer_gid", "fe80::211:22ff:fe33:4455"},
                              {"token", 0x1003}}));
  ASSERT_EQ(j["link_groups"].size(), 1u);
  EXPECT_EQ(j["link_groups"][0], json({{"pid", getpid()},
                                       {"comm", j["link_groups"][0]["comm"]},
                                       {"role", "client"},
                                       {"state", "ACTIVE"},
                                       {"lgr_id", 0x2a},
                                       {"qpn", 17},
                                       {"peer_qpn", 23},
                                       {"peer_gid", "fe80::211:22ff:fe33:4455"},
                                       {"system_id", "8001020304050607"},
                                       {"peer_system_id", "80090a0b0c0d0e0f"},
                                       {"connections", 1},
                                       {"llc",
                                        {{"sent", 31},
                                         {"received", 37},
                                         {"confirm_rkey_sent", 3},
                                         {"confirm_rkey_received", 5},
                                         {"delete_rkey_sent", 7},
                                         {"delete_rkey_received", 11},
                                         {"test_link_sent", 13},
                                         {"test_link_received", 17}}}}));
  // -D (SMC-D only) and -l show no link group.
  EXPECT_TRUE(UsmcJson("ss --json -D" + Dir())["link_groups"].empty());
  EXPECT_EQ(UsmcJson("ss --json -R" + Dir())["connections"].size(), 1u);

  Output text = Usmc("ss -R" + Dir());
  EXPECT_EQ(text.code, 0);
  // The connection row: SMCR, then lgr id, QPN, peer GID, token.
  EXPECT_TRUE(std::regex_search(
      text.out, std::regex("ACTIVE .* SMCR .* CLNT +0000002a +17 "
                           "fe80::211:22ff:fe33:4455 +00001003 +65536")))
      << text.out;
  EXPECT_NE(text.out.find("SMC-R link groups"), std::string::npos) << text.out;
  EXPECT_TRUE(std::regex_search(
      text.out, std::regex("\n0000002a CLNT ACTIVE +17 +23 "
                           "fe80::211:22ff:fe33:4455 +80090a0b0c0d0e0f +1 +31 "
                           "+37 +3/5 +7/11 +13/17 ")))
      << text.out;
  Output debug = Usmc("ss -d" + Dir());
  EXPECT_NE(debug.out.find("smc-r: link group 0000002a qpn 17 peer qpn 23 "
                           "peer gid fe80::211:22ff:fe33:4455 token 00001003"),
            std::string::npos)
      << debug.out;
  EXPECT_EQ(Usmc("ss -D" + Dir()).out.find("SMC-R link groups"),
            std::string::npos);

  json st = UsmcJson("stats --json" + Dir());
  EXPECT_EQ(LoadSchema().Check(st), "");
  ASSERT_EQ(st["link_groups"].size(), 1u);
  EXPECT_EQ(st["link_groups"][0], j["link_groups"][0]);
  Output stext = Usmc("stats" + Dir());
  EXPECT_NE(stext.out.find("SMC-R Link Groups (1)"), std::string::npos)
      << stext.out;
  EXPECT_NE(stext.out.find("LLC sent 31 received 37; CONFIRM_RKEY sent 3 "
                           "received 5; DELETE_RKEY sent 7 received 11; "
                           "TEST_LINK sent 13 received 17"),
            std::string::npos)
      << stext.out;
}

TEST(StatusSchema, RejectsOutputThatBreaksIt) {
  Validator v = LoadSchema();
  json bad = {{"connections", {{{"pid", 1}}}}};
  EXPECT_NE(v.Check(bad), "");
  json wrong_mode = json::parse(R"({"connections":[{"pid":1,"comm":"x","fd":3,
    "inode":1,"uid":0,"role":"client","state":"ACTIVE","mode":"SMC-D",
    "local":"1.2.3.4:5","peer":"*","local_reason":0,"peer_reason":0,
    "local_reason_text":"","peer_reason_text":"","error":0,"bytes_in":0,
    "bytes_out":0,"bytes_smc_in":0,"bytes_smc_out":0,"dmb_size":0,
    "peer_dmb_size":0,"dmb_token":0,"peer_dmb_token":0,"cursors":{
    "tx_producer":{"wrap":0,"count":0},"peer_consumer":{"wrap":0,"count":0},
    "rx_consumer":{"wrap":0,"count":0},"peer_producer":{"wrap":0,"count":0}},
    "wakeups_sent":0,"wakeups_received":0,"buffer_full":0,"cdc_sent":0,
    "cdc_received":0}],"link_groups":[]})");
  EXPECT_NE(v.Check(wrong_mode).find("not in"), std::string::npos)
      << v.Check(wrong_mode);
  wrong_mode["connections"][0]["mode"] = "SMCD";
  EXPECT_EQ(v.Check(wrong_mode), "");
}

// A static program cannot be interposed: `usmc run` says so (and still
// runs it); a dynamic one gets no such word.
TEST(UsmcRun, SaysWhenAProgramCannotBeInterposed) {
  Output st = Usmc(std::string("run -q ") + USMC_STATIC_HELLO);
  EXPECT_EQ(st.code, 0) << st.out;
  EXPECT_NE(st.out.find("is statically linked"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("hello"), std::string::npos) << st.out;
  Output dyn = Usmc("run -q /bin/true");
  EXPECT_EQ(dyn.code, 0) << dyn.out;
  EXPECT_EQ(dyn.out, "") << dyn.out;
}

// A wrapper script's every exec'd image loads usmc: a bad tuning value and
// a bad policy are each said once per `usmc run`, not once per image.
TEST(UsmcRun, SaysEachConfigErrorOncePerRun) {
  Output o = Usmc(
      "run -q -- /usr/bin/env USMC_DMB_SIZE=abc "
      "USMC_CONF=/nonexistent/usmc.conf "
      "/bin/sh -c '/bin/sh -c \"/bin/sh -c /bin/true\"; /bin/true; /bin/true'");
  EXPECT_EQ(o.code, 0) << o.out;
  auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t p = o.out.find(what); p != std::string::npos;
         p = o.out.find(what, p + 1))
      ++n;
    return n;
  };
  EXPECT_EQ(count("USMC_DMB_SIZE=abc is not allowed"), 1u) << o.out;
  EXPECT_EQ(count("/nonexistent/usmc.conf"), 1u) << o.out;
  EXPECT_EQ(count("\n"), 2u) << o.out;
}

TEST(ChkVerdict, SaysWhetherSmcWasUsedAndWhyNot) {
  tools::ChkVerdict ok = tools::VerdictOf(
      {{"mode", "SMCD"}, {"dmb_size", 65536}, {"peer_dmb_size", 65536}});
  EXPECT_EQ(ok.code, 0);
  EXPECT_EQ(ok.text.rfind("Success, using SMC-D", 0), 0u) << ok.text;
  tools::ChkVerdict tcp =
      tools::VerdictOf({{"mode", "TCP"},
                        {"local_reason", wire::kReasonPeerDecl},
                        {"peer_reason", wire::kReasonNoUeid}});
  EXPECT_EQ(tcp.code, 1);
  EXPECT_NE(
      tcp.text.find("0x05000000 PEERDECL: " +
                    std::string(wire::ReasonMeaning(wire::kReasonPeerDecl))),
      std::string::npos)
      << tcp.text;
  EXPECT_NE(tcp.text.find("peer's diagnosis 0x03030008 NOUEID"),
            std::string::npos)
      << tcp.text;
  tools::ChkVerdict none = tools::VerdictOf(
      {{"mode", "TCP"}, {"local_reason", wire::kReasonPeerNoSmc}});
  EXPECT_NE(none.text.find("usmc setup"), std::string::npos) << none.text;
  EXPECT_EQ(tools::VerdictOf({{"mode", "HANDSHAKE"}, {"state", "FAILED"}}).code,
            1);
}

}  // namespace
}  // namespace usmc
