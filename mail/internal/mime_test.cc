#include "mail/internal/mime.h"
#include "common/testing/status_matchers.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace otd::mail::internal {
namespace {

// Independent decoder (RFC 2045 §6.7) used to check the encoder.
std::string QpDecode(std::string_view in) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '=') {
      out += in[i];
      continue;
    }
    if (in.substr(i + 1, 2) == "\r\n") {
      i += 2;
      continue;
    }
    int hi = i + 2 < in.size() ? hex(in[i + 1]) : -1;
    int lo = i + 2 < in.size() ? hex(in[i + 2]) : -1;
    EXPECT_GE(hi, 0) << "bad escape at " << i;
    EXPECT_GE(lo, 0) << "bad escape at " << i;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string Crlf(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r' || in[i] == '\n') {
      if (in[i] == '\r' && i + 1 < in.size() && in[i + 1] == '\n')
        ++i;
      out += "\r\n";
    } else {
      out += in[i];
    }
  }
  return out;
}

void ExpectWellFormedQp(const std::string& qp) {
  size_t start = 0;
  while (start <= qp.size()) {
    size_t eol = qp.find("\r\n", start);
    std::string_view line =
        std::string_view(qp).substr(start, (eol == std::string::npos ? qp.size() : eol) - start);
    EXPECT_LE(line.size(), 76u) << line;
    EXPECT_EQ(line.find_first_of("\r\n"), std::string_view::npos);
    if (!line.empty()) {
      EXPECT_NE(line.back(), ' ') << line;
      EXPECT_NE(line.back(), '\t') << line;
      EXPECT_NE(line.front(), '.') << line;
    }
    for (unsigned char c : line) {
      EXPECT_TRUE((c >= 33 && c <= 126) || c == ' ' || c == '\t') << int{c};
    }
    if (eol == std::string::npos)
      break;
    start = eol + 2;
  }
  EXPECT_EQ(qp.find("=_"), std::string::npos);
}

TEST(QuotedPrintableTest, KeepsPlainAsciiReadableAndEscapesEqualsSign) {
  EXPECT_EQ(EncodeQuotedPrintable("Hello, world"), "Hello, world");
  EXPECT_EQ(EncodeQuotedPrintable("a=b"), "a=3Db");
  EXPECT_EQ(EncodeQuotedPrintable("caf\xc3\xa9"), "caf=C3=A9");
}

TEST(QuotedPrintableTest, TurnsEveryLineBreakIntoCrlf) {
  EXPECT_EQ(EncodeQuotedPrintable("a\nb\r\nc\rd"), "a\r\nb\r\nc\r\nd");
}

TEST(QuotedPrintableTest, EncodesWhitespaceAtLineEndsAndDotAtLineStarts) {
  EXPECT_EQ(EncodeQuotedPrintable("a \nb\t"), "a=20\r\nb=09");
  EXPECT_EQ(EncodeQuotedPrintable(".\n..x\na.b"), "=2E\r\n=2E.x\r\na.b");
}

TEST(QuotedPrintableTest, BreaksLongLinesSoftlyWithinSeventySixCharacters) {
  std::string long_line(200, 'x');
  std::string qp = EncodeQuotedPrintable(long_line);
  ExpectWellFormedQp(qp);
  EXPECT_NE(qp.find("=\r\n"), std::string::npos);
  EXPECT_EQ(QpDecode(qp), long_line);
  std::string escapes(100, '=');
  qp = EncodeQuotedPrintable(escapes);
  ExpectWellFormedQp(qp);
  EXPECT_EQ(QpDecode(qp), escapes);
}

TEST(QuotedPrintableTest, RoundTripsRandomBytesAfterLineBreakNormalisation) {
  std::mt19937 rng(1234);
  const std::string alphabet = std::string("ab .=\t\r\n\xc3\xa9\x01\x7f\xff", 14);
  for (int round = 0; round < 300; ++round) {
    std::string in;
    size_t n = rng() % 400;
    for (size_t i = 0; i < n; ++i) {
      in += (rng() % 3 == 0) ? alphabet[rng() % alphabet.size()]
                             : static_cast<char>('a' + rng() % 26);
    }
    std::string qp = EncodeQuotedPrintable(in);
    ExpectWellFormedQp(qp);
    EXPECT_EQ(QpDecode(qp), Crlf(in));
  }
}

TEST(HeaderTextTest, LeavesShortAsciiAloneAndEncodesEverythingElse) {
  EXPECT_EQ(EncodeHeaderText("Confirm your e-mail", 9), "Confirm your e-mail");
  EXPECT_EQ(EncodeHeaderText("caf\xc3\xa9", 9), "=?utf-8?B?Y2Fmw6k=?=");
  // "=?" in plain text would be read as an encoded word: encode it.
  EXPECT_EQ(EncodeHeaderText("=?x?=", 9).rfind("=?utf-8?B?", 0), 0u);
}

TEST(HeaderTextTest, SplitsLongValuesIntoFoldedWordsOnCharacterBoundaries) {
  std::string subject;
  for (int i = 0; i < 40; ++i)
    subject += "\xe2\x82\xac";  // 40 x EURO SIGN, 120 bytes
  std::string encoded = EncodeHeaderText(subject, 9);
  size_t words = 0;
  size_t start = 0;
  for (;;) {
    size_t eol = encoded.find("\r\n ", start);
    std::string word =
        encoded.substr(start, eol == std::string::npos ? std::string::npos : eol - start);
    EXPECT_LE(word.size(), 75u);
    EXPECT_EQ(word.rfind("=?utf-8?B?", 0), 0u);
    ++words;
    if (eol == std::string::npos)
      break;
    start = eol + 3;
  }
  EXPECT_EQ(words, 3u);  // 45-byte chunks: 15 euro signs each
}

TEST(AddressTest, AcceptsBareAddressesOnly) {
  EXPECT_OK(ValidateAddress("recipient", "user.name+tag@example.org"));
  for (const char* bad : {"", "user", "@example.org", "user@", "a@b@c", "User <u@example.org>",
                          "u@example.org, v@example.org", "u @example.org", "u@ex\xc3\xa9.org",
                          "u@example.org\r\nBcc: x@y"}) {
    Status s = ValidateAddress("recipient", bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    if (*bad != '\0') {
      EXPECT_EQ(s.message().find(bad), std::string::npos) << "message must not echo the address";
    }
    EXPECT_EQ(s.message().find("example"), std::string::npos) << s.message();
  }
}

TEST(DateTest, FormatsRfc5322DatesInUtc) {
  EXPECT_EQ(FormatDate(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(FormatDate(1700000000), "Tue, 14 Nov 2023 22:13:20 +0000");
}

TEST(RecipientTest, ReadsTheToHeaderOfTheHeaderBlockOnly) {
  EXPECT_EQ(ReadRecipient("From: a@b\r\nTo: c@d\r\n\r\nTo: e@f\r\n").value_or(""), "c@d");
  EXPECT_FALSE(ReadRecipient("From: a@b\r\n\r\nTo: e@f\r\n").has_value());
  EXPECT_FALSE(ReadRecipient("To: c@d, e@f\r\n\r\n").has_value());
  EXPECT_FALSE(ReadRecipient("To: c@d\r\n e@f\r\n\r\n").has_value());
}

}  // namespace
}  // namespace otd::mail::internal
