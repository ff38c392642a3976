#include "api/connection_table.h"

#include <algorithm>
#include <limits>

namespace otd::api {

std::string PeerKeyOf(const boost::asio::ip::address& a) {
  namespace ip = boost::asio::ip;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return "ip:" + ip::make_address_v4(ip::v4_mapped, a.to_v6()).to_string();
  }
  if (a.is_v6()) {
    auto bytes = a.to_v6().to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), 0);
    return "ip:" + ip::address_v6(bytes).to_string() + "/64";
  }
  return "ip:" + a.to_string();
}

bool TrackedConn::MarkBusy() {
  int64_t s = state_.load();
  while (s != kEvicted) {
    if (s == kBusy || state_.compare_exchange_weak(s, kBusy)) {
      return true;
    }
  }
  return false;
}

void TrackedConn::MarkWaiting(int64_t now) {
  int64_t s = state_.load();
  while (s != kEvicted && !state_.compare_exchange_weak(s, std::max<int64_t>(0, now))) {}
}

bool TrackedConn::TryEvict(int64_t observed) {
  return observed != kBusy && observed != kEvicted &&
         state_.compare_exchange_strong(observed, kEvicted);
}

ConnectionTable::ConnectionTable(size_t max_connections, size_t max_per_peer, int64_t peer_min_wait)
    : max_connections_(std::max<size_t>(1, max_connections)),
      max_per_peer_(std::clamp<size_t>(max_per_peer, 1, std::max<size_t>(1, max_connections))),
      peer_min_wait_(std::max<int64_t>(0, peer_min_wait)) {}

size_t ConnectionTable::CountOf(const std::string& peer) const {
  auto it = peers_.find(peer);
  return it == peers_.end() ? 0 : it->second.size();
}

std::shared_ptr<TrackedConn> ConnectionTable::EvictOldest(
    const std::set<std::shared_ptr<TrackedConn>>* conns, int64_t waiting_before) {
  // A candidate may turn busy between the scan and the eviction (its strand runs meanwhile): then
  // the compare-and-swap fails and the scan runs again. Bounded, in case one keeps flipping.
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::shared_ptr<TrackedConn> best;
    int64_t best_since = 0;
    size_t best_peer_size = 0;
    auto consider = [&](const std::set<std::shared_ptr<TrackedConn>>& set) {
      for (const auto& c : set) {
        int64_t since = c->state_.load();
        if (since == TrackedConn::kBusy || since == TrackedConn::kEvicted) {
          continue;
        }
        if (!best || set.size() > best_peer_size ||
            (set.size() == best_peer_size && since < best_since)) {
          best = c;
          best_since = since;
          best_peer_size = set.size();
        }
      }
    };
    if (conns != nullptr) {
      consider(*conns);
    } else {
      for (const auto& [peer, set] : peers_) {
        if (set.size() >= best_peer_size) {
          consider(set);
        }
      }
    }
    if (!best || best_since > waiting_before) {
      return nullptr;
    }
    if (best->TryEvict(best_since)) {
      Remove(best);
      return best;
    }
  }
  return nullptr;
}

ConnectionTable::Result ConnectionTable::Admit(const std::shared_ptr<TrackedConn>& c, int64_t now) {
  Result r;
  auto it = peers_.find(c->peer());
  if (it != peers_.end() && it->second.size() >= max_per_peer_) {
    r.evicted = EvictOldest(&it->second, now - peer_min_wait_);
    if (!r.evicted) {
      r.admission = Admission::kRefusedPeerFull;
      return r;
    }
    r.admission = Admission::kEvictedForPeer;
  } else if (size_ >= max_connections_) {
    r.evicted = EvictOldest(nullptr, std::numeric_limits<int64_t>::max());
    if (!r.evicted) {
      r.admission = Admission::kRefusedFull;
      return r;
    }
    r.admission = Admission::kEvictedForTable;
  }
  peers_[c->peer()].insert(c);
  ++size_;
  return r;
}

void ConnectionTable::Remove(const std::shared_ptr<TrackedConn>& c) {
  auto it = peers_.find(c->peer());
  if (it == peers_.end() || it->second.erase(c) == 0) {
    return;
  }
  --size_;
  if (it->second.empty()) {
    peers_.erase(it);
  }
}

}  // namespace otd::api
