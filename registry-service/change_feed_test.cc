#include "registry-service/change_feed.h"

#include "common/simulated_time_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace wake::registry {
namespace {

sync::CollectionEvent Enter(int64_t id, std::string tenant) {
  sync::CollectionEvent event;
  event.kind = sync::CollectionEvent::Kind::kEnter;
  event.row.id = id;
  event.row.tenant_id = std::move(tenant);
  event.txids = {id * 10};
  return event;
}

sync::CollectionEvent WakeAvailable(int64_t id, std::string tenant) {
  sync::CollectionEvent event;
  event.kind = sync::CollectionEvent::Kind::kWakeAvailable;
  event.wake = sync::WakeRow{id, std::move(tenant), "/parent", 1, true};
  return event;
}

// What a refill produced, one word per event: "reg@3", "wake@4",
// "up_to_date@4", "must_refetch@0" (the number is the offset's seq).
std::vector<std::string> Describe(const std::deque<v1::ChangeEvent>& events) {
  std::vector<std::string> out;
  for (const v1::ChangeEvent& event : events) {
    const std::string seq = event.offset().substr(event.offset().find('_') + 1);
    if (event.has_registration()) {
      out.push_back("reg@" + seq);
    } else if (event.has_wake()) {
      out.push_back("wake@" + seq);
    } else {
      out.push_back((event.control() == v1::UP_TO_DATE ? "up_to_date@" : "must_refetch@") + seq);
    }
  }
  return out;
}

class ChangeFeedTest : public ::testing::Test {
 protected:
  ChangeFeedTest() : collection_(time_), feed_(collection_, /*capacity=*/4, "e1") {}

  common::SimulatedTimeSource time_;
  sync::RegistrationCollection collection_;
  ChangeFeed feed_;
};

TEST_F(ChangeFeedTest, OffsetsRoundTripOnlyInTheirEpoch) {
  uint64_t seq = 0;
  EXPECT_EQ(feed_.Offset(12), "e1_12");
  EXPECT_TRUE(feed_.ParseOffset("e1_12", &seq));
  EXPECT_EQ(seq, 12u);
  EXPECT_FALSE(feed_.ParseOffset("e2_12", &seq));
  EXPECT_FALSE(feed_.ParseOffset("garbage", &seq));
}

TEST_F(ChangeFeedTest, FollowsTheCollectionInOrder) {
  int pokes = 0;
  const int watch = feed_.Watch([&] { ++pokes; });
  // Live batches of the collection become numbered entries.
  collection_.OnReset();
  collection_.OnUpToDate();
  sync::SyncBatch batch;
  sync::RowChange change;
  change.registration = sync::Registration{};
  change.registration->id = 5;
  change.registration->tenant_id = "t";
  batch.changes.push_back(change);
  batch.txids = {77};
  collection_.OnBatch(batch);
  EXPECT_EQ(feed_.head(), 1u);
  EXPECT_EQ(pokes, 1);
  std::vector<std::shared_ptr<const FeedEntry>> entries;
  ASSERT_EQ(feed_.Read(0, 10, &entries), ChangeFeed::ReadStatus::kOk);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0]->event.offset(), "e1_1");
  EXPECT_EQ(entries[0]->event.registration().op(), v1::INSERT);
  EXPECT_EQ(entries[0]->event.registration().registration().id(), 5);
  EXPECT_EQ(entries[0]->event.txids(0), 77);
  feed_.Unwatch(watch);
}

TEST_F(ChangeFeedTest, ReadersThatFellOutOfTheRingAreToldSo) {
  for (int i = 1; i <= 6; ++i) feed_.AppendForTest(Enter(i, "t"));
  std::vector<std::shared_ptr<const FeedEntry>> entries;
  EXPECT_EQ(feed_.Read(0, 10, &entries), ChangeFeed::ReadStatus::kGone);
  EXPECT_EQ(feed_.Read(1, 10, &entries), ChangeFeed::ReadStatus::kGone);
  EXPECT_EQ(feed_.Read(2, 10, &entries), ChangeFeed::ReadStatus::kOk);
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries.front()->seq, 3u);
  entries.clear();
  EXPECT_EQ(feed_.Read(6, 10, &entries), ChangeFeed::ReadStatus::kOk);
  EXPECT_TRUE(entries.empty());
}

FeedFilter AllTenants() {
  FeedFilter filter;
  filter.all_tenants = true;
  return filter;
}

class FeedCursorTest : public ::testing::Test {
 protected:
  FeedCursorTest() : collection_(time_), feed_(collection_, /*capacity=*/64, "e1") {}

  // Refills until the cursor has nothing more to say.
  std::vector<std::string> Drain(FeedCursor& cursor) {
    std::deque<v1::ChangeEvent> out;
    for (;;) {
      const size_t before = out.size();
      if (!cursor.Refill(/*max=*/2, &out)) break;
      if (out.size() == before) break;
    }
    return Describe(out);
  }

  common::SimulatedTimeSource time_;
  sync::RegistrationCollection collection_;
  ChangeFeed feed_;
};

TEST_F(FeedCursorTest, UpToDateFollowsDeliveredEventsOnceCaughtUp) {
  FeedCursor cursor(feed_, AllTenants(), feed_.head(), FeedCursor::Start::kUpToDate);
  EXPECT_THAT(Drain(cursor), ::testing::IsEmpty());
  for (int i = 1; i <= 3; ++i) feed_.AppendForTest(Enter(i, "t"));
  feed_.AppendForTest(WakeAvailable(4, "t"));
  std::deque<v1::ChangeEvent> out;
  // Events first (in chunks of at most `max`); UP_TO_DATE only on the refill
  // that finds nothing more to send.
  ASSERT_TRUE(cursor.Refill(2, &out));
  EXPECT_THAT(Describe(out), ::testing::ElementsAre("reg@1", "reg@2"));
  out.clear();
  ASSERT_TRUE(cursor.Refill(2, &out));
  EXPECT_THAT(Describe(out), ::testing::ElementsAre("reg@3", "wake@4"));
  out.clear();
  ASSERT_TRUE(cursor.Refill(2, &out));
  EXPECT_THAT(Describe(out), ::testing::ElementsAre("up_to_date@4"));
  EXPECT_THAT(Drain(cursor), ::testing::IsEmpty());  // Said once.
  EXPECT_EQ(cursor.position(), 4u);
}

