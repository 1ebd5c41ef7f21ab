// What the store keeps durable beyond a wake's life, against real
// PostgreSQL: event keys that outlive the ack (so a replayed event makes no
// second wake), debounce windows that any replica can close, and the lock
// order that keeps claims, acks and the sweeper free of deadlocks.
#include <atomic>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry-service/migrations.h"
#include "registry-service/postgres_wake_store.h"
#include "tests/support/test_database.h"
#include "tests/support/wait_until.h"

namespace wake::registry {
namespace {

using ::wake::testing::WaitUntil;

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

sync::Registration Row(const std::string& subscriber, const std::string& source) {
  sync::Registration row;
  row.tenant_id = "t";
  row.subscriber_url = subscriber;
  row.source_url = source;
  return row;
}

v1::WakeChange Change(const std::string& key) {
  v1::WakeChange change;
  change.set_collection("items");
  change.set_kind(v1::UPDATE);
  change.set_key(key);
  change.mutable_value()->set_string_value(absl::StrCat("value of ", key));
  return change;
}

// A draft of the event `key` (an offset when `kind` is kOffset).
WakeDraft Event(int64_t registration_id, const std::string& key,
                EventKeyKind kind = EventKeyKind::kEvent) {
  WakeDraft draft;
  draft.tenant_id = "t";
  draft.stream = "/parent";
  draft.registration_id = registration_id;
  draft.source_event_key = key;
  draft.key_kind = kind;
  draft.message.set_source("/child");
  *draft.message.add_changes() = Change(key);
  return draft;
}

WakeDraft Debounced(int64_t registration_id, const std::string& key, int32_t debounce_ms,
                    v1::RunStatus status = v1::RUN_STATUS_UNSPECIFIED) {
  WakeDraft draft = Event(registration_id, key);
  draft.debounce_ms = debounce_ms;
  draft.run_finished_status = status;
  return draft;
}

class DurableEventsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = testing::TestDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    pqxx::connection connection(db_->url());
    ASSERT_TRUE(ApplyMigrations(connection).ok());
    store_ = std::make_unique<PostgresWakeStore>(db_->url(), 8, executor_);
  }

  int64_t Register(const std::string& subscriber = "/parent", bool one_shot = false,
                   int32_t debounce_ms = 0) {
    sync::Registration row = Row(subscriber, "/child");
    row.one_shot = one_shot;
    row.debounce_ms = debounce_ms;
    absl::StatusOr<UpsertResult> result = store_->UpsertRegistration(row);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->row.id : 0;
  }

  // Number of wakes `draft` made (0 or 1).
  size_t Persist(const WakeDraft& draft) {
    absl::StatusOr<PersistResult> result = store_->PersistWakes({draft});
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->wakes.size() : 0;
  }

  // Claims and acks every wake of `stream`.
  void AckAll(const std::string& stream = "/parent") {
    absl::StatusOr<ClaimResult> claim =
        store_->ClaimWakes("t", stream, "r", "s", absl::Seconds(30));
    ASSERT_TRUE(claim.ok()) << claim.status();
    ASSERT_EQ(claim->status, v1::CLAIMED);
    ASSERT_TRUE(store_->AckWakes({"t", stream, claim->claim_token}, {}).ok());
  }

  // Makes every open window due now.
  void ExpireWindows() { db_->QueryValue("UPDATE debounce_windows SET deadline = now()"); }

  std::unique_ptr<testing::TestDatabase> db_;
  common::ThreadPoolExecutor executor_{4};
  std::unique_ptr<PostgresWakeStore> store_;
};

// --- Idempotency that outlives the ack ---

