#include "api/forwarded.h"

#include <algorithm>
#include <charconv>

#include "api/connection_table.h"
#include "common/ascii.h"

namespace otd::api {

namespace ip = boost::asio::ip;

namespace {

constexpr std::string_view kWhitespace = " \t";

std::string_view Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(kWhitespace);
  if (b == std::string_view::npos) {
    return {};
  }
  const size_t e = s.find_last_not_of(kWhitespace);
  return s.substr(b, e - b + 1);
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Unsigned decimal without sign or leading '+', at most `max`.
std::optional<uint64_t> Decimal(std::string_view s, uint64_t max) {
  if (!AllDigits(s) || s.size() > 10) {
    return std::nullopt;
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v > max) {
    return std::nullopt;
  }
  return v;
}

// An address without zone id; IPv4-mapped IPv6 becomes IPv4.
std::optional<ip::address> Address(std::string_view s, bool v6_only) {
  if (s.empty() || s.size() > 64 || s.find('%') != std::string_view::npos) {
    return std::nullopt;
  }
  boost::system::error_code ec;
  ip::address a = ip::make_address(std::string(s), ec);
  if (ec || (v6_only && !a.is_v6())) {
    return std::nullopt;
  }
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return ip::address(ip::make_address_v4(ip::v4_mapped, a.to_v6()));
  }
  return a;
}

// RFC 7239 §6: a port number or an obfuscated port ("_" then ALPHA / DIGIT / "." / "_" / "-").
bool IsPort(std::string_view s) {
  if (!s.empty() && s[0] == '_') {
    return s.size() > 1 && std::all_of(s.begin() + 1, s.end(), [](char c) {
             return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
           });
  }
  return s.size() <= 5 && Decimal(s, 65535).has_value();
}

// A node: "192.0.2.1", "192.0.2.1:80", "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:80".
std::optional<ip::address> Node(std::string_view s) {
  if (s.empty()) {
    return std::nullopt;
  }
  if (s[0] == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty() && (rest[0] != ':' || !IsPort(rest.substr(1)))) {
      return std::nullopt;
    }
    return Address(s.substr(1, close - 1), /*v6_only=*/true);
  }
  const size_t colons = static_cast<size_t>(std::count(s.begin(), s.end(), ':'));
  if (colons == 1) {
    const size_t c = s.find(':');
    if (!IsPort(s.substr(c + 1))) {
      return std::nullopt;
    }
    auto a = Address(s.substr(0, c), false);
    if (!a || !a->is_v4()) {
      return std::nullopt;
    }
    return a;
  }
  return Address(s, false);
}

// Splits at `delim` outside double quotes (a backslash inside quotes escapes the next byte).
std::vector<std::string_view> SplitOutsideQuotes(std::string_view s, char delim) {
  std::vector<std::string_view> out;
  bool quoted = false;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == delim) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  out.push_back(s.substr(std::min(start, s.size())));
  return out;
}

// A token or a complete quoted-string, unquoted; nullopt when malformed.
std::optional<std::string> Value(std::string_view v) {
  if (v.empty()) {
    return std::nullopt;
  }
  if (v[0] != '"') {
    if (v.find_first_of("\"\\ \t") != std::string_view::npos) {
      return std::nullopt;
    }
    return std::string(v);
  }
  std::string out;
  for (size_t i = 1; i < v.size(); ++i) {
    if (v[i] == '\\') {
      if (++i >= v.size()) {
        return std::nullopt;
      }
      out.push_back(v[i]);
    } else if (v[i] == '"') {
      return i + 1 == v.size() ? std::optional<std::string>(std::move(out)) : std::nullopt;
    } else {
      out.push_back(v[i]);
    }
  }
  return std::nullopt;  // unterminated
}

// The for= node of one Forwarded element.
std::optional<ip::address> ForwardedElement(std::string_view element) {
  std::optional<ip::address> node;
  int fors = 0;
  for (std::string_view pair : SplitOutsideQuotes(element, ';')) {
    pair = Trim(pair);
    if (pair.empty()) {
      continue;
    }
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return std::nullopt;
    }
    if (!AsciiEqualsIgnoreCase(pair.substr(0, eq), "for")) {
      continue;
    }
    if (++fors > 1) {
      return std::nullopt;
    }
    auto value = Value(pair.substr(eq + 1));
    if (!value) {
      return std::nullopt;
    }
    node = Node(*value);
  }
  return node;
}

void KeepRightmost(ForwardedChain& chain) {
  if (chain.size() > kMaxForwardedElements) {
    chain.erase(chain.begin(), chain.end() - static_cast<ptrdiff_t>(kMaxForwardedElements));
  }
}

std::array<uint8_t, 16> Bytes16(const ip::address& a) {
  if (a.is_v4()) {
    return ip::make_address_v6(ip::v4_mapped, a.to_v4()).to_bytes();
  }
  return a.to_v6().to_bytes();
}

bool PrefixMatches(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& net,
                   unsigned prefix) {
  unsigned full = prefix / 8;
  if (!std::equal(a.begin(), a.begin() + full, net.begin())) {
    return false;
  }
  const unsigned bits = prefix % 8;
  if (bits == 0) {
    return true;
  }
  const uint8_t mask = static_cast<uint8_t>(0xFF << (8 - bits));
  return (a[full] & mask) == (net[full] & mask);
}

}  // namespace

std::optional<ForwardedHeader> ForwardedHeaderFromName(std::string_view name) {
  if (name == "x-forwarded-for") {
    return ForwardedHeader::kXForwardedFor;
  }
  if (name == "forwarded") {
    return ForwardedHeader::kForwarded;
  }
  return std::nullopt;
}

