#include "daemon/config_schema.h"

#include <array>
#include <string>

#include "api/validation.h"

namespace otd::daemon {

namespace {

constexpr char kSchemaPath[] = "config.json";

// "/listen/tls/port: reason" -> "listen.tls.port: reason"; "/: reason" or ": reason" ->
// "config: reason". RFC 6901 escapes are undone.
std::string DottedMessage(const std::string& message) {
  const size_t colon = message.find(": ");
  if (message.empty() || message[0] != '/' || colon == std::string::npos) {
    return "config: " + message;
  }
  std::string key;
  for (size_t i = 1; i < colon; ++i) {
    if (message[i] == '/') {
      key += '.';
    } else if (message[i] == '~' && i + 1 < colon) {
      key += message[i + 1] == '1' ? '/' : '~';
      ++i;
    } else {
      key += message[i];
    }
  }
  return (key.empty() ? std::string("config") : key) + message.substr(colon);
}

}  // namespace

Status ValidateConfigSchema(const nlohmann::json& doc) {
  const std::array<api::SchemaFile, 1> files = {
      api::SchemaFile{kSchemaPath, ConfigSchemaDocument()}};
  auto validator = api::SchemaValidator::CreateFrom(files);
  if (!validator.ok()) {
    return Internal("schema/config.json: " + validator.status().message());
  }
  // Unknown keys first: valijson's additionalProperties failure names the object, not the key.
  Status s = api::RejectUnknownFields(doc, kSchemaPath, **validator);
  if (s.ok()) {
    s = (*validator)->Validate(kSchemaPath, doc);
  }
  if (s.ok()) {
    return s;
  }
  if (s.code() != Code::kInvalidArgument) {
    return s;
  }
  return InvalidArgument(DottedMessage(s.message()));
}

}  // namespace otd::daemon
