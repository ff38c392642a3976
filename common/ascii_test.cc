#include "common/ascii.h"

#include <gtest/gtest.h>

#include <cctype>
#include <memory>
#include <string>

namespace otd {
namespace {

static_assert(AsciiLower('A') == 'a' && AsciiLower('Z') == 'z' && AsciiLower('@') == '@');
static_assert(AsciiEqualsIgnoreCase("Content-Length", "content-LENGTH"));
static_assert(!AsciiEqualsIgnoreCase("Host", "Hos"));
static_assert(AsciiStartsWithIgnoreCase("BEARER abc", "Bearer "));

TEST(AsciiTest, FoldsExactlyLikeTolowerInTheCLocaleForEveryByte) {
  // The daemon never calls setlocale: std::tolower is the "C" locale's, the behaviour the
  // replaced call sites had.
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    EXPECT_EQ(AsciiLower(c), static_cast<char>(std::tolower(b))) << b;
    for (int o = 0; o < 256; ++o) {
      const char d = static_cast<char>(o);
      const bool same = std::tolower(b) == std::tolower(o);
      ASSERT_EQ(AsciiEqualsIgnoreCase(std::string_view(&c, 1), std::string_view(&d, 1)), same)
          << b << " " << o;
    }
  }
  std::string all;
  for (int b = 0; b < 256; ++b) {
    all.push_back(static_cast<char>(b));
  }
  const std::string lower = AsciiLowerCopy(all);
  ASSERT_EQ(lower.size(), 256u);
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(lower[b], static_cast<char>(std::tolower(b))) << b;
  }
}

TEST(AsciiTest, ComparesOnlyTheBytesOfItsArguments) {
  // Exact-size heap buffers whose last bytes differ only in case: under ASan a read past either
  // end is a heap-buffer-overflow (what beast::iequals does here).
  for (size_t n = 1; n <= 3; ++n) {
    auto a = std::make_unique<char[]>(n);
    auto b = std::make_unique<char[]>(n);
    for (size_t i = 0; i < n; ++i) {
      a[i] = 'a';
      b[i] = 'A';
    }
    EXPECT_TRUE(AsciiEqualsIgnoreCase({a.get(), n}, {b.get(), n}));
    EXPECT_TRUE(AsciiStartsWithIgnoreCase({a.get(), n}, {b.get(), n}));
    b[n - 1] = 'B';
    EXPECT_FALSE(AsciiEqualsIgnoreCase({a.get(), n}, {b.get(), n}));
  }
  EXPECT_TRUE(AsciiEqualsIgnoreCase("", ""));
  EXPECT_FALSE(AsciiStartsWithIgnoreCase("Bear", "Bearer "));
  EXPECT_EQ(AsciiLowerCopy("MiXeD-Case_1\xC3\x84"), "mixed-case_1\xC3\x84");
}

}  // namespace
}  // namespace otd
