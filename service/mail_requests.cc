#include "service/mail_requests.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "crypto/encoding.h"
#include "crypto/random.h"
#include "service/fields.h"
#include "service/internal/due_scan.h"

namespace otd::service {

namespace {

constexpr std::string_view kRecordId = "mail-request";

enum : uint8_t {
  kTagKind = 1,
  kTagAddress = 2,
  kTagQueuedAt = 3,
  kTagExpiresAt = 4,
  kTagAttempts = 5,
  kTagNotBefore = 6,
  kTagSequence = 7,  // orders the requests one process queued within the same second
};

const char* KindName(MailRequestKind k) {
  return k == MailRequestKind::kToken ? "token" : "deletion_code";
}

void Wipe(std::string& s) { OPENSSL_cleanse(s.data(), s.size()); }

}  // namespace

struct MailRequestQueue::Record {
  MailRequestKind kind = MailRequestKind::kToken;
  std::string address;
  int64_t queued_at = 0;
  int64_t expires_at = 0;
  uint64_t attempts = 0;
  int64_t not_before = 0;
  uint64_t sequence = 0;

  Record() = default;
  Record(const Record&) = default;
  Record& operator=(const Record&) = default;
  ~Record() { Wipe(address); }
};

MailRequestQueue::MailRequestQueue(Vault& vault, store::Store& store, const Clock& clock,
                                   Logger& log, MailRequestOptions options)
    : vault_(vault), store_(store), clock_(clock), log_(log), options_(options) {}

void MailRequestQueue::SetListener(std::function<void()> listener) {
  std::lock_guard lock(listener_mu_);
  listener_ = std::move(listener);
}

int64_t MailRequestQueue::RetryDelay(uint64_t attempt) const {
  int64_t delay = options_.retry_base_seconds;
  for (uint64_t i = 1; i < attempt && delay < options_.retry_max_seconds; ++i) {
    delay *= 2;
  }
  return std::min(delay, options_.retry_max_seconds);
}

Result<Bytes> MailRequestQueue::Seal(const Record& r) {
  SecretBytes plain = FieldWriter()
                          .AddU64(kTagKind, static_cast<uint64_t>(r.kind))
                          .Add(kTagAddress, r.address)
                          .AddU64(kTagQueuedAt, static_cast<uint64_t>(r.queued_at))
                          .AddU64(kTagExpiresAt, static_cast<uint64_t>(r.expires_at))
                          .AddU64(kTagAttempts, r.attempts)
                          .AddU64(kTagNotBefore, static_cast<uint64_t>(r.not_before))
                          .AddU64(kTagSequence, r.sequence)
                          .Finish();
  return vault_.sealer().SealSystem(kMailRequestsTable, kRecordId,
                                    plain.Reveal(SecretAccess::Grant()));
}

Result<MailRequestQueue::Record> MailRequestQueue::Open(ByteView value) {
  OTD_ASSIGN_OR_RETURN(SecretBytes plain,
                       vault_.sealer().OpenSystem(kMailRequestsTable, kRecordId, value));
  OTD_ASSIGN_OR_RETURN(FieldReader f, FieldReader::Parse(plain));
  Record r;
  OTD_ASSIGN_OR_RETURN(uint64_t kind, f.U64(kTagKind));
  if (kind != static_cast<uint64_t>(MailRequestKind::kToken) &&
      kind != static_cast<uint64_t>(MailRequestKind::kDeletionCode)) {
    return DataLoss("mail request of an unknown kind");
  }
  r.kind = static_cast<MailRequestKind>(kind);
  OTD_ASSIGN_OR_RETURN(r.address, f.Text(kTagAddress));
  OTD_ASSIGN_OR_RETURN(uint64_t queued, f.U64(kTagQueuedAt));
  OTD_ASSIGN_OR_RETURN(uint64_t expires, f.U64(kTagExpiresAt));
  OTD_ASSIGN_OR_RETURN(r.attempts, f.U64(kTagAttempts));
  OTD_ASSIGN_OR_RETURN(uint64_t not_before, f.U64(kTagNotBefore));
  OTD_ASSIGN_OR_RETURN(r.sequence, f.U64(kTagSequence));
  r.queued_at = static_cast<int64_t>(queued);
  r.expires_at = static_cast<int64_t>(expires);
  r.not_before = static_cast<int64_t>(not_before);
  return r;
}

Status MailRequestQueue::Enqueue(MailRequestKind kind, std::string_view address) {
  Bytes id(16);
  OTD_RETURN_IF_ERROR(crypto::RandomBytes(id));
  OTD_ASSIGN_OR_RETURN(Bytes key,
                       vault_.keys().LookupKey(kMailRequestsTable, "", crypto::HexEncode(id)));
  Record r;
  r.kind = kind;
  r.address = std::string(address);
  r.queued_at = clock_.NowSeconds();
  r.expires_at = r.queued_at + options_.lifetime_seconds;
  r.not_before = r.queued_at;
  r.sequence = sequence_.fetch_add(1);
  OTD_ASSIGN_OR_RETURN(Bytes sealed, Seal(r));
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kInsert,
                   .table = std::string(kMailRequestsTable),
                   .key = std::move(key),
                   .value = std::move(sealed),
                   .expires_at = r.expires_at + options_.purge_grace_seconds});
  OTD_RETURN_IF_ERROR(store_.Apply(std::move(batch)));
  std::lock_guard lock(listener_mu_);
  if (listener_) {
    listener_();
  }
  return Status::Ok();
}

