#include "api/request_helpers.h"

#include <openssl/crypto.h>

#include <algorithm>

#include "common/ascii.h"

namespace otd::api {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

std::string MediaType(std::string_view content_type) {
  std::string_view t = Trim(content_type.substr(0, content_type.find(';')));
  return AsciiLowerCopy(t);
}

void WipeJson(nlohmann::json& doc) {
  if (doc.is_string()) {
    auto& s = doc.get_ref<std::string&>();
    OPENSSL_cleanse(s.data(), s.size());
  } else if (doc.is_structured()) {
    for (auto& v : doc) {
      WipeJson(v);
    }
  }
}

std::string ConcatExact(std::initializer_list<std::string_view> pieces) {
  size_t n = 0;
  for (auto p : pieces) {
    n += p.size();
  }
  std::string out;
  out.reserve(n);
  for (auto p : pieces) {
    out.append(p);
  }
  return out;
}

bool IsPlainJsonText(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
  });
}

std::optional<std::string> CookieValue(const Request& req, std::string_view name) {
  for (const auto& field : req) {
    if (field.name() != http::field::cookie) {
      continue;
    }
    std::string_view v = field.value();
    while (!v.empty()) {
      size_t semi = v.find(';');
      std::string_view pair = Trim(v.substr(0, semi));
      v = semi == std::string_view::npos ? std::string_view() : v.substr(semi + 1);
      size_t eq = pair.find('=');
      if (eq != std::string_view::npos && Trim(pair.substr(0, eq)) == name) {
        return std::string(Trim(pair.substr(eq + 1)));
      }
    }
  }
  return std::nullopt;
}

}  // namespace otd::api
