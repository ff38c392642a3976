#include "mail/internal/smtp_transfer.h"

#include <unistd.h>

#include <algorithm>

#include "mail/internal/curl_handles.h"
#include "mail/internal/mime.h"

namespace otd::mail::internal {

namespace {

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
    if (c != prefix[i]) {
      return false;
    }
  }
  return true;
}

Status ValidateSmtpUrl(std::string_view url) {
  std::string_view rest;
  if (StartsWithNoCase(url, "smtp://")) {
    rest = url.substr(7);
  } else if (StartsWithNoCase(url, "smtps://")) {
    rest = url.substr(8);
  } else {
    return InvalidArgument("mail.smtp_url must start with smtp:// or smtps://");
  }
  if (rest.empty() || rest.front() == '/' || rest.front() == ':') {
    return InvalidArgument("mail.smtp_url has no host");
  }
  for (char ch : url) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7F) {
      return InvalidArgument("mail.smtp_url contains spaces or control characters");
    }
  }
  return Status::Ok();
}

}  // namespace

// Replaces every occurrence of `secret` in `text` (curl error texts should never contain the
// recipient, but a log line must not depend on that).
std::string Scrub(std::string text, const std::string& secret) {
  if (secret.empty()) {
    return text;
  }
  for (size_t pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos)) {
    text.replace(pos, secret.size(), "[redacted]");
    pos += 10;
  }
  return text;
}

namespace {

struct ReadCursor {
  std::string_view data;
  size_t pos = 0;
};

size_t ReadCallback(char* buffer, size_t size, size_t nitems, void* userdata) {
  auto* cur = static_cast<ReadCursor*>(userdata);
  size_t n = std::min(size * nitems, cur->data.size() - cur->pos);
  std::copy_n(cur->data.data() + cur->pos, n, buffer);
  cur->pos += n;
  return n;
}

int Progress(void* stop, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(stop)->load() ? 1 : 0;
}

}  // namespace

CURLcode SmtpTransfer(const MailOptions& options, const std::string& rcpt, std::string_view content,
                      const std::atomic<bool>& stop, long* smtp_code, std::string* error) {
  internal::CurlEasy curl(curl_easy_init());
  if (!curl) {
    *error = "curl_easy_init failed";
    return CURLE_FAILED_INIT;
  }
  CURL* h = curl.get();
  char errbuf[CURL_ERROR_SIZE] = {0};
  std::string mail_from = "<" + options.from + ">";
  std::string rcpt_to = "<" + rcpt + ">";
  internal::CurlSlist rcpts(curl_slist_append(nullptr, rcpt_to.c_str()));
  if (!rcpts) {
    *error = "curl_slist_append failed";
    return CURLE_OUT_OF_MEMORY;
  }
  ReadCursor cursor{content, 0};
  CURLcode rc = CURLE_OK;
  auto set = [&](CURLoption opt, auto value) {
    if (rc == CURLE_OK) {
      rc = curl_easy_setopt(h, opt, value);
    }
  };
  set(CURLOPT_ERRORBUFFER, errbuf);
  set(CURLOPT_URL, options.smtp_url.c_str());
  set(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_USE_SSL, static_cast<long>(options.require_tls ? CURLUSESSL_ALL : CURLUSESSL_TRY));
  if (!options.ca_file.empty()) {
    set(CURLOPT_CAINFO, options.ca_file.c_str());
  }
  set(CURLOPT_SSL_VERIFYPEER, 1L);
  set(CURLOPT_SSL_VERIFYHOST, 2L);
  set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.connect_timeout.count()));
  set(CURLOPT_TIMEOUT_MS, static_cast<long>(options.transfer_timeout.count()));
  set(CURLOPT_MAIL_FROM, mail_from.c_str());
  set(CURLOPT_MAIL_RCPT, rcpts.get());
  set(CURLOPT_UPLOAD, 1L);
  set(CURLOPT_READFUNCTION, &ReadCallback);
  set(CURLOPT_READDATA, &cursor);
  set(CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(content.size()));
  set(CURLOPT_NOPROGRESS, 0L);
  set(CURLOPT_XFERINFOFUNCTION, &Progress);
  set(CURLOPT_XFERINFODATA, const_cast<std::atomic<bool>*>(&stop));
  if (rc != CURLE_OK) {
    *error = std::string("curl_easy_setopt: ") + curl_easy_strerror(rc);
    return rc;
  }
  rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, smtp_code);
  if (rc != CURLE_OK) {
    *error = curl_easy_strerror(rc);
    if (errbuf[0] != '\0') {
      *error += std::string(": ") + errbuf;
    }
  }
  return rc;
}

Status ValidateSmtpOptions(const MailOptions& options) {
  OTD_RETURN_IF_ERROR(ValidateSmtpUrl(options.smtp_url));
  if (options.from.empty()) {
    return InvalidArgument("mail.from is required with mail.smtp_url");
  }
  OTD_RETURN_IF_ERROR(internal::ValidateAddress("mail.from", options.from));
  if (options.initial_retry_delay.count() <= 0 ||
      options.max_retry_delay < options.initial_retry_delay) {
    return InvalidArgument("mail retry delays: need 0 < initial <= max");
  }
  if (options.connect_timeout.count() <= 0 || options.transfer_timeout.count() <= 0) {
    return InvalidArgument("mail timeouts must be positive");
  }
  if (!options.ca_file.empty() && ::access(options.ca_file.c_str(), R_OK) != 0) {
    return InvalidArgument("mail.ca_file is not readable");
  }
  return Status::Ok();
}

}  // namespace otd::mail::internal
