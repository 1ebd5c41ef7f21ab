#include "common/sync/postgres/replication_session.h"

#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <random>
#include <utility>
#include <variant>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/sync/postgres/connection_params.h"

namespace wake::sync {
namespace {

using common::MonotonicTime;
using pgoutput::Lsn;

constexpr char kRegistrationsTable[] = "wake_registrations";
constexpr char kWakesTable[] = "wakes";

std::string NewSlotName(const std::string& prefix) {
  std::random_device rd;
  const uint64_t random = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return absl::StrFormat("%s_%016x", prefix, random);
}

// A result's rows as pgoutput tuples, so one decoder serves both sources.
std::vector<std::string> ColumnNames(const PGresult* result) {
  std::vector<std::string> names;
  for (int c = 0; c < PQnfields(result); ++c) names.push_back(PQfname(result, c));
  return names;
}

pgoutput::Tuple RowTuple(const PGresult* result, int row) {
  pgoutput::Tuple tuple(PQnfields(result));
  for (int c = 0; c < PQnfields(result); ++c) {
    if (PQgetisnull(result, row, c)) continue;  // kNull by default.
    tuple[c].kind = pgoutput::TupleValue::Kind::kText;
    tuple[c].data = ResultText(result, row, c);
  }
  return tuple;
}

}  // namespace

PostgresSyncSource::Session::Session(PostgresSyncSource& source, SyncObserver& observer)
    : source_(source),
      observer_(observer),
      time_(source.time_),
      repl_(source.time_, source.stop_fd_),
      sql_(source.time_, source.stop_fd_) {}

absl::Status PostgresSyncSource::Session::Run() {
  if (absl::Status s = Setup(); !s.ok()) return s;
  if (absl::Status s = SnapshotAndStart(); !s.ok()) return s;
  return Stream();
}

MonotonicTime PostgresSyncSource::Session::StepDeadline() {
  return time_.MonotonicNow() + common::ToChrono(source_.options_.connect_timeout);
}

absl::Status PostgresSyncSource::Session::Setup() {
  absl::StatusOr<PqConnection::Params> params = SyncConnectionParams(source_.url_, false);
  if (!params.ok()) return params.status();
  if (absl::Status s = sql_.Connect(*params, StepDeadline()); !s.ok()) return s;

  const std::string& publication = source_.options_.publication;
  absl::StatusOr<std::vector<PgResultPtr>> checks = sql_.Exec(
      absl::StrCat("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '", publication,
                   "'), current_setting('wal_level'), "
                   "(SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = "
                   "current_user), "
                   "(SELECT count(*) FROM pg_publication_tables WHERE pubname = '",
                   publication, "' AND tablename IN ('", kRegistrationsTable, "', '", kWakesTable,
                   "'))"),
      StepDeadline());
  if (!checks.ok()) return checks.status();
  const PGresult* row = checks->back().get();
  if (ResultText(row, 0, 0) != "t") {
    return absl::InvalidArgumentError(
        absl::StrCat("publication \"", publication,
                     "\" does not exist in this database (the registry's migrations create it)"));
  }
  if (ResultText(row, 0, 3) != "2") {
    return absl::InvalidArgumentError(absl::StrCat("publication \"", publication,
                                                   "\" must include the tables ",
                                                   kRegistrationsTable, " and ", kWakesTable));
  }
  if (ResultText(row, 0, 1) != "logical") {
    return absl::InvalidArgumentError(
        absl::StrCat("wal_level is '", ResultText(row, 0, 1),
                     "'; logical replication needs wal_level = logical"));
  }
  if (ResultText(row, 0, 2) != "t") {
    return absl::InvalidArgumentError(
        "the database role lacks the REPLICATION attribute needed for logical replication");
  }

  absl::StatusOr<PqConnection::Params> repl_params = SyncConnectionParams(source_.url_, true);
  if (!repl_params.ok()) return repl_params.status();
  return repl_.Connect(*repl_params, StepDeadline());
}

absl::Status PostgresSyncSource::Session::SnapshotAndStart() {
  absl::StatusOr<Slot> slot = CreateSlot();
  if (!slot.ok()) return slot.status();
  absl::StatusOr<std::vector<RowChange>> rows = ReadSnapshot(slot->snapshot_name);
  if (!rows.ok()) return rows.status();
  const size_t row_count = rows->size();
  if (absl::Status s = DeliverSnapshot(*std::move(rows)); !s.ok()) return s;
  common::LogInfo("pg_sync_snapshot",
                  {{"slot", slot->name},
                   {"rows", row_count},
                   {"consistent_point", pgoutput::FormatLsn(slot->consistent_point)}});
  return StartReplication(*slot);
}

absl::StatusOr<PostgresSyncSource::Session::Slot> PostgresSyncSource::Session::CreateSlot() {
  Slot slot;
  slot.name = NewSlotName(source_.options_.slot_prefix);
  absl::StatusOr<std::vector<PgResultPtr>> created =
      repl_.Exec(absl::StrCat("CREATE_REPLICATION_SLOT ", slot.name,
                              " TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')"),
                 StepDeadline());
  if (!created.ok()) return created.status();
  const PGresult* slot_row = created->back().get();
  if (PQntuples(slot_row) != 1 || PQnfields(slot_row) < 3) {
    return absl::InternalError("CREATE_REPLICATION_SLOT: unexpected answer");
  }
  absl::StatusOr<Lsn> consistent_point = pgoutput::ParseLsn(ResultText(slot_row, 0, 1));
  if (!consistent_point.ok()) return consistent_point.status();
  slot.consistent_point = *consistent_point;
  slot.snapshot_name = ResultText(slot_row, 0, 2);
  for (char c : slot.snapshot_name) {
    if (!absl::ascii_isxdigit(c) && c != '-') {
      return absl::InternalError(absl::StrCat("unexpected snapshot name ", slot.snapshot_name));
    }
  }
  absl::MutexLock lock(&source_.mu_);
  source_.slot_name_ = slot.name;
  return slot;
}

absl::StatusOr<std::vector<RowChange>> PostgresSyncSource::Session::ReadSnapshot(
    const std::string& snapshot_name) {
  // The exported snapshot is only importable until the replication
  // connection runs its next command, so read everything now, in one go.
  absl::StatusOr<std::vector<PgResultPtr>> snapshot = sql_.Exec(
      absl::StrCat("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
                   "SET TRANSACTION SNAPSHOT '",
                   snapshot_name,
                   "';"
                   "SELECT pg_snapshot_xmax(pg_current_snapshot());"
                   "SELECT id, tenant_id, subscriber_url, source_url, condition, debounce_ms, "
                   "timeout_ms, one_shot, timeout_consumed, include_response, manifest_key, "
                   "created_at FROM ",
                   kRegistrationsTable,
                   ";"
                   "SELECT id, tenant_id, stream, registration_id, claim_token IS NULL AS "
                   "pending FROM ",
                   kWakesTable,
                   ";"
                   "SELECT pg_current_wal_flush_lsn();"
                   "COMMIT"),
      StepDeadline());
  if (!snapshot.ok()) return snapshot.status();
  if (snapshot->size() != 7) return absl::InternalError("snapshot: unexpected result count");
  const PGresult* xmax = (*snapshot)[2].get();
  const PGresult* registrations = (*snapshot)[3].get();
  const PGresult* wakes = (*snapshot)[4].get();
  const PGresult* flush = (*snapshot)[5].get();
  absl::StatusOr<int64_t> reference = pgrows::ParseInt64(ResultText(xmax, 0, 0));
  if (!reference.ok()) return reference.status();
  xid_reference_ = *reference;
  absl::StatusOr<Lsn> flush_lsn = pgoutput::ParseLsn(ResultText(flush, 0, 0));
  if (!flush_lsn.ok()) return flush_lsn.status();
  catch_up_target_ = *flush_lsn;
  sql_.Close();

  std::vector<RowChange> rows;
  if (absl::Status s = DecodeSnapshot(registrations, wakes, &rows); !s.ok()) return s;
  return rows;
}

absl::Status PostgresSyncSource::Session::DeliverSnapshot(std::vector<RowChange> rows) {
  // Forget-then-refill, in batches.
  observer_.OnReset();
  const size_t per_batch = std::max(1, source_.options_.snapshot_batch_rows);
  for (size_t i = 0; i < rows.size(); i += per_batch) {
    if (source_.Stopping()) return absl::CancelledError("stopping");
    SyncBatch batch;
    const size_t end = std::min(rows.size(), i + per_batch);
    batch.changes.assign(std::make_move_iterator(rows.begin() + i),
                         std::make_move_iterator(rows.begin() + end));
    observer_.OnBatch(std::move(batch));
  }
  return absl::OkStatus();
}

absl::Status PostgresSyncSource::Session::StartReplication(const Slot& slot) {
  absl::StatusOr<std::vector<PgResultPtr>> started =
      repl_.Exec(absl::StrCat("START_REPLICATION SLOT ", slot.name, " LOGICAL ",
                              pgoutput::FormatLsn(slot.consistent_point),
                              " (proto_version '1', publication_names '\"",
                              source_.options_.publication, "\"')"),
                 StepDeadline());
  if (!started.ok()) return started.status();
  if (started->empty() || PQresultStatus(started->back().get()) != PGRES_COPY_BOTH) {
    return absl::InternalError("START_REPLICATION: no replication stream");
  }
  pos_ = slot.consistent_point;
  const MonotonicTime now = time_.MonotonicNow();
  last_received_ = now;
  last_status_sent_ = now;
  return MaybeUpToDate();
}

absl::Status PostgresSyncSource::Session::DecodeSnapshot(const PGresult* registrations,
                                                         const PGresult* wakes,
                                                         std::vector<RowChange>* rows) {
  const pgrows::RowLayout reg_layout(SyncTable::kRegistrations, ColumnNames(registrations));
  const pgrows::RowLayout wake_layout(SyncTable::kWakes, ColumnNames(wakes));
  rows->reserve(PQntuples(registrations) + PQntuples(wakes));
  for (int i = 0; i < PQntuples(registrations); ++i) {
    absl::StatusOr<Registration> r = pgrows::DecodeRegistration(
        reg_layout, RowTuple(registrations, i), nullptr, pgrows::RowNeed::kComplete);
    if (!r.ok()) {
      SkipRow(kRegistrationsTable, r.status());
      continue;
    }
    RowChange change;
    change.table = SyncTable::kRegistrations;
    change.op = ChangeOp::kInsert;
    change.registration = std::move(*r);
    rows->push_back(std::move(change));
  }
  wakes_.clear();
  for (int i = 0; i < PQntuples(wakes); ++i) {
    absl::StatusOr<WakeRow> w =
        pgrows::DecodeWake(wake_layout, RowTuple(wakes, i), nullptr, pgrows::RowNeed::kComplete);
    if (!w.ok()) {
      SkipRow(kWakesTable, w.status());
      continue;
    }
    wakes_[w->id] = *w;
    RowChange change;
    change.table = SyncTable::kWakes;
    change.op = ChangeOp::kInsert;
    change.wake = std::move(*w);
    rows->push_back(std::move(change));
  }
  return absl::OkStatus();
}

void PostgresSyncSource::Session::SkipRow(absl::string_view table, const absl::Status& why) {
  common::LogError("pg_sync_row_skipped", {{"table", table}, {"error", why}});
}

absl::Status PostgresSyncSource::Session::Stream() {
  const PostgresSyncSourceOptions& options = source_.options_;
  for (;;) {
    if (absl::Status s = DrainMessages(); !s.ok()) return s;

    const MonotonicTime now = time_.MonotonicNow();
    Lsn wanted;
    {
      absl::MutexLock lock(&source_.mu_);
      wanted = source_.wanted_lsn_;
    }
    if (!up_to_date_) wanted = std::max(wanted, catch_up_target_);
    const bool behind = wanted > pos_;
    const MonotonicTime repoll_at =
        last_reply_request_ + common::ToChrono(options.barrier_repoll_interval);
    if (behind && (wanted > requested_for_ || now >= repoll_at)) {
      requested_for_ = std::max(requested_for_, wanted);
      if (absl::Status s = SendStatus(/*reply_requested=*/true); !s.ok()) return s;
    } else if (now >= last_status_sent_ + common::ToChrono(options.status_interval)) {
      if (absl::Status s = SendStatus(true); !s.ok()) return s;
    }
    const absl::Duration silence = 3 * options.status_interval;
    if (now >= last_received_ + common::ToChrono(silence)) {
      return absl::UnavailableError(
          absl::StrCat("no message from the server for ", absl::FormatDuration(silence)));
    }

    MonotonicTime wake_at = std::min(last_status_sent_ + common::ToChrono(options.status_interval),
                                     last_received_ + common::ToChrono(silence));
    if (behind) {
      wake_at = std::min(wake_at,
                         last_reply_request_ + common::ToChrono(options.barrier_repoll_interval));
    }
    bool kicked = false;
    absl::Status waited = repl_.Wait(repl_.wants_write(), source_.kick_fd_, wake_at, &kicked);
    if (absl::IsCancelled(waited)) return waited;
    if (!waited.ok() && !absl::IsDeadlineExceeded(waited)) return waited;
    if (kicked) {
      uint64_t count = 0;
      while (read(source_.kick_fd_, &count, sizeof(count)) > 0) {
      }
    }
    if (repl_.wants_write()) {
      if (absl::Status s = repl_.FlushPending(); !s.ok()) return s;
    }
    if (absl::Status s = repl_.ConsumeInput(); !s.ok()) return s;
  }
}

absl::Status PostgresSyncSource::Session::DrainMessages() {
  for (;;) {
    char* buffer = nullptr;
    const int length = PQgetCopyData(repl_.get(), &buffer, /*async=*/1);
    if (length > 0) {
      last_received_ = time_.MonotonicNow();
      absl::Status handled = HandleCopyData(absl::string_view(buffer, length));
      PQfreemem(buffer);
      if (!handled.ok()) return handled;
      continue;
    }
    if (length == 0) return absl::OkStatus();
    if (length == -1) {
      PgResultPtr result(PQgetResult(repl_.get()));
      if (result != nullptr && PQresultStatus(result.get()) == PGRES_FATAL_ERROR) {
        return StatusFromResult(result.get(), "replication stream ended");
      }
      return absl::UnavailableError("replication stream ended by the server");
    }
    return absl::UnavailableError(absl::StrCat("replication stream broke: ", repl_.ErrorMessage()));
  }
}

absl::Status PostgresSyncSource::Session::HandleCopyData(absl::string_view data) {
  absl::StatusOr<pgoutput::CopyMessage> message = pgoutput::ParseCopyMessage(data);
  if (!message.ok()) return Malformed(message.status());
  if (const auto* keepalive = std::get_if<pgoutput::Keepalive>(&*message)) {
    // Everything before wal_end has been sent, so all of it has been read.
    if (absl::Status s = Advance(keepalive->wal_end); !s.ok()) return s;
    if (keepalive->reply_requested) return SendStatus(false);
    return absl::OkStatus();
  }
  const auto& xlog = std::get<pgoutput::XLogData>(*message);
  absl::StatusOr<pgoutput::Message> decoded = pgoutput::DecodeMessage(xlog.payload);
  if (!decoded.ok()) {
    if (absl::IsUnimplemented(decoded.status())) return absl::OkStatus();
    return Malformed(decoded.status());
  }
  return std::visit([this](auto& m) { return Handle(m); }, *decoded);
}

absl::Status PostgresSyncSource::Session::Malformed(const absl::Status& status) {
  return absl::InternalError(absl::StrCat("malformed replication message: ", status.message()));
}

absl::Status PostgresSyncSource::Session::Handle(pgoutput::Begin& begin) {
  const int64_t xid = pgoutput::ExtendXid(begin.xid, xid_reference_);
  xid_reference_ = std::max(xid_reference_, xid);
  txn_xid_ = xid;
  changes_.clear();
  in_transaction_ = true;
  return absl::OkStatus();
}

absl::Status PostgresSyncSource::Session::Handle(pgoutput::Commit& commit) {
  if (in_transaction_ && !changes_.empty()) {
    SyncBatch batch;
    batch.changes = std::move(changes_);
    batch.txids.push_back(txn_xid_);
    batch.committed_at = pgoutput::FromPgTimestamp(commit.commit_time);
    observer_.OnBatch(std::move(batch));
  }
  changes_.clear();
  in_transaction_ = false;
  return Advance(commit.end_lsn);
}

absl::Status PostgresSyncSource::Session::Handle(pgoutput::Relation& relation) {
  RelationState state;
  if (relation.name == kRegistrationsTable) state.table = SyncTable::kRegistrations;
  if (relation.name == kWakesTable) state.table = SyncTable::kWakes;
  if (state.table.has_value()) {
    std::vector<std::string> names;
    for (const pgoutput::Column& c : relation.columns) names.push_back(c.name);
    state.layout.emplace(*state.table, names);
    if (absl::Status s = state.layout->CheckComplete(); !s.ok()) return s;
  }
  relations_[relation.id] = std::move(state);
  return absl::OkStatus();
}

absl::Status PostgresSyncSource::Session::Handle(pgoutput::Insert& insert) {
  const RelationState* rel = Lookup(insert.relation_id);
  if (rel == nullptr) return UnknownRelation(insert.relation_id);
  if (!rel->table.has_value()) return absl::OkStatus();
  return AddChange(*rel, ChangeOp::kInsert, insert.new_tuple, nullptr, false);
}

absl::Status PostgresSyncSource::Session::Handle(pgoutput::Update& update) {
  const RelationState* rel = Lookup(update.relation_id);
  if (rel == nullptr) return UnknownRelation(update.relation_id);
  if (!rel->table.has_value()) return absl::OkStatus();
  const pgoutput::Tuple* old_row = update.old_tuple.has_value() ? &*update.old_tuple : nullptr;
  if (*rel->table == SyncTable::kWakes && old_row != nullptr) {
    // The key changed: forget the wake under its old id.
    absl::StatusOr<WakeRow> old_key =
        pgrows::DecodeWake(*rel->layout, *old_row, nullptr, pgrows::RowNeed::kKey);
    if (old_key.ok()) wakes_.erase(old_key->id);
  }
  return AddChange(*rel, ChangeOp::kUpdate, update.new_tuple, old_row, update.old_is_key);
}

absl::Status PostgresSyncSource::Session::Handle(pgoutput::Delete& del) {
  const RelationState* rel = Lookup(del.relation_id);
  if (rel == nullptr) return UnknownRelation(del.relation_id);
  if (!rel->table.has_value()) return absl::OkStatus();
  return AddChange(*rel, ChangeOp::kDelete, del.old_tuple, nullptr, del.old_is_key);
}

absl::Status PostgresSyncSource::Session::Handle(pgoutput::Truncate& truncate) {
  for (uint32_t id : truncate.relation_ids) {
    const RelationState* rel = Lookup(id);
    if (rel == nullptr || rel->table.has_value()) {
      // No row-level changes describe a truncate: start over.
      return absl::AbortedError("resync: a followed table was truncated");
    }
  }
  return absl::OkStatus();
}

const PostgresSyncSource::Session::RelationState* PostgresSyncSource::Session::Lookup(
    uint32_t id) const {
  auto it = relations_.find(id);
  return it == relations_.end() ? nullptr : &it->second;
}

absl::Status PostgresSyncSource::Session::UnknownRelation(uint32_t id) {
  return absl::InternalError(absl::StrCat("change for relation ", id, " before its description"));
}

absl::Status PostgresSyncSource::Session::AddChange(const RelationState& rel, ChangeOp op,
                                                    const pgoutput::Tuple& row,
                                                    const pgoutput::Tuple* old_row, bool key_only) {
  if (!in_transaction_) return absl::InternalError("row change outside a transaction");
  const pgrows::RowNeed need =
      op == ChangeOp::kDelete && key_only ? pgrows::RowNeed::kKey : pgrows::RowNeed::kComplete;
  RowChange change;
  change.table = *rel.table;
  change.op = op;
  if (*rel.table == SyncTable::kRegistrations) {
    absl::StatusOr<Registration> r =
        pgrows::DecodeRegistration(*rel.layout, row, key_only ? nullptr : old_row, need);
    if (!r.ok()) return RowProblem(kRegistrationsTable, r.status());
    change.registration = std::move(*r);
  } else {
    absl::StatusOr<WakeRow> key =
        pgrows::DecodeWake(*rel.layout, row, nullptr, pgrows::RowNeed::kKey);
    if (!key.ok()) return RowProblem(kWakesTable, key.status());
    auto known = wakes_.find(key->id);
    absl::StatusOr<WakeRow> w = pgrows::DecodeWake(
        *rel.layout, row, known == wakes_.end() ? nullptr : &known->second, need);
    if (!w.ok()) return RowProblem(kWakesTable, w.status());
    if (op == ChangeOp::kDelete) {
      wakes_.erase(w->id);
    } else {
      wakes_[w->id] = *w;
    }
    change.wake = std::move(*w);
  }
  changes_.push_back(std::move(change));
  return absl::OkStatus();
}

absl::Status PostgresSyncSource::Session::RowProblem(absl::string_view table,
                                                     const absl::Status& why) {
  if (absl::IsNotFound(why)) {
    return absl::AbortedError(absl::StrCat("resync: ", table, ": ", why.message()));
  }
  SkipRow(table, why);
  return absl::OkStatus();
}

absl::Status PostgresSyncSource::Session::Advance(Lsn lsn) {
  if (lsn <= pos_) return absl::OkStatus();
  pos_ = lsn;
  if (!up_to_date_) return MaybeUpToDate();
  absl::MutexLock lock(&source_.mu_);
  source_.delivered_lsn_ = pos_;
  return absl::OkStatus();
}

absl::Status PostgresSyncSource::Session::MaybeUpToDate() {
  if (up_to_date_ || pos_ < catch_up_target_) return absl::OkStatus();
  observer_.OnUpToDate();
  up_to_date_ = true;
  absl::MutexLock lock(&source_.mu_);
  source_.synced_ = true;
  source_.delivered_lsn_ = pos_;
  source_.up_to_date_once_ = true;
  source_.last_error_ = absl::OkStatus();
  ++source_.stats_.sessions_up_to_date;
  return absl::OkStatus();
}

absl::Status PostgresSyncSource::Session::SendStatus(bool reply_requested) {
  const std::string message = pgoutput::EncodeStandbyStatus(
      pos_, pos_, pos_, pgoutput::ToPgTimestamp(time_.SystemNow()), reply_requested);
  const MonotonicTime now = time_.MonotonicNow();
  last_status_sent_ = now;
  if (reply_requested) {
    last_reply_request_ = now;
    absl::MutexLock lock(&source_.mu_);
    ++source_.stats_.reply_requests;
  }
  return repl_.PutCopyData(message);
}

}  // namespace wake::sync
