#pragma once
// The client behind a reverse proxy (issue 18 part 6): listen.trusted_proxies and the
// X-Forwarded-For / Forwarded (RFC 7239) headers.
//
// Contract:
//   - Nothing is trusted by default. A TrustedProxies holds CIDRs (IPv4 and IPv6, a bare address
//     is /32 or /128) for TCP/TLS peers, and for Unix-socket peers "unix" (every peer of the
//     socket) or "uid:<n>" (a peer whose SO_PEERCRED uid is n).
//   - Only when the connection's own peer is trusted are the forwarding headers read at all; from
//     any other peer they are ignored, so a client cannot pick its own address.
//   - One header is read, the one the operator names (listen.forwarded_header); the other is
//     ignored entirely. A proxy that appends to one header passes a client's copy of the other
//     through unchanged, so any "prefer X when both are present" rule would let a client spoof
//     behind a proxy of the other kind.
//   - Every line of that header counts, in order (as if joined with commas). The list is walked
//     from the right (the nearest hop) skipping trusted proxies; the first untrusted address is
//     the client. An element that is no address (garbage, "unknown", an obfuscated "_hidden", a
//     Forwarded element without for=) stops the walk: the client is then the hop that wrote it
//     (the last trusted address, or the connection's peer). So a malformed value never yields an
//     error or a fresh identity, only the proxy's own one. All hops trusted: the leftmost.
//   - At most kMaxForwardedElements elements (the rightmost) are kept; the header itself is
//     bounded by limits.max_header_bytes.
//
// Identities are the strings the per-client limits and the audit lines use: "ip:<address>"
// (IPv4-mapped IPv6 as IPv4) and "uid:<n>". Connection caps (limits.max_connections_per_peer)
// are decided at accept time, before any header: they keep counting the connection's own peer
// (the proxy), by api/connection_table.h's PeerKeyOf.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "common/status.h"

namespace otd::api {

inline constexpr size_t kMaxForwardedElements = 64;

enum class ForwardedHeader { kXForwardedFor, kForwarded };

// "x-forwarded-for" / "forwarded" (config values); nullopt for anything else.
std::optional<ForwardedHeader> ForwardedHeaderFromName(std::string_view name);
// The HTTP field name: "X-Forwarded-For" / "Forwarded".
std::string_view FieldNameOf(ForwardedHeader h);

class TrustedProxies {
 public:
  // kInvalidArgument naming the first bad entry ("entry 2 (\"10.0.0.0/33\"): ..."); the caller
  // prefixes the config key. Duplicates are refused too.
  static Result<TrustedProxies> Parse(const std::vector<std::string>& entries);

  bool empty() const { return nets_.empty() && uids_.empty() && !any_unix_; }
  // A TCP/TLS peer or a forwarded hop.
  bool Trusts(const boost::asio::ip::address& a) const;
  // A Unix-socket peer (its SO_PEERCRED uid; nullopt when unknown: trusted only by "unix").
  bool TrustsUnixPeer(std::optional<uint32_t> uid) const;

 private:
  struct Net {
    std::array<uint8_t, 16> bytes{};  // IPv4 as IPv4-mapped IPv6
    unsigned prefix = 0;              // over the 128 bits
  };
  std::vector<Net> nets_;
  std::vector<uint32_t> uids_;
  bool any_unix_ = false;
};

// The connection's own peer, as known at accept time.
struct ConnectionPeer {
  std::optional<boost::asio::ip::address> address;  // TCP/TLS
  std::optional<uint32_t> uid;                      // Unix socket
  bool unix_socket = false;
};

// "ip:<address>" (IPv4-mapped as IPv4); the one spelling of an address identity.
std::string PeerIdOf(const boost::asio::ip::address& a);
// "uid:<n>" / "ip:<address>", or "uid:unknown" / "ip:unknown".
std::string PeerIdOf(const ConnectionPeer& p);

// The key per-client limits count for a client identity (PeerIdOf/ClientIdOf spelling): an IPv6
// address ("ip:2001:db8:1:2::5") becomes its /64 ("ip:2001:db8:1:2::/64", as PeerKeyOf), since a
// single host commonly holds a whole /64; anything else is returned unchanged.
std::string LimitKeyOf(std::string_view peer_id);

// One element per list member, left (client side) to right (nearest hop); nullopt for an element
// that is no address. Empty list members are skipped (RFC 9110 §5.6.1). Accepted address forms:
// "192.0.2.1", "192.0.2.1:4711", "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:4711"; a port
// may be obfuscated ("_p1"). Zone ids ("%eth0") are refused.
using ForwardedChain = std::vector<std::optional<boost::asio::ip::address>>;
ForwardedChain ParseXForwardedFor(const std::vector<std::string_view>& lines);
// RFC 7239: elements separated by commas, pairs by semicolons, values tokens or quoted strings
// (commas and semicolons inside quotes are data). The for= parameter of each element; an element
// with none, two, or a malformed one is nullopt.
ForwardedChain ParseForwarded(const std::vector<std::string_view>& lines);

// The identity per-client limits and audit lines use for one request (see the contract above).
// `lines`: every value of the configured header, in order.
std::string ClientIdOf(const ConnectionPeer& peer, const TrustedProxies& trusted,
                       ForwardedHeader header, const std::vector<std::string_view>& lines);

}  // namespace otd::api
