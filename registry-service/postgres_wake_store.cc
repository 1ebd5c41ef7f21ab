// PostgresWakeStore's connections, its group commit, and what it does with
// registrations, wakes, debounce windows and event keys. The claim lifecycle
// is in postgres_wake_store_claims.cc, the SQL in store_sql.cc.
#include "registry-service/postgres_wake_store.h"

#include <algorithm>
#include <pqxx/pqxx>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "google/protobuf/util/json_util.h"
#include "registry-service/store_rows.h"
#include "registry-service/store_sql.h"

namespace wake::registry {
namespace {

using store_internal::AppendJsonString;
using store_internal::FromMicros;
using store_internal::LeaseMillis;
using store_internal::RowToWake;

// Concurrent batches of each kind, and rows per batch. One batch in flight
// (a classic single-writer group commit) gave the best rates here: at 16
// callers, 1 beat 2 by ~10% and 8 (batches of ~1) by ~25%, since fewer,
// larger transactions save CPU in Postgres, the walsender and our sync.
constexpr int kBatchesInFlight = 1;
constexpr size_t kMaxBatch = 64;

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
  for (const PreparedStatement& statement : StoreStatements()) {
    c.prepare(statement.name, statement.sql);
  }
}

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
