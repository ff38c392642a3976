#include "common/testing/status_matchers.h"

#include <gtest/gtest-spi.h>

#include <string>

#include "common/check.h"

namespace otd {
namespace {

using ::testing::HasSubstr;
using testing::IsOk;
using testing::IsOkAndHolds;
using ::testing::Not;
using testing::StatusIs;

TEST(StatusMatchersTest, MatchStatusesAndResults) {
  EXPECT_THAT(Status::Ok(), IsOk());
  EXPECT_THAT(NotFound("gone"), Not(IsOk()));
  EXPECT_THAT(NotFound("gone"), StatusIs(Code::kNotFound));
  EXPECT_THAT(NotFound("gone"), StatusIs(Code::kNotFound, HasSubstr("go")));
  EXPECT_THAT(NotFound("gone"), Not(StatusIs(Code::kNotFound, HasSubstr("here"))));
  EXPECT_THAT(NotFound("gone"), Not(StatusIs(Code::kInternal)));
  Result<int> seven = 7;
  EXPECT_THAT(seven, IsOk());
  EXPECT_THAT(seven, IsOkAndHolds(7));
  EXPECT_THAT(seven, Not(IsOkAndHolds(8)));
  Result<std::string> bad = Unavailable("down");
  EXPECT_THAT(bad, StatusIs(Code::kUnavailable, "down"));
  EXPECT_THAT(bad, Not(IsOkAndHolds("x")));
  EXPECT_OK(seven);
  OTD_ASSERT_OK_AND_ASSIGN(int v, Result<int>(41));
  EXPECT_EQ(v, 41);
}

TEST(StatusMatchersTest, AFailureShowsTheStatus) {
  EXPECT_NONFATAL_FAILURE(EXPECT_OK(Internal("the message")), "the message");
  EXPECT_FATAL_FAILURE(ASSERT_OK(Unavailable("hsm gone")), "hsm gone");
}

TEST(CheckTest, ABrokenInvariantAbortsNamingTheCondition) {
  EXPECT_DEATH(OTD_CHECK(1 + 1 == 3), "invariant_failed.*1 \\+ 1 == 3");
  OTD_CHECK(1 + 1 == 2);  // holds: nothing happens
}

}  // namespace
}  // namespace otd
