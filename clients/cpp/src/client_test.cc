// Offline tests of libopentoken-client: the documented OT1 vector byte for byte, PBKDF2, TOTP and
// challenge-hash known answers, encodings, link parsing and error shapes.
#include <gtest/gtest.h>

#include <string>

#include "opentoken/client.h"

namespace opentoken {
namespace {

// signed-requests.md, the hex dump (the prose's 19:53:23Z date is not the one signed).
constexpr unsigned char kDocDump[] = {
    0x50, 0x4f, 0x53, 0x54, 0x0a, 0x2f, 0x61, 0x63, 0x63, 0x6f, 0x75, 0x6e, 0x74, 0x2f, 0x57, 0x32,
    0x6c, 0x36, 0x48, 0x30, 0x76, 0x45, 0x68, 0x64, 0x75, 0x72, 0x72, 0x68, 0x53, 0x44, 0x4e, 0x34,
    0x56, 0x6a, 0x56, 0x32, 0x42, 0x6c, 0x67, 0x53, 0x49, 0x43, 0x70, 0x76, 0x45, 0x48, 0x2f, 0x74,
    0x6f, 0x6b, 0x65, 0x6e, 0x0a, 0x0a, 0x68, 0x6f, 0x73, 0x74, 0x3a, 0x61, 0x70, 0x69, 0x2e, 0x6f,
    0x70, 0x65, 0x6e, 0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x2e, 0x69, 0x6f, 0x0a, 0x63, 0x6f, 0x6e, 0x74,
    0x65, 0x6e, 0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x3a, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x70, 0x6c,
    0x61, 0x69, 0x6e, 0x0a, 0x78, 0x2d, 0x6f, 0x70, 0x65, 0x6e, 0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x2d,
    0x64, 0x61, 0x74, 0x65, 0x3a, 0x32, 0x30, 0x31, 0x36, 0x2d, 0x31, 0x31, 0x2d, 0x31, 0x37, 0x54,
    0x32, 0x30, 0x3a, 0x30, 0x31, 0x3a, 0x30, 0x30, 0x5a, 0x0a, 0x0a, 0x54, 0x68, 0x69, 0x73, 0x20,
    0x69, 0x73, 0x20, 0x61, 0x20, 0x74, 0x65, 0x73, 0x74, 0x2e, 0x0a};
constexpr std::string_view kDocSecret = "GR6ytMoj1IGxAoBUmYKbVM9z5fZBduUi";
constexpr std::string_view kDocCode = "LTyPtAMrYarpdgPxHnIB-aXb5BXIxnf8";
constexpr std::string_view kDocSignature =
    "fc16d5946385ba3f3e65d944f8d519008421681d9f6029698666abc90e52af5e";
constexpr std::string_view kDocTarget = "/account/W2l6H0vEhdurrhSDN4VjV2BlgSICpvEH/token";

std::string DocDump() {
  return std::string(reinterpret_cast<const char*>(kDocDump), sizeof kDocDump);
}

TEST(Ot1, CanonicalStringIsTheDocumentedHexDumpByteForByte) {
  ASSERT_EQ(sizeof kDocDump, 0x9bU);
  Result<std::string> canonical =
      CanonicalString("POST", kDocTarget,
                      {{"Host", "api.opentoken.io"},
                       {"Content-Type", "text/plain"},
                       {"X-OpenToken-Date", "2016-11-17T20:01:00Z"}},
                      {"host", "content-type", "x-opentoken-date"}, "This is a test.\n");
  ASSERT_TRUE(canonical.ok());
  EXPECT_EQ(HexEncode(*canonical), HexEncode(DocDump()));
}

TEST(Ot1, SignReproducesTheDocumentedSignatureAndHeader) {
  Result<Headers> h =
      Sign("POST", kDocTarget, {{"Host", "api.opentoken.io"}, {"Content-Type", "text/plain"}},
           "This is a test.\n", kDocCode, Secret(std::string(kDocSecret)), "2016-11-17T20:01:00Z");
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->size(), 4U);
  EXPECT_EQ((*h)[2], Header("X-OpenToken-Date", "2016-11-17T20:01:00Z"));
  EXPECT_EQ((*h)[3].first, "Authorization");
  EXPECT_EQ((*h)[3].second,
            "OT1-HMAC-SHA256-HEX; access-code=LTyPtAMrYarpdgPxHnIB-aXb5BXIxnf8; "
            "signed-headers=host content-type x-opentoken-date; signature=" +
                std::string(kDocSignature));
  EXPECT_EQ(HmacSha256Hex(kDocSecret, DocDump()), kDocSignature);
}

TEST(Ot1, HostIsLowerCasedValuesTrimmedQuerySplitAndMissingHeaderRefused) {
  Result<std::string> c = CanonicalString(
      "GET", "/a/b?x=1&y=2", {{"HOST", " LocalHost:8443 "}, {"content-type", "\tText/Plain "}},
      {"host", "content-type"}, "");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, "GET\n/a/b\nx=1&y=2\nhost:localhost:8443\ncontent-type:Text/Plain\n\n");
  Result<std::string> missing = CanonicalString("GET", "/", {{"Host", "h"}}, {"content-type"}, "");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, Error::Kind::kUsage);
}

