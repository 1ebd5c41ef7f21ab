// PostgresWakeStore against real PostgreSQL, with many concurrent callers so
// that upserts and wakes are group-committed: batches must keep the meaning
// of one call at a time (created once, duplicates found, one wake per event).
#include "registry-service/postgres_wake_store.h"

#include <atomic>
#include <functional>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry-service/migrations.h"
#include "tests/support/test_database.h"
#include "tests/support/wait_until.h"

namespace wake::registry {
namespace {

using ::wake::testing::WaitUntil;

sync::Registration Row(const std::string& subscriber, const std::string& source) {
  sync::Registration row;
  row.tenant_id = "t";
  row.subscriber_url = subscriber;
  row.source_url = source;
  return row;
}

WakeDraft Draft(int64_t registration_id, const std::string& key) {
  WakeDraft draft;
  draft.tenant_id = "t";
  draft.stream = "/parent";
  draft.registration_id = registration_id;
  draft.source_event_key = key;
  draft.message.set_source("/child \"quoted\" \\ and\ttab");
  draft.run_finished_status = v1::COMPLETED;
  return draft;
}

// Two wakes ("<i>a", "<i>b") on each of the streams stream(0..count-1).
std::vector<WakeDraft> TwoWakesPerStream(int64_t registration_id, int count,
                                         const std::function<std::string(int)>& stream) {
  std::vector<WakeDraft> drafts;
  for (int i = 0; i < count; ++i) {
    for (const char* key : {"a", "b"}) {
      WakeDraft draft = Draft(registration_id, absl::StrCat(i, key));
      draft.stream = stream(i);
      drafts.push_back(draft);
    }
  }
  return drafts;
}

// Runs `fn(i)` on `n` threads started together.
void InParallel(int n, const std::function<void(int)>& fn) {
  absl::Mutex mu;
  bool go = false;
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      {
        absl::MutexLock lock(&mu);
        mu.Await(absl::Condition(&go));
      }
      fn(i);
    });
  }
  {
    absl::MutexLock lock(&mu);
    go = true;
  }
  for (std::thread& thread : threads) thread.join();
}

class PostgresWakeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = testing::TestDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    pqxx::connection connection(db_->url());
    ASSERT_TRUE(ApplyMigrations(connection).ok());
    store_ = std::make_unique<PostgresWakeStore>(db_->url(), 16, executor_);
  }

  std::unique_ptr<testing::TestDatabase> db_;
  common::ThreadPoolExecutor executor_{4};
  std::unique_ptr<PostgresWakeStore> store_;
};

TEST_F(PostgresWakeStoreTest, ConcurrentUpsertsCreateEachRowOnce) {
  constexpr int kCallers = 48;
  std::vector<absl::StatusOr<UpsertResult>> results(kCallers, absl::UnknownError("not run"));
  InParallel(kCallers, [&](int i) {
    // Callers 0..7 register the same row (with quotes and a backslash in
    // it); the others one row each.
    const std::string subscriber = i < 8 ? "/parent \"same\" \\ one" : absl::StrCat("/parent-", i);
    sync::Registration row = Row(subscriber, "/child");
    if (i % 3 == 0 && i >= 8) {
      row.condition.kind = sync::ConditionKind::kChange;
      row.condition.collections = {"inbox"};
    }
    results[i] = store_->UpsertRegistration(row);
  });
  int created_same = 0;
  std::set<int64_t> ids;
  for (int i = 0; i < kCallers; ++i) {
    ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].status();
    const UpsertResult& result = *results[i];
    EXPECT_GT(result.row.id, 0);
    EXPECT_EQ(result.txid != 0, result.created) << i;
    if (i < 8) {
      EXPECT_EQ(result.row.id, results[0]->row.id);
      EXPECT_EQ(result.row.subscriber_url, "/parent \"same\" \\ one");
      created_same += result.created ? 1 : 0;
    } else {
      EXPECT_TRUE(result.created) << i;
      EXPECT_EQ(result.row.subscriber_url, absl::StrCat("/parent-", i));
      EXPECT_EQ(result.row.condition.kind,
                i % 3 == 0 ? sync::ConditionKind::kChange : sync::ConditionKind::kRunFinished);
    }
    ids.insert(result.row.id);
  }
  EXPECT_EQ(created_same, 1);
  EXPECT_EQ(ids.size(), static_cast<size_t>(kCallers - 7));
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wake_registrations"), absl::StrCat(kCallers - 7));
  // Registering them all again finds every one, writes nothing.
  InParallel(kCallers, [&](int i) {
    const std::string subscriber = i < 8 ? "/parent \"same\" \\ one" : absl::StrCat("/parent-", i);
    sync::Registration row = Row(subscriber, "/child");
    if (i % 3 == 0 && i >= 8) {
      row.condition.kind = sync::ConditionKind::kChange;
      row.condition.collections = {"inbox"};
    }
    absl::StatusOr<UpsertResult> again = store_->UpsertRegistration(row);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_FALSE(again->created);
    EXPECT_EQ(again->txid, 0);
    EXPECT_EQ(again->row.id, results[i]->row.id);
  });
}

