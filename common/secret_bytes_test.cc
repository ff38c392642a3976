#include "common/secret_bytes.h"

#include <gtest/gtest.h>
#include <openssl/crypto.h>

#include <sstream>

namespace otd {
namespace {

TEST(SecretBytesTest, CopyRevealAndCompare) {
  SecretBytes a = SecretBytes::CopyFrom(std::string_view("hunter2"));
  SecretBytes b = a.Clone();
  EXPECT_EQ(a.size(), 7u);
  EXPECT_EQ(a.RevealString(SecretAccess::Grant()), "hunter2");
  EXPECT_TRUE(ConstantTimeEquals(a, b));
  SecretBytes c = SecretBytes::CopyFrom(std::string_view("hunter3"));
  EXPECT_FALSE(ConstantTimeEquals(a, c));
  SecretBytes d = SecretBytes::CopyFrom(std::string_view("hunter"));
  EXPECT_FALSE(ConstantTimeEquals(a, d));
}

TEST(SecretBytesTest, MovedFromIsEmpty) {
  SecretBytes a = SecretBytes::CopyFrom(std::string_view("secret"));
  SecretBytes b = std::move(a);
  EXPECT_EQ(b.size(), 6u);
  EXPECT_EQ(a.size(), 0u);  // NOLINT(bugprone-use-after-move): the contract under test
  EXPECT_TRUE(a.empty());
}

TEST(SecretBytesTest, PrintingNeverShowsContents) {
  SecretBytes a = SecretBytes::CopyFrom(std::string_view("top-secret-value"));
  std::ostringstream os;
  os << a;
  EXPECT_EQ(os.str().find("top-secret"), std::string::npos);
  EXPECT_NE(os.str().find("redacted"), std::string::npos);
}

TEST(SecretBytesTest, TruncateWipesTail) {
  SecretBytes a = SecretBytes::CopyFrom(std::string_view("abcdef"));
  a.Truncate(3);
  EXPECT_EQ(a.RevealString(SecretAccess::Grant()), "abc");
}

TEST(SecretBytesTest, LivesOnSecureHeapOnceInitialised) {
  // The daemon initialises the secure heap before any secret exists (daemon/hardening.cc);
  // this checks that SecretBytes then really allocates from it.
  if (CRYPTO_secure_malloc_initialized() == 0) {
    ASSERT_GE(CRYPTO_secure_malloc_init(1 << 16, 16), 1);
  }
  SecretBytes a = SecretBytes::CopyFrom(std::string_view("on the secure heap"));
  EXPECT_TRUE(a.IsOnSecureHeap());
}

TEST(SecretBytesTest, LargeSecretsFallBackToTheNormalHeap) {
  // Regression: a 1 MiB payload in a 1 MiB secure heap made the allocation fail (HTTP 500).
  if (CRYPTO_secure_malloc_initialized() == 0) {
    ASSERT_GE(CRYPTO_secure_malloc_init(1 << 16, 16), 1);
  }
  SecretBytes big(4u << 20);
  ASSERT_EQ(big.size(), 4u << 20);
  EXPECT_FALSE(big.IsOnSecureHeap());
  big.MutableReveal(SecretAccess::Grant())[0] = 7;
  SecretBytes copy = big.Clone();
  EXPECT_TRUE(ConstantTimeEquals(big, copy));
  SecretBytes small(32);
  EXPECT_TRUE(small.IsOnSecureHeap());
}

}  // namespace
}  // namespace otd
