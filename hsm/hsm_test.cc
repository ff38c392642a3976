// Tests against the real SoftHSM2 through PKCS#11 (no mocks). Each test gets a fresh token in a
// temporary directory; the Token is opened and closed per test (C_Initialize/C_Finalize are
// process global and SoftHSM reads SOFTHSM2_CONF at C_Initialize).

#include "hsm/hsm.h"

#include <stdlib.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/metrics.h"
#include "common/testing/status_matchers.h"
#include "hsm/internal/token_test_peer.h"

namespace otd::hsm {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

namespace fs = std::filesystem;

constexpr char kLabel[] = "otd-test";
constexpr char kPin[] = "1234";
constexpr char kSoPin[] = "12345678";

template <class T>
Status StatusOf(const Result<T>& r) {
  return r.status();
}
template <class T>
Code CodeOf(const Result<T>& r) {
  return r.status().code();
}
Code CodeOf(const Status& s) { return s.code(); }

std::string ModulePath() {
  const char* m = std::getenv("OTD_PKCS11_MODULE");
  return (m != nullptr && *m != '\0') ? m : "/usr/lib/softhsm/libsofthsm2.so";
}

Bytes Iv(uint8_t fill) { return Bytes(12, fill); }

std::string Plain(const SecretBytes& s) {
  return std::string(s.RevealString(SecretAccess::Grant()));
}

class HsmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "otd-hsm-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    fs::create_directory(dir_ / "tokens");
    {
      std::ofstream conf(dir_ / "softhsm2.conf");
      conf << "directories.tokendir = " << (dir_ / "tokens").string() << "\n"
           << "objectstore.backend = file\n"
           << "log.level = ERROR\n"
           << "slots.removable = false\n";
    }
    ASSERT_EQ(setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1), 0);
    ASSERT_TRUE(InitToken(kLabel));
  }

  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  bool InitToken(const std::string& label) {
    std::string cmd = "softhsm2-util --init-token --free --label '" + label + "' --so-pin " +
                      kSoPin + " --pin " + kPin + " >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
  }

  TokenConfig Config(std::string pin = kPin, size_t max_sessions = 4, int timeout_ms = 2000) {
    TokenConfig c;
    c.module_path = ModulePath();
    c.token_label = kLabel;
    c.pin = SecretBytes::CopyFrom(std::string_view(pin));
    c.max_sessions = max_sessions;
    c.acquire_timeout_ms = timeout_ms;
    return c;
  }

  std::unique_ptr<Token> OpenOrDie(size_t max_sessions = 4, int timeout_ms = 2000) {
    auto t = Token::Open(Config(kPin, max_sessions, timeout_ms), &log_);
    EXPECT_OK(t);
    return t.ok() ? std::move(t).value() : nullptr;
  }

  // Raw PKCS#11 lookup of a persistent key's handle, bypassing the module under test.
  static CK_OBJECT_HANDLE FindRaw(Token& t, Session& s, const std::string& label) {
    CK_FUNCTION_LIST* f = TokenTestPeer::Functions(t);
    CK_SESSION_HANDLE h = TokenTestPeer::Handle(s);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls},
                           {CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
    if (f->C_FindObjectsInit(h, tmpl, 2) != CKR_OK)
      return CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
    CK_ULONG n = 0;
    f->C_FindObjects(h, &o, 1, &n);
    f->C_FindObjectsFinal(h);
    return n == 1 ? o : CK_INVALID_HANDLE;
  }

  static CK_RV ValueLengthQuery(Token& t, Session& s, CK_OBJECT_HANDLE o) {
    CK_ATTRIBUTE v{CKA_VALUE, nullptr, 0};
    return TokenTestPeer::Functions(t)->C_GetAttributeValue(TokenTestPeer::Handle(s), o, &v, 1);
  }

  static bool BoolAttr(Token& t, Session& s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type) {
    CK_BBOOL b = CK_FALSE;
    CK_ATTRIBUTE a{type, &b, sizeof b};
    EXPECT_EQ(TokenTestPeer::Functions(t)->C_GetAttributeValue(TokenTestPeer::Handle(s), o, &a, 1),
              CKR_OK);
    return b == CK_TRUE;
  }

  fs::path dir_;
  std::ostringstream log_out_;
  Logger log_{log_out_, LogLevel::kDebug};
};

// --- opening ---------------------------------------------------------------------------------

TEST_F(HsmTest, OpensWithTheRightPin) {
  auto t = Token::Open(Config(), &log_);
  ASSERT_OK(t);
  auto s = (*t)->Acquire();
  ASSERT_OK(s);
  EXPECT_NE(log_out_.str().find("hsm_token_opened"), std::string::npos);
}

TEST_F(HsmTest, WrongPinIsPermissionDenied) {
  auto t = Token::Open(Config("9999"), &log_);
  ASSERT_THAT(t, Not(IsOk()));
  EXPECT_EQ(CodeOf(t), Code::kPermissionDenied) << t.status().ToString();
  EXPECT_NE(t.status().message().find("CKR_PIN_INCORRECT"), std::string::npos);
  // The module was finalised: the right PIN works afterwards in the same process.
  ASSERT_OK(Token::Open(Config(), &log_));
}

TEST_F(HsmTest, UnknownTokenLabelIsUnavailable) {
  TokenConfig c = Config();
  c.token_label = "no-such-token";
  auto t = Token::Open(std::move(c), nullptr);
  ASSERT_THAT(t, Not(IsOk()));
  EXPECT_EQ(CodeOf(t), Code::kUnavailable) << t.status().ToString();
}

TEST_F(HsmTest, MissingModulePathIsUnavailable) {
  TokenConfig c = Config();
  c.module_path = (dir_ / "no-such-module.so").string();
  auto t = Token::Open(std::move(c), nullptr);
  ASSERT_THAT(t, Not(IsOk()));
  EXPECT_EQ(CodeOf(t), Code::kUnavailable) << t.status().ToString();

  TokenConfig empty = Config();
  empty.module_path.clear();
  EXPECT_EQ(CodeOf(Token::Open(std::move(empty), nullptr)), Code::kUnavailable);
}

TEST_F(HsmTest, ASecondTokenWorksAfterTheFirstIsClosedButNotWhileItIsOpen) {
  auto first = OpenOrDie();
  ASSERT_NE(first, nullptr);
  {
    auto s = first->Acquire();
    ASSERT_OK(s);
    ASSERT_OK(s->GenerateKey("k1", KeyType::kAes256, KeyUsage::kEncrypt));
  }
  auto concurrent = Token::Open(Config(), nullptr);
  ASSERT_THAT(concurrent, Not(IsOk()));
  EXPECT_EQ(CodeOf(concurrent), Code::kFailedPrecondition) << concurrent.status().ToString();
  {  // the failed Open did not finalise the module under the first Token
    auto s = first->Acquire();
    ASSERT_OK(s);
    EXPECT_OK(s->EncryptGcm(KeyRef::Persistent("k1"), Iv(1), {}, AsBytes("x")));
  }
  first.reset();
  auto second = OpenOrDie();
  ASSERT_NE(second, nullptr);
  auto s = second->Acquire();
  ASSERT_OK(s);
  EXPECT_OK(s->EncryptGcm(KeyRef::Persistent("k1"), Iv(1), {}, AsBytes("x")));
}

TEST_F(HsmTest, HealthIsOkAndDescribeNamesTheToken) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  TokenHealth h = t->Health();
  EXPECT_TRUE(h.ok) << h.detail;
  std::string d = t->Describe();
  EXPECT_NE(d.find("label=\"otd-test\""), std::string::npos) << d;
  EXPECT_NE(d.find("SoftHSM"), std::string::npos) << d;
  EXPECT_NE(d.find(ModulePath()), std::string::npos) << d;
  EXPECT_NE(d.find("serial=\""), std::string::npos) << d;
}

