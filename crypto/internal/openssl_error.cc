#include "crypto/internal/openssl_error.h"

#include <openssl/err.h>

#include <string>

namespace otd::crypto::internal {

Status OpenSslFailure(std::string_view what) {
  std::string msg(what);
  unsigned long err = ERR_get_error();
  if (err != 0) {
    const char* reason = ERR_reason_error_string(err);
    msg += ": ";
    msg += reason != nullptr ? reason : "unknown OpenSSL error";
  }
  ERR_clear_error();
  return Internal(std::move(msg));
}

}  // namespace otd::crypto::internal
