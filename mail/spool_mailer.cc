#include <string>
#include <utility>

#include "common/log.h"
#include "mail/internal/mime.h"
#include "mail/internal/queue.h"
#include "mail/internal/spool_writer.h"
#include "mail/mail.h"

namespace otd::mail {

class SpoolMailer::Impl {
 public:
  Impl(internal::SpoolWriter writer, std::string from, Logger& log)
      : writer_(std::move(writer)), from_(std::move(from)), log_(log) {}

  Status Send(const Message& message) {
    auto id = internal::QueueMessage(writer_, message, from_);
    if (!id.ok()) {
      if (id.status().code() != Code::kInvalidArgument) {
        log_.Error("mail_spool_failed", {{"error", id.status().message()}});
      }
      return id.status();
    }
    log_.Info("mail_spooled", {{"message_id", *id}});
    return Status::Ok();
  }

 private:
  internal::SpoolWriter writer_;
  std::string from_;
  Logger& log_;
};

Result<std::unique_ptr<SpoolMailer>> SpoolMailer::Create(const MailOptions& options, Logger& log) {
  if (options.spool_dir.empty()) {
    return InvalidArgument("mail.spool_dir is empty");
  }
  std::string from = options.from.empty() ? std::string(internal::kDefaultSpoolFrom) : options.from;
  OTD_RETURN_IF_ERROR(internal::ValidateAddress("mail.from", from));
  OTD_ASSIGN_OR_RETURN(auto writer, internal::SpoolWriter::Open(options.spool_dir));
  return std::unique_ptr<SpoolMailer>(
      new SpoolMailer(std::make_unique<Impl>(std::move(writer), std::move(from), log)));
}

SpoolMailer::SpoolMailer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SpoolMailer::~SpoolMailer() = default;

Status SpoolMailer::Send(const Message& message) { return impl_->Send(message); }

}  // namespace otd::mail
