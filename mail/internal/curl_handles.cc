#include "mail/internal/curl_handles.h"

#include <string>

namespace otd::mail::internal {

Status InitCurlOnce() {
  static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK) {
    return Unavailable(std::string("curl_global_init: ") + curl_easy_strerror(rc));
  }
  return Status::Ok();
}

}  // namespace otd::mail::internal
