#include "common/check.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/log.h"

namespace otd::internal {

void CheckFailed(const char* condition, const char* file, int line) noexcept {
  // Built without allocation where it can fail: the process may be in a bad state.
  char buf[1024];
  const std::string cond = JsonEscape(condition);
  const std::string where = JsonEscape(file);
  int n = std::snprintf(buf, sizeof buf,
                        "{\"level\":\"error\",\"event\":\"invariant_failed\",\"file\":\"%s\","
                        "\"line\":%d,\"condition\":\"%s\"}\n",
                        where.c_str(), line, cond.c_str());
  if (n > 0) {
    const size_t len = std::min(static_cast<size_t>(n), sizeof buf - 1);
    ssize_t ignored = ::write(STDERR_FILENO, buf, len);
    (void)ignored;
  }
  std::abort();
}

}  // namespace otd::internal
