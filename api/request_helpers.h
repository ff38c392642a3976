#pragma once
// Helpers shared by the handlers: wiping and building JSON that carries secrets, cookies, the
// media type. (JSON request bodies are read by the pipeline, api/pipeline.cc.)

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api/http.h"

namespace otd::api {

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
