#include "common/sync/postgres/postgres_sync_source.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "common/sync/postgres/pq_connection.h"
#include "common/sync/postgres/rows.h"

namespace wake::sync {
namespace {

using common::MonotonicTime;
using pgoutput::Lsn;

// Row formats that rows.h parses; appended to any options in the URL.
constexpr char kSessionOptions[] = "-c datestyle=ISO -c timezone=UTC -c intervalstyle=postgres";

constexpr char kRegistrationsTable[] = "wake_registrations";
constexpr char kWakesTable[] = "wakes";

bool IsIdentifier(absl::string_view name, size_t max_length) {
  if (name.empty() || name.size() > max_length) return false;
  for (char c : name) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '_') return false;
  }
  return true;
}

// The URL's parameters plus our session options, ready for PqConnection.
absl::StatusOr<PqConnection::Params> ConnectionParams(const std::string& url, bool replication) {
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &error);
  if (parsed == nullptr) {
    std::string why = error != nullptr ? error : "unparseable";
    if (error != nullptr) PQfreemem(error);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return absl::InvalidArgumentError(
        absl::StrCat("postgres sync: not a valid PostgreSQL connection string: ", why));
  }
  PqConnection::Params params;
  std::string options;
  bool has_application_name = false;
  for (PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0') continue;
    const std::string key = o->keyword;
    if (key == "options") {
      options = o->val;
    } else if (key != "replication") {
      has_application_name |= key == "application_name";
      params.emplace_back(key, o->val);
    }
  }
  PQconninfoFree(parsed);
  params.emplace_back("options", options.empty() ? kSessionOptions
                                                 : absl::StrCat(options, " ", kSessionOptions));
  if (!has_application_name) params.emplace_back("application_name", "wakeline-sync");
  if (replication) params.emplace_back("replication", "database");
  return params;
}

bool IsConfigError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kFailedPrecondition:
      return true;
    default:
      return false;
  }
}

std::string NewSlotName(const std::string& prefix) {
  std::random_device rd;
  const uint64_t random = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return absl::StrFormat("%s_%016x", prefix, random);
}

std::string Value(const PGresult* result, int row, int column) {
  return std::string(PQgetvalue(result, row, column), PQgetlength(result, row, column));
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
    tuple[c].data = Value(result, row, c);
  }
  return tuple;
}

}  // namespace

// The streaming thread's state for one connection: both libpq connections,
// the relations the stream announced, the transaction being received, and
// the positions that decide up-to-date and answer barriers.
class PostgresSyncSource::Session {
 public:
  Session(PostgresSyncSource& source, SyncObserver& observer)
      : source_(source),
        observer_(observer),
        time_(source.time_),
        repl_(source.time_, source.stop_fd_),
        sql_(source.time_, source.stop_fd_) {}

  // Until the connection ends; see RunSession().
  absl::Status Run() {
    if (absl::Status s = Setup(); !s.ok()) return s;
    if (absl::Status s = SnapshotAndStart(); !s.ok()) return s;
    return Stream();
  }

  bool reached_up_to_date() const { return up_to_date_; }

 private:
  struct RelationState {
    std::optional<SyncTable> table;  // Unset: not one we follow.
    std::optional<pgrows::RowLayout> layout;
  };

  MonotonicTime StepDeadline() {
    return time_.MonotonicNow() + common::ToChrono(source_.options_.connect_timeout);
  }

  absl::Status Setup() {
    absl::StatusOr<PqConnection::Params> params = ConnectionParams(source_.url_, false);
    if (!params.ok()) return params.status();
    if (absl::Status s = sql_.Connect(*params, StepDeadline()); !s.ok()) return s;

    const std::string& publication = source_.options_.publication;
    absl::StatusOr<std::vector<PgResultPtr>> checks = sql_.Exec(
        absl::StrCat("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '", publication,
                     "'), current_setting('wal_level'), "
                     "(SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = "
                     "current_user), "
                     "(SELECT count(*) FROM pg_publication_tables WHERE pubname = '",
                     publication, "' AND tablename IN ('", kRegistrationsTable, "', '",
                     kWakesTable, "'))"),
        StepDeadline());
    if (!checks.ok()) return checks.status();
    const PGresult* row = checks->back().get();
    if (Value(row, 0, 0) != "t") {
      return absl::InvalidArgumentError(absl::StrCat(
          "publication \"", publication,
          "\" does not exist in this database (the registry's migrations create it)"));
    }
    if (Value(row, 0, 3) != "2") {
      return absl::InvalidArgumentError(
          absl::StrCat("publication \"", publication, "\" must include the tables ",
                       kRegistrationsTable, " and ", kWakesTable));
    }
    if (Value(row, 0, 1) != "logical") {
      return absl::InvalidArgumentError(absl::StrCat(
          "wal_level is '", Value(row, 0, 1), "'; logical replication needs wal_level = logical"));
    }
    if (Value(row, 0, 2) != "t") {
      return absl::InvalidArgumentError(
          "the database role lacks the REPLICATION attribute needed for logical replication");
    }

    absl::StatusOr<PqConnection::Params> repl_params = ConnectionParams(source_.url_, true);
    if (!repl_params.ok()) return repl_params.status();
    return repl_.Connect(*repl_params, StepDeadline());
  }

