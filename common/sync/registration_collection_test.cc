#include "common/sync/registration_collection.h"

#include <thread>

#include "common/simulated_time_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace wake::sync {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

Registration Row(int64_t id, std::string tenant, std::string subscriber, std::string source) {
  Registration row;
  row.id = id;
  row.tenant_id = std::move(tenant);
  row.subscriber_url = std::move(subscriber);
  row.source_url = std::move(source);
  return row;
}

RowChange Change(ChangeOp op, const Registration& row) {
  RowChange change;
  change.op = op;
  change.registration = row;
  return change;
}

RowChange WakeChange(ChangeOp op, int64_t id, std::string stream, bool pending) {
  RowChange change;
  change.table = SyncTable::kWakes;
  change.op = op;
  change.wake = WakeRow{id, "t", std::move(stream), 1, pending};
  return change;
}

std::vector<int64_t> Ids(const std::vector<Registration>& rows) {
  std::vector<int64_t> ids;
  for (const auto& row : rows) ids.push_back(row.id);
  return ids;
}

class RegistrationCollectionTest : public ::testing::Test {
 protected:
  RegistrationCollectionTest() : collection_(time_) {
    collection_.AddListener([this](const CollectionEvent& event) { events_.push_back(event); });
  }

  void Load(std::vector<Registration> rows) {
    collection_.OnReset();
    SyncBatch batch;
    for (const auto& row : rows) batch.changes.push_back(Change(ChangeOp::kInsert, row));
    collection_.OnBatch(std::move(batch));
    collection_.OnUpToDate();
  }

  void Commit(std::vector<RowChange> changes, int64_t txid) {
    SyncBatch batch;
    batch.changes = std::move(changes);
    batch.txids = {txid};
    collection_.OnBatch(std::move(batch));
  }

  std::vector<CollectionEvent::Kind> Kinds() {
    std::vector<CollectionEvent::Kind> kinds;
    for (const auto& event : events_) kinds.push_back(event.kind);
    return kinds;
  }

  common::SimulatedTimeSource time_;
  RegistrationCollection collection_;
  std::vector<CollectionEvent> events_;
};

TEST_F(RegistrationCollectionTest, NotUpToDateUntilTheFirstSnapshotCompletes) {
  EXPECT_FALSE(collection_.up_to_date());
  collection_.OnReset();
  SyncBatch batch;
  batch.changes.push_back(Change(ChangeOp::kInsert, Row(1, "t", "/p", "/c")));
  collection_.OnBatch(batch);
  // Half-loaded snapshots are never visible.
  EXPECT_EQ(collection_.size(), 0u);
  EXPECT_FALSE(collection_.up_to_date());
  collection_.OnUpToDate();
  EXPECT_TRUE(collection_.up_to_date());
  EXPECT_EQ(collection_.size(), 1u);
}

TEST_F(RegistrationCollectionTest, IndexesBySourceAndSubscriberPerTenant) {
  Load({Row(1, "t", "/p1", "/c"), Row(2, "t", "/p2", "/c"), Row(3, "u", "/p1", "/c"),
        Row(4, "t", "/p1", "/other")});
  EXPECT_THAT(Ids(collection_.BySource("t", "/c")), ElementsAre(1, 2));
  EXPECT_THAT(Ids(collection_.BySource("u", "/c")), ElementsAre(3));
  EXPECT_THAT(Ids(collection_.BySource("v", "/c")), IsEmpty());
  EXPECT_THAT(Ids(collection_.BySubscriber("t", "/p1")), ElementsAre(1, 4));
  EXPECT_THAT(Ids(collection_.List("t", "", "", 0, 10)), ElementsAre(1, 2, 4));
  EXPECT_THAT(Ids(collection_.List("t", "", "", 1, 1)), ElementsAre(2));
  EXPECT_THAT(Ids(collection_.List("t", "/c", "/p2", 0, 10)), ElementsAre(2));
}

// Walks every page of List() the way ListRegistrations does (limit = page
// size, the next call starts after the last id returned).
std::vector<std::vector<int64_t>> Pages(RegistrationCollection& collection,
                                        const std::string& tenant, const std::string& source,
                                        const std::string& subscriber, size_t page_size) {
  std::vector<std::vector<int64_t>> pages;
  int64_t after = 0;
  for (;;) {
    std::vector<Registration> rows = collection.List(tenant, source, subscriber, after, page_size);
    if (rows.empty()) break;
    pages.push_back(Ids(rows));
    after = rows.back().id;
    if (rows.size() < page_size) break;
  }
  return pages;
}

