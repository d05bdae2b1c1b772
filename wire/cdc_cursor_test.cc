// Cursor and sequence-number arithmetic against a reference model that
// counts absolute byte positions in 64 bits: position A in a ring of size S
// is the cursor {wrap = (A / S) mod 2^16, count = A mod S}. Ring sizes and
// steps are random (seeded), and positions run across several rollovers of
// the 16-bit wrap counter.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>

#include "wire/cdc.h"

namespace usmc::wire {
namespace {

constexpr uint64_t kWraps = 1u << 16;

Cursor At(uint64_t abs, uint32_t size) {
  return Cursor{static_cast<uint16_t>((abs / size) % kWraps),
                static_cast<uint32_t>(abs % size)};
}

// Compile-time checks of the tiny functions.
static_assert(CursorAdd(Cursor{0, 10}, 5, 16) == Cursor{0, 15});
static_assert(CursorAdd(Cursor{0, 10}, 6, 16) == Cursor{1, 0});
static_assert(CursorAdd(Cursor{0xFFFF, 10}, 6, 16) == Cursor{0, 0});
static_assert(CursorDiff(16, Cursor{3, 10}, Cursor{4, 2}) == 8);
static_assert(CursorDiff(16, Cursor{3, 10}, Cursor{3, 2}) == 0);  // clamped
static_assert(CursorDiffLarge(16, Cursor{0xFFFF, 10}, Cursor{0, 2}) == 8);
static_assert(CursorDiffLarge(16, Cursor{1, 0}, Cursor{5, 0}) == 16);
static_assert(CursorIsAhead(Cursor{0xFFFF, 5}, Cursor{0, 1}));
static_assert(!CursorIsAhead(Cursor{0, 1}, Cursor{0xFFFF, 5}));
static_assert(CursorComp(16, Cursor{0, 1}, Cursor{0xFFFF, 5}) == -12);
static_assert(CursorUpdateAccepted(Cursor{0xFFFF, 5}, Cursor{0, 1}));
static_assert(!CursorUpdateAccepted(Cursor{5, 5}, Cursor{4, 9}));
static_assert(SeqnoBefore(0xFFFF, 0) && !SeqnoBefore(0, 0xFFFF));
static_assert(SeqnoDistance(0xFFFE, 3) == 5);

class CursorModel : public ::testing::Test {
 protected:
  uint32_t RandomSize() {
    switch (rng_() % 6) {
      case 0:
        return 1 + static_cast<uint32_t>(rng_() % 64);  // tiny rings
      case 1:
        return 16 * 1024;
      case 2:
        return 64 * 1024 - 32;  // SMC-D: DMB minus the CDC area
      case 3:
        return 1u << 20;
      default:
        return 1 + static_cast<uint32_t>(rng_() % (1u << 20));
    }
  }
  // A start position anywhere in the first three rollovers of wrap.
  uint64_t RandomPos(uint32_t size) {
    if (rng_() % 4 == 0) {  // right before a rollover
      uint64_t lap = (kWraps * (1 + rng_() % 2)) - 1;
      return lap * size + rng_() % size;
    }
    return rng_() % (3 * kWraps * size);
  }
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  std::mt19937_64 rng_{20260101};
};

TEST_F(CursorModel, AddMatchesAbsolutePositions) {
  for (int i = 0; i < 200000; ++i) {
    const uint32_t s = RandomSize();
    const uint64_t a = RandomPos(s);
    uint32_t n;
    switch (rng_() % 4) {
      case 0:
        n = 0;
        break;
      case 1:
        n = s;
        break;  // exactly one lap
      case 2:
        n = static_cast<uint32_t>(Below(s));
        break;
      default:
        n = static_cast<uint32_t>(Below(3ull * s));
        break;
    }
    ASSERT_EQ(CursorAdd(At(a, s), n, s), At(a + n, s))
        << "size " << s << " at " << a << " + " << n;
    ASSERT_TRUE(CursorValid(CursorAdd(At(a, s), n, s), s));
  }
}

TEST_F(CursorModel, DiffIsTheDistanceWithinOneLap) {
  for (int i = 0; i < 200000; ++i) {
    const uint32_t s = RandomSize();
    const uint64_t a = RandomPos(s);
    const uint64_t d = (rng_() % 8 == 0) ? s : Below(uint64_t{s} + 1);
    ASSERT_EQ(CursorDiff(s, At(a, s), At(a + d, s)), d)
        << "size " << s << " at " << a << " + " << d;
    ASSERT_EQ(CursorComp(s, At(a, s), At(a + d, s)), static_cast<int64_t>(d));
    if (d != 0 && d <= a) {
      // Backwards: the signed comparison reports a negative distance.
      ASSERT_EQ(CursorComp(s, At(a, s), At(a - d, s)),
                -static_cast<int64_t>(d));
    }
  }
}

TEST_F(CursorModel, DiffClampsABackwardsCursorInTheSameWrapToZero) {
  for (int i = 0; i < 50000; ++i) {
    const uint32_t s = RandomSize();
    if (s < 2) continue;
    const uint64_t lap = RandomPos(s) / s;
    const uint64_t hi = lap * s + 1 + Below(s - 1);
    const uint64_t lo = lap * s + Below(hi - lap * s);
    ASSERT_EQ(CursorDiff(s, At(hi, s), At(lo, s)), 0u);
  }
}

TEST_F(CursorModel, DiffLargeIsTheDistanceCappedAtTheRingSize) {
  for (int i = 0; i < 200000; ++i) {
    const uint32_t s = RandomSize();
    const uint64_t a = RandomPos(s);
    // Anything up to (2^16 - 1) laps ahead keeps the wrap distance exact.
    const uint64_t d = Below((kWraps - 1) * s);
    ASSERT_EQ(CursorDiffLarge(s, At(a, s), At(a + d, s)),
              std::min<uint64_t>(d, s))
        << "size " << s << " at " << a << " + " << d;
  }
}

TEST_F(CursorModel, OrderFollowsAbsolutePositionsAcrossRollover) {
  for (int i = 0; i < 200000; ++i) {
    const uint32_t s = RandomSize();
    const uint64_t a = RandomPos(s) + kWraps * s;  // room to go backwards
    const uint64_t d = Below((kWraps / 2 - 1) * uint64_t{s});
    const bool forward = rng_() % 2 == 0;
    const uint64_t b = forward ? a + d : a - d;
    const int want = d == 0 ? 0 : (forward ? 1 : -1);
    ASSERT_EQ(CursorOrder(At(a, s), At(b, s)), want)
        << "size " << s << " a " << a << " b " << b;
    ASSERT_EQ(CursorIsAhead(At(a, s), At(b, s)), want > 0);
  }
}

// The kernel's receive rule accepts any update that moves forward by at
// most one lap (including across the 0xffff -> 0 rollover), and refuses a
// backwards update unless the new wrap is 0 (taken as a rollover) or the old
// wrap is 0 and the new one 0xffff (plain ">" on wrap does not see that this
// is backwards; usmc's CursorOrder does).
TEST_F(CursorModel, UpdateAcceptedMatchesTheKernelRule) {
  for (int i = 0; i < 200000; ++i) {
    const uint32_t s = RandomSize();
    const uint64_t a = RandomPos(s) + uint64_t{s};
    const uint64_t d = Below(uint64_t{s} + 1);
    const Cursor old_c = At(a, s);
    EXPECT_TRUE(CursorUpdateAccepted(old_c, At(a + d, s)))
        << "size " << s << " at " << a << " + " << d;
    if (d == 0) continue;
    const Cursor back = At(a - d, s);
    const bool kernel_accepts = (back.wrap == 0 && old_c.wrap != 0) ||
                                (old_c.wrap == 0 && back.wrap == 0xFFFF);
    EXPECT_EQ(CursorUpdateAccepted(old_c, back), kernel_accepts)
        << "size " << s << " at " << a << " - " << d;
  }
}

TEST_F(CursorModel, SeqnoOrderFollowsCountersAcrossRollover) {
  for (int i = 0; i < 200000; ++i) {
    const uint64_t a = rng_() % (1u << 20);
    const uint64_t b = a + Below(1u << 15);  // less than half the space
    const auto sa = static_cast<uint16_t>(a);
    const auto sb = static_cast<uint16_t>(b);
    ASSERT_EQ(SeqnoBefore(sa, sb), a < b) << a << " " << b;
    ASSERT_FALSE(SeqnoBefore(sb, sa)) << a << " " << b;
    ASSERT_EQ(SeqnoDistance(sa, sb), static_cast<int64_t>(b - a));
  }
}

TEST(CursorValid, CountMustBeInsideTheRing) {
  EXPECT_TRUE(CursorValid(Cursor{9, 0}, 1));
  EXPECT_FALSE(CursorValid(Cursor{0, 1}, 1));
  EXPECT_TRUE(CursorValid(Cursor{0, 65535}, 65536));
  EXPECT_FALSE(CursorValid(Cursor{0, 65536}, 65536));
}

TEST(CursorText, PrintsLikeSmcss) {
  EXPECT_EQ(ToString(Cursor{1, 0x86a0}), "0001:000086a0");
}

}  // namespace
}  // namespace usmc::wire
