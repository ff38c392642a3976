#include "api/validation.h"

// valijson reports schema errors through throwRuntimeError(), which calls abort() unless this is
// set. This is the only translation unit that includes valijson (one definition of those inline
// functions in the program).
#define VALIJSON_USE_EXCEPTIONS 1

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <exception>
#include <functional>
#include <regex>
#include <set>
#include <utility>
#include <vector>

#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

namespace otd::api {

using nlohmann::json;

// Built once at start-up (an exception there is a start-up failure, never a request's).
struct SchemaValidator::Entry {  // NOLINT(bugprone-exception-escape)
  json doc;                      // $refs canonical, every keyword: what our own walks read
  json valijson_doc;  // the same without `format` (valijson 1.0 throws on non-string instances)
  std::unique_ptr<valijson::Schema> schema;
};

namespace {

// Canonical form of every $ref after Create: absolute, so valijson neither concatenates it with a
// resolution scope nor confuses two documents' relative names.
constexpr std::string_view kRefPrefix = "otd://schema/";
constexpr size_t kMaxRefHops = 32;
constexpr size_t kMaxWalkDepth = 64;
constexpr size_t kMaxSchemaDepth = 32;

constexpr std::array<std::string_view, 31> kKnownKeywords = {"$schema",
                                                             "$comment",
                                                             "title",
                                                             "description",
                                                             "examples",
                                                             "default",
                                                             "$ref",
                                                             "type",
                                                             "enum",
                                                             "const",
                                                             "properties",
                                                             "required",
                                                             "additionalProperties",
                                                             "items",
                                                             "minItems",
                                                             "maxItems",
                                                             "uniqueItems",
                                                             "minLength",
                                                             "maxLength",
                                                             "pattern",
                                                             "format",
                                                             "minimum",
                                                             "maximum",
                                                             "exclusiveMinimum",
                                                             "exclusiveMaximum",
                                                             "multipleOf",
                                                             "minProperties",
                                                             "maxProperties",
                                                             "allOf",
                                                             "definitions",
                                                             "$defs"};

using RefMap = std::map<std::string, const json*, std::less<>>;

// "~" and "/" escaped as RFC 6901 requires.
std::string EscapePointerToken(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

// Member names that may appear in a message: identifier-like, so neither an e-mail address, a
// card number nor a secret can be echoed through a crafted key.
bool IsPrintableName(std::string_view s) {
  if (s.empty() || s.size() > 64) {
    return false;
  }
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (!alpha(s[0])) {
    return false;
  }
  return std::all_of(s.begin(), s.end(), [&](char c) { return alpha(c) || digit(c) || c == '-'; });
}

bool IsArrayIndex(std::string_view s) {
  return !s.empty() && s.size() <= 6 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string Where(const std::string& pointer) { return pointer.empty() ? "/" : pointer; }

Status Invalid(const std::string& pointer, std::string_view reason) {
  return InvalidArgument(Where(pointer) + ": " + std::string(reason));
}

// Calls fn(node, pointer) for `node` and every subschema below it (the positions of the keywords
// in kKnownKeywords that hold schemas). Anything else there is not a schema: error.
Status ForEachSubschema(json& node, const std::string& pointer, size_t depth,
                        const std::function<Status(json&, const std::string&)>& fn) {
  if (depth > kMaxSchemaDepth) {
    return Internal("nested too deeply at " + Where(pointer));
  }
  if (node.is_boolean()) {
    return Status::Ok();
  }
  if (!node.is_object()) {
    return Internal("not a schema at " + Where(pointer));
  }
  OTD_RETURN_IF_ERROR(fn(node, pointer));
  for (std::string_view map_keyword : {"properties", "definitions", "$defs"}) {
    auto it = node.find(map_keyword);
    if (it == node.end()) {
      continue;
    }
    if (!it->is_object()) {
      return Internal(std::string(map_keyword) + " is not an object at " + Where(pointer));
    }
    for (auto& [name, sub] : it->items()) {
      OTD_RETURN_IF_ERROR(ForEachSubschema(
          sub, pointer + "/" + std::string(map_keyword) + "/" + EscapePointerToken(name), depth + 1,
          fn));
    }
  }
  for (std::string_view keyword : {"items", "additionalProperties"}) {
    auto it = node.find(keyword);
    if (it != node.end()) {
      OTD_RETURN_IF_ERROR(
          ForEachSubschema(*it, pointer + "/" + std::string(keyword), depth + 1, fn));
    }
  }
  if (auto it = node.find("allOf"); it != node.end()) {
    if (!it->is_array() || it->empty()) {
      return Internal("allOf is not a non-empty array at " + Where(pointer));
    }
    for (size_t i = 0; i < it->size(); ++i) {
      OTD_RETURN_IF_ERROR(
          ForEachSubschema((*it)[i], pointer + "/allOf/" + std::to_string(i), depth + 1, fn));
    }
  }
  return Status::Ok();
}

// Resolves `ref` (a relative path with an optional "#/pointer") against the directory of
// `from_path`; returns the canonical form. Only documents of the embedded set are reachable.
Result<std::string> CanonicalRef(std::string_view from_path, std::string_view ref,
                                 const std::set<std::string, std::less<>>& known) {
  size_t hash = ref.find('#');
  std::string_view file = ref.substr(0, hash);
  std::string_view fragment =
      hash == std::string_view::npos ? std::string_view() : ref.substr(hash + 1);
  if (!fragment.empty() && fragment.front() != '/') {
    return Internal("$ref fragment is not a JSON pointer");
  }
  if (file.find("://") != std::string_view::npos || file.starts_with('/') ||
      file.find(':') != std::string_view::npos) {
    return Internal("$ref is not a relative path");
  }
  std::vector<std::string> parts;
  std::string_view dir = from_path.substr(0, from_path.rfind('/') + 1);
  std::string joined = file.empty() ? std::string(from_path) : std::string(dir) + std::string(file);
  for (size_t start = 0; start <= joined.size();) {
    size_t end = joined.find('/', start);
    if (end == std::string::npos) {
      end = joined.size();
    }
    std::string seg = joined.substr(start, end - start);
    if (seg == "..") {
      if (parts.empty()) {
        return Internal("$ref leaves the schema directory");
      }
      parts.pop_back();
    } else if (!seg.empty() && seg != ".") {
      parts.push_back(std::move(seg));
    }
    start = end + 1;
  }
  std::string path;
  for (const auto& p : parts) {
    path += (path.empty() ? "" : "/") + p;
  }
  if (!known.contains(path)) {
    return Internal("$ref to a document that is not embedded");
  }
  std::string out = std::string(kRefPrefix) + path;
  if (!fragment.empty()) {
    out += "#" + std::string(fragment);
  }
  return out;
}

// Follows a chain of $ref-only nodes (draft 7: a $ref replaces its siblings).
const json* Deref(const json* node, const RefMap& refs) {
  for (size_t hops = 0; node->is_object(); ++hops) {
    auto it = node->find("$ref");
    if (it == node->end() || !it->is_string() || hops > kMaxRefHops) {
      break;
    }
    auto target = refs.find(it->get_ref<const std::string&>());
    if (target == refs.end()) {
      break;  // Create() checked every $ref; unreachable
    }
    node = target->second;
  }
  return node;
}

// The schema nodes that apply to one instance: `node` (dereferenced) and its allOf members,
// recursively. Each node at most once, so allOf cycles end.
void Expand(const json* node, const RefMap& refs, std::vector<const json*>& out) {
  node = Deref(node, refs);
  if (std::find(out.begin(), out.end(), node) != out.end()) {
    return;
  }
  out.push_back(node);
  if (!node->is_object()) {
    return;
  }
  if (auto it = node->find("allOf"); it != node->end() && it->is_array()) {
    for (const auto& sub : *it) {
      Expand(&sub, refs, out);
    }
  }
}

bool Digits(std::string_view s, size_t pos, size_t n, int& value) {
  if (pos + n > s.size()) {
    return false;
  }
  value = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') {
      return false;
    }
    value = value * 10 + (s[i] - '0');
  }
  return true;
}

// RFC 3339 §5.6 date-time, with the §5.7 ranges (mday by month and leap year; second 60 allowed).
bool IsRfc3339DateTime(std::string_view s) {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!Digits(s, 0, 4, year) || s.size() < 20 || s[4] != '-' || !Digits(s, 5, 2, month) ||
      s[7] != '-' || !Digits(s, 8, 2, day) || (s[10] != 'T' && s[10] != 't') ||
      !Digits(s, 11, 2, hour) || s[13] != ':' || !Digits(s, 14, 2, minute) || s[16] != ':' ||
      !Digits(s, 17, 2, second)) {
    return false;
  }
  static constexpr std::array<int, 12> kDays = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month < 1 || month > 12 || day < 1 || day > kDays[static_cast<size_t>(month - 1)] ||
      (month == 2 && day == 29 && !leap) || hour > 23 || minute > 59 || second > 60) {
    return false;
  }
  size_t pos = 19;
  if (s[pos] == '.') {
    size_t digits_start = ++pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      ++pos;
    }
    if (pos == digits_start) {
      return false;
    }
  }
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    return pos + 1 == s.size();
  }
  int off_hour = 0, off_minute = 0;
  return pos + 6 == s.size() && (s[pos] == '+' || s[pos] == '-') &&
         Digits(s, pos + 1, 2, off_hour) && s[pos + 3] == ':' &&
         Digits(s, pos + 4, 2, off_minute) && off_hour <= 23 && off_minute <= 59;
}

