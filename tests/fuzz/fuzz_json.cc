// fuzz_json: request-body decoding (common/strict_json.h) and schema validation
// (api/validation.h), as the pipeline's ReadJson (api/pipeline.cc) does for every JSON route.
//
// Input: first byte picks the schema (every document under schema/), the rest is the body.
// Properties checked (abort on violation):
//  * ParseStrictJson never throws; an accepted document has depth <= max_depth, no string or key
//    with a C0 control character or longer than max_string_bytes, and dump() -> parse gives the
//    same document (round trip);
//  * Validate and RejectUnknownFields never throw and never return kInternal for a known schema;
//  * ParseAndValidate agrees with the three steps run one by one;
//  * a document that passes Validate + RejectUnknownFields has only members the schema knows:
//    re-validating its dump() gives the same verdict.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api/validation.h"
#include "common/strict_json.h"

namespace {

constexpr std::string_view kSchemas[] = {
    "registration/register-request.json",
    "registration/secure-request.json",
    "account/login-request.json",
    "account/logout-request.json",
    "account/access-code-request.json",
    "account/token-create-request.json",
    "meta/challenge-hash.json",
    "meta/date-string.json",
    "meta/email.json",
    "meta/encoding-method.json",
    "meta/encryption-method.json",
    "meta/hash-config.json",
    "meta/hash-derivation.json",
    "meta/hash-method.json",
    "meta/mfa-totp-code.json",
    "meta/password-hash.json",
    "meta/secure-hash-config.json",
    "meta/totp-code.json",
};

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_json: property violated: %s\n", what);
    std::abort();
  }
}

bool Clean(const std::string& s, const otd::JsonLimits& lim) {
  if (s.size() > lim.max_string_bytes)
    return false;
  for (unsigned char c : s) {
    if (c < 0x20)
      return false;
  }
  return true;
}

// Depth as the parser callback counts it: a scalar at top level is depth 0, members of the top
// object are depth 1.
void Walk(const nlohmann::json& j, size_t depth, const otd::JsonLimits& lim) {
  Require(depth <= lim.max_depth + 1, "document deeper than max_depth accepted");
  if (j.is_string()) {
    Require(Clean(j.get_ref<const std::string&>(), lim), "string with control char accepted");
  } else if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      Require(Clean(k, lim), "key with control char accepted");
      Walk(v, depth + 1, lim);
    }
  } else if (j.is_array()) {
    for (const auto& v : j)
      Walk(v, depth + 1, lim);
  }
}

const otd::api::SchemaValidator& Validator() {
  static std::unique_ptr<otd::api::SchemaValidator> v = [] {
    auto r = otd::api::SchemaValidator::Create();
    Require(r.ok(), "SchemaValidator::Create failed");
    return std::move(*r);
  }();
  return *v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  const otd::api::SchemaValidator& validator = Validator();
  std::string_view schema = kSchemas[data[0] % std::size(kSchemas)];
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  otd::JsonLimits lim;  // the server's: depth 8, strings up to the JSON body limit (64 KiB)
  lim.max_depth = 8;
  lim.max_string_bytes = 64 * 1024;

  auto doc = otd::ParseStrictJson(body, lim);
  auto combined = otd::api::ParseAndValidate(body, schema, validator, lim);
  if (!doc.ok()) {
    Require(doc.status().code() == otd::Code::kInvalidArgument,
            "parse error is not kInvalidArgument");
    Require(!combined.ok() && combined.status().message() == doc.status().message(),
            "ParseAndValidate disagrees with ParseStrictJson");
    return 0;
  }
  Walk(*doc, 0, lim);
  std::string dumped = doc->dump();
  auto again = otd::ParseStrictJson(dumped, lim);
  Require(again.ok(), "dump() of an accepted document is rejected");
  Require(*again == *doc, "dump() round trip changes the document");

  otd::Status v = validator.Validate(schema, *doc);
  Require(v.code() != otd::Code::kInternal, "Validate returned kInternal");
  otd::Status u = v.ok() ? otd::api::RejectUnknownFields(*doc, schema, validator) : v;
  Require(u.code() != otd::Code::kInternal, "RejectUnknownFields returned kInternal");
  Require(combined.ok() == u.ok(), "ParseAndValidate disagrees with the three steps");
  if (!u.ok()) {
    Require(u.code() == otd::Code::kInvalidArgument, "validation error is not kInvalidArgument");
    Require(combined.status().message() == u.message(), "ParseAndValidate message differs");
  } else {
    Require(*combined == *doc, "ParseAndValidate returned another document");
    Require(validator.Validate(schema, *again).ok(), "re-validation of the dump fails");
  }
  return 0;
}
