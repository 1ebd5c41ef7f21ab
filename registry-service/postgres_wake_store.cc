#include "registry-service/postgres_wake_store.h"

#include <algorithm>
#include <pqxx/pqxx>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

constexpr char kTxid[] = "pg_current_xact_id()::text::bigint";

void Prepare(pqxx::connection& c) {
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
  // One statement: the one-shot delete or timeout consumption gates the insert,
  // so concurrent evaluations on different replicas cannot both deliver.
  c.prepare("persist_wake",
            absl::StrCat(
                "WITH deleted AS (DELETE FROM wake_registrations WHERE $8 AND id = $3 AND "
                "tenant_id = $1 AND (NOT $10 OR NOT timeout_consumed) RETURNING id), "
                "consumed AS (UPDATE wake_registrations SET timeout_consumed = true WHERE "
                "($9 OR $10) AND NOT $8 AND id = $3 AND tenant_id = $1 AND NOT timeout_consumed "
                "RETURNING id), "
                "gate AS (SELECT 1 WHERE (NOT $8 OR EXISTS (SELECT 1 FROM deleted)) AND "
                "(NOT $10 OR $8 OR EXISTS (SELECT 1 FROM consumed))) "
                "INSERT INTO wakes (tenant_id, stream, registration_id, source_event_key, message, "
                "run_finished_status, include_response) "
                "SELECT $1, $2, $3, $4, $5::jsonb, $6, $7 FROM gate "
                "ON CONFLICT (tenant_id, registration_id, source_event_key) DO NOTHING "
                "RETURNING id, (extract(epoch from created_at) * 1000000)::bigint, ",
                kTxid));
  c.prepare("take_stream",
            "INSERT INTO stream_claims (tenant_id, stream, claim_token, runner_id, session_id, "
            "lease_expires_at) VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 millisecond') "
            "ON CONFLICT (tenant_id, stream) DO UPDATE SET claim_token = EXCLUDED.claim_token, "
            "runner_id = EXCLUDED.runner_id, session_id = EXCLUDED.session_id, claimed_at = now(), "
            "lease_expires_at = EXCLUDED.lease_expires_at "
            "WHERE stream_claims.lease_expires_at <= now() "
            "RETURNING (extract(epoch from lease_expires_at) * 1000000)::bigint");
  c.prepare("claim_wakes",
            absl::StrCat("UPDATE wakes SET claim_token = $3, claimed_at = now() WHERE "
                         "tenant_id = $1 AND stream = $2 RETURNING ",
                         kWakeColumns));
  c.prepare("end_claim",
            "DELETE FROM stream_claims WHERE tenant_id = $1 AND stream = $2 AND claim_token = $3 "
            "RETURNING 1");
  c.prepare("delete_acked",
            "DELETE FROM wakes WHERE claim_token = $1 AND "
            "(cardinality($2::bigint[]) = 0 OR id = ANY($2::bigint[])) RETURNING id");
  c.prepare("unclaim",
            "UPDATE wakes SET claim_token = NULL, claimed_at = NULL WHERE claim_token = $1 "
            "RETURNING id");
  c.prepare("pending_exists",
            "SELECT EXISTS (SELECT 1 FROM wakes WHERE tenant_id = $1 AND stream = $2 AND "
            "claim_token IS NULL)");
  c.prepare("extend_claim",
            "UPDATE stream_claims SET lease_expires_at = now() + $4 * interval '1 millisecond' "
            "WHERE tenant_id = $1 AND stream = $2 AND claim_token = $3 "
            "RETURNING (extract(epoch from lease_expires_at) * 1000000)::bigint");
  c.prepare("release_expired",
            "WITH expired AS (DELETE FROM stream_claims WHERE lease_expires_at <= now() "
            "RETURNING claim_token), released AS (UPDATE wakes SET claim_token = NULL, "
            "claimed_at = NULL WHERE claim_token IN (SELECT claim_token FROM expired) RETURNING id) "
            "SELECT (SELECT count(*) FROM expired), (SELECT count(*) FROM released)");
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

void SetTimestamp(absl::Time time, google::protobuf::Timestamp* out) {
  const int64_t micros = absl::ToUnixMicros(time);
  out->set_seconds(micros / 1000000);
  out->set_nanos(static_cast<int32_t>((micros % 1000000) * 1000));
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
  SetTimestamp(FromMicros(r[8].as<int64_t>()), wake.mutable_created_at());
  return wake;
}

std::string NewClaimToken() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrCat(absl::Hex(rng(), absl::kZeroPad16), absl::Hex(rng(), absl::kZeroPad16));
}

std::string ArrayLiteral(const std::vector<int64_t>& ids) {
  return absl::StrCat("{", absl::StrJoin(ids, ","), "}");
}

int64_t LeaseMillis(absl::Duration lease) { return absl::ToInt64Milliseconds(lease); }

}  // namespace

