#include "service/mail_outbox.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>
#include <tuple>
#include <vector>

#include "crypto/encoding.h"
#include "service/fields.h"
#include "service/internal/due_scan.h"

namespace otd::service {

namespace {

constexpr std::string_view kTable = tables::kMailOutbox;

enum : uint8_t {
  kTagId = 1,
  kTagContent = 2,
  kTagQueuedAt = 3,
  kTagExpiresAt = 4,
  kTagAttempts = 5,
  kTagNotBefore = 6,
};

void Wipe(std::string& s) { OPENSSL_cleanse(s.data(), s.size()); }

// OutboxEntry::claim: u32 key length | key | claimed value.
std::string EncodeClaim(ByteView key, ByteView value) {
  std::string out(4, '\0');
  const auto n = static_cast<uint32_t>(key.size());
  std::memcpy(out.data(), &n, 4);
  out.append(AsString(key));
  out.append(AsString(value));
  return out;
}

bool DecodeClaim(const std::string& claim, Bytes* key, Bytes* value) {
  if (claim.size() < 4) {
    return false;
  }
  uint32_t n = 0;
  std::memcpy(&n, claim.data(), 4);
  if (claim.size() - 4 < n) {
    return false;
  }
  const auto* p = reinterpret_cast<const uint8_t*>(claim.data());
  key->assign(p + 4, p + 4 + n);
  value->assign(p + 4 + n, p + claim.size());
  return true;
}

}  // namespace

struct StoreMailOutbox::Record {
  std::string id;
  std::string content;
  int64_t queued_at = 0;
  int64_t expires_at = 0;
  uint64_t attempts = 0;
  int64_t not_before = 0;

  Record() = default;
  Record(const Record&) = default;
  Record(Record&&) = default;
  Record& operator=(const Record&) = default;
  Record& operator=(Record&&) = default;
  ~Record() { Wipe(content); }
};

StoreMailOutbox::StoreMailOutbox(Vault& vault, store::Store& store, const Clock& clock, Logger& log,
                                 MailOutboxOptions options)
    : vault_(vault), store_(store), clock_(clock), log_(log), options_(options) {}

Result<Bytes> StoreMailOutbox::Seal(ByteView key, const Record& r) {
  SecretBytes plain = FieldWriter()
                          .Add(kTagId, r.id)
                          .Add(kTagContent, r.content)
                          .AddU64(kTagQueuedAt, static_cast<uint64_t>(r.queued_at))
                          .AddU64(kTagExpiresAt, static_cast<uint64_t>(r.expires_at))
                          .AddU64(kTagAttempts, r.attempts)
                          .AddU64(kTagNotBefore, static_cast<uint64_t>(r.not_before))
                          .Finish();
  // Bound to its store key: a value copied to another key does not open.
  return vault_.sealer().SealSystem(kTable, crypto::HexEncode(key),
                                    plain.Reveal(SecretAccess::Grant()));
}

Result<StoreMailOutbox::Record> StoreMailOutbox::Open(ByteView key, ByteView value) {
  OTD_ASSIGN_OR_RETURN(SecretBytes plain,
                       vault_.sealer().OpenSystem(kTable, crypto::HexEncode(key), value));
  OTD_ASSIGN_OR_RETURN(FieldReader f, FieldReader::Parse(plain));
  Record r;
  OTD_ASSIGN_OR_RETURN(r.id, f.Text(kTagId));
  OTD_ASSIGN_OR_RETURN(SecretBytes content, f.Secret(kTagContent));
  r.content = std::string(AsString(content.Reveal(SecretAccess::Grant())));
  OTD_ASSIGN_OR_RETURN(uint64_t queued, f.U64(kTagQueuedAt));
  OTD_ASSIGN_OR_RETURN(uint64_t expires, f.U64(kTagExpiresAt));
  OTD_ASSIGN_OR_RETURN(r.attempts, f.U64(kTagAttempts));
  OTD_ASSIGN_OR_RETURN(uint64_t not_before, f.U64(kTagNotBefore));
  r.queued_at = static_cast<int64_t>(queued);
  r.expires_at = static_cast<int64_t>(expires);
  r.not_before = static_cast<int64_t>(not_before);
  return r;
}

Status StoreMailOutbox::Put(std::string_view id, std::string_view content) {
  OTD_ASSIGN_OR_RETURN(Bytes key, vault_.keys().LookupKey(kTable, "", id));
  Record r;
  r.id = std::string(id);
  r.content = std::string(content);
  r.queued_at = clock_.NowSeconds();
  r.expires_at = r.queued_at + options_.lifetime_seconds;
  r.not_before = r.queued_at;
  OTD_ASSIGN_OR_RETURN(Bytes sealed, Seal(key, r));
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kInsert,
                   .table = std::string(kTable),
                   .key = std::move(key),
                   .value = std::move(sealed),
                   .expires_at = r.expires_at + options_.purge_grace_seconds});
  return store_.Apply(std::move(batch));
}

