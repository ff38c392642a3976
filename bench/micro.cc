// otd-micro: Google Benchmark micro-benchmarks of the raw costs behind one vault request (issue 6).
//
//  * HSM (the real hsm module on a fresh SoftHSM2 token, like tests/support/temp_token.h):
//    AES-256-GCM encrypt/decrypt of 64 B, HMAC-SHA256 sign (persistent index key) and verify
//    (unwrapped session key), unwrap (+ destroy) of a data key, a session lease;
//    plus the exact sequence of PKCS#11 calls the daemon makes for one tokenize / detokenize
//    request today (service/access_codes.cc Verify, service/vault.cc Seal/Open/LookupKey,
//    service/tokens.cc): its rate is the HSM bound of that request.
//  * store (the real store module, LMDB durable commits): one record per commit, a batch of 64
//    per commit, and group commit with 4 and 32 concurrent writers (the store bound).
//  * OT1 (api/ot1.h): Authorization parse, canonical content of a 64 B tokenize, date parse.
//
// HSM and store benchmarks report items_per_second aggregated over threads (UseRealTime).

#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <ostream>
#include <streambuf>
#include <string>
#include <vector>

#include "api/ot1.h"
#include "common/log.h"
#include "hsm/hsm.h"
#include "store/lmdb_store.h"
#include "tests/support/temp_token.h"

