#include "store/internal/ttl.h"

#include "common/log.h"
#include "store/internal/env.h"
#include "store/internal/lmdb_handles.h"

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

Result<int64_t> ExpiryIn(const Env& env, MDB_txn* txn, std::string_view table, ByteView key,
                         int* rc) {
  if (TtlRevKeySize(table, key.size()) > env.max_key()) {
    return int64_t{0};  // such a key can never have an expiry
  }
  Bytes rev = EncodeTtlRevKey(table, key);
  MDB_val k = Val(rev.data(), rev.size());
  MDB_val v{};
  int r = mdb_get(txn, env.ttl_rev_dbi(), &k, &v);
  if (r == MDB_NOTFOUND) {
    return int64_t{0};
  }
  if (r != 0) {
    *rc = r;
    return env.Fail(r, "read TTL index");
  }
  return static_cast<int64_t>(DecodeU64(View(v)).value_or(0));
}

Status UpdateTtl(const Env& env, MDB_txn* txn, const Mutation& m, bool removed, int* rc) {
  const uint64_t want = removed ? 0 : static_cast<uint64_t>(m.expires_at);
  if (TtlRevKeySize(m.table, m.key.size()) > env.max_key()) {
    return Status::Ok();  // such a key can never have had a TTL entry (the writer checks)
  }
  Bytes rev = EncodeTtlRevKey(m.table, m.key);
  MDB_val rev_key = Val(rev.data(), rev.size());
  MDB_val old_val{};
  int r = mdb_get(txn, env.ttl_rev_dbi(), &rev_key, &old_val);
  if (r != 0 && r != MDB_NOTFOUND) {
    *rc = r;
    return env.Fail(r, "read TTL index");
  }
  std::optional<uint64_t> old;
  if (r == 0) {
    old = DecodeU64(View(old_val));
    if (!old) {
      old = 0;  // malformed: drop it below and rewrite
    }
  }
  if (old.has_value() && *old == want) {
    return Status::Ok();
  }
  if (old.has_value()) {
    Bytes ttl = EncodeTtlKey(*old, m.table, m.key);
    MDB_val ttl_key = Val(ttl.data(), ttl.size());
    r = mdb_del(txn, env.ttl_dbi(), &ttl_key, nullptr);
    if (r != 0 && r != MDB_NOTFOUND) {
      *rc = r;
      return env.Fail(r, "update TTL index");
    }
    if (want == 0) {
      r = mdb_del(txn, env.ttl_rev_dbi(), &rev_key, nullptr);
      if (r != 0) {
        *rc = r;
        return env.Fail(r, "update TTL index");
      }
    }
  }
  if (want == 0) {
    return Status::Ok();
  }
  Bytes ttl = EncodeTtlKey(want, m.table, m.key);
  Bytes when = EncodeU64(want);
  MDB_val ttl_key = Val(ttl.data(), ttl.size());
  MDB_val empty = Val(nullptr, 0);
  MDB_val when_val = Val(when.data(), when.size());
  if ((r = mdb_put(txn, env.ttl_dbi(), &ttl_key, &empty, 0)) != 0 ||
      (r = mdb_put(txn, env.ttl_rev_dbi(), &rev_key, &when_val, 0)) != 0) {
    *rc = r;
    return env.Fail(r, "update TTL index");
  }
  return Status::Ok();
}

Status PurgeExpired(const Env& env, MDB_txn* txn, int64_t now, size_t max, size_t* purged,
                    int* rc) {
  *purged = 0;
  Cursor cursor;
  int r = Cursor::Open(txn, env.ttl_dbi(), &cursor);
  if (r != 0) {
    *rc = r;
    return env.Fail(r, "open TTL cursor");
  }
  size_t visited = 0;
  while (visited < max) {
    MDB_val k{};
    MDB_val v{};
    // The first entry is always the next candidate: each visited entry is deleted.
    r = mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST);
    if (r == MDB_NOTFOUND) {
      break;
    }
    if (r != 0) {
      *rc = r;
      return env.Fail(r, "read TTL index");
    }
    auto entry = DecodeTtlKey(View(k));
    if (entry && entry->expires_at > static_cast<uint64_t>(now)) {
      break;
    }
    ++visited;
    // Copy out before deleting: `k` points into the map.
    std::optional<std::pair<std::string, Bytes>> target;
    uint64_t expires_at = 0;
    if (entry) {
      target.emplace(std::string(entry->table), Bytes(entry->key.begin(), entry->key.end()));
      expires_at = entry->expires_at;
    } else if (env.log() != nullptr) {
      env.log()->Warn("store_ttl_entry_malformed");
    }
    if ((r = mdb_cursor_del(cursor.get(), 0)) != 0) {
      *rc = r;
      return env.Fail(r, "purge TTL entry");
    }
    if (!target) {
      continue;
    }
    Bytes rev = EncodeTtlRevKey(target->first, target->second);
    MDB_val rev_key = Val(rev.data(), rev.size());
    MDB_val rev_val{};
    r = mdb_get(txn, env.ttl_rev_dbi(), &rev_key, &rev_val);
    if (r == MDB_NOTFOUND) {
      continue;  // stale entry: the record no longer has this expiry
    }
    if (r != 0) {
      *rc = r;
      return env.Fail(r, "read TTL index");
    }
    if (DecodeU64(View(rev_val)) != expires_at) {
      continue;  // stale entry: the record was given another expiry
    }
    if ((r = mdb_del(txn, env.ttl_rev_dbi(), &rev_key, nullptr)) != 0) {
      *rc = r;
      return env.Fail(r, "purge TTL entry");
    }
    std::optional<MDB_dbi> dbi = env.FindDbi(target->first);
    if (!dbi) {
      continue;  // a table no longer configured; its records stay where they are
    }
    MDB_val key = Val(target->second.data(), target->second.size());
    r = mdb_del(txn, *dbi, &key, nullptr);
    if (r == 0) {
      ++*purged;
    } else if (r != MDB_NOTFOUND) {
      *rc = r;
      return env.Fail(r, "purge record");
    }
  }
  return Status::Ok();
}

}  // namespace otd::store::internal
