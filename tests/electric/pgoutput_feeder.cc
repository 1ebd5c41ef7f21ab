#include "tests/electric/pgoutput_feeder.h"

#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sync/postgres/pgoutput.h"

namespace wake::testing {
namespace {

namespace pgo = ::wake::sync::pgoutput;

nlohmann::json RowJson(const pgo::Relation& relation, const pgo::Tuple& tuple,
                       const pgo::Tuple* old) {
  nlohmann::json row = nlohmann::json::object();
  for (size_t i = 0; i < relation.columns.size() && i < tuple.size(); ++i) {
    const pgo::TupleValue& value = tuple[i];
    switch (value.kind) {
      case pgo::TupleValue::Kind::kText:
      case pgo::TupleValue::Kind::kBinary:
        row[relation.columns[i].name] = value.data;
        break;
      case pgo::TupleValue::Kind::kNull:
        row[relation.columns[i].name] = nullptr;
        break;
      case pgo::TupleValue::Kind::kUnchangedToast:
        // REPLICA IDENTITY FULL: the old tuple has it (Electric's
        // message_converter.ex does the same).
        row[relation.columns[i].name] =
            old != nullptr && i < old->size() ? nlohmann::json((*old)[i].data) : nullptr;
        break;
    }
  }
  return row;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PgoutputFeeder>> PgoutputFeeder::Start(
    const std::string& url, const std::string& name, const std::vector<std::string>& tables,
    ScriptedElectricServer& server, absl::Duration interval) {
  try {
    auto connection = std::make_unique<pqxx::connection>(url);
    int64_t reference = 0;
    {
      // Ended before the feeder's thread starts using the connection.
      pqxx::nontransaction tx(*connection);
      tx.exec0(
          absl::StrCat("CREATE PUBLICATION ", name, " FOR TABLE ", absl::StrJoin(tables, ", ")));
      tx.exec_params("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", name);
      reference =
          tx.exec1("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")[0].as<int64_t>();
    }
    return std::unique_ptr<PgoutputFeeder>(
        new PgoutputFeeder(std::move(connection), name, server, interval, reference));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("pgoutput feeder: ", e.what()));
  }
}

PgoutputFeeder::PgoutputFeeder(std::unique_ptr<pqxx::connection> connection, std::string name,
                               ScriptedElectricServer& server, absl::Duration interval,
                               int64_t xid_reference)
    : connection_(std::move(connection)),
      name_(std::move(name)),
      server_(server),
      interval_(interval),
      xid_reference_(xid_reference) {
  thread_ = std::thread([this] { Run(); });
}

PgoutputFeeder::~PgoutputFeeder() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
  try {
    pqxx::nontransaction tx(*connection_);
    tx.exec_params("SELECT pg_drop_replication_slot($1)", name_);
  } catch (const std::exception&) {
    // The database goes next anyway; nothing else to do.
  }
}

size_t PgoutputFeeder::transactions() {
  absl::MutexLock lock(&mu_);
  return transactions_;
}

absl::Status PgoutputFeeder::last_error() {
  absl::MutexLock lock(&mu_);
  return last_error_;
}

void PgoutputFeeder::Run() {
  for (;;) {
    absl::Status status = PollOnce();
    absl::MutexLock lock(&mu_);
    if (!status.ok()) last_error_ = status;
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), interval_)) return;
  }
}

absl::Status PgoutputFeeder::PollOnce() {
  std::vector<std::string> messages;
  try {
    pqxx::nontransaction tx(*connection_);
    pqxx::result rows = tx.exec_params(
        "SELECT data FROM pg_logical_slot_get_binary_changes($1::name, NULL, NULL, "
        "'proto_version', '1', 'publication_names', $2::text)",
        name_, name_);
    for (const pqxx::row& row : rows) {
      messages.push_back(pqxx::binarystring(row[0]).str());
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("pgoutput feeder: ", e.what()));
  }
  std::optional<PeerTransaction> txn;
  for (const std::string& data : messages) {
    absl::StatusOr<pgo::Message> message = pgo::DecodeMessage(data);
    if (!message.ok()) return message.status();
    if (auto* relation = std::get_if<pgo::Relation>(&*message)) {
      relations_[relation->id] = *relation;
    } else if (auto* begin = std::get_if<pgo::Begin>(&*message)) {
      txn = PeerTransaction{};
      txn->lsn = begin->final_lsn;  // Electric's transaction LSN.
      txn->xid = pgo::ExtendXid(begin->xid, xid_reference_);
      xid_reference_ = std::max(xid_reference_, txn->xid);
    } else if (auto* insert = std::get_if<pgo::Insert>(&*message)) {
      const pgo::Relation& r = relations_[insert->relation_id];
      txn->changes.push_back({r.name, "insert", RowJson(r, insert->new_tuple, nullptr), nullptr});
    } else if (auto* update = std::get_if<pgo::Update>(&*message)) {
      const pgo::Relation& r = relations_[update->relation_id];
      const pgo::Tuple* old = update->old_tuple.has_value() ? &*update->old_tuple : nullptr;
      txn->changes.push_back({r.name, "update", RowJson(r, update->new_tuple, old),
                              old != nullptr ? RowJson(r, *old, nullptr) : nlohmann::json()});
    } else if (auto* del = std::get_if<pgo::Delete>(&*message)) {
      const pgo::Relation& r = relations_[del->relation_id];
      txn->changes.push_back({r.name, "delete", RowJson(r, del->old_tuple, nullptr), nullptr});
    } else if (std::holds_alternative<pgo::Commit>(*message)) {
      if (txn.has_value()) server_.Commit(*txn);
      txn.reset();
      absl::MutexLock lock(&mu_);
      ++transactions_;
    }
  }
  return absl::OkStatus();
}

}  // namespace wake::testing