TEST_F(DurableEventsTest, ReplayedEventAfterItsWakeWasAckedMakesNoSecondWake) {
  const int64_t id = Register();
  for (EventKeyKind kind : {EventKeyKind::kEvent, EventKeyKind::kOffset}) {
    const std::string key = kind == EventKeyKind::kEvent ? "update:run-1" : "0000_0007";
    ASSERT_EQ(Persist(Event(id, key, kind)), 1u) << key;
    EXPECT_EQ(Persist(Event(id, key, kind)), 0u) << key << ": replay while pending";
    AckAll();
    EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "0");
    EXPECT_EQ(Persist(Event(id, key, kind)), 0u) << key << ": replay after the ack";
  }
  // The batch path (several callers' drafts in one statement) keeps it too.
  std::vector<absl::StatusOr<PersistResult>> results(8, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      results[i] = store_->PersistWakes({Event(id, i % 2 == 0 ? "update:run-1" : "fresh")});
    });
  }
  for (std::thread& thread : threads) thread.join();
  size_t made = 0;
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status();
    made += result->wakes.size();
  }
  EXPECT_EQ(made, 1u) << "only the fresh event makes a wake, once";
}

TEST_F(DurableEventsTest, OneShotReplayedAfterAckMakesNoWakeAndLeavesNoRegistrationBehind) {
  const int64_t id = Register("/parent", /*one_shot=*/true);
  WakeDraft draft = Event(id, "0001", EventKeyKind::kOffset);
  draft.delete_registration = true;
  ASSERT_EQ(Persist(draft), 1u);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wake_registrations"), "0");
  AckAll();
  EXPECT_EQ(Persist(draft), 0u);
}

TEST_F(DurableEventsTest, OlderOffsetArrivingAfterANewerOneStillWakesOnce) {
  const int64_t id = Register();
  ASSERT_EQ(Persist(Event(id, "0000_0009", EventKeyKind::kOffset)), 1u);
  AckAll();
  // Concurrent evaluations (or replicas) can finish out of order: the older
  // event is not a replay and wakes, once.
  EXPECT_EQ(Persist(Event(id, "0000_0004", EventKeyKind::kOffset)), 1u);
  EXPECT_EQ(Persist(Event(id, "0000_0004", EventKeyKind::kOffset)), 0u);
}

TEST_F(DurableEventsTest, ExpiredOffsetsFoldIntoTheRegistrationsMark) {
  const int64_t id = Register();
  const int64_t other = Register("/other");
  for (const char* offset : {"0000_0003", "0000_0010", "0000_0007"}) {
    ASSERT_EQ(Persist(Event(id, offset, EventKeyKind::kOffset)), 1u);
  }
  ASSERT_EQ(Persist(Event(id, "update:row", EventKeyKind::kEvent)), 1u);
  WakeDraft other_event = Event(other, "0000_0001", EventKeyKind::kOffset);
  other_event.stream = "/other";
  ASSERT_EQ(Persist(other_event), 1u);
  AckAll();
  AckAll("/other");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wake_offset_keys"), "4");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wake_event_keys"), "1");
  // Two hours old: past the offsets' retention (1 h), not the other keys'
  // (24 h). The other registration's offset is recent: it stays.
  for (const char* table : {"wake_offset_keys", "wake_event_keys"}) {
    db_->QueryValue(absl::StrCat("UPDATE ", table,
                                 " SET created_at = now() - interval '2 hours' "
                                 "WHERE registration_id = ",
                                 id));
  }
  // Small batches: 2 offsets a statement.
  const KeyRetention retention;
  absl::StatusOr<int64_t> first = store_->SweepEventKeys(retention, 2);
  absl::StatusOr<int64_t> second = store_->SweepEventKeys(retention, 2);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(*first, 2);
  EXPECT_EQ(*second, 1);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wake_offset_keys"), "1");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wake_event_keys"), "1");
  EXPECT_EQ(db_->QueryRows("SELECT registration_id, offset_mark FROM wake_offset_marks"),
            absl::StrCat(id, "|0000_0010"));
  // Offsets at or below the mark are replays; later ones are new; the key
  // without an offset is still remembered.
  EXPECT_EQ(Persist(Event(id, "0000_0010", EventKeyKind::kOffset)), 0u);
  EXPECT_EQ(Persist(Event(id, "0000_0005", EventKeyKind::kOffset)), 0u);
  EXPECT_EQ(Persist(Event(id, "0000_0011", EventKeyKind::kOffset)), 1u);
  EXPECT_EQ(Persist(Event(id, "update:row", EventKeyKind::kEvent)), 0u);
  // Byte order, not numeric order: "0000_0010" < "0000_002" < "0000_0100".
  EXPECT_EQ(Persist(Event(id, "0000_002", EventKeyKind::kOffset)), 1u);
  // Past its own retention the key without an offset is forgotten: a replay
  // after that wakes again (the documented price of not giving an offset).
  db_->QueryValue("UPDATE wake_event_keys SET created_at = now() - interval '2 days'");
  ASSERT_TRUE(store_->SweepEventKeys(retention, 100).ok());
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wake_event_keys"), "0");
  EXPECT_EQ(Persist(Event(id, "update:row", EventKeyKind::kEvent)), 1u);
}

