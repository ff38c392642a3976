#pragma once
// The JSON Schema of the configuration, schema/config.json (JSON Schema draft 7, the dialect the
// request-body validator, valijson, implements; api/validation.h), embedded at build time.
// Editors complete and check a config against it; ParseConfig (daemon/config.h) checks every
// config it accepts against it as well, so the schema cannot fall behind the loader unnoticed:
// a key the loader knows but the schema lacks makes every config using it fail to load.
//
// Thread safety: free functions without shared state.

#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace otd::daemon {

// schema/config.json, byte for byte (not served by the API).
std::string_view ConfigSchemaDocument();

// kInvalidArgument "<dotted.key>: <reason>" (e.g. "listen.tls.port: ...", "config: ..." for
// the document itself) when `doc` does not satisfy the schema, unknown keys included; kInternal
// when the embedded schema does not compile (a build defect).
Status ValidateConfigSchema(const nlohmann::json& doc);

}  // namespace otd::daemon
