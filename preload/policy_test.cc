#include "preload/policy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

// Counts operator new calls, to check that Policy::Allows never allocates.
namespace {
std::atomic<long> g_news{0};
}  // namespace
void* operator new(size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// noinline: inlined, GCC sees free() of a pointer from operator new and
// warns (-Wmismatched-new-delete), although both sides are ours.
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept {
  std::free(p);
}

namespace usmc::preload {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Endpoint Ep(std::string_view addr, uint16_t port) {
  std::optional<IpAddress> a = IpAddress::Parse(addr);
  EXPECT_TRUE(a.has_value()) << addr;
  return Endpoint{a.value_or(IpAddress()), port};
}

Query Client(std::string_view addr, uint16_t port,
             std::string_view exe = "app") {
  Query q;
  q.role = Role::kClient;
  q.exe_name = exe;
  q.remote = Ep(addr, port);
  return q;
}

Query Server(std::string_view addr, uint16_t port,
             std::string_view exe = "app") {
  Query q;
  q.role = Role::kServer;
  q.exe_name = exe;
  q.local = Ep(addr, port);
  return q;
}

Policy MustParse(std::string_view text) {
  Result<Policy> p = ParsePolicyText(text, "test.conf");
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(p).value() : Policy();
}

std::string ParseError(std::string_view text) {
  Result<Policy> p = ParsePolicyText(text, "test.conf");
  EXPECT_FALSE(p.ok()) << text;
  if (p.ok()) return "";
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  return p.status().message();
}

// A PolicyEnv that never reads /etc/usmc.conf of the machine running the
// test.
PolicyEnv NoFileEnv() {
  PolicyEnv env;
  env.default_conf = "";
  return env;
}

// A temporary config file, removed at the end of the test.
class TempConf {
 public:
  explicit TempConf(std::string_view text) {
    char tmpl[] = "/tmp/usmc_policy_test_XXXXXX";
    int fd = ::mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    path_ = tmpl;
    EXPECT_EQ(::write(fd, text.data(), text.size()),
              static_cast<ssize_t>(text.size()));
    ::close(fd);
  }
  ~TempConf() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---- addresses ----------------------------------------------------------

TEST(IpAddressTest, ParsesV4AsMapped) {
  std::optional<IpAddress> a = IpAddress::Parse("10.1.2.3");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->is_v4());
  EXPECT_EQ(a->bytes()[10], 0xff);
  EXPECT_EQ(a->bytes()[15], 3);
  EXPECT_EQ(a->ToString(), "10.1.2.3");
  EXPECT_EQ(*IpAddress::Parse("::ffff:10.1.2.3"), *a);
}

TEST(IpAddressTest, ParsesV6) {
  std::optional<IpAddress> a = IpAddress::Parse("2001:db8::1");
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->is_v4());
  EXPECT_EQ(a->bytes()[0], 0x20);
  EXPECT_EQ(a->bytes()[15], 1);
  EXPECT_EQ(a->ToString(), "2001:db8::1");
}

TEST(IpAddressTest, RejectsNonNumeric) {
  for (std::string_view s : {"", "localhost", "10.0.0", "10.0.0.256", "[::1]",
                             "fe80::1%eth0", "1.2.3.4 ", "::g"}) {
    EXPECT_FALSE(IpAddress::Parse(s)) << s;
  }
  EXPECT_FALSE(IpAddress::Parse(std::string_view("1.2.3.4\0", 8)));
}

TEST(EndpointTest, FromSockaddrV4AndV6) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(6379);
  inet_pton(AF_INET, "192.168.1.2", &in.sin_addr);
  auto e = EndpointFromSockaddr(reinterpret_cast<sockaddr*>(&in), sizeof(in));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->port, 6379);
  EXPECT_EQ(e->address.ToString(), "192.168.1.2");

  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(443);
  inet_pton(AF_INET6, "::ffff:192.168.1.2", &in6.sin6_addr);
  e = EndpointFromSockaddr(reinterpret_cast<sockaddr*>(&in6), sizeof(in6));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->port, 443);
  EXPECT_TRUE(e->address.is_v4());
  EXPECT_EQ(e->address.ToString(), "192.168.1.2");

  // Too short, or not IP.
  EXPECT_FALSE(
      EndpointFromSockaddr(reinterpret_cast<sockaddr*>(&in), sizeof(in) - 1));
  sockaddr un{};
  un.sa_family = AF_UNIX;
  EXPECT_FALSE(EndpointFromSockaddr(&un, sizeof(un)));
  EXPECT_FALSE(EndpointFromSockaddr(nullptr, 0));
}

