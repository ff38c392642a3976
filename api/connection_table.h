#pragma once
// ConnectionTable: the open connections of one listener, by peer, and who makes room for a
// newcomer (issue 14 item 5: one client must not lock everyone out by filling the table).
//
// Every connection is either waiting (it has not completed a request since it was accepted or
// since its last response: TLS handshake, idle keep-alive, a request being received) or busy (its
// request is complete: the handler runs, a deferred answer is pending or the response is being
// written). A busy connection is never evicted. Admit(newcomer):
//   1. its peer holds max_per_peer connections already: the peer's connection that has waited
//      longest is evicted if it has waited peer_min_wait at least; else the newcomer is refused
//      (the peer's own doing). The floor keeps a peer that churns connections (re-opening what
//      is closed, as fast as it can) from cutting its own keep-alive connections in the
//      milliseconds between two of their requests: evicting a connection that came a moment ago
//      only trades one of the peer's connections for another;
//   2. else the table holds max_connections: a waiting connection of the peer that holds the most
//      connections is evicted, the one that has waited longest among that peer's (fairness: a
//      flood from a few peers pays before a quiet peer's idle connections); none waiting in the
//      whole table: the newcomer is refused. No floor here: the newcomer is another peer, which
//      a churning flood must not lock out;
//   3. the newcomer is admitted.
//
// Thread safety: ConnectionTable is not synchronised (the server calls it under its mutex).
// TrackedConn's state methods are atomic: the connection's strand marks it busy or waiting while
// the acceptor may be choosing it; MarkBusy and TryEvict race on one compare-and-swap, so a
// connection that has become busy cannot be evicted and an evicted one cannot become busy.

#include <boost/asio/ip/address.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

namespace otd::api {

// The peer key of a TCP client: "ip:<address>", except that an IPv6 client counts as its /64
// ("ip:2001:db8:1:2::/64": one host or one subscriber usually holds a whole /64) and an
// IPv4-mapped IPv6 address as the IPv4 address.
std::string PeerKeyOf(const boost::asio::ip::address& a);

class TrackedConn {
 public:
  // `peer`: the key that per-peer caps count by ("uid:<n>", "ip:<address or /64 prefix>").
  // `waiting_since`: when the connection was accepted (any monotonic tick count >= 0).
  TrackedConn(std::string peer, int64_t waiting_since)
      : peer_(std::move(peer)), state_(waiting_since) {}
  virtual ~TrackedConn() = default;
  TrackedConn(const TrackedConn&) = delete;
  TrackedConn& operator=(const TrackedConn&) = delete;

  const std::string& peer() const { return peer_; }
  // The connection's request is complete. False: it was evicted (the caller closes it).
  bool MarkBusy();
  // The response is out; the connection waits again from `now`. No-op once evicted.
  void MarkWaiting(int64_t now);
  bool evicted() const { return state_.load() == kEvicted; }

 private:
  friend class ConnectionTable;
  static constexpr int64_t kBusy = INT64_MAX;
  static constexpr int64_t kEvicted = INT64_MIN;
  // Waiting since this tick, or kBusy, or kEvicted (final).
  bool TryEvict(int64_t observed);

  const std::string peer_;
  std::atomic<int64_t> state_;
};

enum class Admission {
  kAdmitted,
  kEvictedForPeer,   // admitted in place of one of its peer's connections
  kEvictedForTable,  // admitted in place of a connection of the largest peer
  kRefusedPeerFull,
  kRefusedFull,
};

class ConnectionTable {
 public:
  // `peer_min_wait`: in the ticks of the waiting times.
  ConnectionTable(size_t max_connections, size_t max_per_peer, int64_t peer_min_wait);

  struct Result {
    Admission admission = Admission::kAdmitted;
    // Set with kEvicted*: no longer counted here; the caller closes it.
    std::shared_ptr<TrackedConn> evicted;
    bool admitted() const {
      return admission != Admission::kRefusedPeerFull && admission != Admission::kRefusedFull;
    }
  };
  Result Admit(const std::shared_ptr<TrackedConn>& c, int64_t now);
  // Once the connection is closed; no-op when it was evicted (or never admitted).
  void Remove(const std::shared_ptr<TrackedConn>& c);

  size_t size() const { return size_; }
  size_t CountOf(const std::string& peer) const;

 private:
  using Peers = std::map<std::string, std::set<std::shared_ptr<TrackedConn>>>;
  // Evicts (and removes) the connection that has waited longest in `conns` if it has waited
  // since `waiting_before` at least, or with null in the whole table, the one that has waited
  // longest among the largest peer's; null when there is none.
  std::shared_ptr<TrackedConn> EvictOldest(const std::set<std::shared_ptr<TrackedConn>>* conns,
                                           int64_t waiting_before);

  const size_t max_connections_;
  const size_t max_per_peer_;
  const int64_t peer_min_wait_;
  Peers peers_;
  size_t size_ = 0;
};

}  // namespace otd::api