TEST_F(PostgresWakeStoreTest, ConcurrentWakesAreOnePerEvent) {
  absl::StatusOr<UpsertResult> registration = store_->UpsertRegistration(Row("/parent", "/child"));
  ASSERT_TRUE(registration.ok());
  const int64_t id = registration->row.id;
  constexpr int kCallers = 40;
  std::vector<absl::StatusOr<PersistResult>> results(kCallers, absl::UnknownError("not run"));
  InParallel(kCallers, [&](int i) {
    // Callers 0..9 report the same event; the others one event each, two
    // drafts per call for every fourth (one transaction per call).
    std::vector<WakeDraft> drafts = {Draft(id, i < 10 ? "same" : absl::StrCat("event-", i))};
    if (i >= 10 && i % 4 == 0) drafts.push_back(Draft(id, absl::StrCat("event-", i, "-b")));
    results[i] = store_->PersistWakes(drafts);
  });
  int same = 0;
  std::set<int64_t> wake_ids;
  for (int i = 0; i < kCallers; ++i) {
    ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].status();
    const PersistResult& result = *results[i];
    if (i < 10) {
      same += static_cast<int>(result.wakes.size());
    } else {
      const size_t expected = i % 4 == 0 ? 2 : 1;
      ASSERT_EQ(result.wakes.size(), expected) << i;
      EXPECT_EQ(result.wakes[0].source_event_key(), absl::StrCat("event-", i));
      if (expected == 2) {
        EXPECT_EQ(result.wakes[1].source_event_key(), absl::StrCat("event-", i, "-b"));
      }
    }
    for (const v1::Wake& wake : result.wakes) {
      EXPECT_NE(result.txid, 0);
      EXPECT_EQ(wake.registration_id(), id);
      EXPECT_EQ(wake.stream(), "/parent");
      EXPECT_EQ(wake.message().source(), "/child \"quoted\" \\ and\ttab");
      EXPECT_EQ(wake.run_finished_status(), v1::COMPLETED);
      EXPECT_GT(wake.created_at().seconds(), 0);
      wake_ids.insert(wake.id());
    }
  }
  EXPECT_EQ(same, 1);
  EXPECT_EQ(wake_ids.size(), 1u + 30u + 7u);  // 7 calls (12, 16, ..., 36) had two drafts.
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "38");
  EXPECT_EQ(db_->QueryValue("SELECT message->>'source' FROM wakes LIMIT 1"),
            "/child \"quoted\" \\ and\ttab");
}

TEST_F(PostgresWakeStoreTest, OneShotWakesStayGatedUnderConcurrency) {
  sync::Registration row = Row("/parent", "/child");
  row.one_shot = true;
  absl::StatusOr<UpsertResult> registration = store_->UpsertRegistration(row);
  ASSERT_TRUE(registration.ok());
  const int64_t id = registration->row.id;
  std::atomic<int> delivered{0};
  InParallel(16, [&](int i) {
    WakeDraft draft = Draft(id, absl::StrCat("event-", i));
    draft.delete_registration = true;
    absl::StatusOr<PersistResult> result = store_->PersistWakes({draft});
    ASSERT_TRUE(result.ok()) << result.status();
    delivered += static_cast<int>(result->wakes.size());
  });
  EXPECT_EQ(delivered.load(), 1);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wake_registrations"), "0");
}