// ---- globs --------------------------------------------------------------

TEST(GlobTest, StarAndQuestionMark) {
  EXPECT_TRUE(GlobMatch("redis-*", "redis-server"));
  EXPECT_TRUE(GlobMatch("redis-*", "redis-"));
  EXPECT_FALSE(GlobMatch("redis-*", "redis"));
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("*", "anything"));
  EXPECT_TRUE(GlobMatch("ng?nx", "nginx"));
  EXPECT_FALSE(GlobMatch("ng?nx", "ngnx"));
  EXPECT_TRUE(GlobMatch("*-bench*", "redis-benchmark"));
  EXPECT_TRUE(GlobMatch("a*b*c", "aXXbYYbZc"));
  EXPECT_FALSE(GlobMatch("a*b*c", "aXXbYYbZ"));
  EXPECT_TRUE(GlobMatch("curl", "curl"));
  EXPECT_FALSE(GlobMatch("curl", "curl2"));
  EXPECT_FALSE(GlobMatch("", "x"));
}

// ---- parsing ------------------------------------------------------------

TEST(ParseTest, ValidRulesAndCanonicalText) {
  Policy p = MustParse(
      "# comment line\n"
      "\n"
      "deny  server  port 22   # ssh stays TCP\n"
      "allow client prog redis-*,memtier* addr 10.0.0.0/8,::1 "
      "port 6379-6380,7000\n"
      "\tdeny * addr ::1/128\r\n"
      "deny any addr ::ffff:192.168.0.0/112\n"
      "allow\n");
  ASSERT_EQ(p.rules().size(), 5u);
  EXPECT_EQ(p.rules()[0].ToString(), "deny server port 22");
  EXPECT_EQ(p.rules()[0].source, "test.conf:3");
  EXPECT_EQ(p.rules()[1].ToString(),
            "allow client prog redis-*,memtier* addr 10.0.0.0/8,::1/128 "
            "port 6379-6380,7000");
  EXPECT_EQ(p.rules()[1].source, "test.conf:4");
  EXPECT_EQ(p.rules()[2].ToString(), "deny * addr ::1/128");
  // A v4-mapped network is an IPv4 network.
  EXPECT_EQ(p.rules()[3].ToString(), "deny * addr 192.168.0.0/16");
  EXPECT_EQ(p.rules()[4].ToString(), "allow *");
  EXPECT_EQ(p.rules()[4].source, "test.conf:7");
  EXPECT_THAT(p.rules()[1].programs, ElementsAre("redis-*", "memtier*"));
  ASSERT_EQ(p.rules()[1].ports.size(), 2u);
  EXPECT_EQ(p.rules()[1].ports[0].first, 6379);
  EXPECT_EQ(p.rules()[1].ports[0].last, 6380);
}

TEST(ParseTest, CanonicalTextParsesBackToTheSameRules) {
  Policy p = MustParse(
      "deny server port 22\n"
      "allow client prog a?c,*x addr 10.1.0.0/16,2001:db8::/32 port *\n"
      "deny\n");
  Policy q = MustParse(p.ToString());
  ASSERT_EQ(q.rules().size(), p.rules().size());
  for (size_t i = 0; i < p.rules().size(); ++i) {
    EXPECT_EQ(q.rules()[i].ToString(), p.rules()[i].ToString());
  }
  EXPECT_EQ(p.rules()[1].ToString(),
            "allow client prog a?c,*x addr 10.1.0.0/16,2001:db8::/32 "
            "port 0-65535");
}

TEST(ParseTest, EmptyAndCommentOnlyTextHasNoRules) {
  EXPECT_TRUE(MustParse("").rules().empty());
  EXPECT_TRUE(MustParse("\n\n   # nothing\n#allow\n").rules().empty());
}