// Walks an instance together with the schema nodes that apply to it. Two uses:
// kStrings: the checks that must happen before valijson (string length under pattern/format,
//   the regex stack guard) and the formats valijson does not see;
// kUnknownFields: members not listed under `properties`.
class Walker {
 public:
  enum class Mode { kStrings, kUnknownFields };
  Walker(Mode mode, const RefMap& refs) : mode_(mode), refs_(refs) {}

  Status Walk(const json& doc, const std::vector<const json*>& schemas, std::string& pointer,
              size_t depth) const {
    if (depth > kMaxWalkDepth) {
      return Invalid(pointer, "nested too deeply");
    }
    std::vector<const json*> nodes;
    for (const json* s : schemas) {
      Expand(s, refs_, nodes);
    }
    // A `true` schema (or nothing at all) allows anything: nothing to walk.
    std::erase_if(nodes, [](const json* n) { return !n->is_object(); });
    if (nodes.empty()) {
      return Status::Ok();
    }
    if (doc.is_object()) {
      return WalkObject(doc, nodes, pointer, depth);
    }
    if (doc.is_array()) {
      std::vector<const json*> items;
      for (const json* n : nodes) {
        if (auto it = n->find("items"); it != n->end()) {
          items.push_back(&*it);
        }
      }
      for (size_t i = 0; i < doc.size() && !items.empty(); ++i) {
        size_t len = pointer.size();
        pointer += "/" + std::to_string(i);
        OTD_RETURN_IF_ERROR(Walk(doc[i], items, pointer, depth + 1));
        pointer.resize(len);
      }
      return Status::Ok();
    }
    if (doc.is_string() && mode_ == Mode::kStrings) {
      return CheckString(doc.get_ref<const std::string&>(), nodes, pointer);
    }
    return Status::Ok();
  }