TEST_F(PostgresWakeStoreTest, ClaimAckAndReleaseEachInOneStatement) {
  absl::StatusOr<UpsertResult> registration = store_->UpsertRegistration(Row("/parent", "/child"));
  ASSERT_TRUE(registration.ok());
  const int64_t id = registration->row.id;
  // Nothing to claim yet, and no claim row is left behind.
  absl::StatusOr<ClaimResult> empty =
      store_->ClaimWakes("t", "/parent", "r", "s", absl::Seconds(30));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->status, v1::NOTHING_PENDING);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM stream_claims"), "0");

  ASSERT_TRUE(store_->PersistWakes({Draft(id, "a"), Draft(id, "b"), Draft(id, "c")}).ok());
  absl::StatusOr<ClaimResult> claim =
      store_->ClaimWakes("t", "/parent", "r", "s", absl::Seconds(30));
  ASSERT_TRUE(claim.ok()) << claim.status();
  ASSERT_EQ(claim->status, v1::CLAIMED);
  ASSERT_EQ(claim->wakes.size(), 3u);
  EXPECT_LT(claim->wakes[0].id(), claim->wakes[1].id());
  EXPECT_EQ(claim->wakes[0].source_event_key(), "a");
  EXPECT_EQ(claim->wakes[0].message().source(), "/child \"quoted\" \\ and\ttab");
  EXPECT_GT(claim->lease_expires_at, absl::Now() + absl::Seconds(20));
  // A live claim wins over a second claimer; another stream is unaffected.
  absl::StatusOr<ClaimResult> second =
      store_->ClaimWakes("t", "/parent", "r2", "s", absl::Seconds(30));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->status, v1::ALREADY_CLAIMED);
  absl::StatusOr<ClaimResult> other =
      store_->ClaimWakes("t", "/other", "r2", "s", absl::Seconds(30));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->status, v1::NOTHING_PENDING);

  // A partial ack deletes the listed wakes, returns the rest to pending and
  // ends the claim.
  const ClaimKey key{"t", "/parent", claim->claim_token};
  absl::StatusOr<AckResult> acked = store_->AckWakes(key, {claim->wakes[0].id()});
  ASSERT_TRUE(acked.ok()) << acked.status();
  EXPECT_EQ(acked->acked, 1);
  EXPECT_TRUE(acked->more_pending);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes WHERE claim_token IS NULL"), "2");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM stream_claims"), "0");
  // The ended claim can neither ack nor release again.
  EXPECT_EQ(store_->AckWakes(key, {}).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->ReleaseClaim(key).status().code(), absl::StatusCode::kFailedPrecondition);

  // Release returns every wake of the claim.
  absl::StatusOr<ClaimResult> again =
      store_->ClaimWakes("t", "/parent", "r", "s", absl::Seconds(30));
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->status, v1::CLAIMED);
  EXPECT_EQ(again->wakes.size(), 2u);
  absl::StatusOr<int64_t> released = store_->ReleaseClaim({"t", "/parent", again->claim_token});
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_EQ(*released, 2);

  // An empty ack list acks the whole claim; nothing is left.
  absl::StatusOr<ClaimResult> last =
      store_->ClaimWakes("t", "/parent", "r", "s", absl::Seconds(30));
  ASSERT_TRUE(last.ok());
  ASSERT_EQ(last->status, v1::CLAIMED);
  absl::StatusOr<AckResult> all = store_->AckWakes({"t", "/parent", last->claim_token}, {});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->acked, 2);
  EXPECT_FALSE(all->more_pending);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "0");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM stream_claims"), "0");
}

TEST_F(PostgresWakeStoreTest, ClaimStreamsClaimsEachEntryAndAnswersRepeatsAsClaimed) {
  absl::StatusOr<UpsertResult> registration = store_->UpsertRegistration(Row("/a", "/child"));
  ASSERT_TRUE(registration.ok());
  const int64_t id = registration->row.id;
  std::vector<WakeDraft> drafts = TwoWakesPerStream(
      id, 2, [](int i) { return i == 0 ? std::string("/a") : std::string("/b"); });
  ASSERT_TRUE(store_->PersistWakes(drafts).ok());
  auto spec = [](const std::string& stream) {
    return ClaimSpec{"t", stream, "r", "s", absl::Seconds(30), /*idempotency_key=*/""};
  };
  std::vector<absl::StatusOr<ClaimResult>> claimed =
      store_->ClaimStreams({spec("/a"), spec("/empty"), spec("/b"), spec("/a")});
  ASSERT_EQ(claimed.size(), 4u);
  for (const auto& result : claimed) ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(claimed[0]->status, v1::CLAIMED);
  EXPECT_EQ(claimed[0]->wakes.size(), 2u);
  EXPECT_EQ(claimed[1]->status, v1::NOTHING_PENDING);
  EXPECT_EQ(claimed[2]->status, v1::CLAIMED);
  EXPECT_EQ(claimed[2]->wakes.size(), 2u);
  EXPECT_EQ(claimed[2]->wakes[0].stream(), "/b");
  EXPECT_NE(claimed[0]->claim_token, claimed[2]->claim_token);
  EXPECT_EQ(claimed[3]->status, v1::ALREADY_CLAIMED);  // Repeats of a stream in one batch.
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM stream_claims"), "2");
  // Claimed streams stay claimed for later batches.
  claimed = store_->ClaimStreams({spec("/b")});
  ASSERT_TRUE(claimed[0].ok());
  EXPECT_EQ(claimed[0]->status, v1::ALREADY_CLAIMED);
}

