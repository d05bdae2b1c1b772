#include "preload/policy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "base/expected.h"

namespace usmc::preload {
namespace {

// A config file is a handful of lines; anything bigger is a mistake (or
// /dev/zero), and reading it would delay the application's start.
constexpr size_t kMaxConfBytes = 1 << 20;
// Errors quote the offending word, shortened so a binary file cannot flood
// the application's stderr.
constexpr size_t kMaxQuote = 48;

// Parse errors before the location (file:line or variable) is known.
struct Error {
  Error() = default;
  explicit Error(std::string m) : msg(std::move(m)) {}
  std::string msg;
};
template <typename T>
using Parsed = Expected<T, Error>;

// Control bytes print as \xNN: a NUL in the word would end the message
// where stderr's %s stops (the rest of the line, the problem, was lost),
// and others could move the terminal's cursor.
std::string Quote(std::string_view s) {
  std::string q = "'";
  const std::string_view shown = s.substr(0, kMaxQuote);
  for (const char c : shown) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      q += "\\x";
      q += kHex[u >> 4];
      q += kHex[u & 0xf];
    } else {
      q += c;
    }
  }
  if (s.size() > kMaxQuote) q += "...";
  q += "'";
  return q;
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

// Splits on `sep` (and, for environment values, on white space too).
template <typename Fn>
void ForEachItem(std::string_view text, bool split_on_space, Fn&& fn) {
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    bool end = i == text.size() || text[i] == ',' ||
               (split_on_space && IsSpace(text[i]));
    if (!end) continue;
    fn(text.substr(start, i - start));
    start = i + 1;
  }
}

// Decimal, no sign, at most `max`.
std::optional<unsigned> ParseNumber(std::string_view s, unsigned max) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > max) return std::nullopt;
  return v;
}

Parsed<PortRange> ParsePortItem(std::string_view s) {
  if (s == "*") return PortRange{0, 65535};
  size_t dash = s.find('-');
  std::string_view a = s.substr(0, dash);
  std::string_view b = dash == s.npos ? a : s.substr(dash + 1);
  std::optional<unsigned> first = ParseNumber(a, 65535);
  std::optional<unsigned> last = ParseNumber(b, 65535);
  if (!first || !last) {
    return Error("bad port " + Quote(s) +
                 " (expected a number 0-65535, a range N-M, or *)");
  }
  if (*first > *last) {
    return Error("port range " + Quote(s) + " is reversed");
  }
  return PortRange{static_cast<uint16_t>(*first), static_cast<uint16_t>(*last)};
}

// Bits [from, 128) of `a` are all zero.
bool LowBitsZero(const IpAddress& a, unsigned from) {
  for (unsigned bit = from; bit < 128; ++bit) {
    if (a.bytes()[bit / 8] & (0x80u >> (bit % 8))) return false;
  }
  return true;
}

Parsed<Network> ParseNetworkItem(std::string_view s) {
  size_t slash = s.find('/');
  std::string_view addr_text = s.substr(0, slash);
  std::optional<IpAddress> addr = IpAddress::Parse(addr_text);
  if (!addr) {
    return Error("bad address " + Quote(s) +
                 " (expected IPv4 or IPv6, optionally /prefix)");
  }
  bool v6_syntax = addr_text.find(':') != addr_text.npos;
  unsigned max = v6_syntax ? 128 : 32;
  unsigned prefix = max;
  if (slash != s.npos) {
    std::optional<unsigned> p = ParseNumber(s.substr(slash + 1), max);
    if (!p) {
      return Error("bad prefix length in " + Quote(s) + " (0-" +
                   std::to_string(max) + ")");
    }
    prefix = *p;
  }
  // Written as ::ffff:a.b.c.d/N: that is an IPv4 network (see Network).
  if (v6_syntax && addr->is_v4()) {
    if (prefix < 96) {
      return Error("v4-mapped network " + Quote(s) +
                   " needs a prefix of 96 or more");
    }
    prefix -= 96;
  }
  unsigned bits = addr->is_v4() ? prefix + 96 : prefix;
  if (!LowBitsZero(*addr, bits)) {
    return Error("network " + Quote(s) +
                 " has bits set after the prefix length");
  }
  return Network{*addr, static_cast<uint8_t>(prefix)};
}

Parsed<std::string> ParseProgramItem(std::string_view s) {
  if (s.find('/') != s.npos) {
    return Error("program " + Quote(s) +
                 " has a '/': programs are matched by file name only");
  }
  return std::string(s);
}

