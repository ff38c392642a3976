#include "store/internal/pg_schema.h"

namespace otd::store::internal {

namespace {

// Version 1. One table for every store table: the service layer's tables are few and all hold
// sealed records keyed by keyed hashes, so (tbl, key) as the primary key gives one B-tree that
// serves lookups and ordered scans per table, and one partial index serves the TTL purge (only
// records with an expiry are in it). The rows of one store table are not spread over several
// relations, which keeps migrations and grants to one object.
constexpr const char* kCreateRecords = R"sql(
CREATE TABLE otd_records (
  tbl text NOT NULL,
  key bytea NOT NULL,
  value bytea NOT NULL,
  expires_at bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (tbl, key)
))sql";

constexpr const char* kCreateTtlIndex =
    "CREATE INDEX otd_records_expiry ON otd_records (expires_at) WHERE expires_at > 0";

// Applies a group of caller batches in the caller's transaction. Each batch's preconditions are
// checked against the state left by the batches before it and by its own earlier mutations; a
// batch that fails is undone from its undo list (previous row images, newest first), so neither
// an exception nor a subtransaction is needed. Rows are locked (FOR UPDATE, or by the insert) as
// they are read, so concurrent groups from other daemons serialise on the rows they share; an
// insert that loses a race with another daemon's insert re-reads the row (ON CONFLICT DO NOTHING
// waits for the other transaction, then the loop sees its outcome).
constexpr const char* kCreateApply = R"sql(
CREATE FUNCTION otd_apply(ends int4[], ops int4[], tbls text[], keys bytea[], vals bytea[],
                          expects bytea[], exps int8[], new_keys bytea[], keeps bool[])
RETURNS int4[] LANGUAGE plpgsql AS $fn$
DECLARE
  res int4[] := '{}';
  lo int := 1;
  b int;
  i int;
  j int;
  fail int;
  n int;
  ex bool;
  cur_v bytea;
  cur_e int8;
  u_t text[];
  u_k bytea[];
  u_v bytea[];
  u_e int8[];
  u_had bool[];
BEGIN
  FOR b IN 1 .. coalesce(array_length(ends, 1), 0) LOOP
    fail := 0;
    u_t := '{}'; u_k := '{}'; u_v := '{}'; u_e := '{}'; u_had := '{}';
    i := lo;
    WHILE fail = 0 AND i <= ends[b] LOOP
      LOOP
        SELECT r.value, r.expires_at INTO cur_v, cur_e FROM otd_records r
          WHERE r.tbl = tbls[i] AND r.key = keys[i] FOR UPDATE;
        ex := FOUND;
        IF expects[i] IS NOT NULL AND (NOT ex OR cur_v <> expects[i]) THEN
          fail := 5;
          EXIT;
        END IF;
        IF ops[i] = 0 OR (ops[i] = 1 AND NOT ex) THEN
          IF ex THEN
            fail := 1;
            EXIT;
          END IF;
          INSERT INTO otd_records VALUES (tbls[i], keys[i], vals[i],
                                          CASE WHEN keeps[i] THEN 0 ELSE exps[i] END)
            ON CONFLICT DO NOTHING;
          GET DIAGNOSTICS n = ROW_COUNT;
          IF n = 0 THEN
            CONTINUE;  -- another transaction inserted it meanwhile: read it again
          END IF;
          u_t := array_append(u_t, tbls[i]); u_k := array_append(u_k, keys[i]);
          u_v := array_append(u_v, NULL::bytea); u_e := array_append(u_e, NULL::int8);
          u_had := array_append(u_had, false);
        ELSIF ops[i] IN (1, 2) THEN
          IF NOT ex THEN
            fail := 2;
            EXIT;
          END IF;
          UPDATE otd_records SET value = vals[i],
                 expires_at = CASE WHEN keeps[i] THEN expires_at ELSE exps[i] END
            WHERE tbl = tbls[i] AND key = keys[i];
          u_t := array_append(u_t, tbls[i]); u_k := array_append(u_k, keys[i]);
          u_v := array_append(u_v, cur_v); u_e := array_append(u_e, cur_e);
          u_had := array_append(u_had, true);
        ELSIF ops[i] IN (3, 4) THEN
          IF NOT ex THEN
            IF ops[i] = 3 THEN
              fail := 3;
            END IF;
            EXIT;
          END IF;
          DELETE FROM otd_records WHERE tbl = tbls[i] AND key = keys[i];
          u_t := array_append(u_t, tbls[i]); u_k := array_append(u_k, keys[i]);
          u_v := array_append(u_v, cur_v); u_e := array_append(u_e, cur_e);
          u_had := array_append(u_had, true);
        ELSE
          IF NOT ex THEN
            fail := 4;
            EXIT;
          END IF;
          IF cur_e > 0 AND 9 + octet_length(tbls[i]) + octet_length(new_keys[i]) > 511 THEN
            fail := 7;
            EXIT;
          END IF;
          INSERT INTO otd_records VALUES (tbls[i], new_keys[i], cur_v, cur_e)
            ON CONFLICT DO NOTHING;
          GET DIAGNOSTICS n = ROW_COUNT;
          IF n = 0 THEN
            fail := 6;
            EXIT;
          END IF;
          u_t := array_append(u_t, tbls[i]); u_k := array_append(u_k, new_keys[i]);
          u_v := array_append(u_v, NULL::bytea); u_e := array_append(u_e, NULL::int8);
          u_had := array_append(u_had, false);
          DELETE FROM otd_records WHERE tbl = tbls[i] AND key = keys[i];
          u_t := array_append(u_t, tbls[i]); u_k := array_append(u_k, keys[i]);
          u_v := array_append(u_v, cur_v); u_e := array_append(u_e, cur_e);
          u_had := array_append(u_had, true);
        END IF;
        EXIT;
      END LOOP;
      IF fail = 0 THEN
        i := i + 1;
      END IF;
    END LOOP;
    IF fail <> 0 THEN
      FOR j IN REVERSE coalesce(array_length(u_t, 1), 0) .. 1 LOOP
        IF u_had[j] THEN
          INSERT INTO otd_records VALUES (u_t[j], u_k[j], u_v[j], u_e[j])
            ON CONFLICT (tbl, key) DO UPDATE
            SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at;
        ELSE
          DELETE FROM otd_records WHERE tbl = u_t[j] AND key = u_k[j];
        END IF;
      END LOOP;
      res := array_append(res, fail * 1000000 + (i - lo));
    ELSE
      res := array_append(res, 0);
    END IF;
    lo := ends[b] + 1;
  END LOOP;
  RETURN res;
END
$fn$)sql";

}  // namespace

const std::vector<PgMigration>& PgMigrations() {
  static const std::vector<PgMigration> kAll = {
      {1, {kCreateRecords, kCreateTtlIndex, kCreateApply}},
  };
  return kAll;
}

}  // namespace otd::store::internal
