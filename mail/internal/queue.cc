#include "mail/internal/queue.h"

#include <openssl/crypto.h>

#include <ctime>

#include "mail/internal/mime.h"

namespace otd::mail::internal {

Result<std::string> QueueMessage(const SpoolWriter& writer, const Message& message,
                                 const std::string& from) {
  OTD_RETURN_IF_ERROR(ValidateMessage(message));
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  const int64_t now = ts.tv_sec;
  OTD_ASSIGN_OR_RETURN(std::string boundary, RandomHex(16));
  RenderParams params;
  params.from = from;
  params.boundary = "=_otd_" + boundary;
  params.date = now;
  // A clash of two 64-bit random ids is implausible; a couple of retries make it harmless.
  for (int attempt = 0;; ++attempt) {
    OTD_ASSIGN_OR_RETURN(params.message_id, SpoolWriter::NewId(now, ts.tv_nsec));
    std::string rendered = RenderMessage(message, params);
    Status s = writer.Write(params.message_id, rendered);
    // The message holds the recipient and possibly a credential (a confirmation link, a token).
    OPENSSL_cleanse(rendered.data(), rendered.size());
    if (s.ok()) {
      return params.message_id;
    }
    if (s.code() != Code::kAlreadyExists || attempt == 2) {
      return s;
    }
  }
}

Result<std::string> RenderQueued(const Message& message, const std::string& from, std::string* id) {
  OTD_RETURN_IF_ERROR(ValidateMessage(message));
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  OTD_ASSIGN_OR_RETURN(std::string boundary, RandomHex(16));
  RenderParams params;
  params.from = from;
  params.boundary = "=_otd_" + boundary;
  params.date = ts.tv_sec;
  OTD_ASSIGN_OR_RETURN(params.message_id, SpoolWriter::NewId(ts.tv_sec, ts.tv_nsec));
  *id = params.message_id;
  return RenderMessage(message, params);
}

}  // namespace otd::mail::internal
