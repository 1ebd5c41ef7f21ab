// The postgres sync source against a real PostgreSQL (scripts/test.sh starts
// one): snapshot, live changes with their txids, the read barrier, Stop()
// and reconnects. Each test has its own database with the registry's
// migrations applied.
#include "common/sync/postgres/postgres_sync_source.h"

#include <atomic>
#include <cstdlib>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/real_time_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry-service/migrations.h"
#include "tests/support/recording_observer.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_database.h"

namespace wake::testing {
namespace {

using sync::ChangeOp;
using sync::PostgresSyncSource;
using sync::PostgresSyncSourceOptions;
using sync::SyncTable;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Kind = RecordingObserver::Kind;

constexpr absl::Duration kWait = absl::Seconds(20);

class PostgresSyncSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = TestDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    writer_ = std::make_unique<pqxx::connection>(db_->url());
    ASSERT_THAT(registry::ApplyMigrations(*writer_), IsOk());
  }

  void TearDown() override {
    if (source_ != nullptr) source_->Stop();
  }

  PostgresSyncSource& MakeSource(PostgresSyncSourceOptions options = FastOptions()) {
    source_ = std::make_unique<PostgresSyncSource>(db_->url(), time_, options);
    return *source_;
  }

  static PostgresSyncSourceOptions FastOptions() {
    PostgresSyncSourceOptions options;
    options.backoff_initial = absl::Milliseconds(50);
    options.backoff_max = absl::Milliseconds(200);
    return options;
  }

  void StartSource(PostgresSyncSourceOptions options = FastOptions()) {
    ASSERT_THAT(MakeSource(options).Start(observer_, kWait), IsOk());
  }

  // Inserts a registration in its own transaction; returns (id, txid).
  std::pair<int64_t, int64_t> InsertRegistration(
      const std::string& subscriber, const std::string& condition = R"({"on":"runFinished"})") {
    pqxx::work tx(*writer_);
    const pqxx::row row = tx.exec1(absl::StrCat(
        "INSERT INTO wake_registrations (tenant_id, subscriber_url, source_url, condition, "
        "debounce_ms, one_shot, manifest_key) VALUES ('acme', ",
        tx.quote(subscriber), ", '/child/1', ", tx.quote(condition),
        "::jsonb, 25, true, 'mk') RETURNING id"));
    const int64_t txid = tx.exec1("SELECT pg_current_xact_id()::text::bigint")[0].as<int64_t>();
    tx.commit();
    return {row[0].as<int64_t>(), txid};
  }

  // The last batch holding a change of `id` in `table`.
  static const sync::SyncBatch* FindBatch(const RecordingObserver::State& state, SyncTable table,
                                          int64_t id, ChangeOp op) {
    for (auto it = state.events.rbegin(); it != state.events.rend(); ++it) {
      if (it->kind != Kind::kBatch) continue;
      for (const sync::RowChange& c : it->batch.changes) {
        if (c.table != table || c.op != op) continue;
        const int64_t row_id = c.registration.has_value() ? c.registration->id : c.wake->id;
        if (row_id == id) return &it->batch;
      }
    }
    return nullptr;
  }

  common::RealTimeSource time_;
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<pqxx::connection> writer_;
  RecordingObserver observer_;
  std::unique_ptr<PostgresSyncSource> source_;
};