TEST_F(RegistrationCollectionTest, PagesFollowIdOrderWithFiltersAndPageTokens) {
  // Ids out of order, two tenants, two sources and two subscribers.
  Load({Row(9, "t", "/p1", "/a"), Row(2, "t", "/p2", "/a"), Row(5, "t", "/p1", "/b"),
        Row(1, "u", "/p1", "/a"), Row(7, "t", "/p1", "/a"), Row(3, "t", "/p2", "/b"),
        Row(8, "t", "/p2", "/a"), Row(4, "u", "/p2", "/a")});
  using Page = std::vector<int64_t>;
  EXPECT_THAT(Pages(collection_, "t", "", "", 2), ElementsAre(Page{2, 3}, Page{5, 7}, Page{8, 9}));
  EXPECT_THAT(Pages(collection_, "t", "/a", "", 2), ElementsAre(Page{2, 7}, Page{8, 9}));
  EXPECT_THAT(Pages(collection_, "t", "", "/p1", 2), ElementsAre(Page{5, 7}, Page{9}));
  EXPECT_THAT(Pages(collection_, "t", "/a", "/p2", 1), ElementsAre(Page{2}, Page{8}));
  EXPECT_THAT(Pages(collection_, "u", "", "", 10), ElementsAre(Page{1, 4}));
  // A page token past the end, unknown filters and unknown tenants: empty.
  EXPECT_THAT(Ids(collection_.List("t", "", "", 9, 10)), IsEmpty());
  EXPECT_THAT(Ids(collection_.List("t", "/nowhere", "", 0, 10)), IsEmpty());
  EXPECT_THAT(Ids(collection_.List("t", "/a", "/nobody", 0, 10)), IsEmpty());
  EXPECT_THAT(Ids(collection_.List("v", "", "", 0, 10)), IsEmpty());
  // Live changes keep the order: a late low id, a delete.
  Commit({Change(ChangeOp::kInsert, Row(6, "t", "/p2", "/a")),
          Change(ChangeOp::kDelete, Row(7, "t", "/p1", "/a"))},
         50);
  EXPECT_THAT(Pages(collection_, "t", "/a", "", 2), ElementsAre(Page{2, 6}, Page{8, 9}));
  EXPECT_THAT(Pages(collection_, "t", "", "", 4), ElementsAre(Page{2, 3, 5, 6}, Page{8, 9}));
}

TEST_F(RegistrationCollectionTest, PagesIncludeOptimisticRowsAndSkipHiddenOnes) {
  Load({Row(1, "t", "/p", "/a"), Row(2, "t", "/p", "/a"), Row(3, "t", "/p", "/a"),
        Row(4, "t", "/p", "/a")});
  const auto removal = collection_.BeginDelete({2});
  const auto upsert = collection_.BeginUpsert(Row(0, "t", "/p", "/a"));
  collection_.Commit(upsert, Row(10, "t", "/p", "/a"), 60);
  using Page = std::vector<int64_t>;
  EXPECT_THAT(Pages(collection_, "t", "", "", 2), ElementsAre(Page{1, 3}, Page{4, 10}));
  EXPECT_THAT(Pages(collection_, "t", "/a", "/p", 3), ElementsAre(Page{1, 3, 4}, Page{10}));
  collection_.Rollback(removal);
  EXPECT_THAT(Pages(collection_, "t", "", "", 5), ElementsAre(Page{1, 2, 3, 4, 10}));
}

TEST_F(RegistrationCollectionTest, LiveChangesEmitEnterUpdateExitWithTxids) {
  Load({});
  events_.clear();
  Registration row = Row(7, "t", "/p", "/c");
  Commit({Change(ChangeOp::kInsert, row)}, 100);
  row.timeout_consumed = true;
  Commit({Change(ChangeOp::kUpdate, row)}, 101);
  Commit({Change(ChangeOp::kDelete, row)}, 102);
  ASSERT_THAT(Kinds(), ElementsAre(CollectionEvent::Kind::kEnter, CollectionEvent::Kind::kUpdate,
                                   CollectionEvent::Kind::kExit));
  EXPECT_THAT(events_[0].txids, ElementsAre(100));
  EXPECT_FALSE(events_[1].old_row.timeout_consumed);
  EXPECT_TRUE(events_[1].row.timeout_consumed);
  EXPECT_EQ(collection_.size(), 0u);
  EXPECT_TRUE(collection_.TxidSeen(101));
}

