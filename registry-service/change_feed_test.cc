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