// Serial numbers of the initialised tokens labelled `label`, from softhsm2-util --show-slots
// (independent of the code under test).
std::vector<std::string> SerialsLabelled(const std::string& label) {
  std::vector<std::string> out;
  FILE* p = popen("softhsm2-util --show-slots 2>/dev/null", "r");
  if (p == nullptr) {
    return out;
  }
  std::string text;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) {
    text.append(buf, n);
  }
  pclose(p);
  auto value = [](const std::string& line) {
    std::string v = line.substr(line.find(':') + 1);
    v.erase(0, v.find_first_not_of(' '));
    v.erase(v.find_last_not_of(' ') + 1);
    return v;
  };
  std::istringstream in(text);
  std::string line;
  std::string serial;
  while (std::getline(in, line)) {
    if (line.find("Serial number:") != std::string::npos) {
      serial = value(line);
    } else if (line.find("Label:") != std::string::npos && value(line) == label &&
               !serial.empty()) {
      out.push_back(serial);
    }
  }
  return out;
}

TEST_F(HsmTest, TwoTokensWithTheSameLabelAreRefusedNamingTheirSlotsAndSerials) {
  ASSERT_TRUE(InitToken(kLabel));  // a second token labelled otd-test
  const auto serials = SerialsLabelled(kLabel);
  ASSERT_EQ(serials.size(), 2u);
  auto t = Token::Open(Config(), &log_);
  ASSERT_THAT(t, Not(IsOk()));
  EXPECT_EQ(CodeOf(t), Code::kUnavailable) << t.status().ToString();
  const std::string m = t.status().message();
  EXPECT_NE(m.find("2 PKCS#11 tokens labelled 'otd-test'"), std::string::npos) << m;
  for (const auto& serial : serials) {
    EXPECT_NE(m.find("serial '" + serial + "'"), std::string::npos) << m;
  }
  EXPECT_NE(m.find("slot "), std::string::npos) << m;
  EXPECT_NE(m.find("hsm.token_serial"), std::string::npos) << m;
}

TEST_F(HsmTest, TheSerialSelectsOneOfTwoTokensWithTheSameLabel) {
  std::string first_key_serial;
  {
    auto t = OpenOrDie();  // only one token so far
    ASSERT_NE(t, nullptr);
    first_key_serial = t->Identity().serial;
    auto s = t->Acquire();
    ASSERT_OK(s);
    ASSERT_OK(s->GenerateKey("in-first", KeyType::kHmacSha256, KeyUsage::kSign));
  }
  ASSERT_TRUE(InitToken(kLabel));
  const auto serials = SerialsLabelled(kLabel);
  ASSERT_EQ(serials.size(), 2u);
  const std::string second = serials[0] == first_key_serial ? serials[1] : serials[0];
  const std::vector<std::string> both = {first_key_serial, second};
  for (const std::string& serial : both) {
    for (bool with_label : {true, false}) {
      TokenConfig c = Config();
      c.token_serial = serial;
      if (!with_label) {
        c.token_label.clear();
      }
      auto t = Token::Open(std::move(c), &log_);
      ASSERT_OK(t);
      TokenIdentity id = (*t)->Identity();
      EXPECT_EQ(id.serial, serial);
      EXPECT_EQ(id.label, kLabel);
      EXPECT_EQ(id.module, ModulePath());
      EXPECT_NE(id.ToString().find("serial=\"" + serial + "\""), std::string::npos);
      auto s = (*t)->Acquire();
      ASSERT_OK(s);
      auto has = s->HasKey("in-first");
      ASSERT_OK(has);
      EXPECT_EQ(*has, serial == first_key_serial) << serial;
    }
  }
  // A serial and a label that do not belong together match nothing; the message lists the tokens.
  TokenConfig c = Config();
  c.token_label = "other";
  c.token_serial = first_key_serial;
  auto t = Token::Open(std::move(c), nullptr);
  ASSERT_THAT(t, Not(IsOk()));
  EXPECT_EQ(CodeOf(t), Code::kUnavailable);
  EXPECT_NE(t.status().message().find("serial '" + second + "'"), std::string::npos)
      << t.status().message();
}

TEST_F(HsmTest, AReopenFindsTheSameTokenEvenWhenAnotherOneTakesItsLabel) {
  auto t = OpenOrDie(/*max_sessions=*/4, /*timeout_ms=*/1000);
  ASSERT_NE(t, nullptr);
  const std::string serial = t->Identity().serial;
  {
    auto s = t->Acquire();
    ASSERT_OK(s);
    ASSERT_OK(s->GenerateKey("k", KeyType::kHmacSha256, KeyUsage::kSign));
  }
  // A second token labelled otd-test, initialised through this process's module (SoftHSM does
  // not see tokens other processes create until it is re-initialised).
  CK_FUNCTION_LIST* f = TokenTestPeer::Functions(*t);
  CK_ULONG n = 0;
  ASSERT_EQ(f->C_GetSlotList(CK_TRUE, nullptr, &n), CKR_OK);
  std::vector<CK_SLOT_ID> slots(n);
  ASSERT_EQ(f->C_GetSlotList(CK_TRUE, slots.data(), &n), CKR_OK);
  std::optional<CK_SLOT_ID> free_slot;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO ti{};
    if (f->C_GetTokenInfo(slot, &ti) == CKR_OK && (ti.flags & CKF_TOKEN_INITIALIZED) == 0) {
      free_slot = slot;
    }
  }
  ASSERT_TRUE(free_slot.has_value());
  std::string padded(kLabel);
  padded.resize(32, ' ');
  std::string so_pin(kSoPin);
  ASSERT_EQ(f->C_InitToken(*free_slot, reinterpret_cast<CK_UTF8CHAR*>(so_pin.data()), so_pin.size(),
                           reinterpret_cast<CK_UTF8CHAR*>(padded.data())),
            CKR_OK);
  ASSERT_EQ(SerialsLabelled(kLabel).size(), 2u);
  ASSERT_EQ(TokenTestPeer::CloseAllSessions(*t), CKR_OK);
  {  // the pooled session is dead; the next lease re-opens the token
    auto s = t->Acquire();
    ASSERT_OK(s);
    EXPECT_THAT(s->HasKey("k"), Not(IsOk()));
  }
  auto s = t->Acquire();
  ASSERT_OK(s);
  auto has = s->HasKey("k");
  ASSERT_OK(has);
  EXPECT_TRUE(*has);
  EXPECT_EQ(t->Identity().serial, serial);
}

TEST_F(HsmTest, NeitherLabelNorSerialIsInvalid) {
  TokenConfig c = Config();
  c.token_label.clear();
  EXPECT_EQ(CodeOf(Token::Open(std::move(c), nullptr)), Code::kInvalidArgument);
  TokenConfig long_serial = Config();
  long_serial.token_serial = std::string(17, '1');
  EXPECT_EQ(CodeOf(Token::Open(std::move(long_serial), nullptr)), Code::kInvalidArgument);
}

// --- persistent keys -------------------------------------------------------------------------

TEST_F(HsmTest, GeneratedKeysAreSensitiveNeverExtractableAndValueIsNotReadable) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  struct Case {
    const char* label;
    KeyType type;
    KeyUsage usage;
  };
  for (const Case& c : {Case{"kek", KeyType::kAes256, KeyUsage::kWrap},
                        Case{"dek", KeyType::kAes256, KeyUsage::kEncrypt},
                        Case{"idx", KeyType::kHmacSha256, KeyUsage::kSign}}) {
    SCOPED_TRACE(c.label);
    ASSERT_OK(s->GenerateKey(c.label, c.type, c.usage));
    auto a = s->ReadAttributes(KeyRef::Persistent(c.label));
    ASSERT_OK(a);
    EXPECT_TRUE(a->token);
    EXPECT_TRUE(a->is_private);
    EXPECT_TRUE(a->sensitive);
    EXPECT_FALSE(a->extractable);
    EXPECT_TRUE(a->always_sensitive);
    EXPECT_TRUE(a->never_extractable);
    EXPECT_FALSE(a->modifiable);
    EXPECT_FALSE(a->value_readable);

    CK_OBJECT_HANDLE o = FindRaw(*t, *s, c.label);
    ASSERT_NE(o, CK_INVALID_HANDLE);
    EXPECT_EQ(ValueLengthQuery(*t, *s, o), CKR_ATTRIBUTE_SENSITIVE);
    // Only the usage flags for the usage are set.
    EXPECT_EQ(BoolAttr(*t, *s, o, CKA_WRAP), c.usage == KeyUsage::kWrap);
    EXPECT_EQ(BoolAttr(*t, *s, o, CKA_UNWRAP), c.usage == KeyUsage::kWrap);
    EXPECT_EQ(BoolAttr(*t, *s, o, CKA_ENCRYPT), c.usage == KeyUsage::kEncrypt);
    EXPECT_EQ(BoolAttr(*t, *s, o, CKA_DECRYPT), c.usage == KeyUsage::kEncrypt);
    EXPECT_EQ(BoolAttr(*t, *s, o, CKA_SIGN), c.usage == KeyUsage::kSign);
    EXPECT_EQ(BoolAttr(*t, *s, o, CKA_VERIFY), c.usage == KeyUsage::kSign);
    EXPECT_FALSE(BoolAttr(*t, *s, o, CKA_DERIVE));
    // CKA_ID is the label; the key type and length are as asked.
    char id[16] = {};
    CK_KEY_TYPE kt = 0;
    CK_ULONG len = 0;
    CK_ATTRIBUTE q[] = {
        {CKA_ID, id, sizeof id}, {CKA_KEY_TYPE, &kt, sizeof kt}, {CKA_VALUE_LEN, &len, sizeof len}};
    ASSERT_EQ(TokenTestPeer::Functions(*t)->C_GetAttributeValue(TokenTestPeer::Handle(*s), o, q, 3),
              CKR_OK);
    EXPECT_EQ(std::string(id, q[0].ulValueLen), c.label);
    EXPECT_EQ(kt, c.type == KeyType::kAes256 ? CKK_AES : CKK_GENERIC_SECRET);
    EXPECT_EQ(len, 32u);
  }
}