TEST(ParseTest, ErrorsNameFileLineAndProblem) {
  EXPECT_EQ(ParseError("allow\npermit client\n"),
            "test.conf:2: expected 'allow' or 'deny', got 'permit'");
  EXPECT_EQ(ParseError("deny server prot 22"),
            "test.conf:1: unknown word 'prot' (expected prog, addr or port)");
  EXPECT_EQ(ParseError("\n\ndeny port"), "test.conf:3: 'port' needs a value");
  EXPECT_EQ(ParseError("deny port 1 port 2"),
            "test.conf:1: 'port' given twice");
  EXPECT_EQ(ParseError("deny port 22 server"),
            "test.conf:1: role 'server' must come right after allow/deny");
  EXPECT_EQ(ParseError("deny port 70000"),
            "test.conf:1: bad port '70000' (expected a number 0-65535, a "
            "range N-M, or *)");
  EXPECT_EQ(ParseError("deny port 80-20"),
            "test.conf:1: port range '80-20' is reversed");
  EXPECT_EQ(ParseError("deny port -5"),
            "test.conf:1: bad port '-5' (expected a number 0-65535, a "
            "range N-M, or *)");
  EXPECT_EQ(ParseError("deny port 1,,2"), "test.conf:1: empty item in '1,,2'");
  EXPECT_EQ(ParseError("deny addr 10.0.0.0/33"),
            "test.conf:1: bad prefix length in '10.0.0.0/33' (0-32)");
  EXPECT_EQ(ParseError("deny addr ::/129"),
            "test.conf:1: bad prefix length in '::/129' (0-128)");
  EXPECT_EQ(ParseError("deny addr 10.1.2.3/8"),
            "test.conf:1: network '10.1.2.3/8' has bits set after the "
            "prefix length");
  EXPECT_EQ(ParseError("deny addr host.example"),
            "test.conf:1: bad address 'host.example' (expected IPv4 or IPv6, "
            "optionally /prefix)");
  EXPECT_EQ(ParseError("deny addr ::ffff:10.0.0.0/64"),
            "test.conf:1: v4-mapped network '::ffff:10.0.0.0/64' needs a "
            "prefix of 96 or more");
  EXPECT_EQ(ParseError("deny prog /usr/bin/curl"),
            "test.conf:1: program '/usr/bin/curl' has a '/': programs are "
            "matched by file name only");
}

TEST(ParseTest, LongWordsAreShortenedInErrors) {
  std::string word(500, 'x');
  std::string msg = ParseError("deny " + word);
  EXPECT_LT(msg.size(), 150u);
  EXPECT_THAT(msg, HasSubstr("'xxxx"));
  EXPECT_THAT(msg, HasSubstr("...'"));
}

// A NUL byte in a config line: the message (printed with %s) stopped at
// it, so the problem itself was never shown. Control bytes are escaped.
TEST(ParseTest, NulAndControlBytesAreEscapedInErrors) {
  const std::string msg =
      ParseError(std::string("deny port 2\0"
                             "2\x1b\n",
                             14));
  EXPECT_EQ(std::strlen(msg.c_str()), msg.size()) << msg;
  EXPECT_EQ(msg,
            "test.conf:1: bad port '2\\x002\\x1b' (expected a number 0-65535, "
            "a range N-M, or *)");
}

// ---- matching -----------------------------------------------------------

TEST(MatchTest, NoRulesAllowsEverything) {
  Policy p;
  Decision d = p.Allows(Client("10.0.0.1", 80));
  EXPECT_TRUE(d.allow);
  EXPECT_EQ(d.source, "default");
  EXPECT_EQ(d.rule, "");
}

TEST(MatchTest, PortsAndRanges) {
  Policy p = MustParse("deny port 22,6000-6009\n");
  EXPECT_FALSE(p.Allows(Client("10.0.0.1", 22)).allow);
  EXPECT_FALSE(p.Allows(Client("10.0.0.1", 6000)).allow);
  EXPECT_FALSE(p.Allows(Client("10.0.0.1", 6009)).allow);
  EXPECT_TRUE(p.Allows(Client("10.0.0.1", 6010)).allow);
  EXPECT_TRUE(p.Allows(Client("10.0.0.1", 21)).allow);
  EXPECT_FALSE(p.Allows(Server("0.0.0.0", 22)).allow);
}