TEST_F(DurableEventsTest, MarksOfDeletedRegistrationsAreSwept) {
  const int64_t id = Register();
  ASSERT_EQ(Persist(Event(id, "0000_0003", EventKeyKind::kOffset)), 1u);
  db_->QueryValue("UPDATE wake_offset_keys SET created_at = now() - interval '2 days'");
  ASSERT_TRUE(store_->SweepEventKeys(KeyRetention(), 100).ok());
  ASSERT_EQ(db_->QueryValue("SELECT count(*) FROM wake_offset_marks"), "1");
  UnregisterSelector selector;
  selector.tenant_id = "t";
  selector.subscriber_url = "/parent";
  ASSERT_TRUE(store_->DeleteRegistrations(selector).ok());
  ASSERT_TRUE(store_->SweepEventKeys(KeyRetention(), 100).ok());
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wake_offset_marks"), "0");
}

// --- Debounce windows ---

TEST_F(DurableEventsTest, WindowCollectsMatchesAndClosesIntoOneWake) {
  const int64_t id = Register("/parent", /*one_shot=*/false, /*debounce_ms=*/60000);
  absl::StatusOr<PersistResult> first = store_->PersistWakes({Debounced(id, "update:a", 60000)});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_THAT(first->buffered, SizeIs(1));
  EXPECT_THAT(first->wakes, IsEmpty());
  ASSERT_TRUE(store_->PersistWakes({Debounced(id, "update:b", 60000, v1::FAILED)}).ok());
  // A replay of a buffered event does not join again.
  absl::StatusOr<PersistResult> replay = store_->PersistWakes({Debounced(id, "update:a", 60000)});
  ASSERT_TRUE(replay.ok());
  EXPECT_THAT(replay->buffered, IsEmpty());
  // Not due yet: the window stays open.
  absl::StatusOr<WindowResult> early = store_->CloseDebounceWindow({"t", id});
  ASSERT_TRUE(early.ok()) << early.status();
  EXPECT_EQ(early->outcome, WindowResult::Outcome::kNotDue);
  EXPECT_GT(early->due_in, absl::Seconds(50));

  ExpireWindows();
  absl::StatusOr<WindowResult> closed = store_->CloseDebounceWindow({"t", id});
  ASSERT_TRUE(closed.ok()) << closed.status();
  ASSERT_EQ(closed->outcome, WindowResult::Outcome::kFired);
  ASSERT_TRUE(closed->wake.has_value());
  const v1::Wake& wake = *closed->wake;
  EXPECT_EQ(wake.stream(), "/parent");
  EXPECT_EQ(wake.source_event_key(),
            absl::StrCat("debounce:", first->buffered[0].window_id, ":update:a"));
  EXPECT_EQ(wake.message().source(), "/child");
  ASSERT_EQ(wake.message().changes_size(), 2);
  EXPECT_EQ(wake.message().changes(0).key(), "update:a");
  EXPECT_EQ(wake.message().changes(0).value().string_value(), "value of update:a");
  EXPECT_EQ(wake.message().changes(1).key(), "update:b");
  EXPECT_EQ(wake.run_finished_status(), v1::FAILED);
  EXPECT_NE(closed->txid, 0);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM debounced_changes"), "0");
  // Closed once: a second close finds nothing.
  absl::StatusOr<WindowResult> again = store_->CloseDebounceWindow({"t", id});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->outcome, WindowResult::Outcome::kNoWindow);
}

