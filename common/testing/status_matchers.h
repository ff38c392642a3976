#pragma once
// gMock matchers for Status and Result<T> (house style rule 17), for tests only:
//
//   EXPECT_THAT(store.Apply(batch), IsOk());
//   EXPECT_THAT(codes.Create(...), StatusIs(Code::kFailedPrecondition));
//   EXPECT_THAT(codes.Create(...), StatusIs(Code::kFailedPrecondition, HasSubstr("maximum")));
//   EXPECT_THAT(tokens.Get(...), IsOkAndHolds(Field(&Token::id, "x")));
//   ASSERT_OK(expr);  OTD_ASSERT_OK_AND_ASSIGN(auto v, expr);
//
// A failure prints the code and message of the Status.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>
#include <type_traits>

#include "common/status.h"

namespace otd {

inline void PrintTo(const Status& s, std::ostream* os) { *os << s.ToString(); }
inline void PrintTo(Code c, std::ostream* os) { *os << CodeName(c); }
template <class T>
void PrintTo(const Result<T>& r, std::ostream* os) {
  *os << (r.ok() ? std::string("OK (a value)") : r.status().ToString());
}

namespace testing {

namespace internal {
inline Status StatusOf(const Status& s) { return s; }
template <class T>
Status StatusOf(const Result<T>& r) {
  return r.status();
}
}  // namespace internal

MATCHER(IsOk, negation ? "is not OK" : "is OK") {
  const Status s = internal::StatusOf(arg);
  if (!s.ok()) {
    *result_listener << s.ToString();
  }
  return s.ok();
}

MATCHER_P(StatusIs, code,
          std::string(negation ? "has a code other than " : "has code ") + CodeName(code)) {
  const Status s = internal::StatusOf(arg);
  *result_listener << s.ToString();
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           std::string(negation ? "does not have code " : "has code ") + CodeName(code) +
               " and a message that " +
               ::testing::DescribeMatcher<std::string>(message_matcher, negation)) {
  const Status s = internal::StatusOf(arg);
  *result_listener << s.ToString();
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, s.message(), result_listener);
}

MATCHER_P(IsOkAndHolds, value_matcher,
          std::string(negation ? "is not OK or holds a value that "
                               : "is OK and holds a value that ") +
              ::testing::DescribeMatcher<std::decay_t<decltype(*std::declval<const arg_type&>())>>(
                  value_matcher, negation)) {
  if (!arg.ok()) {
    *result_listener << arg.status().ToString();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

}  // namespace testing
}  // namespace otd

#define OTD_STATUS_MACROS_CONCAT_INNER(a, b) a##b
#define OTD_STATUS_MACROS_CONCAT(a, b) OTD_STATUS_MACROS_CONCAT_INNER(a, b)

// Fatal / non-fatal "this Status or Result is OK" checks.
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::otd::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::otd::testing::IsOk())

// Declares `lhs` from a Result that must be OK (fatal otherwise).
#define OTD_ASSERT_OK_AND_ASSIGN(lhs, expr)                      \
  auto OTD_STATUS_MACROS_CONCAT(otd_result_, __LINE__) = (expr); \
  ASSERT_OK(OTD_STATUS_MACROS_CONCAT(otd_result_, __LINE__));    \
  lhs = std::move(OTD_STATUS_MACROS_CONCAT(otd_result_, __LINE__)).value()