TEST_F(HsmTest, DuplicateLabelIsAlreadyExists) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  ASSERT_OK(s->GenerateKey("k", KeyType::kAes256, KeyUsage::kWrap));
  EXPECT_EQ(CodeOf(s->GenerateKey("k", KeyType::kAes256, KeyUsage::kWrap)), Code::kAlreadyExists);
  EXPECT_EQ(CodeOf(s->GenerateKey("k", KeyType::kHmacSha256, KeyUsage::kSign)),
            Code::kAlreadyExists);
}

TEST_F(HsmTest, HasKeyAndMissingKeysAreNotFound) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  auto has = s->HasKey("k");
  ASSERT_OK(has);
  EXPECT_FALSE(*has);
  ASSERT_OK(s->GenerateKey("k", KeyType::kHmacSha256, KeyUsage::kSign));
  has = s->HasKey("k");
  ASSERT_OK(has);
  EXPECT_TRUE(*has);
  EXPECT_EQ(CodeOf(s->Sign(KeyRef::Persistent("missing"), AsBytes("x"))), Code::kNotFound);
  EXPECT_EQ(CodeOf(s->ReadAttributes(KeyRef::Persistent("missing"))), Code::kNotFound);
}

TEST_F(HsmTest, KeyLabelsListsPersistentKeysByPrefix) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  auto none = s->KeyLabels("otd-");
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
  ASSERT_OK(s->GenerateKey("otd-index-v1", KeyType::kHmacSha256, KeyUsage::kSign));
  ASSERT_OK(s->GenerateKey("otd-kek-v1", KeyType::kAes256, KeyUsage::kWrap));
  ASSERT_OK(s->GenerateKey("other", KeyType::kAes256, KeyUsage::kWrap));
  // A session object (an unwrapped data key) is not a persistent key.
  auto wrapped = s->GenerateWrapped(KeyRef::Persistent("otd-kek-v1"), KeyType::kAes256);
  ASSERT_OK(wrapped);
  auto dk =
      s->Unwrap(KeyRef::Persistent("otd-kek-v1"), *wrapped, KeyType::kAes256, KeyUsage::kEncrypt);
  ASSERT_OK(dk);
  auto labels = s->KeyLabels("otd-");
  ASSERT_OK(labels);
  EXPECT_EQ(*labels, (std::vector<std::string>{"otd-index-v1", "otd-kek-v1"}));
  auto all = s->KeyLabels("");
  ASSERT_OK(all);
  EXPECT_EQ(all->size(), 3u);
}

TEST_F(HsmTest, KeyTypeAndUsageMustMatch) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  EXPECT_EQ(CodeOf(s->GenerateKey("a", KeyType::kAes256, KeyUsage::kSign)), Code::kInvalidArgument);
  EXPECT_EQ(CodeOf(s->GenerateKey("h", KeyType::kHmacSha256, KeyUsage::kWrap)),
            Code::kInvalidArgument);
  EXPECT_EQ(CodeOf(s->GenerateKey("", KeyType::kAes256, KeyUsage::kWrap)), Code::kInvalidArgument);
}

TEST_F(HsmTest, KeysPersistAcrossTokenCloseAndReopen) {
  Bytes ct, mac;
  {
    auto t = OpenOrDie();
    ASSERT_NE(t, nullptr);
    auto s = t->Acquire();
    ASSERT_OK(s);
    ASSERT_OK(s->GenerateKey("dek", KeyType::kAes256, KeyUsage::kEncrypt));
    ASSERT_OK(s->GenerateKey("idx", KeyType::kHmacSha256, KeyUsage::kSign));
    auto c = s->EncryptGcm(KeyRef::Persistent("dek"), Iv(7), AsBytes("aad"), AsBytes("secret"));
    ASSERT_OK(c);
    ct = *c;
    auto m = s->Sign(KeyRef::Persistent("idx"), AsBytes("id-1"));
    ASSERT_OK(m);
    mac = *m;
  }
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  auto has = s->HasKey("dek");
  ASSERT_OK(has);
  EXPECT_TRUE(*has);
  auto p = s->DecryptGcm(KeyRef::Persistent("dek"), Iv(7), AsBytes("aad"), ct);
  ASSERT_OK(p);
  EXPECT_EQ(Plain(*p), "secret");
  auto m = s->Sign(KeyRef::Persistent("idx"), AsBytes("id-1"));
  ASSERT_OK(m);
  EXPECT_EQ(*m, mac);
  EXPECT_EQ(CodeOf(s->GenerateKey("dek", KeyType::kAes256, KeyUsage::kEncrypt)),
            Code::kAlreadyExists);
}

// --- AES-GCM ---------------------------------------------------------------------------------

TEST_F(HsmTest, GcmRoundTripWithAad) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  ASSERT_OK(s->GenerateKey("dek", KeyType::kAes256, KeyUsage::kEncrypt));
  const KeyRef k = KeyRef::Persistent("dek");
  const std::string msg = "4111 1111 1111 1111";
  auto ct = s->EncryptGcm(k, Iv(1), AsBytes("table|acct|id"), AsBytes(msg));
  ASSERT_OK(ct);
  EXPECT_EQ(ct->size(), msg.size() + 16);
  EXPECT_EQ(std::string(ct->begin(), ct->begin() + msg.size()).find("4111"), std::string::npos);
  auto pt = s->DecryptGcm(k, Iv(1), AsBytes("table|acct|id"), *ct);
  ASSERT_OK(pt);
  EXPECT_EQ(Plain(*pt), msg);

  // Empty plaintext and empty AAD.
  auto ct0 = s->EncryptGcm(k, Iv(2), {}, {});
  ASSERT_OK(ct0);
  EXPECT_EQ(ct0->size(), 16u);
  auto pt0 = s->DecryptGcm(k, Iv(2), {}, *ct0);
  ASSERT_OK(pt0);
  EXPECT_TRUE(pt0->empty());

  // Larger input.
  std::string big(100000, 'z');
  auto ctb = s->EncryptGcm(k, Iv(3), AsBytes("a"), AsBytes(big));
  ASSERT_OK(ctb);
  auto ptb = s->DecryptGcm(k, Iv(3), AsBytes("a"), *ctb);
  ASSERT_OK(ptb);
  EXPECT_EQ(Plain(*ptb), big);
}

