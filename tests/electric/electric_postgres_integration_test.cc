// End to end with a real database: rows are written to PostgreSQL and reach
// the scripted Electric the way they reach Electric, through a pgoutput
// replication slot (tests/electric/pgoutput_feeder.h): every transaction
// with the LSN and 32-bit xid of its Begin message, every row as pgoutput's
// text. The source is built by the registry's own factory (marker writes on
// the real database), so the read barrier is the production one.
#include <memory>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/postgres.h"
#include "common/real_time_source.h"
#include "common/sync/electric/electric_sync_source.h"
#include "common/sync/electric/electric_values.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry-service/migrations.h"
#include "registry-service/sync_factory.h"
#include "tests/electric/pgoutput_feeder.h"
#include "tests/electric/scripted_electric_server.h"
#include "tests/support/recording_observer.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_database.h"

namespace wake::sync {
namespace {

using ::testing::ElementsAre;
using ::wake::testing::IsOk;
using ::wake::testing::PgoutputFeeder;
using ::wake::testing::RecordingObserver;
using ::wake::testing::ScriptedElectricServer;
using State = RecordingObserver::State;

constexpr char kRegistrations[] = "wake_registrations";
constexpr char kWakes[] = "wakes";
constexpr absl::Duration kWait = absl::Seconds(20);

// A snapshot row as Electric's initial query renders it: every column
// `::text` (shapes/querying.ex), NULL as JSON null.
std::vector<nlohmann::json> SnapshotRows(pqxx::connection& connection, const std::string& table,
                                         const std::vector<std::string>& columns) {
  pqxx::nontransaction tx(connection);
  std::vector<std::string> texts;
  for (const std::string& c : columns) texts.push_back(absl::StrCat(c, "::text"));
  std::vector<nlohmann::json> rows;
  for (const pqxx::row& row : tx.exec(
           absl::StrCat("SELECT ", absl::StrJoin(texts, ", "), " FROM ", table, " ORDER BY 1"))) {
    nlohmann::json value = nlohmann::json::object();
    for (size_t i = 0; i < columns.size(); ++i) {
      const int column = static_cast<int>(i);
      value[columns[i]] =
          row[column].is_null() ? nlohmann::json(nullptr) : nlohmann::json(row[column].c_str());
    }
    rows.push_back(std::move(value));
  }
  return rows;
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
      // Electric reads with these settings (electric-api.yaml, `value`).
      pqxx::nontransaction tx(*writer_);
      tx.exec("SET TimeZone = 'UTC'");
      tx.exec("SET DateStyle = 'ISO, DMY'");
    }
    auto server = ScriptedElectricServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    server_->CreateShape(kRegistrations, "reg-1");
    server_->CreateShape(kWakes, "wakes-1");
    server_->CreateShape(kMarkersTable, "markers-1");
    auto feeder = PgoutputFeeder::Start(db_->url(), absl::StrCat("electric_", db_->name()),
                                        {kRegistrations, kWakes, kMarkersTable}, *server_);
    ASSERT_TRUE(feeder.ok()) << feeder.status();
    feeder_ = std::move(*feeder);
  }

  void TearDown() override {
    if (source_ != nullptr) source_->Stop();
    source_.reset();
    if (feeder_ != nullptr) {
      EXPECT_THAT(feeder_->last_error(), IsOk());
    }
    feeder_.reset();  // Drops the slot before the database goes.
    server_.reset();
  }

  void StartSource() {
    registry::RegistryConfig config;
    config.sync = registry::SyncSourceKind::kElectric;
    config.database_url = db_->url();
    config.electric_url = server_->url();
    absl::StatusOr<SyncSourcePtr> source = registry::MakeSyncSource(config, time_);
    ASSERT_TRUE(source.ok()) << source.status();
    source_ = std::move(*source);
    ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  }

  // Registers a wake the way the registry does (one transaction); returns
  // its id and the xid8 the store reports to RegisterWake's caller.
  int64_t Register(const std::string& subscriber, const std::string& source, int64_t* txid) {
    pqxx::work tx(*writer_);
    pqxx::row row = tx.exec_params1(
        "INSERT INTO wake_registrations (tenant_id, subscriber_url, source_url, condition, "
        "debounce_ms, one_shot) VALUES ('acme', $1, $2, '{\"on\":\"runFinished\"}'::jsonb, "
        "250, true) RETURNING id, pg_current_xact_id()::text::bigint",
        subscriber, source);
    tx.commit();
    *txid = row[1].as<int64_t>();
    return row[0].as<int64_t>();
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
  std::unique_ptr<ScriptedElectricServer> server_;
  std::unique_ptr<PgoutputFeeder> feeder_;
  common::RealTimeSource time_;
  RecordingObserver observer_;
  SyncSourcePtr source_;
};

TEST_F(ElectricPostgresIntegrationTest, RowsWrittenToPostgresReachTheCollectionWithTheirTxids) {
  // Rows that exist before the registry starts form the snapshot.
  int64_t ignored = 0;
  const int64_t first = Register("/parent/1", "/child/1", &ignored);
  const int64_t second = Register("/parent/1", "/child/2", &ignored);
  {
    pqxx::work tx(*writer_);
    tx.exec_params0(
        "UPDATE wake_registrations SET condition = '{\"on\":\"change\",\"collections\":"
        "[\"inbox\"],\"ops\":[\"update\",\"insert\"]}'::jsonb WHERE id = $1",
        second);
    tx.commit();
  }
  server_->Rotate(kRegistrations, "reg-2",
                  SnapshotRows(*writer_, kRegistrations, RegistrationShapeColumns()));
  StartSource();

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
  // confirmed by the same xid8 the store returned (Electric sent 32 bits).
  int64_t txid = 0;
  const int64_t third = Register("/parent/9", "/child/9", &txid);
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
  {
    pqxx::work tx(*writer_);
    tx.exec_params0("UPDATE wake_registrations SET timeout_consumed = true WHERE id = $1", first);
    tx.exec_params0("DELETE FROM wake_registrations WHERE id = $1", second);
    tx.exec_params0(
        "INSERT INTO wakes (tenant_id, stream, registration_id, source_event_key, message) "
        "VALUES ('acme', '/parent/9', $1, 'update:run-1', '{}'::jsonb)",
        third);
    tx.commit();
  }
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

// On a quiet database Electric's last processed LSN stays at the last shaped
// transaction's commit record, behind pg_current_wal_lsn() for good; writes
// to tables Electric does not follow (stream_claims) move the WAL further.
// The barrier must complete anyway, promptly.
TEST_F(ElectricPostgresIntegrationTest, BarrierCompletesOnAQuietDatabaseAndAfterUnshapedWrites) {
  StartSource();
  const absl::Time start = absl::Now();
  ASSERT_THAT(source_->Barrier(absl::Seconds(5)), IsOk());
  {
    pqxx::work tx(*writer_);
    tx.exec0(
        "INSERT INTO stream_claims (tenant_id, stream, claim_token, lease_expires_at) "
        "VALUES ('acme', '/s', 'token-1', now() + interval '1 minute')");
    tx.commit();
  }
  ASSERT_THAT(source_->Barrier(absl::Seconds(5)), IsOk());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));

  // The barrier still covers every shaped write committed before it.
  int64_t txid = 0;
  const int64_t id = Register("/parent/2", "/child/2", &txid);
  ASSERT_THAT(source_->Barrier(absl::Seconds(5)), IsOk());
  EXPECT_EQ(observer_.Snapshot().registrations.count(id), 1u);
}

}  // namespace
}  // namespace wake::sync
