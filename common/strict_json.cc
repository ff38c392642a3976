#include "common/strict_json.h"

#include <set>
#include <string>
#include <vector>

#include "common/bytes.h"

namespace otd {

namespace {

struct Reject {
  std::string why;
};

bool HasControlChar(const std::string& s) {
  for (uint8_t c : AsBytes(s)) {
    if (c < 0x20) {
      return true;
    }
  }
  return false;
}

}  // namespace

Result<nlohmann::json> ParseStrictJson(std::string_view text, const JsonLimits& limits) {
  if (text.size() >= 3 && static_cast<unsigned char>(text[0]) == 0xEF &&
      static_cast<unsigned char>(text[1]) == 0xBB && static_cast<unsigned char>(text[2]) == 0xBF) {
    return InvalidArgument("JSON must not start with a byte order mark");
  }
  // nlohmann's lexer takes a NUL byte for the end of the input and ignores everything after it
  // ({"a":1}\0anything parses). A NUL is never valid JSON (raw control characters are not
  // allowed in strings either), so refuse it before parsing.
  if (text.find('\0') != std::string_view::npos) {
    return InvalidArgument("JSON contains a NUL byte");
  }
  // One set of seen keys per open object (the callback's depth tells which object we are in).
  std::vector<std::set<std::string>> keys;
  // The last key read in each open object (for name_duplicate_keys).
  std::vector<std::string> path;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event,
                      nlohmann::json& parsed) -> bool {
    using E = nlohmann::json::parse_event_t;
    if (static_cast<size_t>(depth) > limits.max_depth) {
      throw Reject{"JSON nesting is deeper than " + std::to_string(limits.max_depth)};
    }
    switch (event) {
      case E::object_start:
        keys.emplace_back();
        path.emplace_back();
        break;
      case E::object_end:
        if (!keys.empty()) {
          keys.pop_back();
          path.pop_back();
        }
        break;
      case E::key: {
        const auto& k = parsed.get_ref<const std::string&>();
        if (HasControlChar(k)) {
          throw Reject{"JSON object key contains a control character"};
        }
        if (keys.empty() || !keys.back().insert(k).second) {
          if (!limits.name_duplicate_keys || path.empty()) {
            throw Reject{"JSON object has a duplicate key"};
          }
          std::string where;
          for (size_t i = 0; i + 1 < path.size(); ++i) {
            where += path[i] + ".";
          }
          throw Reject{"JSON object has a duplicate key: " + where + k};
        }
        path.back() = k;
        break;
      }
      case E::value:
        if (parsed.is_string()) {
          const auto& s = parsed.get_ref<const std::string&>();
          if (s.size() > limits.max_string_bytes) {
            throw Reject{"JSON string is too long"};
          }
          if (HasControlChar(s)) {
            throw Reject{"JSON string contains a control character"};
          }
        }
        break;
      default: break;
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                                 /*ignore_comments=*/false);
  } catch (const Reject& r) {
    return InvalidArgument(r.why);
  } catch (const nlohmann::json::parse_error& e) {
    return InvalidArgument("malformed JSON at byte " + std::to_string(e.byte));
  } catch (const nlohmann::json::exception&) {
    return InvalidArgument("malformed JSON");
  }
}

}  // namespace otd
