#include "runtime/smc_socket.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "runtime/smc_socket_test_util.h"
#include "wire/reason.h"

namespace usmc::runtime {
namespace {

using testing::ForkClient;
using testing::WaitChild;

Options Client() { return Options{.role = engine::Role::kClient}; }
Options Server() { return Options{.role = engine::Role::kServer}; }

TEST(SmcSocketTest, HandshakeReachesSmcdAndMovesBytes) {
  pid_t child;
  int fd = ForkClient(
      [](int fd) {
        auto s = SmcSocket::Upgrade(fd, Client());
        if (!s.ok() || !(*s)->is_smc()) return 1;
        const char msg[] = "hello over SMC-D";
        if ((*s)->Send(msg, sizeof msg, 0) != sizeof msg) return 2;
        char reply[8] = {};
        if ((*s)->Recv(reply, 3, MSG_WAITALL) != 3) return 3;
        if (std::string(reply, 3) != "ack") return 4;
        return (*s)->Close() == 0 ? 0 : 5;
      },
      &child);
  auto s = SmcSocket::Upgrade(fd, Server());
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->is_smc()) << wire::FormatReason(
      (*s)->status().engine.local_reason);
  char buf[64] = {};
  ASSERT_EQ((*s)->Recv(buf, 17, MSG_WAITALL), 17);
  EXPECT_STREQ(buf, "hello over SMC-D");
  ASSERT_EQ((*s)->Send("ack", 3, 0), 3);
  EXPECT_EQ((*s)->Recv(buf, sizeof buf, 0), 0);  // client closed: EOF
  EXPECT_EQ(WaitChild(child), 0);
}

}  // namespace
}  // namespace usmc::runtime