TEST_F(FeedCursorTest, FilteredOutEntriesAnnounceUpToDateOnlyEveryQuietCount) {
  FeedFilter filter;
  filter.tenant_id = "mine";
  filter.kinds = {v1::ChangeEvent::WAKE, v1::ChangeEvent::CONTROL};
  FeedCursor cursor(feed_, filter, feed_.head(), FeedCursor::Start::kUpToDate,
                    /*quiet_up_to_date=*/5);
  // Registrations (unwanted kind) and another tenant's wakes: nothing to
  // send, and no UP_TO_DATE per batch either.
  feed_.AppendForTest(Enter(1, "mine"));
  feed_.AppendForTest(WakeAvailable(2, "other"));
  EXPECT_THAT(Drain(cursor), ::testing::IsEmpty());
  feed_.AppendForTest(Enter(3, "other"));
  feed_.AppendForTest(Enter(4, "mine"));
  EXPECT_THAT(Drain(cursor), ::testing::IsEmpty());
  EXPECT_EQ(cursor.position(), 4u);
  // The fifth dropped entry: the resume offset moves on.
  feed_.AppendForTest(Enter(5, "mine"));
  EXPECT_THAT(Drain(cursor), ::testing::ElementsAre("up_to_date@5"));
  // A wanted event is always followed by UP_TO_DATE, dropped ones around it
  // included.
  feed_.AppendForTest(Enter(6, "mine"));
  feed_.AppendForTest(WakeAvailable(7, "mine"));
  feed_.AppendForTest(Enter(8, "mine"));
  EXPECT_THAT(Drain(cursor), ::testing::ElementsAre("wake@7", "up_to_date@8"));
  // The count starts again after each UP_TO_DATE.
  for (int i = 9; i <= 12; ++i) feed_.AppendForTest(Enter(i, "mine"));
  EXPECT_THAT(Drain(cursor), ::testing::IsEmpty());
  feed_.AppendForTest(Enter(13, "mine"));
  EXPECT_THAT(Drain(cursor), ::testing::ElementsAre("up_to_date@13"));
}

TEST_F(FeedCursorTest, AResumedSubscriberIsToldUpToDateOnceCaughtUp) {
  FeedFilter wakes_only = AllTenants();
  wakes_only.kinds = {v1::ChangeEvent::WAKE, v1::ChangeEvent::CONTROL};
  // Resumed at the head: nothing new, yet it learns it is up to date.
  FeedCursor at_head(feed_, wakes_only, feed_.head(), FeedCursor::Start::kResumed);
  EXPECT_THAT(Drain(at_head), ::testing::ElementsAre("up_to_date@0"));
  EXPECT_THAT(Drain(at_head), ::testing::IsEmpty());
  // Resumed before entries its filter drops: told once it has read past them.
  feed_.AppendForTest(Enter(1, "t"));
  feed_.AppendForTest(Enter(2, "t"));
  FeedCursor behind(feed_, wakes_only, 0, FeedCursor::Start::kResumed);
  EXPECT_THAT(Drain(behind), ::testing::ElementsAre("up_to_date@2"));
  // Not a second time for more dropped entries.
  feed_.AppendForTest(Enter(3, "t"));
  EXPECT_THAT(Drain(behind), ::testing::IsEmpty());
}

TEST_F(FeedCursorTest, NoLiveUpToDateWithoutTheControlKind) {
  FeedFilter filter = AllTenants();
  filter.kinds = {v1::ChangeEvent::REGISTRATION};
  FeedCursor cursor(feed_, filter, feed_.head(), FeedCursor::Start::kUpToDate,
                    /*quiet_up_to_date=*/1);
  feed_.AppendForTest(Enter(1, "t"));
  feed_.AppendForTest(WakeAvailable(2, "t"));
  EXPECT_THAT(Drain(cursor), ::testing::ElementsAre("reg@1"));
}

TEST_F(FeedCursorTest, ACursorThatFellOutOfTheRingMustRefetch) {
  FeedCursor cursor(feed_, AllTenants(), feed_.head(), FeedCursor::Start::kUpToDate);
  for (int i = 1; i <= 70; ++i) feed_.AppendForTest(Enter(i, "t"));
  std::deque<v1::ChangeEvent> out;
  EXPECT_FALSE(cursor.Refill(2, &out));
  EXPECT_THAT(Describe(out), ::testing::ElementsAre("must_refetch@0"));
}

TEST(ToChangeEventTest, WakeAvailableCarriesTheStream) {
  sync::CollectionEvent event;
  event.kind = sync::CollectionEvent::Kind::kWakeAvailable;
  event.wake = sync::WakeRow{9, "t", "/parent", 3, true};
  auto change = ToChangeEvent(event);
  ASSERT_TRUE(change.has_value());
  EXPECT_EQ(change->wake().stream(), "/parent");
  EXPECT_EQ(change->wake().wake_id(), 9);
  sync::CollectionEvent up;
  up.kind = sync::CollectionEvent::Kind::kUpToDate;
  EXPECT_FALSE(ToChangeEvent(up).has_value());
}

}  // namespace
}  // namespace wake::registry