  absl::Status SnapshotAndStart() {
    const std::string slot = NewSlotName(source_.options_.slot_prefix);
    absl::StatusOr<std::vector<PgResultPtr>> created =
        repl_.Exec(absl::StrCat("CREATE_REPLICATION_SLOT ", slot,
                                " TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')"),
                   StepDeadline());
    if (!created.ok()) return created.status();
    const PGresult* slot_row = created->back().get();
    if (PQntuples(slot_row) != 1 || PQnfields(slot_row) < 3) {
      return absl::InternalError("CREATE_REPLICATION_SLOT: unexpected answer");
    }
    absl::StatusOr<Lsn> consistent_point = pgoutput::ParseLsn(Value(slot_row, 0, 1));
    if (!consistent_point.ok()) return consistent_point.status();
    const std::string snapshot_name = Value(slot_row, 0, 2);
    for (char c : snapshot_name) {
      if (!absl::ascii_isxdigit(c) && c != '-') {
        return absl::InternalError(absl::StrCat("unexpected snapshot name ", snapshot_name));
      }
    }
    {
      absl::MutexLock lock(&source_.mu_);
      source_.slot_name_ = slot;
    }

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
    absl::StatusOr<int64_t> reference = pgrows::ParseInt64(Value(xmax, 0, 0));
    if (!reference.ok()) return reference.status();
    xid_reference_ = *reference;
    absl::StatusOr<Lsn> flush_lsn = pgoutput::ParseLsn(Value(flush, 0, 0));
    if (!flush_lsn.ok()) return flush_lsn.status();
    catch_up_target_ = *flush_lsn;
    sql_.Close();

    std::vector<RowChange> rows;
    if (absl::Status s = DecodeSnapshot(registrations, wakes, &rows); !s.ok()) return s;
    snapshot->clear();

    // Deliver: forget-then-refill, in batches.
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
    common::LogInfo("pg_sync_snapshot",
                    {{"slot", slot},
                     {"rows", rows.size()},
                     {"consistent_point", pgoutput::FormatLsn(*consistent_point)}});

    absl::StatusOr<std::vector<PgResultPtr>> started = repl_.Exec(
        absl::StrCat("START_REPLICATION SLOT ", slot, " LOGICAL ",
                     pgoutput::FormatLsn(*consistent_point),
                     " (proto_version '1', publication_names '\"", source_.options_.publication,
                     "\"')"),
        StepDeadline());
    if (!started.ok()) return started.status();
    if (started->empty() || PQresultStatus(started->back().get()) != PGRES_COPY_BOTH) {
      return absl::InternalError("START_REPLICATION: no replication stream");
    }
    pos_ = *consistent_point;
    const MonotonicTime now = time_.MonotonicNow();
    last_received_ = now;
    last_status_sent_ = now;
    return MaybeUpToDate();
  }