TEST_F(PostgresSyncSourceTest, SnapshotHoldsExistingRowsThenUpToDate) {
  const auto [first, first_txid] = InsertRegistration("/parent/1");
  const auto [second, second_txid] = InsertRegistration(
      "/parent/2", R"({"on":"change","collections":["inbox"],"ops":["insert"]})");
  (void)first_txid;
  (void)second_txid;
  db_->QueryValue(absl::StrCat(
      "INSERT INTO wakes (tenant_id, stream, registration_id, source_event_key, message) "
      "VALUES ('acme', '/parent/1', ",
      first, ", 'k1', '{}'), ('acme', '/parent/9', 1, 'k2', '{}')"));
  db_->QueryValue("UPDATE wakes SET claim_token = 'tok' WHERE source_event_key = 'k2'");

  StartSource();
  const RecordingObserver::State state = observer_.Snapshot();
  ASSERT_GE(state.events.size(), 3u);
  EXPECT_EQ(state.events.front().kind, Kind::kReset);
  EXPECT_EQ(state.events.back().kind, Kind::kUpToDate);
  for (const sync::SyncBatch& batch : state.Batches()) EXPECT_THAT(batch.txids, IsEmpty());

  ASSERT_EQ(state.registrations.size(), 2u);
  const sync::Registration& r1 = state.registrations.at(first);
  EXPECT_EQ(r1.tenant_id, "acme");
  EXPECT_EQ(r1.subscriber_url, "/parent/1");
  EXPECT_EQ(r1.source_url, "/child/1");
  EXPECT_EQ(r1.condition.kind, sync::ConditionKind::kRunFinished);
  EXPECT_EQ(r1.debounce_ms, 25);
  EXPECT_TRUE(r1.one_shot);
  EXPECT_TRUE(r1.include_response);
  EXPECT_EQ(r1.manifest_key, "mk");
  const int64_t created_us = std::stoll(db_->QueryValue(absl::StrCat(
      "SELECT (extract(epoch FROM created_at) * 1000000)::bigint FROM wake_registrations "
      "WHERE id = ",
      first)));
  EXPECT_EQ(absl::ToUnixMicros(r1.created_at), created_us);
  const sync::Registration& r2 = state.registrations.at(second);
  EXPECT_EQ(r2.condition.kind, sync::ConditionKind::kChange);
  EXPECT_THAT(r2.condition.collections, ElementsAre("inbox"));
  EXPECT_THAT(r2.condition.ops, ElementsAre(ChangeOp::kInsert));

  ASSERT_EQ(state.wakes.size(), 2u);
  int pending = 0;
  for (const auto& [id, wake] : state.wakes) {
    EXPECT_EQ(wake.tenant_id, "acme");
    if (wake.pending) {
      ++pending;
      EXPECT_EQ(wake.stream, "/parent/1");
      EXPECT_EQ(wake.registration_id, first);
    } else {
      EXPECT_EQ(wake.stream, "/parent/9");
    }
  }
  EXPECT_EQ(pending, 1);
  EXPECT_THAT(source_->SlotName(), HasSubstr("wakeline_sync_"));
}

TEST_F(PostgresSyncSourceTest, RegistrationChangesArriveWithTheirTxids) {
  StartSource();
  const auto [id, insert_txid] = InsertRegistration("/parent/1");
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  {
    const RecordingObserver::State state = observer_.Snapshot();
    const sync::SyncBatch* batch =
        FindBatch(state, SyncTable::kRegistrations, id, ChangeOp::kInsert);
    ASSERT_NE(batch, nullptr);
    EXPECT_THAT(batch->txids, ElementsAre(insert_txid));
    ASSERT_EQ(batch->changes.size(), 1u);
    EXPECT_EQ(batch->changes[0].registration->subscriber_url, "/parent/1");
    EXPECT_EQ(batch->changes[0].registration->debounce_ms, 25);
  }

  int64_t update_txid;
  {
    pqxx::work tx(*writer_);
    tx.exec0(
        absl::StrCat("UPDATE wake_registrations SET timeout_consumed = true, "
                     "source_url = '/child/2' WHERE id = ",
                     id));
    update_txid = tx.exec1("SELECT pg_current_xact_id()::text::bigint")[0].as<int64_t>();
    tx.commit();
  }
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  {
    const RecordingObserver::State state = observer_.Snapshot();
    const sync::SyncBatch* batch =
        FindBatch(state, SyncTable::kRegistrations, id, ChangeOp::kUpdate);
    ASSERT_NE(batch, nullptr);
    EXPECT_THAT(batch->txids, ElementsAre(update_txid));
    EXPECT_TRUE(batch->changes[0].registration->timeout_consumed);
    EXPECT_EQ(batch->changes[0].registration->source_url, "/child/2");
    EXPECT_EQ(state.registrations.at(id).source_url, "/child/2");
  }

  int64_t delete_txid;
  {
    pqxx::work tx(*writer_);
    tx.exec0(absl::StrCat("DELETE FROM wake_registrations WHERE id = ", id));
    delete_txid = tx.exec1("SELECT pg_current_xact_id()::text::bigint")[0].as<int64_t>();
    tx.commit();
  }
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  const RecordingObserver::State state = observer_.Snapshot();
  const sync::SyncBatch* batch = FindBatch(state, SyncTable::kRegistrations, id, ChangeOp::kDelete);
  ASSERT_NE(batch, nullptr);
  EXPECT_THAT(batch->txids, ElementsAre(delete_txid));
  // REPLICA IDENTITY FULL: the whole deleted row.
  EXPECT_EQ(batch->changes[0].registration->subscriber_url, "/parent/1");
  EXPECT_EQ(batch->changes[0].registration->source_url, "/child/2");
  EXPECT_EQ(state.registrations.count(id), 0u);
}

