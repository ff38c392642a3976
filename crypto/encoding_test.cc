#include "crypto/encoding.h"
#include "common/testing/status_matchers.h"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace otd::crypto {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

// RFC 4648 §10.
constexpr std::array<std::string_view, 7> kPlain = {"",     "f",     "fo",    "foo",
                                                    "foob", "fooba", "foobar"};

std::string DecodedString(const Result<Bytes>& r) {
  EXPECT_OK(r);
  return r.ok() ? std::string(AsString(*r)) : std::string();
}

TEST(EncodingTest, HexMatchesRfc4648VectorsInLowercase) {
  const std::vector<std::string> want = {"",         "66",         "666f",        "666f6f",
                                         "666f6f62", "666f6f6261", "666f6f626172"};
  for (size_t i = 0; i < kPlain.size(); ++i) {
    EXPECT_EQ(HexEncode(AsBytes(kPlain[i])), want[i]);
    EXPECT_EQ(DecodedString(HexDecode(want[i])), kPlain[i]);
  }
}

TEST(EncodingTest, HexDecodeAcceptsUppercaseDigits) {
  EXPECT_EQ(DecodedString(HexDecode("666F6F626172")), "foobar");
  EXPECT_EQ(HexEncode(Bytes{0x00, 0xab, 0xff}), "00abff");
}