TEST(MatchTest, ClientMatchesRemoteServerMatchesLocal) {
  Policy p = MustParse("deny port 22\n");
  Query q;
  q.role = Role::kClient;
  q.local = Ep("10.0.0.1", 22);  // the client's own port does not count
  q.remote = Ep("10.0.0.2", 5000);
  EXPECT_TRUE(p.Allows(q).allow);
  q.role = Role::kServer;  // a server on local port 22
  EXPECT_FALSE(p.Allows(q).allow);
  // No service endpoint: addr/port rules cannot match.
  q.local.reset();
  EXPECT_TRUE(p.Allows(q).allow);
}

TEST(MatchTest, Roles) {
  Policy p = MustParse("deny server\nallow client\n");
  EXPECT_FALSE(p.Allows(Server("::", 80)).allow);
  Decision d = p.Allows(Client("::1", 80));
  EXPECT_TRUE(d.allow);
  EXPECT_EQ(d.source, "test.conf:2");
  EXPECT_EQ(d.rule, "allow client");
}

TEST(MatchTest, Ipv4Cidr) {
  Policy p = MustParse("deny addr 10.0.0.0/8,192.168.1.128/25\n");
  EXPECT_FALSE(p.Allows(Client("10.255.1.1", 1)).allow);
  EXPECT_TRUE(p.Allows(Client("11.0.0.1", 1)).allow);
  EXPECT_FALSE(p.Allows(Client("192.168.1.200", 1)).allow);
  EXPECT_TRUE(p.Allows(Client("192.168.1.127", 1)).allow);
  // The same IPv4 peer seen by an AF_INET6 socket.
  EXPECT_FALSE(p.Allows(Client("::ffff:10.1.1.1", 1)).allow);
  // A real IPv6 address that happens to end in 10.x bytes does not match.
  EXPECT_TRUE(p.Allows(Client("::a01:101", 1)).allow);
}

TEST(MatchTest, Ipv6Cidr) {
  Policy p = MustParse("deny addr 2001:db8::/33,::1\n");
  EXPECT_FALSE(p.Allows(Client("2001:db8:7fff::1", 1)).allow);
  EXPECT_TRUE(p.Allows(Client("2001:db8:8000::1", 1)).allow);
  EXPECT_FALSE(p.Allows(Client("::1", 1)).allow);
  EXPECT_TRUE(p.Allows(Client("::2", 1)).allow);
}

TEST(MatchTest, Ipv6NetworkNeverMatchesIpv4) {
  Policy p = MustParse("deny addr ::/0\n");
  EXPECT_FALSE(p.Allows(Client("fe80::1", 1)).allow);
  EXPECT_TRUE(p.Allows(Client("127.0.0.1", 1)).allow);
  EXPECT_TRUE(p.Allows(Client("::ffff:127.0.0.1", 1)).allow);
  Policy all4 = MustParse("deny addr 0.0.0.0/0\n");
  EXPECT_FALSE(all4.Allows(Client("::ffff:1.2.3.4", 1)).allow);
  EXPECT_TRUE(all4.Allows(Client("::1", 1)).allow);
}

TEST(MatchTest, ProgramMatchesExeOrArgv0) {
  Policy p = MustParse("deny prog redis-*,curl\n");
  Query q = Client("10.0.0.1", 6379, "redis-benchmark");
  EXPECT_FALSE(p.Allows(q).allow);
  q.exe_name = "python3.11";
  q.argv0_name = "curl";
  EXPECT_FALSE(p.Allows(q).allow);
  q.argv0_name = "wget";
  EXPECT_TRUE(p.Allows(q).allow);
  // Unknown names match no prog rule (not even "*").
  Policy star = MustParse("deny prog *\n");
  q.exe_name = "";
  q.argv0_name = "";
  EXPECT_TRUE(star.Allows(q).allow);
}

