// fuzz_ot1: OT1 signed-request parsing (api/ot1.h).
//
// Input: fields separated by NUL bytes:
//   authorization \0 method \0 target \0 x-opentoken-date \0 body [\0 name:value]...
// Properties checked (abort on violation):
//  * ParseAuthorization accepts only what its grammar allows (access code charset/length,
//    32-byte signature, unique lower-case token header names including the mandatory three), and
//    re-serialising an accepted header parses to the same value;
//  * CanonicalContent (with the parsed Authorization, or one naming the input's header fields)
//    equals an independent re-implementation of the documented canonical form;
//  * ParseOt1Date accepts only RFC 3339 date-times (optional fraction, Z or +hh:mm/-hh:mm) whose
//    date and time, moved by the offset, gmtime formats back to the same 19 bytes;
//  * CheckDateWindow never overflows (UBSan) and agrees with 128-bit arithmetic.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/ot1.h"

namespace ot1 = otd::api::ot1;

namespace {

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_ot1: property violated: %s\n", what);
    std::abort();
  }
}

std::vector<std::string_view> Split(std::string_view in, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    size_t p = in.find(sep);
    out.push_back(in.substr(0, p));
    if (p == std::string_view::npos) {
      return out;
    }
    in.remove_prefix(p + 1);
  }
}

bool IsOws(char c) { return c == ' ' || c == '\t'; }
std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsOws(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back()))
    s.remove_suffix(1);
  return s;
}
std::string Lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) {
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  }
  return o;
}

std::string Hex(const otd::Bytes& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) {
    s += d[x >> 4];
    s += d[x & 15];
  }
  return s;
}

