// DropLateClc over a loopback TCP pair: one whole CLC message at the head
// goes, anything else stays for the app.
#include "runtime/late_clc.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "wire/clc.h"

namespace usmc::runtime {
namespace {

struct Pair {
  int a = -1, b = -1;  // a writes, b is the side under test
  ~Pair() {
    if (a >= 0) close(a);
    if (b >= 0) close(b);
  }
};

void MakePair(Pair& p) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(l, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(l, 1), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  p.a = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(connect(p.a, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  p.b = accept(l, nullptr, nullptr);
  ASSERT_GE(p.b, 0);
  close(l);
}

std::vector<std::byte> Decline(uint32_t diagnosis) {
  wire::ClcDecline d;
  d.peer_diagnosis = diagnosis;
  std::vector<std::byte> buf(wire::kClcMaxMessageLen);
  wire::WireResult<size_t> n = wire::EncodeClc(d, buf);
  EXPECT_TRUE(n.ok());
  buf.resize(n.ok() ? *n : 0);
  return buf;
}

void Write(int fd, const void* p, size_t n) {
  ASSERT_EQ(write(fd, p, n), static_cast<ssize_t>(n));
}

std::string ReadAvailable(int fd) {
  std::string out(4096, '\0');
  ssize_t n = recv(fd, out.data(), out.size(), MSG_DONTWAIT);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

TEST(LateClc, DropsOneWholeMessageAndKeepsTheAppBytes) {
  Pair p;
  MakePair(p);
  std::vector<std::byte> m = Decline(0x02010000);
  Write(p.a, m.data(), m.size());
  Write(p.a, m.data(), m.size());  // a second one is app data by then
  Write(p.a, "hello", 5);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(DropLateClc(p.b, /*wait=*/false), LateClc::kDone);
  std::string rest = ReadAvailable(p.b);
  ASSERT_EQ(rest.size(), m.size() + 5);
  EXPECT_EQ(0, std::memcmp(rest.data(), m.data(), m.size()));
  EXPECT_EQ(rest.substr(m.size()), "hello");
}

TEST(LateClc, AppBytesAtTheHeadAreLeftAlone) {
  Pair p;
  MakePair(p);
  // Starts like an eyecatcher, then is not one.
  const unsigned char bytes[] = {0xE2, 0xD4, 0xC3, 0x00, 'x', 'y', 'z', '!', 1};
  Write(p.a, bytes, sizeof bytes);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(DropLateClc(p.b, /*wait=*/false), LateClc::kDone);
  std::string rest = ReadAvailable(p.b);
  ASSERT_EQ(rest.size(), sizeof bytes);
  EXPECT_EQ(0, std::memcmp(rest.data(), bytes, sizeof bytes));
}

TEST(LateClc, NothingThereYetSaysEagain) {
  Pair p;
  MakePair(p);
  errno = 0;
  EXPECT_EQ(DropLateClc(p.b, /*wait=*/false), LateClc::kWouldBlock);
  EXPECT_EQ(errno, EAGAIN);
}

// Issue 16 (6a): a header whose body never comes held back every later
// byte until the total passed the length it announced. Half a message is
// not a usmc peer's (it writes each whole): its bytes are the app's, now.
TEST(LateClc, HalfAMessageIsLeftForTheAppAtOnce) {
  Pair p;
  MakePair(p);
  std::vector<std::byte> m = Decline(0x03010000);
  Write(p.a, m.data(), 10);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(DropLateClc(p.b, /*wait=*/false), LateClc::kDone);
  EXPECT_EQ(DropLateClc(p.b, /*wait=*/true), LateClc::kDone);
  Write(p.a, "ok", 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::string rest = ReadAvailable(p.b);
  ASSERT_EQ(rest.size(), 12u);
  EXPECT_EQ(0, std::memcmp(rest.data(), m.data(), 10));
  EXPECT_EQ(rest.substr(10), "ok");
}

TEST(LateClc, BlockingWaitsForTheFirstByteThenDrops) {
  Pair p;
  MakePair(p);
  std::vector<std::byte> m = Decline(0x03010000);
  std::thread late([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::vector<std::byte> both = m;
    both.insert(both.end(), {std::byte{'a'}, std::byte{'p'}, std::byte{'p'}});
    Write(p.a, both.data(), both.size());
  });
  EXPECT_EQ(DropLateClc(p.b, /*wait=*/true), LateClc::kDone);
  late.join();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(ReadAvailable(p.b), "app");
}

TEST(LateClc, BlockingHonoursSoRcvtimeo) {
  Pair p;
  MakePair(p);
  timeval tv{0, 20000};
  ASSERT_EQ(setsockopt(p.b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  errno = 0;
  EXPECT_EQ(DropLateClc(p.b, /*wait=*/true), LateClc::kWouldBlock);
  EXPECT_EQ(errno, EAGAIN);
}

TEST(LateClc, EofEndsTheCheck) {
  Pair p;
  MakePair(p);
  shutdown(p.a, SHUT_WR);
  EXPECT_EQ(DropLateClc(p.b, /*wait=*/true), LateClc::kDone);
}

}  // namespace
}  // namespace usmc::runtime