namespace {

using otd::Bytes;
using otd::ByteView;

[[noreturn]] void Die(const std::string& what, const otd::Status& s) {
  std::fprintf(stderr, "otd-micro: %s: %s\n", what.c_str(), s.message().c_str());
  std::exit(1);
}

template <class T>
T Must(otd::Result<T> r, const char* what) {
  if (!r.ok())
    Die(what, r.status());
  return std::move(r).value();
}

void Must(const otd::Status& s, const char* what) {
  if (!s.ok())
    Die(what, s);
}

std::ofstream g_null("/dev/null");
otd::Logger g_log(g_null, otd::LogLevel::kError);

struct HsmEnv {
  std::unique_ptr<otd::testing::TempToken> temp;
  std::unique_ptr<otd::hsm::Token> token;
  Bytes wrapped_data_key;    // AES-256 data key wrapped by the KEK (like account_keys)
  Bytes wrapped_hmac_key;    // access-code secret wrapped by the KEK
  Bytes access_code_record;  // an access-code record's ciphertext (~ size of the real one)
  Bytes token_record;        // a 64 B token's ciphertext
  static constexpr const char* kKek = "otd-kek-v1";
  static constexpr const char* kIndex = "otd-index-v1";
};
HsmEnv* g_hsm = nullptr;

struct StoreEnv {
  std::unique_ptr<otd::testing::TempDir> dir;
  std::unique_ptr<otd::store::Store> store;
  std::atomic<uint64_t> next{0};
};
StoreEnv* g_store = nullptr;

const std::array<uint8_t, 12> kIv = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
const Bytes kAad(64, 0x41);           // ~ SealedAssociatedData(table, account, id, version)
const Bytes kPayload(64 + 40, 0x42);  // 64 B payload + field framing (content type, flags, times)
const Bytes kIndexMsg(80, 0x43);      // "otd-idx-v1" + table + account id + token id
const Bytes kCanonical(220, 0x44);    // OT1 canonical content of a 64 B tokenize

otd::hsm::KeyRef Kek() { return otd::hsm::KeyRef::Persistent(HsmEnv::kKek); }
otd::hsm::KeyRef Index() { return otd::hsm::KeyRef::Persistent(HsmEnv::kIndex); }

void SetUpHsm() {
  g_hsm = new HsmEnv;
  g_hsm->temp = std::make_unique<otd::testing::TempToken>("otd-bench");
  g_hsm->token = Must(otd::hsm::Token::Open(g_hsm->temp->Config(8), &g_log), "Token::Open");
  auto s = Must(g_hsm->token->Acquire(), "Acquire");
  Must(s.GenerateKey(HsmEnv::kKek, otd::hsm::KeyType::kAes256, otd::hsm::KeyUsage::kWrap),
       "GenerateKey kek");
  Must(s.GenerateKey(HsmEnv::kIndex, otd::hsm::KeyType::kHmacSha256, otd::hsm::KeyUsage::kSign),
       "GenerateKey index");
  g_hsm->wrapped_data_key =
      Must(s.GenerateWrapped(Kek(), otd::hsm::KeyType::kAes256), "GenerateWrapped");
  g_hsm->wrapped_hmac_key = Must(s.ImportWrapped(Kek(), otd::hsm::KeyType::kHmacSha256,
                                                 otd::SecretBytes::CopyFrom(std::string(43, 's'))),
                                 "ImportWrapped");
  auto dk = Must(s.Unwrap(Kek(), g_hsm->wrapped_data_key, otd::hsm::KeyType::kAes256,
                          otd::hsm::KeyUsage::kEncrypt),
                 "Unwrap");
  g_hsm->access_code_record =
      Must(s.EncryptGcm(dk.ref(), kIv, kAad, Bytes(120, 0x45)), "EncryptGcm");
  g_hsm->token_record = Must(s.EncryptGcm(dk.ref(), kIv, kAad, kPayload), "EncryptGcm");
}

otd::hsm::SessionKey UnwrapData(otd::hsm::Session& s) {
  return Must(s.Unwrap(Kek(), g_hsm->wrapped_data_key, otd::hsm::KeyType::kAes256,
                       otd::hsm::KeyUsage::kEncrypt),
              "Unwrap data key");
}
otd::hsm::SessionKey UnwrapHmac(otd::hsm::Session& s) {
  return Must(s.Unwrap(Kek(), g_hsm->wrapped_hmac_key, otd::hsm::KeyType::kHmacSha256,
                       otd::hsm::KeyUsage::kSign),
              "Unwrap hmac key");
}

// --- raw HSM operations ---------------------------------------------------------------------

void BM_HsmEncryptGcm64(benchmark::State& state) {
  auto s = Must(g_hsm->token->Acquire(), "Acquire");
  {
    auto dk = UnwrapData(s);
    const Bytes plain(64, 0x42);
    for (auto _ : state) {
      benchmark::DoNotOptimize(Must(s.EncryptGcm(dk.ref(), kIv, kAad, plain), "EncryptGcm"));
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_HsmDecryptGcm64(benchmark::State& state) {
  auto s = Must(g_hsm->token->Acquire(), "Acquire");
  {
    auto dk = UnwrapData(s);
    const Bytes ct = Must(s.EncryptGcm(dk.ref(), kIv, kAad, Bytes(64, 0x42)), "EncryptGcm");
    for (auto _ : state) {
      benchmark::DoNotOptimize(Must(s.DecryptGcm(dk.ref(), kIv, kAad, ct), "DecryptGcm"));
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_HsmHmacSign(benchmark::State& state) {
  auto s = Must(g_hsm->token->Acquire(), "Acquire");
  for (auto _ : state) {
    benchmark::DoNotOptimize(Must(s.Sign(Index(), kIndexMsg), "Sign"));
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_HsmHmacVerify(benchmark::State& state) {
  auto s = Must(g_hsm->token->Acquire(), "Acquire");
  {
    auto key = UnwrapHmac(s);
    const Bytes mac = Must(s.Sign(key.ref(), kCanonical), "Sign");
    for (auto _ : state) {
      if (!Must(s.Verify(key.ref(), kCanonical, mac), "Verify"))
        state.SkipWithError("verify false");
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// C_UnwrapKey into a session object + C_DestroyObject (what every Seal/Open/Verify does today).
void BM_HsmUnwrapDestroy(benchmark::State& state) {
  auto s = Must(g_hsm->token->Acquire(), "Acquire");
  for (auto _ : state) {
    auto dk = UnwrapData(s);
    benchmark::DoNotOptimize(dk.ref().session_object());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_HsmAcquire(benchmark::State& state) {
  for (auto _ : state) {
    auto s = Must(g_hsm->token->Acquire(), "Acquire");
    benchmark::DoNotOptimize(&s);
  }
  state.SetItemsProcessed(state.iterations());
}

// --- the PKCS#11 call sequence of one request, as the daemon makes it --------------------------
// Counted from the daemon's own metrics (opentokend_hsm_operations_total per request in steady
// state; tests/integration/test_hsm_budget.py fails when the daemon's counts change):
//   tokenize:            1 C_Verify + 1 C_Decrypt + 1 C_Encrypt + 2 C_Sign + 1 C_Sign per audit
//   batch detokenize private:  1 C_Verify + 2 C_Decrypt + 2 C_Sign + 1 C_Sign per audit batch
//   detokenize public:   1 C_Decrypt + 2 C_Sign + 1 C_Sign per audit batch
// The verify and the GCM operations use keys from the pooled session's cache of unwrapped keys
// (warm: no C_UnwrapKey in steady state). The signs use persistent keys: the record's store key
// (index key) and the object id's audit hash (audit key; an index-key sign stands in: same
// operation, same cost); the audit trail's chain MAC is one sign per group commit of the audit
// writer, shared by every request in the batch, so it is left out here: the sequences below are
// the least work a request can cost, i.e. the HSM bound is an upper bound (conservative ratios).
// Each step leases a session, as the daemon does.
void SignPersistent() {
  auto s = Must(g_hsm->token->Acquire(), "Acquire");
  benchmark::DoNotOptimize(Must(s.Sign(Index(), kIndexMsg), "Sign"));
}

void VerifyAccessCode() {
  auto s = Must(g_hsm->token->Acquire(), "Acquire");
  auto hk = Must(s.UnwrapCached(Kek(), g_hsm->wrapped_hmac_key, otd::hsm::KeyType::kHmacSha256,
                                otd::hsm::KeyUsage::kSign),
                 "UnwrapCached");
  benchmark::DoNotOptimize(Must(s.Verify(hk, kCanonical, Bytes(32, 0)), "Verify"));
}

void OpenRecord(const Bytes& record) {
  auto s = Must(g_hsm->token->Acquire(), "Acquire");
  auto dk = Must(s.UnwrapCached(Kek(), g_hsm->wrapped_data_key, otd::hsm::KeyType::kAes256,
                                otd::hsm::KeyUsage::kEncrypt),
                 "UnwrapCached");
  benchmark::DoNotOptimize(Must(s.DecryptGcm(dk, kIv, kAad, record), "DecryptGcm"));
}

void SealRecord() {
  auto s = Must(g_hsm->token->Acquire(), "Acquire");
  auto dk = Must(s.UnwrapCached(Kek(), g_hsm->wrapped_data_key, otd::hsm::KeyType::kAes256,
                                otd::hsm::KeyUsage::kEncrypt),
                 "UnwrapCached");
  benchmark::DoNotOptimize(Must(s.EncryptGcm(dk, kIv, kAad, kPayload), "EncryptGcm"));
}

void BM_HsmSeqTokenize(benchmark::State& state) {
  for (auto _ : state) {
    VerifyAccessCode();
    OpenRecord(g_hsm->access_code_record);
    SealRecord();
    for (int i = 0; i < 2; ++i)
      SignPersistent();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_HsmSeqDetokPrivate(benchmark::State& state) {
  for (auto _ : state) {
    VerifyAccessCode();
    OpenRecord(g_hsm->access_code_record);
    OpenRecord(g_hsm->token_record);
    for (int i = 0; i < 2; ++i)
      SignPersistent();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_HsmSeqDetokPublic(benchmark::State& state) {
  for (auto _ : state) {
    OpenRecord(g_hsm->token_record);
    for (int i = 0; i < 2; ++i)
      SignPersistent();
  }
  state.SetItemsProcessed(state.iterations());
}

#define OTD_HSM_BENCH(fn) BENCHMARK(fn)->UseRealTime()->Threads(1)->Threads(2)
OTD_HSM_BENCH(BM_HsmEncryptGcm64);
OTD_HSM_BENCH(BM_HsmDecryptGcm64);
OTD_HSM_BENCH(BM_HsmHmacSign);
OTD_HSM_BENCH(BM_HsmHmacVerify);
OTD_HSM_BENCH(BM_HsmUnwrapDestroy);
OTD_HSM_BENCH(BM_HsmAcquire);
OTD_HSM_BENCH(BM_HsmSeqTokenize);
OTD_HSM_BENCH(BM_HsmSeqDetokPrivate);
OTD_HSM_BENCH(BM_HsmSeqDetokPublic);

// --- store ----------------------------------------------------------------------------------

otd::store::Mutation TokenMutation() {
  uint64_t n = g_store->next.fetch_add(1);
  Bytes key(32, 0);
  for (int i = 0; i < 8; ++i)
    key[static_cast<size_t>(i)] = static_cast<uint8_t>(n >> (8 * i));
  for (size_t i = 8; i < 32; ++i)
    key[i] = static_cast<uint8_t>((n * 2654435761u) >> (i % 24));
  return otd::store::Mutation{.op = otd::store::Op::kInsert,
                              .table = "tokens",
                              .key = std::move(key),
                              .value = Bytes(1 + 4 + 12 + 104 + 16, 0x5a)};
}

void BM_StoreCommit(benchmark::State& state) {
  const auto batch_size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    std::vector<otd::store::Mutation> batch;
    for (size_t i = 0; i < batch_size; ++i)
      batch.push_back(TokenMutation());
    Must(g_store->store->Apply(std::move(batch)), "Apply");
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(batch_size));
}
// One record per durable commit, and a batch of 64 per commit (single caller).
BENCHMARK(BM_StoreCommit)->Arg(1)->Arg(64)->UseRealTime();
// Group commit: every thread applies one record at a time; the writer merges them.
BENCHMARK(BM_StoreCommit)
    ->Name("BM_StoreGroupCommit")
    ->Arg(1)
    ->UseRealTime()
    ->Threads(4)
    ->Threads(32);

void BM_StoreGet(benchmark::State& state) {
  auto m = TokenMutation();
  Bytes key = m.key;
  std::vector<otd::store::Mutation> b;
  b.push_back(std::move(m));
  Must(g_store->store->Apply(std::move(b)), "Apply");
  for (auto _ : state)
    benchmark::DoNotOptimize(Must(g_store->store->Get("tokens", key), "Get"));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StoreGet);

// --- OT1 ------------------------------------------------------------------------------------

const std::string kAuth =
    "OT1-HMAC-SHA256-HEX; access-code=Xq3vJ0cT1kQe9LmN2pRs8w; signed-headers=host content-type "
    "x-opentoken-date; signature=5f0c2b7e9a1d3c4b6e8f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d";
const std::string kBody64(64, 'p');

otd::api::ot1::RequestView View() {
  otd::api::ot1::RequestView v;
  v.method = "POST";
  v.target = "/account/AbCdEfGhIjKlMnOpQrStUv/token";
  v.headers = {{"Host", "localhost"},
               {"Content-Type", "text/plain"},
               {"X-OpenToken-Date", "2030-01-31T12:00:00Z"},
               {"Content-Length", "64"},
               {"Authorization", kAuth}};
  v.body = kBody64;
  return v;
}

void BM_Ot1ParseAuthorization(benchmark::State& state) {
  for (auto _ : state)
    benchmark::DoNotOptimize(Must(otd::api::ot1::ParseAuthorization(kAuth), "parse"));
}
BENCHMARK(BM_Ot1ParseAuthorization);

void BM_Ot1CanonicalContent(benchmark::State& state) {
  auto auth = Must(otd::api::ot1::ParseAuthorization(kAuth), "parse");
  for (auto _ : state) {
    auto v = View();
    benchmark::DoNotOptimize(Must(otd::api::ot1::CanonicalContent(auth, v), "canonical"));
  }
}
BENCHMARK(BM_Ot1CanonicalContent);

void BM_Ot1ParseAndCanonical(benchmark::State& state) {
  for (auto _ : state) {
    auto auth = Must(otd::api::ot1::ParseAuthorization(kAuth), "parse");
    auto v = View();
    benchmark::DoNotOptimize(Must(otd::api::ot1::CanonicalContent(auth, v), "canonical"));
    benchmark::DoNotOptimize(Must(otd::api::ot1::ParseOt1Date("2030-01-31T12:00:00Z"), "date"));
  }
}
BENCHMARK(BM_Ot1ParseAndCanonical);

// The access line of one request ("http_request", the fields api/server.cc writes), formatted and
// written to a stream that discards it: the logger's own CPU per request, without the write(2)
// that the daemon's stdout adds. 2 threads share the logger's lock, like the daemon's io threads.
class NullBuf : public std::streambuf {
 protected:
  int_type overflow(int_type c) override { return traits_type::not_eof(c); }
  std::streamsize xsputn(const char* /*s*/, std::streamsize n) override { return n; }
};

void BM_LogAccessLine(benchmark::State& state) {
  static NullBuf buf;
  static std::ostream out(&buf);
  static otd::Logger log(out);
  int64_t latency = 1234;
  for (auto _ : state) {
    log.Info("http_request", {{"request_id", "0f9c2d3e4b5a69788796a5b4c3d2e1f0"},
                              {"transport", "unix"},
                              {"method", "POST"},
                              {"route", "/account/{account}/token"},
                              {"status", 201},
                              {"latency_us", ++latency}});
  }
}
BENCHMARK(BM_LogAccessLine)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  SetUpHsm();
  g_store = new StoreEnv;
  g_store->dir = std::make_unique<otd::testing::TempDir>();
  otd::store::LmdbOptions o;
  o.path = g_store->dir->path() + "/data";
  o.map_size_bytes = 1ull << 30;
  o.tables = {"tokens"};
  g_store->store = Must(otd::store::LmdbStore::Open(o, &g_log), "LmdbStore::Open");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_store->store.reset();
  g_hsm->token.reset();
  return 0;
}