TEST_F(PostgresSyncSourceTest, OneBatchPerTransactionInCommitOrder) {
  StartSource();
  int64_t txid;
  {
    pqxx::work tx(*writer_);
    for (int i = 0; i < 3; ++i) {
      tx.exec0(absl::StrCat(
          "INSERT INTO wake_registrations (subscriber_url, source_url, condition) VALUES ('/p/", i,
          "', '/c', '{\"on\":\"runFinished\"}')"));
    }
    // A table the publication does not cover is not delivered.
    tx.exec0(
        "INSERT INTO stream_claims (tenant_id, stream, claim_token, lease_expires_at) "
        "VALUES ('acme', '/p/0', 'c1', now())");
    txid = tx.exec1("SELECT pg_current_xact_id()::text::bigint")[0].as<int64_t>();
    tx.commit();
  }
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  const RecordingObserver::State state = observer_.Snapshot();
  const sync::SyncBatch last = state.Batches().back();
  EXPECT_THAT(last.txids, ElementsAre(txid));
  ASSERT_EQ(last.changes.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(last.changes[i].op, ChangeOp::kInsert);
    EXPECT_EQ(last.changes[i].registration->subscriber_url, absl::StrCat("/p/", i));
  }
}

TEST_F(PostgresSyncSourceTest, WakeInsertsClaimsAndDeletesArrive) {
  StartSource();
  int64_t wake_id;
  int64_t insert_txid;
  {
    pqxx::work tx(*writer_);
    wake_id = tx.exec1(
                    "INSERT INTO wakes (tenant_id, stream, registration_id, "
                    "source_event_key, message) VALUES ('acme', '/parent/1', 42, 'k1', "
                    "'{\"x\":1}') RETURNING id")[0]
                  .as<int64_t>();
    insert_txid = tx.exec1("SELECT pg_current_xact_id()::text::bigint")[0].as<int64_t>();
    tx.commit();
  }
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  {
    const RecordingObserver::State state = observer_.Snapshot();
    const sync::SyncBatch* batch = FindBatch(state, SyncTable::kWakes, wake_id, ChangeOp::kInsert);
    ASSERT_NE(batch, nullptr);
    EXPECT_THAT(batch->txids, ElementsAre(insert_txid));
    const sync::WakeRow& w = *batch->changes[0].wake;
    EXPECT_EQ(w.tenant_id, "acme");
    EXPECT_EQ(w.stream, "/parent/1");
    EXPECT_EQ(w.registration_id, 42);
    EXPECT_TRUE(w.pending);
  }

  db_->QueryValue(absl::StrCat(
      "UPDATE wakes SET claim_token = 'tok', claimed_at = now() WHERE id = ", wake_id));
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  {
    const RecordingObserver::State state = observer_.Snapshot();
    const sync::SyncBatch* batch = FindBatch(state, SyncTable::kWakes, wake_id, ChangeOp::kUpdate);
    ASSERT_NE(batch, nullptr);
    EXPECT_FALSE(batch->changes[0].wake->pending);
    EXPECT_EQ(batch->changes[0].wake->stream, "/parent/1");
    ASSERT_EQ(batch->txids.size(), 1u);
    EXPECT_GT(batch->txids[0], insert_txid);
  }

  // `wakes` keeps the default replica identity: the delete names only the
  // id, and the source fills in the rest from what it saw.
  db_->QueryValue(absl::StrCat("DELETE FROM wakes WHERE id = ", wake_id));
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  const RecordingObserver::State state = observer_.Snapshot();
  const sync::SyncBatch* batch = FindBatch(state, SyncTable::kWakes, wake_id, ChangeOp::kDelete);
  ASSERT_NE(batch, nullptr);
  EXPECT_EQ(batch->changes[0].wake->tenant_id, "acme");
  EXPECT_EQ(batch->changes[0].wake->stream, "/parent/1");
  EXPECT_EQ(state.wakes.count(wake_id), 0u);
}