 private:
  Status WalkObject(const json& doc, const std::vector<const json*>& nodes, std::string& pointer,
                    size_t depth) const {
    bool open = false;
    std::vector<const json*> additional;
    for (const json* n : nodes) {
      if (auto it = n->find("additionalProperties"); it != n->end() && *it != json(false)) {
        open = true;
        additional.push_back(&*it);
      }
    }
    for (const auto& [name, value] : doc.items()) {
      std::vector<const json*> children;
      for (const json* n : nodes) {
        auto props = n->find("properties");
        if (props == n->end()) {
          continue;
        }
        if (auto p = props->find(name); p != props->end()) {
          children.push_back(&*p);
        }
      }
      if (children.empty() && !open) {
        if (mode_ == Mode::kUnknownFields) {
          return IsPrintableName(name) ? Invalid(pointer + "/" + name, "unknown field")
                                       : Invalid(pointer, "unknown field");
        }
        continue;
      }
      // A name listed in the schema may appear in messages; one matched only through
      // additionalProperties is input, shown only when identifier-like.
      const bool listed = !children.empty();
      if (!listed) {
        children = additional;
      }
      size_t len = pointer.size();
      pointer +=
          "/" + (listed || IsPrintableName(name) ? EscapePointerToken(name) : std::string("*"));
      OTD_RETURN_IF_ERROR(Walk(value, children, pointer, depth + 1));
      pointer.resize(len);
    }
    return Status::Ok();
  }