TEST_F(HsmTest, GcmWithWrongAadFlippedBitOrWrongKeyIsDataLoss) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  ASSERT_OK(s->GenerateKey("dek", KeyType::kAes256, KeyUsage::kEncrypt));
  ASSERT_OK(s->GenerateKey("other", KeyType::kAes256, KeyUsage::kEncrypt));
  const KeyRef k = KeyRef::Persistent("dek");
  auto ct = s->EncryptGcm(k, Iv(1), AsBytes("aad"), AsBytes("payload"));
  ASSERT_OK(ct);

  auto r1 = s->DecryptGcm(k, Iv(1), AsBytes("aad2"), *ct);
  EXPECT_EQ(CodeOf(r1), Code::kDataLoss) << r1.status().ToString();
  for (size_t i : {size_t{0}, ct->size() - 1}) {  // a ciphertext bit and a tag bit
    Bytes flipped = *ct;
    flipped[i] ^= 0x01;
    EXPECT_EQ(CodeOf(s->DecryptGcm(k, Iv(1), AsBytes("aad"), flipped)), Code::kDataLoss);
  }
  EXPECT_EQ(CodeOf(s->DecryptGcm(k, Iv(9), AsBytes("aad"), *ct)), Code::kDataLoss);
  EXPECT_EQ(CodeOf(s->DecryptGcm(KeyRef::Persistent("other"), Iv(1), AsBytes("aad"), *ct)),
            Code::kDataLoss);
  EXPECT_EQ(CodeOf(s->DecryptGcm(k, Iv(1), AsBytes("aad"), ByteView(ct->data(), 15))),
            Code::kDataLoss);
  // The session is still usable after authentication failures.
  auto ok = s->DecryptGcm(k, Iv(1), AsBytes("aad"), *ct);
  ASSERT_OK(ok);
  EXPECT_EQ(Plain(*ok), "payload");
}

TEST_F(HsmTest, GcmIvMustBeTwelveBytes) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  ASSERT_OK(s->GenerateKey("dek", KeyType::kAes256, KeyUsage::kEncrypt));
  const KeyRef k = KeyRef::Persistent("dek");
  EXPECT_EQ(CodeOf(s->EncryptGcm(k, Bytes(16, 0), {}, AsBytes("x"))), Code::kInvalidArgument);
  EXPECT_EQ(CodeOf(s->EncryptGcm(k, {}, {}, AsBytes("x"))), Code::kInvalidArgument);
  EXPECT_EQ(CodeOf(s->DecryptGcm(k, Bytes(8, 0), {}, Bytes(32, 0))), Code::kInvalidArgument);
}

TEST_F(HsmTest, KeysAreUsableOnlyForTheirUsage) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  ASSERT_OK(s->GenerateKey("kek", KeyType::kAes256, KeyUsage::kWrap));
  auto r = s->EncryptGcm(KeyRef::Persistent("kek"), Iv(1), {}, AsBytes("x"));
  EXPECT_EQ(CodeOf(r), Code::kInternal) << r.status().ToString();
  EXPECT_NE(r.status().message().find("CKR_KEY_FUNCTION_NOT_PERMITTED"), std::string::npos);
  // ... and the session still works.
  EXPECT_OK(s->GenerateWrapped(KeyRef::Persistent("kek"), KeyType::kAes256));
}

// --- HMAC ------------------------------------------------------------------------------------

TEST_F(HsmTest, HmacSha256OfAnImportedKeyMatchesOpenSsl) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  ASSERT_OK(s->GenerateKey("kek", KeyType::kAes256, KeyUsage::kWrap));
  uint8_t raw[32];
  for (int i = 0; i < 32; ++i)
    raw[i] = static_cast<uint8_t>(i * 7 + 3);
  SecretBytes key = SecretBytes::CopyFrom(std::span<const uint8_t>(raw, 32));
  auto wrapped = s->ImportWrapped(KeyRef::Persistent("kek"), KeyType::kHmacSha256, key);
  ASSERT_OK(wrapped);
  EXPECT_EQ(wrapped->size(), 40u);  // RFC 5649: 32 bytes + 8
  auto sk = s->Unwrap(KeyRef::Persistent("kek"), *wrapped, KeyType::kHmacSha256, KeyUsage::kSign);
  ASSERT_OK(sk);

  const std::string msg = "The quick brown fox jumps over the lazy dog";
  uint8_t expected[EVP_MAX_MD_SIZE];
  unsigned int expected_len = 0;
  ASSERT_NE(HMAC(EVP_sha256(), raw, 32, reinterpret_cast<const uint8_t*>(msg.data()), msg.size(),
                 expected, &expected_len),
            nullptr);
  auto mac = s->Sign(sk->ref(), AsBytes(msg));
  ASSERT_OK(mac);
  EXPECT_EQ(*mac, Bytes(expected, expected + expected_len));

  // Empty message too.
  ASSERT_NE(HMAC(EVP_sha256(), raw, 32, nullptr, 0, expected, &expected_len), nullptr);
  auto mac0 = s->Sign(sk->ref(), {});
  ASSERT_OK(mac0);
  EXPECT_EQ(*mac0, Bytes(expected, expected + expected_len));
}

TEST_F(HsmTest, VerifyIsTrueForTheRightMacAndFalseOtherwise) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  ASSERT_OK(s->GenerateKey("idx", KeyType::kHmacSha256, KeyUsage::kSign));
  ASSERT_OK(s->GenerateKey("idx2", KeyType::kHmacSha256, KeyUsage::kSign));
  const KeyRef k = KeyRef::Persistent("idx");
  auto mac = s->Sign(k, AsBytes("message"));
  ASSERT_OK(mac);
  ASSERT_EQ(mac->size(), 32u);
  auto v = s->Verify(k, AsBytes("message"), *mac);
  ASSERT_OK(v);
  EXPECT_TRUE(*v);
  v = s->Verify(k, AsBytes("messagf"), *mac);
  ASSERT_OK(v);
  EXPECT_FALSE(*v);
  Bytes bad = *mac;
  bad[5] ^= 0x80;
  v = s->Verify(k, AsBytes("message"), bad);
  ASSERT_OK(v);
  EXPECT_FALSE(*v);
  v = s->Verify(k, AsBytes("message"), ByteView(mac->data(), 31));
  ASSERT_OK(v);
  EXPECT_FALSE(*v);
  v = s->Verify(KeyRef::Persistent("idx2"), AsBytes("message"), *mac);
  ASSERT_OK(v);
  EXPECT_FALSE(*v);
}

TEST_F(HsmTest, ShortHmacKeysImportButSoftHsmRefusesToSignWithThem) {
  // hsm.h accepts 16..128-byte HMAC keys; SoftHSM 2.6 requires >= 32 bytes for CKM_SHA256_HMAC
  // (CKR_KEY_SIZE_RANGE at C_SignInit). Recorded here so that a change of module shows up.
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  ASSERT_OK(s->GenerateKey("kek", KeyType::kAes256, KeyUsage::kWrap));
  const KeyRef kek = KeyRef::Persistent("kek");
  EXPECT_EQ(CodeOf(s->ImportWrapped(kek, KeyType::kHmacSha256, SecretBytes(15))),
            Code::kInvalidArgument);
  EXPECT_EQ(CodeOf(s->ImportWrapped(kek, KeyType::kHmacSha256, SecretBytes(129))),
            Code::kInvalidArgument);
  EXPECT_EQ(CodeOf(s->ImportWrapped(kek, KeyType::kAes256, SecretBytes(16))),
            Code::kInvalidArgument);
  auto w128 =
      s->ImportWrapped(kek, KeyType::kHmacSha256, SecretBytes::CopyFrom(std::string(128, 'k')));
  ASSERT_OK(w128);
  auto k128 = s->Unwrap(kek, *w128, KeyType::kHmacSha256, KeyUsage::kSign);
  ASSERT_OK(k128);
  EXPECT_OK(s->Sign(k128->ref(), AsBytes("x")));

  auto w16 =
      s->ImportWrapped(kek, KeyType::kHmacSha256, SecretBytes::CopyFrom(std::string(16, 'k')));
  ASSERT_OK(w16);
  auto k16 = s->Unwrap(kek, *w16, KeyType::kHmacSha256, KeyUsage::kSign);
  ASSERT_OK(k16);
  auto mac = s->Sign(k16->ref(), AsBytes("x"));
  EXPECT_EQ(CodeOf(mac), Code::kInternal);
  EXPECT_NE(mac.status().message().find("CKR_KEY_SIZE_RANGE"), std::string::npos)
      << mac.status().ToString();
}

// --- wrapping --------------------------------------------------------------------------------

