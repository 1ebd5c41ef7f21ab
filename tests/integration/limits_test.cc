// Size limits of PostgresWakeStore against real PostgreSQL: claims cut by
// bytes and count (the rest stays pending), debounce windows that close early
// when full, and windows too large for one wake closing into several.
#include <pqxx/pqxx>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry-service/migrations.h"
#include "registry-service/postgres_wake_store.h"
#include "tests/support/test_database.h"

namespace wake::registry {
namespace {

using ::testing::ElementsAre;
using ::testing::SizeIs;

constexpr int kPayloadBytes = 30 << 10;

WakeDraft Wake(int64_t registration_id, const std::string& key, int payload_bytes) {
  WakeDraft draft;
  draft.tenant_id = "t";
  draft.stream = "/parent";
  draft.registration_id = registration_id;
  draft.source_event_key = key;
  draft.key_kind = EventKeyKind::kEvent;
  draft.message.set_source("/child");
  v1::WakeChange* change = draft.message.add_changes();
  change->set_collection("items");
  change->set_kind(v1::UPDATE);
  change->set_key(key);
  change->mutable_value()->set_string_value(std::string(payload_bytes, 'x'));
  return draft;
}

class LimitsTest : public ::testing::Test {
 protected:
  void Start(StoreLimits limits) {
    auto db = testing::TestDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    pqxx::connection connection(db_->url());
    ASSERT_TRUE(ApplyMigrations(connection).ok());
    store_ = std::make_unique<PostgresWakeStore>(db_->url(), 4, executor_, limits);
  }

  int64_t Register(int32_t debounce_ms = 0) {
    sync::Registration row;
    row.tenant_id = "t";
    row.subscriber_url = "/parent";
    row.source_url = "/child";
    row.debounce_ms = debounce_ms;
    absl::StatusOr<UpsertResult> result = store_->UpsertRegistration(row);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->row.id : 0;
  }

  // Claims and acks until nothing is pending; the keys of each claim.
  std::vector<std::vector<std::string>> DrainInClaims() {
    std::vector<std::vector<std::string>> claims;
    for (int round = 0; round < 20; ++round) {
      absl::StatusOr<ClaimResult> claim =
          store_->ClaimWakes("t", "/parent", "r", "s", absl::Seconds(30));
      EXPECT_TRUE(claim.ok()) << claim.status();
      if (!claim.ok() || claim->status != v1::CLAIMED) break;
      std::vector<std::string> keys;
      for (const v1::Wake& wake : claim->wakes) keys.push_back(wake.source_event_key());
      claims.push_back(keys);
      absl::StatusOr<AckResult> acked = store_->AckWakes({"t", "/parent", claim->claim_token}, {});
      EXPECT_TRUE(acked.ok()) << acked.status();
      if (!acked.ok()) break;
      EXPECT_EQ(acked->acked, static_cast<int64_t>(keys.size()));
      if (!acked->more_pending) break;
    }
    return claims;
  }

