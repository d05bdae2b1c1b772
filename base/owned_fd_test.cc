#include "base/owned_fd.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <utility>
#include <vector>

namespace usmc::base {
namespace {

using Ranges = std::vector<std::pair<unsigned, unsigned>>;

Ranges Gaps(unsigned first, unsigned last) {
  Ranges r;
  ForEachUnownedRange(
      first, last,
      [](unsigned lo, unsigned hi, void* arg) {
        static_cast<Ranges*>(arg)->emplace_back(lo, hi);
        return 0;
      },
      &r);
  return r;
}

TEST(OwnedFd, RangesSkipOwnedFds) {
  MarkOwnedFd(70);
  MarkOwnedFd(71);
  MarkOwnedFd(200);
  EXPECT_EQ(Gaps(3, ~0u), (Ranges{{3, 69}, {72, 199}, {201, ~0u}}));
  EXPECT_EQ(Gaps(70, 71), Ranges{});
  EXPECT_EQ(Gaps(71, 72), (Ranges{{72, 72}}));
  EXPECT_EQ(Gaps(3, 70), (Ranges{{3, 69}}));
  EXPECT_EQ(Gaps(300, 400), (Ranges{{300, 400}}));
  DisownFd(70);
  DisownFd(71);
  DisownFd(200);
  EXPECT_EQ(Gaps(3, ~0u), (Ranges{{3, ~0u}}));
  EXPECT_FALSE(IsOwnedFd(-1));
}

TEST(OwnedFd, OwnFdMovesAboveTheFloor) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  const int fd = OwnFd(p[0]);
  EXPECT_GE(fd, kOwnedFdFloor);
  EXPECT_TRUE(IsOwnedFd(fd));
  EXPECT_FALSE(IsOwnedFd(p[0]));
  EXPECT_EQ(write(p[1], "x", 1), 1);
  char c = 0;
  EXPECT_EQ(read(fd, &c, 1), 1);  // the same pipe
  EXPECT_EQ(CloseOwnedFd(fd), 0);
  EXPECT_FALSE(IsOwnedFd(fd));
  close(p[1]);
}

}  // namespace
}  // namespace usmc::base
