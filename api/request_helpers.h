#pragma once
// Helpers shared by the handlers: JSON bodies (content type, size, strict parse, schema,
// unknown fields), cookies, the peer identity, and error replies.

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api/http.h"
#include "api/limits.h"
#include "api/validation.h"

namespace otd::api {

// Either a parsed, validated document or the error response to send.
struct JsonBody {
  std::optional<nlohmann::json> doc;
  std::optional<Response> error;
};

// Requires `Content-Type: application/json` (parameters such as charset allowed; 415 otherwise),
// a body within limits.max_json_body_bytes (413), well-formed strict JSON (400), valid against
// `schema_path` with no unknown fields (400, naming the field but never echoing values).
JsonBody ReadJsonBody(const Request& req, const RequestContext& ctx, const SchemaValidator& schemas,
                      std::string_view schema_path, const Limits& limits);

// Overwrites every string in the document (after its values were copied into SecretBytes).
void WipeJson(nlohmann::json& doc);

// Concatenates pieces into one string allocated once at its final size. Replies that carry
// secrets are built this way: a growing string (nlohmann's dump) leaves copies of its prefix in
// freed memory at every reallocation.
std::string ConcatExact(std::initializer_list<std::string_view> pieces);
// True when `s` can go inside a JSON string literal as is (printable ASCII, no '"' or '\').
bool IsPlainJsonText(std::string_view s);

std::optional<std::string> CookieValue(const Request& req, std::string_view name);

// Media type without parameters, lower-cased ("application/json; charset=utf-8" ->
// "application/json").
std::string MediaType(std::string_view content_type);

}  // namespace otd::api