TEST_F(PostgresWakeStoreTest, AckClaimsEndsEachClaimAndClaimsWhatIsPendingInTheSameTransaction) {
  absl::StatusOr<UpsertResult> registration = store_->UpsertRegistration(Row("/a", "/child"));
  ASSERT_TRUE(registration.ok());
  const int64_t id = registration->row.id;
  ASSERT_TRUE(
      store_->PersistWakes(TwoWakesPerStream(id, 3, [](int i) { return absl::StrCat("/s", i); }))
          .ok());
  std::vector<ClaimResult> claims;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ClaimResult> claim =
        store_->ClaimWakes("t", absl::StrCat("/s", i), "r", "s", absl::Seconds(30));
    ASSERT_TRUE(claim.ok()) << claim.status();
    ASSERT_EQ(claim->status, v1::CLAIMED);
    claims.push_back(*claim);
  }
  // A wake arrives on /s0 during its claim.
  WakeDraft late = Draft(id, "late");
  late.stream = "/s0";
  ASSERT_TRUE(store_->PersistWakes({late}).ok());
  const ClaimSpec next0{"t", "/s0", "r2", "s2", absl::Seconds(30), /*idempotency_key=*/""};
  const ClaimSpec next1{"t", "/s1", "r2", "s2", absl::Seconds(30), /*idempotency_key=*/""};
  std::vector<AckSpec> acks = {
      // /s0: all acked; the late wake is claimed at once for r2.
      {{"t", "/s0", claims[0].claim_token}, {}, next0},
      // /s1: one of two acked; the other is claimed again at once.
      {{"t", "/s1", claims[1].claim_token}, {claims[1].wakes[0].id()}, next1},
      // /s2: acked without a next claim.
      {{"t", "/s2", claims[2].claim_token}, {}, std::nullopt},
      // A token that is not live fails alone.
      {{"t", "/s2", "no-such-token"}, {}, std::nullopt},
  };
  std::vector<absl::StatusOr<AckResult>> acked = store_->AckClaims(acks);
  ASSERT_EQ(acked.size(), 4u);
  ASSERT_TRUE(acked[0].ok()) << acked[0].status();
  EXPECT_EQ(acked[0]->acked, 2);
  EXPECT_TRUE(acked[0]->more_pending);
  ASSERT_TRUE(acked[0]->next.has_value());
  ASSERT_EQ(acked[0]->next->status, v1::CLAIMED);
  ASSERT_EQ(acked[0]->next->wakes.size(), 1u);
  EXPECT_EQ(acked[0]->next->wakes[0].source_event_key(), "late");
  ASSERT_TRUE(acked[1].ok()) << acked[1].status();
  EXPECT_EQ(acked[1]->acked, 1);
  ASSERT_TRUE(acked[1]->next.has_value());
  ASSERT_EQ(acked[1]->next->wakes.size(), 1u);
  EXPECT_EQ(acked[1]->next->wakes[0].id(), claims[1].wakes[1].id());
  ASSERT_TRUE(acked[2].ok()) << acked[2].status();
  EXPECT_EQ(acked[2]->acked, 2);
  EXPECT_FALSE(acked[2]->more_pending);
  EXPECT_FALSE(acked[2]->next.has_value());
  EXPECT_EQ(acked[3].status().code(), absl::StatusCode::kFailedPrecondition);
  // The next claims are live claims of their holder: r2's, acked like any other.
  EXPECT_EQ(db_->QueryValue("SELECT string_agg(runner_id, ',' ORDER BY stream) FROM stream_claims"),
            "r2,r2");
  EXPECT_EQ(store_->AckWakes({"t", "/s0", claims[0].claim_token}, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  acked = store_->AckClaims({{{"t", "/s0", acked[0]->next->claim_token}, {}, next0},
                             {{"t", "/s1", acked[1]->next->claim_token}, {}, next1}});
  for (const auto& result : acked) {
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->acked, 1);
    EXPECT_FALSE(result->more_pending);
    EXPECT_FALSE(result->next.has_value());  // Nothing left to claim.
  }
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "0");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM stream_claims"), "0");
}