TEST(MatchTest, AllConditionsOfARuleMustHold) {
  Policy p = MustParse(
      "allow client prog redis-* addr 10.0.0.0/8 port 6379-6380\n"
      "deny\n");
  EXPECT_TRUE(p.Allows(Client("10.0.0.5", 6380, "redis-cli")).allow);
  EXPECT_FALSE(p.Allows(Client("10.0.0.5", 6381, "redis-cli")).allow);
  EXPECT_FALSE(p.Allows(Client("11.0.0.5", 6379, "redis-cli")).allow);
  EXPECT_FALSE(p.Allows(Client("10.0.0.5", 6379, "nc")).allow);
  EXPECT_FALSE(p.Allows(Server("10.0.0.5", 6379, "redis-cli")).allow);
}

TEST(MatchTest, FirstMatchWins) {
  Policy p = MustParse(
      "allow port 8080\n"
      "deny addr 127.0.0.0/8\n"
      "allow port 8080-8090\n");
  Decision d = p.Allows(Client("127.0.0.1", 8080));
  EXPECT_TRUE(d.allow);
  EXPECT_EQ(d.source, "test.conf:1");
  d = p.Allows(Client("127.0.0.1", 8081));
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.source, "test.conf:2");
  EXPECT_EQ(d.rule, "deny * addr 127.0.0.0/8");
  d = p.Allows(Client("10.0.0.1", 8081));
  EXPECT_TRUE(d.allow);
  EXPECT_EQ(d.source, "test.conf:3");
  std::ostringstream os;
  os << p.Allows(Client("127.0.0.1", 8081));
  EXPECT_EQ(os.str(), "deny by test.conf:2 (deny * addr 127.0.0.0/8)");
}

TEST(MatchTest, DenyAllDeniesEveryRoleAndAddress) {
  Policy p = Policy::DenyAll("config error");
  for (const Query& q :
       {Client("10.0.0.1", 80), Server("::", 22), Client("::1", 0, "")}) {
    Decision d = p.Allows(q);
    EXPECT_FALSE(d.allow);
    EXPECT_EQ(d.source, "config error");
    EXPECT_EQ(d.rule, "deny *");
  }
}

TEST(MatchTest, DecisionOutlivesAMove) {
  Policy p = MustParse("deny port 1\n");
  Policy moved = std::move(p);
  Decision d = moved.Allows(Client("1.1.1.1", 1));
  EXPECT_EQ(d.rule, "deny * port 1");
}

TEST(MatchTest, AllowsDoesNotAllocate) {
  Policy p = MustParse(
      "deny server port 22\n"
      "allow client prog redis-*,x?y addr 10.0.0.0/8,2001:db8::/32 "
      "port 6379-6380\n"
      "deny addr ::ffff:127.0.0.0/104\n");
  Query qs[] = {Client("10.0.0.1", 6379, "redis-cli"),
                Client("2001:db8::5", 6380, "xzy"),
                Client("127.0.0.1", 80, "curl"), Server("::", 22, "sshd"),
                Client("192.0.2.1", 1, "nc")};
  long before = g_news.load();
  int allowed = 0;
  for (const Query& q : qs) allowed += p.Allows(q).allow ? 1 : 0;
  EXPECT_EQ(g_news.load(), before);
  EXPECT_EQ(allowed, 3);  // redis-cli, xzy, nc
  // The counter is live: one heap string counts.
  auto* heap = new std::string(100, 'x');
  EXPECT_GT(g_news.load(), before);
  delete heap;
}

// ---- environment and file -----------------------------------------------

// Rules that came from the user (env, file), not usmc's built-in ones.
size_t UserRules(const Policy& p) {
  size_t n = 0;
  for (const Rule& r : p.rules()) n += r.source != "built-in" ? 1 : 0;
  return n;
}

