// negotiate/negotiate_test.cc: the API's mapping and its fail-soft contract.
// (The handshake itself is tested as root in tests/negotiate_*.)
#include "negotiate/negotiate.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>

#include "negotiate/loader.h"
#include "negotiate/negotiate_abi.h"
#include "wire/reason.h"

namespace usmc::negotiate {
namespace {

TEST(OutcomeFromStatus, BothOfferedIsTheOnlyYes) {
  Outcome o = OutcomeFromStatus(USMC_ST_SMC);
  EXPECT_EQ(o.answer, Answer::kBothOffered);
  EXPECT_EQ(o.detail, Detail::kBothOffered);
  EXPECT_EQ(o.reason, 0u);
  EXPECT_TRUE(o.both_offered());
}

TEST(OutcomeFromStatus, EveryNoCarriesAReason) {
  struct Case {
    int status;
    Detail detail;
    uint32_t reason;
  } cases[] = {
      {USMC_ST_NOT_OPTED_IN, Detail::kNotOptedIn, wire::kReasonPeerNoSmc},
      {USMC_ST_PENDING, Detail::kPending, wire::kReasonPeerNoSmc},
      {USMC_ST_PEER_NO_SMC, Detail::kPeerDidNotOffer, wire::kReasonPeerNoSmc},
      {USMC_ST_TFO, Detail::kFastOpen, wire::kReasonOptUnsupp},
      {USMC_ST_SYN_COOKIE, Detail::kSynCookie, wire::kReasonPeerNoSmc},
      {USMC_ST_NO_ROOM, Detail::kNoOptionRoom, wire::kReasonPeerNoSmc},
  };
  for (const Case& c : cases) {
    Outcome o = OutcomeFromStatus(c.status);
    EXPECT_EQ(o.answer, Answer::kNotBoth) << c.status;
    EXPECT_EQ(o.detail, c.detail) << c.status;
    EXPECT_EQ(o.reason, c.reason) << c.status;
  }
}

TEST(OutcomeFromStatus, UnknownValuesAreUnknown) {
  for (int status : {-1, 7, 1000}) {
    Outcome o = OutcomeFromStatus(status);
    EXPECT_EQ(o.answer, Answer::kUnknown);
    EXPECT_EQ(o.reason, wire::kReasonPeerNoSmc);
  }
}

TEST(OutcomeFromErrno, HooksAbsentIsUnknownPeerNoSmc) {
  for (int err : {ENOPROTOOPT, EOPNOTSUPP}) {
    Outcome o = OutcomeFromErrno(err);
    EXPECT_EQ(o.answer, Answer::kUnknown);
    EXPECT_EQ(o.detail, Detail::kHooksAbsent);
    EXPECT_EQ(o.reason, wire::kReasonPeerNoSmc);
  }
}

TEST(FailSoft, NonTcpSocketIsRefusedWithoutTouchingErrno) {
  // A UDP socket is never served, with or without the hooks attached.
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  errno = 1234;
  EXPECT_FALSE(OptIn(fd));
  EXPECT_EQ(errno, 1234);
  Outcome o = QueryOutcome(fd);
  EXPECT_NE(o.answer, Answer::kBothOffered);
  EXPECT_EQ(errno, 1234);
  close(fd);
}

TEST(FailSoft, BadFdNeverThrowsOrLeaksErrno) {
  errno = 77;
  EXPECT_FALSE(OptIn(-1));
  Outcome o = QueryOutcome(-1);
  EXPECT_EQ(o.answer, Answer::kUnknown);
  EXPECT_EQ(o.reason, wire::kReasonPeerNoSmc);
  EXPECT_EQ(errno, 77);
}

TEST(Printing, EnumsHaveNames) {
  std::ostringstream os;
  os << OutcomeFromStatus(USMC_ST_SYN_COOKIE);
  EXPECT_EQ(os.str(), "not-both (syn-cookie) reason 0x03010000 PEERNOSMC");
  EXPECT_EQ(ToString(Answer::kUnknown), "unknown");
  EXPECT_EQ(ToString(Detail::kFastOpen), "tcp-fast-open");
}

TEST(Loader, CounterNamesMatchTheAbi) {
  EXPECT_EQ(CounterNames()[USMC_CTR_OPTIONS_WRITTEN], "options_written");
  EXPECT_EQ(CounterNames()[USMC_CTR_COOKIE_FALLBACKS], "cookie_fallbacks");
  EXPECT_EQ(CounterNames()[USMC_CTR_SMC_PASSIVE], "smc_passive");
}

}  // namespace
}  // namespace usmc::negotiate
