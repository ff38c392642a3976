#pragma once
// The one adapter around nlohmann::json parsing (it throws; this does not).
// Policy (style-and-safety B.7): duplicate keys (compared after unescaping) are rejected, nesting
// deeper than max_depth is rejected, a UTF-8 BOM is rejected, strings containing NUL or other
// C0 control characters are rejected, invalid UTF-8 is rejected, comments are off.
// The error message says what is wrong and where (byte offset), never echoing input.

#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace otd {

struct JsonLimits {
  size_t max_depth = 8;
  size_t max_string_bytes = 64 * 1024;
  // Name the duplicate key, as a dotted path of object keys ("listen.unix"; array indexes are
  // not counted), in the error. Only for documents whose keys are not secret and come from the
  // operator (the configuration); request bodies keep the message free of input.
  bool name_duplicate_keys = false;
};

Result<nlohmann::json> ParseStrictJson(std::string_view text, const JsonLimits& limits = {});

}  // namespace otd