TEST_F(RegistrationCollectionTest, ResetIsAppliedAsOneDiff) {
  Registration changed = Row(2, "t", "/p", "/c");
  Load({Row(1, "t", "/p", "/c"), changed, Row(3, "t", "/p", "/c")});
  events_.clear();
  changed.one_shot = true;
  Load({changed, Row(3, "t", "/p", "/c"), Row(4, "t", "/p", "/c")});
  EXPECT_THAT(Kinds(),
              ElementsAre(CollectionEvent::Kind::kExit, CollectionEvent::Kind::kUpdate,
                          CollectionEvent::Kind::kEnter, CollectionEvent::Kind::kUpToDate));
  EXPECT_EQ(events_[0].row.id, 1);
  EXPECT_EQ(events_[2].row.id, 4);
  EXPECT_THAT(Ids(collection_.BySource("t", "/c")), ElementsAre(2, 3, 4));
}

TEST_F(RegistrationCollectionTest, SnapshotPagesWalkEveryTenantOnceWithoutCopyingTheCollection) {
  Load({Row(5, "b", "/s", "/x"), Row(1, "a", "/s", "/x"), Row(3, "b", "/s", "/x"),
        Row(2, "a", "/s", "/x"), Row(4, "c", "/s", "/x")});
  RegistrationCollection::SnapshotCursor all;
  std::vector<std::vector<int64_t>> pages;
  while (!all.done) pages.push_back(Ids(collection_.SnapshotPage(std::nullopt, &all, 2)));
  // By tenant, then id.
  EXPECT_THAT(pages, ElementsAre(ElementsAre(1, 2), ElementsAre(3, 5), ElementsAre(4)));
  RegistrationCollection::SnapshotCursor only_b;
  EXPECT_THAT(Ids(collection_.SnapshotPage(std::string("b"), &only_b, 10)), ElementsAre(3, 5));
  EXPECT_TRUE(only_b.done);

  Commit(
      {WakeChange(ChangeOp::kInsert, 7, "/p", true), WakeChange(ChangeOp::kInsert, 8, "/q", true),
       WakeChange(ChangeOp::kInsert, 9, "/r", true)},
      5);
  int64_t after = 0;
  EXPECT_THAT(collection_.PendingWakesPage(std::nullopt, &after, 2), SizeIs(2));
  EXPECT_EQ(after, 8);
  EXPECT_THAT(collection_.PendingWakesPage(std::nullopt, &after, 2), SizeIs(1));
  EXPECT_THAT(collection_.PendingWakesPage(std::nullopt, &after, 2), IsEmpty());
  after = 0;
  EXPECT_THAT(collection_.PendingWakesPage(std::string("other"), &after, 2), IsEmpty());
}

TEST_F(RegistrationCollectionTest, WakeAvailableOnInsertAndOnRelease) {
  Load({});
  events_.clear();
  Commit({WakeChange(ChangeOp::kInsert, 1, "/p", true)}, 5);
  Commit({WakeChange(ChangeOp::kUpdate, 1, "/p", false)}, 6);  // Claimed.
  EXPECT_THAT(collection_.PendingWakes(std::nullopt), IsEmpty());
  Commit({WakeChange(ChangeOp::kUpdate, 1, "/p", true)}, 7);   // Released.
  Commit({WakeChange(ChangeOp::kDelete, 1, "/p", false)}, 8);  // Acked.
  EXPECT_THAT(Kinds(), ElementsAre(CollectionEvent::Kind::kWakeAvailable,
                                   CollectionEvent::Kind::kWakeAvailable));
  EXPECT_EQ(events_[0].wake.stream, "/p");
  EXPECT_THAT(collection_.PendingWakes(std::nullopt), IsEmpty());
}

TEST_F(RegistrationCollectionTest, ResyncAnnouncesEveryPendingWakeAgain) {
  Load({});
  Commit(
      {WakeChange(ChangeOp::kInsert, 1, "/p", true), WakeChange(ChangeOp::kInsert, 2, "/q", true),
       WakeChange(ChangeOp::kInsert, 3, "/r", true)},
      5);
  events_.clear();
  // A resync: wake 1 was pending before and still is (it may have been
  // claimed and released meanwhile), wake 2 went, wake 4 is new.
  collection_.OnReset();
  SyncBatch snapshot;
  snapshot.changes = {WakeChange(ChangeOp::kInsert, 1, "/p", true),
                      WakeChange(ChangeOp::kInsert, 3, "/r", false),
                      WakeChange(ChangeOp::kInsert, 4, "/s", true)};
  collection_.OnBatch(std::move(snapshot));
  collection_.OnUpToDate();
  std::vector<int64_t> announced;
  for (const CollectionEvent& event : events_) {
    if (event.kind == CollectionEvent::Kind::kWakeAvailable) announced.push_back(event.wake.id);
  }
  EXPECT_THAT(announced, ElementsAre(1, 4));
  EXPECT_EQ(collection_.PendingWakes(std::nullopt).size(), 2u);
}

