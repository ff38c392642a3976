#pragma once
// Plain (non-secret) byte strings: ciphertext, wrapped keys, keyed hashes, nonces.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace otd {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

inline ByteView AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view AsString(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline Bytes ToBytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

}  // namespace otd
