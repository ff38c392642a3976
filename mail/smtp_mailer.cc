#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "common/log.h"
#include "mail/internal/curl_handles.h"
#include "mail/internal/mime.h"
#include "mail/internal/queue.h"
#include "mail/internal/smtp_transfer.h"
#include "mail/internal/spool_writer.h"
#include "mail/mail.h"

#include <openssl/crypto.h>

namespace otd::mail {

namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr off_t kMaxOutboxFileBytes = 16 << 20;
constexpr const char* kRejectedDir = "rejected";
constexpr milliseconds kIdleRescan{60 * 1000};

// Queue order: the creation time in the name ("<seconds>.<nanoseconds>-…"), then the file's
// modification time (files named some other way sort after, by modification time), then name.
struct QueuedFile {
  std::string name;  // "<id>.eml"
  int64_t name_sec = INT64_MAX;
  int64_t name_nsec = 0;
  fs::file_time_type mtime;

  std::string id() const { return name.substr(0, name.size() - 4); }
  bool operator<(const QueuedFile& o) const {
    return std::tie(name_sec, name_nsec, mtime, name) <
           std::tie(o.name_sec, o.name_nsec, o.mtime, o.name);
  }
};

void ParseNameTime(QueuedFile& f) {
  const char* p = f.name.data();
  const char* end = p + f.name.size();
  int64_t sec = 0;
  int64_t nsec = 0;
  auto r = std::from_chars(p, end, sec);
  if (r.ec != std::errc() || r.ptr == p) {
    return;
  }
  p = r.ptr;
  if (p != end && *p == '.') {
    auto r2 = std::from_chars(p + 1, end, nsec);
    if (r2.ec != std::errc() || r2.ptr == p + 1) {
      return;
    }
    p = r2.ptr;
  }
  if (p == end || *p != '-') {
    return;
  }
  f.name_sec = sec;
  f.name_nsec = nsec;
}

enum class Outcome { kDelivered, kRetry, kRejected, kAborted, kGone };

}  // namespace