  std::unique_ptr<testing::TestDatabase> db_;
  common::ThreadPoolExecutor executor_{2};
  std::unique_ptr<PostgresWakeStore> store_;
};

TEST_F(LimitsTest, AClaimStopsAtItsByteLimitAndTheRestFollowsInTheNextClaims) {
  StoreLimits limits;
  limits.max_claim_bytes = 2 * kPayloadBytes + (4 << 10);  // Two wakes and change.
  Start(limits);
  const int64_t id = Register();
  for (const char* key : {"a", "b", "c", "d", "e"}) {
    ASSERT_TRUE(store_->PersistWakes({Wake(id, key, kPayloadBytes)}).ok());
  }
  EXPECT_THAT(DrainInClaims(),
              ElementsAre(ElementsAre("a", "b"), ElementsAre("c", "d"), ElementsAre("e")));
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "0");
}

TEST_F(LimitsTest, AWakeLargerThanTheClaimLimitStillGoesAloneAndByCount) {
  StoreLimits limits;
  limits.max_claim_bytes = kPayloadBytes / 2;
  limits.max_claim_wakes = 2;
  Start(limits);
  const int64_t id = Register();
  ASSERT_TRUE(store_->PersistWakes({Wake(id, "big", kPayloadBytes)}).ok());
  for (const char* key : {"s1", "s2", "s3"}) {
    ASSERT_TRUE(store_->PersistWakes({Wake(id, key, 10)}).ok());
  }
  EXPECT_THAT(DrainInClaims(),
              ElementsAre(ElementsAre("big"), ElementsAre("s1", "s2"), ElementsAre("s3")));
}

TEST_F(LimitsTest, WakesBeyondTheCutOfAnExpiredClaimArePendingAgain) {
  StoreLimits limits;
  limits.max_claim_wakes = 1;
  Start(limits);
  const int64_t id = Register();
  ASSERT_TRUE(store_->PersistWakes({Wake(id, "a", 10), Wake(id, "b", 10)}).ok());
  // An old claim (as before the limit) held both wakes, and expired.
  db_->QueryValue(
      "INSERT INTO stream_claims (tenant_id, stream, claim_token, runner_id, session_id, "
      "lease_expires_at) VALUES ('t', '/parent', 'old', 'r', 's', now() - interval '1 s')");
  db_->QueryValue("UPDATE wakes SET claim_token = 'old', claimed_at = now()");
  absl::StatusOr<ClaimResult> claim =
      store_->ClaimWakes("t", "/parent", "r", "s", absl::Seconds(30));
  ASSERT_TRUE(claim.ok()) << claim.status();
  ASSERT_EQ(claim->status, v1::CLAIMED);
  ASSERT_THAT(claim->wakes, SizeIs(1));
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes WHERE claim_token IS NULL"), "1");
  absl::StatusOr<AckResult> acked = store_->AckWakes({"t", "/parent", claim->claim_token}, {});
  ASSERT_TRUE(acked.ok()) << acked.status();
  EXPECT_TRUE(acked->more_pending);
}

TEST_F(LimitsTest, AFullDebounceWindowClosesAtOnceAndTheNextMatchOpensANewOne) {
  StoreLimits limits;
  limits.debounce_max_changes = 2;
  Start(limits);
  const int64_t id = Register(/*debounce_ms=*/3600000);
  WakeDraft first = Wake(id, "a", 10);
  first.debounce_ms = 3600000;
  absl::StatusOr<PersistResult> one = store_->PersistWakes({first});
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_THAT(one->buffered, SizeIs(1));
  EXPECT_FALSE(one->buffered[0].full);
  WakeDraft second = Wake(id, "b", 10);
  second.debounce_ms = 3600000;
  absl::StatusOr<PersistResult> two = store_->PersistWakes({second});
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_THAT(two->buffered, SizeIs(1));
  EXPECT_TRUE(two->buffered[0].full);
  // Due now, not in an hour.
  absl::StatusOr<WindowResult> closed = store_->CloseDebounceWindow({"t", id});
  ASSERT_TRUE(closed.ok()) << closed.status();
  ASSERT_EQ(closed->outcome, WindowResult::Outcome::kFired);
  ASSERT_TRUE(closed->wake.has_value());
  EXPECT_EQ(closed->wake->message().changes_size(), 2);
}

TEST_F(LimitsTest, AWindowTooLargeForOneWakeClosesIntoSeveralWithEveryChange) {
  StoreLimits limits;
  limits.max_wake_bytes = 2 * kPayloadBytes + (2 << 10);
  limits.debounce_max_changes = 5;
  Start(limits);
  const int64_t id = Register(/*debounce_ms=*/3600000);
  std::vector<std::string> keys = {"a", "b", "c", "d", "e"};
  for (const std::string& key : keys) {
    WakeDraft draft = Wake(id, key, kPayloadBytes);
    draft.debounce_ms = 3600000;
    ASSERT_TRUE(store_->PersistWakes({draft}).ok());
  }
  absl::StatusOr<WindowResult> closed = store_->CloseDebounceWindow({"t", id});
  ASSERT_TRUE(closed.ok()) << closed.status();
  ASSERT_EQ(closed->outcome, WindowResult::Outcome::kFired);
  ASSERT_TRUE(closed->wake.has_value());
  ASSERT_THAT(closed->more_wakes, SizeIs(2));
  std::vector<std::string> carried;
  std::vector<const v1::Wake*> parts = {&*closed->wake, &closed->more_wakes[0],
                                        &closed->more_wakes[1]};
  for (const v1::Wake* part : parts) {
    EXPECT_LE(static_cast<int64_t>(part->ByteSizeLong()), limits.max_wake_bytes);
    for (const v1::WakeChange& change : part->message().changes()) carried.push_back(change.key());
  }
  EXPECT_EQ(carried, keys);
  EXPECT_THAT(closed->more_wakes[1].source_event_key(), ::testing::EndsWith(":a#2"));
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "3");
}

}  // namespace
}  // namespace wake::registry