// sshd's pre-auth sandbox cannot run SMC-D: its listener offers none,
// unless a rule of the user's says otherwise first. Its clients may.
TEST(LoadTest, SshdServersStayTcpUnlessAUserRuleSaysOtherwise) {
  Result<Policy> p = LoadPolicy(NoFileEnv());
  ASSERT_TRUE(p.ok()) << p.status();
  Decision d = p->Allows(Server("::", 22, "sshd"));
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.source, "built-in");
  EXPECT_TRUE(p->Allows(Client("127.0.0.1", 22, "sshd")).allow);
  EXPECT_TRUE(p->Allows(Server("::", 22, "nginx")).allow);
  TempConf f("allow prog sshd\n");
  PolicyEnv env;
  env.conf = f.path();
  p = LoadPolicy(env);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->Allows(Server("::", 22, "sshd")).allow);
}

TEST(LoadTest, DefaultsAllowEverything) {
  Result<Policy> p = LoadPolicy(NoFileEnv());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(UserRules(*p), 0u);
  EXPECT_TRUE(p->Allows(Server("::", 22)).allow);
}

TEST(LoadTest, MissingDefaultFileIsFine) {
  PolicyEnv env;
  env.default_conf = "/nonexistent/usmc.conf";
  Result<Policy> p = LoadPolicy(env);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(UserRules(*p), 0u);
}

TEST(LoadTest, DefaultFileIsRead) {
  TempConf f("deny port 22\n");
  PolicyEnv env;
  env.default_conf = f.path();
  Result<Policy> p = LoadPolicy(env);
  ASSERT_TRUE(p.ok()) << p.status();
  Decision d = p->Allows(Client("1.2.3.4", 22));
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.source, f.path() + ":1");
}

TEST(LoadTest, UsmcConfReplacesTheDefaultAndEmptyMeansNone) {
  TempConf def("deny\n");
  TempConf mine("deny port 22\n");
  PolicyEnv env;
  env.default_conf = def.path();
  env.conf = mine.path();
  Result<Policy> p = LoadPolicy(env);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->Allows(Client("1.2.3.4", 80)).allow);
  EXPECT_FALSE(p->Allows(Client("1.2.3.4", 22)).allow);
  env.conf = "";
  p = LoadPolicy(env);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(UserRules(*p), 0u);
}

TEST(LoadTest, MissingExplicitFileIsAnError) {
  PolicyEnv env = NoFileEnv();
  env.conf = "/nonexistent/usmc.conf";
  Result<Policy> p = LoadPolicy(env);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().sys_errno(), ENOENT);
  EXPECT_THAT(p.status().message(),
              HasSubstr("USMC_CONF: cannot open /nonexistent/usmc.conf"));
}

TEST(LoadTest, DirectoryIsNotAConfigFile) {
  PolicyEnv env = NoFileEnv();
  env.conf = "/tmp";
  Result<Policy> p = LoadPolicy(env);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(), "USMC_CONF: /tmp: not a regular file");
}

// A FIFO (or any file whose open or read can block) must not hang every
// program under usmc in its constructor: open never waits for a writer, and
// only regular files are read. Should the open block, a watchdog opens the
// FIFO for writing after a while so that the test fails instead of hanging.
TEST(LoadTest, FifoIsNotAConfigFileAndDoesNotBlock) {
  char dir[] = "/tmp/usmc_policy_fifo_XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/usmc.conf";
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  std::atomic<bool> done{false};
  std::atomic<bool> rescued{false};
  std::thread watchdog([&] {
    while (!done.load()) {
      for (int i = 0; i < 250 && !done.load(); ++i) ::usleep(20 * 1000);
      if (done.load()) return;
      rescued.store(true);
      int w = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
      if (w >= 0) ::close(w);
    }
  });
  for (bool explicit_path : {true, false}) {
    PolicyEnv env = NoFileEnv();
    if (explicit_path) {
      env.conf = path;
    } else {
      env.default_conf = path;
    }
    Result<Policy> p = LoadPolicy(env);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().message(), (explicit_path ? "USMC_CONF: " : "") +
                                        path + ": not a regular file");
  }
  done.store(true);
  watchdog.join();
  EXPECT_FALSE(rescued.load()) << "open of the FIFO blocked";
  ::unlink(path.c_str());
  ::rmdir(dir);
}

