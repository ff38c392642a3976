// The client behind a reverse proxy (issue 18 part 6): trusted_proxies entries, the
// X-Forwarded-For and Forwarded parsers with hostile input, and the right-to-left walk.
#include "api/forwarded.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api/connection_table.h"

namespace otd::api {
namespace {

namespace ip = boost::asio::ip;

TrustedProxies Trusted(const std::vector<std::string>& entries) {
  auto t = TrustedProxies::Parse(entries);
  EXPECT_TRUE(t.ok()) << t.status().message();
  return t.ok() ? *t : TrustedProxies();
}

ConnectionPeer Tcp(const char* a) { return {.address = ip::make_address(a)}; }
ConnectionPeer Unix(uint32_t uid) { return {.uid = uid, .unix_socket = true}; }

std::string Xff(const ConnectionPeer& p, const TrustedProxies& t,
                const std::vector<std::string_view>& lines) {
  return ClientIdOf(p, t, ForwardedHeader::kXForwardedFor, lines);
}
std::string Fwd(const ConnectionPeer& p, const TrustedProxies& t,
                const std::vector<std::string_view>& lines) {
  return ClientIdOf(p, t, ForwardedHeader::kForwarded, lines);
}

// Addresses of a chain as strings ("-" for an element that is no address).
std::vector<std::string> Show(const ForwardedChain& c) {
  std::vector<std::string> out;
  for (const auto& a : c) {
    out.push_back(a ? a->to_string() : "-");
  }
  return out;
}

using V = std::vector<std::string>;

TEST(TrustedProxiesTest, EntriesAreStrict) {
  for (const char* good : {"unix", "uid:0", "uid:33", "10.0.0.0/8", "192.0.2.7", "0.0.0.0/0", "::1",
                           "2001:db8::/32", "::/0", "fd00::/8", "192.0.2.7/32"}) {
    EXPECT_TRUE(TrustedProxies::Parse({good}).ok()) << good;
  }
  for (const char* bad : {"",           "Unix",           "uid:",         "uid:-1",
                          "uid:abc",    "uid:4294967295", "uid: 3",       "10.0.0.0/33",
                          "10.0.0.1/8", "10.0.0.0/",      "10.0.0.0/+8",  "10.0.0/8",
                          "::/129",     "2001:db8::1/32", "fe80::1%eth0", "::ffff:10.0.0.0/104",
                          "localhost",  "10.0.0.0/8 ",    " 10.0.0.0/8",  "10.0.0.0/0008",
                          "*"}) {
    auto t = TrustedProxies::Parse({"unix", bad});
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_NE(t.status().message().find("entry 1"), std::string::npos) << t.status().message();
  }
  EXPECT_FALSE(TrustedProxies::Parse({"10.0.0.0/8", "10.0.0.0/8"}).ok());
  EXPECT_TRUE(TrustedProxies::Parse({}).ok());
  EXPECT_TRUE(TrustedProxies::Parse({}).value().empty());
}

TEST(TrustedProxiesTest, MatchesByPrefixAndUid) {
  TrustedProxies t = Trusted({"10.0.0.0/8", "2001:db8:1::/48", "192.0.2.7", "uid:33"});
  EXPECT_TRUE(t.Trusts(ip::make_address("10.255.0.1")));
  EXPECT_TRUE(t.Trusts(ip::make_address("::ffff:10.1.2.3")));  // v4-mapped is the v4 address
  EXPECT_FALSE(t.Trusts(ip::make_address("11.0.0.1")));
  EXPECT_TRUE(t.Trusts(ip::make_address("192.0.2.7")));
  EXPECT_FALSE(t.Trusts(ip::make_address("192.0.2.8")));
  EXPECT_TRUE(t.Trusts(ip::make_address("2001:db8:1:ffff::1")));
  EXPECT_FALSE(t.Trusts(ip::make_address("2001:db8:2::1")));
  EXPECT_TRUE(t.TrustsUnixPeer(33));
  EXPECT_FALSE(t.TrustsUnixPeer(34));
  EXPECT_FALSE(t.TrustsUnixPeer(std::nullopt));
  EXPECT_TRUE(Trusted({"unix"}).TrustsUnixPeer(std::nullopt));
  EXPECT_FALSE(Trusted({"unix"}).Trusts(ip::make_address("127.0.0.1")));
  EXPECT_FALSE(Trusted({"127.0.0.0/8"}).TrustsUnixPeer(0));  // a CIDR never trusts a Unix peer
  TrustedProxies odd = Trusted({"10.128.0.0/9"});
  EXPECT_TRUE(odd.Trusts(ip::make_address("10.200.0.1")));
  EXPECT_FALSE(odd.Trusts(ip::make_address("10.100.0.1")));
}

TEST(ForwardedParserTest, XForwardedForForms) {
  EXPECT_EQ(Show(ParseXForwardedFor({"192.0.2.1, 2001:db8::1 ,198.51.100.2:4711"})),
            (V{"192.0.2.1", "2001:db8::1", "198.51.100.2"}));
  EXPECT_EQ(Show(ParseXForwardedFor({"[2001:db8::1]:4711", "[2001:db8::2]", "::ffff:192.0.2.9"})),
            (V{"2001:db8::1", "2001:db8::2", "192.0.2.9"}));
  // Empty members are skipped; garbage is kept as "no address".
  EXPECT_EQ(Show(ParseXForwardedFor({",, 192.0.2.1 ,,", "unknown", "_hidden", "x"})),
            (V{"192.0.2.1", "-", "-", "-"}));
  for (const char* bad :
       {"192.0.2.1:", "192.0.2.1:70000", "192.0.2.1:-1", "[192.0.2.1]", "[2001:db8::1",
        "2001:db8::1]", "[2001:db8::1]4711", "[2001:db8::1]:", "fe80::1%eth0", "[fe80::1%25eth0]",
        "192.0.2.1 192.0.2.2", "1.2.3", "01.2.3.4", "256.1.1.1", "\"192.0.2.1\"", "1.2.3.4\x01",
        "for=192.0.2.1", "::ffff:1.2.3.4:80"}) {
    EXPECT_EQ(Show(ParseXForwardedFor({bad})), V{"-"}) << bad;
  }
}

TEST(ForwardedParserTest, ForwardedForms) {
  EXPECT_EQ(Show(ParseForwarded({"for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\""})),
            (V{"192.0.2.43", "2001:db8:cafe::17"}));
  EXPECT_EQ(Show(ParseForwarded({"for=192.0.2.60;proto=http;by=203.0.113.43",
                                 "For=\"192.0.2.61:_port\";host=\"a,b;c\""})),
            (V{"192.0.2.60", "192.0.2.61"}));
  // Obfuscated and unknown nodes, elements without for=, doubled for=, broken quoting.
  EXPECT_EQ(Show(ParseForwarded({"for=unknown, for=_hidden, for=\"_SEVKISEK\", proto=https"})),
            (V{"-", "-", "-", "-"}));
  EXPECT_EQ(Show(ParseForwarded({"for=192.0.2.1;for=192.0.2.2"})), V{"-"});
  EXPECT_EQ(Show(ParseForwarded({"for=\"192.0.2.1"})), V{"-"});
  EXPECT_EQ(Show(ParseForwarded({"for=\"192.0.2.1\"x"})), V{"-"});
  EXPECT_EQ(Show(ParseForwarded({"for="})), V{"-"});
  EXPECT_EQ(Show(ParseForwarded({"=192.0.2.1"})), V{"-"});
  EXPECT_EQ(Show(ParseForwarded({"192.0.2.1"})), V{"-"});
  EXPECT_EQ(Show(ParseForwarded({"for=\"[2001:db8::1\""})), V{"-"});
  // A comma inside quotes does not split the element; an escaped quote does not end it.
  EXPECT_EQ(Show(ParseForwarded({"host=\"x,for=192.0.2.9\";for=192.0.2.1"})), V{"192.0.2.1"});
  EXPECT_EQ(Show(ParseForwarded({"host=\"a\\\",for=192.0.2.9\", for=192.0.2.2"})),
            (V{"-", "192.0.2.2"}));
  // An unterminated quote swallows the rest of its line, not the next line.
  EXPECT_EQ(Show(ParseForwarded({"for=\"192.0.2.1, for=192.0.2.2", "for=192.0.2.3"})),
            (V{"-", "192.0.2.3"}));
}

TEST(ForwardedParserTest, VeryLongListsKeepTheRightmostElements) {
  std::string line;
  for (int i = 0; i < 5000; ++i) {
    line += "10.0." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256) + ", ";
  }
  line += "192.0.2.77";
  ForwardedChain c = ParseXForwardedFor({line});
  ASSERT_EQ(c.size(), kMaxForwardedElements);
  EXPECT_EQ(c.back()->to_string(), "192.0.2.77");
  std::vector<std::string> many(1000, "for=10.1.1.1");
  std::vector<std::string_view> views(many.begin(), many.end());
  EXPECT_EQ(ParseForwarded(views).size(), kMaxForwardedElements);
  std::string garbage(8000, ',');
  garbage += std::string(8000, '"');
  EXPECT_TRUE(ParseXForwardedFor({garbage}).size() <= kMaxForwardedElements);
  EXPECT_TRUE(ParseForwarded({garbage}).size() <= 1);
}

TEST(ClientIdTest, UntrustedPeersAreNeverOverridden) {
  const std::vector<std::string_view> spoof = {"198.51.100.1"};
  EXPECT_EQ(Xff(Tcp("203.0.113.5"), TrustedProxies(), spoof), "ip:203.0.113.5");
  EXPECT_EQ(Xff(Tcp("203.0.113.5"), Trusted({"10.0.0.0/8"}), spoof), "ip:203.0.113.5");
  EXPECT_EQ(Xff(Unix(1000), Trusted({"uid:33", "127.0.0.1"}), spoof), "uid:1000");
  EXPECT_EQ(Fwd(Unix(1000), Trusted({"uid:33"}), {"for=198.51.100.1"}), "uid:1000");
  EXPECT_EQ(Xff(ConnectionPeer{}, Trusted({"::/0"}), spoof), "ip:unknown");
}

TEST(ClientIdTest, WalksFromTheRightSkippingTrustedHops) {
  TrustedProxies t = Trusted({"uid:33", "10.0.0.0/8", "2001:db8:ffff::/48"});
  // nginx on the Unix socket appended $remote_addr.
  EXPECT_EQ(Xff(Unix(33), t, {"198.51.100.7"}), "ip:198.51.100.7");
  // A client-supplied prefix is left of the proxies' own entries: ignored.
  EXPECT_EQ(Xff(Unix(33), t, {"1.1.1.1, 198.51.100.7, 10.0.0.2"}), "ip:198.51.100.7");
  // Several lines are one list in order.
  EXPECT_EQ(Xff(Unix(33), t, {"1.1.1.1", "198.51.100.7", "10.0.0.2, 10.0.0.3"}), "ip:198.51.100.7");
  EXPECT_EQ(Xff(Unix(33), t, {"2001:db8:1::5, 2001:db8:ffff::1"}), "ip:2001:db8:1::5");
  EXPECT_EQ(Fwd(Tcp("10.0.0.1"), t, {"for=1.1.1.1, for=\"[2001:db8:1::5]:4711\";proto=https"}),
            "ip:2001:db8:1::5");
  // No header from a trusted proxy: the proxy itself.
  EXPECT_EQ(Xff(Unix(33), t, {}), "uid:33");
  // Every hop trusted: the leftmost.
  EXPECT_EQ(Xff(Tcp("10.0.0.1"), t, {"10.9.9.9, 10.0.0.2"}), "ip:10.9.9.9");
  // v4-mapped spellings are the v4 address.
  EXPECT_EQ(Xff(Tcp("::ffff:10.0.0.1"), t, {"::ffff:198.51.100.7"}), "ip:198.51.100.7");
}

TEST(ClientIdTest, MalformedValuesAreTheProxysOwnAddress) {
  TrustedProxies t = Trusted({"uid:33", "10.0.0.0/8"});
  for (const char* bad :
       {"garbage", "unknown", "_hidden", "1.2.3.4:99999", "[::1", "\"1.2.3.4\""}) {
    EXPECT_EQ(Xff(Unix(33), t, {bad}), "uid:33") << bad;
    // Left of a malformed element nothing counts, even a plausible address.
    EXPECT_EQ(Xff(Unix(33), t, {"198.51.100.9", bad}), "uid:33") << bad;
    // The hop that wrote it answers for it.
    EXPECT_EQ(Xff(Unix(33), t, {std::string(bad) + ", 10.0.0.4"}), "ip:10.0.0.4") << bad;
  }
  for (const char* bad : {"for=unknown", "for=_hidden", "proto=https", "for=\"[::1]",
                          "for=1.2.3.4;for=5.6.7.8", "for=\"_x\"", ";;;", "for=[2001:db8::1]:x"}) {
    EXPECT_EQ(Fwd(Unix(33), t, {bad}), "uid:33") << bad;
    EXPECT_EQ(Fwd(Tcp("10.0.0.1"), t, {"for=198.51.100.9", bad}), "ip:10.0.0.1") << bad;
  }
  // A client that floods the header with its own trusted-looking hops only reaches the leftmost
  // kept element, never an address of its choosing beyond what a proxy wrote.
  std::string flood;
  for (int i = 0; i < 500; ++i) {
    flood += "10.0.0.9, ";
  }
  EXPECT_EQ(Xff(Unix(33), t, {"198.51.100.1, " + flood + "203.0.113.9"}), "ip:203.0.113.9");
}

TEST(ClientIdTest, OnlyTheConfiguredHeaderCounts) {
  TrustedProxies t = Trusted({"unix"});
  // The daemon hands ClientIdOf the lines of the configured header only; a Forwarded value read
  // as X-Forwarded-For is garbage (the proxy's own address), and the other way round.
  EXPECT_EQ(Xff(Unix(0), t, {"for=198.51.100.1"}), "uid:0");
  EXPECT_EQ(Fwd(Unix(0), t, {"198.51.100.1"}), "uid:0");
  EXPECT_EQ(ForwardedHeaderFromName("forwarded"), ForwardedHeader::kForwarded);
  EXPECT_EQ(ForwardedHeaderFromName("x-forwarded-for"), ForwardedHeader::kXForwardedFor);
  EXPECT_FALSE(ForwardedHeaderFromName("X-Forwarded-For").has_value());
  EXPECT_FALSE(ForwardedHeaderFromName("both").has_value());
}

TEST(LimitKeyTest, AnIpv6ClientIsLimitedByItsSlash64) {
  // Regression: per-request limits keyed the full IPv6 address, so a host rotating through its
  // /64 got a fresh allowance with every address.
  EXPECT_EQ(LimitKeyOf("ip:2001:db8:1:2::5"), "ip:2001:db8:1:2::/64");
  EXPECT_EQ(LimitKeyOf("ip:2001:db8:1:2:ffff::9"), LimitKeyOf("ip:2001:db8:1:2::5"));
  EXPECT_NE(LimitKeyOf("ip:2001:db8:1:3::5"), LimitKeyOf("ip:2001:db8:1:2::5"));
  EXPECT_EQ(LimitKeyOf("ip:192.0.2.7"), "ip:192.0.2.7");
  EXPECT_EQ(LimitKeyOf("uid:33"), "uid:33");
  EXPECT_EQ(LimitKeyOf("ip:unknown"), "ip:unknown");
  // The server takes a direct peer's limit key from its connection-table key (PeerKeyOf): the two
  // must agree for every address form.
  for (const char* a : {"192.0.2.7", "2001:db8:1:2::5", "::ffff:192.0.2.7", "::1"}) {
    const auto addr = ip::make_address(a);
    EXPECT_EQ(LimitKeyOf(PeerIdOf(addr)), PeerKeyOf(addr)) << a;
  }
  EXPECT_EQ(LimitKeyOf(PeerIdOf(ConnectionPeer{.uid = 33, .unix_socket = true})),
            PeerIdOf(ConnectionPeer{.uid = 33, .unix_socket = true}));
}

}  // namespace
}  // namespace otd::api