void MailRequestQueue::Drop(ByteView key, ByteView value, std::string_view reason,
                            uint64_t attempts) {
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kDelete,
                   .table = std::string(kMailRequestsTable),
                   .key = Bytes(key.begin(), key.end()),
                   .expect = Bytes(value.begin(), value.end())});
  Status s = store_.Apply(std::move(batch));
  if (s.code() == Code::kFailedPrecondition) {
    return;  // changed or gone meanwhile: another worker has it
  }
  if (!s.ok()) {
    log_.Warn("mail_request_drop_failed", {{"reason", s.message()}});
    return;
  }
  log_.Warn("mail_request_dropped", {{"reason", reason}, {"attempts", attempts}});
}

int64_t MailRequestQueue::ProcessDue(const MailRequestHandler& handler,
                                     const std::atomic<bool>* stop) {
  auto records = internal::ReadTable(store_, kMailRequestsTable);
  const int64_t now = clock_.NowSeconds();
  if (!records.ok()) {
    log_.Warn("mail_request_scan_failed", {{"reason", records.status().message()}});
    return now + options_.retry_base_seconds;
  }
  auto scan = internal::ScanDue<Record>(
      std::move(records).value(), now, seen_,
      [this](ByteView /*key*/, ByteView value) { return Open(value); },
      [this](ByteView key, ByteView value, std::string_view reason, uint64_t attempts) {
        Drop(key, value, reason, attempts);
      },
      [this, now](const Status& s) {
        log_.Warn("mail_request_open_failed", {{"reason", s.message()}});
        return now + options_.retry_base_seconds;
      });
  auto& due = scan.due;
  std::stable_sort(due.begin(), due.end(), [](const auto& a, const auto& b) {
    return std::tie(a.record.queued_at, a.record.sequence) <
           std::tie(b.record.queued_at, b.record.sequence);
  });
  for (auto& d : due) {
    if (stop != nullptr && stop->load()) {
      scan.WakeAt(clock_.NowSeconds());
      continue;  // the records stay queued for the next start
    }
    if (int64_t at = ProcessOne(d.key, d.value, d.record, handler); at > 0) {
      scan.WakeAt(at);
    }
  }
  return scan.next;
}

