// preload/policy.h: may this socket use SMC? Rules from a file and the env.
//
// The interposer loads one Policy when the process starts and asks it at
// connect() and listen() time. Rules are tried in order and the first one
// that matches decides. Environment variables (USMC_ENABLE, USMC_PORTS, ...)
// become rules placed before the file's rules, so they override the file.
// No rule matched: allow. docs/config.md describes the format.
//
//   usmc::Result<Policy> p = LoadPolicy(PolicyEnv::FromProcess());
//   Policy policy = p.ok() ? std::move(p).value()
//                          : Policy::DenyAll("config error");  // + print once
//   Query q{.role = Role::kClient, .exe_name = "redis-cli", .remote = peer};
//   Decision d = policy.Allows(q);  // no allocation
//   if (!d.allow) { /* plain TCP; d.source names the rule ("USMC_PORTS") */ }
#ifndef USMC_PRELOAD_POLICY_H_
#define USMC_PRELOAD_POLICY_H_

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace usmc::preload {

// Which side of the connection the application is on.
enum class Role : uint8_t {
  kClient,  // connect()
  kServer,  // listen() / accept()
};
std::string_view ToString(Role r);
std::ostream& operator<<(std::ostream& os, Role r);

enum class Action : uint8_t { kAllow, kDeny };
std::string_view ToString(Action a);
std::ostream& operator<<(std::ostream& os, Action a);

// An IPv4 or IPv6 address. IPv4 is kept in its v4-mapped IPv6 form
// (::ffff:a.b.c.d), so an AF_INET6 socket talking to an IPv4 peer matches
// the same rules as an AF_INET socket does.
class IpAddress {
 public:
  IpAddress() = default;  // "::"
  static IpAddress V4(const std::array<uint8_t, 4>& b);
  static IpAddress V6(const std::array<uint8_t, 16>& b);
  // Numeric only: "10.0.0.1", "::1", "::ffff:10.0.0.1". No names, no zones.
  static std::optional<IpAddress> Parse(std::string_view text);

  bool is_v4() const;  // IPv4, including v4-mapped IPv6
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  std::string ToString() const;  // "10.0.0.1" or "2001:db8::1"
  bool operator==(const IpAddress&) const = default;

 private:
  std::array<uint8_t, 16> bytes_{};
};

struct Endpoint {
  IpAddress address;
  uint16_t port = 0;
};

// AF_INET or AF_INET6 sockaddr -> Endpoint; anything else -> nullopt.
std::optional<Endpoint> EndpointFromSockaddr(const sockaddr* sa, socklen_t len);

// What the interposer asks about one socket.
struct Query {
  Role role = Role::kClient;
  // `prog` matches if either name does (empty names are skipped): the
  // basename of /proc/self/exe and the basename of argv[0].
  std::string_view exe_name;
  std::string_view argv0_name;
  // `addr` and `port` are matched against the service endpoint: the remote
  // one for a client, the local (listening) one for a server. So the same
  // rule "port 6379" covers both ends of a redis connection. Ask once per
  // listener, at listen() with its bound address (getsockname, so port 0
  // is resolved): its SYN-ACKs offer SMC or not for every accepted
  // connection. A wildcard listener has address 0.0.0.0 or ::, which an
  // `addr` rule matches only if it covers it. A missing endpoint matches no
  // rule that has `addr` or `port`.
  std::optional<Endpoint> local;
  std::optional<Endpoint> remote;

  const std::optional<Endpoint>& service() const {
    return role == Role::kClient ? remote : local;
  }
};

// An inclusive port range; a single port has first == last.
struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;
};

// An IPv4 or IPv6 network. An IPv4 network matches IPv4 and v4-mapped
// addresses only; an IPv6 network (even ::/0) matches real IPv6 only.
struct Network {
  IpAddress base;          // host bits are zero
  uint8_t prefix_len = 0;  // 0-32 for IPv4, 0-128 for IPv6
  bool Contains(const IpAddress& a) const;
  std::string ToString() const;  // "10.0.0.0/8", "::1/128"
};

