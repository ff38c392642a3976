#include "common/status.h"
#include "common/testing/status_matchers.h"

#include <gtest/gtest.h>

#include <memory>

namespace otd {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

Result<int> Half(int x) {
  if (x % 2 != 0) {
    return InvalidArgument("odd");
  }
  return x / 2;
}

Result<int> Quarter(int x) {
  OTD_ASSIGN_OR_RETURN(int h, Half(x));
  OTD_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int x) {
  OTD_RETURN_IF_ERROR(Half(x).status());
  return Status::Ok();
}

TEST(StatusTest, OkStatusHasNoMessage) {
  Status s = Status::Ok();
  EXPECT_OK(s);
  EXPECT_EQ(s.ToString(), "ok");
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status s = NotFound("no such record");
  EXPECT_THAT(s, Not(IsOk()));
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.ToString(), "not_found: no such record");
}

TEST(ResultTest, AssignOrReturnPropagatesFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  auto r = Quarter(6);  // 6/2 = 3 is odd
  ASSERT_THAT(r, Not(IsOk()));
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_OK(CheckEven(4));
  EXPECT_EQ(CheckEven(5).code(), Code::kInvalidArgument);
}

TEST(ResultTest, HoldsMoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  ASSERT_OK(r);
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);
}

}  // namespace
}  // namespace otd