TEST_F(PostgresSyncSourceTest, BarrierAfterACommitElsewhereAlwaysSeesTheRow) {
  StartSource();
  int misses = 0;
  for (int i = 0; i < 1000; ++i) {
    const auto [id, txid] = InsertRegistration(absl::StrCat("/loop/", i));
    (void)txid;
    ASSERT_THAT(source_->Barrier(kWait), IsOk()) << "iteration " << i;
    if (!observer_.HasRegistration(id)) ++misses;
  }
  EXPECT_EQ(misses, 0);
}

TEST_F(PostgresSyncSourceTest, BarrierWithoutWritesReturnsAndCountsNoMiss) {
  StartSource();
  const PostgresSyncSource::Stats before = source_->stats();
  // A quiet database: every barrier still asks the server and returns.
  for (int i = 0; i < 50; ++i) ASSERT_THAT(source_->Barrier(kWait), IsOk());
  // Writes to a table outside the publication move the WAL, not the stream;
  // a registration committed right after one must still be seen.
  int misses = 0;
  for (int i = 0; i < 20; ++i) {
    db_->QueryValue(absl::StrCat(
        "INSERT INTO stream_claims (tenant_id, stream, claim_token, lease_expires_at) VALUES "
        "('t', '/s/",
        i, "', 'tok", i, "', now())"));
    ASSERT_THAT(source_->Barrier(kWait), IsOk()) << i;
    const auto [id, txid] = InsertRegistration(absl::StrCat("/quiet/", i));
    (void)txid;
    ASSERT_THAT(source_->Barrier(kWait), IsOk()) << i;
    if (!observer_.HasRegistration(id)) ++misses;
  }
  EXPECT_EQ(misses, 0);
  // One by one, barriers share nothing: each read the flush position.
  const PostgresSyncSource::Stats after = source_->stats();
  EXPECT_EQ(after.barrier_calls - before.barrier_calls, 90u);
  EXPECT_EQ(after.flush_queries - before.flush_queries, 90u);
}

TEST_F(PostgresSyncSourceTest, ConcurrentBarrierCallersShareQueriesAndNeverMiss) {
  StartSource();
  constexpr int kThreads = 8;
  constexpr int kRounds = 100;
  std::atomic<int> misses{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      pqxx::connection connection(db_->url());
      for (int i = 0; i < kRounds; ++i) {
        int64_t id;
        {
          pqxx::work tx(connection);
          id = tx.exec1(absl::StrCat(
              "INSERT INTO wake_registrations (subscriber_url, "
              "source_url, condition) VALUES ('/t/",
              t, "/", i, "', '/c', '{\"on\":\"runFinished\"}') RETURNING id"))[0]
                   .as<int64_t>();
          tx.commit();
        }
        if (!source_->Barrier(kWait).ok()) ++failures;
        if (!observer_.HasRegistration(id)) ++misses;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(misses.load(), 0);
  const PostgresSyncSource::Stats stats = source_->stats();
  EXPECT_EQ(stats.barrier_calls, static_cast<uint64_t>(kThreads * kRounds));
  EXPECT_LE(stats.flush_queries, stats.barrier_calls);

  // Callers arriving together share one flush-position query.
  const uint64_t queries_before = source_->stats().flush_queries;
  std::vector<std::thread> burst;
  for (int t = 0; t < 16; ++t) {
    burst.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (!source_->Barrier(kWait).ok()) ++failures;
      }
    });
  }
  for (std::thread& thread : burst) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LT(source_->stats().flush_queries - queries_before, 16u * 50u);
}