TEST_F(HsmTest, UnwrapCachedReusesEvictsAndExpiresSessionObjects) {
  TokenConfig c = Config(kPin, 1);
  c.unwrap_cache_per_session = 2;
  c.unwrap_cache_ttl_ms = 300;
  auto t = Token::Open(std::move(c), &log_);
  ASSERT_OK(t);
  auto s = (*t)->Acquire();
  ASSERT_OK(s);
  ASSERT_OK(s->GenerateKey("kek", KeyType::kAes256, KeyUsage::kWrap));
  const KeyRef kek = KeyRef::Persistent("kek");
  auto w1 = s->GenerateWrapped(kek, KeyType::kAes256);
  auto w2 = s->GenerateWrapped(kek, KeyType::kAes256);
  auto w3 = s->GenerateWrapped(kek, KeyType::kAes256);
  ASSERT_OK(w1);
  ASSERT_OK(w2);
  ASSERT_OK(w3);
  auto a = s->UnwrapCached(kek, *w1, KeyType::kAes256, KeyUsage::kEncrypt);
  auto a2 = s->UnwrapCached(kek, *w1, KeyType::kAes256, KeyUsage::kEncrypt);
  ASSERT_OK(a);
  ASSERT_OK(a2);
  EXPECT_EQ(a->session_object(), a2->session_object());  // a hit: no new object
  auto ct = s->EncryptGcm(*a, Iv(1), AsBytes("aad"), AsBytes("cached"));
  ASSERT_OK(ct);
  // Same blob with another usage is another entry; a different blob too.
  auto b = s->UnwrapCached(kek, *w2, KeyType::kAes256, KeyUsage::kEncrypt);
  ASSERT_OK(b);
  EXPECT_NE(b->session_object(), a->session_object());
  // A third entry evicts the least recently used (w1's): its object is destroyed.
  auto d = s->UnwrapCached(kek, *w3, KeyType::kAes256, KeyUsage::kEncrypt);
  ASSERT_OK(d);
  EXPECT_FALSE(s->DecryptGcm(*a, Iv(1), AsBytes("aad"), *ct).ok());
  auto again = s->UnwrapCached(kek, *w1, KeyType::kAes256, KeyUsage::kEncrypt);
  ASSERT_OK(again);
  auto pt = s->DecryptGcm(*again, Iv(1), AsBytes("aad"), *ct);
  ASSERT_OK(pt);
  EXPECT_EQ(pt->RevealString(SecretAccess::Grant()), "cached");
  // After the TTL the entry is unwrapped anew, and the old object destroyed.
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  auto fresh = s->UnwrapCached(kek, *w1, KeyType::kAes256, KeyUsage::kEncrypt);
  ASSERT_OK(fresh);
  EXPECT_FALSE(s->DecryptGcm(*again, Iv(1), AsBytes("aad"), *ct).ok() &&
               again->session_object() != fresh->session_object());
  ASSERT_OK(s->DecryptGcm(*fresh, Iv(1), AsBytes("aad"), *ct));
  // A corrupted blob is still refused (nothing cached for it).
  Bytes bad = *w2;
  bad[5] ^= 1;
  EXPECT_EQ(s->UnwrapCached(kek, bad, KeyType::kAes256, KeyUsage::kEncrypt).status().code(),
            Code::kDataLoss);
}

TEST_F(HsmTest, GenerateWrappedThenUnwrapEncryptsAndDecrypts) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  ASSERT_OK(s->GenerateKey("kek", KeyType::kAes256, KeyUsage::kWrap));
  const KeyRef kek = KeyRef::Persistent("kek");
  auto w1 = s->GenerateWrapped(kek, KeyType::kAes256);
  ASSERT_OK(w1);
  EXPECT_EQ(w1->size(), 40u);
  auto w2 = s->GenerateWrapped(kek, KeyType::kAes256);
  ASSERT_OK(w2);
  EXPECT_NE(*w1, *w2);

  Bytes ct;
  {
    auto dk = s->Unwrap(kek, *w1, KeyType::kAes256, KeyUsage::kEncrypt);
    ASSERT_OK(dk);
    auto c = s->EncryptGcm(dk->ref(), Iv(4), AsBytes("aad"), AsBytes("hello"));
    ASSERT_OK(c);
    ct = *c;
  }
  {  // a fresh unwrap of the same blob (another session object) decrypts
    auto dk = s->Unwrap(kek, *w1, KeyType::kAes256, KeyUsage::kEncrypt);
    ASSERT_OK(dk);
    auto p = s->DecryptGcm(dk->ref(), Iv(4), AsBytes("aad"), ct);
    ASSERT_OK(p);
    EXPECT_EQ(Plain(*p), "hello");
  }
  {  // another data key does not
    auto dk = s->Unwrap(kek, *w2, KeyType::kAes256, KeyUsage::kEncrypt);
    ASSERT_OK(dk);
    EXPECT_EQ(CodeOf(s->DecryptGcm(dk->ref(), Iv(4), AsBytes("aad"), ct)), Code::kDataLoss);
  }
  // Generated HMAC keys wrap too.
  auto wh = s->GenerateWrapped(kek, KeyType::kHmacSha256);
  ASSERT_OK(wh);
  auto hk = s->Unwrap(kek, *wh, KeyType::kHmacSha256, KeyUsage::kSign);
  ASSERT_OK(hk);
  EXPECT_OK(s->Sign(hk->ref(), AsBytes("m")));
  // No temporary key objects are left behind (only kek + the one live unwrapped key).
  CK_FUNCTION_LIST* f = TokenTestPeer::Functions(*t);
  CK_SESSION_HANDLE h = TokenTestPeer::Handle(*s);
  ASSERT_EQ(f->C_FindObjectsInit(h, nullptr, 0), CKR_OK);
  CK_OBJECT_HANDLE objs[16];
  CK_ULONG n = 0;
  ASSERT_EQ(f->C_FindObjects(h, objs, 16, &n), CKR_OK);
  f->C_FindObjectsFinal(h);
  EXPECT_EQ(n, 2u);
}

TEST_F(HsmTest, UnwrappedKeyIsSensitiveNotExtractableAndDestroyedWithItsOwner) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  ASSERT_OK(s->GenerateKey("kek", KeyType::kAes256, KeyUsage::kWrap));
  const KeyRef kek = KeyRef::Persistent("kek");
  auto w = s->GenerateWrapped(kek, KeyType::kAes256);
  ASSERT_OK(w);
  CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
  {
    auto dk = s->Unwrap(kek, *w, KeyType::kAes256, KeyUsage::kEncrypt);
    ASSERT_OK(dk);
    object = dk->ref().session_object();
    ASSERT_NE(object, CK_INVALID_HANDLE);
    auto a = s->ReadAttributes(dk->ref());
    ASSERT_OK(a);
    EXPECT_FALSE(a->token);
    EXPECT_TRUE(a->sensitive);
    EXPECT_FALSE(a->extractable);
    EXPECT_FALSE(a->value_readable);
    EXPECT_EQ(ValueLengthQuery(*t, *s, object), CKR_ATTRIBUTE_SENSITIVE);
    EXPECT_FALSE(BoolAttr(*t, *s, object, CKA_WRAP));
    EXPECT_FALSE(BoolAttr(*t, *s, object, CKA_SIGN));
    EXPECT_TRUE(BoolAttr(*t, *s, object, CKA_ENCRYPT));
    // It cannot be wrapped out again, not even under the KEK.
    CK_MECHANISM mech{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
    uint8_t buf[64];
    CK_ULONG n = sizeof buf;
    EXPECT_EQ(TokenTestPeer::Functions(*t)->C_WrapKey(TokenTestPeer::Handle(*s), &mech,
                                                      FindRaw(*t, *s, "kek"), object, buf, &n),
              CKR_KEY_UNEXTRACTABLE);
    // Moving the owner keeps one owner.
    SessionKey moved = std::move(*dk);
    EXPECT_EQ(moved.ref().session_object(), object);
  }
  EXPECT_EQ(ValueLengthQuery(*t, *s, object), CKR_OBJECT_HANDLE_INVALID);
}