TEST(Ot1, DateHasSecondPrecision) {
  EXPECT_EQ(Ot1Date(1479412860), "2016-11-17T20:01:00Z");
  EXPECT_EQ(Ot1Date(0), "1970-01-01T00:00:00Z");
}

TEST(Primitives, TotpMatchesRfc6238Sha1Vectors) {
  const std::string key = "12345678901234567890";
  // RFC 6238 appendix B (8 digits) truncated to the 6 digits the server uses.
  EXPECT_EQ(Totp(key, 59), "287082");
  EXPECT_EQ(Totp(key, 1111111109), "081804");
  EXPECT_EQ(Totp(key, 1234567890), "005924");
  EXPECT_EQ(Totp(key, 2000000000), "279037");
  EXPECT_EQ(Totp(key, 89, -1), Totp(key, 59));
}

TEST(Primitives, Pbkdf2PasswordHashKnownAnswer) {
  // PBKDF2-HMAC-SHA512("password", "salt", 1, 64) (RFC 6070 style vector), base64.
  nlohmann::json config = {{"type", "pbkdf2"}, {"algorithm", "sha512"}, {"encoding", "base64"},
                           {"iterations", 1},  {"derivedLength", 64},   {"salt", "salt"}};
  Result<Secret> h = PasswordHash(config, Secret("password"));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->Reveal(), Base64Encode(*HexDecode(
                             "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252"
                             "c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce")));
  config["iterations"] = 2;
  Result<Secret> h2 = PasswordHash(config, Secret("password"));
  ASSERT_TRUE(h2.ok());
  EXPECT_EQ(HexEncode(h2->Reveal()).size() > 0, true);
  EXPECT_NE(h2->Reveal(), h->Reveal());
  config["algorithm"] = "sha1";
  EXPECT_FALSE(PasswordHash(config, Secret("password")).ok());
}

TEST(Primitives, ChallengeHashIsSha512HexOfHashAndSalt) {
  // sha512("abc") from FIPS 180-2: the hash "ab" + salt "c".
  Result<Secret> h =
      ChallengeHash(Secret("ab"), {{"algorithm", "sha512"}, {"encoding", "hex"}, {"salt", "c"}});
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->Reveal(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
  EXPECT_FALSE(ChallengeHash(Secret("ab"), {{"algorithm", "md5"}}).ok());
}

TEST(Primitives, Encodings) {
  EXPECT_EQ(*Base32Decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), "12345678901234567890");
  EXPECT_EQ(*Base32Decode("mzxw6ytb oi======"), "foobar");
  EXPECT_FALSE(Base32Decode("0189").ok());
  EXPECT_EQ(*HexDecode("00ff7A"), std::string("\x00\xff\x7a", 3));
  EXPECT_FALSE(HexDecode("abc").ok());
  EXPECT_FALSE(HexDecode("zz").ok());
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode(""), "");
}