TEST_F(RegistrationCollectionTest, HasPendingWakeFollowsEachStream) {
  Load({});
  EXPECT_FALSE(collection_.HasPendingWake("t", "/p"));
  Commit(
      {WakeChange(ChangeOp::kInsert, 1, "/p", true), WakeChange(ChangeOp::kInsert, 2, "/p", true),
       WakeChange(ChangeOp::kInsert, 3, "/q", true)},
      5);
  EXPECT_TRUE(collection_.HasPendingWake("t", "/p"));
  EXPECT_FALSE(collection_.HasPendingWake("u", "/p"));
  EXPECT_FALSE(collection_.HasPendingWake("t", "/p/"));
  // A delete carries only the key: the stream comes from the known row.
  Commit({WakeChange(ChangeOp::kDelete, 1, "", false)}, 6);
  EXPECT_TRUE(collection_.HasPendingWake("t", "/p"));
  Commit({WakeChange(ChangeOp::kUpdate, 2, "/p", false)}, 7);  // Claimed.
  EXPECT_FALSE(collection_.HasPendingWake("t", "/p"));
  EXPECT_TRUE(collection_.HasPendingWake("t", "/q"));
  Commit({WakeChange(ChangeOp::kUpdate, 2, "/p", true)}, 8);  // Released.
  EXPECT_TRUE(collection_.HasPendingWake("t", "/p"));
  Commit({WakeChange(ChangeOp::kDelete, 2, "", false), WakeChange(ChangeOp::kDelete, 9, "", false)},
         9);
  EXPECT_FALSE(collection_.HasPendingWake("t", "/p"));
}

TEST_F(RegistrationCollectionTest, OptimisticUpsertIsVisibleUntilItsTxidShows) {
  Load({});
  Registration row = Row(0, "t", "/p", "/c");
  const auto mutation = collection_.BeginUpsert(row);
  // Without an id it cannot be matched yet.
  EXPECT_THAT(Ids(collection_.BySource("t", "/c")), IsEmpty());
  row.id = 9;
  collection_.Commit(mutation, row, 500);
  EXPECT_THAT(Ids(collection_.BySource("t", "/c")), ElementsAre(9));
  EXPECT_EQ(collection_.PendingMutations(), 1u);
  Commit({Change(ChangeOp::kInsert, row)}, 500);
  EXPECT_EQ(collection_.PendingMutations(), 0u);
  EXPECT_THAT(Ids(collection_.BySource("t", "/c")), ElementsAre(9));
}

TEST_F(RegistrationCollectionTest, FailedWriteRollsBack) {
  Load({Row(1, "t", "/p", "/c")});
  const auto upsert = collection_.BeginUpsert(Row(0, "t", "/p", "/c"));
  const auto removal = collection_.BeginDelete({1});
  EXPECT_THAT(Ids(collection_.BySource("t", "/c")), IsEmpty());
  collection_.Rollback(removal);
  collection_.Rollback(upsert);
  EXPECT_THAT(Ids(collection_.BySource("t", "/c")), ElementsAre(1));
  EXPECT_EQ(collection_.PendingMutations(), 0u);
}

TEST_F(RegistrationCollectionTest, OptimisticDeleteHidesRowsUntilConfirmed) {
  Load({Row(1, "t", "/p", "/c"), Row(2, "t", "/p", "/c")});
  const auto removal = collection_.BeginDelete({1, 2});
  collection_.Commit(removal, std::nullopt, 77);
  EXPECT_THAT(Ids(collection_.BySource("t", "/c")), IsEmpty());
  EXPECT_FALSE(collection_.Get(1).has_value());
  Commit({Change(ChangeOp::kDelete, Row(1, "t", "/p", "/c")),
          Change(ChangeOp::kDelete, Row(2, "t", "/p", "/c"))},
         77);
  EXPECT_EQ(collection_.PendingMutations(), 0u);
  EXPECT_EQ(collection_.size(), 0u);
}

