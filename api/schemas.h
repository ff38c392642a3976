#pragma once
// The JSON schemas of schema/, embedded at build time (cmake/EmbedSchemas.cmake). They are served
// under /schema/<path> and used to validate request bodies.

#include <span>
#include <string_view>

namespace otd::api {

struct SchemaFile {
  std::string_view path;     // relative to schema/, e.g. "account/login-request.json"
  std::string_view content;  // the file, byte for byte
};

std::span<const SchemaFile> EmbeddedSchemas();
const SchemaFile* FindSchema(std::string_view path);

}  // namespace otd::api
