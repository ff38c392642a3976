#include "mail/mail.h"

namespace otd::mail {

Result<std::unique_ptr<Mailer>> MakeMailer(const MailOptions& options, Logger& log) {
  bool spool = !options.spool_dir.empty();
  bool smtp = !options.smtp_url.empty();
  if (spool == smtp) {
    return InvalidArgument("set exactly one of mail.spool_dir and mail.smtp_url");
  }
  if (spool) {
    OTD_ASSIGN_OR_RETURN(std::unique_ptr<SpoolMailer> m, SpoolMailer::Create(options, log));
    return std::unique_ptr<Mailer>(std::move(m));
  }
  OTD_ASSIGN_OR_RETURN(std::unique_ptr<SmtpMailer> m, SmtpMailer::Create(options, log));
  return std::unique_ptr<Mailer>(std::move(m));
}

}  // namespace otd::mail