// Parses a comma-separated list (and white-space separated, for the
// environment) with `item`; an empty list or item is an error.
template <typename T, typename ItemFn>
Parsed<std::vector<T>> ParseList(std::string_view text, bool from_env,
                                 ItemFn item) {
  std::vector<T> out;
  std::optional<Error> error;
  ForEachItem(text, from_env, [&](std::string_view s) {
    if (error) return;
    if (s.empty()) {
      if (!from_env) error = Error("empty item in " + Quote(text));
      return;
    }
    Parsed<T> v = item(s);
    if (!v) {
      error = v.error();
      return;
    }
    out.push_back(std::move(v.value()));
  });
  if (error) return *error;
  if (out.empty()) return Error("empty list");
  return out;
}

enum class Field { kProg, kAddr, kPort };

// Parses `value` as the list for `field` into `r`; an empty msg is success.
Error FillField(Rule& r, Field field, std::string_view value, bool from_env) {
  auto take = [](auto parsed, auto& into) {
    if (!parsed) return parsed.error();
    into = std::move(parsed.value());
    return Error();
  };
  switch (field) {
    case Field::kProg:
      return take(ParseList<std::string>(value, from_env, ParseProgramItem),
                  r.programs);
    case Field::kAddr:
      return take(ParseList<Network>(value, from_env, ParseNetworkItem),
                  r.networks);
    case Field::kPort:
      return take(ParseList<PortRange>(value, from_env, ParsePortItem),
                  r.ports);
  }
  return Error("unknown field");
}

std::optional<Role> RoleWord(std::string_view w, bool* is_role) {
  *is_role = true;
  if (w == "client") return Role::kClient;
  if (w == "server") return Role::kServer;
  if (w == "*" || w == "any") return std::nullopt;
  *is_role = false;
  return std::nullopt;
}

// One rule from its words: ACTION [ROLE] {KEY VALUE}.
Parsed<Rule> ParseRuleWords(const std::vector<std::string_view>& w) {
  Rule r;
  if (w[0] == "allow") {
    r.action = Action::kAllow;
  } else if (w[0] == "deny") {
    r.action = Action::kDeny;
  } else {
    return Error("expected 'allow' or 'deny', got " + Quote(w[0]));
  }
  size_t i = 1;
  bool is_role = false;
  if (i < w.size()) {
    r.role = RoleWord(w[i], &is_role);
    if (is_role) ++i;
  }
  bool seen_prog = false, seen_addr = false, seen_port = false;
  for (; i < w.size(); i += 2) {
    std::string_view key = w[i];
    bool* seen = key == "prog"   ? &seen_prog
                 : key == "addr" ? &seen_addr
                 : key == "port" ? &seen_port
                                 : nullptr;
    if (seen == nullptr) {
      RoleWord(key, &is_role);
      if (is_role) {
        return Error("role " + Quote(key) +
                     " must come right after allow/deny");
      }
      return Error("unknown word " + Quote(key) +
                   " (expected prog, addr or port)");
    }
    if (*seen) return Error(Quote(key) + " given twice");
    *seen = true;
    if (i + 1 >= w.size()) return Error(Quote(key) + " needs a value");
    Error err = FillField(r,
                          key == "prog"   ? Field::kProg
                          : key == "addr" ? Field::kAddr
                                          : Field::kPort,
                          w[i + 1], /*from_env=*/false);
    if (!err.msg.empty()) return err;
  }
  return r;
}

Status InvalidArgument(std::string msg) {
  return Status(StatusCode::kInvalidArgument, std::move(msg));
}

// "1/yes/true/on" or "0/no/false/off", any case.
std::optional<bool> ParseBool(std::string_view s) {
  std::string l;
  for (char c : s) {
    l += static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
  }
  if (l == "1" || l == "yes" || l == "true" || l == "on") return true;
  if (l == "0" || l == "no" || l == "false" || l == "off") return false;
  return std::nullopt;
}

// An unset or empty (after trimming) variable counts as unset, the usual
// shell convention: USMC_PORTS= cmd.
std::optional<std::string_view> Value(const std::optional<std::string>& v) {
  if (!v) return std::nullopt;
  std::string_view s = *v;
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  if (s.empty()) return std::nullopt;
  return s;
}

