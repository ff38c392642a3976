// Tokens against the real token (SoftHSM2) and a real LMDB store: Prepare stores nothing, Commit
// stores durably and answers on the store's writer thread.
#include "service/tokens.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <future>
#include <string>
#include <thread>

#include "common/testing/status_matchers.h"
#include "service/testing/service_env.h"
#include "store/testing/held_store.h"

namespace otd::service {
namespace {

class TokensTest : public ::testing::Test, protected ServiceEnv {
 protected:
  void SetUp() override {
    auto m = vault_->keys().NewAccountKeyMutation("acct-1");
    ASSERT_OK(m);
    std::vector<store::Mutation> batch;
    batch.push_back(std::move(m).value());
    ASSERT_OK(store_->Apply(std::move(batch)));
  }

  Tokens tokens_{*vault_, *store_, clock_, log_, TokensOptions{}};
};

TEST_F(TokensTest, APreparedTokenIsStoredOnlyByCommitWhichAnswersFromTheWriterThread) {
  const Bytes payload = {'4', '1', '1', '1', 0x00, 0xff};
  auto prepared = tokens_.Prepare("acct-1", "text/plain", payload, false, 0);
  ASSERT_OK(prepared);
  const std::string id = prepared->id;
  EXPECT_EQ(id.size(), 32u);
  // Nothing is stored yet, and the prepared record holds no clear payload or id.
  EXPECT_EQ(tokens_.Get("acct-1", id).status().code(), Code::kNotFound);
  ASSERT_EQ(prepared->batch.size(), 1u);
  const Bytes& value = prepared->batch[0].value;
  EXPECT_EQ(std::search(value.begin(), value.end(), payload.begin(), payload.begin() + 4),
            value.end());
  const Bytes& key = prepared->batch[0].key;
  EXPECT_EQ(std::search(key.begin(), key.end(), id.begin(), id.end()), key.end());

  std::promise<std::thread::id> ran_on;
  std::promise<Status> result;
  tokens_.Commit(std::move(prepared).value(), [&](Status s) {
    ran_on.set_value(std::this_thread::get_id());
    result.set_value(std::move(s));
  });
  auto f = result.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_OK(f.get());
  EXPECT_NE(ran_on.get_future().get(), std::this_thread::get_id());
  auto got = tokens_.Get("acct-1", id);
  ASSERT_OK(got);
  auto bytes = got->payload.Reveal(SecretAccess::Grant());
  EXPECT_EQ(Bytes(bytes.begin(), bytes.end()), payload);
  EXPECT_EQ(got->content_type, "text/plain");
  EXPECT_NE(log_sink_.str().find("\"tokenized\""), std::string::npos);
}

TEST_F(TokensTest, APublicTokenReadsBackAsPublicAndAPastExpiryIsRefused) {
  const Bytes payload = {'x'};
  auto prepared = tokens_.Prepare("acct-1", "application/octet-stream", payload, true, 0);
  ASSERT_OK(prepared);
  const std::string id = prepared->id;
  std::promise<Status> committed;
  tokens_.Commit(std::move(prepared).value(), [&](Status s) { committed.set_value(std::move(s)); });
  ASSERT_OK(committed.get_future().get());
  auto got = tokens_.Get("acct-1", id);
  ASSERT_OK(got);
  EXPECT_TRUE(got->is_public);
  EXPECT_EQ(tokens_.Prepare("acct-1", "text/plain", payload, false, clock_.NowSeconds() - 1)
                .status()
                .code(),
            Code::kInvalidArgument);
}

TEST_F(TokensTest, ACommitTheStoreRefusesReachesTheCallbackAndLogsNothing) {
  auto prepared = tokens_.Prepare("acct-1", "text/plain", Bytes{'a'}, false, 0);
  ASSERT_OK(prepared);
  PreparedToken twin = *prepared;  // the same record twice: the second insert must fail
  std::promise<Status> first, second;
  tokens_.Commit(std::move(prepared).value(), [&](Status s) { first.set_value(std::move(s)); });
  ASSERT_OK(first.get_future().get());
  log_sink_.str("");
  tokens_.Commit(std::move(twin), [&](Status s) { second.set_value(std::move(s)); });
  EXPECT_EQ(second.get_future().get().code(), Code::kAlreadyExists);
  EXPECT_EQ(log_sink_.str().find("\"tokenized\""), std::string::npos);
}

// The signed detokenize reads the access code's and the token's records in one round trip; Get
// given that read-ahead uses its snapshot instead of reading the store again (so a delete after
// the read-ahead is not seen), and reads the store for any other token.
TEST_F(TokensTest, GetTakesTheRecordFromTheReadAheadInsteadOfReadingAgain) {
  // A store whose point reads are round trips (as PostgreSQL's): here the LMDB store, flagged.
  store::testing::HeldStore remote(*store_, /*round_trips=*/true);
  Vault vault(*token_, remote, log_);
  Tokens tokens{vault, remote, clock_, log_, TokensOptions{}};
  auto prepared = tokens.Prepare("acct-1", "text/plain", Bytes{'r', 'a'}, false, 0);
  ASSERT_OK(prepared);
  const std::string id = prepared->id;
  std::promise<Status> committed;
  tokens.Commit(std::move(prepared).value(), [&](Status s) { committed.set_value(std::move(s)); });
  ASSERT_OK(committed.get_future().get());

  auto ahead = tokens.SignedReadAhead("acct-1", "no-such-code", id);
  ASSERT_OK(ahead);
  ASSERT_OK(tokens.Delete("acct-1", id));
  EXPECT_EQ(tokens.Get("acct-1", id).status().code(), Code::kNotFound);  // the store
  auto from_ahead = tokens.Get("acct-1", id, &*ahead);                   // the snapshot
  ASSERT_OK(from_ahead);
  auto bytes = from_ahead->payload.Reveal(SecretAccess::Grant());
  EXPECT_EQ(Bytes(bytes.begin(), bytes.end()), (Bytes{'r', 'a'}));
  // Another token, or the same id of another account, is not in it: read from the store.
  EXPECT_EQ(tokens.Get("acct-1", "other-id", &*ahead).status().code(), Code::kNotFound);
  EXPECT_EQ(tokens.Get("acct-2", id, &*ahead).status().code(), Code::kNotFound);
}

TEST_F(TokensTest, NothingIsReadAheadOnAnEmbeddedStore) {
  // On LMDB a read-ahead saves nothing and would compute keyed hashes (token work) before the
  // caller's signature is checked: it stays empty, and Get reads the store.
  auto prepared = tokens_.Prepare("acct-1", "text/plain", Bytes{'r', 'a'}, false, 0);
  ASSERT_OK(prepared);
  const std::string id = prepared->id;
  std::promise<Status> committed;
  tokens_.Commit(std::move(prepared).value(), [&](Status s) { committed.set_value(std::move(s)); });
  ASSERT_OK(committed.get_future().get());
  auto ahead = tokens_.SignedReadAhead("acct-1", "no-such-code", id);
  ASSERT_OK(ahead);
  ASSERT_OK(tokens_.Delete("acct-1", id));
  EXPECT_EQ(tokens_.Get("acct-1", id, &*ahead).status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace otd::service