int64_t MailRequestQueue::ProcessOne(const Bytes& key, const Bytes& value, const Record& record,
                                     const MailRequestHandler& handler) {
  const int64_t now = clock_.NowSeconds();
  // Claim: count the attempt and push `not before` out, durably, before any work.
  Record claimed = record;
  claimed.attempts = record.attempts + 1;
  claimed.not_before = now + RetryDelay(claimed.attempts);
  auto sealed = Seal(claimed);
  if (!sealed.ok()) {
    log_.Warn("mail_request_claim_failed", {{"reason", sealed.status().message()}});
    return now + options_.retry_base_seconds;
  }
  std::vector<store::Mutation> claim;
  claim.push_back({.op = store::Op::kUpdate,
                   .table = std::string(kMailRequestsTable),
                   .key = key,
                   .value = *sealed,
                   .expect = value,
                   .keep_expiry = true});
  Status claimed_ok = store_.Apply(std::move(claim));
  if (claimed_ok.code() == Code::kFailedPrecondition) {
    return 0;  // another worker changed it; the next scan sees its state
  }
  if (!claimed_ok.ok()) {
    log_.Warn("mail_request_claim_failed", {{"reason", claimed_ok.message()}});
    return now + options_.retry_base_seconds;
  }
  const int64_t due_at = std::min(claimed.not_before, claimed.expires_at);
  const std::string id(AsString(key));
  seen_[id] = internal::SeenValue{*sealed, due_at};

  MailRequest request{
      .kind = claimed.kind, .address = claimed.address, .attempt = claimed.attempts};
  store::Mutation done{.op = store::Op::kDelete,
                       .table = std::string(kMailRequestsTable),
                       .key = key,
                       .expect = *sealed};
  Status result = handler(request, std::move(done));
  Wipe(request.address);
  if (result.ok() || result.code() == Code::kFailedPrecondition) {
    seen_.erase(id);
    return 0;
  }
  if (result.code() == Code::kInvalidArgument || result.code() == Code::kDataLoss) {
    seen_.erase(id);
    Drop(key, *sealed, "rejected", claimed.attempts);
    return 0;
  }
  if (claimed.not_before >= claimed.expires_at) {
    seen_.erase(id);
    Drop(key, *sealed, "expired", claimed.attempts);
    return 0;
  }
  log_.Warn("mail_request_retry", {{"kind", KindName(claimed.kind)},
                                   {"attempt", claimed.attempts},
                                   {"retry_in_seconds", claimed.not_before - now},
                                   {"reason", result.message()}});
  return due_at;
}

// --- worker ------------------------------------------------------------------------------------

MailRequestWorker::MailRequestWorker(MailRequestQueue& queue, MailRequestHandler handler,
                                     Logger& log, std::chrono::milliseconds scan_interval)
    : queue_(queue), handler_(std::move(handler)), log_(log), scan_interval_(scan_interval) {}

MailRequestWorker::~MailRequestWorker() { Stop(); }

void MailRequestWorker::Start() {
  if (thread_.joinable()) {
    return;
  }
  stop_ = false;
  queue_.SetListener([this] { Wake(); });
  thread_ = std::thread([this] { Run(); });
}

void MailRequestWorker::Stop() {
  if (!thread_.joinable()) {
    return;
  }
  queue_.SetListener(nullptr);
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void MailRequestWorker::Wake() {
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void MailRequestWorker::Run() {
  log_.Info("mail_request_worker_started");
  std::unique_lock lock(mu_);
  while (!stop_) {
    wake_ = false;
    lock.unlock();
    const int64_t next = queue_.ProcessDue(handler_, &stop_);
    // At least 1 s when something is due (or failed) "now", so that a store that keeps failing
    // is not polled in a tight loop.
    auto wait = scan_interval_;
    if (next > 0) {
      const int64_t in = next - queue_.clock().NowSeconds();
      wait =
          std::min<std::chrono::milliseconds>(wait, std::chrono::seconds(std::max<int64_t>(1, in)));
    }
    lock.lock();
    cv_.wait_for(lock, wait, [this] { return stop_.load() || wake_; });
  }
  log_.Info("mail_request_worker_stopped");
}

}  // namespace otd::service
