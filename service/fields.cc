#include "service/fields.h"

#include <cstring>

namespace otd::service {

FieldWriter& FieldWriter::Add(uint8_t tag, ByteView bytes) {
  fields_.emplace_back(tag, bytes);
  return *this;
}

FieldWriter& FieldWriter::AddU64(uint8_t tag, uint64_t v) {
  std::array<uint8_t, 8> b{};
  for (int i = 0; i < 8; ++i) {
    b[static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (56 - 8 * i));
  }
  numbers_.push_back(b);
  return Add(tag, ByteView(numbers_.back().data(), 8));
}

SecretBytes FieldWriter::Finish() const {
  size_t total = 0;
  for (const auto& [tag, bytes] : fields_) {
    total += 5 + bytes.size();
  }
  SecretBytes out(total);
  auto dst = out.MutableReveal(SecretAccess::Grant());
  size_t at = 0;
  for (const auto& [tag, bytes] : fields_) {
    uint32_t n = static_cast<uint32_t>(bytes.size());
    dst[at++] = tag;
    dst[at++] = static_cast<uint8_t>(n >> 24);
    dst[at++] = static_cast<uint8_t>(n >> 16);
    dst[at++] = static_cast<uint8_t>(n >> 8);
    dst[at++] = static_cast<uint8_t>(n);
    if (!bytes.empty()) {
      std::memcpy(dst.data() + at, bytes.data(), bytes.size());
    }
    at += bytes.size();
  }
  return out;
}

Result<FieldReader> FieldReader::Parse(const SecretBytes& record) {
  FieldReader r;
  ByteView b = record.Reveal(SecretAccess::Grant());
  size_t at = 0;
  while (at < b.size()) {
    if (b.size() - at < 5) {
      return DataLoss("record fields are truncated");
    }
    uint8_t tag = b[at];
    uint32_t n = (uint32_t{b[at + 1]} << 24) | (uint32_t{b[at + 2]} << 16) |
                 (uint32_t{b[at + 3]} << 8) | uint32_t{b[at + 4]};
    at += 5;
    if (n > b.size() - at) {
      return DataLoss("record field length is out of range");
    }
    if (r.Has(tag)) {
      return DataLoss("record field repeated");
    }
    r.fields_.emplace_back(tag, b.subspan(at, n));
    at += n;
  }
  return r;
}

std::optional<ByteView> FieldReader::Find(uint8_t tag) const {
  for (const auto& [t, v] : fields_) {
    if (t == tag) {
      return v;
    }
  }
  return std::nullopt;
}

bool FieldReader::Has(uint8_t tag) const { return Find(tag).has_value(); }

Result<SecretBytes> FieldReader::Secret(uint8_t tag) const {
  auto v = Find(tag);
  if (!v) {
    return DataLoss("record field missing");
  }
  return SecretBytes::CopyFrom(*v);
}

Result<std::string> FieldReader::Text(uint8_t tag) const {
  auto v = Find(tag);
  if (!v) {
    return DataLoss("record field missing");
  }
  return std::string(AsString(*v));
}

Result<uint64_t> FieldReader::U64(uint8_t tag) const {
  auto v = Find(tag);
  if (!v || v->size() != 8) {
    return DataLoss("record number field missing or malformed");
  }
  uint64_t x = 0;
  for (uint8_t c : *v) {
    x = (x << 8) | c;
  }
  return x;
}

}  // namespace otd::service