TEST_F(HsmTest, BlobWrappedUnderOneKekDoesNotUnwrapUnderAnother) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  ASSERT_OK(s->GenerateKey("kek1", KeyType::kAes256, KeyUsage::kWrap));
  ASSERT_OK(s->GenerateKey("kek2", KeyType::kAes256, KeyUsage::kWrap));
  auto w = s->GenerateWrapped(KeyRef::Persistent("kek1"), KeyType::kAes256);
  ASSERT_OK(w);
  auto r = s->Unwrap(KeyRef::Persistent("kek2"), *w, KeyType::kAes256, KeyUsage::kEncrypt);
  EXPECT_EQ(CodeOf(r), Code::kDataLoss) << r.status().ToString();
  Bytes corrupt = *w;
  corrupt[10] ^= 1;
  EXPECT_EQ(
      CodeOf(s->Unwrap(KeyRef::Persistent("kek1"), corrupt, KeyType::kAes256, KeyUsage::kEncrypt)),
      Code::kDataLoss);
  EXPECT_EQ(CodeOf(s->Unwrap(KeyRef::Persistent("kek1"), ByteView(w->data(), 8), KeyType::kAes256,
                             KeyUsage::kEncrypt)),
            Code::kDataLoss);
  EXPECT_EQ(CodeOf(s->Unwrap(KeyRef::Persistent("kek1"), {}, KeyType::kAes256, KeyUsage::kEncrypt)),
            Code::kDataLoss);
  EXPECT_OK(s->Unwrap(KeyRef::Persistent("kek1"), *w, KeyType::kAes256, KeyUsage::kEncrypt));
}

TEST_F(HsmTest, RewrapMovesAKeyToAnotherKekInsideTheToken) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  ASSERT_OK(s->GenerateKey("kek1", KeyType::kAes256, KeyUsage::kWrap));
  ASSERT_OK(s->GenerateKey("kek2", KeyType::kAes256, KeyUsage::kWrap));
  const KeyRef kek1 = KeyRef::Persistent("kek1");
  const KeyRef kek2 = KeyRef::Persistent("kek2");
  auto w1 = s->GenerateWrapped(kek1, KeyType::kAes256);
  ASSERT_OK(w1);
  Bytes ct;
  {
    auto dk = s->Unwrap(kek1, *w1, KeyType::kAes256, KeyUsage::kEncrypt);
    ASSERT_OK(dk);
    auto c = s->EncryptGcm(dk->ref(), Iv(7), AsBytes("aad"), AsBytes("rotated"));
    ASSERT_OK(c);
    ct = *c;
  }
  auto w2 = s->Rewrap(kek1, kek2, *w1, KeyType::kAes256);
  ASSERT_OK(w2);
  EXPECT_NE(*w2, *w1);
  // The same key under the new KEK: it decrypts what the old blob's key encrypted.
  {
    auto dk = s->Unwrap(kek2, *w2, KeyType::kAes256, KeyUsage::kEncrypt);
    ASSERT_OK(dk);
    auto p = s->DecryptGcm(dk->ref(), Iv(7), AsBytes("aad"), ct);
    ASSERT_OK(p);
    EXPECT_EQ(Plain(*p), "rotated");
    // Unwrapped for use, it is still not extractable.
    auto a = s->ReadAttributes(dk->ref());
    ASSERT_OK(a);
    EXPECT_FALSE(a->extractable);
  }
  EXPECT_EQ(CodeOf(s->Unwrap(kek1, *w2, KeyType::kAes256, KeyUsage::kEncrypt)), Code::kDataLoss);
  // HMAC keys (access-code secrets) rewrap too and keep their value.
  auto wh =
      s->ImportWrapped(kek1, KeyType::kHmacSha256, SecretBytes::CopyFrom(std::string(32, 0x5a)));
  ASSERT_OK(wh);
  auto wh2 = s->Rewrap(kek1, kek2, *wh, KeyType::kHmacSha256);
  ASSERT_OK(wh2);
  {
    auto h1 = s->Unwrap(kek1, *wh, KeyType::kHmacSha256, KeyUsage::kSign);
    auto h2 = s->Unwrap(kek2, *wh2, KeyType::kHmacSha256, KeyUsage::kSign);
    ASSERT_OK(h1);
    ASSERT_OK(h2);
    auto m1 = s->Sign(h1->ref(), AsBytes("m"));
    auto m2 = s->Sign(h2->ref(), AsBytes("m"));
    ASSERT_OK(m1);
    ASSERT_OK(m2);
    EXPECT_EQ(*m1, *m2);
  }
  // A blob that does not authenticate under the source KEK is data loss; nothing is left behind.
  EXPECT_EQ(CodeOf(s->Rewrap(kek2, kek1, *w1, KeyType::kAes256)), Code::kDataLoss);
  CK_FUNCTION_LIST* f = TokenTestPeer::Functions(*t);
  CK_SESSION_HANDLE h = TokenTestPeer::Handle(*s);
  ASSERT_EQ(f->C_FindObjectsInit(h, nullptr, 0), CKR_OK);
  CK_OBJECT_HANDLE objs[16];
  CK_ULONG n = 0;
  ASSERT_EQ(f->C_FindObjects(h, objs, 16, &n), CKR_OK);
  f->C_FindObjectsFinal(h);
  EXPECT_EQ(n, 2u);  // kek1 and kek2 only
}

// --- random ----------------------------------------------------------------------------------

TEST_F(HsmTest, RandomGivesDistinctOutputs) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  auto s = t->Acquire();
  ASSERT_OK(s);
  Bytes a(32), b(32);
  ASSERT_OK(s->Random(a));
  ASSERT_OK(s->Random(b));
  EXPECT_NE(a, b);
  EXPECT_NE(a, Bytes(32, 0));
  EXPECT_OK(s->Random(std::span<uint8_t>()));
}

// --- pool ------------------------------------------------------------------------------------

