// ConnectionTable: who makes room for a newcomer (issue 14 item 5). Ages are explicit ticks.
#include "api/connection_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace otd::api {
namespace {

constexpr int64_t kNow = 1'000'000'000;  // later than every waiting time below

std::shared_ptr<TrackedConn> Conn(const std::string& peer, int64_t since) {
  return std::make_shared<TrackedConn>(peer, since);
}

TEST(ConnectionTableTest, PeerKeysAreTheAddressAnIpv6ClientsSlash64) {
  namespace ip = boost::asio::ip;
  EXPECT_EQ(PeerKeyOf(ip::make_address("192.0.2.7")), "ip:192.0.2.7");
  EXPECT_EQ(PeerKeyOf(ip::make_address("::ffff:192.0.2.7")), "ip:192.0.2.7");
  EXPECT_EQ(PeerKeyOf(ip::make_address("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            "ip:2001:db8:1:2::/64");
  EXPECT_EQ(PeerKeyOf(ip::make_address("2001:db8:1:2::1")),
            PeerKeyOf(ip::make_address("2001:db8:1:2:ffff::9")));
  EXPECT_NE(PeerKeyOf(ip::make_address("2001:db8:1:2::1")),
            PeerKeyOf(ip::make_address("2001:db8:1:3::1")));
  EXPECT_EQ(PeerKeyOf(ip::make_address("::1")), "ip:::/64");
}

TEST(ConnectionTableTest, AdmitsUpToTheLimits) {
  ConnectionTable t(4, 2, 0);
  EXPECT_EQ(t.Admit(Conn("a", 1), kNow).admission, Admission::kAdmitted);
  EXPECT_EQ(t.Admit(Conn("a", 2), kNow).admission, Admission::kAdmitted);
  EXPECT_EQ(t.Admit(Conn("b", 3), kNow).admission, Admission::kAdmitted);
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(t.CountOf("a"), 2u);
  EXPECT_EQ(t.CountOf("c"), 0u);
}

TEST(ConnectionTableTest, APeerAtItsCapLosesItsOwnLongestWaitingConnection) {
  ConnectionTable t(10, 3, 0);
  auto other = Conn("b", 0);  // waited longest of all, but another peer's
  auto a_new = Conn("a", 30);
  auto a_old = Conn("a", 10);
  auto a_mid = Conn("a", 20);
  for (const auto& c : {other, a_new, a_old, a_mid}) {
    ASSERT_TRUE(t.Admit(c, kNow).admitted());
  }
  auto r = t.Admit(Conn("a", 40), kNow);
  EXPECT_EQ(r.admission, Admission::kEvictedForPeer);
  EXPECT_EQ(r.evicted, a_old);
  EXPECT_TRUE(a_old->evicted());
  EXPECT_FALSE(other->evicted());
  EXPECT_EQ(t.CountOf("a"), 3u);
  EXPECT_EQ(t.size(), 4u);
  // Closing the evicted connection later does not count it out twice.
  t.Remove(a_old);
  EXPECT_EQ(t.size(), 4u);
  EXPECT_EQ(t.CountOf("a"), 3u);
}

TEST(ConnectionTableTest, ABusyConnectionIsNeverEvictedAndAllBusyRefusesTheNewcomer) {
  ConnectionTable t(10, 2, 0);
  auto old_busy = Conn("a", 1);
  auto young = Conn("a", 5);
  ASSERT_TRUE(t.Admit(old_busy, kNow).admitted());
  ASSERT_TRUE(t.Admit(young, kNow).admitted());
  ASSERT_TRUE(old_busy->MarkBusy());  // its request is being handled
  auto r = t.Admit(Conn("a", 9), kNow);
  EXPECT_EQ(r.evicted, young);
  EXPECT_FALSE(old_busy->evicted());
  // When all of a peer's connections are busy, its newcomer is refused; another peer's is not.
  ConnectionTable u(10, 2, 0);
  auto b1 = Conn("a", 1);
  auto b2 = Conn("a", 2);
  ASSERT_TRUE(u.Admit(b1, kNow).admitted());
  ASSERT_TRUE(u.Admit(b2, kNow).admitted());
  ASSERT_TRUE(b1->MarkBusy());
  ASSERT_TRUE(b2->MarkBusy());
  EXPECT_EQ(u.Admit(Conn("a", 3), kNow).admission, Admission::kRefusedPeerFull);
  EXPECT_EQ(u.Admit(Conn("b", 3), kNow).admission, Admission::kAdmitted);
  EXPECT_EQ(u.CountOf("a"), 2u);
}

TEST(ConnectionTableTest, APeerCannotEvictItsOwnConnectionsThatCameAMomentAgo) {
  ConnectionTable t(10, 2, /*peer_min_wait=*/100);
  auto old_one = Conn("a", 1000);
  auto young = Conn("a", 1050);
  ASSERT_TRUE(t.Admit(old_one, 1060).admitted());
  ASSERT_TRUE(t.Admit(young, 1060).admitted());
  // At 1080 neither has waited 100: the churning peer's newcomer is refused.
  EXPECT_EQ(t.Admit(Conn("a", 1080), 1080).admission, Admission::kRefusedPeerFull);
  EXPECT_FALSE(old_one->evicted());
  // At 1100 the older one has.
  auto r = t.Admit(Conn("a", 1100), 1100);
  EXPECT_EQ(r.admission, Admission::kEvictedForPeer);
  EXPECT_EQ(r.evicted, old_one);
  // The floor is for the peer's own newcomers only: a full table makes room for another peer
  // however briefly its connections have waited.
  ConnectionTable u(2, 2, 100);
  auto x = Conn("a", 1000);
  ASSERT_TRUE(u.Admit(x, 1000).admitted());
  ASSERT_TRUE(u.Admit(Conn("a", 1001), 1001).admitted());
  r = u.Admit(Conn("b", 1002), 1002);
  EXPECT_EQ(r.admission, Admission::kEvictedForTable);
  EXPECT_EQ(r.evicted, x);
}

TEST(ConnectionTableTest, AFullTableEvictsFromTheLargestPeerLongestWaitingFirst) {
  ConnectionTable t(6, 6, 0);
  auto quiet = Conn("quiet", 0);  // idle for longest, but its peer holds one connection
  auto f1 = Conn("flood", 50);
  auto f2 = Conn("flood", 20);
  auto f3 = Conn("flood", 30);
  auto m1 = Conn("mid", 5);
  auto m2 = Conn("mid", 6);
  for (const auto& c : {quiet, f1, f2, f3, m1, m2}) {
    ASSERT_TRUE(t.Admit(c, kNow).admitted());
  }
  auto r = t.Admit(Conn("new", 60), kNow);
  EXPECT_EQ(r.admission, Admission::kEvictedForTable);
  EXPECT_EQ(r.evicted, f2);
  // flood and mid hold two each now: the longest waiting of them goes (mid's, at 5).
  r = t.Admit(Conn("new", 61), kNow);
  EXPECT_EQ(r.evicted, m1);
  EXPECT_EQ(t.size(), 6u);
  EXPECT_FALSE(quiet->evicted());
}

TEST(ConnectionTableTest, AFullTableSkipsBusyConnectionsAndRefusesWhenAllAreBusy) {
  ConnectionTable t(3, 3, 0);
  auto a1 = Conn("a", 1);
  auto a2 = Conn("a", 2);
  auto b1 = Conn("b", 3);
  for (const auto& c : {a1, a2, b1}) {
    ASSERT_TRUE(t.Admit(c, kNow).admitted());
  }
  ASSERT_TRUE(a1->MarkBusy());
  ASSERT_TRUE(a2->MarkBusy());
  auto r = t.Admit(Conn("c", 4), kNow);
  EXPECT_EQ(r.evicted, b1);  // the largest peer has nothing waiting: the next one pays
  ASSERT_TRUE(t.Admit(Conn("d", 5), kNow).admitted());  // evicts c's
  ConnectionTable u(2, 2, 0);
  auto x = Conn("x", 1);
  auto y = Conn("y", 1);
  ASSERT_TRUE(u.Admit(x, kNow).admitted());
  ASSERT_TRUE(u.Admit(y, kNow).admitted());
  ASSERT_TRUE(x->MarkBusy());
  ASSERT_TRUE(y->MarkBusy());
  EXPECT_EQ(u.Admit(Conn("z", 2), kNow).admission, Admission::kRefusedFull);
  EXPECT_EQ(u.size(), 2u);
}

TEST(ConnectionTableTest, AKeepAliveConnectionWaitsFromItsLastResponse) {
  ConnectionTable t(2, 2, 0);
  auto served = Conn("a", 1);   // accepted first, but has just been answered
  auto silent = Conn("a", 10);  // accepted later, never sent a request
  ASSERT_TRUE(t.Admit(served, kNow).admitted());
  ASSERT_TRUE(t.Admit(silent, kNow).admitted());
  ASSERT_TRUE(served->MarkBusy());
  served->MarkWaiting(100);
  EXPECT_EQ(t.Admit(Conn("a", 101), kNow).evicted, silent);
}

TEST(ConnectionTableTest, AnEvictedConnectionCannotBecomeBusy) {
  ConnectionTable t(1, 1, 0);
  auto c = Conn("a", 1);
  ASSERT_TRUE(t.Admit(c, kNow).admitted());
  ASSERT_EQ(t.Admit(Conn("a", 2), kNow).evicted, c);
  EXPECT_FALSE(c->MarkBusy());
  c->MarkWaiting(3);
  EXPECT_TRUE(c->evicted());
}

TEST(ConnectionTableTest, LimitsAreClampedToSaneValues) {
  ConnectionTable t(2, 50, 0);  // a per-peer cap above the table's is the table's
  ASSERT_TRUE(t.Admit(Conn("a", 1), kNow).admitted());
  ASSERT_TRUE(t.Admit(Conn("a", 2), kNow).admitted());
  EXPECT_EQ(t.Admit(Conn("a", 3), kNow).admission, Admission::kEvictedForPeer);
  ConnectionTable u(0, 0, 0);  // at least one
  EXPECT_EQ(u.Admit(Conn("a", 1), kNow).admission, Admission::kAdmitted);
}

// The acceptor evicts while the connections' strands mark them busy and waiting on other
// threads: a connection is never evicted between MarkBusy() and MarkWaiting() (TSan runs this).
TEST(ConnectionTableTest, EvictionRacesWithRequestsWithoutCuttingABusyConnection) {
  ConnectionTable t(8, 8, 0);
  std::vector<std::shared_ptr<TrackedConn>> conns;
  for (int i = 0; i < 8; ++i) {
    conns.push_back(Conn("a", i));
    ASSERT_TRUE(t.Admit(conns.back(), kNow).admitted());
  }
  std::atomic<int> cut_while_busy{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> strands;
  for (const auto& c : conns) {
    strands.emplace_back([c, &cut_while_busy, &stop] {
      int64_t tick = 100;
      while (!stop.load() && c->MarkBusy()) {
        for (int k = 0; k < 50; ++k) {
          if (c->evicted()) {
            cut_while_busy.fetch_add(1);
          }
        }
        c->MarkWaiting(++tick);
      }
    });
  }
  int evicted = 0;
  std::vector<std::shared_ptr<TrackedConn>> newcomers;
  for (int i = 0; i < 2000 && evicted < 8; ++i) {
    auto n = Conn("a", 1'000'000 + i);
    ASSERT_TRUE(n->MarkBusy());  // newcomers stay busy: only the racing ones can go
    auto r = t.Admit(n, kNow);
    if (r.evicted) {
      ++evicted;
    }
    if (r.admitted()) {
      newcomers.push_back(n);
    }
  }
  stop = true;
  for (auto& s : strands) {
    s.join();
  }
  EXPECT_EQ(cut_while_busy.load(), 0);
  EXPECT_LE(t.size(), 8u);
}

}  // namespace
}  // namespace otd::api