TEST_F(PostgresWakeStoreTest, ExpiredClaimIsTakenOverAndItsTokenDies) {
  absl::StatusOr<UpsertResult> registration = store_->UpsertRegistration(Row("/parent", "/child"));
  ASSERT_TRUE(registration.ok());
  ASSERT_TRUE(store_->PersistWakes({Draft(registration->row.id, "a")}).ok());
  absl::StatusOr<ClaimResult> first =
      store_->ClaimWakes("t", "/parent", "r", "s", absl::Seconds(30));
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->status, v1::CLAIMED);
  // The lease runs out (moved into the past rather than waited for).
  ASSERT_EQ(db_->QueryValue("UPDATE stream_claims SET lease_expires_at = now() - interval '1 s' "
                            "RETURNING 1"),
            "1");
  absl::StatusOr<ClaimResult> taken =
      store_->ClaimWakes("t", "/parent", "r2", "s", absl::Seconds(30));
  ASSERT_TRUE(taken.ok());
  ASSERT_EQ(taken->status, v1::CLAIMED);
  ASSERT_EQ(taken->wakes.size(), 1u);
  EXPECT_EQ(store_->AckWakes({"t", "/parent", first->claim_token}, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "1");
  absl::StatusOr<AckResult> acked = store_->AckWakes({"t", "/parent", taken->claim_token}, {});
  ASSERT_TRUE(acked.ok());
  EXPECT_EQ(acked->acked, 1);
}

// A claim whose answer is lost (the caller's deadline passed after the
// commit) holds its stream. The caller retries with the same idempotency key:
// it gets that claim back, lease renewed, instead of ALREADY_CLAIMED until
// the lease runs out. Anyone else still finds the stream claimed.
TEST_F(PostgresWakeStoreTest, ARetryWithTheSameIdempotencyKeyGetsBackTheClaimItsLostAnswerTook) {
  absl::StatusOr<UpsertResult> registration = store_->UpsertRegistration(Row("/parent", "/child"));
  ASSERT_TRUE(registration.ok());
  const int64_t id = registration->row.id;
  ASSERT_TRUE(store_->PersistWakes({Draft(id, "a"), Draft(id, "b")}).ok());
  const ClaimSpec spec{"t", "/parent", "r", "s", absl::Seconds(30), "attempt-key-0000000001"};
  std::vector<absl::StatusOr<ClaimResult>> first = store_->ClaimStreams({spec});
  ASSERT_TRUE(first[0].ok()) << first[0].status();
  ASSERT_EQ(first[0]->status, v1::CLAIMED);
  ASSERT_EQ(first[0]->wakes.size(), 2u);
  // The answer never arrives; a wake comes in meanwhile.
  ASSERT_TRUE(store_->PersistWakes({Draft(id, "c")}).ok());

  // Another attempt (another key, or none) finds the stream claimed.
  ClaimSpec other = spec;
  other.idempotency_key = "attempt-key-0000000002";
  std::vector<absl::StatusOr<ClaimResult>> rival = store_->ClaimStreams({other});
  ASSERT_TRUE(rival[0].ok());
  EXPECT_EQ(rival[0]->status, v1::ALREADY_CLAIMED);
  absl::StatusOr<ClaimResult> keyless =
      store_->ClaimWakes("t", "/parent", "r", "s", absl::Seconds(30));
  ASSERT_TRUE(keyless.ok());
  EXPECT_EQ(keyless->status, v1::ALREADY_CLAIMED);

  // The retry gets the claim: the same token, every wake pending on the
  // stream (the new one too), a fresh lease.
  ClaimSpec retry = spec;
  retry.lease = absl::Seconds(60);
  std::vector<absl::StatusOr<ClaimResult>> again = store_->ClaimStreams({retry});
  ASSERT_TRUE(again[0].ok()) << again[0].status();
  ASSERT_EQ(again[0]->status, v1::CLAIMED);
  EXPECT_EQ(again[0]->claim_token, first[0]->claim_token);
  ASSERT_EQ(again[0]->wakes.size(), 3u);
  EXPECT_EQ(again[0]->wakes[0].id(), first[0]->wakes[0].id());
  EXPECT_EQ(again[0]->wakes[2].source_event_key(), "c");
  EXPECT_GT(again[0]->lease_expires_at, absl::Now() + absl::Seconds(45));

  // And it acks like any claim: everything is gone, nothing pending.
  absl::StatusOr<AckResult> acked = store_->AckWakes({"t", "/parent", again[0]->claim_token}, {});
  ASSERT_TRUE(acked.ok()) << acked.status();
  EXPECT_EQ(acked->acked, 3);
  EXPECT_FALSE(acked->more_pending);
}

