#pragma once
// The JSON schemas of schema/, embedded at build time (cmake/EmbedSchemas.cmake). They are served
// under /schema/<path> and used to validate request bodies. schema/openapi.json, the OpenAPI 3.1
// description of the whole API, is embedded apart (OpenApiDocument) and served at /openapi.json.

#include <span>
#include <string_view>

namespace otd::api {

struct SchemaFile {
  std::string_view path;     // relative to schema/, e.g. "account/login-request.json"
  std::string_view content;  // the file, byte for byte
};

std::span<const SchemaFile> EmbeddedSchemas();
const SchemaFile* FindSchema(std::string_view path);
// schema/openapi.json, byte for byte.
std::string_view OpenApiDocument();

}  // namespace otd::api
