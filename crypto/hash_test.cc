#include "crypto/hash.h"

#include <gtest/gtest.h>

#include <string>

#include "common/testing/status_matchers.h"
#include "crypto/encoding.h"

namespace otd::crypto {
namespace {

std::string Hex(const Result<Bytes>& r) {
  EXPECT_OK(r);
  return r.ok() ? HexEncode(*r) : std::string();
}

std::string Hex(const Result<SecretBytes>& r) {
  EXPECT_OK(r);
  return r.ok() ? HexEncode(r->Reveal(SecretAccess::Grant())) : std::string();
}

SecretBytes Key(std::string_view s) { return SecretBytes::CopyFrom(s); }

TEST(HashTest, Sha256MatchesFips180Vectors) {
  EXPECT_EQ(Hex(Sha256(AsBytes(""))),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Hex(Sha256(AsBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(HashTest, Sha512MatchesFips180Vectors) {
  EXPECT_EQ(Hex(Sha512(AsBytes(""))),
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
            "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e");
  EXPECT_EQ(Hex(Sha512(AsBytes("abc"))),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
}

TEST(HashTest, Sha256OfAnEmptySpanWithNullDataWorks) {
  EXPECT_EQ(Hex(Sha256(ByteView())),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(HashTest, HmacSha256AndSha512MatchRfc4231TestCase1) {
  const SecretBytes key = SecretBytes::CopyFrom(Bytes(20, 0x0b));
  EXPECT_EQ(Hex(HmacSha256(key, AsBytes("Hi There"))),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(Hex(HmacSha512(key, AsBytes("Hi There"))),
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
            "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854");
}

TEST(HashTest, HmacSha256AndSha512MatchRfc4231TestCase2) {
  const SecretBytes key = Key("Jefe");
  EXPECT_EQ(Hex(HmacSha256(key, AsBytes("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(Hex(HmacSha512(key, AsBytes("what do ya want for nothing?"))),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
            "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
}

TEST(HashTest, HmacSha1MatchesRfc2202TestCase1) {
  const SecretBytes key = SecretBytes::CopyFrom(Bytes(20, 0x0b));
  EXPECT_EQ(Hex(HmacSha1(key, AsBytes("Hi There"))), "b617318655057264e28bc0b6fb378c8ef146be00");
}

TEST(HashTest, HmacSha256ReproducesTheOt1SigningVector) {
  // reference/access-tokens-spec.md: the OT1 request signature example.
  const SecretBytes key = Key("GR6ytMoj1IGxAoBUmYKbVM9z5fZBduUi");
  const std::string canonical =
      "POST\n"
      "/account/W2l6H0vEhdurrhSDN4VjV2BlgSICpvEH/token\n"
      "\n"
      "host:api.opentoken.io\n"
      "content-type:text/plain\n"
      "x-opentoken-date:2016-11-17T20:01:00Z\n"
      "\n"
      "This is a test.\n";
  EXPECT_EQ(Hex(HmacSha256(key, AsBytes(canonical))),
            "fc16d5946385ba3f3e65d944f8d519008421681d9f6029698666abc90e52af5e");
}

TEST(HashTest, HmacRejectsAnEmptyKey) {
  EXPECT_EQ(HmacSha256(SecretBytes(), AsBytes("x")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(HmacSha1(SecretBytes(), AsBytes("x")).status().code(), Code::kInvalidArgument);
}

TEST(HashTest, HmacOfEmptyDataWorks) {
  Result<Bytes> mac = HmacSha256(Key("key"), ByteView());
  ASSERT_OK(mac);
  EXPECT_EQ(mac->size(), kSha256Size);
}

TEST(HashTest, Pbkdf2Sha512MatchesKnownVectors) {
  EXPECT_EQ(Hex(Pbkdf2Sha512(Key("password"), AsBytes("salt"), 1, 64)),
            "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252"
            "c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce");
  EXPECT_EQ(Hex(Pbkdf2Sha512(Key("password"), AsBytes("salt"), 2, 64)),
            "e1d9c16aa681708a45f5c7c4e215ceb66e011a2e9f0040713f18aefdb866d53c"
            "f76cab2868a39b9f7840edce4fef5a82be67335c77a6068e04112754f27ccf4e");
}

TEST(HashTest, Pbkdf2OutputIsASecretOfTheRequestedLength) {
  Result<SecretBytes> short_key = Pbkdf2Sha512(Key("password"), AsBytes("salt"), 1, 16);
  ASSERT_OK(short_key);
  EXPECT_EQ(short_key->size(), 16u);
  // A prefix of the 64-byte vector: PBKDF2 output blocks do not depend on the length asked for.
  EXPECT_EQ(HexEncode(short_key->Reveal(SecretAccess::Grant())),
            "867f70cf1ade02cff3752599a3a53dc4");
  Result<SecretBytes> long_key = Pbkdf2Sha512(Key("password"), AsBytes("salt"), 1, 100);
  ASSERT_OK(long_key);
  EXPECT_EQ(long_key->size(), 100u);
}

TEST(HashTest, Pbkdf2AcceptsAnEmptyPassword) {
  Result<SecretBytes> k = Pbkdf2Sha512(SecretBytes(), AsBytes("saltsaltsaltsalt"), 10, 32);
  ASSERT_OK(k);
  EXPECT_EQ(k->size(), 32u);
}

TEST(HashTest, Pbkdf2RejectsZeroIterationsAndBadLengths) {
  EXPECT_EQ(Pbkdf2Sha512(Key("pw"), AsBytes("salt"), 0, 64).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Pbkdf2Sha512(Key("pw"), AsBytes("salt"), 1, 0).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Pbkdf2Sha512(Key("pw"), AsBytes("salt"), 1, kPbkdf2MaxOutputBytes + 1).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Pbkdf2Sha512(Key("pw"), AsBytes("salt"), 0x80000000u, 64).status().code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace otd::crypto
