#pragma once
// Turns a failed OpenSSL call into a Status. Private to crypto/.

#include <string_view>

#include "common/status.h"

namespace otd::crypto::internal {

// Returns an Internal status naming `what` and the reason of the oldest queued OpenSSL error
// (library reason strings never contain caller data), then clears this thread's error queue so
// a stale entry cannot be blamed on a later, unrelated call.
Status OpenSslFailure(std::string_view what);

}  // namespace otd::crypto::internal