TEST_F(HsmTest, PoolServesEightThreadsDoingTwoHundredOperationsEach) {
  auto t = OpenOrDie(/*max_sessions=*/4, /*timeout_ms=*/10000);
  ASSERT_NE(t, nullptr);
  {
    auto s = t->Acquire();
    ASSERT_OK(s);
    ASSERT_OK(s->GenerateKey("dek", KeyType::kAes256, KeyUsage::kEncrypt));
    ASSERT_OK(s->GenerateKey("idx", KeyType::kHmacSha256, KeyUsage::kSign));
  }
  std::atomic<int> failures{0};
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < 8; ++th) {
    threads.emplace_back([&, th] {
      for (int i = 0; i < 200; ++i) {
        auto s = t->Acquire();
        if (!s.ok()) {
          ++failures;
          continue;
        }
        const std::string msg = "t" + std::to_string(th) + "-" + std::to_string(i);
        Bytes iv(12, static_cast<uint8_t>(i));
        iv[0] = static_cast<uint8_t>(th);
        bool ok = false;
        switch (i % 3) {
          case 0: {
            auto c = s->EncryptGcm(KeyRef::Persistent("dek"), iv, AsBytes("a"), AsBytes(msg));
            if (c.ok()) {
              auto p = s->DecryptGcm(KeyRef::Persistent("dek"), iv, AsBytes("a"), *c);
              ok = p.ok() && Plain(*p) == msg;
            }
            break;
          }
          case 1: {
            auto m = s->Sign(KeyRef::Persistent("idx"), AsBytes(msg));
            if (m.ok()) {
              auto v = s->Verify(KeyRef::Persistent("idx"), AsBytes(msg), *m);
              ok = v.ok() && *v;
            }
            break;
          }
          default: {
            Bytes r(16);
            ok = s->Random(r).ok();
            break;
          }
        }
        if (ok) {
          ++done;
        } else {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(done.load(), 1600);
  EXPECT_LE(TokenTestPeer::OpenSessions(*t), 4u);
  EXPECT_EQ(TokenTestPeer::OpenSessions(*t), TokenTestPeer::IdleSessions(*t));
}

TEST_F(HsmTest, AcquireTimesOutWhenAllSessionsAreLeasedAndWakesWhenOneIsReturned) {
  auto t = OpenOrDie(/*max_sessions=*/2, /*timeout_ms=*/150);
  ASSERT_NE(t, nullptr);
  auto s1 = t->Acquire();
  ASSERT_OK(s1);
  auto s2 = std::make_unique<Result<Session>>(t->Acquire());
  ASSERT_OK(*s2);
  EXPECT_NE(TokenTestPeer::Handle(*s1), TokenTestPeer::Handle(**s2));

  auto start = std::chrono::steady_clock::now();
  auto s3 = t->Acquire();
  auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_THAT(s3, Not(IsOk()));
  EXPECT_EQ(CodeOf(s3), Code::kResourceExhausted) << s3.status().ToString();
  EXPECT_GE(waited, std::chrono::milliseconds(140));
  TokenHealth busy = t->Health();  // busy is not unhealthy, and does not wait long
  EXPECT_TRUE(busy.ok) << busy.detail;
  EXPECT_NE(busy.detail.find("busy"), std::string::npos) << busy.detail;

  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    s2.reset();
  });
  auto s4 = t->Acquire();
  releaser.join();
  ASSERT_OK(s4);
  EXPECT_EQ(TokenTestPeer::OpenSessions(*t), 2u);
}

TEST_F(HsmTest, MovedSessionStillReturnsToThePoolOnce) {
  auto t = OpenOrDie(/*max_sessions=*/1, /*timeout_ms=*/50);
  ASSERT_NE(t, nullptr);
  {
    auto s = t->Acquire();
    ASSERT_OK(s);
    ASSERT_OK(s->GenerateKey("kek", KeyType::kAes256, KeyUsage::kWrap));
    auto w = s->GenerateWrapped(KeyRef::Persistent("kek"), KeyType::kAes256);
    ASSERT_OK(w);
    auto dk = std::make_unique<Result<SessionKey>>(
        s->Unwrap(KeyRef::Persistent("kek"), *w, KeyType::kAes256, KeyUsage::kEncrypt));
    ASSERT_OK(*dk);
    Session moved(std::move(*s));  // moving a Session while a SessionKey exists is fine
    EXPECT_EQ(CodeOf(s->Random(std::span<uint8_t>())), Code::kFailedPrecondition);
    EXPECT_OK(moved.EncryptGcm((*dk)->ref(), Iv(1), {}, AsBytes("x")));
    EXPECT_EQ(CodeOf(t->Acquire()), Code::kResourceExhausted);
    dk.reset();
  }
  EXPECT_EQ(TokenTestPeer::IdleSessions(*t), 1u);
  EXPECT_OK(t->Acquire());
  EXPECT_EQ(log_out_.str().find("hsm_session_released_with_live_keys"), std::string::npos);
}

TEST_F(HsmTest, SessionReturnedWhileItsSessionKeyLivesIsClosedNotPooled) {
  auto t = OpenOrDie(/*max_sessions=*/2, /*timeout_ms=*/50);
  ASSERT_NE(t, nullptr);
  std::unique_ptr<Result<SessionKey>> dk;
  {
    auto s = t->Acquire();
    ASSERT_OK(s);
    ASSERT_OK(s->GenerateKey("kek", KeyType::kAes256, KeyUsage::kWrap));
    auto w = s->GenerateWrapped(KeyRef::Persistent("kek"), KeyType::kAes256);
    ASSERT_OK(w);
    dk = std::make_unique<Result<SessionKey>>(
        s->Unwrap(KeyRef::Persistent("kek"), *w, KeyType::kAes256, KeyUsage::kEncrypt));
    ASSERT_OK(*dk);
  }  // caller bug: the Session dies first
  EXPECT_EQ(TokenTestPeer::OpenSessions(*t), 0u);
  EXPECT_NE(log_out_.str().find("hsm_session_released_with_live_keys"), std::string::npos);
  dk.reset();  // harmless now
  auto s = t->Acquire();
  ASSERT_OK(s);
  EXPECT_OK(s->GenerateWrapped(KeyRef::Persistent("kek"), KeyType::kAes256));
}

// --- recovery --------------------------------------------------------------------------------

TEST_F(HsmTest, RecoversAfterAllSessionsAreClosedBehindThePoolsBack) {
  auto t = OpenOrDie(/*max_sessions=*/4, /*timeout_ms=*/1000);
  ASSERT_NE(t, nullptr);
  Bytes ct;
  {
    auto s = t->Acquire();
    ASSERT_OK(s);
    ASSERT_OK(s->GenerateKey("dek", KeyType::kAes256, KeyUsage::kEncrypt));
    auto c = s->EncryptGcm(KeyRef::Persistent("dek"), Iv(1), {}, AsBytes("before"));
    ASSERT_OK(c);
    ct = *c;
  }
  const uint64_t gen = TokenTestPeer::Generation(*t);
  ASSERT_EQ(TokenTestPeer::CloseAllSessions(*t), CKR_OK);

  {  // the pooled session is dead: the next operation fails, without crashing
    auto s = t->Acquire();
    ASSERT_OK(s);
    auto r = s->DecryptGcm(KeyRef::Persistent("dek"), Iv(1), {}, ct);
    ASSERT_THAT(r, Not(IsOk()));
    EXPECT_EQ(CodeOf(r), Code::kUnavailable) << r.status().ToString();
    EXPECT_NE(r.status().message().find("CKR_SESSION_HANDLE_INVALID"), std::string::npos);
    // ... and stays failed without calling into the module again.
    EXPECT_EQ(CodeOf(s->Random(std::span<uint8_t>())), Code::kUnavailable);
  }
  EXPECT_EQ(TokenTestPeer::Generation(*t), gen + 1);
  {  // the one after that re-opens the token (slot lookup, session, login) and works
    auto s = t->Acquire();
    ASSERT_OK(s);
    auto p = s->DecryptGcm(KeyRef::Persistent("dek"), Iv(1), {}, ct);
    ASSERT_OK(p);
    EXPECT_EQ(Plain(*p), "before");
  }
  EXPECT_NE(log_out_.str().find("hsm_token_lost"), std::string::npos);
  EXPECT_NE(log_out_.str().find("hsm_token_reopened"), std::string::npos);
  EXPECT_TRUE(t->Health().ok);
}

TEST_F(HsmTest, APinRefusedAtReopenIsTriedOnceThenRefusedUntilRestart) {
  metrics::Registry registry;
  TokenConfig c = Config(kPin, 2);
  c.metrics = &registry;
  auto t = Token::Open(std::move(c), &log_);
  ASSERT_OK(t);
  {
    // The PIN changes behind the daemon's back (C_SetPIN in its own session), then every session
    // is closed (logged out): the next lease must log in again, with a PIN that no longer works.
    auto s = (*t)->Acquire();
    ASSERT_OK(s);
    std::string old_pin = kPin, new_pin = "98765";
    ASSERT_EQ(TokenTestPeer::Functions(**t)->C_SetPIN(
                  TokenTestPeer::Handle(*s), reinterpret_cast<CK_UTF8CHAR*>(old_pin.data()),
                  old_pin.size(), reinterpret_cast<CK_UTF8CHAR*>(new_pin.data()), new_pin.size()),
              CKR_OK);
  }
  ASSERT_EQ(TokenTestPeer::CloseAllSessions(**t), CKR_OK);
  auto logins = registry.AddCounter("opentokend_hsm_operations_total", "", {"op", "result"});
  ASSERT_OK(logins);
  metrics::Counter& failed = (*logins)->With({"login", "error"});
  for (int i = 0; i < 10; ++i) {
    auto s = (*t)->Acquire();
    if (s.ok()) {
      uint8_t b = 0;  // a pooled session from before: noticed dead by its first call
      (void)s->Random(std::span<uint8_t>(&b, 1));
      continue;
    }
    // Unavailable (the client is not at fault), never PermissionDenied at runtime.
    EXPECT_EQ(CodeOf(s), Code::kUnavailable) << StatusOf(s).ToString();
    EXPECT_NE(StatusOf(s).message().find("refused the PIN"), std::string::npos);
  }
  uint8_t byte = 0;
  for (int i = 0; i < 3; ++i) {
    auto s = (*t)->Acquire();
    if (s.ok())
      (void)s->Random(std::span<uint8_t>(&byte, 1));
  }
  EXPECT_EQ(failed.Value(), 1u) << "C_Login was retried with a refused PIN";
  EXPECT_FALSE((*t)->Health().ok);
  EXPECT_EQ(failed.Value(), 1u);
  EXPECT_NE(log_out_.str().find("\"hsm_login_refused\""), std::string::npos) << log_out_.str();
  EXPECT_EQ(log_out_.str().find("98765"), std::string::npos);
}

TEST_F(HsmTest, SessionsLeasedDuringALossAreDroppedWhenReturned) {
  auto t = OpenOrDie(/*max_sessions=*/2, /*timeout_ms=*/500);
  ASSERT_NE(t, nullptr);
  {
    auto s = t->Acquire();
    ASSERT_OK(s);
    ASSERT_OK(s->GenerateKey("kek", KeyType::kAes256, KeyUsage::kWrap));
  }
  auto a = std::make_unique<Result<Session>>(t->Acquire());
  ASSERT_OK(*a);
  auto b = std::make_unique<Result<Session>>(t->Acquire());
  ASSERT_OK(*b);
  auto w = (*b)->GenerateWrapped(KeyRef::Persistent("kek"), KeyType::kAes256);
  ASSERT_OK(w);
  auto dk = std::make_unique<Result<SessionKey>>(
      (*b)->Unwrap(KeyRef::Persistent("kek"), *w, KeyType::kAes256, KeyUsage::kEncrypt));
  ASSERT_OK(*dk);
  ASSERT_EQ(TokenTestPeer::CloseAllSessions(*t), CKR_OK);

  EXPECT_EQ(CodeOf((*a)->GenerateWrapped(KeyRef::Persistent("kek"), KeyType::kAes256)),
            Code::kUnavailable);
  // b is stale now too: it fails fast, and its SessionKey dies quietly.
  EXPECT_EQ(CodeOf((*b)->EncryptGcm((*dk)->ref(), Iv(1), {}, AsBytes("x"))), Code::kUnavailable);
  dk.reset();
  a.reset();
  b.reset();
  EXPECT_EQ(TokenTestPeer::OpenSessions(*t), 0u);

  auto c = t->Acquire();
  ASSERT_OK(c);
  EXPECT_OK(c->GenerateWrapped(KeyRef::Persistent("kek"), KeyType::kAes256));
  EXPECT_EQ(TokenTestPeer::OpenSessions(*t), 1u);
}

TEST_F(HsmTest, HealthReopensAfterALoss) {
  auto t = OpenOrDie();
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(TokenTestPeer::CloseAllSessions(*t), CKR_OK);
  TokenHealth h = t->Health();
  EXPECT_TRUE(h.ok) << h.detail;
  auto s = t->Acquire();
  ASSERT_OK(s);
  EXPECT_OK(s->GenerateKey("k", KeyType::kAes256, KeyUsage::kWrap));
}

TEST_F(HsmTest, PoolLogsInAgainAfterTheLastSessionWasClosed) {
  // Closing the last session logs the user out (PKCS#11); a broken session being the only one
  // must not leave the pool with unauthenticated sessions.
  auto t = OpenOrDie(/*max_sessions=*/1, /*timeout_ms=*/500);
  ASSERT_NE(t, nullptr);
  {
    auto s = t->Acquire();
    ASSERT_OK(s);
    ASSERT_OK(s->GenerateKey("k", KeyType::kAes256, KeyUsage::kWrap));
    // Close this one session behind the pool's back.
    ASSERT_EQ(TokenTestPeer::Functions(*t)->C_CloseSession(TokenTestPeer::Handle(*s)), CKR_OK);
    EXPECT_EQ(CodeOf(s->HasKey("k")), Code::kUnavailable);
  }
  auto s = t->Acquire();
  ASSERT_OK(s);
  auto has = s->HasKey("k");
  ASSERT_OK(has);
  EXPECT_TRUE(*has);
}

// The token's files vanish (disk unmounted, token dir moved) and come back. SoftHSM 2.6 marks the
// token invalid inside the process; only a module re-initialisation sees it again. Returns
// whether signing with the persistent key "idx" works again within 5 s (its MAC in *mac_after).
bool LoseAndRestoreTokenFiles(const fs::path& dir, Token& t, bool expect_unhealthy,
                              Bytes* mac_after) {
  const fs::path tokens = dir / "tokens";
  const fs::path away = dir / "tokens.away";
  fs::rename(tokens, away);
  // The first use finds the key's handle invalid, the next finds no key: both kUnavailable.
  for (int i = 0; i < 3; ++i) {
    auto s = t.Acquire();
    if (s.ok()) {
      auto mac = s->Sign(KeyRef::Persistent("idx"), AsBytes("id"));
      EXPECT_THAT(mac, Not(IsOk())) << "signed without the token's files";
      EXPECT_EQ(CodeOf(mac), Code::kUnavailable) << StatusOf(mac).ToString();
    } else {
      EXPECT_EQ(CodeOf(s), Code::kUnavailable) << StatusOf(s).ToString();
    }
  }
  if (expect_unhealthy) {
    EXPECT_FALSE(t.Health().ok);
  }
  fs::rename(away, tokens);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    auto s = t.Acquire();
    if (s.ok()) {
      auto mac = s->Sign(KeyRef::Persistent("idx"), AsBytes("id"));
      if (mac.ok()) {
        *mac_after = *mac;
        return t.Health().ok;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

TEST_F(HsmTest, ReinitialisesTheModuleWhenTheTokenComesBack) {
  TokenConfig c = Config(kPin, 2);
  c.reinitialize_after_ms = 200;
  auto t = Token::Open(std::move(c), &log_);
  ASSERT_OK(t);
  Bytes before;
  {
    auto s = (*t)->Acquire();
    ASSERT_OK(s);
    ASSERT_OK(s->GenerateKey("idx", KeyType::kHmacSha256, KeyUsage::kSign));
    auto mac = s->Sign(KeyRef::Persistent("idx"), AsBytes("id"));
    ASSERT_OK(mac);
    before = *mac;
  }
  Bytes after;
  ASSERT_TRUE(LoseAndRestoreTokenFiles(dir_, **t, true, &after)) << log_out_.str();
  EXPECT_EQ(after, before);
  EXPECT_NE(log_out_.str().find("\"hsm_module_reinitialised\""), std::string::npos);
  // Twice in a row (the module re-initialises as often as needed).
  ASSERT_TRUE(LoseAndRestoreTokenFiles(dir_, **t, true, &after)) << log_out_.str();
  EXPECT_EQ(after, before);
}

TEST_F(HsmTest, WithoutReinitialisationTheReturnedTokenStaysUnusable) {
  // Negative control for the test above: what SoftHSM does when nobody re-initialises it.
  TokenConfig c = Config(kPin, 2);
  c.reinitialize_after_ms = 0;
  auto t = Token::Open(std::move(c), &log_);
  ASSERT_OK(t);
  {
    auto s = (*t)->Acquire();
    ASSERT_OK(s);
    ASSERT_OK(s->GenerateKey("idx", KeyType::kHmacSha256, KeyUsage::kSign));
  }
  Bytes after;
  EXPECT_FALSE(LoseAndRestoreTokenFiles(dir_, **t, false, &after)) << log_out_.str();
  EXPECT_EQ(log_out_.str().find("hsm_module_reinitialised"), std::string::npos);
}

TEST_F(HsmTest, NoReinitialisationWhileASessionIsLeased) {
  TokenConfig c = Config(kPin, 2);
  c.reinitialize_after_ms = 1;
  auto t = Token::Open(std::move(c), &log_);
  ASSERT_OK(t);
  auto held = (*t)->Acquire();
  ASSERT_OK(held);
  ASSERT_OK(held->GenerateKey("idx", KeyType::kHmacSha256, KeyUsage::kSign));
  const fs::path tokens = dir_ / "tokens";
  fs::rename(tokens, dir_ / "tokens.away");
  // First the handle is invalid, then the key is gone: the module must be re-initialised.
  EXPECT_FALSE(held->Sign(KeyRef::Persistent("idx"), AsBytes("id")).ok());
  EXPECT_FALSE(held->Sign(KeyRef::Persistent("idx"), AsBytes("id")).ok());
  EXPECT_NE(log_out_.str().find("hsm_key_vanished"), std::string::npos) << log_out_.str();
  fs::rename(dir_ / "tokens.away", tokens);
  // `held` is still leased (another thread could be inside the module with it): no C_Finalize.
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_FALSE((*t)->Health().ok);
  }
  EXPECT_EQ(log_out_.str().find("hsm_module_reinitialised"), std::string::npos) << log_out_.str();
  // Returned: the next use re-initialises and works.
  { Session gone = std::move(*held); }
  bool recovered = false;
  for (int i = 0; i < 50 && !recovered; ++i) {
    recovered = (*t)->Health().ok;
    if (!recovered)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(recovered) << log_out_.str();
}

}  // namespace
}  // namespace otd::hsm
