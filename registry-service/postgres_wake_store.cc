#include "registry-service/postgres_wake_store.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <pqxx/pqxx>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace wake::registry {
namespace {

constexpr char kRegistrationColumns[] =
    "id, tenant_id, subscriber_url, source_url, condition::text, debounce_ms, timeout_ms, "
    "one_shot, timeout_consumed, include_response, manifest_key, "
    "(extract(epoch from created_at) * 1000000)::bigint";

constexpr char kWakeColumns[] =
    "id, tenant_id, stream, registration_id, source_event_key, message::text, "
    "run_finished_status, include_response, (extract(epoch from created_at) * 1000000)::bigint";

constexpr char kClaimNotLive[] =
    "claim_token: the claim is not live (expired and taken over, acked or released)";

constexpr char kTxid[] = "pg_current_xact_id()::text::bigint";

// The columns of the registrations' unique key.
constexpr char kIdentity[] =
    "tenant_id, subscriber_url, source_url, one_shot, debounce_ms, timeout_ms, condition, "
    "manifest_key";

// Concurrent batches of each kind, and rows per batch. One batch in flight
// (a classic single-writer group commit) gave the best rates here: at 16
// callers, 1 beat 2 by ~10% and 8 (batches of ~1) by ~25%, since fewer,
// larger transactions save CPU in Postgres, the walsender and our sync.
constexpr int kBatchesInFlight = 1;
constexpr size_t kMaxBatch = 64;

void AppendJsonString(std::string* out, absl::string_view text) {
  out->push_back('"');
  for (char c : text) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppend(out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

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

void Prepare(pqxx::connection& c) {
  // Every statement on these sessions finds its rows by key, for batches of at
  // most kMaxBatch input rows. The planner cannot see that: it takes every
  // jsonb_to_recordset input for 100 rows, so on a small `wakes` table (the
  // usual state: wakes are claimed and acked soon after they arrive) it
  // hash-joins claim and ack batches against full scans of `wakes` and
  // `stream_claims`, dead rows included. Penalising sequential scans keeps
  // them on the indexes; a query with no usable index still gets one.
  pqxx::nontransaction(c).exec0("SET enable_seqscan = off");
  // The read barrier waits for the stream to reach the server's WAL flush
  // position, so a write it must see has to be flushed before its commit
  // returns: with the server's synchronous_commit=off a confirmed
  // RegisterWake could slip past a barrier on another replica. Stronger
  // settings (on, remote_apply) are left as they are.
  pqxx::nontransaction(c).exec(
      "SELECT set_config('synchronous_commit', 'local', false) "
      "WHERE current_setting('synchronous_commit') = 'off'");
  c.prepare("insert_registration",
            absl::StrCat("INSERT INTO wake_registrations (tenant_id, subscriber_url, source_url, "
                         "condition, debounce_ms, timeout_ms, one_shot, include_response, "
                         "manifest_key) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9) "
                         "ON CONFLICT (tenant_id, subscriber_url, source_url, one_shot, "
                         "debounce_ms, timeout_ms, condition, manifest_key) DO NOTHING "
                         "RETURNING ",
                         kRegistrationColumns, ", ", kTxid));
  c.prepare("find_registration",
            absl::StrCat("SELECT ", kRegistrationColumns,
                         " FROM wake_registrations WHERE tenant_id = $1 AND subscriber_url = $2 "
                         "AND source_url = $3 AND condition = $4::jsonb AND debounce_ms = $5 AND "
                         "timeout_ms = $6 AND one_shot = $7 AND manifest_key = $8"));
  const std::string returning = absl::StrCat(" RETURNING id, ", kTxid);
  c.prepare("delete_by_subscriber_manifest",
            absl::StrCat("DELETE FROM wake_registrations WHERE tenant_id = $1 AND "
                         "subscriber_url = $2 AND manifest_key = $3",
                         returning));
  c.prepare("delete_by_subscriber",
            absl::StrCat("DELETE FROM wake_registrations WHERE tenant_id = $1 AND "
                         "subscriber_url = $2",
                         returning));
  c.prepare("delete_by_source",
            absl::StrCat("DELETE FROM wake_registrations WHERE tenant_id = $1 AND source_url = $2",
                         returning));
  c.prepare("delete_by_subscriber_source",
            absl::StrCat("DELETE FROM wake_registrations WHERE tenant_id = $1 AND "
                         "subscriber_url = $2 AND source_url = $3",
                         returning));
  // One statement: the event key, then the one-shot delete or timeout
  // consumption, gate the insert, so concurrent evaluations on different
  // replicas (and the same event evaluated again after its wake was acked)
  // cannot both deliver. $11 is the EventKeyKind.
  c.prepare("persist_wake",
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
  c.prepare(
      "buffer_match",
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
  c.prepare("close_window",
            "DELETE FROM debounce_windows WHERE tenant_id = $1 AND registration_id = $2 AND "
            "deadline <= now() RETURNING window_id, first_key");
  c.prepare("window_due_in",
            "SELECT GREATEST(0, (extract(epoch from deadline - clock_timestamp()) * 1000)"
            "::bigint) FROM debounce_windows WHERE tenant_id = $1 AND registration_id = $2");
  // The window's changes (the second statement of the close: its snapshot
  // holds every change of the window), its registration, and the wakes they
  // become: one, or several when the changes together pass --max-wake-bytes.
  // Nothing when the registration is gone (unregistered: its buffered
  // matches go with it); a one-shot registration is deleted with them.
  c.prepare("take_window_changes",
            "DELETE FROM debounced_changes WHERE window_id = $1 "
            "RETURNING id, change::text, run_finished_status, size_bytes");
  c.prepare("window_registration",
            "SELECT subscriber_url, source_url, include_response FROM wake_registrations "
            "WHERE id = $2 AND tenant_id = $1");
  c.prepare("delete_one_shot",
            "DELETE FROM wake_registrations WHERE id = $2 AND tenant_id = $1 AND one_shot");
  c.prepare("insert_window_wake",
            absl::StrCat("INSERT INTO wakes (tenant_id, stream, registration_id, source_event_key, "
                         "message, run_finished_status, include_response, size_bytes) "
                         "VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8) "
                         "ON CONFLICT (tenant_id, registration_id, source_event_key) DO NOTHING "
                         "RETURNING ",
                         kWakeColumns, ", ", kTxid));
  c.prepare("due_windows",
            "SELECT tenant_id, registration_id FROM debounce_windows WHERE deadline <= now() "
            "ORDER BY deadline LIMIT $1");
  // Expired keys; the expired offsets of a registration that still exists
  // raise its mark.
  c.prepare("sweep_event_keys", SweepKeys("wake_event_keys", /*fold=*/false));
  c.prepare("sweep_offset_keys", SweepKeys("wake_offset_keys", /*fold=*/true));
  // Marks of registrations that are gone, a page at a time from a cursor.
  c.prepare("sweep_marks",
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
  c.prepare(
      "insert_registrations",
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
  c.prepare("insert_wakes",
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
  // Undoes a claim row that found its wakes gone (acked by a claim that ended
  // between the statement's snapshot and its row lock).
  c.prepare("drop_empty_claim",
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
  c.prepare("claim_streams",
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
  c.prepare("ack_claims",
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
  c.prepare("release_claim",
            "WITH ended AS (DELETE FROM stream_claims WHERE tenant_id = $1 AND stream = $2 AND "
            "claim_token = $3 RETURNING 1), "
            "released AS (UPDATE wakes SET claim_token = NULL, claimed_at = NULL WHERE "
            "tenant_id = $1 AND stream = $2 AND claim_token = $3 AND "
            "EXISTS (SELECT 1 FROM ended) RETURNING id) "
            "SELECT EXISTS (SELECT 1 FROM ended), (SELECT count(*) FROM released)");
  // Every claim of a heartbeat in one statement; rows are locked in key order
  // (as claims take them), so a heartbeat and a claim batch cannot deadlock.
  c.prepare("extend_claims",
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
  c.prepare("release_expired",
            "WITH expired AS (SELECT tenant_id, stream, claim_token FROM stream_claims WHERE "
            "lease_expires_at <= now() ORDER BY tenant_id, stream FOR UPDATE SKIP LOCKED), "
            "ended AS (DELETE FROM stream_claims s USING expired e WHERE s.tenant_id = "
            "e.tenant_id AND s.stream = e.stream AND s.claim_token = e.claim_token RETURNING "
            "s.tenant_id, s.stream, s.claim_token), "
            "released AS (UPDATE wakes w SET claim_token = NULL, claimed_at = NULL FROM ended e "
            "WHERE w.tenant_id = e.tenant_id AND w.stream = e.stream AND w.claim_token = "
            "e.claim_token RETURNING w.id) "
            "SELECT (SELECT count(*) FROM ended), (SELECT count(*) FROM released)");
}

absl::Time FromMicros(int64_t micros) { return absl::FromUnixMicros(micros); }

absl::StatusOr<sync::Registration> RowToRegistration(const pqxx::row& r) {
  sync::Registration row;
  row.id = r[0].as<int64_t>();
  row.tenant_id = r[1].c_str();
  row.subscriber_url = r[2].c_str();
  row.source_url = r[3].c_str();
  absl::StatusOr<sync::Condition> condition = sync::ConditionFromJson(r[4].c_str());
  if (!condition.ok()) return condition.status();
  row.condition = *condition;
  row.debounce_ms = r[5].as<int32_t>();
  row.timeout_ms = r[6].as<int32_t>();
  row.one_shot = r[7].as<bool>();
  row.timeout_consumed = r[8].as<bool>();
  row.include_response = r[9].as<bool>();
  row.manifest_key = r[10].c_str();
  row.created_at = FromMicros(r[11].as<int64_t>());
  return row;
}

absl::StatusOr<v1::Wake> RowToWake(const pqxx::row& r) {
  v1::Wake wake;
  wake.set_id(r[0].as<int64_t>());
  wake.set_tenant_id(r[1].c_str());
  wake.set_stream(r[2].c_str());
  wake.set_registration_id(r[3].as<int64_t>());
  wake.set_source_event_key(r[4].c_str());
  absl::StatusOr<v1::WakeMessage> message = WakeMessageFromJson(r[5].c_str());
  if (!message.ok()) return message.status();
  *wake.mutable_message() = std::move(*message);
  v1::RunStatus status = v1::RUN_STATUS_UNSPECIFIED;
  if (!r[6].is_null()) v1::RunStatus_Parse(r[6].c_str(), &status);
  wake.set_run_finished_status(status);
  wake.set_include_response(r[7].as<bool>());
  common::ToProto(FromMicros(r[8].as<int64_t>()), wake.mutable_created_at());
  return wake;
}

// A claim token acts as a capability (it acks and releases the claim), so it
// comes from OpenSSL's CSPRNG: 128 bits, as 32 hex digits.
absl::StatusOr<std::string> NewClaimToken() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    // Never hand out a guessable token: no claim is taken without one.
    return absl::InternalError("claim token: the CSPRNG failed");
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

// The token of a claim made with an idempotency key: the same for every
// attempt with that key on that stream, and different on any other stream or
// tenant (tokens are unique across stream_claims). As unguessable as the key.
std::string IdempotentClaimToken(const ClaimSpec& claim) {
  std::string input = "wakeline claim token v1";
  for (const std::string* part : {&claim.tenant_id, &claim.stream, &claim.idempotency_key}) {
    // Each part with its length first, so no two tuples give the same input.
    absl::StrAppend(&input, "|", part->size(), ":", *part);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  // 128 bits, the size of a random token.
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), 16));
}

int64_t LeaseMillis(absl::Duration lease) { return absl::ToInt64Milliseconds(lease); }

// A claim or ack statement slower than this is logged: its callers' deadlines
// (the runtime's is 10 s) may pass before the answer arrives, and a claim the
// caller never hears of holds its stream until the caller retries with the
// same token or the lease runs out.
constexpr absl::Duration kSlowStatement = absl::Seconds(1);

void WarnIfSlow(const char* event, absl::Time started, size_t entries, const absl::Status& status) {
  const absl::Duration took = absl::Now() - started;
  if (took < kSlowStatement) return;
  common::LogWarn(event, {{"entries", static_cast<int64_t>(entries)},
                          {"ms", absl::ToInt64Milliseconds(took)},
                          {"status", status}});
}

}  // namespace

int64_t WakeSizeBytes(const std::string& tenant_id, const std::string& stream,
                      const std::string& source_event_key, const v1::WakeMessage& message) {
  // Field tags and lengths (at most 5 bytes each), the id and registration id
  // (10 each), run status, include_response and created_at (about 20), and
  // the Wake's own framing in the repeated field.
  constexpr int64_t kFixed = 64;
  return kFixed + static_cast<int64_t>(tenant_id.size() + stream.size() + source_event_key.size() +
                                       message.ByteSizeLong());
}

std::string WakeMessageToJson(const v1::WakeMessage& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

std::string WakeChangeToJson(const v1::WakeChange& change) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(change, &json, options);
  return json;
}

absl::StatusOr<v1::WakeMessage> WakeMessageFromJson(const std::string& json) {
  v1::WakeMessage message;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(json, &message, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("stored wake message unreadable: ", status.ToString()));
  }
  return message;
}

PostgresWakeStore::PostgresWakeStore(const std::string& database_url, int pool_size,
                                     common::Executor& executor, StoreLimits limits)
    : limits_(limits),
      pool_(database_url, pool_size, absl::Seconds(5), Prepare),
      upserts_(
          kBatchesInFlight, kMaxBatch,
          [this](const std::vector<const sync::Registration*>& rows) {
            ObserveBatch("upsert", rows.size());
            return UpsertBatch(rows);
          },
          &executor),
      persists_(
          kBatchesInFlight, kMaxBatch,
          [this](const std::vector<const std::vector<WakeDraft>*>& calls) {
            ObserveBatch("persist", calls.size());
            return PersistBatch(calls);
          },
          &executor),
      claims_(kBatchesInFlight, kMaxBatch,
              [this](const std::vector<const ClaimSpec*>& calls) {
                ObserveBatch("claim", calls.size());
                return StatementOrEachAlone<ClaimResult>("claim_batch_failed", calls,
                                                         &PostgresWakeStore::ClaimStatement);
              }),
      acks_(kBatchesInFlight, kMaxBatch, [this](const std::vector<const AckSpec*>& calls) {
        ObserveBatch("ack", calls.size());
        return StatementOrEachAlone<AckResult>("ack_batch_failed", calls,
                                               &PostgresWakeStore::AckStatement);
      }) {}

PostgresWakeStore::~PostgresWakeStore() {
  const auto [upsert_batches, upserts] = upserts_.Stats();
  const auto [persist_batches, persists] = persists_.Stats();
  const auto [claim_batches, claims] = claims_.Stats();
  const auto [ack_batches, acks] = acks_.Stats();
  common::LogInfo("group_commit_stats", {{"upsert_batches", upsert_batches},
                                         {"upserts", upserts},
                                         {"persist_batches", persist_batches},
                                         {"persists", persists},
                                         {"claim_batches", claim_batches},
                                         {"claims", claims},
                                         {"ack_batches", ack_batches},
                                         {"acks", acks}});
}

absl::StatusOr<UpsertResult> PostgresWakeStore::UpsertRegistration(const sync::Registration& row) {
  return upserts_.Submit(row);
}

void PostgresWakeStore::UpsertRegistrationAsync(
    const sync::Registration& row, std::function<void(absl::StatusOr<UpsertResult>)> done) {
  upserts_.SubmitAsync(row, std::move(done));
}

absl::StatusOr<UpsertResult> PostgresWakeStore::UpsertAlone(const sync::Registration& row) {
  UpsertResult result;
  const std::string condition = sync::ConditionToJson(row.condition);
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    // A concurrent delete can remove the conflicting row between the two
    // statements; then simply try again.
    for (int attempt = 0; attempt < 3; ++attempt) {
      pqxx::nontransaction tx(c);
      pqxx::result inserted = tx.exec_prepared(
          "insert_registration", row.tenant_id, row.subscriber_url, row.source_url, condition,
          row.debounce_ms, row.timeout_ms, row.one_shot, row.include_response, row.manifest_key);
      if (!inserted.empty()) {
        absl::StatusOr<sync::Registration> stored = RowToRegistration(inserted[0]);
        if (!stored.ok()) return stored.status();
        result.row = *stored;
        result.created = true;
        result.txid = inserted[0][12].as<int64_t>();
        return absl::OkStatus();
      }
      pqxx::result found = tx.exec_prepared("find_registration", row.tenant_id, row.subscriber_url,
                                            row.source_url, condition, row.debounce_ms,
                                            row.timeout_ms, row.one_shot, row.manifest_key);
      if (!found.empty()) {
        absl::StatusOr<sync::Registration> stored = RowToRegistration(found[0]);
        if (!stored.ok()) return stored.status();
        result.row = *stored;
        result.created = false;
        result.txid = 0;
        return absl::OkStatus();
      }
    }
    return absl::AbortedError("registration changed concurrently; retry");
  });
  if (!status.ok()) return status;
  return result;
}

std::vector<absl::StatusOr<UpsertResult>> PostgresWakeStore::UpsertBatch(
    const std::vector<const sync::Registration*>& rows) {
  std::vector<absl::StatusOr<UpsertResult>> results;
  results.reserve(rows.size());
  if (rows.size() == 1) {
    results.push_back(UpsertAlone(*rows[0]));
    return results;
  }
  std::string input = "[";
  for (size_t n = 0; n < rows.size(); ++n) {
    const sync::Registration& row = *rows[n];
    absl::StrAppend(&input, n == 0 ? "" : ",", "{\"n\":", n, ",\"tenant_id\":");
    AppendJsonString(&input, row.tenant_id);
    input.append(",\"subscriber_url\":");
    AppendJsonString(&input, row.subscriber_url);
    input.append(",\"source_url\":");
    AppendJsonString(&input, row.source_url);
    absl::StrAppend(&input, ",\"condition\":", sync::ConditionToJson(row.condition),
                    ",\"debounce_ms\":", row.debounce_ms, ",\"timeout_ms\":", row.timeout_ms,
                    ",\"one_shot\":", row.one_shot ? "true" : "false",
                    ",\"include_response\":", row.include_response ? "true" : "false",
                    ",\"manifest_key\":");
    AppendJsonString(&input, row.manifest_key);
    input.append("}");
  }
  input.append("]");
  std::vector<std::optional<UpsertResult>> settled(rows.size());
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    pqxx::nontransaction tx(c);
    for (const auto& r : tx.exec_prepared("insert_registrations", input)) {
      const int64_t n = r[12].as<int64_t>();
      if (n < 0 || static_cast<size_t>(n) >= rows.size() || settled[n].has_value()) continue;
      absl::StatusOr<sync::Registration> stored = RowToRegistration(r);
      if (!stored.ok()) continue;  // Left to the single-row path, which reports it.
      settled[n] = UpsertResult{*std::move(stored), r[13].as<bool>(), r[14].as<int64_t>()};
    }
    return absl::OkStatus();
  });
  if (!status.ok()) {
    ++failed_batches_;
    common::LogDebug("upsert_batch_failed",
                     {{"rows", rows.size()}, {"error", std::string(status.message())}});
  }
  // Identical rows in one batch: the first created the row, the others found
  // it, as if they had run one after the other.
  absl::flat_hash_set<int64_t> created;
  for (std::optional<UpsertResult>& result : settled) {
    if (result.has_value() && result->created && !created.insert(result->row.id).second) {
      result->created = false;
      result->txid = 0;
    }
  }
  // What the batch did not settle (it failed, or another transaction
  // committed a conflicting row after its snapshot) runs alone.
  for (size_t n = 0; n < rows.size(); ++n) {
    if (settled[n].has_value()) {
      results.push_back(*std::move(settled[n]));
    } else {
      results.push_back(UpsertAlone(*rows[n]));
    }
  }
  return results;
}

absl::StatusOr<DeleteResult> PostgresWakeStore::DeleteRegistrations(
    const UnregisterSelector& selector) {
  DeleteResult result;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    pqxx::nontransaction tx(c);
    pqxx::result rows;
    switch (selector.kind) {
      case UnregisterSelector::Kind::kSubscriberManifest:
        rows = tx.exec_prepared("delete_by_subscriber_manifest", selector.tenant_id,
                                selector.subscriber_url, selector.manifest_key);
        break;
      case UnregisterSelector::Kind::kSubscriber:
        rows =
            tx.exec_prepared("delete_by_subscriber", selector.tenant_id, selector.subscriber_url);
        break;
      case UnregisterSelector::Kind::kSource:
        rows = tx.exec_prepared("delete_by_source", selector.tenant_id, selector.source_url);
        break;
      case UnregisterSelector::Kind::kSubscriberSource:
        rows = tx.exec_prepared("delete_by_subscriber_source", selector.tenant_id,
                                selector.subscriber_url, selector.source_url);
        break;
    }
    for (const auto& row : rows) {
      result.ids.push_back(row[0].as<int64_t>());
      result.txid = row[1].as<int64_t>();
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return result;
}

namespace {

// Drafts that cannot share a plain multi-row insert: gated by their
// registration (one-shot, timeouts) or joining a debounce window.
bool NeedsOwnStatement(const WakeDraft& draft) {
  return draft.delete_registration || draft.consume_timeout || draft.require_timeout_unconsumed ||
         draft.debounce_ms > 0;
}

}  // namespace

absl::StatusOr<PersistResult> PostgresWakeStore::PersistWakes(
    const std::vector<WakeDraft>& drafts) {
  if (drafts.empty()) return PersistResult();
  // Such drafts keep their own statements, in order, in one transaction.
  if (std::any_of(drafts.begin(), drafts.end(), NeedsOwnStatement)) return PersistAlone(drafts);
  return persists_.Submit(drafts);
}

void PostgresWakeStore::PersistWakesAsync(const std::vector<WakeDraft>& drafts,
                                          std::function<void(absl::StatusOr<PersistResult>)> done) {
  if (std::any_of(drafts.begin(), drafts.end(), NeedsOwnStatement)) {
    done(PersistAlone(drafts));  // On the caller's thread.
    return;
  }
  if (drafts.empty()) {
    done(PersistResult());
    return;
  }
  persists_.SubmitAsync(drafts, std::move(done));
}

namespace {

v1::Wake WakeFromDraft(const WakeDraft& draft, int64_t id, int64_t created_micros) {
  v1::Wake wake;
  wake.set_id(id);
  wake.set_tenant_id(draft.tenant_id);
  wake.set_stream(draft.stream);
  wake.set_registration_id(draft.registration_id);
  wake.set_source_event_key(draft.source_event_key);
  *wake.mutable_message() = draft.message;
  wake.set_run_finished_status(draft.run_finished_status);
  wake.set_include_response(draft.include_response);
  common::ToProto(FromMicros(created_micros), wake.mutable_created_at());
  return wake;
}

}  // namespace

absl::StatusOr<PersistResult> PostgresWakeStore::PersistAlone(
    const std::vector<WakeDraft>& drafts) {
  PersistResult result;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    result = PersistResult();
    auto persist = [&](pqxx::transaction_base& tx, const WakeDraft& draft) {
      const char* run_status = draft.run_finished_status == v1::RUN_STATUS_UNSPECIFIED
                                   ? nullptr
                                   : v1::RunStatus_Name(draft.run_finished_status).c_str();
      const int key_kind = static_cast<int>(draft.key_kind);
      if (draft.debounce_ms > 0) {
        // The draft's message holds the one change it brings to the window.
        const std::string change =
            draft.message.changes_size() > 0 ? WakeChangeToJson(draft.message.changes(0)) : "{}";
        // What the change adds to the window's wake message (field tag and
        // length included).
        const int64_t size = draft.message.changes_size() > 0
                                 ? static_cast<int64_t>(draft.message.changes(0).ByteSizeLong()) + 6
                                 : 0;
        pqxx::result rows = tx.exec_prepared(
            "buffer_match", draft.tenant_id, draft.registration_id, draft.source_event_key,
            key_kind, draft.debounce_ms, change, run_status, draft.consume_timeout, size,
            limits_.debounce_max_changes, limits_.debounce_max_bytes);
        if (rows.empty()) return;
        result.txid = rows[0][1].as<int64_t>();
        result.buffered.push_back(BufferedMatch{draft.tenant_id, draft.registration_id,
                                                rows[0][0].as<int64_t>(), rows[0][2].as<bool>()});
        return;
      }
      pqxx::result rows = tx.exec_prepared(
          "persist_wake", draft.tenant_id, draft.stream, draft.registration_id,
          draft.source_event_key, WakeMessageToJson(draft.message), run_status,
          draft.include_response, draft.delete_registration, draft.consume_timeout,
          draft.require_timeout_unconsumed, key_kind,
          WakeSizeBytes(draft.tenant_id, draft.stream, draft.source_event_key, draft.message));
      if (rows.empty()) return;
      result.txid = rows[0][2].as<int64_t>();
      result.wakes.push_back(
          WakeFromDraft(draft, rows[0][0].as<int64_t>(), rows[0][1].as<int64_t>()));
    };
    if (drafts.size() == 1) {
      pqxx::nontransaction tx(c);  // One statement: autocommit saves two round trips.
      persist(tx, drafts.front());
      return absl::OkStatus();
    }
    pqxx::work tx(c);
    for (const WakeDraft& draft : drafts) persist(tx, draft);
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return result;
}

std::vector<absl::StatusOr<PersistResult>> PostgresWakeStore::PersistBatch(
    const std::vector<const std::vector<WakeDraft>*>& calls) {
  std::vector<absl::StatusOr<PersistResult>> results;
  results.reserve(calls.size());
  if (calls.size() == 1) {
    results.push_back(PersistAlone(*calls[0]));
    return results;
  }
  // Every draft of every call, numbered in order.
  std::vector<std::pair<size_t, size_t>> where;
  std::string input = "[";
  for (size_t call = 0; call < calls.size(); ++call) {
    for (size_t i = 0; i < calls[call]->size(); ++i) {
      const WakeDraft& draft = (*calls[call])[i];
      absl::StrAppend(&input, where.empty() ? "" : ",", "{\"n\":", where.size(), ",\"tenant_id\":");
      where.emplace_back(call, i);
      AppendJsonString(&input, draft.tenant_id);
      input.append(",\"stream\":");
      AppendJsonString(&input, draft.stream);
      absl::StrAppend(&input, ",\"registration_id\":", draft.registration_id,
                      ",\"key_kind\":", static_cast<int>(draft.key_kind), ",\"source_event_key\":");
      AppendJsonString(&input, draft.source_event_key);
      absl::StrAppend(&input, ",\"message\":", WakeMessageToJson(draft.message),
                      ",\"run_finished_status\":");
      if (draft.run_finished_status == v1::RUN_STATUS_UNSPECIFIED) {
        input.append("null");
      } else {
        AppendJsonString(&input, v1::RunStatus_Name(draft.run_finished_status));
      }
      absl::StrAppend(
          &input, ",\"include_response\":", draft.include_response ? "true" : "false",
          ",\"size_bytes\":",
          WakeSizeBytes(draft.tenant_id, draft.stream, draft.source_event_key, draft.message), "}");
    }
  }
  input.append("]");
  struct Inserted {
    int64_t id = 0;
    int64_t created_micros = 0;
  };
  std::vector<std::optional<Inserted>> inserted(where.size());
  int64_t txid = 0;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    pqxx::nontransaction tx(c);
    pqxx::result rows = tx.exec_prepared("insert_wakes", input);
    // The same event twice in one batch: the first draft inserted the wake,
    // the other was a duplicate, as if they had run one after the other.
    absl::flat_hash_map<int64_t, int64_t> first_draft;
    for (const auto& r : rows) {
      const int64_t n = r[0].as<int64_t>();
      const int64_t id = r[1].as<int64_t>();
      auto [it, fresh] = first_draft.try_emplace(id, n);
      if (!fresh && n < it->second) it->second = n;
    }
    for (const auto& r : rows) {
      const int64_t n = r[0].as<int64_t>();
      if (n < 0 || static_cast<size_t>(n) >= where.size()) continue;
      if (first_draft.at(r[1].as<int64_t>()) != n) continue;
      inserted[n] = Inserted{r[1].as<int64_t>(), r[2].as<int64_t>()};
      txid = r[3].as<int64_t>();
    }
    return absl::OkStatus();
  });
  if (!status.ok()) {
    return EachAlone<PersistResult>(
        "persist_batch_failed", status, calls,
        [this](const std::vector<WakeDraft>& drafts) { return PersistAlone(drafts); });
  }
  std::vector<PersistResult> persisted(calls.size());
  for (size_t n = 0; n < where.size(); ++n) {
    if (!inserted[n].has_value()) continue;
    const auto [call, i] = where[n];
    persisted[call].wakes.push_back(
        WakeFromDraft((*calls[call])[i], inserted[n]->id, inserted[n]->created_micros));
    persisted[call].txid = txid;
  }
  for (PersistResult& result : persisted) results.push_back(std::move(result));
  return results;
}

absl::StatusOr<ClaimResult> PostgresWakeStore::ClaimWakes(const std::string& tenant_id,
                                                          const std::string& stream,
                                                          const std::string& runner_id,
                                                          const std::string& session_id,
                                                          absl::Duration lease) {
  return claims_.Submit(
      ClaimSpec{tenant_id, stream, runner_id, session_id, lease, /*idempotency_key=*/""});
}

std::vector<absl::StatusOr<ClaimResult>> PostgresWakeStore::ClaimStreams(
    const std::vector<ClaimSpec>& claims) {
  return claims_.SubmitMany(claims);
}

absl::StatusOr<AckResult> PostgresWakeStore::AckWakes(const ClaimKey& claim,
                                                      const std::vector<int64_t>& wake_ids) {
  return acks_.Submit(AckSpec{claim, wake_ids, std::nullopt});
}

std::vector<absl::StatusOr<AckResult>> PostgresWakeStore::AckClaims(
    const std::vector<AckSpec>& acks) {
  return acks_.SubmitMany(acks);
}

absl::StatusOr<std::vector<absl::StatusOr<ClaimResult>>> PostgresWakeStore::ClaimStatement(
    const std::vector<const ClaimSpec*>& calls) {
  std::vector<ClaimResult> claimed;
  const absl::Time started = absl::Now();
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    // One transaction: an empty claim row (see drop_empty_claim) is never
    // visible to other claimers. Nothing waits for its flush: a claim lost
    // in a crash only makes its wakes pending again.
    pqxx::work tx(c);
    absl::StatusOr<std::vector<ClaimResult>> results = RunClaims(tx, calls, /*async=*/true);
    if (!results.ok()) return results.status();
    tx.commit();
    claimed = *std::move(results);
    return absl::OkStatus();
  });
  WarnIfSlow("slow_claim_statement", started, calls.size(), status);
  if (!status.ok()) return status;
  std::vector<absl::StatusOr<ClaimResult>> results;
  results.reserve(claimed.size());
  for (ClaimResult& result : claimed) results.push_back(std::move(result));
  return results;
}

absl::StatusOr<std::vector<ClaimResult>> PostgresWakeStore::RunClaims(
    pqxx::transaction_base& tx, const std::vector<const ClaimSpec*>& calls, bool async) {
  // A stream claimed twice in one batch: the first call goes to the database;
  // the others are answered as if they ran right after it.
  std::vector<size_t> first(calls.size());
  absl::flat_hash_map<std::pair<std::string, std::string>, size_t> seen;
  std::vector<std::string> tokens(calls.size());
  std::string input = "[";
  for (size_t n = 0; n < calls.size(); ++n) {
    const ClaimSpec& call = *calls[n];
    auto [it, fresh] = seen.try_emplace(std::make_pair(call.tenant_id, call.stream), n);
    first[n] = it->second;
    if (!fresh) continue;
    if (!call.idempotency_key.empty()) {
      tokens[n] = IdempotentClaimToken(call);
    } else {
      absl::StatusOr<std::string> token = NewClaimToken();
      if (!token.ok()) return token.status();
      tokens[n] = *std::move(token);
    }
    absl::StrAppend(&input, input.size() == 1 ? "" : ",", "{\"n\":", n, ",\"tenant_id\":");
    AppendJsonString(&input, call.tenant_id);
    input.append(",\"stream\":");
    AppendJsonString(&input, call.stream);
    absl::StrAppend(&input, ",\"claim_token\":\"", tokens[n], "\",\"runner_id\":");
    AppendJsonString(&input, call.runner_id);
    input.append(",\"session_id\":");
    AppendJsonString(&input, call.session_id);
    absl::StrAppend(&input, ",\"lease_ms\":", LeaseMillis(call.lease), "}");
  }
  input.append("]");
  std::vector<ClaimResult> settled(calls.size());
  std::vector<size_t> empty_claims;
  pqxx::result rows = tx.exec_prepared("claim_streams", input, limits_.max_claim_wakes,
                                       limits_.max_claim_bytes, async);
  constexpr int kHasWakes = 9;
  constexpr int kLease = 10;
  constexpr int kN = 11;
  for (const auto& row : rows) {
    const int64_t n = row[kN].as<int64_t>();
    if (n < 0 || static_cast<size_t>(n) >= calls.size() || first[n] != static_cast<size_t>(n)) {
      return absl::InternalError("claim batch: unexpected row");
    }
    ClaimResult& result = settled[n];
    if (!row[kHasWakes].as<bool>()) {
      result.status = v1::NOTHING_PENDING;
    } else if (row[kLease].is_null()) {
      result.status = v1::ALREADY_CLAIMED;
    } else if (row[0].is_null()) {
      result.status = v1::NOTHING_PENDING;
      empty_claims.push_back(n);
    } else {
      absl::StatusOr<v1::Wake> wake = RowToWake(row);
      if (!wake.ok()) return wake.status();
      result.status = v1::CLAIMED;
      result.claim_token = tokens[n];
      result.lease_expires_at = FromMicros(row[kLease].as<int64_t>());
      result.wakes.push_back(*std::move(wake));
    }
  }
  for (const size_t n : empty_claims) {
    tx.exec_prepared("drop_empty_claim", calls[n]->tenant_id, calls[n]->stream, tokens[n]);
  }
  for (size_t n = 0; n < calls.size(); ++n) {
    if (first[n] == n) {
      std::sort(settled[n].wakes.begin(), settled[n].wakes.end(),
                [](const v1::Wake& a, const v1::Wake& b) { return a.id() < b.id(); });
      continue;
    }
    ClaimResult repeat;
    repeat.status =
        settled[first[n]].status == v1::CLAIMED ? v1::ALREADY_CLAIMED : settled[first[n]].status;
    settled[n] = std::move(repeat);
  }
  return settled;
}

absl::StatusOr<std::vector<absl::StatusOr<AckResult>>> PostgresWakeStore::AckStatement(
    const std::vector<const AckSpec*>& calls) {
  // A claim acked twice in one batch: the first ack ends it, so the others
  // find it no longer live, as if they ran right after.
  std::vector<bool> repeat(calls.size(), false);
  absl::flat_hash_set<std::string> seen;
  bool claims_next = false;
  std::string input = "[";
  for (size_t n = 0; n < calls.size(); ++n) {
    const AckSpec& call = *calls[n];
    if (!seen.insert(call.claim.claim_token).second) {
      repeat[n] = true;
      continue;
    }
    claims_next |= call.next.has_value();
    absl::StrAppend(&input, input.size() == 1 ? "" : ",", "{\"n\":", n, ",\"tenant_id\":");
    AppendJsonString(&input, call.claim.tenant_id);
    input.append(",\"stream\":");
    AppendJsonString(&input, call.claim.stream);
    input.append(",\"claim_token\":");
    AppendJsonString(&input, call.claim.claim_token);
    absl::StrAppend(&input, ",\"ids\":[", absl::StrJoin(call.wake_ids, ","), "]}");
  }
  input.append("]");
  std::vector<std::optional<AckResult>> settled(calls.size());
  const absl::Time started = absl::Now();
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    settled.assign(calls.size(), std::nullopt);
    auto ack = [&](pqxx::transaction_base& tx) -> absl::Status {
      for (const auto& row : tx.exec_prepared("ack_claims", input)) {
        const int64_t n = row[0].as<int64_t>();
        if (n < 0 || static_cast<size_t>(n) >= calls.size() || repeat[n]) {
          return absl::InternalError("ack batch: unexpected row");
        }
        if (!row[1].as<bool>()) continue;  // Not live: answered below.
        settled[n] = AckResult{row[2].as<int64_t>(), row[3].as<bool>(), std::nullopt};
      }
      return absl::OkStatus();
    };
    if (!claims_next) {
      pqxx::nontransaction tx(c);  // One statement.
      return ack(tx);
    }
    // The acks, then the claims of the streams still pending, in one
    // transaction: the ack's row locks keep every other claimer out between
    // the two, and one commit (flushed: it holds acks) covers both.
    pqxx::work tx(c);
    if (absl::Status s = ack(tx); !s.ok()) return s;
    std::vector<const ClaimSpec*> next;
    std::vector<size_t> next_of;
    for (size_t n = 0; n < calls.size(); ++n) {
      if (settled[n].has_value() && settled[n]->more_pending && calls[n]->next.has_value()) {
        next.push_back(&*calls[n]->next);
        next_of.push_back(n);
      }
    }
    if (!next.empty()) {
      absl::StatusOr<std::vector<ClaimResult>> claimed = RunClaims(tx, next, /*async=*/false);
      if (!claimed.ok()) return claimed.status();
      for (size_t i = 0; i < next.size(); ++i) settled[next_of[i]]->next = (*claimed)[i];
    }
    tx.commit();
    return absl::OkStatus();
  });
  WarnIfSlow("slow_ack_statement", started, calls.size(), status);
  if (!status.ok()) return status;
  std::vector<absl::StatusOr<AckResult>> results;
  results.reserve(calls.size());
  for (size_t n = 0; n < calls.size(); ++n) {
    if (settled[n].has_value()) {
      results.push_back(*std::move(settled[n]));
    } else {
      results.push_back(absl::FailedPreconditionError(kClaimNotLive));
    }
  }
  return results;
}