// An idempotency key names an attempt on one stream: the same key sent for
// two streams makes two claims with tokens of their own (claim tokens are
// unique across streams, and a key must not let one caller's batch fail on
// another's).
TEST_F(PostgresWakeStoreTest, TheSameIdempotencyKeyOnTwoStreamsMakesTwoClaims) {
  absl::StatusOr<UpsertResult> registration = store_->UpsertRegistration(Row("/a", "/child"));
  ASSERT_TRUE(registration.ok());
  std::vector<WakeDraft> drafts = TwoWakesPerStream(registration->row.id, 2, [](int i) {
    return i == 0 ? std::string("/a") : std::string("/b");
  });
  ASSERT_TRUE(store_->PersistWakes(drafts).ok());
  const std::string key = "one-key-for-two-streams";
  std::vector<absl::StatusOr<ClaimResult>> claimed =
      store_->ClaimStreams({ClaimSpec{"t", "/a", "r", "s", absl::Seconds(30), key},
                            ClaimSpec{"t", "/b", "r", "s", absl::Seconds(30), key}});
  ASSERT_EQ(claimed.size(), 2u);
  for (const auto& result : claimed) {
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_EQ(result->status, v1::CLAIMED);
    ASSERT_EQ(result->wakes.size(), 2u);
  }
  EXPECT_NE(claimed[0]->claim_token, claimed[1]->claim_token);
  EXPECT_EQ(claimed[0]->wakes[0].stream(), "/a");
  EXPECT_EQ(claimed[0]->wakes[1].stream(), "/a");
  EXPECT_EQ(claimed[1]->wakes[0].stream(), "/b");
  EXPECT_EQ(claimed[1]->wakes[1].stream(), "/b");
}

TEST_F(PostgresWakeStoreTest, ConcurrentClaimersOfOneStreamGetOneClaim) {
  absl::StatusOr<UpsertResult> registration = store_->UpsertRegistration(Row("/parent", "/child"));
  ASSERT_TRUE(registration.ok());
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(store_->PersistWakes({Draft(registration->row.id, absl::StrCat("e", round))}).ok());
    std::atomic<int> claimed{0};
    std::string token;
    absl::Mutex mu;
    InParallel(8, [&](int) {
      absl::StatusOr<ClaimResult> result =
          store_->ClaimWakes("t", "/parent", "r", "s", absl::Seconds(30));
      ASSERT_TRUE(result.ok()) << result.status();
      if (result->status == v1::CLAIMED) {
        ++claimed;
        absl::MutexLock lock(&mu);
        token = result->claim_token;
      } else {
        EXPECT_EQ(result->status, v1::ALREADY_CLAIMED);
      }
    });
    ASSERT_EQ(claimed.load(), 1) << "round " << round;
    absl::StatusOr<AckResult> acked = store_->AckWakes({"t", "/parent", token}, {});
    ASSERT_TRUE(acked.ok());
    EXPECT_EQ(acked->acked, 1);
  }
}

