#include "common/sync/sync_lag.h"

#include <vector>

#include "common/simulated_time_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/mocks/sync/mocks.h"

namespace wake::sync {
namespace {

using ::testing::_;
using ::testing::ElementsAre;
using ::testing::StrictMock;

TEST(SyncLagObserverTest, ReportsCommitToArrivalForBatchesWithACommitTime) {
  common::SimulatedTimeSource time;
  StrictMock<MockSyncObserver> inner;
  std::vector<absl::Duration> lags;
  SyncLagObserver observer(inner, time, [&](absl::Duration lag) { lags.push_back(lag); });
  EXPECT_CALL(inner, OnBatch(_)).Times(3);
  SyncBatch committed;
  committed.committed_at = time.SystemNow() - absl::Milliseconds(3);
  observer.OnBatch(committed);
  // A snapshot batch has no commit time; a commit "in the future" (another
  // host's clock) counts as no lag.
  observer.OnBatch(SyncBatch());
  SyncBatch ahead;
  ahead.committed_at = time.SystemNow() + absl::Seconds(1);
  observer.OnBatch(ahead);
  EXPECT_THAT(lags, ElementsAre(absl::Milliseconds(3), absl::ZeroDuration()));
  // Everything else is passed through.
  EXPECT_CALL(inner, OnReset());
  EXPECT_CALL(inner, OnUpToDate());
  EXPECT_CALL(inner, OnDisconnected(_));
  observer.OnReset();
  observer.OnUpToDate();
  observer.OnDisconnected(absl::UnavailableError("down"));
}

}  // namespace
}  // namespace wake::sync
