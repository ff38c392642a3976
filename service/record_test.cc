#include "service/record.h"
#include "common/testing/status_matchers.h"

#include <gtest/gtest.h>

namespace otd::service {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

SealedRecord Sample() {
  SealedRecord r;
  r.key_version = 7;
  for (size_t i = 0; i < r.nonce.size(); ++i) {
    r.nonce[i] = static_cast<uint8_t>(i);
  }
  r.ciphertext_and_tag = Bytes(20, 0xAB);
  return r;
}

TEST(RecordTest, SealedRecordRoundTripsWithBigEndianHeader) {
  Bytes enc = EncodeSealed(Sample());
  ASSERT_EQ(enc.size(), 1 + 4 + 12 + 20u);
  EXPECT_EQ(enc[0], kFormatSealed);
  EXPECT_EQ(enc[1], 0);
  EXPECT_EQ(enc[4], 7);
  auto dec = DecodeSealed(enc);
  ASSERT_OK(dec);
  EXPECT_EQ(dec->key_version, 7u);
  EXPECT_EQ(dec->nonce, Sample().nonce);
  EXPECT_EQ(dec->ciphertext_and_tag, Sample().ciphertext_and_tag);
}

TEST(RecordTest, DecoderRejectsEveryTruncationAndWrongFormat) {
  Bytes enc = EncodeSealed(Sample());
  // Split-point grind: every prefix shorter than header + tag must fail cleanly.
  for (size_t n = 0; n < kSealedHeaderBytes + kTagBytes; ++n) {
    EXPECT_EQ(DecodeSealed(ByteView(enc.data(), n)).status().code(), Code::kDataLoss) << n;
  }
  Bytes wrong = enc;
  wrong[0] = kFormatWrappedKey;
  EXPECT_THAT(DecodeSealed(wrong), Not(IsOk()));
  Bytes zero_version = enc;
  zero_version[4] = 0;
  EXPECT_THAT(DecodeSealed(zero_version), Not(IsOk()));
}

TEST(RecordTest, WrappedKeyRecordRoundTripsAndChecksLength) {
  Bytes enc = EncodeWrappedKey({3, Bytes(40, 0x11)});
  auto dec = DecodeWrappedKey(enc);
  ASSERT_OK(dec);
  EXPECT_EQ(dec->kek_version, 3u);
  EXPECT_EQ(dec->wrapped.size(), 40u);
  EXPECT_THAT(DecodeWrappedKey(ByteView(enc.data(), enc.size() - 1)), Not(IsOk()));
  EXPECT_THAT(DecodeWrappedKey(EncodeSealed(Sample())), Not(IsOk()));
}

TEST(RecordTest, AssociatedDataIsUnambiguous) {
  // ("ab","c") and ("a","bc") must not produce the same associated data.
  EXPECT_NE(SealedAssociatedData("ab", "c", "x", 1), SealedAssociatedData("a", "bc", "x", 1));
  EXPECT_NE(SealedAssociatedData("t", "a", "x", 1), SealedAssociatedData("t", "a", "x", 2));
}

}  // namespace
}  // namespace otd::service
