#include "crypto/totp.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "crypto/encoding.h"

namespace otd::crypto {
namespace {

SecretBytes Rfc6238Seed() {
  return SecretBytes::CopyFrom(std::string_view("12345678901234567890"));
}

std::string CodeOf(const Result<std::string>& r) {
  EXPECT_OK(r);
  return r.ok() ? *r : std::string();
}

struct TotpVector {
  int64_t time;
  const char* code8;
};

// RFC 6238 Appendix B, SHA1 rows.
constexpr std::array<TotpVector, 6> kRfc6238Sha1 = {{
    {59, "94287082"},
    {1111111109, "07081804"},
    {1111111111, "14050471"},
    {1234567890, "89005924"},
    {2000000000, "69279037"},
    {20000000000, "65353130"},
}};

TEST(TotpTest, MatchesRfc6238AppendixBSha1VectorsWithEightDigits) {
  const SecretBytes key = Rfc6238Seed();
  for (const auto& v : kRfc6238Sha1) {
    EXPECT_EQ(CodeOf(TotpCode(key, v.time, 30, 8)), v.code8) << v.time;
  }
}

TEST(TotpTest, SixDigitCodesAreTheLastSixOfTheEightDigitVectors) {
  const SecretBytes key = Rfc6238Seed();
  for (const auto& v : kRfc6238Sha1) {
    EXPECT_EQ(CodeOf(TotpCode(key, v.time)), std::string(v.code8).substr(2)) << v.time;
  }
}

TEST(TotpTest, CodeIsConstantWithinAPeriodAndChangesAtItsEnd) {
  const SecretBytes key = Rfc6238Seed();
  EXPECT_EQ(CodeOf(TotpCode(key, 1111111110)), CodeOf(TotpCode(key, 1111111119)));
  EXPECT_NE(CodeOf(TotpCode(key, 1111111109)), CodeOf(TotpCode(key, 1111111110)));
}

TEST(TotpTest, HotpMatchesRfc4226AppendixD) {
  const SecretBytes key = Rfc6238Seed();
  const std::vector<std::string> want = {"755224", "287082", "359152", "969429", "338314",
                                         "254676", "287922", "162583", "399871", "520489"};
  for (uint64_t counter = 0; counter < want.size(); ++counter) {
    EXPECT_EQ(CodeOf(HotpCode(key, counter)), want[counter]) << counter;
  }
}

TEST(TotpTest, RejectsBadArguments) {
  const SecretBytes key = Rfc6238Seed();
  EXPECT_EQ(TotpCode(SecretBytes(), 59).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(TotpCode(key, -1).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(TotpCode(key, 59, 0).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(TotpCode(key, 59, 30, 5).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(TotpCode(key, 59, 30, 9).status().code(), Code::kInvalidArgument);
}

TEST(TotpTest, CodeEqualityComparesWholeStrings) {
  EXPECT_TRUE(TotpCodeEquals("287082", "287082"));
  EXPECT_FALSE(TotpCodeEquals("287082", "287083"));
  EXPECT_FALSE(TotpCodeEquals("287082", "28708"));
  EXPECT_FALSE(TotpCodeEquals("287082", ""));
  EXPECT_TRUE(TotpCodeEquals("", ""));
}

TEST(TotpTest, OtpauthUriHasTheKeyUriFormat) {
  EXPECT_EQ(OtpauthUri("OpenToken", "alice", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            "otpauth://totp/OpenToken:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
            "&issuer=OpenToken");
}

TEST(TotpTest, OtpauthUriPercentEncodesIssuerAndAccountAndDropsPadding) {
  EXPECT_EQ(OtpauthUri("Open Token & Co", "a:b/c?d#e%f.g_h~i-j", "MZXW6YTBOI======"),
            "otpauth://totp/Open%20Token%20%26%20Co:a%3Ab%2Fc%3Fd%23e%25f.g_h~i-j"
            "?secret=MZXW6YTBOI&issuer=Open%20Token%20%26%20Co");
  // Non-ASCII bytes are encoded byte by byte (UTF-8 "é" is C3 A9).
  EXPECT_EQ(OtpauthUri("\xc3\xa9", "x", "MY"), "otpauth://totp/%C3%A9:x?secret=MY&issuer=%C3%A9");
  // A key that is not base32 cannot inject parameters.
  EXPECT_EQ(OtpauthUri("I", "a", "AB&digits=8"),
            "otpauth://totp/I:a?secret=AB%26digits%3D8&issuer=I");
}

TEST(TotpTest, OtpauthUriSecretBuildsTheSameUriFromTheRawKey) {
  const SecretBytes key = Rfc6238Seed();
  Result<SecretBytes> uri = OtpauthUriSecret("OpenToken", "alice@example.com", key);
  ASSERT_OK(uri);
  EXPECT_EQ(uri->RevealString(SecretAccess::Grant()),
            OtpauthUri("OpenToken", "alice@example.com", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
  // A 32-byte key's base32 form has padding, which the URI leaves out.
  const SecretBytes long_key = SecretBytes::CopyFrom(Bytes(32, 0xa5));
  Result<SecretBytes> long_uri = OtpauthUriSecret("I", "a", long_key);
  ASSERT_OK(long_uri);
  EXPECT_EQ(long_uri->RevealString(SecretAccess::Grant()),
            OtpauthUri("I", "a", Base32Encode(Bytes(32, 0xa5))));
  const std::string_view text = long_uri->RevealString(SecretAccess::Grant());
  const size_t begin = text.find("secret=") + 7;
  const std::string_view secret = text.substr(begin, text.find("&issuer=") - begin);
  EXPECT_EQ(secret.size(), 52u);  // 32 bytes -> 52 base32 characters + 4 '=' left out
  EXPECT_EQ(secret.find('='), std::string_view::npos);
  EXPECT_EQ(OtpauthUriSecret("I", "a", SecretBytes()).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace otd::crypto
