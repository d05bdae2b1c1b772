#include "base/status.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace usmc {
namespace {

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(StatusTest, FromErrnoMapsPermission) {
  Status s = Status::FromErrno(EPERM, "bpf(BPF_PROG_LOAD)");
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(s.sys_errno(), EPERM);
  EXPECT_NE(s.message().find("bpf(BPF_PROG_LOAD)"), std::string::npos);
}

TEST(ResultTest, HoldsValueOrStatus) {
  Result<int> good(7);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 7);
  Result<int> bad(Status(StatusCode::kNotFound, "no such thing"));
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kNotFound);
}

Status FailsThenPropagates() {
  USMC_RETURN_IF_ERROR(Status(StatusCode::kInternal, "inner"));
  return OkStatus();
}

TEST(StatusTest, ReturnIfErrorPropagates) {
  EXPECT_EQ(FailsThenPropagates().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace usmc