std::string WakeMessageToJson(const v1::WakeMessage& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
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

PostgresWakeStore::PostgresWakeStore(const std::string& database_url, int pool_size)
    : pool_(database_url, pool_size, absl::Seconds(5), Prepare) {}

absl::StatusOr<UpsertResult> PostgresWakeStore::UpsertRegistration(const sync::Registration& row) {
  UpsertResult result;
  const std::string condition = sync::ConditionToJson(row.condition);
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    // A concurrent delete can remove the conflicting row between the two
    // statements; then simply try again.
    for (int attempt = 0; attempt < 3; ++attempt) {
      pqxx::nontransaction tx(c);
      pqxx::result inserted =
          tx.exec_prepared("insert_registration", row.tenant_id, row.subscriber_url,
                           row.source_url, condition, row.debounce_ms, row.timeout_ms,
                           row.one_shot, row.include_response, row.manifest_key);
      if (!inserted.empty()) {
        absl::StatusOr<sync::Registration> stored = RowToRegistration(inserted[0]);
        if (!stored.ok()) return stored.status();
        result.row = *stored;
        result.created = true;
        result.txid = inserted[0][12].as<int64_t>();
        return absl::OkStatus();
      }
      pqxx::result found =
          tx.exec_prepared("find_registration", row.tenant_id, row.subscriber_url,
                           row.source_url, condition, row.debounce_ms, row.timeout_ms,
                           row.one_shot, row.manifest_key);
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
        rows = tx.exec_prepared("delete_by_subscriber", selector.tenant_id,
                                selector.subscriber_url);
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

absl::StatusOr<PersistResult> PostgresWakeStore::PersistWakes(
    const std::vector<WakeDraft>& drafts) {
  PersistResult result;
  if (drafts.empty()) return result;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    result.wakes.clear();
    auto persist = [&](pqxx::transaction_base& tx, const WakeDraft& draft) {
      const char* run_status = draft.run_finished_status == v1::RUN_STATUS_UNSPECIFIED
                                   ? nullptr
                                   : v1::RunStatus_Name(draft.run_finished_status).c_str();
      pqxx::result rows = tx.exec_prepared(
          "persist_wake", draft.tenant_id, draft.stream, draft.registration_id,
          draft.source_event_key, WakeMessageToJson(draft.message), run_status,
          draft.include_response, draft.delete_registration, draft.consume_timeout,
          draft.require_timeout_unconsumed);
      if (rows.empty()) return;
      v1::Wake wake;
      wake.set_id(rows[0][0].as<int64_t>());
      wake.set_tenant_id(draft.tenant_id);
      wake.set_stream(draft.stream);
      wake.set_registration_id(draft.registration_id);
      wake.set_source_event_key(draft.source_event_key);
      *wake.mutable_message() = draft.message;
      wake.set_run_finished_status(draft.run_finished_status);
      wake.set_include_response(draft.include_response);
      SetTimestamp(FromMicros(rows[0][1].as<int64_t>()), wake.mutable_created_at());
      result.txid = rows[0][2].as<int64_t>();
      result.wakes.push_back(std::move(wake));
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

absl::StatusOr<ClaimResult> PostgresWakeStore::ClaimWakes(const std::string& tenant_id,
                                                          const std::string& stream,
                                                          const std::string& runner_id,
                                                          const std::string& session_id,
                                                          absl::Duration lease) {
  ClaimResult result;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    result = ClaimResult();
    pqxx::work tx(c);
    const std::string token = NewClaimToken();
    pqxx::result taken = tx.exec_prepared("take_stream", tenant_id, stream, token, runner_id,
                                          session_id, LeaseMillis(lease));
    if (taken.empty()) {
      result.status = v1::ALREADY_CLAIMED;
      return absl::OkStatus();  // The work rolls back: nothing changed.
    }
    pqxx::result rows = tx.exec_prepared("claim_wakes", tenant_id, stream, token);
    if (rows.empty()) {
      result.status = v1::NOTHING_PENDING;
      return absl::OkStatus();  // Rolled back: no claim row is left behind.
    }
    for (const auto& row : rows) {
      absl::StatusOr<v1::Wake> wake = RowToWake(row);
      if (!wake.ok()) return wake.status();
      result.wakes.push_back(std::move(*wake));
    }
    tx.commit();
    std::sort(result.wakes.begin(), result.wakes.end(),
              [](const v1::Wake& a, const v1::Wake& b) { return a.id() < b.id(); });
    result.status = v1::CLAIMED;
    result.claim_token = token;
    result.lease_expires_at = FromMicros(taken[0][0].as<int64_t>());
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<AckResult> PostgresWakeStore::AckWakes(const ClaimKey& claim,
                                                      const std::vector<int64_t>& wake_ids) {
  AckResult result;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    pqxx::work tx(c);
    if (tx.exec_prepared("end_claim", claim.tenant_id, claim.stream, claim.claim_token).empty()) {
      return absl::FailedPreconditionError(
          "claim_token: the claim is not live (expired and taken over, acked or released)");
    }
    result.acked =
        static_cast<int64_t>(tx.exec_prepared("delete_acked", claim.claim_token,
                                              ArrayLiteral(wake_ids))
                                 .size());
    tx.exec_prepared("unclaim", claim.claim_token);
    result.more_pending =
        tx.exec_prepared("pending_exists", claim.tenant_id, claim.stream)[0][0].as<bool>();
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<std::vector<ExtendResult>> PostgresWakeStore::ExtendClaims(
    const std::vector<ClaimKey>& claims, absl::Duration lease) {
  std::vector<ExtendResult> results;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    results.clear();
    pqxx::work tx(c);
    for (const ClaimKey& claim : claims) {
      ExtendResult result;
      result.claim = claim;
      pqxx::result rows = tx.exec_prepared("extend_claim", claim.tenant_id, claim.stream,
                                           claim.claim_token, LeaseMillis(lease));
      if (!rows.empty()) {
        result.extended = true;
        result.lease_expires_at = FromMicros(rows[0][0].as<int64_t>());
      }
      results.push_back(std::move(result));
    }
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return results;
}

absl::StatusOr<int64_t> PostgresWakeStore::ReleaseClaim(const ClaimKey& claim) {
  int64_t released = 0;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    pqxx::work tx(c);
    if (tx.exec_prepared("end_claim", claim.tenant_id, claim.stream, claim.claim_token).empty()) {
      return absl::FailedPreconditionError(
          "claim_token: the claim is not live (expired and taken over, acked or released)");
    }
    released = static_cast<int64_t>(tx.exec_prepared("unclaim", claim.claim_token).size());
    tx.commit();
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

}  // namespace wake::registry
