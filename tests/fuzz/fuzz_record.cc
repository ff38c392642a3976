// fuzz_record: the store value codecs (service/record.h) and the plaintext field codec
// (service/fields.h). Style-and-safety B.4 targets 3/4 (envelope and record decode).
//
// Input: first byte picks the decoder, the rest is the value.
// Properties checked (abort on violation):
//  * DecodeSealed / DecodeWrappedKey: when decode succeeds, encode(decode(x)) == x; the decoded
//    values respect the documented invariants (format byte, version != 0, lengths);
//  * FieldReader::Parse agrees with an independent reference parser (same tags, same bytes,
//    repeated tag or truncation rejected), and re-encoding the fields in input order with
//    FieldWriter gives x back;
//  * FieldReader::U64 round-trips through FieldWriter::AddU64;
//  * SealedAssociatedData is unambiguous: the three fields can be read back from it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "service/fields.h"
#include "service/record.h"

namespace svc = otd::service;
using otd::Bytes;
using otd::ByteView;

namespace {

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_record: property violated: %s\n", what);
    std::abort();
  }
}

bool Same(ByteView a, ByteView b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

std::optional<std::vector<std::pair<uint8_t, ByteView>>> ReferenceFields(ByteView b) {
  std::vector<std::pair<uint8_t, ByteView>> out;
  bool seen[256] = {};
  size_t at = 0;
  while (at < b.size()) {
    if (b.size() - at < 5)
      return std::nullopt;
    uint8_t tag = b[at];
    uint64_t n = (uint64_t{b[at + 1]} << 24) | (uint64_t{b[at + 2]} << 16) |
                 (uint64_t{b[at + 3]} << 8) | uint64_t{b[at + 4]};
    at += 5;
    if (n > b.size() - at || seen[tag])
      return std::nullopt;
    seen[tag] = true;
    out.emplace_back(tag, b.subspan(at, static_cast<size_t>(n)));
    at += static_cast<size_t>(n);
  }
  return out;
}

void Sealed(ByteView in) {
  auto r = svc::DecodeSealed(in);
  if (!r.ok()) {
    Require(r.status().code() == otd::Code::kDataLoss, "DecodeSealed error is not kDataLoss");
    return;
  }
  Require(in[0] == svc::kFormatSealed, "sealed: wrong format byte accepted");
  Require(r->key_version != 0, "sealed: key version 0 accepted");
  Require(r->ciphertext_and_tag.size() >= svc::kTagBytes, "sealed: no room for the tag");
  Require(Same(svc::EncodeSealed(*r), in), "sealed: encode(decode(x)) != x");
  // Decoding must never accept a wrapped-key value and vice versa.
  Require(!svc::DecodeWrappedKey(in).ok(), "a sealed record also decodes as a wrapped key");
}

void Wrapped(ByteView in) {
  auto r = svc::DecodeWrappedKey(in);
  if (!r.ok()) {
    Require(r.status().code() == otd::Code::kDataLoss, "DecodeWrappedKey error is not kDataLoss");
    return;
  }
  Require(in[0] == svc::kFormatWrappedKey, "wrapped: wrong format byte accepted");
  Require(r->kek_version != 0, "wrapped: KEK version 0 accepted");
  Require(r->wrapped.size() >= 16 && r->wrapped.size() % 8 == 0, "wrapped: impossible length");
  Require(Same(svc::EncodeWrappedKey(*r), in), "wrapped: encode(decode(x)) != x");
  Require(!svc::DecodeSealed(in).ok(), "a wrapped key also decodes as a sealed record");
}

void Fields(ByteView in) {
  otd::SecretBytes record = otd::SecretBytes::CopyFrom(in);
  auto parsed = svc::FieldReader::Parse(record);
  auto ref = ReferenceFields(in);
  Require(parsed.ok() == ref.has_value(), "FieldReader disagrees with the reference parser");
  if (!parsed.ok()) {
    Require(parsed.status().code() == otd::Code::kDataLoss, "FieldReader error is not kDataLoss");
    return;
  }
  svc::FieldWriter w;
  std::vector<otd::SecretBytes> keep;
  bool present[256] = {};
  for (const auto& [tag, bytes] : *ref) {
    present[tag] = true;
    Require(parsed->Has(tag), "FieldReader lost a tag");
    auto s = parsed->Secret(tag);
    Require(s.ok() && Same(s->Reveal(otd::SecretAccess::Grant()), bytes),
            "FieldReader returns other bytes for a tag");
    auto t = parsed->Text(tag);
    Require(t.ok() && Same(otd::AsBytes(*t), bytes), "FieldReader::Text differs");
    auto u = parsed->U64(tag);
    Require(u.ok() == (bytes.size() == 8), "FieldReader::U64 accepts a non-8-byte field");
    if (u.ok()) {
      svc::FieldWriter one;
      one.AddU64(tag, *u);
      otd::SecretBytes enc = one.Finish();
      ByteView e = enc.Reveal(otd::SecretAccess::Grant());
      Require(e.size() == 13 && Same(e.subspan(5), bytes), "U64 does not round-trip");
    }
    keep.push_back(std::move(*s));
    w.AddSecret(tag, keep.back());
  }
  for (int tag = 0; tag < 256; ++tag) {
    if (!present[tag]) {
      Require(!parsed->Has(static_cast<uint8_t>(tag)), "FieldReader invents a tag");
      Require(!parsed->Secret(static_cast<uint8_t>(tag)).ok(), "Secret() of a missing tag");
    }
  }
  otd::SecretBytes again = w.Finish();
  Require(Same(again.Reveal(otd::SecretAccess::Grant()), in), "fields: encode(decode(x)) != x");
}

void Aad(ByteView in) {
  if (in.size() < 6)
    return;
  uint32_t version =
      (uint32_t{in[0]} << 24) | (uint32_t{in[1]} << 16) | (uint32_t{in[2]} << 8) | in[3];
  size_t a = in[4] % (in.size() - 5 + 1);
  size_t b = in[5] % (in.size() - 6 + 1);
  std::string_view rest(reinterpret_cast<const char*>(in.data()) + 6, in.size() - 6);
  a = std::min(a, rest.size());
  b = std::min(b, rest.size() - a);
  std::string_view table = rest.substr(0, a), account = rest.substr(a, b), id = rest.substr(a + b);
  Bytes aad = svc::SealedAssociatedData(table, account, id, version);
  // Read it back: "otd-aad-v1" | u16 | table | u16 | account | u16 | id | 0x01 | u32.
  size_t at = 10;
  Require(aad.size() >= at &&
              std::string_view(reinterpret_cast<const char*>(aad.data()), 10) == "otd-aad-v1",
          "AAD domain");
  for (std::string_view want : {table, account, id}) {
    Require(aad.size() - at >= 2, "AAD truncated");
    size_t n = (size_t{aad[at]} << 8) | aad[at + 1];
    at += 2;
    Require(n == want.size() && aad.size() - at >= n &&
                std::string_view(reinterpret_cast<const char*>(aad.data()) + at, n) == want,
            "AAD field does not read back");
    at += n;
  }
  Require(aad.size() - at == 5 && aad[at] == svc::kFormatSealed, "AAD trailer");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  ByteView in(data + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      Sealed(in);
      Wrapped(in);
      break;
    case 1:
      Wrapped(in);
      Sealed(in);
      break;
    case 2: Fields(in); break;
    default: Aad(in); break;
  }
  return 0;
}
