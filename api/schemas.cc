#include "api/schemas.h"

namespace otd::api {

const SchemaFile* FindSchema(std::string_view path) {
  for (const auto& s : EmbeddedSchemas()) {
    if (s.path == path) {
      return &s;
    }
  }
  return nullptr;
}

}  // namespace otd::api
