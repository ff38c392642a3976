#include "crypto/random.h"
#include "common/testing/status_matchers.h"

#include <gtest/gtest.h>

#include <array>
#include <set>
#include <string>

namespace otd::crypto {
namespace {

bool AllInAlphabet(std::string_view s) {
  return s.find_first_not_of(kUrlSafeAlphabet) == std::string_view::npos;
}

TEST(RandomTest, RandomBytesFillsTheBufferAndDiffersBetweenCalls) {
  std::array<uint8_t, 32> a{};
  std::array<uint8_t, 32> b{};
  ASSERT_OK(RandomBytes(a));
  ASSERT_OK(RandomPrivateBytes(b));
  EXPECT_NE(a, (std::array<uint8_t, 32>{}));
  EXPECT_NE(a, b);
}

TEST(RandomTest, EmptyBufferIsFine) {
  EXPECT_OK(RandomBytes(std::span<uint8_t>()));
  EXPECT_OK(RandomPrivateBytes(std::span<uint8_t>()));
}

TEST(RandomTest, RandomSecretHasTheRequestedSize) {
  Result<SecretBytes> a = RandomSecret(32);
  Result<SecretBytes> b = RandomSecret(32);
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_EQ(a->size(), 32u);
  EXPECT_FALSE(ConstantTimeEquals(*a, *b));
  Result<SecretBytes> none = RandomSecret(0);
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
}

TEST(RandomTest, UrlSafeStringHasTheRequestedLengthAndAlphabet) {
  for (size_t n : {1u, 16u, 32u, 43u, 100u}) {
    Result<std::string> s = RandomUrlSafeString(n);
    ASSERT_OK(s);
    EXPECT_EQ(s->size(), n);
    EXPECT_TRUE(AllInAlphabet(*s)) << *s;
  }
}

TEST(RandomTest, UrlSafeStringsDoNotRepeatOverAThousandDraws) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    Result<std::string> s = RandomUrlSafeString(32);
    ASSERT_OK(s);
    EXPECT_TRUE(seen.insert(*s).second) << "repeat after " << i << " draws";
  }
}

TEST(RandomTest, UrlSafeStringsUseTheWholeAlphabet) {
  // 64 symbols over 64,000 characters: every symbol appears (P(miss) < 64 * e^-1000).
  std::set<char> symbols;
  for (int i = 0; i < 1000; ++i) {
    Result<std::string> s = RandomUrlSafeString(64);
    ASSERT_OK(s);
    symbols.insert(s->begin(), s->end());
  }
  EXPECT_EQ(symbols.size(), 64u);
}

TEST(RandomTest, UrlSafeSecretHasTheRequestedLengthAndAlphabet) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    Result<SecretBytes> s = RandomUrlSafeSecret(32);
    ASSERT_OK(s);
    const std::string_view text = s->RevealString(SecretAccess::Grant());
    EXPECT_EQ(text.size(), 32u);
    EXPECT_TRUE(AllInAlphabet(text));
    EXPECT_TRUE(seen.insert(std::string(text)).second);
  }
}

TEST(RandomTest, UrlSafeStringRejectsZeroAndHugeLengths) {
  EXPECT_EQ(RandomUrlSafeString(0).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(RandomUrlSafeString(kMaxRandomStringChars + 1).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(RandomUrlSafeSecret(0).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace otd::crypto
