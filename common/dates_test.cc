#include "common/dates.h"

#include <gtest/gtest.h>

namespace otd {
namespace {

TEST(DatesTest, UtcSecondsIsStrict) {
  EXPECT_EQ(ParseUtcSeconds("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseUtcSeconds("2016-11-17T20:01:00Z"), 1479412860);
  EXPECT_EQ(ParseUtcSeconds("2024-02-29T23:59:59Z"), 1709251199);
  for (const char* bad :
       {"2023-02-29T00:00:00Z", "2016-11-17T20:01:00.000Z", "2016-11-17 20:01:00Z",
        "2016-11-17T20:01:00+00:00", "2016-11-17t20:01:00Z", "2016-13-01T00:00:00Z",
        "2016-11-17T24:00:00Z", "2016-11-17T20:60:00Z", "2016-11-17T20:01:60Z",
        "2016-1-17T20:01:00Z", "", "x016-11-17T20:01:00Z", "2016-11-17T20:01:00z"}) {
    EXPECT_EQ(ParseUtcSeconds(bad), std::nullopt) << bad;
  }
}

TEST(DatesTest, Rfc3339TakesFractionsAndOffsets) {
  EXPECT_EQ(ParseRfc3339("2016-11-17T20:01:00Z"), 1479412860);
  EXPECT_EQ(ParseRfc3339("2016-11-17T20:01:00.999Z"), 1479412860);  // toISOString()
  EXPECT_EQ(ParseRfc3339("2016-11-17t20:01:00.123456789z"), 1479412860);
  EXPECT_EQ(ParseRfc3339("2016-11-17T21:01:00+01:00"), 1479412860);
  EXPECT_EQ(ParseRfc3339("2016-11-17T19:31:00-00:30"), 1479412860);
  EXPECT_EQ(ParseRfc3339("2016-12-31T23:59:60Z"), ParseRfc3339("2016-12-31T23:59:59Z"));
  for (const char* bad :
       {"2016-11-17T20:01:00", "2016-11-17T20:01:00.Z", "2016-11-17T20:01:00+0100",
        "2016-11-17T20:01:00+24:00", "2016-02-30T00:00:00Z", "2016-11-17T20:01Z",
        "2016-11-17T20:01:00Zjunk", "2016-11-17T20:01:00 Z"}) {
    EXPECT_EQ(ParseRfc3339(bad), std::nullopt) << bad;
  }
}

// What common libraries print (issue 17: the OT1 date header takes these).
TEST(DatesTest, Rfc3339TakesWhatCommonLibrariesPrint) {
  constexpr int64_t kT = 1796544000;                                // 2026-12-06T08:00:00Z
  EXPECT_EQ(ParseRfc3339("2026-12-06T08:00:00.123Z"), kT);          // JavaScript toISOString()
  EXPECT_EQ(ParseRfc3339("2026-12-06T08:00:00.123456+00:00"), kT);  // Python isoformat()
  EXPECT_EQ(ParseRfc3339("2026-12-06T09:00:00+01:00"), kT);         // Go time.RFC3339
  EXPECT_EQ(ParseRfc3339("2026-12-06T08:00:00.999999999Z"), kT);    // Go time.RFC3339Nano
  EXPECT_EQ(ParseRfc3339("2026-12-06T00:00:00-08:00"), kT);         // date -Iseconds (US)
  EXPECT_EQ(ParseRfc3339("2026-12-06T08:00:00+00:00"), kT);         // date -Iseconds -u
}

}  // namespace
}  // namespace otd