TEST_F(RegistrationCollectionTest, TxidSeenBeforeCommitEndsTheMutationAtOnce) {
  Load({});
  Registration row = Row(3, "t", "/p", "/c");
  const auto mutation = collection_.BeginUpsert(row);
  Commit({Change(ChangeOp::kInsert, row)}, 42);  // The stream beat the writer.
  collection_.Commit(mutation, row, 42);
  EXPECT_EQ(collection_.PendingMutations(), 0u);
  EXPECT_TRUE(collection_.AwaitTxid(42, absl::Seconds(1)));
}

TEST_F(RegistrationCollectionTest, AwaitTxidReturnsWhenTheTxidShows) {
  Load({});
  bool seen = false;
  std::thread waiter([&] { seen = collection_.AwaitTxid(88, absl::Seconds(2)); });
  // Wait until the waiter has armed its timer (a condition, not a clock).
  while (time_.ArmedTimers() == 0) std::this_thread::yield();
  Commit({Change(ChangeOp::kInsert, Row(1, "t", "/p", "/c"))}, 88);
  waiter.join();
  EXPECT_TRUE(seen);
}

TEST_F(RegistrationCollectionTest, AwaitTxidGivesUpAfterTheBoundedWait) {
  Load({});
  bool seen = true;
  std::thread waiter([&] { seen = collection_.AwaitTxid(99, absl::Seconds(2)); });
  while (time_.ArmedTimers() == 0) std::this_thread::yield();
  time_.Advance(absl::Seconds(2));
  waiter.join();
  EXPECT_FALSE(seen);
}

TEST_F(RegistrationCollectionTest, OnTxidCallsBackWhenTheTxidShowsWithoutAThread) {
  Load({});
  std::vector<std::pair<int, bool>> calls;
  collection_.OnTxid(70, absl::Seconds(2), [&](bool seen) { calls.emplace_back(1, seen); });
  collection_.OnTxid(70, absl::Seconds(3), [&](bool seen) { calls.emplace_back(2, seen); });
  collection_.OnTxid(71, absl::Seconds(2), [&](bool seen) { calls.emplace_back(3, seen); });
  EXPECT_TRUE(calls.empty());
  Commit({Change(ChangeOp::kInsert, Row(1, "t", "/p", "/c"))}, 70);
  EXPECT_THAT(calls, ElementsAre(std::make_pair(1, true), std::make_pair(2, true)));
  // Once only: neither the deadline nor the txid calls them again.
  time_.Advance(absl::Seconds(3));
  Commit({Change(ChangeOp::kInsert, Row(2, "t", "/p", "/c"))}, 70);
  EXPECT_THAT(calls, ElementsAre(std::make_pair(1, true), std::make_pair(2, true),
                                 std::make_pair(3, false)));
}

TEST_F(RegistrationCollectionTest, OnTxidAnswersAtOnceForATxidAlreadySeen) {
  Load({});
  Commit({Change(ChangeOp::kInsert, Row(1, "t", "/p", "/c"))}, 42);
  bool seen = false;
  collection_.OnTxid(42, absl::Seconds(1), [&](bool s) { seen = s; });
  EXPECT_TRUE(seen);
}

TEST_F(RegistrationCollectionTest, OnTxidGivesUpAfterItsOwnDeadlineOnly) {
  Load({});
  std::vector<int> expired;
  collection_.OnTxid(80, absl::Seconds(1), [&](bool seen) {
    if (!seen) expired.push_back(1);
  });
  collection_.OnTxid(81, absl::Seconds(2), [&](bool seen) {
    if (!seen) expired.push_back(2);
  });
  time_.Advance(absl::Seconds(1));
  EXPECT_THAT(expired, ElementsAre(1));
  time_.Advance(absl::Milliseconds(500));
  EXPECT_THAT(expired, ElementsAre(1));
  time_.Advance(absl::Milliseconds(500));
  EXPECT_THAT(expired, ElementsAre(1, 2));
}

TEST_F(RegistrationCollectionTest, ResetDropsCommittedMutationsButKeepsInFlightOnes) {
  Load({});
  const auto in_flight = collection_.BeginUpsert(Row(0, "t", "/p", "/c"));
  const auto committed = collection_.BeginUpsert(Row(0, "t", "/q", "/c"));
  collection_.Commit(committed, Row(5, "t", "/q", "/c"), 12);
  Load({Row(5, "t", "/q", "/c")});
  EXPECT_EQ(collection_.PendingMutations(), 1u);
  collection_.Rollback(in_flight);
  EXPECT_THAT(Ids(collection_.BySource("t", "/c")), ElementsAre(5));
}

}  // namespace
}  // namespace wake::sync