  static Status CheckString(const std::string& s, const std::vector<const json*>& nodes,
                            const std::string& pointer) {
    bool guarded = false;
    bool date_time = false;
    for (const json* n : nodes) {
      guarded = guarded || n->contains("pattern") || n->contains("format");
      if (auto f = n->find("format"); f != n->end() && *f == "date-time") {
        date_time = true;
      }
    }
    if (guarded && s.size() > kMaxPatternSubjectBytes) {
      return Invalid(pointer, "too long");
    }
    if (date_time && !IsRfc3339DateTime(s)) {
      return Invalid(pointer, "not a valid date-time");
    }
    return Status::Ok();
  }

  Mode mode_;
  const RefMap& refs_;
};

// valijson's context ("<root>", "[mfa]", "[totp]", "[0]") as a JSON pointer. Segments that are
// neither identifier-like nor array indexes end the pointer (they could be input member names
// matched through additionalProperties).
std::string PointerFromContext(const std::vector<std::string>& context) {
  std::string out;
  for (const auto& c : context) {
    if (c == "<root>") {
      continue;
    }
    std::string_view seg = c;
    if (seg.size() >= 2 && seg.front() == '[' && seg.back() == ']') {
      seg = seg.substr(1, seg.size() - 2);
    }
    if (!IsPrintableName(seg) && !IsArrayIndex(seg)) {
      break;
    }
    out += "/" + EscapePointerToken(seg);
  }
  return out;
}

// valijson's first (innermost) error as "<pointer>: <short reason>". The descriptions are
// matched by prefix (valijson 1.0 wording) and never copied: some embed values.
Status FromValijsonError(const valijson::ValidationResults::Error& error) {
  std::string pointer = PointerFromContext(error.context);
  const std::string& d = error.description;
  constexpr std::string_view kRequired = "Missing required property '";
  if (d.starts_with(kRequired)) {
    std::string_view name = std::string_view(d).substr(kRequired.size());
    name = name.substr(0, name.rfind('\''));
    if (IsPrintableName(name)) {
      return Invalid(pointer + "/" + std::string(name), "is required");
    }
    return Invalid(pointer, "a required field is missing");
  }
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 9> kReasons = {{
      {"Value type not permitted", "wrong type"},
      {"String should be no fewer than", "too short"},
      {"String should be no more than", "too long"},
      {"Failed to match regex", "does not match the required pattern"},
      {"Failed to match against any enum", "not an allowed value"},
      {"Failed to match expected value set by 'const'", "not an allowed value"},
      {"Expected number", "out of range"},
      {"Array should contain", "wrong number of items"},
      {"Object should have", "wrong number of fields"},
  }};
  for (const auto& [prefix, reason] : kReasons) {
    if (d.starts_with(prefix)) {
      return Invalid(pointer, reason);
    }
  }
  return Invalid(pointer, "invalid value");
}

void WipeStrings(json& doc) {
  if (doc.is_string()) {
    auto& s = doc.get_ref<std::string&>();
    OPENSSL_cleanse(s.data(), s.size());
  } else if (doc.is_structured()) {
    for (auto& v : doc) {
      WipeStrings(v);
    }
  }
}

}  // namespace

SchemaValidator::SchemaValidator() = default;
SchemaValidator::~SchemaValidator() = default;

struct SchemaValidator::RefIndex {
  RefMap refs;
};

Result<std::unique_ptr<SchemaValidator>> SchemaValidator::Create() {
  return CreateFrom(EmbeddedSchemas());
}

