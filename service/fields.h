#pragma once
// A tiny tag-length-value codec for the plaintext inside sealed records, so that secret fields
// (e-mail, password hash, TOTP seed) go from SecretBytes into the record and back without ever
// passing through std::string or JSON.
//
//   field := tag u8 | length u32 (big-endian) | bytes
//
// Tags are per record type; a tag appears at most once. Unknown tags are kept (forward
// compatibility) but readers only look up what they know.

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"

namespace otd::service {

class FieldWriter {
 public:
  // The referenced bytes must stay alive until Finish().
  FieldWriter& Add(uint8_t tag, ByteView bytes);
  FieldWriter& Add(uint8_t tag, std::string_view text) { return Add(tag, AsBytes(text)); }
  FieldWriter& AddSecret(uint8_t tag, const SecretBytes& s) {
    return Add(tag, s.Reveal(SecretAccess::Grant()));
  }
  FieldWriter& AddU64(uint8_t tag, uint64_t v);
  SecretBytes Finish() const;

 private:
  std::vector<std::pair<uint8_t, ByteView>> fields_;
  std::deque<std::array<uint8_t, 8>> numbers_;  // storage for AddU64 (deque: stable addresses)
};

class FieldReader {
 public:
  // Parses; kDataLoss on malformed input or a repeated tag. Views point into `record`, which
  // must outlive the reader.
  static Result<FieldReader> Parse(const SecretBytes& record);

  bool Has(uint8_t tag) const;
  Result<SecretBytes> Secret(uint8_t tag) const;
  Result<std::string> Text(uint8_t tag) const;  // for non-secret fields only
  Result<uint64_t> U64(uint8_t tag) const;

 private:
  std::optional<ByteView> Find(uint8_t tag) const;
  std::vector<std::pair<uint8_t, ByteView>> fields_;
};

}  // namespace otd::service