absl::StatusOr<std::vector<ExtendResult>> PostgresWakeStore::ExtendClaims(
    const std::vector<ClaimKey>& claims, absl::Duration lease) {
  std::vector<ExtendResult> results;
  for (const ClaimKey& claim : claims) results.push_back(ExtendResult{claim, false, {}});
  if (claims.empty()) return results;
  std::string input = "[";
  for (const ClaimKey& claim : claims) {
    input.append(input.size() == 1 ? "{\"tenant_id\":" : ",{\"tenant_id\":");
    AppendJsonString(&input, claim.tenant_id);
    input.append(",\"stream\":");
    AppendJsonString(&input, claim.stream);
    input.append(",\"claim_token\":");
    AppendJsonString(&input, claim.claim_token);
    input.append("}");
  }
  input.append("]");
  using Key = std::tuple<std::string, std::string, std::string>;
  absl::flat_hash_map<Key, absl::Time> extended;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    extended.clear();
    pqxx::nontransaction tx(c);  // One statement.
    for (const auto& row : tx.exec_prepared("extend_claims", input, LeaseMillis(lease))) {
      extended[Key(row[0].c_str(), row[1].c_str(), row[2].c_str())] =
          FromMicros(row[3].as<int64_t>());
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  for (ExtendResult& result : results) {
    auto it =
        extended.find(Key(result.claim.tenant_id, result.claim.stream, result.claim.claim_token));
    if (it == extended.end()) continue;
    result.extended = true;
    result.lease_expires_at = it->second;
  }
  return results;
}

absl::StatusOr<int64_t> PostgresWakeStore::ReleaseClaim(const ClaimKey& claim) {
  int64_t released = 0;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    pqxx::nontransaction tx(c);  // One statement.
    pqxx::row row =
        tx.exec_prepared1("release_claim", claim.tenant_id, claim.stream, claim.claim_token);
    if (!row[0].as<bool>()) {
      return absl::FailedPreconditionError(kClaimNotLive);
    }
    released = row[1].as<int64_t>();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return released;
}

absl::StatusOr<int64_t> PostgresWakeStore::ReleaseExpiredClaims() {
  int64_t ended = 0;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    pqxx::nontransaction tx(c);
    ended = tx.exec_prepared("release_expired")[0][0].as<int64_t>();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return ended;
}

absl::StatusOr<WindowResult> PostgresWakeStore::CloseDebounceWindow(const WindowKey& window) {
  WindowResult result;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    result = WindowResult();
    pqxx::work tx(c);
    pqxx::result closed =
        tx.exec_prepared("close_window", window.tenant_id, window.registration_id);
    if (closed.empty()) {
      pqxx::result open =
          tx.exec_prepared("window_due_in", window.tenant_id, window.registration_id);
      tx.commit();
      if (!open.empty()) {
        result.outcome = WindowResult::Outcome::kNotDue;
        result.due_in = absl::Milliseconds(open[0][0].as<int64_t>());
      }
      return absl::OkStatus();
    }
    const int64_t window_id = closed[0][0].as<int64_t>();
    const std::string first_key = closed[0][1].c_str();
    result.outcome = WindowResult::Outcome::kFired;
    struct Change {
      int64_t id;
      std::string json;
      std::optional<std::string> run_status;
      int64_t size;
    };
    std::vector<Change> changes;
    for (const auto& row : tx.exec_prepared("take_window_changes", window_id)) {
      changes.push_back(
          Change{row[0].as<int64_t>(), row[1].c_str(),
                 row[2].is_null() ? std::nullopt : std::optional<std::string>(row[2].c_str()),
                 row[3].as<int64_t>()});
    }
    pqxx::result registration =
        tx.exec_prepared("window_registration", window.tenant_id, window.registration_id);
    if (changes.empty() || registration.empty()) {
      tx.commit();
      return absl::OkStatus();
    }
    tx.exec_prepared("delete_one_shot", window.tenant_id, window.registration_id);
    std::sort(changes.begin(), changes.end(),
              [](const Change& a, const Change& b) { return a.id < b.id; });
    const std::string stream = registration[0][0].c_str();
    const std::string source = registration[0][1].c_str();
    const bool include_response = registration[0][2].as<bool>();
    // Parts in change order, each as large as --max-wake-bytes allows (a
    // change larger than that alone).
    const int64_t fixed = WakeSizeBytes(window.tenant_id, stream, first_key, v1::WakeMessage()) +
                          static_cast<int64_t>(source.size()) + 32;
    size_t begin = 0;
    for (int part = 0; begin < changes.size(); ++part) {
      size_t end = begin;
      int64_t size = fixed;
      while (end < changes.size() &&
             (end == begin || size + changes[end].size <= limits_.max_wake_bytes)) {
        size += changes[end].size;
        ++end;
      }
      std::string message = "{\"source\":";
      AppendJsonString(&message, source);
      message.append(",\"changes\":[");
      std::optional<std::string> run_status;
      for (size_t i = begin; i < end; ++i) {
        if (i > begin) message.push_back(',');
        message.append(changes[i].json);
        if (changes[i].run_status.has_value()) run_status = changes[i].run_status;
      }
      message.append("]}");
      std::string key = absl::StrCat("debounce:", window_id, ":", first_key);
      if (part > 0) absl::StrAppend(&key, "#", part);
      pqxx::result made = tx.exec_prepared(
          "insert_window_wake", window.tenant_id, stream, window.registration_id, key, message,
          run_status.has_value() ? run_status->c_str() : nullptr, include_response, size);
      if (!made.empty()) {
        absl::StatusOr<v1::Wake> wake = RowToWake(made[0]);
        if (!wake.ok()) return wake.status();
        if (!result.wake.has_value()) {
          result.wake = *std::move(wake);
        } else {
          result.more_wakes.push_back(*std::move(wake));
        }
        result.txid = made[0][9].as<int64_t>();
      }
      begin = end;
    }
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<std::vector<WindowKey>> PostgresWakeStore::DueDebounceWindows(int limit) {
  std::vector<WindowKey> due;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    due.clear();
    pqxx::nontransaction tx(c);
    for (const auto& row : tx.exec_prepared("due_windows", limit)) {
      due.push_back(WindowKey{row[0].c_str(), row[1].as<int64_t>()});
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return due;
}

absl::StatusOr<int64_t> PostgresWakeStore::SweepEventKeys(const KeyRetention& retention,
                                                          int limit) {
  int64_t swept = 0;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    pqxx::nontransaction tx(c);
    swept = tx.exec_prepared("sweep_event_keys", LeaseMillis(retention.events), limit)[0][0]
                .as<int64_t>();
    swept += tx.exec_prepared("sweep_offset_keys", LeaseMillis(retention.offsets), limit)[0][0]
                 .as<int64_t>();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  // One page of marks per sweep: a registration deleted takes its mark with
  // it eventually, at no cost per delete.
  std::string tenant;
  int64_t after = 0;
  {
    absl::MutexLock lock(&mark_cursor_mu_);
    tenant = mark_cursor_tenant_;
    after = mark_cursor_id_;
  }
  std::optional<std::pair<std::string, int64_t>> next;
  status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    next.reset();
    pqxx::nontransaction tx(c);
    pqxx::result page = tx.exec_prepared("sweep_marks", tenant, after, limit);
    // A short page reached the end: start over next time.
    if (!page.empty() && page[0][2].as<int64_t>() >= limit) {
      next.emplace(page[0][0].c_str(), page[0][1].as<int64_t>());
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  absl::MutexLock lock(&mark_cursor_mu_);
  mark_cursor_tenant_ = next.has_value() ? next->first : "";
  mark_cursor_id_ = next.has_value() ? next->second : -1;
  return swept;
}

}  // namespace wake::registry