Result<std::unique_ptr<SchemaValidator>> SchemaValidator::CreateFrom(
    std::span<const SchemaFile> files) {
  std::unique_ptr<SchemaValidator> v(new SchemaValidator());
  std::set<std::string, std::less<>> known;
  for (const auto& f : files) {
    if (!known.emplace(f.path).second) {
      return Internal("schema " + std::string(f.path) + ": listed twice");
    }
  }

  // 1. Parse, check keywords and patterns, canonicalise $refs.
  for (const auto& f : files) {
    const std::string path(f.path);
    auto fail = [&path](const std::string& what) {
      return Internal("schema " + path + ": " + what);
    };
    auto parsed = ParseStrictJson(f.content, JsonLimits{.max_depth = kMaxSchemaDepth});
    if (!parsed.ok()) {
      return fail(parsed.status().message());
    }
    auto entry = std::make_unique<Entry>();
    entry->doc = std::move(parsed).value();
    Status s =
        ForEachSubschema(entry->doc, "", 0, [&](json& node, const std::string& pointer) -> Status {
          for (const auto& [keyword, value] : node.items()) {
            if (std::find(kKnownKeywords.begin(), kKnownKeywords.end(), keyword) ==
                kKnownKeywords.end()) {
              return Internal("unsupported keyword " + keyword + " at " + Where(pointer));
            }
          }
          if (auto it = node.find("pattern"); it != node.end()) {
            if (!it->is_string()) {
              return Internal("pattern is not a string at " + Where(pointer));
            }
            try {
              // valijson compiles patterns the same way (std::regex, ECMAScript grammar).
              std::regex re(it->get_ref<const std::string&>());
            } catch (const std::regex_error& e) {
              return Internal("pattern does not compile at " + Where(pointer) + ": " + e.what());
            }
          }
          if (auto it = node.find("$ref"); it != node.end()) {
            if (!it->is_string()) {
              return Internal("$ref is not a string at " + Where(pointer));
            }
            auto canonical = CanonicalRef(path, it->get_ref<const std::string&>(), known);
            if (!canonical.ok()) {
              return Internal(canonical.status().message() + " at " + Where(pointer));
            }
            *it = std::move(canonical).value();
          }
          return Status::Ok();
        });
    if (!s.ok()) {
      return fail(s.message());
    }
    v->entries_.emplace(path, std::move(entry));
  }

  // 2. Resolve every canonical $ref to its node (fragments included); reject $ref cycles.
  RefIndex index;
  for (auto& [path, entry] : v->entries_) {
    Status s = ForEachSubschema(entry->doc, "", 0, [&](json& node, const std::string& pointer) {
      auto it = node.find("$ref");
      if (it == node.end()) {
        return Status::Ok();
      }
      const std::string& ref = it->get_ref<const std::string&>();
      if (index.refs.contains(ref)) {
        return Status::Ok();
      }
      std::string_view rest = std::string_view(ref).substr(kRefPrefix.size());
      size_t hash = rest.find('#');
      const Entry& target = *v->entries_.find(rest.substr(0, hash))->second;
      const json* node_ptr = &target.doc;
      if (hash != std::string_view::npos) {
        try {
          json::json_pointer jp{std::string(rest.substr(hash + 1))};
          if (!target.doc.contains(jp)) {
            return Internal("$ref fragment not found at " + Where(pointer));
          }
          node_ptr = &target.doc.at(jp);
        } catch (const std::exception&) {
          return Internal("$ref fragment is not a valid JSON pointer at " + Where(pointer));
        }
      }
      index.refs.emplace(ref, node_ptr);
      return Status::Ok();
    });
    if (!s.ok()) {
      return Internal("schema " + path + ": " + s.message());
    }
  }
  for (const auto& [ref, node] : index.refs) {
    const json* n = node;
    for (size_t hops = 0; n->is_object() && n->contains("$ref"); ++hops) {
      const json& next = n->at("$ref");
      auto it =
          next.is_string() ? index.refs.find(next.get_ref<const std::string&>()) : index.refs.end();
      if (it == index.refs.end()) {
        return Internal("$ref " + ref + " leads to a node that is not a schema");
      }
      if (hops >= kMaxRefHops) {
        return Internal("cyclic or too long $ref chain through " + ref);
      }
      n = it->second;
    }
  }
  v->refs_ = std::make_unique<RefIndex>(std::move(index));

  // 3. valijson's copies (no `format`), then its schemas. Remote documents are our own copies;
  //    valijson takes "ownership" through FreeDoc, which therefore does nothing.
  for (auto& [path, entry] : v->entries_) {
    entry->valijson_doc = entry->doc;
    Status s = ForEachSubschema(entry->valijson_doc, "", 0, [](json& node, const std::string&) {
      node.erase("format");
      return Status::Ok();
    });
    if (!s.ok()) {
      return Internal("schema " + path + ": " + s.message());
    }
  }
  const auto fetch = [&v](const std::string& uri) -> const json* {
    if (!uri.starts_with(kRefPrefix)) {
      return nullptr;
    }
    const Entry* e = v->Find(std::string_view(uri).substr(kRefPrefix.size()));
    return e ? &e->valijson_doc : nullptr;
  };
  const auto free_doc = [](const json*) {};
  for (auto& [path, entry] : v->entries_) {
    try {
      valijson::SchemaParser parser(valijson::SchemaParser::kDraft7);
      valijson::adapters::NlohmannJsonAdapter adapter(entry->valijson_doc);
      entry->schema = std::make_unique<valijson::Schema>();
      parser.populateSchema(adapter, *entry->schema, fetch, free_doc);
    } catch (const std::exception& e) {
      return Internal("schema " + path + ": valijson: " + e.what());
    }
  }
  return v;
}

