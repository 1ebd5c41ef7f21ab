// The SQL of PostgresWakeStore: every statement its connections prepare, by
// name, with what each one does and why it is written the way it is. The C++
// that runs them (postgres_wake_store.cc, postgres_wake_store_claims.cc)
// refers to them by these names; the columns they return are read there by
// position.
#include "registry-service/store_sql.h"

#include "absl/strings/str_cat.h"

namespace wake::registry {
namespace {

// A registration row as RowToRegistration (postgres_wake_store.cc) reads it.
constexpr char kRegistrationColumns[] =
    "id, tenant_id, subscriber_url, source_url, condition::text, debounce_ms, timeout_ms, "
    "one_shot, timeout_consumed, include_response, manifest_key, "
    "(extract(epoch from created_at) * 1000000)::bigint";

// A wake row as RowToWake (store_rows.cc) reads it.
constexpr char kWakeColumns[] =
    "id, tenant_id, stream, registration_id, source_event_key, message::text, "
    "run_finished_status, include_response, (extract(epoch from created_at) * 1000000)::bigint";

// The id of the writing transaction, which callers wait for the sync stream
// to show.
constexpr char kTxid[] = "pg_current_xact_id()::text::bigint";

// The columns of the registrations' unique key.
constexpr char kIdentity[] =
    "tenant_id, subscriber_url, source_url, one_shot, debounce_ms, timeout_ms, condition, "
    "manifest_key";

// The CTEs that record one event key ($t tenant, $r registration, $k key,
// $kind its EventKeyKind) in the table of its kind, offsets only above the
// registration's mark; `keyed` has a row when the key was new. `extra` is a
// further condition on recording it at all.
std::string KeyCtes(const std::string& t, const std::string& r, const std::string& k,
                    const std::string& kind, const std::string& extra = "true") {
  return absl::StrCat(
      "keyed_events AS (INSERT INTO wake_event_keys (tenant_id, registration_id, "
      "source_event_key) SELECT ",
      t, ", ", r, ", ", k, " WHERE ", kind, " = 1 AND ", extra,
      " ON CONFLICT DO NOTHING RETURNING 1), "
      "keyed_offsets AS (INSERT INTO wake_offset_keys (tenant_id, registration_id, "
      "source_event_key) SELECT ",
      t, ", ", r, ", ", k, " WHERE ", kind, " = 2 AND ", extra,
      " AND NOT EXISTS (SELECT 1 FROM wake_offset_marks m WHERE m.tenant_id = ", t,
      " AND m.registration_id = ", r, " AND ", k,
      " COLLATE \"C\" <= m.offset_mark) "
      "ON CONFLICT DO NOTHING RETURNING 1), "
      "keyed AS (SELECT 1 FROM keyed_events UNION ALL SELECT 1 FROM keyed_offsets), ");
}

// Expired keys of `table` go in small batches (replicas skip each other's
// rows); `fold` adds the CTE that raises the marks from the expired offsets.
std::string SweepKeys(const std::string& table, bool fold) {
  return absl::StrCat(
      "WITH expired AS (SELECT tenant_id, registration_id, source_event_key FROM ", table,
      " WHERE created_at < now() - $1 * interval '1 millisecond' LIMIT $2 "
      "FOR UPDATE SKIP LOCKED), "
      "gone AS (DELETE FROM ",
      table,
      " k USING expired e WHERE k.tenant_id = e.tenant_id AND "
      "k.registration_id = e.registration_id AND k.source_event_key = e.source_event_key "
      "RETURNING k.tenant_id, k.registration_id, k.source_event_key)",
      fold ? ", folded AS (INSERT INTO wake_offset_marks (tenant_id, registration_id, "
             "offset_mark) SELECT g.tenant_id, g.registration_id, max(g.source_event_key "
             "COLLATE \"C\") FROM gone g WHERE EXISTS (SELECT 1 FROM wake_registrations r "
             "WHERE r.id = g.registration_id AND r.tenant_id = g.tenant_id) GROUP BY "
             "g.tenant_id, g.registration_id ORDER BY 1, 2 ON CONFLICT (tenant_id, "
             "registration_id) DO UPDATE SET offset_mark = GREATEST(wake_offset_marks.offset_mark, "
             "EXCLUDED.offset_mark) RETURNING 1) "
           : " ",
      "SELECT count(*) FROM gone");
}

}  // namespace

std::vector<PreparedStatement> StoreStatements() {
  std::vector<PreparedStatement> statements;
  auto add = [&statements](const char* name, std::string sql) {
    statements.push_back(PreparedStatement{name, std::move(sql)});
  };
  // Registrations, one at a time.
  add("insert_registration",
      absl::StrCat("INSERT INTO wake_registrations (tenant_id, subscriber_url, source_url, "
                   "condition, debounce_ms, timeout_ms, one_shot, include_response, "
                   "manifest_key) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9) "
                   "ON CONFLICT (tenant_id, subscriber_url, source_url, one_shot, "
                   "debounce_ms, timeout_ms, condition, manifest_key) DO NOTHING "
                   "RETURNING ",
                   kRegistrationColumns, ", ", kTxid));
  add("find_registration",
      absl::StrCat("SELECT ", kRegistrationColumns,
                   " FROM wake_registrations WHERE tenant_id = $1 AND subscriber_url = $2 "
                   "AND source_url = $3 AND condition = $4::jsonb AND debounce_ms = $5 AND "
                   "timeout_ms = $6 AND one_shot = $7 AND manifest_key = $8"));
  const std::string returning = absl::StrCat(" RETURNING id, ", kTxid);
  add("delete_by_subscriber_manifest",
      absl::StrCat("DELETE FROM wake_registrations WHERE tenant_id = $1 AND "
                   "subscriber_url = $2 AND manifest_key = $3",
                   returning));
  add("delete_by_subscriber",
      absl::StrCat("DELETE FROM wake_registrations WHERE tenant_id = $1 AND "
                   "subscriber_url = $2",
                   returning));
  add("delete_by_source",
      absl::StrCat("DELETE FROM wake_registrations WHERE tenant_id = $1 AND source_url = $2",
                   returning));
  add("delete_by_subscriber_source",
      absl::StrCat("DELETE FROM wake_registrations WHERE tenant_id = $1 AND "
                   "subscriber_url = $2 AND source_url = $3",
                   returning));
  // Wakes, one draft at a time, and debounce windows.
  //
  // One statement: the event key, then the one-shot delete or timeout
  // consumption, gate the insert, so concurrent evaluations on different
  // replicas (and the same event evaluated again after its wake was acked)
  // cannot both deliver. $11 is the EventKeyKind.
  add("persist_wake",
      absl::StrCat(
          "WITH ", KeyCtes("$1", "$3", "$4", "$11"),
          "admit AS (SELECT 1 WHERE $11 = 0 OR EXISTS (SELECT 1 FROM keyed)), "
          "deleted AS (DELETE FROM wake_registrations WHERE $8 AND id = $3 AND "
          "tenant_id = $1 AND (NOT $10 OR NOT timeout_consumed) AND "
          "EXISTS (SELECT 1 FROM admit) RETURNING id), "
          "consumed AS (UPDATE wake_registrations SET timeout_consumed = true WHERE "
          "($9 OR $10) AND NOT $8 AND id = $3 AND tenant_id = $1 AND NOT timeout_consumed "
          "AND EXISTS (SELECT 1 FROM admit) RETURNING id), "
          "gate AS (SELECT 1 FROM admit WHERE (NOT $8 OR EXISTS (SELECT 1 FROM deleted)) "
          "AND (NOT $10 OR $8 OR EXISTS (SELECT 1 FROM consumed))) "
          "INSERT INTO wakes (tenant_id, stream, registration_id, source_event_key, message, "
          "run_finished_status, include_response, size_bytes) "
          "SELECT $1, $2, $3, $4, $5::jsonb, $6, $7, $12::int FROM gate "
          "ON CONFLICT (tenant_id, registration_id, source_event_key) DO NOTHING "
          "RETURNING id, (extract(epoch from created_at) * 1000000)::bigint, ",
          kTxid));
  // A debounced match joins its registration's window (opening one if none
  // is open; each match moves the deadline on), in the same discipline as a
  // wake: the event key first, so a replayed event joins nothing. Its
  // arrival consumes the registration's timeout. $4 is the EventKeyKind.
  // $9 is the change's size: a window at $10 changes or $11 bytes is full,
  // and its deadline becomes now (and stays there for matches that arrive
  // before it is closed). Returns the window's id and whether it is full, or
  // nothing when the match was a duplicate or the registration is gone.
  add("buffer_match",
      absl::StrCat(
          "WITH ",
          KeyCtes("$1", "$2", "$3", "$4",
                  "EXISTS (SELECT 1 FROM wake_registrations r WHERE r.id = $2 AND "
                  "r.tenant_id = $1)"),
          "opened AS (INSERT INTO debounce_windows (tenant_id, registration_id, window_id, "
          "first_key, deadline, changes, bytes) SELECT $1, $2, nextval('debounce_window_ids'), "
          "$3, CASE WHEN 1 >= $10::int OR $9::bigint >= $11::bigint THEN now() ELSE "
          "now() + $5 * interval '1 millisecond' END, 1, $9::bigint FROM keyed "
          "ON CONFLICT (tenant_id, registration_id) DO UPDATE SET "
          "changes = debounce_windows.changes + 1, "
          "bytes = debounce_windows.bytes + EXCLUDED.bytes, "
          "deadline = CASE WHEN debounce_windows.changes + 1 >= $10::int OR "
          "debounce_windows.bytes + EXCLUDED.bytes >= $11::bigint THEN "
          "LEAST(debounce_windows.deadline, now()) ELSE "
          "GREATEST(debounce_windows.deadline, EXCLUDED.deadline) END "
          "RETURNING window_id, deadline <= now() AS is_full), "
          "stored AS (INSERT INTO debounced_changes (window_id, change, run_finished_status, "
          "size_bytes) SELECT window_id, $6::jsonb, $7, $9::int FROM opened RETURNING 1), "
          "consumed AS (UPDATE wake_registrations SET timeout_consumed = true WHERE $8 AND "
          "id = $2 AND tenant_id = $1 AND NOT timeout_consumed AND "
          "EXISTS (SELECT 1 FROM keyed) RETURNING 1) "
          "SELECT window_id, ",
          kTxid, ", is_full FROM opened"));
  // Closing a window takes two statements in one transaction: deleting the
  // window row waits for (and so sees) every match that moved it; the
  // second statement's fresh snapshot then holds all of their changes. A
  // match that comes later opens a new window.
  add("close_window",
      "DELETE FROM debounce_windows WHERE tenant_id = $1 AND registration_id = $2 AND "
      "deadline <= now() RETURNING window_id, first_key");
  add("window_due_in",
      "SELECT GREATEST(0, (extract(epoch from deadline - clock_timestamp()) * 1000)"
      "::bigint) FROM debounce_windows WHERE tenant_id = $1 AND registration_id = $2");
  // The window's changes (the second statement of the close: its snapshot
  // holds every change of the window), its registration, and the wakes they
  // become: one, or several when the changes together pass --max-wake-bytes.
  // Nothing when the registration is gone (unregistered: its buffered
  // matches go with it); a one-shot registration is deleted with them.
  add("take_window_changes",
      "DELETE FROM debounced_changes WHERE window_id = $1 "
      "RETURNING id, change::text, run_finished_status, size_bytes");
  add("window_registration",
      "SELECT subscriber_url, source_url, include_response FROM wake_registrations "
      "WHERE id = $2 AND tenant_id = $1");
  add("delete_one_shot",
      "DELETE FROM wake_registrations WHERE id = $2 AND tenant_id = $1 AND one_shot");
  add("insert_window_wake",
      absl::StrCat("INSERT INTO wakes (tenant_id, stream, registration_id, source_event_key, "
                   "message, run_finished_status, include_response, size_bytes) "
                   "VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8) "
                   "ON CONFLICT (tenant_id, registration_id, source_event_key) DO NOTHING "
                   "RETURNING ",
                   kWakeColumns, ", ", kTxid));
  add("due_windows",
      "SELECT tenant_id, registration_id FROM debounce_windows WHERE deadline <= now() "
      "ORDER BY deadline LIMIT $1");
  // Sweeps of event keys and offset marks.
  //
  // Expired keys; the expired offsets of a registration that still exists
  // raise its mark.
  add("sweep_event_keys", SweepKeys("wake_event_keys", /*fold=*/false));
  add("sweep_offset_keys", SweepKeys("wake_offset_keys", /*fold=*/true));
  // Marks of registrations that are gone, a page at a time from a cursor.
  add("sweep_marks",
      "WITH page AS (SELECT tenant_id, registration_id FROM wake_offset_marks WHERE "
      "(tenant_id, registration_id) > ($1, $2) ORDER BY tenant_id, registration_id "
      "LIMIT $3), "
      "gone AS (DELETE FROM wake_offset_marks m USING page p WHERE m.tenant_id = "
      "p.tenant_id AND m.registration_id = p.registration_id AND NOT EXISTS (SELECT 1 FROM "
      "wake_registrations r WHERE r.id = p.registration_id AND r.tenant_id = p.tenant_id) "
      "RETURNING 1) "
      "SELECT p.tenant_id, p.registration_id, (SELECT count(*) FROM page) FROM page p "
      "ORDER BY p.tenant_id DESC, p.registration_id DESC LIMIT 1");
  // Group commit: many callers' upserts in one statement (one transaction).
  // Input: a JSON array of rows, each with its position "n". Rows another
  // transaction committed after this statement's snapshot conflict without
  // being returned; the caller runs those alone. Rows go in in key order, so
  // two batches racing for the same new rows wait on each other in one
  // order and cannot deadlock.
  add("insert_registrations",
      absl::StrCat("WITH input AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(n int, "
                   "tenant_id text, subscriber_url text, source_url text, condition jsonb, "
                   "debounce_ms int, timeout_ms int, one_shot bool, include_response bool, "
                   "manifest_key text)), "
                   "inserted AS (INSERT INTO wake_registrations (tenant_id, subscriber_url, "
                   "source_url, condition, debounce_ms, timeout_ms, one_shot, include_response, "
                   "manifest_key) SELECT tenant_id, subscriber_url, source_url, condition, "
                   "debounce_ms, timeout_ms, one_shot, include_response, manifest_key FROM input "
                   "ORDER BY ",
                   kIdentity,
                   " ON CONFLICT (tenant_id, subscriber_url, source_url, one_shot, "
                   "debounce_ms, timeout_ms, condition, manifest_key) DO NOTHING RETURNING *), "
                   "created AS (SELECT i.n, r.* FROM input i JOIN inserted r USING (",
                   kIdentity,
                   ")) "
                   "SELECT ",
                   kRegistrationColumns, ", n, true, ", kTxid,
                   " FROM created "
                   "UNION ALL SELECT ",
                   kRegistrationColumns,
                   ", n, false, 0 FROM (SELECT i.n, r.* "
                   "FROM input i JOIN wake_registrations r USING (",
                   kIdentity, ") WHERE i.n NOT IN (SELECT n FROM created)) existing"));
  // Group commit of wakes without gates (no one-shot delete, no timeout
  // consumption): a multi-row insert is the same as inserting them one by
  // one. Each event key goes in first; a draft whose key is already known
  // (or at or below its registration's mark) makes no wake.
  add("insert_wakes",
      absl::StrCat(
          "WITH input AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(n int, "
          "tenant_id text, stream text, registration_id bigint, source_event_key text, "
          "key_kind int, message jsonb, run_finished_status text, include_response bool, "
          "size_bytes int)), "
          "keyed_events AS (INSERT INTO wake_event_keys (tenant_id, registration_id, "
          "source_event_key) SELECT DISTINCT tenant_id, registration_id, source_event_key "
          "FROM input WHERE key_kind = 1 ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING "
          "RETURNING tenant_id, registration_id, source_event_key), "
          "keyed_offsets AS (INSERT INTO wake_offset_keys (tenant_id, registration_id, "
          "source_event_key) SELECT DISTINCT tenant_id, registration_id, source_event_key "
          "FROM input i WHERE key_kind = 2 AND NOT EXISTS (SELECT 1 FROM wake_offset_marks "
          "m WHERE m.tenant_id = i.tenant_id AND m.registration_id = i.registration_id AND "
          "i.source_event_key COLLATE \"C\" <= m.offset_mark) ORDER BY 1, 2, 3 "
          "ON CONFLICT DO NOTHING RETURNING tenant_id, registration_id, source_event_key), "
          "keyed AS (SELECT * FROM keyed_events UNION ALL SELECT * FROM keyed_offsets), "
          "admitted AS (SELECT i.* FROM input i WHERE i.key_kind = 0 OR EXISTS (SELECT 1 "
          "FROM keyed k WHERE k.tenant_id = i.tenant_id AND k.registration_id = "
          "i.registration_id AND k.source_event_key = i.source_event_key)), "
          "inserted AS (INSERT INTO wakes (tenant_id, stream, registration_id, "
          "source_event_key, message, run_finished_status, include_response, size_bytes) "
          "SELECT tenant_id, stream, registration_id, source_event_key, message, "
          "run_finished_status, include_response, size_bytes FROM admitted "
          "ORDER BY tenant_id, registration_id, source_event_key, n "
          "ON CONFLICT (tenant_id, registration_id, source_event_key) DO NOTHING "
          "RETURNING id, tenant_id, registration_id, source_event_key, created_at) "
          "SELECT i.n, r.id, (extract(epoch from r.created_at) * 1000000)::bigint, ",
          kTxid,
          " FROM admitted i JOIN inserted r USING (tenant_id, registration_id, "
          "source_event_key)"));
  // Claims, acks, heartbeats and releases (postgres_wake_store_claims.cc).
  //
  // Undoes a claim row that found its wakes gone (acked by a claim that ended
  // between the statement's snapshot and its row lock).
  add("drop_empty_claim",
      "DELETE FROM stream_claims s WHERE s.tenant_id = $1 AND s.stream = $2 AND "
      "s.claim_token = $3 AND NOT EXISTS (SELECT 1 FROM wakes w WHERE "
      "w.tenant_id = s.tenant_id AND w.stream = s.stream AND w.claim_token = $3)");
  // Claims of one or more streams (distinct within a batch) in one statement,
  // in one transaction with the drop_empty_claim that may follow it. `pending` keeps the streams
  // that have any wake; only for those is the claim row inserted, or taken over when its lease has
  // expired or was taken with the same idempotency key (a retry whose answer was lost; the primary
  // key arbitrates between claimers), in key order so concurrent batches cannot deadlock; only
  // where the row was taken are the stream's wakes marked with the token: in id order, as many as
  // fit in $2 wakes and $3 bytes (always the first); the others of the stream become pending again
  // (an expired claim's token is cleared), so the ack's more_pending brings them in the next claim.
  // Each input row comes back at least once: a claimed wake's columns (NULL when none), whether the
  // stream had wakes, the lease (NULL when a live claim won) and n. With $4
  // the transaction commits without waiting for its WAL flush (set_config
  // is local to the transaction; the last column only carries it out).
  add("claim_streams",
      "WITH input AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(n int, "
      "tenant_id text, stream text, claim_token text, runner_id text, session_id text, "
      "lease_ms bigint)), "
      "pending AS (SELECT i.* FROM input i WHERE EXISTS (SELECT 1 FROM wakes w WHERE "
      "w.tenant_id = i.tenant_id AND w.stream = i.stream)), "
      "taken AS (INSERT INTO stream_claims (tenant_id, stream, claim_token, runner_id, "
      "session_id, lease_expires_at) SELECT tenant_id, stream, claim_token, runner_id, "
      "session_id, now() + lease_ms * interval '1 millisecond' FROM pending "
      "ORDER BY tenant_id, stream "
      "ON CONFLICT (tenant_id, stream) DO UPDATE SET claim_token = EXCLUDED.claim_token, "
      "runner_id = EXCLUDED.runner_id, session_id = EXCLUDED.session_id, claimed_at = now(), "
      "lease_expires_at = EXCLUDED.lease_expires_at "
      "WHERE stream_claims.lease_expires_at <= now() "
      "OR stream_claims.claim_token = EXCLUDED.claim_token "
      "RETURNING tenant_id, stream, claim_token, "
      "(extract(epoch from lease_expires_at) * 1000000)::bigint AS lease), "
      "ranked AS (SELECT w.id, t.claim_token, row_number() OVER win AS rn, "
      "sum(w.size_bytes) OVER win AS running FROM wakes w JOIN taken t ON "
      "w.tenant_id = t.tenant_id AND w.stream = t.stream "
      "WINDOW win AS (PARTITION BY w.tenant_id, w.stream ORDER BY w.id)), "
      "picked AS (SELECT id, claim_token, rn = 1 OR (rn <= $2::bigint AND "
      "running <= $3::bigint) AS pick "
      "FROM ranked), "
      "unpicked AS (UPDATE wakes w SET claim_token = NULL, claimed_at = NULL FROM picked p "
      "WHERE w.id = p.id AND NOT p.pick AND w.claim_token IS NOT NULL RETURNING 1), "
      "claimed AS (UPDATE wakes w SET claim_token = p.claim_token, claimed_at = now() "
      "FROM picked p WHERE w.id = p.id AND p.pick RETURNING "
      "w.id, w.tenant_id, w.stream, w.registration_id, w.source_event_key, "
      "w.message::text AS message, w.run_finished_status, w.include_response, "
      "(extract(epoch from w.created_at) * 1000000)::bigint AS created_micros, "
      "w.claim_token AS token) "
      "SELECT c.id, c.tenant_id, c.stream, c.registration_id, c.source_event_key, "
      "c.message, c.run_finished_status, c.include_response, c.created_micros, "
      "p.n IS NOT NULL, t.lease, i.n, set_config('synchronous_commit', CASE WHEN "
      "$4::bool THEN 'off' ELSE current_setting('synchronous_commit') END, true) "
      "FROM input i LEFT JOIN pending p ON p.n = i.n "
      "LEFT JOIN taken t ON t.tenant_id = i.tenant_id AND t.stream = i.stream AND "
      "t.claim_token = i.claim_token "
      "LEFT JOIN claimed c ON c.tenant_id = i.tenant_id AND c.stream = i.stream AND "
      "c.token = i.claim_token");
  // Acks of one or more claims (tokens distinct within a batch) in one
  // statement: the claim rows are locked in key order (as claims, heartbeats
  // and the sweeper lock them, so no two of these statements can deadlock),
  // each live claim ends, its acked wakes are deleted (all of them
  // when the id list is empty), its other wakes return to pending, and each
  // input row reports whether its stream still has pending wakes. The two
  // wake sub-statements touch disjoint rows (ids in the list, ids not in it).
  add("ack_claims",
      "WITH input AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(n int, "
      "tenant_id text, stream text, claim_token text, ids bigint[])), "
      "locked AS (SELECT s.tenant_id, s.stream, s.claim_token, i.n FROM input i JOIN "
      "stream_claims s ON s.tenant_id = i.tenant_id AND s.stream = i.stream AND "
      "s.claim_token = i.claim_token ORDER BY s.tenant_id, s.stream FOR UPDATE OF s), "
      "ended AS (DELETE FROM stream_claims s USING locked l WHERE s.tenant_id = l.tenant_id "
      "AND s.stream = l.stream AND s.claim_token = l.claim_token RETURNING l.n), "
      "acked AS (DELETE FROM wakes w USING input i WHERE w.tenant_id = i.tenant_id AND "
      "w.stream = i.stream AND w.claim_token = i.claim_token AND "
      "i.n IN (SELECT n FROM ended) AND (cardinality(i.ids) = 0 OR w.id = ANY(i.ids)) "
      "RETURNING i.n), "
      "unclaimed AS (UPDATE wakes w SET claim_token = NULL, claimed_at = NULL FROM input i "
      "WHERE w.tenant_id = i.tenant_id AND w.stream = i.stream AND "
      "w.claim_token = i.claim_token AND i.n IN (SELECT n FROM ended) AND "
      "cardinality(i.ids) > 0 AND NOT (w.id = ANY(i.ids)) RETURNING i.n) "
      "SELECT i.n, EXISTS (SELECT 1 FROM ended e WHERE e.n = i.n), "
      "(SELECT count(*) FROM acked a WHERE a.n = i.n), "
      "EXISTS (SELECT 1 FROM unclaimed u WHERE u.n = i.n) OR EXISTS (SELECT 1 FROM wakes w "
      "WHERE w.tenant_id = i.tenant_id AND w.stream = i.stream AND w.claim_token IS NULL) "
      "FROM input i");
  add("release_claim",
      "WITH ended AS (DELETE FROM stream_claims WHERE tenant_id = $1 AND stream = $2 AND "
      "claim_token = $3 RETURNING 1), "
      "released AS (UPDATE wakes SET claim_token = NULL, claimed_at = NULL WHERE "
      "tenant_id = $1 AND stream = $2 AND claim_token = $3 AND "
      "EXISTS (SELECT 1 FROM ended) RETURNING id) "
      "SELECT EXISTS (SELECT 1 FROM ended), (SELECT count(*) FROM released)");
  // Every claim of a heartbeat in one statement; rows are locked in key order
  // (as claims take them), so a heartbeat and a claim batch cannot deadlock.
  add("extend_claims",
      "WITH input AS (SELECT DISTINCT * FROM jsonb_to_recordset($1::jsonb) AS "
      "i(tenant_id text, stream text, claim_token text)), "
      "locked AS (SELECT s.tenant_id, s.stream, s.claim_token FROM stream_claims s JOIN "
      "input i USING (tenant_id, stream, claim_token) ORDER BY s.tenant_id, s.stream "
      "FOR UPDATE OF s) "
      "UPDATE stream_claims s SET lease_expires_at = now() + $2 * interval '1 millisecond' "
      "FROM locked l WHERE s.tenant_id = l.tenant_id AND s.stream = l.stream AND "
      "s.claim_token = l.claim_token "
      "RETURNING s.tenant_id, s.stream, s.claim_token, "
      "(extract(epoch from s.lease_expires_at) * 1000000)::bigint");
  // Expired claims, locked in key order; rows another statement holds (a
  // claim taking one over) are left to it.
  add("release_expired",
      "WITH expired AS (SELECT tenant_id, stream, claim_token FROM stream_claims WHERE "
      "lease_expires_at <= now() ORDER BY tenant_id, stream FOR UPDATE SKIP LOCKED), "
      "ended AS (DELETE FROM stream_claims s USING expired e WHERE s.tenant_id = "
      "e.tenant_id AND s.stream = e.stream AND s.claim_token = e.claim_token RETURNING "
      "s.tenant_id, s.stream, s.claim_token), "
      "released AS (UPDATE wakes w SET claim_token = NULL, claimed_at = NULL FROM ended e "
      "WHERE w.tenant_id = e.tenant_id AND w.stream = e.stream AND w.claim_token = "
      "e.claim_token RETURNING w.id) "
      "SELECT (SELECT count(*) FROM ended), (SELECT count(*) FROM released)");
  return statements;
}

}  // namespace wake::registry
