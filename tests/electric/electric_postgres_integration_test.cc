// End to end with a real database: rows are written to PostgreSQL, the
// scripted Electric serves exactly what Postgres returns (text output,
// txids from pg_current_xact_id(), global_last_seen_lsn from
// pg_current_wal_lsn()), and ElectricSyncSource delivers them; the read
// barrier uses the production pg_current_wal_lsn() provider.
#include <memory>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/postgres.h"
#include "common/real_time_source.h"
#include "common/sync/electric/electric_sync_source.h"
#include "common/sync/electric/electric_values.h"
#include "common/sync/electric/postgres_lsn.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry-service/migrations.h"
#include "tests/electric/recording_observer.h"
#include "tests/electric/scripted_electric_server.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_database.h"

namespace wake::sync {
namespace {

using ::testing::ElementsAre;
using ::wake::testing::IsOk;
using ::wake::testing::RecordingObserver;
using ::wake::testing::ScriptedElectricServer;
using ::wake::testing::ShapeChangeMessage;
using State = RecordingObserver::State;

constexpr char kRegistrations[] = "wake_registrations";
constexpr char kWakes[] = "wakes";
constexpr absl::Duration kWait = absl::Seconds(20);

// One row as Electric sends it: every column in Postgres' text output
// (session TimeZone UTC, DateStyle ISO), NULL as JSON null.
nlohmann::json ShapeValue(pqxx::transaction_base& tx, const std::string& table,
                          const std::vector<std::string>& columns, int64_t id) {
  pqxx::row row = tx.exec_params1(
      absl::StrCat("SELECT ", absl::StrJoin(columns, ", "), " FROM ", table, " WHERE id = $1"),
      id);
  nlohmann::json value = nlohmann::json::object();
  for (size_t i = 0; i < columns.size(); ++i) {
    value[columns[i]] = row[static_cast<int>(i)].is_null() ? nlohmann::json(nullptr)
                                                           : nlohmann::json(row[static_cast<int>(i)].c_str());
  }
  return value;
}

class ElectricPostgresIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = wake::testing::TestDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    writer_ = std::make_unique<pqxx::connection>(db_->url());
    ASSERT_TRUE(registry::ApplyMigrations(*writer_).ok());
    {
      pqxx::nontransaction tx(*writer_);
      tx.exec("SET TimeZone = 'UTC'");
      tx.exec("SET DateStyle = 'ISO, DMY'");
    }
    lsn_reader_ = std::make_unique<pqxx::connection>(db_->url());
    pool_ = std::make_unique<common::PgPool>(db_->url(), 2);

    auto server = ScriptedElectricServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    server_->CreateShape(kRegistrations, "reg-1");
    server_->CreateShape(kWakes, "wakes-1");
    // Called under the server's lock, like every Ingest: an LSN is only
    // reported once the rows committed before it are in the shape logs.
    server_->SetGlobalLsnSource([this] {
      pqxx::nontransaction tx(*lsn_reader_);
      return *ParseLsn(tx.exec1("SELECT pg_current_wal_lsn()::text")[0].c_str());
    });
  }

  void TearDown() override {
    if (source_ != nullptr) source_->Stop();
    source_.reset();
    server_.reset();
  }

  // Registers a wake the way the registry does (one transaction) and feeds
  // the committed row to the scripted Electric with the transaction's txid.
  int64_t Register(const std::string& subscriber, const std::string& source,
                   const std::string& condition, int64_t* txid) {
    int64_t id = 0;
    server_->Ingest(kRegistrations, [&] {
      pqxx::work tx(*writer_);
      pqxx::row row = tx.exec_params1(
          "INSERT INTO wake_registrations (tenant_id, subscriber_url, source_url, condition, "
          "debounce_ms, one_shot) VALUES ('acme', $1, $2, $3::jsonb, 250, true) "
          "RETURNING id, pg_current_xact_id()::text",
          subscriber, source, condition);
      id = row[0].as<int64_t>();
      *txid = std::stoll(row[1].c_str());
      nlohmann::json value = ShapeValue(tx, kRegistrations, RegistrationShapeColumns(), id);
      tx.commit();
      return std::vector<nlohmann::json>{
          ShapeChangeMessage(kRegistrations, "insert", value, {*txid}, true)};
    });
    return id;
  }

  absl::Time CreatedAt(int64_t id) {
    pqxx::nontransaction tx(*writer_);
    return absl::FromUnixMicros(
        tx.exec_params1("SELECT (extract(epoch FROM created_at) * 1000000)::bigint "
                        "FROM wake_registrations WHERE id = $1",
                        id)[0]
            .as<int64_t>());
  }

  std::unique_ptr<wake::testing::TestDatabase> db_;
  std::unique_ptr<pqxx::connection> writer_;
  std::unique_ptr<pqxx::connection> lsn_reader_;
  std::unique_ptr<common::PgPool> pool_;
  std::unique_ptr<ScriptedElectricServer> server_;
  common::RealTimeSource time_;
  RecordingObserver observer_;
  std::unique_ptr<ElectricSyncSource> source_;
};