const SchemaValidator::Entry* SchemaValidator::Find(std::string_view schema_path) const {
  auto it = entries_.find(schema_path);
  return it == entries_.end() ? nullptr : it->second.get();
}

Status SchemaValidator::Validate(std::string_view schema_path, const json& doc) const {
  const Entry* entry = Find(schema_path);
  if (entry == nullptr) {
    return Internal("unknown schema " + std::string(schema_path));
  }
  std::string pointer;
  OTD_RETURN_IF_ERROR(
      Walker(Walker::Mode::kStrings, refs_->refs).Walk(doc, {&entry->doc}, pointer, 0));
  try {
    std::unique_ptr<valijson::Validator> validator = Borrow();
    valijson::ValidationResults results;
    valijson::adapters::NlohmannJsonAdapter target(doc);
    const bool valid = validator->validate(*entry->schema, target, &results);
    Return(std::move(validator));
    if (valid) {
      return Status::Ok();
    }
    valijson::ValidationResults::Error first;
    if (!results.popError(first)) {
      return InvalidArgument("/: invalid value");
    }
    return FromValijsonError(first);
  } catch (const std::exception&) {
    // A validator that threw mid-way is dropped, not returned to the pool.
    return Internal("schema validation failed");
  }
}

std::unique_ptr<valijson::Validator> SchemaValidator::Borrow() const {
  {
    std::lock_guard lock(pool_mu_);
    if (!pool_.empty()) {
      auto v = std::move(pool_.back());
      pool_.pop_back();
      return v;
    }
  }
  return std::make_unique<valijson::Validator>(valijson::Validator::kStrongTypes);
}

void SchemaValidator::Return(std::unique_ptr<valijson::Validator> v) const {
  // Bounded: more idle validators than this only after a burst; let them go.
  constexpr size_t kMaxIdleValidators = 32;
  std::lock_guard lock(pool_mu_);
  if (pool_.size() < kMaxIdleValidators) {
    pool_.push_back(std::move(v));
  }
}

Status RejectUnknownFields(const json& doc, std::string_view schema_path,
                           const SchemaValidator& validator) {
  const SchemaValidator::Entry* entry = validator.Find(schema_path);
  if (entry == nullptr) {
    return Internal("unknown schema " + std::string(schema_path));
  }
  std::string pointer;
  return Walker(Walker::Mode::kUnknownFields, validator.refs_->refs)
      .Walk(doc, {&entry->doc}, pointer, 0);
}

Result<json> ParseAndValidate(std::string_view body, std::string_view schema_path,
                              const SchemaValidator& validator, const JsonLimits& limits) {
  OTD_ASSIGN_OR_RETURN(json doc, ParseStrictJson(body, limits));
  Status s = validator.Validate(schema_path, doc);
  if (s.ok()) {
    s = RejectUnknownFields(doc, schema_path, validator);
  }
  if (!s.ok()) {
    WipeStrings(doc);
    return s;
  }
  return doc;
}

}  // namespace otd::api