std::string_view FieldNameOf(ForwardedHeader h) {
  return h == ForwardedHeader::kForwarded ? "Forwarded" : "X-Forwarded-For";
}

Result<TrustedProxies> TrustedProxies::Parse(const std::vector<std::string>& entries) {
  TrustedProxies t;
  std::vector<std::string_view> seen;
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string& e = entries[i];
    auto bad = [&](std::string_view why) {
      return InvalidArgument("entry " + std::to_string(i) + " (\"" + e.substr(0, 64) +
                             "\"): " + std::string(why));
    };
    if (std::find(seen.begin(), seen.end(), e) != seen.end()) {
      return bad("listed twice");
    }
    seen.push_back(e);
    if (e == "unix") {
      t.any_unix_ = true;
      continue;
    }
    if (e.rfind("uid:", 0) == 0) {
      auto uid = Decimal(std::string_view(e).substr(4), 0xFFFFFFFEu);
      if (!uid) {
        return bad("a uid must be a decimal number (uid:33)");
      }
      t.uids_.push_back(static_cast<uint32_t>(*uid));
      continue;
    }
    const size_t slash = e.find('/');
    std::string_view addr_text = std::string_view(e).substr(0, slash);
    auto a = Address(addr_text, false);
    // Address() turns IPv4-mapped into IPv4; a CIDR must be written as what it means.
    if (!a || (a->is_v4() && addr_text.find(':') != std::string_view::npos)) {
      return bad("must be \"unix\", \"uid:<n>\", or an IPv4 or IPv6 address or CIDR");
    }
    const unsigned width = a->is_v4() ? 32 : 128;
    unsigned prefix = width;
    if (slash != std::string::npos) {
      auto p = Decimal(std::string_view(e).substr(slash + 1), width);
      if (!p || e.size() - slash - 1 > 3) {
        return bad("prefix length must be 0.." + std::to_string(width));
      }
      prefix = static_cast<unsigned>(*p);
    }
    Net n{Bytes16(*a), prefix + (a->is_v4() ? 96 : 0)};
    std::array<uint8_t, 16> masked{};
    for (unsigned bit = 0; bit < n.prefix; ++bit) {
      masked[bit / 8] =
          static_cast<uint8_t>(masked[bit / 8] | (n.bytes[bit / 8] & (0x80 >> (bit % 8))));
    }
    if (masked != n.bytes) {
      return bad("has bits set after the prefix length (write the network address)");
    }
    t.nets_.push_back(n);
  }
  return t;
}

bool TrustedProxies::Trusts(const ip::address& a) const {
  const auto b = Bytes16(a);
  return std::any_of(nets_.begin(), nets_.end(),
                     [&](const Net& n) { return PrefixMatches(b, n.bytes, n.prefix); });
}

bool TrustedProxies::TrustsUnixPeer(std::optional<uint32_t> uid) const {
  return any_unix_ || (uid && std::find(uids_.begin(), uids_.end(), *uid) != uids_.end());
}

std::string PeerIdOf(const ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return "ip:" + ip::make_address_v4(ip::v4_mapped, a.to_v6()).to_string();
  }
  return "ip:" + a.to_string();
}

std::string LimitKeyOf(std::string_view peer_id) {
  if (!peer_id.starts_with("ip:")) {
    return std::string(peer_id);
  }
  boost::system::error_code ec;
  const auto a = boost::asio::ip::make_address(std::string(peer_id.substr(3)), ec);
  if (ec || !a.is_v6()) {
    return std::string(peer_id);
  }
  return PeerKeyOf(a);
}

std::string PeerIdOf(const ConnectionPeer& p) {
  if (p.unix_socket) {
    return p.uid ? "uid:" + std::to_string(*p.uid) : "uid:unknown";
  }
  return p.address ? PeerIdOf(*p.address) : "ip:unknown";
}

ForwardedChain ParseXForwardedFor(const std::vector<std::string_view>& lines) {
  ForwardedChain chain;
  for (std::string_view line : lines) {
    size_t start = 0;
    while (start <= line.size()) {
      size_t comma = line.find(',', start);
      if (comma == std::string_view::npos) {
        comma = line.size();
      }
      std::string_view member = Trim(line.substr(start, comma - start));
      if (!member.empty()) {
        chain.push_back(Node(member));
      }
      start = comma + 1;
    }
    KeepRightmost(chain);
  }
  return chain;
}

ForwardedChain ParseForwarded(const std::vector<std::string_view>& lines) {
  ForwardedChain chain;
  for (std::string_view line : lines) {
    for (std::string_view element : SplitOutsideQuotes(line, ',')) {
      element = Trim(element);
      if (!element.empty()) {
        chain.push_back(ForwardedElement(element));
      }
    }
    KeepRightmost(chain);
  }
  return chain;
}

std::string ClientIdOf(const ConnectionPeer& peer, const TrustedProxies& trusted,
                       ForwardedHeader header, const std::vector<std::string_view>& lines) {
  std::string hop = PeerIdOf(peer);
  const bool peer_trusted = peer.unix_socket ? trusted.TrustsUnixPeer(peer.uid)
                                             : peer.address && trusted.Trusts(*peer.address);
  if (!peer_trusted || lines.empty()) {
    return hop;
  }
  const ForwardedChain chain =
      header == ForwardedHeader::kForwarded ? ParseForwarded(lines) : ParseXForwardedFor(lines);
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    if (!it->has_value()) {
      return hop;  // no address: the hop that wrote it answers for it
    }
    if (!trusted.Trusts(**it)) {
      return PeerIdOf(**it);
    }
    hop = PeerIdOf(**it);
  }
  return hop;
}

}  // namespace otd::api
