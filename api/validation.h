#pragma once
// Request-body validation against the JSON schemas of schema/ (the documents also served under
// /schema/, see api/schemas.h), using valijson (draft 7).
//
// What is checked:
// * every keyword valijson implements that our schemas use: type, properties, required, enum,
//   const, minLength/maxLength (in code points), pattern (ECMAScript syntax, std::regex), minimum
//   and maximum, items, allOf, $ref;
// * `format: "date-time"` (RFC 3339 §5.6, with day-of-month and leap-year ranges), by our own
//   code; valijson 1.0 throws on a `format` whose instance is not a string, so no `format`
//   keyword ever reaches it;
// * unknown object members (RejectUnknownFields): our policy is that only members listed under
//   `properties` are accepted, although the schemas do not say `additionalProperties: false`.
// What is not checked: every other `format` ("email", "password-hash", "challenge-hash",
// "totp-current-and-previous"). They are annotations only; the `pattern` and length keywords
// next to them carry the checkable part, and the service layer checks the rest (hash lengths,
// TOTP codes).
//
// std::regex recurses once per input character, so a long string against a `pattern` overflows
// the stack. A string subject to `pattern` or `format` longer than kMaxPatternSubjectBytes is
// therefore rejected before any regex runs.
//
// Schemas may use only the keywords listed in validation.cc (kKnownKeywords); Create() fails on
// any other (anyOf, oneOf, not, patternProperties, id/$id, ... would make the unknown-field walk
// or the $ref resolution unsound). `$ref`s are relative paths ("../meta/email.json", optionally
// with a "#/json/pointer" fragment) resolved against the referring schema's path.
//
// Messages: "<json pointer>: <reason>", e.g. "/mfa/totp: does not match the required pattern".
// The pointer names schema-defined members and array indexes; a message never contains an
// input value, and names an unknown member only when it looks like an identifier.
//
// Thread safety: Validate() and RejectUnknownFields() may run concurrently on one
// SchemaValidator. A valijson::Validator caches compiled regexes without synchronisation, so each
// call borrows one from a small mutex-guarded pool (compiling the e-mail pattern costs ~100 us).
//
// Stack: std::regex needs roughly 400 KiB of stack for a kMaxPatternSubjectBytes string (more
// under sanitizers); call Validate on threads with the default 8 MiB stack, not on small
// coroutine stacks.

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/schemas.h"
#include "common/status.h"
#include "common/strict_json.h"

namespace valijson {
class Validator;
}  // namespace valijson

namespace otd::api {

// Longest string accepted where a `pattern` or `format` applies (an e-mail address is at most
// 254 bytes; password and challenge hashes are a few hundred).
inline constexpr size_t kMaxPatternSubjectBytes = 1024;

class SchemaValidator {
 public:
  // Parses and compiles every embedded schema. kInternal when a schema is not strict JSON, uses
  // an unsupported keyword, has an unresolvable $ref, or a pattern std::regex cannot compile
  // (the message names the schema and the keyword's location).
  static Result<std::unique_ptr<SchemaValidator>> Create();
  // The same over any set of documents (tests). `files` must outlive nothing: they are copied.
  static Result<std::unique_ptr<SchemaValidator>> CreateFrom(std::span<const SchemaFile> files);
  ~SchemaValidator();
  SchemaValidator(const SchemaValidator&) = delete;
  SchemaValidator& operator=(const SchemaValidator&) = delete;

  // `schema_path` is relative to schema/, e.g. "registration/register-request.json".
  // kInvalidArgument with "<pointer>: <reason>" when `doc` does not satisfy the schema;
  // kInternal for an unknown schema_path or an unexpected valijson failure.
  // Does not check for unknown members: see RejectUnknownFields().
  Status Validate(std::string_view schema_path, const nlohmann::json& doc) const;

 private:
  struct Entry;
  struct RefIndex;
  SchemaValidator();
  const Entry* Find(std::string_view schema_path) const;
  std::unique_ptr<valijson::Validator> Borrow() const;
  void Return(std::unique_ptr<valijson::Validator> v) const;

  friend Status RejectUnknownFields(const nlohmann::json& doc, std::string_view schema_path,
                                    const SchemaValidator& validator);

  // Keyed by path relative to schema/. Entries are never moved after Create (node-based map):
  // the valijson schemas point into them.
  std::map<std::string, std::unique_ptr<Entry>, std::less<>> entries_;
  // Every canonical $ref -> the node it names (inside entries_).
  std::unique_ptr<RefIndex> refs_;
  mutable std::mutex pool_mu_;
  mutable std::vector<std::unique_ptr<valijson::Validator>> pool_;  // guarded by pool_mu_
};

// kInvalidArgument ("<pointer>: unknown field") when an object in `doc` has a member not listed
// in the `properties` of the schema that applies to it (following $ref and allOf, into nested
// objects and array items). An object whose schema lists no properties accepts no members,
// unless its schema has `additionalProperties` other than false. kInternal for an unknown
// schema_path.
Status RejectUnknownFields(const nlohmann::json& doc, std::string_view schema_path,
                           const SchemaValidator& validator);

// ParseStrictJson(body, limits), then Validate, then RejectUnknownFields. The errors of each
// step, unchanged (kInvalidArgument for any bad body).
Result<nlohmann::json> ParseAndValidate(std::string_view body, std::string_view schema_path,
                                        const SchemaValidator& validator, const JsonLimits& limits);

}  // namespace otd::api
