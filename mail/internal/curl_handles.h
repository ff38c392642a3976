#pragma once
// RAII owners for the libcurl handles mail/ uses, and the one-time global initialisation.

#include <curl/curl.h>

#include <memory>

#include "common/status.h"

namespace otd::mail::internal {

struct CurlEasyFree {
  void operator()(CURL* p) const noexcept { curl_easy_cleanup(p); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyFree>;

struct CurlSlistFree {
  void operator()(curl_slist* p) const noexcept { curl_slist_free_all(p); }
};
using CurlSlist = std::unique_ptr<curl_slist, CurlSlistFree>;

// curl_global_init(CURL_GLOBAL_DEFAULT) exactly once per process (never cleaned up: other
// threads may still use libcurl at exit). Returns the result of that single call.
Status InitCurlOnce();

}  // namespace otd::mail::internal