TEST_F(PostgresWakeStoreTest, ConcurrentClaimsAndAcksOfManyStreamsKeepTheirMeaning) {
  constexpr int kStreams = 40;
  absl::StatusOr<UpsertResult> registration = store_->UpsertRegistration(Row("/parent", "/child"));
  ASSERT_TRUE(registration.ok());
  auto stream = [](int i) { return absl::StrCat("/stream-", i, i % 5 == 0 ? " \"quoted\"" : ""); };
  ASSERT_TRUE(store_->PersistWakes(TwoWakesPerStream(registration->row.id, kStreams, stream)).ok());
  // Every stream claimed once, plus streams 0..9 a second time and a stream
  // with nothing pending: all at once, so batches hold several of each.
  std::vector<absl::StatusOr<ClaimResult>> claims(kStreams + 11, absl::UnknownError("not run"));
  InParallel(kStreams + 11, [&](int i) {
    const std::string name = i < kStreams        ? stream(i)
                             : i < kStreams + 10 ? stream(i - kStreams)
                                                 : "/empty";
    claims[i] = store_->ClaimWakes("t", name, "r", "s", absl::Seconds(30));
  });
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(claims[i].ok()) << claims[i].status();
    ASSERT_TRUE(i >= 10 || claims[kStreams + i].ok());
    // Of the two claimers of streams 0..9 exactly one wins.
    const absl::StatusOr<ClaimResult>* winner = &claims[i];
    if (i < 10) {
      const v1::ClaimStatus a = claims[i]->status;
      const v1::ClaimStatus b = claims[kStreams + i]->status;
      EXPECT_TRUE((a == v1::CLAIMED && b == v1::ALREADY_CLAIMED) ||
                  (a == v1::ALREADY_CLAIMED && b == v1::CLAIMED))
          << i << ": " << a << " " << b;
      if (b == v1::CLAIMED) winner = &claims[kStreams + i];
    }
    ASSERT_EQ((*winner)->status, v1::CLAIMED) << i;
    ASSERT_EQ((*winner)->wakes.size(), 2u) << i;
    EXPECT_EQ((*winner)->wakes[0].stream(), stream(i));
    EXPECT_EQ((*winner)->wakes[0].source_event_key(), absl::StrCat(i, "a"));
    EXPECT_EQ((*winner)->wakes[1].source_event_key(), absl::StrCat(i, "b"));
    if (winner != &claims[i]) std::swap(claims[i], claims[kStreams + i]);
  }
  ASSERT_TRUE(claims[kStreams + 10].ok());
  EXPECT_EQ(claims[kStreams + 10]->status, v1::NOTHING_PENDING);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM stream_claims"), absl::StrCat(kStreams));

  // Even streams ack everything, odd ones only their first wake; stream 1's
  // claim is acked twice at once (one of the two finds it no longer live).
  std::vector<absl::StatusOr<AckResult>> acks(kStreams + 1, absl::UnknownError("not run"));
  InParallel(kStreams + 1, [&](int i) {
    const int s = i < kStreams ? i : 1;
    const ClaimResult& claim = *claims[s];
    std::vector<int64_t> ids;
    if (s % 2 == 1) ids.push_back(claim.wakes[0].id());
    acks[i] = store_->AckWakes({"t", stream(s), claim.claim_token}, ids);
  });
  for (int i = 0; i < kStreams; ++i) {
    if (i == 1) continue;
    ASSERT_TRUE(acks[i].ok()) << i << ": " << acks[i].status();
    EXPECT_EQ(acks[i]->acked, i % 2 == 0 ? 2 : 1) << i;
    EXPECT_EQ(acks[i]->more_pending, i % 2 == 1) << i;
  }
  EXPECT_NE(acks[1].ok(), acks[kStreams].ok());
  const absl::StatusOr<AckResult>& failed = acks[1].ok() ? acks[kStreams] : acks[1];
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM stream_claims"), "0");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes WHERE claim_token IS NULL"),
            absl::StrCat(kStreams / 2));
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), absl::StrCat(kStreams / 2));
  EXPECT_EQ(store_->failed_batches(), 0);
}

// Sequential scans of `table` so far, once `counters_sql` (other columns of
// its pg_stat_user_tables row) reads `expected`: backends report their
// statistics when idle, at most about once a second (else ten seconds later),
// so a counter that only the awaited work changes tells that it arrived.
std::string TableStat(const testing::TestDatabase& db, const std::string& table,
                      const std::string& columns_sql) {
  return db.QueryValue(absl::StrCat("SELECT ", columns_sql,
                                    " FROM pg_stat_user_tables WHERE relname = '", table, "'"));
}

int64_t SeqScansOnceCounted(const testing::TestDatabase& db, const std::string& table,
                            const std::string& counters_sql, const std::string& expected) {
  std::string counters;
  if (!WaitUntil([&] { return (counters = TableStat(db, table, counters_sql)) == expected; },
                 absl::Now() + absl::Seconds(30))) {
    ADD_FAILURE() << table << ": " << counters_sql << " is " << counters << ", never " << expected;
    return -1;
  }
  return std::stoll(TableStat(db, table, "seq_scan"));
}