TEST(LoadTest, BadFileErrorNamesFileAndLine) {
  TempConf f("deny port 22\n\nallow clinet\n");
  PolicyEnv env = NoFileEnv();
  env.conf = f.path();
  Result<Policy> p = LoadPolicy(env);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(
      p.status().message(),
      f.path() + ":3: unknown word 'clinet' (expected prog, addr or port)");
}

TEST(LoadTest, EnableZeroDeniesEverythingAndSkipsTheFile) {
  PolicyEnv env = NoFileEnv();
  env.conf = "/nonexistent/usmc.conf";  // would be an error if read
  env.enable = "0";
  Result<Policy> p = LoadPolicy(env);
  ASSERT_TRUE(p.ok()) << p.status();
  Decision d = p->Allows(Client("1.2.3.4", 80));
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.source, "USMC_ENABLE");
  env.enable = "1";
  env.disable = "yes";
  p = LoadPolicy(env);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->Allows(Server("::", 80)).source, "USMC_DISABLE");
}

TEST(LoadTest, EnableOneKeepsTheRules) {
  TempConf f("deny port 22\n");
  PolicyEnv env = NoFileEnv();
  env.conf = f.path();
  env.enable = " On ";
  env.disable = "0";
  Result<Policy> p = LoadPolicy(env);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->Allows(Client("1.2.3.4", 22)).allow);
  EXPECT_TRUE(p->Allows(Client("1.2.3.4", 23)).allow);
}

TEST(LoadTest, BadBooleanIsAnError) {
  PolicyEnv env = NoFileEnv();
  env.enable = "maybe";
  Result<Policy> p = LoadPolicy(env);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(), "USMC_ENABLE: expected 0 or 1, got 'maybe'");
}

TEST(LoadTest, ExclusionsOverrideTheFile) {
  TempConf f("allow port 22\nallow prog ssh\n");
  PolicyEnv env = NoFileEnv();
  env.conf = f.path();
  env.exclude_ports = "22, 2000-2100";
  env.exclude_addrs = "192.168.0.0/16 fd00::/8";
  env.exclude_programs = "ssh*";
  Result<Policy> p = LoadPolicy(env);
  ASSERT_TRUE(p.ok()) << p.status();
  Decision d = p->Allows(Client("10.0.0.1", 22));
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.source, "USMC_EXCLUDE_PORTS");
  EXPECT_FALSE(p->Allows(Client("10.0.0.1", 2050)).allow);
  d = p->Allows(Client("fd12::1", 80));
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.source, "USMC_EXCLUDE_ADDRS");
  d = p->Allows(Client("10.0.0.1", 80, "sshd"));
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.source, "USMC_EXCLUDE_PROGRAMS");
  d = p->Allows(Client("10.0.0.1", 80, "ssh"));
  EXPECT_FALSE(d.allow);  // exclusion before the file's "allow prog ssh"
  d = p->Allows(Client("10.0.0.1", 80, "curl"));
  EXPECT_TRUE(d.allow);
  EXPECT_EQ(d.source, "default");
}

TEST(LoadTest, InclusionsAllowOnlyWhatTheyListAndOverrideTheFile) {
  TempConf f("deny port 6379\n");
  PolicyEnv env = NoFileEnv();
  env.conf = f.path();
  env.ports = "6379,6380";
  env.programs = "redis-*";
  Result<Policy> p = LoadPolicy(env);
  ASSERT_TRUE(p.ok()) << p.status();
  Decision d = p->Allows(Client("127.0.0.1", 6379, "redis-cli"));
  EXPECT_TRUE(d.allow);
  EXPECT_EQ(d.source, "USMC_PROGRAMS+USMC_PORTS");
  d = p->Allows(Client("127.0.0.1", 6381, "redis-cli"));
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.source, "not in USMC_PROGRAMS+USMC_PORTS");
  EXPECT_FALSE(p->Allows(Client("127.0.0.1", 6379, "nc")).allow);
}

TEST(LoadTest, ExclusionBeatsInclusion) {
  PolicyEnv env = NoFileEnv();
  env.addrs = "127.0.0.0/8";
  env.exclude_ports = "22";
  Result<Policy> p = LoadPolicy(env);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->Allows(Client("127.0.0.1", 22)).allow);
  EXPECT_TRUE(p->Allows(Client("127.0.0.1", 80)).allow);
  EXPECT_FALSE(p->Allows(Client("10.0.0.1", 80)).allow);
}

