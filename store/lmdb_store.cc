#include "store/lmdb_store.h"

#include "store/internal/env.h"
#include "store/internal/store_test_peer.h"
#include "store/internal/writer.h"

namespace otd::store {

Result<std::unique_ptr<LmdbStore>> LmdbStore::Open(const LmdbOptions& options, Logger* log) {
  OTD_ASSIGN_OR_RETURN(std::unique_ptr<internal::Env> env, internal::Env::Open(options, log));
  OTD_ASSIGN_OR_RETURN(std::unique_ptr<internal::Writer> writer, internal::Writer::Start(*env));
  return std::unique_ptr<LmdbStore>(new LmdbStore(std::move(env), std::move(writer)));
}

LmdbStore::LmdbStore(std::unique_ptr<internal::Env> env, std::unique_ptr<internal::Writer> writer)
    : env_(std::move(env)), writer_(std::move(writer)) {}

LmdbStore::~LmdbStore() = default;

Result<std::optional<Bytes>> LmdbStore::Get(std::string_view table, ByteView key) const {
  return env_->Get(table, key);
}
Result<std::vector<std::optional<Bytes>>> LmdbStore::GetMany(
    const std::vector<ReadKey>& keys) const {
  return env_->GetMany(keys);
}
Result<int64_t> LmdbStore::ExpiryOf(std::string_view table, ByteView key) const {
  return env_->ExpiryOf(table, key);
}
Status LmdbStore::Apply(std::vector<Mutation> batch) { return writer_->Apply(std::move(batch)); }
void LmdbStore::ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done) {
  writer_->ApplyAsync(std::move(batch), std::move(done));
}
Result<size_t> LmdbStore::PurgeExpired(int64_t now, size_t max) {
  return writer_->PurgeExpired(now, max);
}
Status LmdbStore::ForEach(std::string_view table,
                          const std::function<bool(ByteView key, ByteView value)>& fn) const {
  return env_->ForEach(table, fn);
}
Result<Stats> LmdbStore::GetStats() const {
  OTD_ASSIGN_OR_RETURN(Stats s, env_->GetStats());
  s.commits = writer_->commits();
  s.batches = writer_->batches();
  return s;
}
Status LmdbStore::Health() const { return env_->Health(); }
void LmdbStore::SetPanicHandler(std::function<void()> fn) { env_->SetPanicHandler(std::move(fn)); }
Status LmdbStore::CopyTo(const std::string& dir) const { return env_->CopyTo(dir); }

unsigned internal::StoreTestPeer::EnvFlags(const LmdbStore& store) {
  unsigned flags = 0;
  mdb_env_get_flags(store.env_->get(), &flags);
  return flags;
}

}  // namespace otd::store