TEST_F(PostgresWakeStoreTest, WakesClaimsAndAcksFindRowsByIndexNotByScanningTables) {
  // The migrations' own scans (index builds), counted once their session's
  // statistics arrived (it wrote the schema_migrations rows).
  SeqScansOnceCounted(*db_, "schema_migrations", "n_tup_ins", absl::StrCat(Migrations().size()));
  const std::string wakes_before = TableStat(*db_, "wakes", "seq_scan");
  const std::string claims_before = TableStat(*db_, "stream_claims", "seq_scan");

  constexpr int kStreams = 24;
  absl::StatusOr<UpsertResult> registration = store_->UpsertRegistration(Row("/parent", "/child"));
  ASSERT_TRUE(registration.ok());
  ASSERT_TRUE(
      store_
          ->PersistWakes(TwoWakesPerStream(registration->row.id, kStreams,
                                           [](int i) { return absl::StrCat("/stream-", i); }))
          .ok());
  // Claim and ack every stream, concurrently so that batches form; odd
  // streams ack one of their two wakes (the other returns to pending).
  std::vector<absl::StatusOr<ClaimResult>> claims(kStreams, absl::UnknownError("not run"));
  InParallel(kStreams, [&](int i) {
    claims[i] = store_->ClaimWakes("t", absl::StrCat("/stream-", i), "r", "s", absl::Seconds(30));
  });
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(claims[i].ok()) << claims[i].status();
    ASSERT_EQ(claims[i]->status, v1::CLAIMED) << i;
  }
  std::vector<absl::StatusOr<AckResult>> acks(kStreams, absl::UnknownError("not run"));
  InParallel(kStreams, [&](int i) {
    std::vector<int64_t> ids;
    if (i % 2 == 1) ids.push_back(claims[i]->wakes[0].id());
    acks[i] = store_->AckWakes({"t", absl::StrCat("/stream-", i), claims[i]->claim_token}, ids);
  });
  for (int i = 0; i < kStreams; ++i) ASSERT_TRUE(acks[i].ok()) << acks[i].status();

  // 48 wakes in, 48 claimed and 12 of them returned to pending, 36 acked;
  // 24 claim rows in and out. Not one full scan of either table.
  EXPECT_EQ(absl::StrCat(SeqScansOnceCounted(
                *db_, "wakes", "n_tup_ins || '/' || n_tup_upd || '/' || n_tup_del", "48/60/36")),
            wakes_before);
  EXPECT_EQ(absl::StrCat(SeqScansOnceCounted(*db_, "stream_claims", "n_tup_ins || '/' || n_tup_del",
                                             "24/24")),
            claims_before);
}

TEST_F(PostgresWakeStoreTest, ExtendClaimsExtendsOnlyLiveClaimsInOneStatement) {
  absl::StatusOr<UpsertResult> registration = store_->UpsertRegistration(Row("/parent", "/child"));
  ASSERT_TRUE(registration.ok());
  std::vector<ClaimKey> keys;
  for (int i = 0; i < 3; ++i) {
    WakeDraft draft = Draft(registration->row.id, absl::StrCat("e", i));
    draft.stream = absl::StrCat("/s", i);
    ASSERT_TRUE(store_->PersistWakes({draft}).ok());
    absl::StatusOr<ClaimResult> claim =
        store_->ClaimWakes("t", draft.stream, "r", "s", absl::Seconds(5));
    ASSERT_TRUE(claim.ok());
    ASSERT_EQ(claim->status, v1::CLAIMED);
    keys.push_back({"t", draft.stream, claim->claim_token});
  }
  // Acked (so no longer live), a token under the wrong stream, and a repeat.
  ASSERT_TRUE(store_->AckWakes(keys[2], {}).ok());
  std::vector<ClaimKey> asked = {
      keys[0], keys[1], keys[2], {"t", "/s0", keys[1].claim_token}, keys[0]};
  absl::StatusOr<std::vector<ExtendResult>> results = store_->ExtendClaims(asked, absl::Minutes(5));
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), asked.size());
  const std::vector<bool> expected = {true, true, false, false, true};
  for (size_t i = 0; i < asked.size(); ++i) {
    EXPECT_EQ((*results)[i].extended, expected[i]) << i;
    EXPECT_EQ((*results)[i].claim.claim_token, asked[i].claim_token) << i;
    if (expected[i]) {
      EXPECT_GT((*results)[i].lease_expires_at, absl::Now() + absl::Minutes(4)) << i;
    }
  }
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM stream_claims WHERE lease_expires_at > "
                            "now() + interval '4 minutes'"),
            "2");
}

}  // namespace
}  // namespace wake::registry