TEST(LoadTest, EmptyVariablesCountAsUnset) {
  PolicyEnv env = NoFileEnv();
  env.ports = "";
  env.exclude_addrs = "  ";
  env.enable = "";
  Result<Policy> p = LoadPolicy(env);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(UserRules(*p), 0u);
}

TEST(LoadTest, BadVariableErrorNamesTheVariable) {
  PolicyEnv env = NoFileEnv();
  env.exclude_ports = "22,ssh";
  Result<Policy> p = LoadPolicy(env);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(),
            "USMC_EXCLUDE_PORTS: bad port 'ssh' (expected a number 0-65535, "
            "a range N-M, or *)");
  env = NoFileEnv();
  env.addrs = "10.0.0.0/8,10.0.0.1/8";
  p = LoadPolicy(env);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(),
            "USMC_ADDRS: network '10.0.0.1/8' has bits set after the prefix "
            "length");
}

TEST(LoadTest, EnvErrorWinsOverAValidFile) {
  TempConf f("allow\n");
  PolicyEnv env = NoFileEnv();
  env.conf = f.path();
  env.programs = "/bin/sh";
  Result<Policy> p = LoadPolicy(env);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("USMC_PROGRAMS: program"));
}

TEST(LoadTest, FromProcessReadsTheVariables) {
  ::setenv("USMC_EXCLUDE_PORTS", "22", 1);
  ::unsetenv("USMC_PORTS");
  PolicyEnv env = PolicyEnv::FromProcess();
  ::unsetenv("USMC_EXCLUDE_PORTS");
  ASSERT_TRUE(env.exclude_ports);
  EXPECT_EQ(*env.exclude_ports, "22");
  EXPECT_FALSE(env.ports);
  EXPECT_EQ(env.default_conf, "/etc/usmc.conf");
}

// The example in docs/config.md parses and does what the text says.
TEST(DocsTest, ConfigMdExampleWorks) {
  const char* root = std::getenv("USMC_SOURCE_DIR");
  if (root == nullptr) GTEST_SKIP() << "USMC_SOURCE_DIR not set (run by ctest)";
  std::ifstream in(std::string(root) + "/docs/config.md");
  ASSERT_TRUE(in) << "docs/config.md";
  std::stringstream all;
  all << in.rdbuf();
  std::string md = all.str();
  size_t at = md.find("### Example `/etc/usmc.conf`");
  ASSERT_NE(at, md.npos);
  size_t begin = md.find("```\n", at);
  ASSERT_NE(begin, md.npos);
  begin += 4;
  size_t end = md.find("```", begin);
  ASSERT_NE(end, md.npos);
  Policy p = MustParse(md.substr(begin, end - begin));
  ASSERT_EQ(p.rules().size(), 5u);
  EXPECT_FALSE(p.Allows(Server("0.0.0.0", 22, "sshd")).allow);
  EXPECT_FALSE(p.Allows(Client("10.0.0.1", 53, "dig")).allow);
  EXPECT_TRUE(p.Allows(Client("127.0.0.1", 6379, "redis-benchmark")).allow);
  EXPECT_TRUE(p.Allows(Client("::1", 6380, "memtier_benchmark")).allow);
  Decision d = p.Allows(Client("127.0.0.1", 6379, "nc"));
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.rule, "deny * addr 127.0.0.0/8,::1/128");
  EXPECT_TRUE(p.Allows(Server("::", 6379, "redis-server")).allow);
  EXPECT_TRUE(p.Allows(Client("10.0.0.1", 80, "curl")).allow);
}

TEST(ProgramNamesTest, ThisTestBinary) {
  ProgramNames n = ReadProgramNames();
  EXPECT_EQ(n.exe, "policy_test");
  // ctest runs the binary by path; either way the basename is the same.
  EXPECT_EQ(n.argv0, "policy_test");
}

}  // namespace
}  // namespace usmc::preload