TEST_F(ElectricPostgresIntegrationTest, RowsWrittenToPostgresReachTheCollectionWithTheirTxids) {
  // Rows that exist before the registry starts form the snapshot.
  int64_t ignored = 0;
  const int64_t first = Register("/parent/1", "/child/1", R"({"on":"runFinished"})", &ignored);
  const int64_t second = Register("/parent/1", "/child/2",
                                  R"({"on":"change","collections":["inbox"],"ops":["update","insert"]})",
                                  &ignored);
  // The scripted log starts as a snapshot: same rows, no txids.
  server_->Rotate(kRegistrations, "reg-2", [&] {
    pqxx::nontransaction tx(*writer_);
    std::vector<nlohmann::json> log;
    for (int64_t id : {first, second}) {
      log.push_back(ShapeChangeMessage(kRegistrations, "insert",
                                       ShapeValue(tx, kRegistrations, RegistrationShapeColumns(), id)));
    }
    return log;
  }());

  ElectricSyncConfig config;
  config.url = server_->url();
  config.backoff_initial = absl::Milliseconds(10);
  source_ = std::make_unique<ElectricSyncSource>(config, time_, MakePostgresLsnProvider(*pool_));
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());

  State state = observer_.Snapshot();
  ASSERT_EQ(state.registrations.size(), 2u);
  const Registration& change = state.registrations.at(second);
  EXPECT_EQ(change.tenant_id, "acme");
  EXPECT_EQ(change.subscriber_url, "/parent/1");
  EXPECT_EQ(change.source_url, "/child/2");
  EXPECT_EQ(change.condition.kind, ConditionKind::kChange);
  EXPECT_THAT(change.condition.collections, ElementsAre("inbox"));
  EXPECT_THAT(change.condition.ops, ElementsAre(ChangeOp::kInsert, ChangeOp::kUpdate));
  EXPECT_EQ(change.debounce_ms, 250);
  EXPECT_TRUE(change.one_shot);
  EXPECT_FALSE(change.timeout_consumed);
  EXPECT_TRUE(change.include_response);
  EXPECT_EQ(change.created_at, CreatedAt(second));
  EXPECT_EQ(state.registrations.at(first).condition.kind, ConditionKind::kRunFinished);

  // A registration while running: after the barrier it is in the collection,
  // confirmed by the txid Postgres gave its transaction.
  int64_t txid = 0;
  const int64_t third = Register("/parent/9", "/child/9", R"({"on":"runFinished"})", &txid);
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  state = observer_.Snapshot();
  ASSERT_EQ(state.registrations.count(third), 1u);
  EXPECT_EQ(state.registrations.at(third).created_at, CreatedAt(third));
  bool confirmed = false;
  for (const auto& e : state.events) {
    if (e.kind != RecordingObserver::Kind::kBatch) continue;
    for (const RowChange& c : e.batch.changes) {
      if (c.registration.has_value() && c.registration->id == third) {
        EXPECT_THAT(e.batch.txids, ElementsAre(txid));
        confirmed = true;
      }
    }
  }
  EXPECT_TRUE(confirmed);

  // An update and a delete in one transaction; a pending wake in another.
  int64_t change_txid = 0;
  server_->Ingest(kRegistrations, [&] {
    pqxx::work tx(*writer_);
    change_txid = std::stoll(tx.exec1("SELECT pg_current_xact_id()::text")[0].c_str());
    tx.exec_params0("UPDATE wake_registrations SET timeout_consumed = true WHERE id = $1", first);
    nlohmann::json updated = ShapeValue(tx, kRegistrations, RegistrationShapeColumns(), first);
    nlohmann::json deleted = ShapeValue(tx, kRegistrations, RegistrationShapeColumns(), second);
    tx.exec_params0("DELETE FROM wake_registrations WHERE id = $1", second);
    tx.commit();
    return std::vector<nlohmann::json>{
        ShapeChangeMessage(kRegistrations, "update", updated, {change_txid}, false),
        ShapeChangeMessage(kRegistrations, "delete", deleted, {change_txid}, true)};
  });
  server_->Ingest(kWakes, [&] {
    pqxx::work tx(*writer_);
    pqxx::row row = tx.exec_params1(
        "INSERT INTO wakes (tenant_id, stream, registration_id, source_event_key, message) "
        "VALUES ('acme', '/parent/9', $1, 'update:run-1', '{}'::jsonb) "
        "RETURNING id, pg_current_xact_id()::text",
        third);
    nlohmann::json value = ShapeValue(tx, kWakes, WakeShapeColumns(), row[0].as<int64_t>());
    const int64_t wake_txid = std::stoll(row[1].c_str());
    tx.commit();
    return std::vector<nlohmann::json>{ShapeChangeMessage(kWakes, "insert", value, {wake_txid}, true)};
  });
  ASSERT_THAT(source_->Barrier(kWait), IsOk());

  state = observer_.Snapshot();
  EXPECT_EQ(state.registrations.count(second), 0u);
  EXPECT_TRUE(state.registrations.at(first).timeout_consumed);
  ASSERT_EQ(state.wakes.size(), 1u);
  const WakeRow& wake = state.wakes.begin()->second;
  EXPECT_EQ(wake.stream, "/parent/9");
  EXPECT_EQ(wake.registration_id, third);
  EXPECT_TRUE(wake.pending);
  EXPECT_FALSE(observer_.overlapped());
}

}  // namespace
}  // namespace wake::sync
