// runtime/smcr_process_test.cc: the local address SMC-R serves for a TCP
// socket (SmcrLocalAddress) and the 16 bytes SmcrProcess::Open hands the
// verbs module: IPv4 IPv4-mapped as before, IPv6 as itself. The module is
// a fake (smcr_process_fake_module.cc) that records what it was asked for;
// the real one is exercised in the lab (tests/lab/scenarios/usmc-ipv6.sh).
#include "runtime/smcr_process.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <optional>
#include <string>

namespace usmc::runtime {
namespace {

sockaddr_storage V4(const char* text) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  in->sin_family = AF_INET;
  EXPECT_EQ(inet_pton(AF_INET, text, &in->sin_addr), 1) << text;
  return ss;
}

sockaddr_storage V6(const char* text) {
  sockaddr_storage ss{};
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
  in6->sin6_family = AF_INET6;
  EXPECT_EQ(inet_pton(AF_INET6, text, &in6->sin6_addr), 1) << text;
  return ss;
}

wire::Gid Bytes(const char* ipv6_text) {
  wire::Gid g{};
  EXPECT_EQ(inet_pton(AF_INET6, ipv6_text, g.data()), 1) << ipv6_text;
  return g;
}

TEST(SmcrLocalAddress, Ipv4IsIpv4MappedAsBefore) {
  EXPECT_EQ(SmcrLocalAddress(V4("10.0.0.1")), Bytes("::ffff:10.0.0.1"));
  // A dual-stack socket's IPv4 peer: the same key.
  EXPECT_EQ(SmcrLocalAddress(V6("::ffff:10.0.0.1")), Bytes("::ffff:10.0.0.1"));
}

TEST(SmcrLocalAddress, Ipv6IsItself) {
  EXPECT_EQ(SmcrLocalAddress(V6("fd00::1")), Bytes("fd00::1"));
  EXPECT_EQ(SmcrLocalAddress(V6("2001:db8::42")), Bytes("2001:db8::42"));
}

TEST(SmcrLocalAddress, WildcardsAreAllZero) {
  const wire::Gid zero{};
  EXPECT_EQ(SmcrLocalAddress(V4("0.0.0.0")), zero);
  EXPECT_EQ(SmcrLocalAddress(V6("::")), zero);
  EXPECT_EQ(SmcrLocalAddress(V6("::ffff:0.0.0.0")), zero);
}

TEST(SmcrLocalAddress, NeverServed) {
  EXPECT_EQ(SmcrLocalAddress(V4("127.0.0.1")), std::nullopt);
  EXPECT_EQ(SmcrLocalAddress(V4("127.1.2.3")), std::nullopt);
  EXPECT_EQ(SmcrLocalAddress(V6("::ffff:127.0.0.1")), std::nullopt);
  EXPECT_EQ(SmcrLocalAddress(V6("::1")), std::nullopt);
  EXPECT_EQ(SmcrLocalAddress(V6("fe80::5054:ff:fe00:1")), std::nullopt);
  EXPECT_EQ(SmcrLocalAddress(V6("ff02::1")), std::nullopt);
  sockaddr_storage unix_addr{};
  unix_addr.ss_family = AF_UNIX;
  EXPECT_EQ(SmcrLocalAddress(unix_addr), std::nullopt);
}

// What the fake module was last asked for.
wire::Gid LastAsked() {
  void* h = ::dlopen(USMC_FAKE_VERBS_MODULE, RTLD_NOW | RTLD_NOLOAD);
  EXPECT_NE(h, nullptr);
  if (h == nullptr) return {};
  using Fn = const uint8_t* (*)();
  auto last = reinterpret_cast<Fn>(::dlsym(h, "fake_last_address"));
  EXPECT_NE(last, nullptr);
  wire::Gid g{};
  if (last != nullptr) std::memcpy(g.data(), last(), g.size());
  ::dlclose(h);
  return g;
}

TEST(SmcrProcessOpen, HandsTheModuleAllSixteenBytes) {
  for (const char* text :
       {"fd00::1", "::ffff:10.0.0.1", "::", "2001:db8::42"}) {
    const wire::Gid a = Bytes(text);
    Result<std::unique_ptr<SmcrProcess>> p =
        SmcrProcess::Open(USMC_FAKE_VERBS_MODULE, a, {});
    ASSERT_FALSE(p.ok()) << text;
    // The module's code comes back as is: no GID serves it.
    EXPECT_EQ(p.status().code(), StatusCode::kNotFound) << text;
    EXPECT_EQ(LastAsked(), a) << text;
  }
}

TEST(SmcrProcessOpen, NoModuleIsUnavailable) {
  Result<std::unique_ptr<SmcrProcess>> p =
      SmcrProcess::Open("/nonexistent/libusmc-verbs.so", Bytes("fd00::1"), {});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace usmc::runtime
