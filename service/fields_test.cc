#include "service/fields.h"
#include "common/testing/status_matchers.h"

#include <gtest/gtest.h>

namespace otd::service {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

TEST(FieldsTest, RoundTripsSecretsTextAndNumbers) {
  SecretBytes email = SecretBytes::CopyFrom(std::string_view("user@example.com"));
  SecretBytes record = FieldWriter()
                           .AddSecret(1, email)
                           .Add(2, std::string_view("salt"))
                           .AddU64(3, 0x0102030405060708ull)
                           .AddU64(4, 7)
                           .Add(5, std::string_view(""))
                           .Finish();
  auto r = FieldReader::Parse(record);
  ASSERT_OK(r);
  EXPECT_TRUE(ConstantTimeEquals(*r->Secret(1), email));
  EXPECT_EQ(*r->Text(2), "salt");
  EXPECT_EQ(*r->U64(3), 0x0102030405060708ull);
  EXPECT_EQ(*r->U64(4), 7u);
  EXPECT_EQ(*r->Text(5), "");
  EXPECT_FALSE(r->Has(6));
  EXPECT_EQ(r->Secret(6).status().code(), Code::kDataLoss);
  EXPECT_EQ(r->U64(2).status().code(), Code::kDataLoss);  // not 8 bytes
}

TEST(FieldsTest, RejectsTruncationOverrunAndRepeatedTags) {
  SecretBytes record = FieldWriter().Add(1, std::string_view("abc")).Finish();
  auto bytes = record.Reveal(SecretAccess::Grant());
  for (size_t n = 1; n < bytes.size(); ++n) {
    SecretBytes cut = SecretBytes::CopyFrom(bytes.subspan(0, n));
    EXPECT_THAT(FieldReader::Parse(cut), Not(IsOk())) << n;
  }
  SecretBytes twice =
      FieldWriter().Add(1, std::string_view("a")).Add(1, std::string_view("b")).Finish();
  EXPECT_THAT(FieldReader::Parse(twice), Not(IsOk()));
  SecretBytes empty;
  EXPECT_OK(FieldReader::Parse(empty));
}

}  // namespace
}  // namespace otd::service