TEST_F(PostgresSyncSourceTest, StopDropsTheSlotAndReturnsPromptly) {
  StartSource();
  const std::string slot = source_->SlotName();
  ASSERT_FALSE(slot.empty());
  EXPECT_EQ(db_->QueryValue(absl::StrCat(
                "SELECT temporary::text || active::text FROM pg_replication_slots WHERE "
                "slot_name = '",
                slot, "'")),
            "truetrue");
  const absl::Time before = absl::Now();
  source_->Stop();
  EXPECT_LT(absl::Now() - before, absl::Seconds(2));
  EXPECT_EQ(source_->SlotName(), "");
  const absl::Time deadline = absl::Now() + kWait;
  std::string count;
  do {
    count = db_->QueryValue(
        absl::StrCat("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '", slot, "'"));
  } while (count != "0" && absl::Now() < deadline);
  EXPECT_EQ(count, "0");
  EXPECT_THAT(source_->Barrier(absl::Seconds(1)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("stopped")));
  // No observer call after Stop().
  const size_t events = observer_.Snapshot().events.size();
  InsertRegistration("/after/stop");
  EXPECT_EQ(observer_.Snapshot().events.size(), events);
  source_->Stop();  // Idempotent.
}

TEST_F(PostgresSyncSourceTest, ReconnectsWithAFreshSnapshotAfterTheWalsenderIsTerminated) {
  StartSource();
  const auto [before, before_txid] = InsertRegistration("/before");
  (void)before_txid;
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  const std::string old_slot = source_->SlotName();

  ASSERT_EQ(db_->QueryValue(absl::StrCat(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE "
                "slot_name = '",
                old_slot, "'")),
            "t");
  ASSERT_TRUE(observer_.WaitFor(
      [](const RecordingObserver::State& s) { return s.Count(Kind::kDisconnected) > 0; }, kWait));
  // Written while the source is away: the new snapshot must carry it.
  const auto [during, during_txid] = InsertRegistration("/during");
  (void)during_txid;
  db_->QueryValue(absl::StrCat("DELETE FROM wake_registrations WHERE id = ", before));

  ASSERT_TRUE(observer_.WaitFor(
      [](const RecordingObserver::State& s) { return s.Count(Kind::kUpToDate) >= 2; }, kWait));
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  const RecordingObserver::State state = observer_.Snapshot();
  EXPECT_THAT(state.Disconnects()[0],
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("terminat")));
  // disconnected -> reset -> snapshot (and caught-up stream) batches -> up_to_date.
  std::vector<Kind> resync;
  bool seen_disconnect = false;
  for (const RecordingObserver::Event& e : state.events) {
    if (e.kind == Kind::kDisconnected) seen_disconnect = true;
    if (!seen_disconnect || (!resync.empty() && resync.back() == e.kind)) continue;
    resync.push_back(e.kind);
    if (e.kind == Kind::kUpToDate) break;
  }
  EXPECT_THAT(resync,
              ElementsAre(Kind::kDisconnected, Kind::kReset, Kind::kBatch, Kind::kUpToDate));
  EXPECT_EQ(state.registrations.count(before), 0u);
  EXPECT_EQ(state.registrations.count(during), 1u);
  EXPECT_NE(source_->SlotName(), old_slot);
  EXPECT_EQ(db_->QueryValue(absl::StrCat(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '", old_slot, "'")),
            "0");

  // And it streams again.
  const auto [after, after_txid] = InsertRegistration("/after");
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  const RecordingObserver::State later = observer_.Snapshot();
  const sync::SyncBatch* batch =
      FindBatch(later, SyncTable::kRegistrations, after, ChangeOp::kInsert);
  ASSERT_NE(batch, nullptr);
  EXPECT_THAT(batch->txids, ElementsAre(after_txid));
}

TEST_F(PostgresSyncSourceTest, BarrierIsUnavailableWhileTheDatabaseRefusesConnections) {
  StartSource();
  const char* admin = std::getenv("DATABASE_URL");
  ASSERT_NE(admin, nullptr);
  pqxx::connection admin_connection(admin);
  pqxx::nontransaction sql(admin_connection);
  sql.exec0(absl::StrCat("ALTER DATABASE ", db_->name(), " ALLOW_CONNECTIONS false"));
  writer_.reset();
  sql.exec(absl::StrCat("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '",
                        db_->name(), "'"));
  ASSERT_TRUE(observer_.WaitFor(
      [](const RecordingObserver::State& s) { return s.Count(Kind::kDisconnected) > 0; }, kWait));
  EXPECT_THAT(source_->Barrier(absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("disconnected")));

  sql.exec0(absl::StrCat("ALTER DATABASE ", db_->name(), " ALLOW_CONNECTIONS true"));
  ASSERT_TRUE(observer_.WaitFor(
      [](const RecordingObserver::State& s) { return s.Count(Kind::kUpToDate) >= 2; }, kWait));
  writer_ = std::make_unique<pqxx::connection>(db_->url());
  const auto [id, txid] = InsertRegistration("/back");
  (void)txid;
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  EXPECT_TRUE(observer_.HasRegistration(id));
}

TEST_F(PostgresSyncSourceTest, TruncateTriggersAResync) {
  InsertRegistration("/parent/1");
  StartSource();
  ASSERT_EQ(observer_.Snapshot().registrations.size(), 1u);
  db_->QueryValue("TRUNCATE wake_registrations");
  const auto [id, txid] = InsertRegistration("/parent/2");
  (void)txid;
  ASSERT_TRUE(observer_.WaitFor(
      [](const RecordingObserver::State& s) { return s.Count(Kind::kReset) >= 2; }, kWait));
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  const RecordingObserver::State state = observer_.Snapshot();
  ASSERT_EQ(state.registrations.size(), 1u);
  EXPECT_EQ(state.registrations.count(id), 1u);
  EXPECT_EQ(state.Count(Kind::kDisconnected), 0);
}

TEST_F(PostgresSyncSourceTest, StartFailsClearlyWithoutThePublication) {
  db_->QueryValue("DROP PUBLICATION wakeline_sync");
  const absl::Time before = absl::Now();
  EXPECT_THAT(MakeSource().Start(observer_, kWait),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("publication \"wakeline_sync\" does not exist")));
  EXPECT_LT(absl::Now() - before, absl::Seconds(10));
  EXPECT_THAT(source_->Barrier(absl::Milliseconds(10)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("stopped")));
}