TEST_F(DurableEventsTest, LaterWindowIsNeverMergedIntoNorDroppedBecauseOfAnEarlierOne) {
  const int64_t id = Register("/parent", false, 60000);
  // Window 1 starts with row "k" (offset o1) and closes; its wake stays
  // pending (not claimed, not acked).
  ASSERT_TRUE(store_->PersistWakes({Debounced(id, "o1", 60000)}).ok());
  ExpireWindows();
  absl::StatusOr<WindowResult> one = store_->CloseDebounceWindow({"t", id});
  ASSERT_TRUE(one.ok() && one->wake.has_value());
  // Window 2 starts with the same row, and with a replay of window 1's first
  // event (same key): the replay is dropped, the window is not.
  ASSERT_TRUE(store_->PersistWakes({Debounced(id, "o1", 60000)}).ok());
  ASSERT_TRUE(store_->PersistWakes({Debounced(id, "o2", 60000)}).ok());
  ExpireWindows();
  absl::StatusOr<WindowResult> two = store_->CloseDebounceWindow({"t", id});
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_TRUE(two->wake.has_value());
  EXPECT_NE(two->wake->id(), one->wake->id());
  ASSERT_EQ(two->wake->message().changes_size(), 1);
  EXPECT_EQ(two->wake->message().changes(0).key(), "o2");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "2");
}

TEST_F(DurableEventsTest, AnyReplicaClosesADueWindowExactlyOnce) {
  const int64_t id = Register("/parent", /*one_shot=*/true, 60000);
  ASSERT_TRUE(store_->PersistWakes({Debounced(id, "update:a", 60000)}).ok());
  ASSERT_TRUE(store_->PersistWakes({Debounced(id, "update:b", 60000)}).ok());
  // The replica that buffered them is gone; two others find the window due
  // and race to close it.
  store_.reset();
  ExpireWindows();
  PostgresWakeStore replica_a(db_->url(), 4, executor_);
  PostgresWakeStore replica_b(db_->url(), 4, executor_);
  absl::StatusOr<std::vector<WindowKey>> due = replica_a.DueDebounceWindows(10);
  ASSERT_TRUE(due.ok()) << due.status();
  ASSERT_THAT(*due, SizeIs(1));
  EXPECT_EQ((*due)[0].registration_id, id);
  std::vector<absl::StatusOr<WindowResult>> results(8, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      results[i] = (i % 2 == 0 ? replica_a : replica_b).CloseDebounceWindow({"t", id});
    });
  }
  for (std::thread& thread : threads) thread.join();
  int wakes = 0;
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status();
    if (result->wake.has_value()) {
      ++wakes;
      EXPECT_EQ(result->wake->message().changes_size(), 2);
    }
  }
  EXPECT_EQ(wakes, 1);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "1");
  // The one-shot registration went with its wake.
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wake_registrations"), "0");
}