void CheckAuthorization(const ot1::Authorization& a) {
  Require(!a.access_code.empty() && a.access_code.size() <= ot1::kMaxAccessCodeBytes,
          "access code length");
  for (char c : a.access_code) {
    Require((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_',
            "access code charset");
  }
  Require(a.signature.size() == ot1::kSignatureBytes, "signature length");
  std::set<std::string> seen;
  for (const auto& h : a.signed_headers) {
    Require(!h.empty() && Lower(h) == h, "signed header not lower-case");
    for (char c : h) {
      Require(static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f &&
                  std::string_view("\"(),/:;<=>?@[\\]{}").find(c) == std::string_view::npos,
              "signed header not a token");
    }
    Require(seen.insert(h).second, "duplicate signed header");
  }
  for (auto m : ot1::kMandatorySignedHeaders) {
    Require(seen.count(std::string(m)) == 1, "mandatory signed header missing");
  }
}

// The documented canonical form, written independently of api/ot1.cc.
std::optional<std::string> Reference(const ot1::Authorization& a, const ot1::RequestView& r) {
  std::string out(r.method);
  out += '\n';
  size_t q = r.target.find('?');
  out += r.target.substr(0, q);
  out += '\n';
  if (q != std::string_view::npos)
    out += r.target.substr(q + 1);
  out += '\n';
  for (const auto& name : a.signed_headers) {
    int count = 0;
    std::string_view value;
    for (const auto& [n, v] : r.headers) {
      if (Lower(Trim(n)) == name) {
        ++count;
        value = v;
      }
    }
    if (count != 1)
      return std::nullopt;
    std::string v(Trim(value));
    if (name == "host")
      v = Lower(v);
    out += name;
    out += ':';
    out += v;
    out += '\n';
  }
  out += '\n';
  out += r.body;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto parts = Split(in, '\0');
  while (parts.size() < 5)
    parts.emplace_back();
  std::string_view auth_value = parts[0];

  // --- ParseAuthorization -----------------------------------------------------------------
  auto parsed = ot1::ParseAuthorization(auth_value);
  ot1::Authorization auth;
  if (parsed.ok()) {
    Require(auth_value.size() <= ot1::kMaxAuthorizationBytes, "over-long header accepted");
    for (char c : auth_value) {
      auto u = static_cast<unsigned char>(c);
      Require(u == '\t' || (u >= 0x20 && u != 0x7f), "control character accepted");
    }
    CheckAuthorization(*parsed);
    std::string again =
        std::string(ot1::kScheme) + "; access-code=" + parsed->access_code + "; signed-headers=";
    for (size_t i = 0; i < parsed->signed_headers.size(); ++i) {
      again += (i ? " " : "") + parsed->signed_headers[i];
    }
    again += "; signature=" + Hex(parsed->signature);
    if (again.size() <= ot1::kMaxAuthorizationBytes) {
      auto reparsed = ot1::ParseAuthorization(again);
      Require(reparsed.ok(), "re-serialised header rejected");
      Require(reparsed->access_code == parsed->access_code &&
                  reparsed->signed_headers == parsed->signed_headers &&
                  reparsed->signature == parsed->signature,
              "re-serialised header parses differently");
    }
    auth = std::move(*parsed);
  } else {
    // Still exercise the canonicaliser: sign every header the input names (lower-cased).
    for (size_t i = 5; i < parts.size(); ++i) {
      std::string_view n = parts[i].substr(0, parts[i].find(':'));
      auth.signed_headers.push_back(Lower(Trim(n)));
    }
  }

  // --- CanonicalContent ---------------------------------------------------------------------
  ot1::RequestView req;
  req.method = parts[1];
  req.target = parts[2];
  req.body = parts[4];
  std::vector<std::string> storage;
  for (size_t i = 5; i < parts.size(); ++i) {
    size_t colon = parts[i].find(':');
    req.headers.emplace_back(parts[i].substr(0, colon), colon == std::string_view::npos
                                                            ? std::string_view()
                                                            : parts[i].substr(colon + 1));
  }
  auto content = ot1::CanonicalContent(auth, req);
  if (content.ok()) {
    auto ref = Reference(auth, req);
    Require(ref.has_value(), "canonical content built where a signed header is missing/repeated");
    Require(content->RevealString(otd::SecretAccess::Grant()) == *ref,
            "canonical content differs from the reference");
    Require(!req.target.empty() && req.target.front() == '/', "non-origin-form target accepted");
    // No signed value may smuggle a line break into the signed content.
    std::string_view s = content->RevealString(otd::SecretAccess::Grant());
    std::string_view head = s.substr(0, s.size() - req.body.size());
    Require(static_cast<size_t>(std::count(head.begin(), head.end(), '\n')) ==
                3 + auth.signed_headers.size() + 1,
            "canonical header part has an unexpected number of lines");
  }

  // --- ParseOt1Date / CheckDateWindow -----------------------------------------------------------
  auto date = ot1::ParseOt1Date(parts[3]);
  if (date.ok()) {
    const std::string_view text = parts[3];
    Require(text.size() >= 20 && text.size() <= ot1::kMaxDateBytes, "date length");
    // The zone: Z/z, or +hh:mm/-hh:mm at the end; between it and the seconds, "" or "." digits.
    int64_t offset = 0;
    size_t zone = text.size() - 1;
    if (text.back() != 'Z' && text.back() != 'z') {
      Require(text.size() >= 25, "offset date too short");
      zone = text.size() - 6;
      const char sign = text[zone];
      Require((sign == '+' || sign == '-') && text[zone + 3] == ':', "offset form");
      const int h = (text[zone + 1] - '0') * 10 + (text[zone + 2] - '0');
      const int m = (text[zone + 4] - '0') * 10 + (text[zone + 5] - '0');
      offset = (sign == '+' ? 1 : -1) * (h * 3600 + m * 60);
    }
    const std::string_view fraction = text.substr(19, zone - 19);
    Require(fraction.empty() || (fraction.size() >= 2 && fraction[0] == '.' &&
                                 std::all_of(fraction.begin() + 1, fraction.end(),
                                             [](char c) { return c >= '0' && c <= '9'; })),
            "fraction form");
    time_t t = static_cast<time_t>(*date + offset);
    struct tm tm {};
    Require(gmtime_r(&t, &tm) != nullptr, "gmtime failed");
    char buf[32];
    int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                          tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    std::string expected(text.substr(0, 19));
    if (expected[10] == 't') {
      expected[10] = 'T';
    }
    if (expected.compare(17, 2, "60") == 0) {  // a leap second counts as :59
      expected.replace(17, 2, "59");
    }
    Require(n == 19 && std::string_view(buf, 19) == expected,
            "date does not round-trip through gmtime");
  }
  if (in.size() >= 24) {
    int64_t v[3];
    std::memcpy(v, data, sizeof v);
    int64_t d = date.ok() ? *date : v[0];
    bool ok = ot1::CheckDateWindow(d, v[1], v[2] & 0xffff, (v[2] >> 16) & 0xffff).ok();
    __int128 diff = static_cast<__int128>(d) - v[1];
    bool expect = diff >= -static_cast<__int128>(v[2] & 0xffff) &&
                  diff <= static_cast<__int128>((v[2] >> 16) & 0xffff);
    Require(ok == expect, "CheckDateWindow disagrees with 128-bit arithmetic");
  }
  return 0;
}