// One rule. Empty lists mean "any"; within a list any item may match; all
// non-empty lists (and the role) must match.
struct Rule {
  Action action = Action::kAllow;
  std::optional<Role> role;           // nullopt: client and server
  std::vector<std::string> programs;  // globs: '*' and '?'
  std::vector<Network> networks;
  std::vector<PortRange> ports;
  std::string source;  // "/etc/usmc.conf:12", "USMC_PORTS", ...

  bool Matches(const Query& q) const;
  // Canonical rule text: "deny server port 22". Parses back to this rule.
  std::string ToString() const;
};

// Why a socket may or may not use SMC. The views point into the Policy.
struct Decision {
  bool allow = true;
  std::string_view source = "default";  // rule's source, or "default"
  std::string_view rule;                // canonical rule text, "" if default
};
std::ostream& operator<<(std::ostream& os, const Decision& d);

class Policy {
 public:
  Policy() = default;  // no rules: everything may use SMC
  explicit Policy(std::vector<Rule> rules);
  // One rule that denies every socket, decided by `source`: what the
  // interposer keeps after LoadPolicy failed ("config error").
  static Policy DenyAll(std::string source);

  // First matching rule decides. Never allocates, never fails; safe to
  // call from many threads at once (it only reads).
  Decision Allows(const Query& q) const noexcept;

  const std::vector<Rule>& rules() const { return rules_; }
  // One canonical rule per line (what `usmc` can print as "effective
  // configuration"); ParsePolicyText() of it gives the same rules.
  std::string ToString() const;

 private:
  std::vector<Rule> rules_;
  std::vector<std::string> texts_;  // rules_[i].ToString(), for Decision
};

// Parses config file text. `origin` names the file in errors and in each
// rule's source ("origin:line"). Errors: kInvalidArgument,
// "origin:line: what was wrong".
Result<std::vector<Rule>> ParseRules(std::string_view text,
                                     std::string_view origin);
Result<Policy> ParsePolicyText(std::string_view text, std::string_view origin);

// The variables LoadPolicy reads; unset ones are nullopt. Filled from the
// process environment by FromProcess(), or by hand in tests.
struct PolicyEnv {
  std::optional<std::string> enable;            // USMC_ENABLE
  std::optional<std::string> disable;           // USMC_DISABLE
  std::optional<std::string> conf;              // USMC_CONF
  std::optional<std::string> programs;          // USMC_PROGRAMS
  std::optional<std::string> exclude_programs;  // USMC_EXCLUDE_PROGRAMS
  std::optional<std::string> addrs;             // USMC_ADDRS
  std::optional<std::string> exclude_addrs;     // USMC_EXCLUDE_ADDRS
  std::optional<std::string> ports;             // USMC_PORTS
  std::optional<std::string> exclude_ports;     // USMC_EXCLUDE_PORTS
  // Read when `conf` is unset and this file exists.
  std::string default_conf = "/etc/usmc.conf";

  // secure_getenv(): a set-uid program ignores the variables.
  static PolicyEnv FromProcess();
};

// Environment rules, then the config file's rules. Errors name the variable
// or file:line; the caller then keeps SMC off for the whole process.
Result<Policy> LoadPolicy(const PolicyEnv& env);

// '*' matches any run of characters, '?' any one; the rest is literal.
bool GlobMatch(std::string_view pattern, std::string_view name);

// Basenames of /proc/self/exe and argv[0] (from /proc/self/cmdline), for
// Query::exe_name / argv0_name. Unreadable parts are left empty.
struct ProgramNames {
  std::string exe;
  std::string argv0;
};
ProgramNames ReadProgramNames();

}  // namespace usmc::preload

#endif  // USMC_PRELOAD_POLICY_H_
