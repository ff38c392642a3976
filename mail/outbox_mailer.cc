#include <openssl/crypto.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "common/log.h"
#include "mail/internal/curl_handles.h"
#include "mail/internal/mime.h"
#include "mail/internal/queue.h"
#include "mail/internal/smtp_transfer.h"
#include "mail/outbox.h"

namespace otd::mail {

namespace {

using std::chrono::milliseconds;

void Wipe(std::string& s) { OPENSSL_cleanse(s.data(), s.size()); }

}  // namespace

class OutboxSmtpMailer::Impl {
 public:
  Impl(MailOptions options, Outbox& outbox, Logger& log, milliseconds poll)
      : options_(std::move(options)), outbox_(outbox), log_(log), poll_(poll) {}

  ~Impl() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }

  Status Send(const Message& message) {
    std::string id;
    auto rendered = internal::RenderQueued(message, options_.from, &id);
    if (!rendered.ok()) {
      return rendered.status();
    }
    Status s = outbox_.Put(id, *rendered);
    Wipe(*rendered);
    if (!s.ok()) {
      log_.Error("mail_queue_failed", {{"error", s.message()}});
      return s;
    }
    log_.Info("mail_queued", {{"message_id", id}});
    {
      std::lock_guard lock(mu_);
      ++generation_;
    }
    work_cv_.notify_all();
    return Status::Ok();
  }

  Status Flush(milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto n = outbox_.Count();
      if (n.ok() && *n == 0) {
        return Status::Ok();
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return Unavailable("mail outbox still holds messages after the flush timeout");
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }

 private:
  milliseconds Backoff(uint64_t attempt) const {
    milliseconds d = options_.initial_retry_delay;
    for (uint64_t i = 1; i < attempt && d < options_.max_retry_delay; ++i) {
      d *= 2;
    }
    return std::min(d, options_.max_retry_delay);
  }

  void Run() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      const uint64_t seen = generation_;
      lock.unlock();
      milliseconds wait = poll_;
      for (;;) {
        if (stopping_) {
          break;
        }
        milliseconds next_due{0};
        auto claimed = outbox_.Claim(&next_due);
        if (!claimed.ok()) {
          log_.Warn("mail_outbox_claim_failed", {{"error", claimed.status().message()}});
          wait = std::min(wait, options_.initial_retry_delay);
          break;
        }
        if (!claimed->has_value()) {
          if (next_due.count() > 0) {
            wait = std::min(wait, next_due);
          }
          break;
        }
        OutboxEntry entry = std::move(**claimed);
        Deliver(entry);
        Wipe(entry.content);
      }
      lock.lock();
      if (stopping_) {
        break;
      }
      work_cv_.wait_for(lock, std::max(wait, milliseconds(10)),
                        [this, seen] { return stopping_.load() || generation_ != seen; });
    }
  }

  void Deliver(const OutboxEntry& entry) {
    std::optional<std::string> rcpt = internal::ReadRecipient(entry.content);
    if (!rcpt) {
      Finish(entry, "mail_outbox_entry_invalid", outbox_.Rejected(entry, 0));
      return;
    }
    long smtp_code = 0;
    std::string error;
    CURLcode rc =
        internal::SmtpTransfer(options_, *rcpt, entry.content, stopping_, &smtp_code, &error);
    error = internal::Scrub(std::move(error), *rcpt);
    Wipe(*rcpt);
    if (rc == CURLE_OK) {
      Status s = outbox_.Delivered(entry);
      if (!s.ok()) {
        // Sent, but the outbox still holds it (store down, or the lease ran out and another
        // node took it over): it may be sent again (at least once).
        log_.Warn("mail_outbox_delete_failed", {{"message_id", entry.id}, {"error", s.message()}});
      }
      log_.Info("mail_delivered",
                {{"message_id", entry.id}, {"attempts", static_cast<int64_t>(entry.attempt)}});
      return;
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK && stopping_) {
      log_.Info("mail_delivery_interrupted",
                {{"message_id", entry.id}, {"attempt", static_cast<int64_t>(entry.attempt)}});
      (void)outbox_.Retry(entry, milliseconds(0));  // another node may take it at once
      return;
    }
    if (smtp_code >= 500 && smtp_code < 600) {
      Status s = outbox_.Rejected(entry, smtp_code);
      log_.Error("mail_delivery_rejected", {{"message_id", entry.id},
                                            {"smtp_code", static_cast<int64_t>(smtp_code)},
                                            {"error", error},
                                            {"dropped", s.ok()}});
      return;
    }
    const milliseconds delay = Backoff(entry.attempt);
    log_.Warn("mail_delivery_failed", {{"message_id", entry.id},
                                       {"attempt", static_cast<int64_t>(entry.attempt)},
                                       {"smtp_code", static_cast<int64_t>(smtp_code)},
                                       {"error", error},
                                       {"retry_in_ms", static_cast<int64_t>(delay.count())}});
    if (Status s = outbox_.Retry(entry, delay); !s.ok() && s.code() != Code::kFailedPrecondition) {
      log_.Warn("mail_outbox_release_failed", {{"message_id", entry.id}, {"error", s.message()}});
    }
  }

  void Finish(const OutboxEntry& entry, std::string_view event, const Status& s) {
    log_.Error(event, {{"message_id", entry.id}, {"dropped", s.ok()}});
  }

  const MailOptions options_;
  Outbox& outbox_;
  Logger& log_;
  const milliseconds poll_;

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::atomic<bool> stopping_{false};
  uint64_t generation_ = 0;
  std::thread thread_;
};

Result<std::unique_ptr<OutboxSmtpMailer>> OutboxSmtpMailer::Create(const MailOptions& options,
                                                                   Outbox& outbox, Logger& log,
                                                                   milliseconds poll) {
  OTD_RETURN_IF_ERROR(internal::ValidateSmtpOptions(options));
  if (poll.count() <= 0) {
    return InvalidArgument("mail outbox poll interval must be positive");
  }
  OTD_RETURN_IF_ERROR(internal::InitCurlOnce());
  auto impl = std::make_unique<Impl>(options, outbox, log, poll);
  impl->Start();
  return std::unique_ptr<OutboxSmtpMailer>(new OutboxSmtpMailer(std::move(impl)));
}

OutboxSmtpMailer::OutboxSmtpMailer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OutboxSmtpMailer::~OutboxSmtpMailer() = default;

Status OutboxSmtpMailer::Send(const Message& message) { return impl_->Send(message); }

Status OutboxSmtpMailer::Flush(milliseconds timeout) { return impl_->Flush(timeout); }

}  // namespace otd::mail