// Reads the config file. *absent is set when the default file is missing.
Result<std::string> ReadConf(const std::string& path, bool explicit_path,
                             bool* absent) {
  *absent = false;
  // O_NONBLOCK: opening a FIFO would wait for a writer, in the constructor of
  // every program under usmc. Only a regular file is read (fstat below).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOENT && !explicit_path) {
      *absent = true;
      return std::string();
    }
    return Status::FromErrno(errno, "cannot open " + path);
  }
  struct stat st;
  std::string text;
  Status status;
  if (::fstat(fd, &st) != 0) {
    status = Status::FromErrno(errno, "cannot stat " + path);
  } else if (!S_ISREG(st.st_mode)) {
    status = InvalidArgument(path + ": not a regular file");
  } else if (static_cast<size_t>(st.st_size) > kMaxConfBytes) {
    status = InvalidArgument(path + ": larger than 1 MiB");
  } else {
    char buf[4096];
    while (text.size() <= kMaxConfBytes) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        status = Status::FromErrno(errno, "cannot read " + path);
        break;
      }
      if (n == 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    if (status.ok() && text.size() > kMaxConfBytes) {
      status = InvalidArgument(path + ": larger than 1 MiB");
    }
  }
  ::close(fd);
  if (!status.ok()) return status;
  return text;
}

std::string_view BaseName(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == path.npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string_view ToString(Role r) {
  switch (r) {
    case Role::kClient:
      return "client";
    case Role::kServer:
      return "server";
  }
  return "?";
}
std::ostream& operator<<(std::ostream& os, Role r) { return os << ToString(r); }

std::string_view ToString(Action a) {
  switch (a) {
    case Action::kAllow:
      return "allow";
    case Action::kDeny:
      return "deny";
  }
  return "?";
}
std::ostream& operator<<(std::ostream& os, Action a) {
  return os << ToString(a);
}

IpAddress IpAddress::V4(const std::array<uint8_t, 4>& b) {
  IpAddress a;
  a.bytes_[10] = 0xff;
  a.bytes_[11] = 0xff;
  std::memcpy(&a.bytes_[12], b.data(), 4);
  return a;
}

IpAddress IpAddress::V6(const std::array<uint8_t, 16>& b) {
  IpAddress a;
  a.bytes_ = b;
  return a;
}

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  char buf[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof(buf)) return std::nullopt;
  if (text.find('\0') != text.npos) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  if (text.find(':') == text.npos) {
    std::array<uint8_t, 4> b;
    if (inet_pton(AF_INET, buf, b.data()) != 1) return std::nullopt;
    return V4(b);
  }
  std::array<uint8_t, 16> b;
  if (inet_pton(AF_INET6, buf, b.data()) != 1) return std::nullopt;
  return V6(b);
}

bool IpAddress::is_v4() const {
  for (int i = 0; i < 10; ++i) {
    if (bytes_[i] != 0) return false;
  }
  return bytes_[10] == 0xff && bytes_[11] == 0xff;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (is_v4()) {
    inet_ntop(AF_INET, &bytes_[12], buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET6, bytes_.data(), buf, sizeof(buf));
  }
  return buf;
}

std::optional<Endpoint> EndpointFromSockaddr(const sockaddr* sa,
                                             socklen_t len) {
  if (sa == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) {
    return std::nullopt;
  }
  if (sa->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    sockaddr_in in;
    std::memcpy(&in, sa, sizeof(in));
    std::array<uint8_t, 4> b;
    std::memcpy(b.data(), &in.sin_addr, 4);
    return Endpoint{IpAddress::V4(b), ntohs(in.sin_port)};
  }
  if (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    sockaddr_in6 in6;
    std::memcpy(&in6, sa, sizeof(in6));
    std::array<uint8_t, 16> b;
    std::memcpy(b.data(), &in6.sin6_addr, 16);
    return Endpoint{IpAddress::V6(b), ntohs(in6.sin6_port)};
  }
  return std::nullopt;
}

bool Network::Contains(const IpAddress& a) const {
  bool v4 = base.is_v4();
  if (a.is_v4() != v4) return false;
  unsigned bits = v4 ? prefix_len + 96u : prefix_len;
  unsigned whole = bits / 8;
  if (std::memcmp(a.bytes().data(), base.bytes().data(), whole) != 0) {
    return false;
  }
  if (bits % 8 == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff00u >> (bits % 8));
  return (a.bytes()[whole] & mask) == (base.bytes()[whole] & mask);
}

std::string Network::ToString() const {
  return base.ToString() + "/" + std::to_string(prefix_len);
}