TEST_F(DurableEventsTest, MatchesRacingTheCloseLandInOneWindowOrTheNextNeverNowhere) {
  const int64_t id = Register("/parent", false, 1);
  constexpr int kMatches = 200;
  std::atomic<bool> done{false};
  std::atomic<int> made{0};
  std::vector<v1::Wake> wakes;
  absl::Mutex mu;
  std::thread closer([&] {
    // Closes due windows as fast as it can while matches arrive.
    while (!done.load()) {
      absl::StatusOr<WindowResult> result = store_->CloseDebounceWindow({"t", id});
      ASSERT_TRUE(result.ok()) << result.status();
      if (result->wake.has_value()) {
        absl::MutexLock lock(&mu);
        wakes.push_back(*result->wake);
      }
    }
  });
  std::vector<std::thread> matchers;
  for (int t = 0; t < 4; ++t) {
    matchers.emplace_back([&, t] {
      for (int i = t; i < kMatches; i += 4) {
        absl::StatusOr<PersistResult> result =
            store_->PersistWakes({Debounced(id, absl::StrCat("m", i), 1)});
        ASSERT_TRUE(result.ok()) << result.status();
        made += static_cast<int>(result->buffered.size());
      }
    });
  }
  for (std::thread& thread : matchers) thread.join();
  absl::SleepFor(absl::Milliseconds(20));  // Lets the last window's 1 ms deadline pass.
  done.store(true);
  closer.join();
  absl::StatusOr<WindowResult> last = store_->CloseDebounceWindow({"t", id});
  ASSERT_TRUE(last.ok());
  if (last->wake.has_value()) wakes.push_back(*last->wake);
  EXPECT_EQ(made.load(), kMatches);
  std::multiset<std::string> seen;
  for (const v1::Wake& wake : wakes) {
    for (const v1::WakeChange& change : wake.message().changes()) seen.insert(change.key());
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kMatches)) << "every match in exactly one wake";
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), seen.size());
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM debounced_changes"), "0");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM debounce_windows"), "0");
}

TEST_F(DurableEventsTest, WindowOfAnUnregisteredRegistrationClosesWithoutAWake) {
  const int64_t id = Register("/parent", false, 60000);
  ASSERT_TRUE(store_->PersistWakes({Debounced(id, "update:a", 60000)}).ok());
  UnregisterSelector selector;
  selector.tenant_id = "t";
  selector.subscriber_url = "/parent";
  ASSERT_TRUE(store_->DeleteRegistrations(selector).ok());
  ExpireWindows();
  absl::StatusOr<WindowResult> closed = store_->CloseDebounceWindow({"t", id});
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_EQ(closed->outcome, WindowResult::Outcome::kFired);
  EXPECT_FALSE(closed->wake.has_value());
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM debounced_changes"), "0");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "0");
}

TEST_F(DurableEventsTest, BufferedMatchConsumesTheTimeoutAtOnce) {
  sync::Registration row = Row("/parent", "/child");
  row.debounce_ms = 60000;
  row.timeout_ms = 60000;
  absl::StatusOr<UpsertResult> registered = store_->UpsertRegistration(row);
  ASSERT_TRUE(registered.ok());
  WakeDraft draft = Debounced(registered->row.id, "update:a", 60000);
  draft.consume_timeout = true;
  ASSERT_TRUE(store_->PersistWakes({draft}).ok());
  EXPECT_EQ(db_->QueryValue("SELECT timeout_consumed FROM wake_registrations"), "t");
  // So the timeout wake, should its timer fire anyway, is gated.
  WakeDraft timeout = Event(registered->row.id, "timeout", EventKeyKind::kInternal);
  timeout.require_timeout_unconsumed = true;
  EXPECT_EQ(Persist(timeout), 0u);
}

// --- Claims, acks and the sweeper ---