TEST(Secret, MoveLeavesTheSourceEmpty) {
  Secret a("hunter2");
  Secret b(std::move(a));
  EXPECT_TRUE(a.Empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(b.Reveal(), "hunter2");
  std::string s = "x";
  Wipe(s);
  EXPECT_TRUE(s.empty());
}

TEST(Response, LinksAndErrorShapes) {
  Response r;
  r.status = 200;
  r.headers = {{"Link",
                "</registration/abc>; rel=\"edit\"; title=\"registration-secure\", "
                "</>; rel=\"up\""},
               {"link", "</x,y>; rel=\"self\""}};
  EXPECT_EQ(r.FindLink("edit", "registration-secure"), "/registration/abc");
  EXPECT_EQ(r.FindLink("self"), "/x,y");
  EXPECT_EQ(r.FindLink("up"), "/");
  EXPECT_EQ(r.FindLink("nope"), "");
  r.status = 401;
  r.body = R"({"code":"unauthorized","logref":"x","message":"login failed"})";
  Error e = HttpError(r);
  EXPECT_EQ(e.kind, Error::Kind::kHttp);
  EXPECT_EQ(e.status, 401);
  EXPECT_EQ(e.code, "unauthorized");
  EXPECT_EQ(e.message, "login failed");
  r.body = R"({"type":"NotFound","message":"Access token was not found"})";
  EXPECT_EQ(HttpError(r).code, "NotFound");
  r.body = R"({"data":{"id":"error_x","type":"errors","attributes":{"message":"bad code"}}})";
  EXPECT_EQ(HttpError(r).message, "bad code");
  r.body = "<html>";
  EXPECT_EQ(HttpError(r).message, "HTTP 401");
}

TEST(Client, ConfirmPathFromLinkPathOrCode) {
  EXPECT_EQ(*Client::ConfirmPath("https://127.0.0.1:8443/registration/AbC_1/confirm/x-Y\n", ""),
            "/registration/AbC_1/confirm/x-Y");
  EXPECT_EQ(*Client::ConfirmPath("/registration/a/confirm/b", ""), "/registration/a/confirm/b");
  EXPECT_EQ(*Client::ConfirmPath("code1", "/registration/a"), "/registration/a/confirm/code1");
  EXPECT_FALSE(Client::ConfirmPath("code1", "").ok());
  EXPECT_FALSE(Client::ConfirmPath("/registration/a/confirm/b/../c", "").ok());
  EXPECT_FALSE(Client::ConfirmPath("a b", "/registration/a").ok());
}

TEST(Client, HostHeaderIsWhatOt1Signs) {
  EXPECT_EQ(Client({"/run/x.sock", "", ""}).HostHeader(), "localhost");
  EXPECT_EQ(Client({"", "https://127.0.0.1:8443", ""}).HostHeader(), "127.0.0.1:8443");
  EXPECT_EQ(Client({"", "https://vault.example/", ""}).HostHeader(), "vault.example");
}

TEST(Client, TransportErrorsAreValues) {
  Client none({"", "", ""});
  Result<Response> r = none.Send({"GET", "/", {}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, Error::Kind::kUsage);
  Client missing({"/nonexistent/opentokend.sock", "", ""});
  r = missing.Send({"GET", "/", {}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, Error::Kind::kTransport);
  Client http({"", "http://127.0.0.1:1", ""});
  r = http.Send({"GET", "/", {}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, Error::Kind::kUsage);
}

}  // namespace
}  // namespace opentoken

namespace opentoken {
namespace {

TEST(Mail, ConfirmationPathSurvivesQuotedPrintableWrapping) {
  const std::string mail =
      "To: a@example.com\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
      "Confirm: https://127.0.0.1:8443/registration/AbCdEfGhIjKlMnOp/confir=\r\n"
      "m/Zz_9-x=3D\r\n";
  EXPECT_EQ(FindConfirmationPath(mail), "/registration/AbCdEfGhIjKlMnOp/confirm/Zz_9-x");
  EXPECT_EQ(FindConfirmationPath("no link here"), "");
}

}  // namespace
}  // namespace opentoken
