#include "store/internal/ttl_keys.h"

namespace otd::store::internal {

namespace {

void AppendU64(Bytes& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<uint8_t>(v >> shift));
  }
}

void AppendTableAndKey(Bytes& out, std::string_view table, ByteView key) {
  out.push_back(static_cast<uint8_t>(table.size()));
  out.insert(out.end(), table.begin(), table.end());
  out.insert(out.end(), key.begin(), key.end());
}

}  // namespace

Bytes EncodeTtlRevKey(std::string_view table, ByteView key) {
  Bytes out;
  out.reserve(TtlRevKeySize(table, key.size()));
  AppendTableAndKey(out, table, key);
  return out;
}

Bytes EncodeTtlKey(uint64_t expires_at, std::string_view table, ByteView key) {
  Bytes out;
  out.reserve(TtlKeySize(table, key.size()));
  AppendU64(out, expires_at);
  AppendTableAndKey(out, table, key);
  return out;
}

Bytes EncodeU64(uint64_t v) {
  Bytes out;
  out.reserve(8);
  AppendU64(out, v);
  return out;
}

std::optional<uint64_t> DecodeU64(ByteView raw) {
  if (raw.size() != 8) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (uint8_t b : raw) {
    v = (v << 8) | b;
  }
  return v;
}

std::optional<TtlEntry> DecodeTtlKey(ByteView raw) {
  if (raw.size() < 9) {
    return std::nullopt;
  }
  TtlEntry e;
  e.expires_at = *DecodeU64(raw.first(8));
  size_t table_len = raw[8];
  if (raw.size() < 9 + table_len + 1) {  // keys are never empty
    return std::nullopt;
  }
  e.table = AsString(raw.subspan(9, table_len));
  e.key = raw.subspan(9 + table_len);
  return e;
}

}  // namespace otd::store::internal