Status StoreMailOutbox::CasDelete(ByteView key, ByteView expect) {
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kDelete,
                   .table = std::string(kTable),
                   .key = Bytes(key.begin(), key.end()),
                   .expect = Bytes(expect.begin(), expect.end())});
  return store_.Apply(std::move(batch));
}

void StoreMailOutbox::Drop(ByteView key, ByteView value, std::string_view reason,
                           uint64_t attempts) {
  Status s = CasDelete(key, value);
  if (s.code() == Code::kFailedPrecondition) {
    return;  // changed or gone meanwhile: another node has it
  }
  if (!s.ok()) {
    log_.Warn("mail_outbox_drop_failed", {{"error", s.message()}});
    return;
  }
  log_.Warn("mail_outbox_dropped", {{"reason", reason}, {"attempts", attempts}});
}

Result<std::optional<mail::OutboxEntry>> StoreMailOutbox::Claim(
    std::chrono::milliseconds* next_due_in) {
  std::lock_guard lock(mu_);
  OTD_ASSIGN_OR_RETURN(auto records, internal::ReadTable(store_, kTable));
  const int64_t now = clock_.NowSeconds();
  auto scan = internal::ScanDue<Record>(
      std::move(records), now, seen_,
      [this](ByteView key, ByteView value) { return Open(key, value); },
      [this](ByteView key, ByteView value, std::string_view reason, uint64_t attempts) {
        Drop(key, value, reason, attempts);
      },
      [this](const Status& s) {
        log_.Warn("mail_outbox_open_failed", {{"error", s.message()}});
        return int64_t{0};
      });
  auto& due = scan.due;
  const int64_t next = scan.next;
  std::sort(due.begin(), due.end(), [](const auto& a, const auto& b) {
    return std::tie(a.record.queued_at, a.record.id) < std::tie(b.record.queued_at, b.record.id);
  });
  if (next_due_in != nullptr) {
    *next_due_in = next > 0 ? std::chrono::seconds(std::max<int64_t>(1, next - now))
                            : std::chrono::milliseconds(0);
  }
  for (auto& d : due) {
    Record claimed = d.record;
    claimed.attempts += 1;
    claimed.not_before = now + options_.lease_seconds;
    OTD_ASSIGN_OR_RETURN(Bytes sealed, Seal(d.key, claimed));
    std::vector<store::Mutation> batch;
    batch.push_back({.op = store::Op::kUpdate,
                     .table = std::string(kTable),
                     .key = d.key,
                     .value = sealed,
                     .expect = d.value,
                     .keep_expiry = true});
    Status s = store_.Apply(std::move(batch));
    if (s.code() == Code::kFailedPrecondition) {
      continue;  // another node claimed (or finished) it first
    }
    OTD_RETURN_IF_ERROR(s);
    mail::OutboxEntry entry;
    entry.id = claimed.id;
    entry.content = claimed.content;
    entry.attempt = claimed.attempts;
    entry.claim = EncodeClaim(d.key, sealed);
    return std::optional<mail::OutboxEntry>(std::move(entry));
  }
  return std::optional<mail::OutboxEntry>();
}

Status StoreMailOutbox::Delivered(const mail::OutboxEntry& entry) {
  Bytes key;
  Bytes value;
  if (!DecodeClaim(entry.claim, &key, &value)) {
    return InvalidArgument("not a claim of this outbox");
  }
  return CasDelete(key, value);
}

Status StoreMailOutbox::Rejected(const mail::OutboxEntry& entry, long /*smtp_code*/) {
  return Delivered(entry);  // a 5xx is final: deleted (the mailer logs it)
}

Status StoreMailOutbox::Retry(const mail::OutboxEntry& entry, std::chrono::milliseconds delay) {
  Bytes key;
  Bytes value;
  if (!DecodeClaim(entry.claim, &key, &value)) {
    return InvalidArgument("not a claim of this outbox");
  }
  OTD_ASSIGN_OR_RETURN(Record r, Open(key, value));
  const int64_t now = clock_.NowSeconds();
  r.not_before = now + (delay.count() + 999) / 1000;
  if (r.not_before >= r.expires_at) {
    Drop(key, value, "expired", r.attempts);
    return Status::Ok();
  }
  OTD_ASSIGN_OR_RETURN(Bytes sealed, Seal(key, r));
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kUpdate,
                   .table = std::string(kTable),
                   .key = std::move(key),
                   .value = std::move(sealed),
                   .expect = std::move(value),
                   .keep_expiry = true});
  return store_.Apply(std::move(batch));
}

Result<size_t> StoreMailOutbox::Count() {
  size_t n = 0;
  OTD_RETURN_IF_ERROR(store_.ForEach(kTable, [&n](ByteView, ByteView) {
    ++n;
    return true;
  }));
  return n;
}

}  // namespace otd::service