TEST_F(DurableEventsTest, EmptyClaimIsDroppedInTheTransactionThatTookIt) {
  const int64_t id = Register();
  ASSERT_EQ(Persist(Event(id, "a")), 1u);
  // Records the transaction of every insert and delete of a claim row.
  db_->QueryValue(
      "CREATE TABLE claim_log (op text, xid xid8);"
      "CREATE FUNCTION log_claim() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
      "INSERT INTO claim_log VALUES (TG_OP, pg_current_xact_id()); RETURN NULL; END $$;"
      "CREATE TRIGGER claim_log AFTER INSERT OR DELETE ON stream_claims "
      "FOR EACH ROW EXECUTE FUNCTION log_claim()");
  // Another session deletes the stream's wakes and holds the row locks: the
  // claim sees a pending wake in its snapshot, takes the claim row, then
  // waits on the wake row and finds it gone.
  pqxx::connection holder(db_->url());
  pqxx::work deleting(holder);
  deleting.exec0("DELETE FROM wakes");
  absl::StatusOr<ClaimResult> claim = absl::UnknownError("not run");
  std::thread claimer(
      [&] { claim = store_->ClaimWakes("t", "/parent", "r", "s", absl::Seconds(30)); });
  ASSERT_TRUE(WaitUntil(
      [&] {
        return db_->QueryValue(
                   "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                   "'Lock' AND query LIKE '%stream_claims%'") == "1";
      },
      absl::Now() + absl::Seconds(10)))
      << "the claim never waited on the wake row";
  deleting.commit();
  claimer.join();
  ASSERT_TRUE(claim.ok()) << claim.status();
  EXPECT_EQ(claim->status, v1::NOTHING_PENDING);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM stream_claims"), "0");
  // Inserted and deleted by one transaction: no other claimer could ever
  // have seen the empty claim.
  EXPECT_EQ(db_->QueryRows("SELECT op FROM claim_log ORDER BY op"), "DELETE\nINSERT");
  EXPECT_EQ(db_->QueryValue("SELECT count(DISTINCT xid) FROM claim_log"), "1");
}

TEST_F(DurableEventsTest, SweeperAndHeartbeatLockClaimsInOneOrder) {
  // Claims of /b then /a, both expired (/b first): a sweeper that took them
  // in lease order would lock /b, then wait for /a behind a heartbeat that
  // holds /a and waits for /b.
  const int64_t a = Register("/a");
  const int64_t b = Register("/b");
  for (const auto& [id, stream] : {std::pair{b, "/b"}, std::pair{a, "/a"}}) {
    WakeDraft draft = Event(id, absl::StrCat("e", stream));
    draft.stream = stream;
    ASSERT_EQ(Persist(draft), 1u);
  }
  absl::StatusOr<ClaimResult> claim_b = store_->ClaimWakes("t", "/b", "r", "s", absl::Seconds(30));
  absl::StatusOr<ClaimResult> claim_a = store_->ClaimWakes("t", "/a", "r", "s", absl::Seconds(30));
  ASSERT_TRUE(claim_a.ok() && claim_b.ok());
  ASSERT_EQ(claim_a->status, v1::CLAIMED);
  db_->QueryValue(
      "UPDATE stream_claims SET lease_expires_at = now() - CASE stream WHEN '/b' THEN "
      "interval '2 minutes' ELSE interval '1 minute' END");
  const std::string deadlocks_before =
      db_->QueryValue("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()");
  auto waiting = [&] {
    return std::stoi(
        db_->QueryValue("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                        "datname = current_database()"));
  };
  // Another session holds /a for a moment.
  pqxx::connection holder(db_->url());
  pqxx::work holding(holder);
  holding.exec("SELECT 1 FROM stream_claims WHERE stream = '/a' FOR UPDATE");
  absl::StatusOr<std::vector<ExtendResult>> extended = absl::UnknownError("not run");
  std::thread heartbeat([&] {
    extended = store_->ExtendClaims(
        {{"t", "/a", claim_a->claim_token}, {"t", "/b", claim_b->claim_token}}, absl::Seconds(30));
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  ASSERT_TRUE(WaitUntil([&] { return waiting() >= 1; }, deadline))
      << "the heartbeat never waited for /a";
  std::atomic<bool> swept{false};
  absl::StatusOr<int64_t> released = absl::UnknownError("not run");
  std::thread sweeper([&] {
    released = store_->ReleaseExpiredClaims();
    swept.store(true);
  });
  // The sweeper either finishes (it skips the rows others hold) or queues
  // for /a too.
  ASSERT_TRUE(WaitUntil([&] { return swept.load() || waiting() >= 2; }, deadline))
      << "the sweeper neither finished nor waited";
  holding.commit();
  heartbeat.join();
  sweeper.join();
  ASSERT_TRUE(released.ok()) << released.status();
  ASSERT_TRUE(extended.ok()) << extended.status();
  // Nothing was aborted: the heartbeat kept /a (the sweeper left it alone
  // while it was held) and /b went to the sweeper.
  EXPECT_EQ(*released, 1);
  ASSERT_EQ(extended->size(), 2u);
  EXPECT_TRUE((*extended)[0].extended);
  EXPECT_FALSE((*extended)[1].extended);
  EXPECT_EQ(db_->QueryValue("SELECT stream FROM stream_claims"), "/a");
  store_.reset();
  EXPECT_EQ(
      db_->QueryValue("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"),
      deadlocks_before);
}

TEST_F(DurableEventsTest, ClaimsAcksAndTheSweeperOfManyStreamsNeverDeadlock) {
  // Few streams and many callers: every batch statement overlaps others.
  constexpr int kStreams = 8;
  constexpr int kWorkers = 16;
  const absl::Duration kRun = absl::Seconds(10);
  std::vector<int64_t> registrations;
  for (int s = 0; s < kStreams; ++s) registrations.push_back(Register(absl::StrCat("/s", s)));
  // Two replicas' stores, so claim batches, ack batches and sweeps of each
  // run concurrently with the other's.
  auto other_store = std::make_unique<PostgresWakeStore>(db_->url(), 8, executor_);
  PostgresWakeStore& other = *other_store;
  const std::string before =
      db_->QueryValue("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()");
  std::atomic<bool> stop{false};
  std::atomic<int64_t> claims{0}, acks{0}, aborted{0}, next_event{0};
  absl::Mutex mu;
  std::vector<std::string> errors;
  auto note = [&](const absl::Status& status) {
    if (status.ok()) return;
    if (absl::IsAborted(status)) ++aborted;
    absl::MutexLock lock(&mu);
    if (errors.size() < 10) errors.push_back(status.ToString());
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      PostgresWakeStore& store = w % 2 == 0 ? *store_ : other;
      std::mt19937 rng(w);
      while (!stop.load()) {
        const int s = static_cast<int>(rng() % kStreams);
        const std::string stream = absl::StrCat("/s", s);
        WakeDraft draft = Event(registrations[s], absl::StrCat("e", next_event++));
        draft.stream = stream;
        note(store.PersistWakes({draft}).status());
        // Leases of a millisecond half the time: claims take over expired
        // ones, and the sweeper ends them, while others ack.
        const absl::Duration lease = absl::Milliseconds(rng() % 2 == 0 ? 1 : 300);
        absl::StatusOr<ClaimResult> claim =
            store.ClaimWakes("t", stream, "r", absl::StrCat(w), lease);
        note(claim.status());
        if (!claim.ok() || claim->status != v1::CLAIMED) continue;
        ++claims;
        if (rng() % 4 == 0) continue;  // Abandoned: the lease runs out.
        absl::StatusOr<AckResult> ack = store.AckWakes({"t", stream, claim->claim_token}, {});
        if (!ack.ok() && !absl::IsFailedPrecondition(ack.status())) note(ack.status());
        if (ack.ok()) ++acks;
      }
    });
  }
  threads.emplace_back([&] {
    while (!stop.load()) {
      note(other.ReleaseExpiredClaims().status());
      note(store_->ReleaseExpiredClaims().status());
    }
  });
  absl::SleepFor(kRun);  // The length of the run, not synchronisation.
  stop.store(true);
  for (std::thread& thread : threads) thread.join();
  EXPECT_GT(claims.load(), 100);
  EXPECT_GT(acks.load(), 100);
  EXPECT_EQ(aborted.load(), 0);
  EXPECT_THAT(errors, IsEmpty());
  // Backends report their counters when they exit: close both pools and
  // wait until their sessions are gone.
  store_.reset();
  other_store.reset();
  ASSERT_TRUE(WaitUntil(
      [&] {
        return db_->QueryValue(
                   "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                   "current_database() AND pid <> pg_backend_pid()") == "0";
      },
      absl::Now() + absl::Seconds(10)))
      << "store sessions did not end";
  const std::string after =
      db_->QueryValue("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()");
  EXPECT_EQ(after, before) << "PostgreSQL reported deadlocks";
  std::cout << "claims=" << claims.load() << " acks=" << acks.load() << "\n";
}

}  // namespace
}  // namespace wake::registry