TEST_F(PostgresSyncSourceTest, StartFailsWhenThePublicationLacksOurTables) {
  db_->QueryValue("ALTER PUBLICATION wakeline_sync DROP TABLE wakes");
  EXPECT_THAT(MakeSource().Start(observer_, kWait),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must include the tables wake_registrations and wakes")));
}

TEST_F(PostgresSyncSourceTest, StartFailsWithTheCauseWhenTheServerIsUnreachable) {
  // A port nobody listens on (the test cluster's port plus nothing bound).
  source_ = std::make_unique<PostgresSyncSource>("postgresql://postgres@127.0.0.1:1/postgres",
                                                 time_, FastOptions());
  EXPECT_THAT(source_->Start(observer_, absl::Seconds(1)),
              StatusIs(absl::StatusCode::kUnavailable,
                       ::testing::AllOf(HasSubstr("not up to date within 1s"),
                                        HasSubstr("cannot connect"))));
  const RecordingObserver::State state = observer_.Snapshot();
  EXPECT_EQ(state.Count(Kind::kUpToDate), 0);
}

TEST_F(PostgresSyncSourceTest, StartRejectsBadOptions) {
  PostgresSyncSourceOptions options = FastOptions();
  options.status_interval = absl::ZeroDuration();
  EXPECT_THAT(MakeSource(options).Start(observer_, kWait),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("status_interval")));
  options = FastOptions();
  options.slot_prefix = "Bad-Prefix";
  EXPECT_THAT(MakeSource(options).Start(observer_, kWait),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("slot prefix")));
}

TEST_F(PostgresSyncSourceTest, StartRejectsABadUrlAndSecondStart) {
  source_ = std::make_unique<PostgresSyncSource>("postgresql://[oops", time_, FastOptions());
  EXPECT_THAT(source_->Start(observer_, kWait),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("connection string")));
  EXPECT_THAT(source_->Start(observer_, kWait),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("twice")));
}

}  // namespace
}  // namespace wake::testing