TEST(EncodingTest, HexDecodeRejectsOddLengthAndNonHexCharacters) {
  for (const char* bad : {"0", "abc", "0g", "zz", " 00", "00 ", "0x00", "+0", "00\n"}) {
    Result<Bytes> r = HexDecode(bad);
    EXPECT_THAT(r, Not(IsOk())) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(EncodingTest, Base64MatchesRfc4648Vectors) {
  const std::vector<std::string> want = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                         "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (size_t i = 0; i < kPlain.size(); ++i) {
    EXPECT_EQ(Base64Encode(AsBytes(kPlain[i])), want[i]);
    EXPECT_EQ(DecodedString(Base64Decode(want[i])), kPlain[i]);
  }
}

TEST(EncodingTest, Base64UsesPlusAndSlashAndBase64UrlUsesDashAndUnderscore) {
  const Bytes bytes = {0xfb, 0xff, 0xbf, 0xfb, 0xff};
  EXPECT_EQ(Base64Encode(bytes), "+/+/+/8=");
  EXPECT_EQ(Base64UrlEncode(bytes), "-_-_-_8");
  Result<Bytes> std_round = Base64Decode("+/+/+/8=");
  ASSERT_OK(std_round);
  EXPECT_EQ(*std_round, bytes);
  Result<Bytes> url_round = Base64UrlDecode("-_-_-_8");
  ASSERT_OK(url_round);
  EXPECT_EQ(*url_round, bytes);
}

TEST(EncodingTest, Base64UrlMatchesRfc4648VectorsWithoutPadding) {
  const std::vector<std::string> want = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  for (size_t i = 0; i < kPlain.size(); ++i) {
    EXPECT_EQ(Base64UrlEncode(AsBytes(kPlain[i])), want[i]);
    EXPECT_EQ(DecodedString(Base64UrlDecode(want[i])), kPlain[i]);
  }
}

TEST(EncodingTest, Base64DecodeRejectsMalformedInput) {
  for (const char* bad : {
           "Zg",          // missing padding
           "Zg=",         // short padding
           "Zg===",       // too much padding
           "Z===",        // a single data character in the last block
           "====",        // padding only
           "Zg==Zg==",    // padding inside the data
           "Zm9v\nYmFy",  // line break
           "Zm9v YmFy",   // space
           "Zm9-",        // base64url character
           "Zm9_",        // base64url character
           "Zh==",        // non-zero unused bits ("f" is "Zg==")
           "Zm9=",        // non-zero unused bits ("fo" is "Zm8=")
           "Zm9vY",       // impossible length
           "Zm9\x80",     // non-ASCII byte
       }) {
    Result<Bytes> r = Base64Decode(bad);
    EXPECT_THAT(r, Not(IsOk())) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(EncodingTest, Base64UrlDecodeRejectsPaddingAndStandardAlphabetCharacters) {
  for (const char* bad : {"Zg==", "Zg=", "Zm8=", "+/8", "-_+", "ab/c", "Z", "Zm9vY", "Zh", "Zm9",
                          "Zm 9v", "Zm9v\n"}) {
    Result<Bytes> r = Base64UrlDecode(bad);
    EXPECT_THAT(r, Not(IsOk())) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(EncodingTest, Base32MatchesRfc4648VectorsWithPadding) {
  const std::vector<std::string> want = {
      "", "MY======", "MZXQ====", "MZXW6===", "MZXW6YQ=", "MZXW6YTB", "MZXW6YTBOI======"};
  for (size_t i = 0; i < kPlain.size(); ++i) {
    EXPECT_EQ(Base32Encode(AsBytes(kPlain[i])), want[i]);
    EXPECT_EQ(DecodedString(Base32Decode(want[i])), kPlain[i]);
  }
}

TEST(EncodingTest, Base32UnpaddedVariantDropsPadding) {
  const std::vector<std::string> want = {"",        "MY",       "MZXQ",      "MZXW6",
                                         "MZXW6YQ", "MZXW6YTB", "MZXW6YTBOI"};
  for (size_t i = 0; i < kPlain.size(); ++i) {
    EXPECT_EQ(Base32Encode(AsBytes(kPlain[i]), Base32Padding::kUnpadded), want[i]);
    EXPECT_EQ(DecodedString(Base32Decode(want[i], Base32Padding::kUnpadded)), kPlain[i]);
  }
}

TEST(EncodingTest, Base32DecodeIsCaseInsensitive) {
  EXPECT_EQ(DecodedString(Base32Decode("mzxw6ytboi======")), "foobar");
  EXPECT_EQ(DecodedString(Base32Decode("MzXw6YtBoI", Base32Padding::kUnpadded)), "foobar");
}

TEST(EncodingTest, Base32DecodeRejectsMalformedInput) {
  for (const char* bad : {
           "MY",                // missing padding
           "MY=====",           // short padding
           "MY=======",         // too much padding
           "M=======",          // impossible length of data
           "MZX=====",          // impossible length of data
           "========",          // padding only
           "MY======MY======",  // padding inside the data
           "MZXW6YT1",          // '1' is not in the alphabet
           "MZXW6YT8",          // '8' is not in the alphabet
           "MZXW 6YTB",         // space
           "MZ======",          // non-zero unused bits ("f" is "MY======")
       }) {
    Result<Bytes> r = Base32Decode(bad);
    EXPECT_THAT(r, Not(IsOk())) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
  }
  for (const char* bad : {"MY======", "MZXW6YQ=", "M", "MZX", "MZXW6Y", "MZ", "MZXW6YT1"}) {
    Result<Bytes> r = Base32Decode(bad, Base32Padding::kUnpadded);
    EXPECT_THAT(r, Not(IsOk())) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(EncodingTest, EveryByteValueRoundTripsThroughEveryCodec) {
  Bytes all;
  for (int i = 0; i < 256; ++i) {
    all.push_back(static_cast<uint8_t>(i));
  }
  for (size_t len = 0; len <= all.size(); len += 17) {
    const Bytes in(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_EQ(*HexDecode(HexEncode(in)), in);
    EXPECT_EQ(*Base64Decode(Base64Encode(in)), in);
    EXPECT_EQ(*Base64UrlDecode(Base64UrlEncode(in)), in);
    EXPECT_EQ(*Base32Decode(Base32Encode(in)), in);
    EXPECT_EQ(*Base32Decode(Base32Encode(in, Base32Padding::kUnpadded), Base32Padding::kUnpadded),
              in);
  }
}

TEST(EncodingTest, SecretVariantsMatchThePlainEncoders) {
  const SecretBytes seed = SecretBytes::CopyFrom(std::string_view("12345678901234567890"));
  Result<SecretBytes> b32 = Base32EncodeSecret(seed);
  ASSERT_OK(b32);
  EXPECT_EQ(b32->RevealString(SecretAccess::Grant()), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
  Result<SecretBytes> b32_unpadded = Base32EncodeSecret(
      SecretBytes::CopyFrom(std::string_view("foobar")), Base32Padding::kUnpadded);
  ASSERT_OK(b32_unpadded);
  EXPECT_EQ(b32_unpadded->RevealString(SecretAccess::Grant()), "MZXW6YTBOI");

  Result<SecretBytes> back = Base32DecodeSecret(b32->RevealString(SecretAccess::Grant()));
  ASSERT_OK(back);
  EXPECT_TRUE(ConstantTimeEquals(*back, seed));

  Result<SecretBytes> b64 = Base64EncodeSecret(SecretBytes::CopyFrom(std::string_view("fooba")));
  ASSERT_OK(b64);
  EXPECT_EQ(b64->RevealString(SecretAccess::Grant()), "Zm9vYmE=");
  Result<SecretBytes> b64_back = Base64DecodeSecret("Zm9vYmE=");
  ASSERT_OK(b64_back);
  EXPECT_EQ(b64_back->RevealString(SecretAccess::Grant()), "fooba");

  Result<SecretBytes> empty = Base64EncodeSecret(SecretBytes());
  ASSERT_OK(empty);
  EXPECT_TRUE(empty->empty());
}

TEST(EncodingTest, SecretDecodersRejectWhatThePlainDecodersReject) {
  EXPECT_EQ(Base32DecodeSecret("MY").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Base32DecodeSecret("MY======", Base32Padding::kUnpadded).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Base64DecodeSecret("Zh==").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Base64DecodeSecret("Zm9v!mFy").status().code(), Code::kInvalidArgument);
}

TEST(EncodingTest, ErrorMessagesDoNotEchoTheInput) {
  Result<Bytes> r = Base64Decode("c2VjcmV0!");
  ASSERT_THAT(r, Not(IsOk()));
  EXPECT_EQ(r.status().message().find("c2VjcmV0"), std::string::npos);
}

}  // namespace
}  // namespace otd::crypto

namespace otd::crypto {
namespace {

TEST(EncodingTest, HexEncodeSecretMatchesHexEncode) {
  SecretBytes s = SecretBytes::CopyFrom(std::string_view("\x01\xab\xff\x00z", 5));
  auto hex = HexEncodeSecret(s);
  ASSERT_OK(hex);
  EXPECT_EQ(hex->RevealString(SecretAccess::Grant()), HexEncode(s.Reveal(SecretAccess::Grant())));
  EXPECT_EQ(hex->RevealString(SecretAccess::Grant()), "01abff007a");
}

}  // namespace
}  // namespace otd::crypto