bool Rule::Matches(const Query& q) const {
  if (role && *role != q.role) return false;
  if (!programs.empty()) {
    bool any = false;
    for (const std::string& g : programs) {
      if ((!q.exe_name.empty() && GlobMatch(g, q.exe_name)) ||
          (!q.argv0_name.empty() && GlobMatch(g, q.argv0_name))) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  if (ports.empty() && networks.empty()) return true;
  const std::optional<Endpoint>& ep = q.service();
  if (!ep) return false;
  if (!ports.empty()) {
    bool any = false;
    for (const PortRange& p : ports) {
      if (ep->port >= p.first && ep->port <= p.last) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  if (!networks.empty()) {
    bool any = false;
    for (const Network& n : networks) {
      if (n.Contains(ep->address)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  return true;
}

std::string Rule::ToString() const {
  std::string s(preload::ToString(action));
  s += role ? (*role == Role::kClient ? " client" : " server") : " *";
  auto list = [&s](const char* key, const auto& items, auto fmt) {
    if (items.empty()) return;
    s += ' ';
    s += key;
    char sep = ' ';
    for (const auto& it : items) {
      s += sep;
      s += fmt(it);
      sep = ',';
    }
  };
  list("prog", programs, [](const std::string& p) { return p; });
  list("addr", networks, [](const Network& n) { return n.ToString(); });
  list("port", ports, [](const PortRange& p) {
    std::string t = std::to_string(p.first);
    if (p.last != p.first) t += "-" + std::to_string(p.last);
    return t;
  });
  return s;
}

std::ostream& operator<<(std::ostream& os, const Decision& d) {
  os << (d.allow ? "allow" : "deny") << " by " << d.source;
  if (!d.rule.empty()) os << " (" << d.rule << ")";
  return os;
}

Policy::Policy(std::vector<Rule> rules) : rules_(std::move(rules)) {
  texts_.reserve(rules_.size());
  for (const Rule& r : rules_) texts_.push_back(r.ToString());
}

Policy Policy::DenyAll(std::string source) {
  Rule r;
  r.action = Action::kDeny;
  r.source = std::move(source);
  return Policy({std::move(r)});
}

Decision Policy::Allows(const Query& q) const noexcept {
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (rules_[i].Matches(q)) {
      return Decision{rules_[i].action == Action::kAllow, rules_[i].source,
                      texts_[i]};
    }
  }
  return Decision{};
}

std::string Policy::ToString() const {
  std::string s;
  for (size_t i = 0; i < rules_.size(); ++i) {
    s += texts_[i];
    s += "  # ";
    s += rules_[i].source;
    s += '\n';
  }
  return s;
}

Result<std::vector<Rule>> ParseRules(std::string_view text,
                                     std::string_view origin) {
  std::vector<Rule> rules;
  std::vector<std::string_view> words;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == text.npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    line = line.substr(0, line.find('#'));
    words.clear();
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && IsSpace(line[i])) ++i;
      size_t start = i;
      while (i < line.size() && !IsSpace(line[i])) ++i;
      if (i > start) words.push_back(line.substr(start, i - start));
    }
    if (words.empty()) continue;
    std::string where = std::string(origin) + ":" + std::to_string(line_no);
    Parsed<Rule> r = ParseRuleWords(words);
    if (!r) return InvalidArgument(where + ": " + r.error().msg);
    r.value().source = std::move(where);
    rules.push_back(std::move(r.value()));
  }
  return rules;
}

Result<Policy> ParsePolicyText(std::string_view text, std::string_view origin) {
  Result<std::vector<Rule>> rules = ParseRules(text, origin);
  if (!rules.ok()) return rules.status();
  return Policy(std::move(rules).value());
}

PolicyEnv PolicyEnv::FromProcess() {
  auto get = [](const char* name) -> std::optional<std::string> {
    const char* v = ::secure_getenv(name);
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
  PolicyEnv env;
  env.enable = get("USMC_ENABLE");
  env.disable = get("USMC_DISABLE");
  env.conf = get("USMC_CONF");
  env.programs = get("USMC_PROGRAMS");
  env.exclude_programs = get("USMC_EXCLUDE_PROGRAMS");
  env.addrs = get("USMC_ADDRS");
  env.exclude_addrs = get("USMC_EXCLUDE_ADDRS");
  env.ports = get("USMC_PORTS");
  env.exclude_ports = get("USMC_EXCLUDE_PORTS");
  return env;
}

Result<Policy> LoadPolicy(const PolicyEnv& env) {
  std::vector<Rule> rules;

  // The global switch: off means one rule that denies everything, and the
  // file is not even read (a broken file must not matter then).
  for (auto [name, var] : {std::pair{"USMC_ENABLE", &env.enable},
                           std::pair{"USMC_DISABLE", &env.disable}}) {
    std::optional<std::string_view> v = Value(*var);
    if (!v) continue;
    std::optional<bool> b = ParseBool(*v);
    if (!b) {
      return InvalidArgument(std::string(name) + ": expected 0 or 1, got " +
                             Quote(*v));
    }
    bool is_enable = var == &env.enable;
    if (*b == is_enable) continue;  // USMC_ENABLE=1 or USMC_DISABLE=0
    return Policy::DenyAll(name);
  }

  // Each list variable fills one field of a rule; `name` is for errors.
  auto fill = [](Rule& r, const char* name, std::string_view value,
                 Field field) -> Status {
    Error err = FillField(r, field, value, /*from_env=*/true);
    if (err.msg.empty()) return OkStatus();
    return InvalidArgument(std::string(name) + ": " + err.msg);
  };

  // Exclusions first: each is its own deny rule.
  struct ListVar {
    const char* name;
    const std::optional<std::string>* value;
    Field field;
  };
  const ListVar excludes[] = {
      {"USMC_EXCLUDE_PROGRAMS", &env.exclude_programs, Field::kProg},
      {"USMC_EXCLUDE_ADDRS", &env.exclude_addrs, Field::kAddr},
      {"USMC_EXCLUDE_PORTS", &env.exclude_ports, Field::kPort},
  };
  for (const ListVar& lv : excludes) {
    std::optional<std::string_view> v = Value(*lv.value);
    if (!v) continue;
    Rule r;
    r.action = Action::kDeny;
    r.source = lv.name;
    USMC_RETURN_IF_ERROR(fill(r, lv.name, *v, lv.field));
    rules.push_back(std::move(r));
  }

  // Inclusions: one allow rule that must match all the lists given, then
  // deny the rest; the file is not consulted for these sockets.
  const ListVar includes[] = {
      {"USMC_PROGRAMS", &env.programs, Field::kProg},
      {"USMC_ADDRS", &env.addrs, Field::kAddr},
      {"USMC_PORTS", &env.ports, Field::kPort},
  };
  Rule allow;
  for (const ListVar& lv : includes) {
    std::optional<std::string_view> v = Value(*lv.value);
    if (!v) continue;
    USMC_RETURN_IF_ERROR(fill(allow, lv.name, *v, lv.field));
    if (!allow.source.empty()) allow.source += '+';
    allow.source += lv.name;
  }
  if (!allow.source.empty()) {
    Rule rest;
    rest.action = Action::kDeny;
    rest.source = "not in " + allow.source;
    rules.push_back(std::move(allow));
    rules.push_back(std::move(rest));
  }

  // The file. USMC_CONF= (empty) means "no file", not even the default.
  std::string path = env.default_conf;
  bool explicit_path = env.conf.has_value();
  if (explicit_path) path = *env.conf;
  if (!path.empty()) {
    bool absent = false;
    Result<std::string> text = ReadConf(path, explicit_path, &absent);
    if (!text.ok()) {
      return Status(
          text.status().code(),
          (explicit_path ? "USMC_CONF: " : "") + text.status().message(),
          text.status().sys_errno());
    }
    if (!absent) {
      Result<std::vector<Rule>> file = ParseRules(*text, path);
      if (!file.ok()) return file.status();
      for (Rule& r : *file) rules.push_back(std::move(r));
    }
  }
  // Built in, after every rule of the user's: OpenSSH's sshd serves each
  // connection from a pre-auth child in a seccomp sandbox that kills the
  // system calls of SMC-D's doorbells (and caps its fds at one), so its
  // listener offers no SMC and its connections are TCP from the start
  // (docs/preload.md). An explicit rule for sshd above still decides.
  Result<std::vector<Rule>> builtin =
      ParseRules("deny server prog sshd", "built-in");
  if (builtin.ok()) {
    for (Rule& r : *builtin) {
      r.source = "built-in";
      rules.push_back(std::move(r));
    }
  }
  return Policy(std::move(rules));
}

bool GlobMatch(std::string_view pattern, std::string_view name) {
  // Greedy with one backtrack point: the last '*' seen. Linear enough for
  // program names, and it never recurses.
  size_t p = 0, n = 0;
  size_t star = std::string_view::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() &&
               (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

ProgramNames ReadProgramNames() {
  ProgramNames names;
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf));
  if (n > 0 && static_cast<size_t>(n) < sizeof(buf)) {
    std::string_view exe(buf, static_cast<size_t>(n));
    // The binary was replaced on disk while running (an upgrade).
    constexpr std::string_view kDeleted = " (deleted)";
    if (exe.ends_with(kDeleted)) exe.remove_suffix(kDeleted.size());
    names.exe = BaseName(exe);
  }
  int fd = ::open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t got;
    do {
      got = ::read(fd, buf, sizeof(buf) - 1);
    } while (got < 0 && errno == EINTR);
    ::close(fd);
    if (got > 0) {
      buf[got] = '\0';
      names.argv0 = BaseName(std::string_view(buf));  // up to the first NUL
    }
  }
  return names;
}

}  // namespace usmc::preload