class SmtpMailer::Impl {
 public:
  Impl(MailOptions options, Logger& log, internal::SpoolWriter writer, internal::UniqueFd lock)
      : options_(std::move(options)),
        log_(log),
        writer_(std::move(writer)),
        lock_(std::move(lock)) {}

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
    size_t queued = ListQueued().size();
    if (queued > 0) {
      log_.Info("mail_outbox_resumed", {{"queued", static_cast<uint64_t>(queued)}});
    }
    thread_ = std::thread([this] { Run(); });
  }

  Status Send(const Message& message) {
    auto id = internal::QueueMessage(writer_, message, options_.from);
    if (!id.ok()) {
      if (id.status().code() != Code::kInvalidArgument) {
        log_.Error("mail_queue_failed", {{"error", id.status().message()}});
      }
      return id.status();
    }
    log_.Info("mail_queued", {{"message_id", *id}});
    {
      std::lock_guard lock(mu_);
      ++generation_;
    }
    work_cv_.notify_all();
    return Status::Ok();
  }

  Status Flush(milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock lock(mu_);
    for (;;) {
      lock.unlock();
      bool empty = ListQueued().empty();
      lock.lock();
      if (empty) {
        return Status::Ok();
      }
      auto now = std::chrono::steady_clock::now();
      if (now >= deadline) {
        return Unavailable("mail outbox still holds messages after the flush timeout");
      }
      // Woken after each delivery; the short cap also notices files removed by others.
      progress_cv_.wait_until(lock, std::min(deadline, now + milliseconds(50)));
    }
  }

 private:
  std::vector<QueuedFile> ListQueued() {
    std::vector<QueuedFile> out;
    std::error_code ec;
    for (fs::directory_iterator it(writer_.path(), ec), end; !ec && it != end; it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (name.size() <= 4 || name.front() == '.' || !name.ends_with(".eml")) {
        continue;
      }
      std::error_code ec2;
      if (!it->is_regular_file(ec2)) {
        continue;
      }
      QueuedFile f;
      f.name = name;
      f.mtime = it->last_write_time(ec2);
      ParseNameTime(f);
      {
        std::lock_guard lock(mu_);
        if (undeletable_.count(f.name)) {
          continue;
        }
      }
      out.push_back(std::move(f));
    }
    if (ec) {
      log_.Error("mail_outbox_unreadable", {{"error", ec.message()}});
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  void Run() {
    milliseconds delay = options_.initial_retry_delay;
    std::string head_id;
    int attempts = 0;
    std::unique_lock lock(mu_);
    while (!stopping_) {
      uint64_t seen = generation_;
      lock.unlock();
      std::vector<QueuedFile> files = ListQueued();
      bool backoff = false;
      for (const QueuedFile& f : files) {
        if (stopping_) {
          break;
        }
        if (f.id() != head_id) {
          head_id = f.id();
          attempts = 0;
        }
        ++attempts;
        Outcome o = Deliver(f, attempts, delay);
        if (o == Outcome::kAborted) {
          break;
        }
        if (o == Outcome::kRetry) {
          backoff = true;
          break;
        }
        delay = options_.initial_retry_delay;
        progress_cv_.notify_all();
      }
      lock.lock();
      if (stopping_) {
        break;
      }
      if (backoff) {
        work_cv_.wait_for(lock, delay, [this] { return stopping_.load(); });
        delay = std::min(delay * 2, options_.max_retry_delay);
      } else if (files.empty()) {
        work_cv_.wait_for(lock, kIdleRescan,
                          [this, seen] { return stopping_.load() || generation_ != seen; });
      }
    }
  }

  // One delivery attempt of one queued file.
  Outcome Deliver(const QueuedFile& f, int attempt, milliseconds next_delay) {
    const std::string id = f.id();
    std::string content;
    // The message holds the recipient and possibly a credential: wipe it on every way out.
    struct Wipe {
      std::string& s;
      ~Wipe() { OPENSSL_cleanse(s.data(), s.size()); }
    } wipe_content{content};
    if (Status s = ReadQueued(f.name, &content); !s.ok()) {
      if (s.code() == Code::kNotFound) {
        return Outcome::kGone;
      }
      if (s.code() == Code::kResourceExhausted) {
        return Reject(f, "mail_outbox_file_invalid", 0, s.message());
      }
      LogFailure(id, attempt, 0, s.message(), next_delay);
      return Outcome::kRetry;
    }
    std::optional<std::string> rcpt = internal::ReadRecipient(content);
    if (!rcpt) {
      return Reject(f, "mail_outbox_file_invalid", 0, "no usable To: header");
    }

    long smtp_code = 0;
    std::string error;
    CURLcode rc = Transfer(*rcpt, content, &smtp_code, &error);
    error = internal::Scrub(std::move(error), *rcpt);
    if (rc == CURLE_OK) {
      if (::unlinkat(writer_.dir_fd(), f.name.c_str(), 0) != 0 && errno != ENOENT) {
        Status s = internal::ErrnoStatus("unlink", errno);
        // Never send it again from this process; an operator must remove it.
        {
          std::lock_guard lock(mu_);
          undeletable_.insert(f.name);
        }
        log_.Error("mail_outbox_unlink_failed", {{"message_id", id}, {"error", s.message()}});
      } else if (Status s = writer_.SyncDirectory(); !s.ok()) {
        log_.Warn("mail_outbox_sync_failed", {{"message_id", id}, {"error", s.message()}});
      }
      log_.Info("mail_delivered", {{"message_id", id}, {"attempts", attempt}});
      return Outcome::kDelivered;
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK && stopping_) {
      log_.Info("mail_delivery_interrupted", {{"message_id", id}, {"attempt", attempt}});
      return Outcome::kAborted;
    }
    if (smtp_code >= 500 && smtp_code < 600) {
      return Reject(f, "mail_delivery_rejected", smtp_code, error);
    }
    LogFailure(id, attempt, smtp_code, error, next_delay);
    return Outcome::kRetry;
  }

  void LogFailure(const std::string& id, int attempt, long smtp_code, const std::string& error,
                  milliseconds next_delay) {
    log_.Warn("mail_delivery_failed", {{"message_id", id},
                                       {"attempt", attempt},
                                       {"smtp_code", static_cast<int64_t>(smtp_code)},
                                       {"error", error},
                                       {"retry_in_ms", static_cast<int64_t>(next_delay.count())}});
  }

  // Moves the file to rejected/ so it no longer blocks the queue. If that fails, it is retried.
  Outcome Reject(const QueuedFile& f, std::string_view event, long smtp_code,
                 const std::string& error) {
    const std::string id = f.id();
    std::string target = std::string(kRejectedDir) + "/" + f.name;
    // Recreated in case an operator removed it.
    (void)internal::EnsureDirectory(writer_.path() + "/" + kRejectedDir);
    if (::renameat(writer_.dir_fd(), f.name.c_str(), writer_.dir_fd(), target.c_str()) != 0) {
      Status s = internal::ErrnoStatus("move to rejected", errno);
      log_.Error("mail_reject_failed", {{"message_id", id}, {"error", s.message()}});
      return Outcome::kRetry;
    }
    internal::UniqueFd rejected(
        ::openat(writer_.dir_fd(), kRejectedDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (rejected.valid()) {
      ::fsync(rejected.get());
    }
    (void)writer_.SyncDirectory();
    log_.Error(event, {{"message_id", id},
                       {"smtp_code", static_cast<int64_t>(smtp_code)},
                       {"error", error},
                       {"moved_to", kRejectedDir}});
    return Outcome::kRejected;
  }

  Status ReadQueued(const std::string& name, std::string* out) {
    internal::UniqueFd fd(
        ::openat(writer_.dir_fd(), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) {
      if (errno == ENOENT) {
        return NotFound("queued file vanished");
      }
      return internal::ErrnoStatus("open queued file", errno);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      return internal::ErrnoStatus("stat queued file", errno);
    }
    if (st.st_size > kMaxOutboxFileBytes) {
      return ResourceExhausted("queued file over 16 MiB");
    }
    out->resize(static_cast<size_t>(st.st_size));
    size_t off = 0;
    while (off < out->size()) {
      ssize_t n = ::read(fd.get(), out->data() + off, out->size() - off);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return internal::ErrnoStatus("read queued file", errno);
      }
      if (n == 0) {
        break;
      }
      off += static_cast<size_t>(n);
    }
    out->resize(off);
    return Status::Ok();
  }

  CURLcode Transfer(const std::string& rcpt, std::string_view content, long* smtp_code,
                    std::string* error) {
    return internal::SmtpTransfer(options_, rcpt, content, stopping_, smtp_code, error);
  }

  const MailOptions options_;
  Logger& log_;
  internal::SpoolWriter writer_;
  internal::UniqueFd lock_;  // flock(LOCK_EX) on <outbox>/.lock for the mailer's lifetime

  std::mutex mu_;
  std::condition_variable work_cv_;      // Send() or the destructor -> delivery thread
  std::condition_variable progress_cv_;  // delivery thread -> Flush()
  std::atomic<bool> stopping_{false};    // read by the curl progress callback without mu_
  uint64_t generation_ = 0;              // bumped by every Send()
  std::set<std::string> undeletable_;    // delivered but unlink failed: never resent
  std::thread thread_;
};

Result<std::unique_ptr<SmtpMailer>> SmtpMailer::Create(const MailOptions& options, Logger& log) {
  OTD_RETURN_IF_ERROR(internal::ValidateSmtpOptions(options));
  if (options.outbox_dir.empty()) {
    return InvalidArgument("mail.outbox_dir is required with mail.smtp_url");
  }
  OTD_RETURN_IF_ERROR(internal::InitCurlOnce());
  OTD_ASSIGN_OR_RETURN(auto writer, internal::SpoolWriter::Open(options.outbox_dir));

  internal::UniqueFd lock(
      ::openat(writer.dir_fd(), ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock.valid()) {
    return internal::ErrnoStatus("open mail outbox lock", errno);
  }
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return FailedPrecondition("mail.outbox_dir is in use by another mailer");
    }
    return internal::ErrnoStatus("lock mail outbox", errno);
  }
  // Temp files left by a crash mid-Send were never acknowledged: remove them.
  std::error_code ec;
  for (fs::directory_iterator it(options.outbox_dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() > 5 && name.front() == '.' && name.ends_with(".tmp")) {
      ::unlinkat(writer.dir_fd(), name.c_str(), 0);
    }
  }
  OTD_RETURN_IF_ERROR(internal::EnsureDirectory(options.outbox_dir + "/" + kRejectedDir));

  auto impl = std::make_unique<Impl>(options, log, std::move(writer), std::move(lock));
  impl->Start();
  return std::unique_ptr<SmtpMailer>(new SmtpMailer(std::move(impl)));
}

SmtpMailer::SmtpMailer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SmtpMailer::~SmtpMailer() = default;

Status SmtpMailer::Send(const Message& message) { return impl_->Send(message); }

Status SmtpMailer::Flush(std::chrono::milliseconds timeout) { return impl_->Flush(timeout); }

}  // namespace otd::mail