  absl::Status DecodeSnapshot(const PGresult* registrations, const PGresult* wakes,
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

  static void SkipRow(absl::string_view table, const absl::Status& why) {
    common::LogError("pg_sync_row_skipped", {{"table", table}, {"error", why}});
  }

  // ---- streaming ----

  absl::Status Stream() {
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
        return absl::UnavailableError(absl::StrCat("no message from the server for ",
                                                   absl::FormatDuration(silence)));
      }

      MonotonicTime wake_at =
          std::min(last_status_sent_ + common::ToChrono(options.status_interval),
                   last_received_ + common::ToChrono(silence));
      if (behind) {
        wake_at = std::min(wake_at, last_reply_request_ +
                                        common::ToChrono(options.barrier_repoll_interval));
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

  absl::Status DrainMessages() {
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
      return absl::UnavailableError(
          absl::StrCat("replication stream broke: ", repl_.ErrorMessage()));
    }
  }

  absl::Status HandleCopyData(absl::string_view data) {
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

  static absl::Status Malformed(const absl::Status& status) {
    return absl::InternalError(absl::StrCat("malformed replication message: ", status.message()));
  }

  absl::Status Handle(pgoutput::Begin& begin) {
    const int64_t xid = pgoutput::ExtendXid(begin.xid, xid_reference_);
    xid_reference_ = std::max(xid_reference_, xid);
    txn_xid_ = xid;
    changes_.clear();
    in_transaction_ = true;
    return absl::OkStatus();
  }

  absl::Status Handle(pgoutput::Commit& commit) {
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

  absl::Status Handle(pgoutput::Relation& relation) {
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

  absl::Status Handle(pgoutput::Insert& insert) {
    const RelationState* rel = Lookup(insert.relation_id);
    if (rel == nullptr) return UnknownRelation(insert.relation_id);
    if (!rel->table.has_value()) return absl::OkStatus();
    return AddChange(*rel, ChangeOp::kInsert, insert.new_tuple, nullptr, false);
  }

  absl::Status Handle(pgoutput::Update& update) {
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

  absl::Status Handle(pgoutput::Delete& del) {
    const RelationState* rel = Lookup(del.relation_id);
    if (rel == nullptr) return UnknownRelation(del.relation_id);
    if (!rel->table.has_value()) return absl::OkStatus();
    return AddChange(*rel, ChangeOp::kDelete, del.old_tuple, nullptr, del.old_is_key);
  }

  absl::Status Handle(pgoutput::Truncate& truncate) {
    for (uint32_t id : truncate.relation_ids) {
      const RelationState* rel = Lookup(id);
      if (rel == nullptr || rel->table.has_value()) {
        // No row-level changes describe a truncate: start over.
        return absl::AbortedError("resync: a followed table was truncated");
      }
    }
    return absl::OkStatus();
  }

  absl::Status Handle(pgoutput::Origin&) { return absl::OkStatus(); }
  absl::Status Handle(pgoutput::Type&) { return absl::OkStatus(); }
  absl::Status Handle(pgoutput::LogicalMessage&) { return absl::OkStatus(); }

  const RelationState* Lookup(uint32_t id) const {
    auto it = relations_.find(id);
    return it == relations_.end() ? nullptr : &it->second;
  }

  static absl::Status UnknownRelation(uint32_t id) {
    return absl::InternalError(absl::StrCat("change for relation ", id, " before its description"));
  }

  // `row`: the new row (insert, update) or the old one (delete).
  absl::Status AddChange(const RelationState& rel, ChangeOp op, const pgoutput::Tuple& row,
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

  // A value the stream left out (unchanged TOAST we cannot fill) means our
  // copy would be wrong: resync. A value that does not parse is skipped.
  static absl::Status RowProblem(absl::string_view table, const absl::Status& why) {
    if (absl::IsNotFound(why)) {
      return absl::AbortedError(absl::StrCat("resync: ", table, ": ", why.message()));
    }
    SkipRow(table, why);
    return absl::OkStatus();
  }

  // Everything committed before `lsn` has been delivered.
  absl::Status Advance(Lsn lsn) {
    if (lsn <= pos_) return absl::OkStatus();
    pos_ = lsn;
    if (!up_to_date_) return MaybeUpToDate();
    absl::MutexLock lock(&source_.mu_);
    source_.delivered_lsn_ = pos_;
    return absl::OkStatus();
  }

  absl::Status MaybeUpToDate() {
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

  absl::Status SendStatus(bool reply_requested) {
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

  PostgresSyncSource& source_;
  SyncObserver& observer_;
  common::TimeSource& time_;
  PqConnection repl_;
  PqConnection sql_;

  std::map<uint32_t, RelationState> relations_;
  // Last known state of every wake, to describe deletes (key-only) and
  // updates that leave TOASTed columns out.
  std::unordered_map<int64_t, WakeRow> wakes_;

  bool in_transaction_ = false;
  int64_t txn_xid_ = 0;
  std::vector<RowChange> changes_;
  int64_t xid_reference_ = 0;

  Lsn pos_ = 0;
  Lsn catch_up_target_ = 0;
  bool up_to_date_ = false;
  Lsn requested_for_ = 0;
  MonotonicTime last_received_{};
  MonotonicTime last_status_sent_{};
  MonotonicTime last_reply_request_{};
};

PostgresSyncSource::PostgresSyncSource(std::string database_url, common::TimeSource& time,
                                       PostgresSyncSourceOptions options)
    : url_(std::move(database_url)), time_(time), options_(std::move(options)) {
  stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  kick_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  deadline_timer_ = time_.CreateTimer([this] { OnDeadlineTimer(); });
}

PostgresSyncSource::~PostgresSyncSource() {
  Stop();
  deadline_timer_.reset();
  if (stop_fd_ >= 0) close(stop_fd_);
  if (kick_fd_ >= 0) close(kick_fd_);
}

bool PostgresSyncSource::Stopping() {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

std::string PostgresSyncSource::SlotName() {
  absl::MutexLock lock(&mu_);
  return slot_name_;
}

PostgresSyncSource::Stats PostgresSyncSource::stats() {
  absl::MutexLock lock(&mu_);
  return StatsLocked();
}

PostgresSyncSource::Stats PostgresSyncSource::StatsLocked() {
  Stats stats = stats_;
  stats.flush_queries = queries_issued_;
  return stats;
}

absl::Status PostgresSyncSource::Start(SyncObserver& observer, absl::Duration startup_timeout) {
  absl::MutexLock start_lock(&stop_mu_);
  if (started_) return absl::FailedPreconditionError("postgres sync: Start() called twice");
  started_ = true;
  if (stop_fd_ < 0 || kick_fd_ < 0) {
    return absl::ResourceExhaustedError("postgres sync: cannot create eventfds");
  }
  if (absl::StatusOr<PqConnection::Params> p = ConnectionParams(url_, true); !p.ok()) {
    return p.status();
  }
  if (!IsIdentifier(options_.publication, 63)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "postgres sync: publication name \"", options_.publication, "\" must match [a-z0-9_]+"));
  }
  if (!IsIdentifier(options_.slot_prefix, 40)) {
    return absl::InvalidArgumentError(
        absl::StrCat("postgres sync: slot prefix \"", options_.slot_prefix,
                     "\" must match [a-z0-9_]+ and be at most 40 characters"));
  }
  for (const auto& [name, value] :
       {std::pair<const char*, absl::Duration>{"backoff_initial", options_.backoff_initial},
        {"backoff_max", options_.backoff_max},
        {"connect_timeout", options_.connect_timeout},
        {"status_interval", options_.status_interval},
        {"barrier_repoll_interval", options_.barrier_repoll_interval}}) {
    if (value <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("postgres sync: option ", name, " must be positive"));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::FailedPreconditionError("postgres sync: already stopped");
    observer_ = &observer;
  }
  thread_ = std::thread([this] { Run(); });

  bool expired = false;
  common::TimerPtr timer = time_.CreateTimer([this, &expired] {
    absl::MutexLock lock(&mu_);
    expired = true;
  });
  timer->Enable(startup_timeout);
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    auto done = [this, &expired]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return up_to_date_once_ || expired || !config_error_.ok() || stopping_;
    };
    mu_.Await(absl::Condition(&done));
    if (up_to_date_once_) {
      result = absl::OkStatus();
    } else if (!config_error_.ok()) {
      result = config_error_;
    } else if (stopping_) {
      result = absl::UnavailableError("postgres sync: stopped during startup");
    } else {
      result = absl::UnavailableError(absl::StrCat(
          "postgres sync: not up to date within ", absl::FormatDuration(startup_timeout), ": ",
          last_error_.ok() ? "still loading the snapshot" : last_error_.message()));
    }
  }
  timer.reset();
  if (!result.ok()) {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    const uint64_t one = 1;
    if (write(stop_fd_, &one, sizeof(one)) < 0) {
      // Cannot fail for an eventfd this far from overflow.
    }
    thread_.join();
  }
  return result;
}

void PostgresSyncSource::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (stop_fd_ >= 0) {
    const uint64_t one = 1;
    if (write(stop_fd_, &one, sizeof(one)) < 0) {
      // Cannot fail for an eventfd this far from overflow.
    }
  }
  absl::MutexLock stop_lock(&stop_mu_);
  if (thread_.joinable()) thread_.join();
  {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return active_barriers_ == 0; };
    mu_.Await(absl::Condition(&idle));
    synced_ = false;
    if (!stopped_ && up_to_date_once_) {
      // Once per source that served: how much the barriers shared.
      const Stats stats = StatsLocked();
      common::LogInfo("sync_stats", {{"barriers", stats.barrier_calls},
                                     {"flush_queries", stats.flush_queries},
                                     {"reply_requests", stats.reply_requests},
                                     {"sessions_up_to_date", stats.sessions_up_to_date}});
    }
    stopped_ = true;
    slot_name_.clear();
  }
  absl::MutexLock lock(&query_conn_mu_);
  query_conn_.reset();
}

void PostgresSyncSource::BackoffWait(absl::Duration delay) {
  bool fired = false;
  common::TimerPtr timer = time_.CreateTimer([this, &fired] {
    absl::MutexLock lock(&mu_);
    fired = true;
  });
  timer->Enable(delay);
  {
    absl::MutexLock lock(&mu_);
    auto done = [this, &fired]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return fired || stopping_;
    };
    mu_.Await(absl::Condition(&done));
  }
}

absl::Status PostgresSyncSource::RunSession(bool* reached_up_to_date) {
  SyncObserver* observer;
  {
    absl::MutexLock lock(&mu_);
    observer = observer_;
  }
  Session session(*this, *observer);
  absl::Status status = session.Run();
  *reached_up_to_date = session.reached_up_to_date();
  return status;
}

void PostgresSyncSource::Run() {
  common::Backoff backoff(options_.backoff_initial, options_.backoff_max);
  bool reported_down = false;
  for (;;) {
    bool reached = false;
    absl::Status status = RunSession(&reached);
    {
      absl::MutexLock lock(&mu_);
      synced_ = false;
      slot_name_.clear();
    }
    if (Stopping()) return;
    if (reached) {
      backoff.Reset();
      reported_down = false;
    }
    if (absl::IsAborted(status) && reached) {
      common::LogInfo("pg_sync_resync", {{"reason", status.message()}});
      continue;
    }
    bool give_up = false;
    {
      absl::MutexLock lock(&mu_);
      last_error_ = status;
      if (IsConfigError(status) && !up_to_date_once_) {
        config_error_ =
            absl::InvalidArgumentError(absl::StrCat("postgres sync: ", status.message()));
        give_up = true;
      }
    }
    if (give_up) return;
    const absl::Duration delay = backoff.Next();
    common::LogWarn("pg_sync_disconnected",
                    {{"error", status}, {"retry_in", absl::FormatDuration(delay)}});
    if (!reported_down) {
      reported_down = true;
      SyncObserver* observer;
      {
        absl::MutexLock lock(&mu_);
        observer = observer_;
      }
      observer->OnDisconnected(status);
    }
    BackoffWait(delay);
    if (Stopping()) return;
  }
}

void PostgresSyncSource::KickStreamer() {
  const uint64_t one = 1;
  if (write(kick_fd_, &one, sizeof(one)) < 0) {
    // Full counter: the streamer has plenty of kicks pending already.
  }
}

absl::StatusOr<Lsn> PostgresSyncSource::QueryFlushLsn(MonotonicTime deadline) {
  constexpr char kStatement[] = "wakeline_flush_lsn";
  absl::MutexLock lock(&query_conn_mu_);
  if (query_conn_ == nullptr || !query_conn_->connected()) {
    absl::StatusOr<PqConnection::Params> params = ConnectionParams(url_, false);
    if (!params.ok()) return params.status();
    query_conn_ = std::make_unique<PqConnection>(time_, stop_fd_);
    absl::Status s = query_conn_->Connect(*params, deadline);
    if (s.ok()) s = query_conn_->Prepare(kStatement, "SELECT pg_current_wal_flush_lsn()", deadline);
    if (!s.ok()) {
      query_conn_.reset();
      return s;
    }
  }
  absl::StatusOr<std::vector<PgResultPtr>> results =
      query_conn_->ExecPrepared(kStatement, deadline);
  if (!results.ok()) {
    query_conn_.reset();
    return results.status();
  }
  return pgoutput::ParseLsn(Value(results->back().get(), 0, 0));
}

void PostgresSyncSource::AddDeadlineLocked(MonotonicTime deadline) {
  barrier_deadlines_.insert(deadline);
  if (deadline < deadline_timer_at_) {
    deadline_timer_at_ = deadline;
    deadline_timer_->Enable(common::ToAbsl(deadline - time_.MonotonicNow()));
  }
}

void PostgresSyncSource::RemoveDeadlineLocked(MonotonicTime deadline) {
  // The timer stays armed: firing for nobody is cheaper than re-arming.
  barrier_deadlines_.erase(barrier_deadlines_.find(deadline));
}

void PostgresSyncSource::OnDeadlineTimer() {
  absl::MutexLock lock(&mu_);
  const MonotonicTime now = time_.MonotonicNow();
  deadlines_passed_ = std::max(deadlines_passed_, now);
  deadline_timer_at_ = MonotonicTime::max();
  auto next = barrier_deadlines_.upper_bound(now);
  if (next != barrier_deadlines_.end()) {
    deadline_timer_at_ = *next;
    deadline_timer_->Enable(common::ToAbsl(*next - now));
  }
}

absl::Status PostgresSyncSource::Barrier(absl::Duration timeout) {
  const MonotonicTime deadline = time_.MonotonicNow() + common::ToChrono(timeout);
  absl::MutexLock lock(&mu_);
  if (observer_ == nullptr) {
    return absl::FailedPreconditionError("postgres sync: Barrier() before Start()");
  }
  if (stopping_) return absl::UnavailableError("postgres sync: stopped");
  ++active_barriers_;
  ++stats_.barrier_calls;
  AddDeadlineLocked(deadline);
  absl::Status result = BarrierLocked(deadline, timeout);
  RemoveDeadlineLocked(deadline);
  --active_barriers_;
  return result;
}

absl::Status PostgresSyncSource::BarrierLocked(MonotonicTime deadline, absl::Duration timeout) {
  auto expired = [this, deadline]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return deadlines_passed_ >= deadline;
  };
  // Phase 1: the server's flush position, read after this call began.
  const uint64_t ticket = queries_issued_ + 1;
  int failures = 0;
  Lsn target = 0;
  for (;;) {
    if (stopping_) return absl::UnavailableError("postgres sync: stopped");
    if (queries_done_ >= ticket) {
      target = queried_lsn_;
      break;
    }
    if (expired()) {
      const absl::Status& why = !query_error_.ok() ? query_error_ : last_error_;
      return absl::UnavailableError(
          absl::StrCat(synced_ ? "postgres sync: barrier timed out reading the WAL position"
                               : "postgres sync: disconnected from PostgreSQL",
                       why.ok() ? "" : absl::StrCat(": ", why.message())));
    }
    if (!query_in_flight_ && (synced_ || failures == 0)) {
      query_in_flight_ = true;
      const uint64_t number = ++queries_issued_;
      mu_.Unlock();
      absl::StatusOr<Lsn> lsn = QueryFlushLsn(deadline);
      mu_.Lock();
      query_in_flight_ = false;
      if (lsn.ok()) {
        queries_done_ = number;
        queried_lsn_ = std::max(queried_lsn_, *lsn);
        query_error_ = absl::OkStatus();
      } else {
        query_error_ = lsn.status();
        ++failures;
        if (synced_ && failures >= 2) {
          return absl::UnavailableError(absl::StrCat(
              "postgres sync: cannot read the WAL position: ", lsn.status().message()));
        }
      }
      continue;
    }
    // Another caller's query will serve us, or the database is down and only
    // the stream's recovery tells when to try again.
    auto progress = [this, ticket, failures, &expired]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || expired() || queries_done_ >= ticket ||
             (!query_in_flight_ && (synced_ || failures == 0));
    };
    mu_.Await(absl::Condition(&progress));
  }

  // Phase 2: the stream has delivered everything before that position.
  auto reached = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return synced_ && delivered_lsn_ >= target;
  };
  if (!reached()) {
    if (target > wanted_lsn_) {
      wanted_lsn_ = target;
      KickStreamer();
    }
    auto done = [this, &reached, &expired]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return reached() || stopping_ || expired();
    };
    mu_.Await(absl::Condition(&done));
  }
  if (reached()) return absl::OkStatus();
  if (stopping_) return absl::UnavailableError("postgres sync: stopped");
  if (!synced_) {
    return absl::UnavailableError(
        absl::StrCat("postgres sync: disconnected from PostgreSQL",
                     last_error_.ok() ? "" : absl::StrCat(": ", last_error_.message())));
  }
  return absl::UnavailableError(absl::StrCat(
      "postgres sync: stream still behind after ", absl::FormatDuration(timeout), " (delivered ",
      pgoutput::FormatLsn(delivered_lsn_), ", need ", pgoutput::FormatLsn(target), ")"));
}

}  // namespace wake::sync
