#include "hsm/internal/ck_error.h"
#include "common/testing/status_matchers.h"

#include <gtest/gtest.h>

namespace otd::hsm::internal {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

TEST(CkErrorTest, NamesCommonReturnValuesAndShowsUnknownOnesAsHex) {
  EXPECT_EQ(CkrName(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
  EXPECT_EQ(CkrName(CKR_SESSION_HANDLE_INVALID), "CKR_SESSION_HANDLE_INVALID");
  EXPECT_EQ(CkrName(CKR_UNWRAPPING_KEY_HANDLE_INVALID), "CKR_UNWRAPPING_KEY_HANDLE_INVALID");
  EXPECT_EQ(CkrName(0x00000777UL), "CKR 0x00000777");
  EXPECT_EQ(CkrName(CKR_VENDOR_DEFINED + 0x12), "CKR_VENDOR_DEFINED+0x12");
}

TEST(CkErrorTest, MapsReturnValuesToCodesAsDocumentedInTheHeader) {
  for (CK_RV rv : {CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_SESSION_HANDLE_INVALID,
                   CKR_SESSION_CLOSED, CKR_DEVICE_ERROR, CKR_USER_NOT_LOGGED_IN}) {
    EXPECT_EQ(CkrCode(rv), Code::kUnavailable) << CkrName(rv);
    EXPECT_TRUE(IsTokenLost(rv)) << CkrName(rv);
  }
  for (CK_RV rv : {CKR_ENCRYPTED_DATA_INVALID, CKR_ENCRYPTED_DATA_LEN_RANGE,
                   CKR_WRAPPED_KEY_INVALID, CKR_WRAPPED_KEY_LEN_RANGE, CKR_SIGNATURE_INVALID}) {
    EXPECT_EQ(CkrCode(rv), Code::kDataLoss) << CkrName(rv);
  }
  for (CK_RV rv : {CKR_PIN_INCORRECT, CKR_PIN_LEN_RANGE, CKR_PIN_EXPIRED, CKR_PIN_LOCKED}) {
    EXPECT_EQ(CkrCode(rv), Code::kPermissionDenied) << CkrName(rv);
  }
  for (CK_RV rv : {CKR_GENERAL_ERROR, CKR_MECHANISM_INVALID, CKR_KEY_SIZE_RANGE, 0x12345UL}) {
    EXPECT_EQ(CkrCode(rv), Code::kInternal) << CkrName(rv);
    EXPECT_FALSE(IsTokenLost(rv)) << CkrName(rv);
  }
  EXPECT_EQ(CkrCode(CKR_OK), Code::kOk);
}

TEST(CkErrorTest, StatusMessageNamesTheFunctionAndTheConstant) {
  Status s = CkrStatus("C_Login", CKR_PIN_INCORRECT);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_EQ(s.message(), "C_Login: CKR_PIN_INCORRECT");
  EXPECT_THAT(CkrStatus("C_Sign", CKR_OK), Not(IsOk()));
}

TEST(CkErrorTest, OnlyLostSessionsAreTreatedAsAlreadyClosed) {
  EXPECT_TRUE(IsSessionHandleDead(CKR_SESSION_HANDLE_INVALID));
  EXPECT_TRUE(IsSessionHandleDead(CKR_DEVICE_REMOVED));
  EXPECT_FALSE(IsSessionHandleDead(CKR_USER_NOT_LOGGED_IN));
  EXPECT_FALSE(IsSessionHandleDead(CKR_DEVICE_ERROR));
}

}  // namespace
}  // namespace otd::hsm::internal
